"""Matte quality against true masks, and on moving clips at a live matting rate.

The metrics (:func:`iou`, :func:`bf_score`, :func:`dtssd`) and the webcam-like sway
(:func:`sway`) are shared by ``scripts/quality.py`` (the development portraits) and by
``vcam bench``, which measures what a call sees at the rate the bench reached: clips made from
the shipped, generated full-body pictures (:func:`vcam.sample.full_body`, whose true masks are
known), moved together with their masks, matted as ``vcam process --matting-hz`` does (new
mattes only at that rate, each refined and moved with the person on every frame between).
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from .. import sample
from ..config import Config
from ..engine.lockstep import run_lockstep
from ..engine.parts import Parts
from ..imaging import smoothing
from ..imaging.compositor import Compositor
from ..media.sources import Source
from ..models.matting import create as create_matter


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Of two boolean masks."""
    u = (pred | gt).sum()
    return 1.0 if u == 0 else float((pred & gt).sum() / u)


def _boundary(mask: np.ndarray) -> np.ndarray:
    m = mask.astype(np.uint8)
    return (m - cv2.erode(m, np.ones((3, 3), np.uint8))) > 0


def bf_score(pred: np.ndarray, gt: np.ndarray) -> float:
    """DAVIS boundary F-measure of two boolean masks, tolerance 0.8 % of the image diagonal."""
    tol = max(1, int(math.ceil(0.008 * math.hypot(*gt.shape))))
    pb, gb = _boundary(pred), _boundary(gt)
    if not pb.any() and not gb.any():
        return 1.0
    if not pb.any() or not gb.any():
        return 0.0
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * tol + 1, 2 * tol + 1))
    gd = cv2.dilate(gb.astype(np.uint8), disk) > 0
    pd = cv2.dilate(pb.astype(np.uint8), disk) > 0
    precision = (pb & gd).sum() / pb.sum()
    recall = (gb & pd).sum() / gb.sum()
    return 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))


def dtssd(alphas: list[np.ndarray], truth: list[np.ndarray]) -> float:
    """× 100: mean over t of sqrt(mean over pixels ((α_t − α_{t−1}) − (g_t − g_{t−1}))²), in [0, 1] alphas."""
    return 100 * float(np.mean([np.sqrt(np.mean(((alphas[i] - alphas[i - 1]) - (truth[i] - truth[i - 1])) ** 2))
                                for i in range(1, len(alphas))]))


def shift(t: float, w: int, h: int) -> tuple[float, float]:
    """The sway's translation at time t (s), ±4 % of each side."""
    return 0.04 * w * math.sin(2 * math.pi * t / 2.3), 0.04 * h * math.sin(2 * math.pi * t / 3.1 + 1.0)


def sway(t: float, w: int, h: int) -> np.ndarray:
    """The webcam-like sway at time t (s): ±4 % translation, ±3 % zoom, as a 2x3 affine."""
    dx, dy = shift(t, w, h)
    s = 1.0 + 0.03 * math.sin(2 * math.pi * t / 2.7 + 0.5)
    M = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, s)
    M[:, 2] += (dx, dy)
    return M


def noisy(img: np.ndarray, rng, sigma: float = 4.0) -> np.ndarray:
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


def moving_clip(img: np.ndarray, gt: np.ndarray, frames: int, rng, fps: float = 30.0, *, speed: float = 1.0,
                bend: bool = False):
    """``img`` and its ``[H, W] u8`` mask moved together by :func:`sway`, with sensor noise:
    the frames and the true alphas in [0, 1]. ``speed`` plays the sway that many times faster.
    ``bend``: not one rigid motion but a bending one, the sway's shift in full at the top of the
    picture fading to none at 85 % of its height (the head leans, the body stays), which no
    similarity transform follows: what the matte follower cannot carry, the matting rate must."""
    h, w = img.shape[:2]
    mv, mg = [], []
    if bend:
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        lean = np.clip(1.2 - ys / h * 1.4, 0, 1)
    for i in range(frames):
        t = speed * i / fps
        if bend:  # the shift alone, weighted by height (backward maps for remap)
            dx, dy = shift(t, w, h)
            fx, fy = xs - np.float32(dx) * lean, ys - np.float32(dy) * lean
            frame = cv2.remap(img, fx, fy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            truth = cv2.remap(gt, fx, fy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        else:
            M = sway(t, w, h)
            frame = cv2.warpAffine(img, M, (w, h), borderMode=cv2.BORDER_REFLECT)
            truth = cv2.warpAffine(gt, M, (w, h), borderMode=cv2.BORDER_REFLECT)
        mv.append(noisy(frame, rng))
        mg.append(truth.astype(np.float32) / 255)
    return mv, mg


class ListSource(Source):
    """Frames held in memory, read once."""

    kind = "list"

    def __init__(self, frames, fps=30.0):
        self.frames, self.fps, self.i = frames, fps, 0
        self.frame_count = len(frames)

    def read(self):
        if self.i >= len(self.frames):
            return None
        self.i += 1
        return self.frames[self.i - 1]

    def rewind(self):
        self.i = 0
        return True


def lockstep_alphas(cfg: Config, matter, frames: list[np.ndarray], matting_hz: float = 0.0) -> list[np.ndarray]:
    """The alphas ``vcam process --alpha-out [--matting-hz N]`` gives, in [0, 1] float32. ``matter`` is
    reset first (a new clip); temporal filter and compositor are new."""
    cfg = cfg.replace(compositor={"mode": "color"}, output={"virtualcam": False})
    matter.reset()
    parts = Parts(ListSource(frames), matter, smoothing.create(cfg.smoothing), Compositor(cfg.compositor, cfg.refine), [])
    out: list[np.ndarray] = []
    run_lockstep(parts, keep_alpha=True, on_composite=lambda comp, frame: out.append(comp.alpha), close=False,
                 matting_hz=matting_hz, reuse_still=cfg.matting.reuse_still, reuse_max_age=cfg.matting.reuse_max_age,
                 reuse_followed=cfg.matting.reuse_followed, crop=cfg.matting.crop)
    return [a.astype(np.float32) * np.float32(1 / 255) for a in out]


def moving_quality(cfg: Config, matting_hz: float, *, poses: int = 3, frames: int = 30, seed: int = 0,
                   size: tuple[int, int] = (960, 640), matter=None, speed: float = 1.0, bend: bool = False) -> dict:
    """Moving IoU, BF and dtSSD of ``cfg``'s model at ``matting_hz`` mattes a second (0: one per
    frame) on ``poses`` generated full-body pictures (``size`` W x H), each swaying for ``frames``
    frames (``speed``, ``bend``: :func:`moving_clip`'s). ``matter``: that model, already loaded (else
    loaded and closed here)."""
    rng = np.random.default_rng(seed)
    own = matter is None
    matter = create_matter(cfg.matting) if own else matter
    r: dict[str, list[float]] = {"iou": [], "bf": [], "dtssd": []}
    try:
        for k in range(poses):
            img, gt = sample.full_body(size[1], size[0], seed=k)
            mv, mg = moving_clip(img, gt, frames, rng, speed=speed, bend=bend)
            alphas = lockstep_alphas(cfg, matter, mv, matting_hz)
            r["iou"].append(float(np.mean([iou(a >= 0.5, g >= 0.5) for a, g in zip(alphas, mg)])))
            r["bf"].append(float(np.mean([bf_score(a >= 0.5, g >= 0.5) for a, g in zip(alphas, mg)])))
            r["dtssd"].append(dtssd(alphas, mg))
    finally:
        if own:
            matter.close()
    return {k: round(float(np.mean(v)), 3) for k, v in r.items()}
