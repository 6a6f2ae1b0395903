"""Temporal smoothing of the model-resolution matte.

The peers use a plain exponential moving average: it cuts flicker but smears
motion. The ``adaptive`` filter keeps a strong average only where the matte is
static, and follows at once where it changes by more than ``motion``:

    keep = strength · clip(1 − |m − s| / motion, 0, 1)
    s    = keep · s + (1 − keep) · m

A scene cut (most of the matte changing at once) or a size change resets the
state. The smoother owns its state buffer and hands out a fresh array each time.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..core.registry import Registry

SMOOTHERS = Registry()  # smoothing.kind → Smoother class
register = SMOOTHERS.register


class Smoother:
    kind = "none"

    def __init__(self, cfg):
        self.cfg = cfg
        self._state: np.ndarray | None = None

    def reset(self) -> None:
        self._state = None

    def __call__(self, matte: np.ndarray, guide: np.ndarray | None = None) -> np.ndarray:
        """``matte``: ``[h, w] float32``; ``guide``: the frame as ``[h, w] uint8`` gray (for
        filters that look at image motion). Returns a new ``[h, w] float32`` array."""
        if self._state is None or self._state.shape != matte.shape:
            self._state = matte.astype(np.float32, copy=True)
            self._guide = None if guide is None else guide.astype(np.float32)
            return self._state.copy()
        self._step(matte, guide)
        return self._state.copy()

    def _step(self, matte: np.ndarray, guide: np.ndarray | None) -> None:
        self._state[...] = matte


register("none")(Smoother)


@register("ema")
class EmaSmoother(Smoother):
    def _step(self, matte, guide):
        k = np.float32(self.cfg.strength)
        self._state *= k
        self._state += (1 - k) * matte


@register("adaptive")
class AdaptiveSmoother(Smoother):
    """Strong where the *image* is static, immediate where it changes.

    Motion is read from the frame itself (the guide), not from the matte: sensor noise
    moves the model's output a lot at edges but barely moves the area-averaged image,
    while real motion changes the image at once. Where the image is static the matte
    keeps ``strength`` of its past; where it moves (image change above a few gray
    levels), or where the matte jumps by more than ``motion`` on a moving image, the
    new matte is taken as is. Without a guide it falls back to the matte's own change.
    """

    scene_cut = 0.25  # mean image change (0..1) above which the old state is thrown away
    noise_floor = 3.0 / 255  # image change below this is noise (after a 3x3 average)
    motion_full = 10.0 / 255  # image change above this is certainly motion

    def _step(self, matte, guide):
        s = self._state
        if guide is None or self._guide is None or self._guide.shape != guide.shape:
            d = np.abs(matte - s)
            keep = np.clip(1.0 - d * np.float32(1.0 / self.cfg.motion), 0.0, 1.0)
            if guide is not None:
                self._guide = guide.astype(np.float32)
        else:
            g = guide.astype(np.float32)
            diff = cv2.blur(np.abs(g - self._guide), (3, 3)) * np.float32(1 / 255)  # [h, w] image motion
            self._guide = g
            if float(diff.mean()) > self.scene_cut:
                s[...] = matte
                return
            # Motion spreads a little: a moving edge affects the matte beside it.
            diff = cv2.dilate(diff, np.ones((3, 3), np.uint8))
            keep = np.clip((self.motion_full - diff) * np.float32(1 / (self.motion_full - self.noise_floor)), 0.0, 1.0)
        keep *= np.float32(self.cfg.strength)
        s += (1.0 - keep) * (matte - s)


def create(cfg) -> Smoother:
    return SMOOTHERS[cfg.kind](cfg)
