"""Threads that watch something outside and tell the controller or the pipeline:

* :class:`ConfigWatcher`: an edit of the config files reloads and applies them;
* :class:`OnDemand`: the real camera is released while no application reads the virtual one.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

from ..core.worker import StateLog, Worker
from ..media.sinks import device_openers

log = logging.getLogger(__name__)


class ConfigWatcher(Worker):
    """Polls the config files' modification times; a change reloads and applies the config.
    An invalid edit keeps the old settings and logs one line naming the bad key or value."""

    thread_name = "vcam-config-watch"

    def __init__(self, controller, paths: list[Path], interval: float = 0.5):
        super().__init__()
        self.controller = controller
        self.paths = [Path(p) for p in paths]
        self.interval = interval
        self._stamps = self._read()

    def _read(self):
        out = []
        for p in self.paths:
            try:
                st = p.stat()
                out.append((st.st_mtime_ns, st.st_size))
            except OSError:
                out.append(None)
        return out

    def check(self) -> None:
        stamps = self._read()
        if stamps == self._stamps:
            return
        self._stamps = stamps
        reply = self.controller.execute(["reload"])
        if reply["ok"]:
            if reply.get("changed"):
                log.info("config reloaded: %s", ", ".join(reply["changed"]))
        else:
            log.error("config change ignored, keeping the old settings: %s", reply["error"])

    def step(self) -> bool:
        if self.wait(self.interval):
            return False
        self.check()
        return True


def readers_of(device: str) -> int:
    """How many *other* processes have ``device`` open."""
    return sum(1 for pid, _ in device_openers(device) if pid != os.getpid())


class OnDemand(Worker):
    """Release the real camera (LED off) while no application reads the virtual camera,
    and take it back within a second when one opens it (``--on-demand``)."""

    thread_name = "vcam-on-demand"

    def __init__(self, pipeline, device: str, interval: float = 0.3, count: Callable[[str], int] = readers_of):
        super().__init__()
        self.pipeline, self.device, self.interval, self.count = pipeline, device, interval, count
        self._idle = StateLog(log, None)

    @property
    def released(self) -> bool | None:
        return self._idle.state

    def step(self) -> bool:
        idle = self.count(self.device) == 0
        if self._idle(idle, logging.INFO, f"no application reads {self.device}: camera released" if idle
                      else f"an application opened {self.device}: camera on"):
            self.pipeline.release_camera(idle)
        return not self.wait(self.interval)
