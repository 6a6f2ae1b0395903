"""The paced output thread: it sends the newest composite to every sink at a steady fps and
re-sends the last one when nothing new has come, so the meeting app never sees a stall."""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Callable

import numpy as np

from ..core.frames import Composite
from ..core.mailbox import Closed, Mailbox
from ..core.stats import Timings
from ..core.worker import StateLog, Worker
from ..media.sinks import Sink

log = logging.getLogger(__name__)


class OutputStage(Worker):
    thread_name = "vcam-output"

    def __init__(self, inbox: Mailbox, sinks: list[Sink], fps: float,
                 on_error: Callable[[BaseException], None] | None = None,
                 curtain: Callable[[np.ndarray], np.ndarray] | None = None, stall_after: float = 0.5):
        super().__init__(on_error=on_error)
        self.inbox = inbox
        # When nothing new comes for `stall_after` s (camera unplugged or stuck), the last
        # input frame is shown through `curtain` (fully blurred) instead of a frozen picture
        # that may have been composited with a matte that no longer fits.
        self.curtain = curtain
        self.stall_after = stall_after
        self._stalled = StateLog(log, False)
        self._curtain_frame: np.ndarray | None = None
        self.sinks = sinks
        self.fps = fps
        self.new = 0  # distinct composites sent
        self.repeats = 0
        self.latency = Timings()  # capture -> send, ms, first send of each composite
        self.send_ms = Timings()  # ms per send, repeats included; send_ms.count is the frames sent
        self.t_first: float | None = None
        self.t_last: float | None = None
        self.t_last_new = time.monotonic()
        self.max_gap = 0.0  # longest time between two sends, s
        self.last: Composite | None = None
        self.taps: list[Callable[[Composite], None]] = []
        self._ended = False
        self._sleep = self._pacer()

    @property
    def sent(self) -> int:
        return self.send_ms.count

    def _pacer(self) -> Callable[[], None]:
        for s in self.sinks:
            if s.paces:
                return s.sleep_until_next_frame
        period = 1.0 / self.fps
        state = {"next": time.monotonic() + period}

        def sleep():
            self.wait(state["next"] - time.monotonic())
            # If we fell behind by more than a frame, don't try to catch up in a burst.
            state["next"] = max(state["next"] + period, time.monotonic())

        return sleep

    def send(self, comp: Composite, fresh: bool) -> None:
        t0 = time.perf_counter()
        for s in self.sinks:
            s.send(comp.image)
        now = time.monotonic()
        self.send_ms.add((time.perf_counter() - t0) * 1e3)
        if self.t_first is None:
            self.t_first = now
        if self.t_last is not None:
            self.max_gap = max(self.max_gap, now - self.t_last)
        self.t_last = now
        if fresh:
            self.t_last_new = now
            self.new += 1
            self.latency.add((now - comp.t_capture) * 1e3)
            for tap in self.taps:
                tap(comp)
        else:
            self.repeats += 1

    def step(self) -> bool:
        try:
            comp = self.inbox.take(timeout=0 if self.last is not None else 0.05)
        except Closed:
            comp, self._ended = None, True
        if comp is not None:
            self._stalled(False, logging.INFO, "frames flowing again")
            self.last = comp
            self.send(comp, True)
        elif self._ended:
            return False
        elif self.last is not None:
            if (self.curtain is not None and not self._stalled.state
                    and time.monotonic() - self.t_last_new > self.stall_after):
                self._curtain_frame = self.curtain(self.last.frame if self.last.frame is not None
                                                   else self.last.image)
                self._stalled(True, logging.WARNING, "no new frames for %.1f s: showing the blurred last frame",
                              self.stall_after)
            if self._stalled.state:
                self.send(dataclasses.replace(self.last, image=self._curtain_frame), False)
            else:
                self.send(self.last, False)
        else:
            return True
        self._sleep()
        return True
