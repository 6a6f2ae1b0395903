"""The units of work, with no thread of their own: the live stages run them in threads, the
offline runs call them in lockstep, stills call :func:`still_matte`.

* :class:`MattingUnit`: inference, then (in frame order) "keep only this person", the
  temporal filter, and the refinement fit against the frame the matte came from;
* :class:`CompositeUnit`: the compositor's render of a frame with a matte, timed.
"""
from __future__ import annotations

import threading
import time

from ..core.frames import Composite, Frame, Matte
from ..core.stats import Timings
from ..imaging.compositor import Compositor
from ..imaging.refine import Refiner, small_gray
from ..imaging.smoothing import Smoother


class MattingUnit:
    """``process(frame)``: the matte for ``frame``, or ``None`` when a newer frame's matte was
    made meanwhile (several threads may call it for a stateless model; a recurrent model sees
    one frame at a time)."""

    def __init__(self, matter, smoother: Smoother, refiner: Refiner | None = None):
        self.matter, self.smoother, self.refiner = matter, smoother, refiner
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
            matter = self.matter
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
            guide = small_gray(frame.image, raw.shape)  # [h, w] u8
            alpha = self.smoother(raw, guide)
        # Fit the refinement once per matte, against the frame it came from (cheap at
        # matte resolution); the compositor only applies it at the full frame rate.
        coef = self.refiner.coefficients(guide, alpha) if self.refiner is not None else None
        with self._lock:
            self.timings.add((time.perf_counter() - t0) * 1e3)
        return Matte(alpha=alpha, seq=frame.seq, t_capture=frame.t_capture, coef=coef)

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
