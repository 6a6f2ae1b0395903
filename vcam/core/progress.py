"""A minimal progress line with ETA on stderr (only when stderr is a terminal)."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int | None, label: str = "", stream=None):
        self.total, self.label = total, label
        self.stream = stream or sys.stderr
        self.enabled = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.monotonic()
        self._last = 0.0

    def __call__(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.2 and done != self.total:
            return
        self._last = now
        rate = done / max(now - self.t0, 1e-6)
        if self.total:
            eta = (self.total - done) / rate if rate > 0 else 0
            msg = f"\r{self.label} {done}/{self.total} {100 * done / self.total:5.1f}% {rate:5.1f} fps ETA {eta:5.0f}s"
        else:
            msg = f"\r{self.label} {done} frames {rate:5.1f} fps"
        self.stream.write(msg)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
