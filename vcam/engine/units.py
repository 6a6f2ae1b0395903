"""The units of work, with no thread of their own: the live stages run them in threads, the
offline runs call them in lockstep, stills call :func:`still_matte`.

* :class:`MattingUnit`: inference, then (in frame order) "keep only this person", the
  temporal filter, and the refinement fit against the frame the matte came from;
* :class:`CompositeUnit`: the compositor's render of a frame with a matte, timed.
"""
from __future__ import annotations

import threading
import time

import cv2
import numpy as np

from ..core.frames import Composite, Frame, Matte
from ..core.stats import Timings
from ..imaging.compositor import Compositor
from ..imaging.refine import Refiner, small_gray
from ..imaging.smoothing import Smoother


class StillDetector:
    """Has the picture changed, at matte resolution, since the last inferred frame? Sensor noise
    does not count: the difference is averaged over 3x3 and only pixels that moved by more than
    ``level`` gray levels count; the picture has changed when over ``fraction`` of them did, or
    when the last inference is ``max_age`` s old. Compared with the last *inferred* frame, so slow
    drift adds up until it counts."""

    level = 4  # gray levels, after the 3x3 mean (sensor noise is about 1 there)
    fraction = 0.002  # of the matte's pixels: a 13x13 patch of a 224x384 matte

    def __init__(self, max_age: float):
        self.max_age = max_age
        self._guide: np.ndarray | None = None
        self._t = 0.0

    def still(self, guide: np.ndarray, t: float) -> bool:
        """``guide``: the frame's ``[h, w] u8`` gray at matte resolution; ``t``: its capture time."""
        g = self._guide
        if g is None or g.shape != guide.shape or t - self._t >= self.max_age:
            return False
        moved = cv2.blur(cv2.absdiff(guide, g), (3, 3)) > self.level
        return np.count_nonzero(moved) <= self.fraction * moved.size

    def inferred(self, guide: np.ndarray, t: float) -> None:
        self._guide, self._t = guide, t

    def reset(self) -> None:
        self._guide = None


class MattingUnit:
    """``process(frame)``: the matte for ``frame``, or ``None`` when a newer frame's matte was
    made meanwhile (several threads may call it for a stateless model; a recurrent model sees
    one frame at a time). With ``reuse_still`` the last matte is reused, without inference, while
    the picture is still (:class:`StillDetector`)."""

    def __init__(self, matter, smoother: Smoother, refiner: Refiner | None = None, *, reuse_still: bool = False,
                 reuse_max_age: float = 1.0):
        self.matter, self.smoother, self.refiner = matter, smoother, refiner
        self.still = StillDetector(reuse_max_age) if reuse_still else None
        self.reused = 0  # mattes reused for a still picture, without inference
        self._last: Matte | None = None
        self.keeper = None  # a vcam.subject.keep.SubjectKeeper once `keep X,Y` is used
        self._lock = threading.Lock()  # frame order, smoother state, the parts swapped live
        self._serial = threading.Lock()
        self._last_seq = -1
        self._size = None
        self.stale = 0  # results that finished after a newer one, dropped
        self.timings = Timings()  # ms per matte; timings.count is the number made
        self.last_frame: Frame | None = None

    def process(self, frame: Frame) -> Matte | None:
        size = frame.size
        with self._lock:
            if size != self._size:
                self.matter.reset()
                self.smoother.reset()
                self._size = size
                self._last = None
                if self.still is not None:
                    self.still.reset()
            matter, last = self.matter, self._last
        guide = None  # [h, w] u8: the frame at matte resolution, made once for the still check and the fit
        if self.still is not None and last is not None and (self.keeper is None or self.keeper.state == "all"):
            guide = small_gray(frame.image, last.alpha.shape)
            with self._lock:
                if self.still.still(guide, frame.t_capture) and frame.seq > self._last_seq:
                    self._last_seq = frame.seq
                    self.last_frame = frame
                    self.reused += 1
                    return Matte(alpha=last.alpha, seq=frame.seq, t_capture=frame.t_capture, coef=last.coef)
        t0 = time.perf_counter()
        if matter.stateless:
            raw = matter.infer(frame.image)  # [h, w] f32; outside the lock, threads run in parallel
        else:
            with self._serial:
                raw = matter.infer(frame.image)
        with self._lock:
            if matter is not self.matter:
                return None  # the model was switched meanwhile
            if frame.seq <= self._last_seq:
                self.stale += 1
                return None
            self._last_seq = frame.seq
            self.last_frame = frame
            if self.keeper is not None:
                raw = self.keeper.apply(raw)  # "keep only this person": in frame order
            # The frame at matte resolution: the smoother's motion detector and the refiner's guide.
            if guide is None or guide.shape != raw.shape:
                guide = small_gray(frame.image, raw.shape)
            alpha = self.smoother(raw, guide)
        # Fit the refinement once per matte, against the frame it came from (cheap at
        # matte resolution); the compositor only applies it at the full frame rate.
        coef = self.refiner.coefficients(guide, alpha) if self.refiner is not None else None
        matte = Matte(alpha=alpha, seq=frame.seq, t_capture=frame.t_capture, coef=coef)
        with self._lock:
            self.timings.add((time.perf_counter() - t0) * 1e3)
            if self.still is not None and matter is self.matter:
                self._last = matte
                self.still.inferred(guide, frame.t_capture)
        return matte

    def swap(self, matter=None, smoother: Smoother | None = None):
        """Switch the model and/or the temporal filter while running; returns the old matter
        (``None`` if the model stayed). The filter restarts either way."""
        with self._lock:
            old = self.matter
            if matter is not None:
                self.matter = matter
            if smoother is not None:
                self.smoother = smoother
            self.smoother.reset()
            self._last = None  # a new model or filter: infer afresh, do not reuse the old one's matte
            return old if matter is not None else None


def still_matte(matter, refiner: Refiner, frame: Frame) -> Matte:
    """The matte of one independent image: no order, no temporal state, the same refinement fit."""
    matter.reset()
    raw = matter.infer(frame.image)  # [h, w] f32
    coef = refiner.coefficients(small_gray(frame.image, raw.shape), raw)
    return Matte(alpha=raw, seq=frame.seq, t_capture=frame.t_capture, coef=coef)


class CompositeUnit:
    """``process(frame, matte)``: refine + blend ``frame`` with ``matte`` (``None``: fail closed)."""

    def __init__(self, compositor: Compositor, *, keep_alpha: bool = False):
        self.compositor = compositor
        self.keep_alpha = keep_alpha
        self.timings = Timings()  # ms per composite; timings.count is the number made
        self.matte_age = Timings()  # frames between the matte's frame and the composited frame

    def process(self, frame: Frame, matte: Matte | None) -> Composite:
        t0 = time.perf_counter()
        comp = self.compositor.render(frame, matte, keep_alpha=self.keep_alpha)
        self.timings.add((time.perf_counter() - t0) * 1e3)
        if matte is not None:
            self.matte_age.add(frame.seq - matte.seq)
        return comp
