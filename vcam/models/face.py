"""Is there a human face in the picture? MediaPipe's full-range face detector (BlazeFace, 192×192),
from the same wheel as the ``lite`` model (the store's ``lite-face``, fetched with ``lite``).

``--model auto`` asks it about pictures that the person models take for a person. Those models
also take many furry animals for one, and then read the animal's head as a head and shoulders and
cut off the rest (a lion's body, on the development photos). A human face is what they cannot
fake: on the 400 development portraits its score is at least 0.57, on the 13 animals at most 0.22.

Only the best score is needed, so the boxes are not decoded beyond their anchors (no
non-maximum suppression): 6-11 ms a picture on one core, most of it shrinking a large photo.
"""
from __future__ import annotations

import threading

import cv2
import numpy as np

from ..errors import ModelError
from . import store
from .matting.lite import interpreter_class, quiet_first

SIZE = 192  # the model's input side
MIN_SCORE = 0.5  # MediaPipe's own threshold for this model


class FaceFinder:
    """``score(bgr)``: the best face score in a picture, 0-1; ``seen(bgr)``: is it at least
    :data:`MIN_SCORE`. Thread-safe (one interpreter, behind a lock: a call takes milliseconds)."""

    def __init__(self, path: str | None = None):
        if path is None:
            found = store.companion("lite-face")
            if found is None:
                raise ModelError("the face model is not cached: run `vcam models pull lite`")
            path = str(found)
        Interpreter = interpreter_class()

        def make():
            it = Interpreter(model_path=path, num_threads=1)
            it.allocate_tensors()  # (where LiteRT says it made its XNNPACK delegate: quiet_first keeps that off stderr)
            return it

        try:
            self._it = quiet_first(make)
        except (ValueError, RuntimeError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
            raise ModelError(f"cannot load the face model {path} ({first}): run `vcam models pull lite --force`") from None
        inp = self._it.get_input_details()[0]
        if tuple(inp["shape"]) != (1, SIZE, SIZE, 3):
            raise ModelError(f"{path} is not the full-range face model (input {list(inp['shape'])}); "
                             f"run `vcam models pull lite --force`")
        self._inp = inp["index"]
        outs = self._it.get_output_details()
        self._scores = next(o["index"] for o in outs if o["shape"][-1] == 1)
        self._lock = threading.Lock()

    def score(self, bgr: np.ndarray) -> float:
        h, w = bgr.shape[:2]
        side = max(h, w)
        scale = SIZE / side
        small = cv2.resize(bgr, (max(1, round(w * scale)), max(1, round(h * scale))),
                           interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        # letterboxed, as MediaPipe feeds it: the picture's aspect kept, centred on black
        blob = np.full((1, SIZE, SIZE, 3), -1.0, np.float32)
        sh, sw = small.shape[:2]
        y0, x0 = (SIZE - sh) // 2, (SIZE - sw) // 2
        blob[0, y0:y0 + sh, x0:x0 + sw] = small[:, :, ::-1] / 127.5 - 1.0
        with self._lock:
            self._it.set_tensor(self._inp, blob)
            self._it.invoke()
            raw = float(self._it.get_tensor(self._scores).max())
        return float(1.0 / (1.0 + np.exp(-np.clip(raw, -100.0, 100.0))))

    def seen(self, bgr: np.ndarray) -> bool:
        return self.score(bgr) >= MIN_SCORE
