"""The capture thread: reads the source and publishes stamped frames to its outboxes.

In live mode it never waits for downstream stages: every outbox is a latest-wins
:class:`~vcam.core.mailbox.Mailbox`. Files and folders are paced at their own fps (or
``fps`` if given); a camera paces itself. At the end of a file it loops or closes the
outboxes. A camera that fails is reopened with backoff (the output shows a blurred frame
meanwhile), and it can be released (its LED goes off) and taken back on request.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import cv2
import numpy as np

from ..core.frames import Frame
from ..core.mailbox import Mailbox
from ..core.stats import Timings
from ..core.worker import Worker
from ..errors import SourceError
from ..media.sources import Source

log = logging.getLogger(__name__)


class CaptureStage(Worker):
    thread_name = "vcam-capture"

    def __init__(self, source: Source, outboxes: list[Mailbox], *, loop: bool = True, fps: float | None = None,
                 size: tuple[int, int] | None = None, on_error: Callable[[BaseException], None] | None = None):
        super().__init__(on_error=on_error)
        self.source = source
        self.outboxes = outboxes
        self.loop = loop
        self.period = 1.0 / (fps or source.fps)
        self.size = size
        self.reconnects = 0
        self.timings = Timings()  # read + resize, ms per frame; timings.count is the frames captured
        self._released = threading.Event()
        self._t_next = time.monotonic()

    @property
    def frames(self) -> int:
        return self.timings.count

    def set_released(self, released: bool) -> None:
        """Release the real camera (its LED goes off) or take it back. Files and the sample
        keep running: there is nothing to release."""
        if not self.source.reopenable:
            return
        if released:
            self._released.set()
        else:
            self._released.clear()

    def step(self) -> bool:
        if self._released.is_set():
            self._hold_released()
            return True
        if not self.source.paced_by_device:
            if self.wait(self._t_next - time.monotonic()):
                return False
            self._t_next = max(self._t_next + self.period, time.monotonic() - self.period)
        t0 = time.perf_counter()
        if self.source.paced_by_device:
            img = self._read_camera()
            if img is None:
                return True  # lost: reconnecting (the output shows a curtain meanwhile)
        else:
            img = self.source.read()
            if img is None and self.loop and self.source.rewind():
                img = self.source.read()
            if img is None:
                return False
        frame = Frame(self._prepare(img), self.timings.count, time.monotonic())
        self.timings.add((time.perf_counter() - t0) * 1e3)
        for box in self.outboxes:
            box.put(frame)
        return True

    def _read_camera(self) -> np.ndarray | None:
        """One camera frame; on failure, reconnect with backoff (one log line each way)."""
        try:
            img = self.source.read()
        except Exception as e:  # a driver error is a lost camera, not a crash
            img, why = None, f"{type(e).__name__}: {e}"
        else:
            why = "read failed"
        if img is not None:
            return img
        if not self.source.reopenable:
            raise SourceError(f"camera {getattr(self.source, 'spec', '')} stopped delivering frames ({why})")
        log.warning("camera lost (%s): showing a blurred frame, reconnecting", why)
        delay = 0.25
        while not self.stopping:
            try:
                self.source.close()
            except Exception:
                pass
            if self.wait(delay):
                return None
            try:
                self.source = self.source.reopen()
                img = self.source.read()
                if img is not None:
                    log.info("camera reconnected")
                    self.reconnects += 1
                    return img
            except Exception:  # still away: try again later
                pass
            delay = min(delay * 2, 4.0)
        return None

    def _hold_released(self) -> None:
        """While released: close the camera, idle, and reopen it when asked."""
        log.info("camera released")
        self.source.close()
        while self._released.is_set() and not self.wait(0.05):
            pass
        if not self.stopping:
            self.source = self.source.reopen()
            log.info("camera reopened")

    def _prepare(self, img: np.ndarray) -> np.ndarray:
        if self.size and (img.shape[1], img.shape[0]) != self.size:
            img = cv2.resize(img, self.size, interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(img)

    def finished(self) -> None:
        for box in self.outboxes:
            box.close()
