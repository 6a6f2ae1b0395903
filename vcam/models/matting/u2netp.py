"""U2-Net-p (Apache-2.0): salient-object segmentation, for products and general subjects."""
from __future__ import annotations

import cv2
import numpy as np

from .base import OnnxMatter, register

_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)


@register("u2netp")
class U2netpMatter(OnnxMatter):
    size = 320  # fixed by the graph
    hard_edges = True
    outputs = 1  # the final mask; the six side outputs are training aids

    def infer(self, bgr: np.ndarray) -> np.ndarray:
        small = cv2.resize(bgr, (self.size, self.size), interpolation=cv2.INTER_AREA)
        rgb = small[:, :, ::-1].astype(np.float32)
        rgb /= max(float(rgb.max()), 1e-6)
        blob = ((rgb - _MEAN) / _STD).transpose(2, 0, 1)[None].astype(np.float32)
        d0 = self.session.run(None, {self.input_name: blob})[0][0, 0]
        lo, hi = float(d0.min()), float(d0.max())
        return ((d0 - lo) / max(hi - lo, 1e-6)).astype(np.float32)  # [320, 320]
