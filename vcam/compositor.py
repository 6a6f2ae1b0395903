"""The compositor: refine the newest matte against the current frame, then blend.

Modes (``compositor.mode``): ``blur``, ``replace`` (an image), ``color`` (a solid
colour or green screen) and ``none`` (passthrough). It fails closed: with no matte
yet, or a failed one, every mode but ``none`` shows the fully blurred frame, never
the raw room.
"""
from __future__ import annotations

import logging
import sys

import cv2
import numpy as np

from . import kernels
from .background import Blur, ImageBackground, color_bgr
from .config import CompositorConfig, RefineConfig
from .errors import ConfigError
from .frames import Composite, Frame, Matte
from .refine import Refiner

log = logging.getLogger(__name__)


class BufferPool:
    """Reusable arrays of one shape. A buffer is handed out again only when nobody
    else holds a reference to it (the GUIDE's ownership rule, checked rather than
    trusted), so the hot path does not allocate once the pool is warm."""

    def __init__(self, shape, dtype=np.uint8, limit: int = 8):
        self.shape, self.dtype, self.limit = tuple(shape), dtype, limit
        self._bufs: list[np.ndarray] = []

    def get(self) -> np.ndarray:
        for b in self._bufs:
            # References: the list, the loop variable, getrefcount's argument.
            if sys.getrefcount(b) <= 3:
                return b
        b = np.empty(self.shape, self.dtype)
        if len(self._bufs) < self.limit:
            self._bufs.append(b)
        return b


class Compositor:
    def __init__(self, cfg: CompositorConfig, refine: RefineConfig = RefineConfig()):
        self.refiner = Refiner(refine)
        self._size = None
        self.configure(cfg)

    def configure(self, cfg: CompositorConfig) -> None:
        """Apply a new compositor config (also while running); bad values raise before anything changes."""
        background = None
        if cfg.mode == "replace":
            if not cfg.background:
                raise ConfigError("mode 'replace' needs a background image: pass --bg IMAGE or set compositor.background")
            old = getattr(self, "background", None)
            background = old if old is not None and old.path == cfg.background else ImageBackground(cfg.background)
        color = color_bgr(cfg.color)
        self.cfg = cfg
        self.background = background
        self.color = np.array(color, np.uint8)
        self.blur = Blur(cfg.blur)
        self.fail_blur = Blur(100)

    def _buffers(self, H: int, W: int):
        if self._size != (H, W):
            self._size = (H, W)
            self._out = BufferPool((H, W, 3))
            self._alpha = BufferPool((H, W))
            self._bg = np.empty((H, W, 3), np.uint8)  # private scratch, never handed on
            self._gray = np.empty((H, W), np.uint8)

    def compose(self, img: np.ndarray, alpha: np.ndarray, out: np.ndarray | None = None, *,
                fg: np.ndarray | None = None, weight: np.ndarray | None = None) -> np.ndarray:
        """Blend ``fg`` (default ``img``) over this mode's background with a full-resolution alpha.

        ``img``: ``[H, W, 3] u8`` BGR, the frame the background blur is made from; ``alpha``:
        ``[H, W] u8``; ``weight``: the matte that keeps the person out of the blur (any
        resolution; default ``alpha``).
        """
        H, W = img.shape[:2]
        self._buffers(H, W)
        out = np.empty_like(img) if out is None else out
        fg = img if fg is None else fg
        if self.cfg.mode == "color":
            return kernels.blend_color(out, fg, self.color, alpha)
        if self.cfg.mode == "blur":
            bg = self.blur(img, alpha if weight is None else weight, self._bg)
        elif self.cfg.mode == "replace":
            bg = self.background.at(W, H)
        else:  # none
            np.copyto(out, img)
            return out
        return kernels.blend(out, fg, bg, alpha)

    def render(self, frame: Frame, matte: Matte | None, *, keep_alpha: bool = False) -> Composite:
        """Composite ``frame`` with ``matte`` (``None``: no matte yet → fail closed)."""
        img = frame.image  # [H, W, 3] u8 BGR
        H, W = img.shape[:2]
        self._buffers(H, W)
        out = self._out.get()
        cfg = self.cfg
        alpha = None
        have_matte = matte is not None and matte.alpha is not None
        if have_matte and (cfg.mode != "none" or keep_alpha):
            cv2.cvtColor(img, cv2.COLOR_BGR2GRAY, dst=self._gray)
            alpha = self.refiner.refine(self._gray, matte.alpha, self._alpha.get(), matte.coef)  # [H, W] u8
        elif keep_alpha:
            alpha = np.zeros((H, W), np.uint8)  # no matte: everything is background
        if cfg.mode == "none":
            np.copyto(out, img)
        elif not have_matte:
            self.fail_blur(img, None, out)  # fail closed: never the raw room
        else:
            self.compose(img, alpha, out, weight=matte.alpha)
        if cfg.mirror:
            cv2.flip(out, 1, dst=out)
            if keep_alpha:
                alpha = cv2.flip(alpha, 1)
        return Composite(image=out, seq=frame.seq, t_capture=frame.t_capture,
                         matte_seq=matte.seq if have_matte else -1,
                         alpha=alpha if keep_alpha else None, frame=img)
