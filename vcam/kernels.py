"""numba kernels for the per-pixel work at full resolution.

Convention (GUIDE.md): explicit signatures, ``nogil=True``, ``cache=True``, the
output array first. Each kernel has a thin public wrapper that checks shapes and
dtypes, and a plain numpy reference in ``tests/test_kernels.py``.

Why numba and not numpy: a numpy float blend at 720p allocates several
temporaries and takes 11-25 ms; the fused u8 kernels below stream each byte once
(about 0.3 ms at 720p), and release the GIL so the matting thread runs beside them.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .frames import check_image


@njit("void(u1[::1], u1[::1], u1[::1], u1[::1])", nogil=True, cache=True, fastmath=True)
def _blend(out, fg, bg, alpha):
    # out, fg, bg: [H*W*3] u8; alpha: [H*W] u8. out = (fg*a + bg*(255-a)) / 255, rounded.
    n = alpha.shape[0]
    for i in range(n):
        a = np.int32(alpha[i])
        ia = 255 - a
        for c in range(3):
            j = 3 * i + c
            x = np.int32(fg[j]) * a + np.int32(bg[j]) * ia + 128
            out[j] = np.uint8((x + (x >> 8)) >> 8)


@njit("void(u1[::1], u1[::1], u1[::1], u1[::1])", nogil=True, cache=True, fastmath=True)
def _blend_color(out, fg, color, alpha):
    # out, fg: [H*W*3] u8; color: [3] u8 BGR; alpha: [H*W] u8.
    n = alpha.shape[0]
    c0 = np.int32(color[0])
    c1 = np.int32(color[1])
    c2 = np.int32(color[2])
    for i in range(n):
        a = np.int32(alpha[i])
        ia = 255 - a
        j = 3 * i
        x = np.int32(fg[j]) * a + c0 * ia + 128
        out[j] = np.uint8((x + (x >> 8)) >> 8)
        x = np.int32(fg[j + 1]) * a + c1 * ia + 128
        out[j + 1] = np.uint8((x + (x >> 8)) >> 8)
        x = np.int32(fg[j + 2]) * a + c2 * ia + 128
        out[j + 2] = np.uint8((x + (x >> 8)) >> 8)


@njit("void(u1[:, ::1], f4[:, ::1], f4[:, ::1], u1[:, ::1], f4[:, ::1], f4[:, ::1])",
      nogil=True, cache=True, fastmath=True)
def _guided_upsample(out, a_lo, b_lo, guide, ah, bh):
    # out: [H, W] u8 alpha; a_lo, b_lo: [h, w] f32 linear coefficients at low resolution;
    # guide: [H, W] u8 gray; ah, bh: [h, W] f32 scratch.
    # out = clip(a(x) * gray(x) + b(x)) with gray in [0, 1] (a, b fitted that way), with a and b bilinearly upsampled (pixel
    # centres aligned, as cv2.resize does). Separable: first every low-res row is
    # interpolated to full width (h*W work), then each output row is a lerp of two
    # such rows, so the full-resolution loop is branch-free and vectorises.
    H, W = out.shape
    h, w = a_lo.shape
    sx = w / W
    xs0 = np.empty(W, np.int64)
    xs1 = np.empty(W, np.int64)
    wxs = np.empty(W, np.float32)
    for x in range(W):
        fx = min(max((x + 0.5) * sx - 0.5, 0.0), w - 1.0)
        xs0[x] = min(int(fx), w - 1)
        xs1[x] = min(xs0[x] + 1, w - 1)
        wxs[x] = fx - xs0[x]
    for r in range(h):
        ar = a_lo[r]
        br = b_lo[r]
        for x in range(W):
            ah[r, x] = ar[xs0[x]] + (ar[xs1[x]] - ar[xs0[x]]) * wxs[x]
            bh[r, x] = br[xs0[x]] + (br[xs1[x]] - br[xs0[x]]) * wxs[x]
    sy = h / H
    for y in range(H):
        fy = min(max((y + 0.5) * sy - 0.5, 0.0), h - 1.0)
        y0 = min(int(fy), h - 1)
        y1 = min(y0 + 1, h - 1)
        wy = np.float32(fy - y0)
        a0 = ah[y0]
        a1 = ah[y1]
        b0 = bh[y0]
        b1 = bh[y1]
        g = guide[y]
        o = out[y]
        for x in range(W):
            a = a0[x] + (a1[x] - a0[x]) * wy
            b = b0[x] + (b1[x] - b0[x]) * wy
            v = a * g[x] + b * np.float32(255.0) + np.float32(0.5)
            o[x] = np.uint8(min(max(v, np.float32(0.0)), np.float32(255.0)))


@njit("void(u1[::1], u1[::1], u1[::1], u1[::1], u1[::1], u1[::1], u1[::1])", nogil=True, cache=True, fastmath=True)
def _blend_edge(out, img, bg, est, soft, wrap, alpha):
    # out, img, bg, est, soft: [H*W*3] u8; wrap, alpha: [H*W] u8.
    # Inside (a = 255, no wrap) and outside (a = 0) this is the plain blend. In the soft
    # border the camera pixel is a mix I = a·F + (1 - a)·B of the person F and the old
    # room B; with est ≈ B (the matte-weighted blur of the room) F = (I - (1 - a)·est) / a
    # takes the old room's colour out (decontamination). Then the light wrap mixes a
    # little of the new background's blurred light (soft) into the person's solid rim.
    n = alpha.shape[0]
    for i in range(n):
        a = np.int32(alpha[i])
        w = np.int32(wrap[i])
        j = 3 * i
        if a == 0 or (a == 255 and w == 0):
            for c in range(3):
                x = np.int32(img[j + c]) * a + np.int32(bg[j + c]) * (255 - a) + 128
                out[j + c] = np.uint8((x + (x >> 8)) >> 8)
            continue
        af = np.float32(a) * np.float32(1 / 255)
        inv = np.float32(1.0) / max(af, np.float32(0.125))
        # Light wraps the solid rim, not the see-through strands (they already show the new background).
        wf = np.float32(w) * np.float32(1 / 255) * af * af
        for c in range(3):
            f = (np.float32(img[j + c]) - (np.float32(1.0) - af) * np.float32(est[j + c])) * inv
            f = min(max(f, np.float32(0.0)), np.float32(255.0))
            f += (np.float32(soft[j + c]) - f) * wf
            v = f * af + np.float32(bg[j + c]) * (np.float32(1.0) - af) + np.float32(0.5)
            out[j + c] = np.uint8(min(max(v, np.float32(0.0)), np.float32(255.0)))


def _flat(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1)


def blend(out: np.ndarray, fg: np.ndarray, bg: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``out = fg·α + bg·(1-α)`` in u8. ``fg, bg, out``: ``[H, W, 3] uint8``; ``alpha``: ``[H, W] uint8``."""
    fg = check_image(fg, "fg")
    bg = check_image(bg, "bg")
    _check_alpha(alpha, fg.shape)
    if bg.shape != fg.shape or out.shape != fg.shape or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError(f"blend: fg {fg.shape}, bg {bg.shape} and out {out.shape} must match (uint8, contiguous)")
    _blend(_flat(out), _flat(fg), _flat(bg), _flat(alpha))
    return out


def blend_color(out: np.ndarray, fg: np.ndarray, color_bgr, alpha: np.ndarray) -> np.ndarray:
    """``out = fg·α + color·(1-α)``; ``color_bgr`` is three ints."""
    fg = check_image(fg, "fg")
    _check_alpha(alpha, fg.shape)
    if out.shape != fg.shape or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError(f"blend_color: out {out.shape} must match fg {fg.shape} (uint8, contiguous)")
    _blend_color(_flat(out), _flat(fg), np.asarray(color_bgr, np.uint8).reshape(3), _flat(alpha))
    return out


def blend_edge(out: np.ndarray, img: np.ndarray, bg: np.ndarray, est: np.ndarray, soft: np.ndarray,
               wrap: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Blend with foreground decontamination and light wrap (see ``_blend_edge``).

    ``img``: the camera frame; ``bg``: the new background; ``est``: an estimate of the old
    room behind the person (a matte-weighted blur); ``soft``: the new background, blurred;
    ``wrap``: ``[H, W] u8`` light-wrap weight; ``alpha``: ``[H, W] u8``. All images
    ``[H, W, 3] uint8``. With ``est`` = ``img`` and ``wrap`` = 0 this is :func:`blend` wherever alpha ≥ 1/8.
    """
    img = check_image(img, "img")
    for name, a in (("bg", bg), ("est", est), ("soft", soft), ("out", out)):
        if a.shape != img.shape or a.dtype != np.uint8 or not a.flags.c_contiguous:
            raise ValueError(f"blend_edge: {name} {a.shape} must match img {img.shape} (uint8, contiguous)")
    _check_alpha(alpha, img.shape)
    _check_alpha(wrap, img.shape)
    _blend_edge(_flat(out), _flat(img), _flat(bg), _flat(est), _flat(soft), _flat(wrap), _flat(alpha))
    return out


def guided_upsample(out: np.ndarray, a_lo: np.ndarray, b_lo: np.ndarray, guide: np.ndarray,
                    scratch: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Full-resolution ``[H, W] uint8`` alpha from low-resolution guided-filter coefficients.

    ``scratch``: two ``[h, W] float32`` buffers to reuse between calls (allocated if omitted).
    """
    if guide.ndim != 2 or guide.dtype != np.uint8 or not guide.flags.c_contiguous:
        raise ValueError(f"guided_upsample: guide must be a contiguous [H, W] uint8 gray image, got {guide.shape} {guide.dtype}")
    if out.shape != guide.shape[:2] or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError(f"guided_upsample: out must be [H, W] uint8 matching guide {guide.shape[:2]}, got {out.shape} {out.dtype}")
    if a_lo.shape != b_lo.shape or a_lo.ndim != 2:
        raise ValueError(f"guided_upsample: a {a_lo.shape} and b {b_lo.shape} must be equal 2-D arrays")
    a_lo = np.ascontiguousarray(a_lo, np.float32)
    b_lo = np.ascontiguousarray(b_lo, np.float32)
    if scratch is None or scratch[0].shape != (a_lo.shape[0], out.shape[1]):
        scratch = (np.empty((a_lo.shape[0], out.shape[1]), np.float32),
                   np.empty((a_lo.shape[0], out.shape[1]), np.float32))
    _guided_upsample(out, a_lo, b_lo, guide, scratch[0], scratch[1])
    return out


def _check_alpha(alpha: np.ndarray, shape) -> None:
    if not isinstance(alpha, np.ndarray) or alpha.dtype != np.uint8:
        raise TypeError(f"alpha: expected uint8 ndarray, got {getattr(alpha, 'dtype', type(alpha).__name__)}")
    if alpha.shape != tuple(shape[:2]) or not alpha.flags.c_contiguous:
        raise ValueError(f"alpha: expected contiguous shape {list(shape[:2])}, got {list(alpha.shape)}")
