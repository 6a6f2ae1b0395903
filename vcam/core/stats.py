"""Run statistics: per-stage timings, latency, drops, CPU and memory."""
from __future__ import annotations

import collections
import resource
import sys
import time

import numpy as np


class Timings:
    """A bounded window of samples (ms) with percentiles; bounded so hours of running cost nothing."""

    def __init__(self, maxlen: int = 20000):
        self._d: collections.deque = collections.deque(maxlen=maxlen)
        self.count = 0

    def add(self, ms: float) -> None:
        self._d.append(ms)
        self.count += 1

    def pct(self, q: float) -> float | None:
        if not self._d:
            return None
        return round(float(np.percentile(np.fromiter(self._d, float), q)), 2)

    def summary(self) -> dict:
        return {"p50": self.pct(50), "p95": self.pct(95), "n": self.count}


def peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / 1024 if sys.platform != "darwin" else kb / 2**20, 1)


class CpuMeter:
    """Mean CPU cores used: process CPU time over wall time, since ``start()`` (0 before it)."""

    t_wall: float | None = None
    t_cpu = 0.0

    def start(self) -> "CpuMeter":
        self.t_wall = time.monotonic()
        self.t_cpu = time.process_time()
        return self

    def cores(self) -> float:
        if self.t_wall is None:
            return 0.0
        wall = time.monotonic() - self.t_wall
        return round((time.process_time() - self.t_cpu) / wall, 3) if wall > 0 else 0.0
