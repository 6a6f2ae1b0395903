"""``lite``: MediaPipe's selfie-segmentation model (landscape, 144×256, Apache-2.0) for weak laptops.

The model file comes out of the ``mediapipe==0.10.21`` wheel (the 1.x wheels no
longer ship it), fetched with ``pip download --no-deps`` like every other model;
mediapipe itself is never installed, so its ``numpy<2`` pin never touches the
default install. The file is TFLite, run by Google's LiteRT interpreter
(``ai-edge-litert``, the optional extra ``vcam[lite]``). About 3.5 ms a frame on
one core here.

We use its soft confidence mask as the matte, then the same temporal filter and
guided refinement as every other model (not LFBW's threshold-and-dilate).
"""
from __future__ import annotations

import threading

import cv2
import numpy as np

from ...errors import ModelError
from .. import store
from .base import Matter, register

H, W = 144, 256
# The model's confidence is not an alpha: its 0.5 contour lies outside the person (a silhouette a
# little fat). Confidence EDGE is mapped to alpha 0.5, piecewise linearly (0 and 1 stay). Chosen on
# generated full-body pictures (still IoU 0.938 -> 0.945, BF 0.959 -> 0.965; moving at 3 Hz IoU
# 0.906 -> 0.914) and checked on development portraits that chose nothing (IoU 0.954 -> 0.955,
# BF 0.772 -> 0.779, MAE 0.038 unchanged).
EDGE = 0.6


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise ModelError("--model lite needs the LiteRT runtime: pip install 'vcam[lite]'") from None
    return Interpreter


@register("lite")
class LiteMatter(Matter):
    # It could run at the frame rate, but the guided refinement carries a 15 Hz matte across
    # frames, and the CPU saved is the point of this model (matting.max_hz overrides).
    default_max_hz = 15.0
    # Its matte of the mirrored frame, averaged in, costs ~4 ms and lifts the development stills
    # from IoU 0.946 / BF 0.756 to 0.951 / 0.770 (the model's errors are not mirror-symmetric).
    flip_auto = True

    def __init__(self, cfg):
        super().__init__(cfg)
        self.path = str(store.resolve(self.name, cfg.model_path))
        self._Interpreter = _interpreter_class()
        self._local = threading.local()  # one interpreter per thread: LiteRT's are not thread-safe
        self._interp()  # load now, so a bad file fails at start, not in the matting thread

    def _interp(self):
        loc = self._local
        if getattr(loc, "it", None) is None:
            try:
                it = self._Interpreter(model_path=self.path, num_threads=max(1, int(self.cfg.threads)))
                it.allocate_tensors()
            except (ValueError, RuntimeError) as e:
                first = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
                raise ModelError(f"cannot load the lite model {self.path} ({first}): it is corrupt; "
                                 f"run `vcam models pull lite --force` or fix --model-path") from None
            inp, out = it.get_input_details()[0], it.get_output_details()[0]
            if tuple(inp["shape"]) != (1, H, W, 3):
                raise ModelError(f"{self.path} is not the landscape selfie model (input {list(inp['shape'])}); "
                                 f"run `vcam models pull lite --force`")
            loc.it, loc.inp, loc.out = it, inp["index"], out["index"]
            loc.small = np.empty((H, W, 3), np.uint8)
            loc.blob = np.empty((1, H, W, 3), np.float32)
        return loc

    def infer(self, bgr: np.ndarray) -> np.ndarray:
        loc = self._interp()
        cv2.resize(bgr, (W, H), dst=loc.small, interpolation=cv2.INTER_AREA)
        np.multiply(loc.small[:, :, ::-1], 1 / 255.0, out=loc.blob[0], casting="unsafe")  # RGB in [0, 1]
        loc.it.set_tensor(loc.inp, loc.blob)
        loc.it.invoke()
        conf = np.clip(loc.it.get_tensor(loc.out)[0, :, :, 0], 0.0, 1.0)  # [144, 256] f32, fresh copy
        return calibrate(conf)

    def close(self) -> None:
        self._local = threading.local()


def calibrate(conf: np.ndarray) -> np.ndarray:
    """The model's confidence ``[h, w] f32`` in [0, 1] → a new alpha: ``EDGE`` → 0.5, piecewise linear."""
    low = conf < EDGE
    lo, hi = np.float32(0.5 / EDGE), np.float32(0.5 / (1.0 - EDGE))
    out = (conf - np.float32(EDGE)) * hi + np.float32(0.5)
    np.multiply(conf, lo, out=out, where=low)
    return out
