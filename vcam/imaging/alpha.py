"""Alpha matting for stills: closed-form matting (pymatting) in a trimap band, an opaque interior, and
island removal.

Stills can afford what the live path cannot: pymatting's closed-form alpha and its
foreground estimation (``vcam remove --alpha-matting``, prompts whose subject SAM alone
found), and dropping blobs far smaller than the subject (``--post-process``).
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True, kw_only=True)
class AlphaMatting:
    """rembg-style trimap thresholds: ``-af``, ``-ab``, ``-ae``."""

    foreground_threshold: int = 240
    background_threshold: int = 10
    erode_size: int = 10


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty: they agree)."""
    u = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / u if u else 1.0


INTERIOR_BAND = 0.02  # of the picture's short side: how far inside the subject's outline alpha may stay below 1


def fill_interior(alpha: np.ndarray, band: float = INTERIOR_BAND) -> np.ndarray:
    """``alpha`` ([H, W] u8) with the subject's interior opaque: beyond ``band`` of the short side inside
    the α 0.5 outline, alpha is eased to 255, fully so at twice that. The guided filter that carries a
    matte to full resolution dips along strong edges *inside* the person (a suit's seam, a helmet's rim):
    each view of the portrait ensemble had thin lines at α 0.85-0.92 there, through which a new background
    showed as faint lines. Soft alpha belongs near the outline (hair, fur, motion blur); the outline itself,
    hence IoU and boundary F, does not move."""
    fg = (alpha >= 128).view(np.uint8)
    if not fg.any():
        return alpha
    d = cv2.distanceTransform(fg, cv2.DIST_L2, 3)  # inside: the distance to the nearest pixel outside
    w = np.clip(d * np.float32(1 / max(1.0, band * min(alpha.shape))) - 1, 0, 1)
    return (alpha + w * (255 - alpha.astype(np.float32)) + 0.5).astype(np.uint8)


def remove_islands(alpha: np.ndarray, min_fraction: float = 0.02) -> np.ndarray:
    """Drop blobs much smaller than the main subject (``--post-process``); soft edges are kept.
    ``alpha``: ``[H, W] u8``."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats((alpha > 127).astype(np.uint8), connectivity=8)
    if n <= 2:
        return alpha
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.zeros(n, np.uint8)
    keep[1:] = areas >= min_fraction * areas.max()
    mask = keep[labels]
    # Grow the kept region a little so the soft border around it survives.
    mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9)))
    return (alpha * mask).astype(np.uint8)


def closed_form_alpha(bgr: np.ndarray, alpha: np.ndarray, am: AlphaMatting) -> tuple[np.ndarray, np.ndarray]:
    """Trimap from the mask (rembg's ``-af/-ab/-ae``), then pymatting's closed-form alpha and
    its foreground estimation. Returns ``(alpha [H, W] u8, foreground [H, W, 3] u8 BGR)``."""
    k = max(1, int(am.erode_size))
    se = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
    fg = cv2.erode((alpha > am.foreground_threshold).astype(np.uint8), se)
    bg = cv2.erode((alpha < am.background_threshold).astype(np.uint8), se)
    trimap = np.full(alpha.shape, 0.5)
    trimap[fg > 0] = 1.0
    trimap[bg > 0] = 0.0
    if not (trimap == 0.5).any() or not (fg > 0).any() or not (bg > 0).any():
        return alpha, bgr  # nothing unknown, or no sure region: the mask is already final
    return closed_form(bgr, trimap)


def closed_form(bgr: np.ndarray, trimap: np.ndarray, *, foreground: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """pymatting's closed-form alpha for a float ``trimap`` (0, 0.5, 1) and its foreground estimation:
    ``(alpha [H, W] u8, foreground [H, W, 3] u8 BGR)``; the foreground is ``None`` unless ``foreground``
    (a mask alone does not need it: it is 40 % of the cost at half a megapixel)."""
    # Imported here, not with the module: pymatting compiles its numba kernels when imported (about a
    # second here, minutes under emulation), and only stills with alpha matting or prompts need it.
    from pymatting import estimate_foreground_ml

    from .band_laplacian import estimate_alpha

    img = bgr[:, :, ::-1].astype(np.float64) / 255.0
    # pymatting prints solver warnings on stdout, which would corrupt `vcam remove - > out.png`.
    with contextlib.redirect_stdout(io.StringIO()):
        a = estimate_alpha(img, trimap)  # pymatting's estimate_alpha_cf, on the band's pixels alone
        if not foreground:
            return (a * 255 + 0.5).astype(np.uint8), None
        f = np.clip(estimate_foreground_ml(img, a), 0, 1)
    return (a * 255 + 0.5).astype(np.uint8), np.ascontiguousarray((f[:, :, ::-1] * 255 + 0.5).astype(np.uint8))


@dataclass(frozen=True, kw_only=True)
class BandRefine:
    """Segmentation + matting for objects: the mask says *what*, closed-form matting on the
    mask's boundary band says *how soft* (fur, hair, leaves, glass).

    ``band``: the band's half-width as a fraction of the working image's diagonal;
    ``max_pixels``: the band is solved on the picture scaled down to at most this many
    pixels (its cost grows with the band's pixels, so this caps it for large photos)."""

    band: float = 0.006
    max_pixels: int = 500_000


def refine_band(bgr: np.ndarray, alpha: np.ndarray, br: BandRefine = BandRefine(), *,
                foreground: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Closed-form alpha in the boundary band of a segmentation ``alpha`` ([H, W] u8), solved at
    most at ``br.max_pixels`` and used only inside the band. Returns ``(alpha [H, W] u8,
    foreground [H, W, 3] u8 BGR)``; outside the band both are the input's. Without ``foreground``
    the foreground colours are not estimated and ``None`` comes back in their place."""
    H, W = alpha.shape
    scale = min(1.0, (br.max_pixels / float(H * W)) ** 0.5)
    size = (max(1, round(W * scale)), max(1, round(H * scale)))
    small_bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA) if scale < 1 else bgr
    small_a = cv2.resize(alpha, size, interpolation=cv2.INTER_AREA) if scale < 1 else alpha
    k = max(3, int(round(br.band * (size[0] ** 2 + size[1] ** 2) ** 0.5)))
    se = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
    se_thin = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))

    def sure(region: np.ndarray) -> np.ndarray:
        # The region's core at the band's depth, and the middle of parts thinner than the band
        # (a rope, a strap, a gap between legs), which the band would otherwise swallow whole.
        thin = region & ~cv2.morphologyEx(region, cv2.MORPH_OPEN, se)
        return (cv2.erode(region, se) | (cv2.erode(region, se_thin) & thin)) > 0

    sure_fg = sure((small_a >= 128).astype(np.uint8))
    sure_bg = sure((small_a < 128).astype(np.uint8))
    # Where the model itself was unsure (soft values far from the edge) is unknown too.
    sure_fg &= small_a >= 230
    sure_bg &= small_a <= 25
    if not sure_fg.any() or not sure_bg.any() or (sure_fg | sure_bg).all():
        return alpha, bgr if foreground else None
    trimap = np.full(small_a.shape, 0.5)
    trimap[sure_fg] = 1.0
    trimap[sure_bg] = 0.0
    a_small, fg_small = closed_form(small_bgr, trimap, foreground=foreground)
    unknown = ~(sure_fg | sure_bg)
    if scale < 1:
        a_full = cv2.resize(a_small, (W, H), interpolation=cv2.INTER_LINEAR)
        fg_full = cv2.resize(fg_small, (W, H), interpolation=cv2.INTER_LINEAR) if foreground else None
        band = cv2.resize(unknown.astype(np.uint8), (W, H), interpolation=cv2.INTER_NEAREST) > 0
    else:
        a_full, fg_full, band = a_small, fg_small, unknown
    out_a = alpha.copy()
    out_a[band] = a_full[band]
    if not foreground:
        return out_a, None
    out_fg = bgr.copy()
    out_fg[band] = fg_full[band]
    return out_a, out_fg
