"""Robust Video Matting, MobileNetV3 (GPL-3.0): recurrent, strong on motion."""
from __future__ import annotations

import cv2
import numpy as np

from . import weights
from .base import Matter, model_input_shape, register
from .onnx import make_session


@register("rvm")
class RvmMatter(Matter):
    licence = "GPL-3.0"
    stateless = False

    def __init__(self, cfg):
        self.cfg = cfg
        path = weights.resolve(self.name, cfg.model_path)
        self.session = make_session(path, providers=cfg.providers, threads=cfg.threads, spin=cfg.spin, name=self.name)
        self._key = None
        self.reset()
        # The last foreground estimate ([h, w, 3] float32 RGB), for colour decontamination.
        self.last_fgr: np.ndarray | None = None

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
        fgr, pha, *rec = self.session.run(None, feeds)
        self._rec = rec
        self.last_fgr = fgr[0].transpose(1, 2, 0)
        return np.clip(pha[0, 0], 0.0, 1.0)

    def close(self) -> None:
        self.session = None
