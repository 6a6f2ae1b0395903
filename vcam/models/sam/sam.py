"""MobileSAM on onnxruntime: encode an image once, then answer prompts in milliseconds."""
from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

from ..runtime import make_session
from .export import verified_paths

SIZE = 1024
DECODE_SIZE = 512  # long side of the decoder's own upsampling (see predict)
_MEAN = np.array([123.675, 116.28, 103.53], np.float32)
_STD = np.array([58.395, 57.12, 57.375], np.float32)


@dataclass(frozen=True)
class Embedding:
    """One encoded image: SAM's [1, 256, 64, 64] features and the geometry to map prompts."""

    features: np.ndarray
    height: int
    width: int
    scale: float  # image pixels → encoder pixels


@dataclass(frozen=True)
class Masks:
    logits: np.ndarray  # [3, H, W] float32 at the requested size; > 0 is "in"
    iou: np.ndarray  # [3] SAM's predicted IoU for each mask
    low_res: np.ndarray  # [3, 256, 256] logits, for a follow-up prompt

    def binary(self, i: int) -> np.ndarray:
        return self.logits[i] > 0


class MobileSam:
    """The exported encoder/decoder pair (``vcam models pull mobilesam``). Thread-safe."""

    def __init__(self, providers: str = "auto", threads: int = 2):
        enc, dec = verified_paths()
        self.encoder = make_session(enc, providers=providers, threads=threads, spin=False, name="mobilesam")
        self.decoder = make_session(dec, providers=providers, threads=threads, spin=False, name="mobilesam")
        self._lock = threading.Lock()

    @staticmethod
    def cancellable():
        """A handle for :meth:`embed` that another thread can cancel: ``handle.terminate = True``
        makes the running encode raise at once (an encode takes seconds; a stop must not wait)."""
        import onnxruntime as ort

        return ort.RunOptions()

    def embed(self, bgr: np.ndarray, *, cancel=None) -> Embedding:
        """``cancel``: a :meth:`cancellable` handle."""
        h, w = bgr.shape[:2]
        scale = SIZE / max(h, w)
        nh, nw = int(h * scale + 0.5), int(w * scale + 0.5)
        rgb = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        x = np.zeros((SIZE, SIZE, 3), np.float32)  # padding after normalisation is zero, as in SAM
        x[:nh, :nw] = (rgb[:, :, ::-1].astype(np.float32) - _MEAN) / _STD
        with self._lock:
            feats = self.encoder.run(None, {"image": x.transpose(2, 0, 1)[None].copy()}, cancel)[0]
        return Embedding(feats, h, w, scale)

    def predict(self, emb: Embedding, prompt, *, out_size: tuple[int, int] | None = None,
                mask_input: np.ndarray | None = None) -> Masks:
        """SAM's three candidate masks for ``prompt`` (a :class:`vcam.subject.Prompt`: ``points``,
        ``neg`` and ``clipped_box``, in image pixels), at ``out_size`` (h, w; default the image's)."""
        pts, labels = [], []
        for p in prompt.points:
            pts.append(p), labels.append(1)
        for p in prompt.neg:
            pts.append(p), labels.append(0)
        box = prompt.clipped_box(emb.width, emb.height)
        if box is not None:
            pts += [box[:2], box[2:]]
            labels += [2, 3]
        else:
            pts.append((0.0, 0.0)), labels.append(-1)  # SAM's "no box" padding point
        coords = np.asarray(pts, np.float32)[None] * emb.scale
        oh, ow = out_size or (emb.height, emb.width)
        # The decoder upsamples its 256x256 masks to the size it is given, inside the graph,
        # for all four candidates; SAM's masks carry no detail beyond 256 px anyway, so it
        # works at most at DECODE_SIZE (same aspect) and only the answer is scaled further.
        k = min(1.0, DECODE_SIZE / max(emb.height, emb.width))
        dh, dw = max(1, round(emb.height * k)), max(1, round(emb.width * k))
        feeds = {
            "image_embeddings": emb.features,
            "point_coords": coords,
            "point_labels": np.asarray(labels, np.float32)[None],
            "mask_input": (mask_input if mask_input is not None else np.zeros((256, 256), np.float32))[None, None],
            "has_mask_input": np.asarray([1.0 if mask_input is not None else 0.0], np.float32),
            "orig_im_size": np.asarray([dh, dw], np.float32),
        }
        with self._lock:
            masks, iou, low = self.decoder.run(None, feeds)
        logits = masks[0]
        if (oh, ow) != (dh, dw):
            logits = np.stack([cv2.resize(m, (ow, oh), interpolation=cv2.INTER_LINEAR) for m in logits])
        return Masks(logits, iou[0], low[0])
