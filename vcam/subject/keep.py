"""Live "keep only this person" (``vcam ctl keep X,Y``, or a click in the preview).

At selection time MobileSAM encodes *one* frame, off the matting thread, and says
which region the click means. From then on every matte is cut to the connected
regions that overlap the tracked region of the previous matte; everyone else goes
behind the background. Live cost: one connected-components pass at matte resolution
(about 0.1 ms). ``keep all`` clears it.

Limits: two people who touch form one region at matte resolution and are kept
together until they part; a person who leaves the picture is re-acquired only
where they were last seen.
"""
from __future__ import annotations

import logging
import threading

import cv2
import numpy as np

from ..core.mailbox import Closed, Mailbox
from ..core.worker import Worker
from ..errors import ConfigError, VcamError
from ..models.sam import get_sam
from .prompt import Prompt

log = logging.getLogger(__name__)

_SE = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
_GROW = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (11, 11))


class _Encoder(Worker):
    """Encodes the newest selection request with SAM, off the matting thread."""

    thread_name = "vcam-keep-sam"

    def __init__(self, encode):
        super().__init__()
        self.encode = encode
        self.requests: Mailbox = Mailbox("keep→sam")  # latest wins: a newer click replaces an unstarted one

    def step(self) -> bool:
        try:
            req = self.requests.take(timeout=0.2)
        except Closed:
            return False
        if req is not None:
            self.encode(*req)
        return True

    def on_stop(self) -> None:
        self.requests.close()


class SubjectKeeper:
    def __init__(self, sam_factory=None):
        self._sam_factory = sam_factory or get_sam  # the process-wide MobileSAM, loaded on the first request
        self._encoder: _Encoder | None = None
        self._running = None  # the cancel handle of the encode in progress
        self._closed = False
        self._lock = threading.Lock()
        self._target: np.ndarray | None = None  # bool at matte resolution: who we keep
        self._pending = None  # (point as fractions, SAM candidates or None), waiting for the next matte
        self._generation = 0
        self.state = "all"  # all | selecting | tracking | lost
        self.point: tuple[float, float] | None = None
        self.note = ""

    # --- commands (control thread) ----------------------------------------------------------

    def request(self, image: np.ndarray, x: float, y: float) -> None:
        """Select the person at pixel (x, y) of ``image`` (the current camera frame)."""
        h, w = image.shape[:2]
        if not (0 <= x < w and 0 <= y < h):
            raise ConfigError(f"keep {x:g},{y:g} is outside the {w}x{h} picture: use 0 <= X < {w}, 0 <= Y < {h}")
        with self._lock:
            self._generation += 1
            gen = self._generation
            self.state, self.point, self.note = "selecting", (float(x), float(y)), ""
            if self._encoder is None:
                self._encoder = _Encoder(self._encode).start()
        self._encoder.requests.put((image, x, y, gen))

    def close(self) -> None:
        """Stop the encoder thread (idempotent); an encode in progress is cancelled, not waited for,
        so that no thread is left inside onnxruntime when the process exits."""
        with self._lock:
            enc, self._encoder, self._closed = self._encoder, None, True
            if self._running is not None:
                self._running.terminate = True
        if enc is not None:
            enc.stop(timeout=1.0)

    def _encode(self, image, x, y, gen) -> None:
        h, w = image.shape[:2]
        cands, note = None, ""
        try:
            sam = self._sam_factory()
            with self._lock:
                if self._closed:
                    return
                self._running = run = sam.cancellable()
            emb = sam.embed(image, cancel=run)
            small = (max(1, h // 4), max(1, w // 4))
            cands = sam.predict(emb, Prompt(points=[(x, y)]), out_size=small).logits > 0
        except VcamError as e:
            note = f"without MobileSAM ({e}); keeping the region under the click"
            log.warning("keep: %s", note)
        except Exception as e:  # SAM must never take the pipeline down
            if self._closed:
                return  # cancelled by close()
            note = f"MobileSAM failed ({type(e).__name__}: {e}); keeping the region under the click"
            log.warning("keep: %s", note)
        finally:
            with self._lock:
                self._running = None
        with self._lock:
            if gen == self._generation:
                self._pending = ((x / w, y / h), cands)
                self.note = note

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._target, self._pending = None, None
            self.state, self.point, self.note = "all", None, ""

    # --- per matte (matting thread, in frame order) -----------------------------------------

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """``raw`` [h, w] float alpha → the same with everyone but the kept person removed."""
        if self.state == "all":
            return raw
        with self._lock:
            pending, self._pending = self._pending, None
            target = self._target
        fg = (raw > 0.5).astype(np.uint8)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
        h, w = raw.shape
        kept = np.zeros(n, bool)
        if pending is not None:
            (fx, fy), cands = pending
            px, py = min(w - 1, int(fx * w)), min(h - 1, int(fy * h))
            under = labels[max(0, py - 2):py + 3, max(0, px - 2):px + 3]
            kept[np.unique(under[under > 0])] = True
            if cands is not None and not kept.any():
                # The click missed the matte (an edge, loose hair): SAM's region picks the person.
                best = cv2.resize(cands[int(np.argmax(cands.reshape(len(cands), -1).sum(1)))].astype(np.uint8),
                                  (w, h), interpolation=cv2.INTER_NEAREST)
                overlap = np.bincount(labels[best > 0], minlength=n)
                overlap[0] = 0
                if overlap.max() > 0:
                    kept[int(np.argmax(overlap))] = True
            if not kept.any():
                with self._lock:
                    self.note = "nobody under that point: click on a person"
        elif target is not None and n > 1:
            near = cv2.dilate(target.astype(np.uint8), _GROW) > 0
            overlap = np.bincount(labels[near], minlength=n)
            overlap[0] = 0
            area = stats[:, cv2.CC_STAT_AREA]
            kept = (overlap >= 0.2 * np.maximum(area, 1)) & (overlap > 0)
            if not kept.any() and overlap.max() > 0:
                kept[int(np.argmax(overlap))] = True
        elif target is None:
            # Still selecting (SAM is encoding): everyone stays until the choice is made.
            return raw if self.state == "selecting" else np.zeros_like(raw)
        if kept.any():
            mask = kept[labels]
            with self._lock:
                if pending is not None or self._pending is None:
                    self._target, self.state = mask, "tracking"
            keep = cv2.dilate(mask.astype(np.uint8), _SE).astype(raw.dtype)  # the soft border stays
            return raw * keep
        with self._lock:
            if pending is not None and self._target is None:
                self.state = "lost"
            elif self.state == "tracking":
                self.state = "lost"
        return np.zeros_like(raw)

    def status(self) -> dict:
        with self._lock:
            out = {"state": self.state}
            if self.point is not None:
                out["point"] = [round(self.point[0], 1), round(self.point[1], 1)]
            if self.note:
                out["note"] = self.note
            return out
