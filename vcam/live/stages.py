"""The matting and compositing threads: the engine's units, run at their own rates.

* :class:`MattingStage` takes the newest frame, honours the rate cap, runs the unit, guards
  the result and, when inference fails, publishes "no matte" (the output blurs) and backs off;
* :class:`CompositeStage` composites every frame with the newest matte, and fails closed
  when that matte is too old to fit the person.
"""
from __future__ import annotations

import logging
import threading
import time

from ..core.frames import Frame, Matte
from ..core.mailbox import Closed, Mailbox
from ..core.worker import StateLog, Worker
from ..engine.units import CompositeUnit, MattingUnit
from ..errors import VcamError
from ..imaging.guard import Guard

log = logging.getLogger(__name__)


class _FrameStage(Worker):
    """Takes each new frame from ``inbox`` (when :meth:`ready`), hands it to :meth:`handle`, and
    closes ``outbox`` when it ends, so the next stage ends too."""

    inbox: Mailbox
    outbox: Mailbox

    def ready(self) -> bool:
        return True

    def handle(self, frame: Frame) -> None:
        raise NotImplementedError

    def step(self) -> bool:
        if not self.ready():
            return False
        try:
            frame = self.inbox.take(timeout=0.1)
        except Closed:
            return False
        if frame is not None:
            self.handle(frame)
        return True

    def finished(self) -> None:
        self.outbox.close()


class MattingStage(_FrameStage):
    """``threads`` workers for a stateless model (a recurrent one runs one inference at a time)."""

    thread_name = "vcam-matting"

    def __init__(self, unit: MattingUnit, inbox: Mailbox, outbox: Mailbox, *, max_hz: float = 0.0,
                 threads: int = 1, guard: bool = False, on_error=None, governor=None):
        super().__init__(on_error=on_error, threads=threads if unit.matter.stateless else 1)
        self.governor = governor  # a vcam.engine.budget.Governor: the CPU budget gates each inference
        self.unit, self.inbox, self.outbox = unit, inbox, outbox
        self.max_hz = max_hz  # the user's cap; 0: the model's own default_max_hz
        self.guard = Guard() if guard else None
        self.errors = 0
        self._consecutive = 0
        self._failed_seq = -1
        self._failing = StateLog(log, False)
        self._lock = threading.Lock()
        self._next_start = 0.0
        self.t_first: float | None = None
        self._inflight: dict[int, float] = {}  # worker thread id -> its CPU clock when its inference began

    def inflight_cpu(self) -> float:
        """CPU s the inferences still running have taken so far (read from each worker's own CPU
        clock, scaled as :meth:`handle` scales a finished one). The budget's controller leaves it
        out of the window it is spent in, and counts the whole inference when it ends: a matte that
        takes longer than the controller's period otherwise reads as CPU of everything else."""
        with self._lock:
            started = list(self._inflight.items())
        total = 0.0
        for ident, t0 in started:
            try:
                total += time.clock_gettime(time.pthread_getcpuclockid(ident)) - t0
            except (OSError, OverflowError):  # the thread has just ended
                pass
        return total * self._cpu_scale()

    def _cpu_scale(self) -> int:
        """With one onnxruntime/OpenVINO thread the inference runs in the worker's thread, so its CPU is
        that thread's; with more, the pool's share is estimated as this many times it (the controller's
        feedback on the process's CPU corrects what the estimate misses)."""
        return max(1, self.unit.matter.cfg.threads or 2)

    @property
    def min_period(self) -> float:
        """Seconds between inference starts: from the user's cap, else the current model's own."""
        hz = self.max_hz or self.unit.matter.default_max_hz
        return 1.0 / hz if hz > 0 else 0.0

    @property
    def withheld(self) -> int:
        return self.guard.withheld if self.guard is not None else 0

    def swap(self, matter=None, smoother=None, max_hz: float | None = None):
        """Switch model, smoother and/or rate cap while running; returns the old matter."""
        if max_hz is not None:
            self.max_hz = max_hz
        old = self.unit.swap(matter=matter, smoother=smoother)
        if matter is not None:
            self.restart()
        return old

    def move_to(self, model: str, input_size: int):
        """The CPU budget's ladder moved (:meth:`MattingUnit.move_to`); a new model restarts the rate."""
        new = self.unit.move_to(model, input_size)
        if new is not None:
            self.restart()
        return new

    def restart(self) -> None:
        """A new model is in: its first inference starts at once (the old one's result in flight is
        dropped, and waiting out the old rate's gap would age the matte in use towards failing closed)."""
        with self._lock:
            self._next_start = 0.0
        if self.governor is not None:
            self.governor.restart()

    def handle(self, frame: Frame) -> None:
        if self.t_first is None:
            self.t_first = time.monotonic()
        gov = self.governor
        if gov is not None:
            t_cpu, t_wall = time.thread_time(), time.monotonic()
            me = threading.get_ident()
            with self._lock:
                self._inflight[me] = t_cpu
        try:
            matte = self.unit.process(frame)
        except VcamError:
            raise
        except Exception as e:
            self._failed(frame, e)
            return
        finally:
            if gov is not None:
                with self._lock:
                    self._inflight.pop(me, None)
        if gov is not None:
            cpu = (time.thread_time() - t_cpu) * self._cpu_scale()
            kind = self.unit.last_kind()
            with gov.lock:
                gov.spent(cpu, inferred=kind != "reused", wall_s=time.monotonic() - t_wall, upgrade=kind == "upgraded")
        if matte is not None:
            self._succeeded(frame.seq)
            self.outbox.put(self.guard.check(matte) if self.guard is not None else matte)

    def _failed(self, frame: Frame, e: Exception) -> None:
        """Fail closed: publish "no matte" so the compositor blurs everything, log once per run of
        failures, and retry with backoff rather than on every frame. The camera stays in the
        call, blurred, instead of the program dying."""
        with self._lock:
            self.errors += 1
            self._consecutive += 1
            self._failed_seq = max(self._failed_seq, frame.seq)
            backoff = min(2.0, 0.05 * 2 ** min(self._consecutive, 6))
        self._failing(True, logging.ERROR, "matting failed (%s: %s); output is fully blurred until it recovers",
                      type(e).__name__, e)
        self.outbox.put(Matte(alpha=None, seq=frame.seq, t_capture=frame.t_capture))
        self.wait(backoff)

    def _succeeded(self, seq: int) -> None:
        """A success on a frame newer than the last failure ends a run of failures (a result that
        was already in flight on another worker does not)."""
        with self._lock:
            if self._consecutive == 0 or seq < self._failed_seq:
                return
            self._consecutive = 0
        self._failing(False, logging.INFO, "matting recovered")

    def ready(self) -> bool:
        """Honour the rate cap across all workers: each inference starts a full period after the
        previous one started (wait for the slot first, then take the newest frame). False if
        stopped while waiting."""
        gov = self.governor
        while gov is not None:
            with gov.lock:
                wait = gov.may_start(time.monotonic())
            if not wait:
                break
            if self.wait(wait):
                return False
        period = self.min_period
        if not period:
            return True
        with self._lock:
            start = max(time.monotonic(), self._next_start)
            self._next_start = start + period
        return not self.wait(start - time.monotonic())


class CompositeStage(_FrameStage):
    """Refine + blend each frame with the newest matte."""

    thread_name = "vcam-compositor"
    said_episodes = 3  # stale episodes logged one by one; after them, one line for them all

    def __init__(self, unit: CompositeUnit, inbox: Mailbox, mattes: Mailbox, outbox: Mailbox, *,
                 max_matte_age: float = 1.0, on_error=None):
        super().__init__(on_error=on_error)
        self.unit = unit
        self.inbox, self.mattes, self.outbox = inbox, mattes, outbox
        self.max_matte_age = max_matte_age  # s between the matte's frame and the current one before failing closed
        self._stale = StateLog(log, False)
        self.stale_episodes = 0  # times the matte in use grew too old and the output failed closed
        self.stale_frames = 0  # frames output fully blurred for that
        self._first_matte = StateLog(log, False)
        self.t_first_frame: float | None = None

    def handle(self, frame: Frame) -> None:
        if self.t_first_frame is None:
            self.t_first_frame = frame.t_capture
        matte = self.mattes.peek()
        if matte is not None:
            age = frame.t_capture - matte.t_capture
            if age > self.max_matte_age:
                # Matting has stalled (a slow or stuck model): an old matte no longer fits the
                # person, and would uncover the room they moved away from. Fail closed.
                self.stale_frames += 1
                # The first episodes get a line each way; a model that keeps falling behind gets one line.
                quiet = self.stale_episodes >= self.said_episodes
                if self._stale(True, logging.WARNING, "" if quiet else "matte is %.1f s old: output is fully "
                               "blurred until matting catches up", age):
                    self.stale_episodes += 1
                    if self.stale_episodes == self.said_episodes + 1:
                        log.warning("matting keeps falling behind (%d times its matte grew older than "
                                    "matting.max_age, %.1f s): the output blurs each time, now without a line each; "
                                    "choose a faster model (lite, modnet) or raise matting.max_age",
                                    self.stale_episodes, self.max_matte_age)
                matte = None
            else:
                self._stale(False, logging.INFO,
                            "matting caught up" if self.stale_episodes <= self.said_episodes else "")
                self._first_matte(True, logging.INFO, "first matte in use, %.1f s after the first frame",
                                  frame.t_capture - self.t_first_frame)
        self.outbox.put(self.unit.process(frame, matte))
