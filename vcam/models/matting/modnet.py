"""MODNet (Apache-2.0): photographic portrait matting, the default model."""
from __future__ import annotations

import dataclasses
import threading

import cv2
import numpy as np

from .base import OnnxMatter, model_input_shape, register


@register("modnet")
class ModnetMatter(OnnxMatter):
    multiple = 32  # the graph fails on sizes that are not multiples of 32
    croppable = True  # a crop of the frame is a picture like any other (engine.units.PersonCrop)

    def __init__(self, cfg, **kw):
        super().__init__(cfg, **kw)
        self._local = threading.local()  # per-thread input buffers: infer() may run on several threads

    def input_shape(self, width: int, height: int) -> tuple[int, int]:
        return model_input_shape(width, height, self.cfg.input_size, self.multiple)

    def resize(self, input_size: int) -> bool:
        self.cfg = dataclasses.replace(self.cfg, input_size=int(input_size))  # buffers follow on the next call
        return True

    def _prepare(self, bgr: np.ndarray) -> np.ndarray:
        H, W = bgr.shape[:2]
        buf = self._local
        if getattr(buf, "key", None) != (H, W, self.cfg.input_size):
            h, w = self.input_shape(W, H)
            buf.small = np.empty((h, w, 3), np.uint8)  # [h, w, 3] u8, reused
            buf.blob = np.empty((1, 3, h, w), np.float32)  # [1, 3, h, w] f32, reused (ORT copies it in)
            buf.key = (H, W, self.cfg.input_size)
        h, w = buf.small.shape[:2]
        cv2.resize(bgr, (w, h), dst=buf.small, interpolation=cv2.INTER_AREA)
        # BGR -> RGB planes, scaled to [-1, 1]
        for c in range(3):
            np.multiply(buf.small[:, :, 2 - c], 1 / 127.5, out=buf.blob[0, c], casting="unsafe")
        buf.blob -= 1.0
        return buf.blob

    def infer(self, bgr: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input_name: self._prepare(bgr)})[0]
        return np.clip(out[0, 0], 0.0, 1.0)  # [h, w] float32, fresh
