"""Robust Video Matting, MobileNetV3 (GPL-3.0): recurrent, strong on motion."""
from __future__ import annotations

import cv2
import numpy as np

from .base import OnnxMatter, model_input_shape, register


@register("rvm")
class RvmMatter(OnnxMatter):
    """The recurrent state goes in and comes out of every inference explicitly (RVM's own
    ``inference.py`` does the same); ``reset()`` starts it afresh."""

    stateless = False

    def __init__(self, cfg, **kw):
        super().__init__(cfg, **kw)
        self._key = None
        self.reset()

    def reset(self) -> None:
        z = np.zeros((1, 1, 1, 1), np.float32)
        self._rec = [z, z, z, z]
        self._key = None

    def infer(self, bgr: np.ndarray) -> np.ndarray:
        H, W = bgr.shape[:2]
        # The source goes in at twice the model's resolution; the network itself sees
        # ~input_size px (downsample_ratio), and its deep guided filter upsamples.
        h, w = model_input_shape(W, H, min(2 * self.cfg.input_size, min(W, H)), 16)
        if self._key != (h, w):
            self.reset()
            self._key = (h, w)
        ratio = np.array([min(1.0, self.cfg.input_size / min(h, w))], np.float32)
        small = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA)
        src = (small[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32)) * (1 / 255.0)
        feeds = {"src": src, "r1i": self._rec[0], "r2i": self._rec[1], "r3i": self._rec[2],
                 "r4i": self._rec[3], "downsample_ratio": ratio}
        _fgr, pha, *rec = self.session.run(None, feeds)
        self._rec = rec
        return np.clip(pha[0, 0], 0.0, 1.0)
