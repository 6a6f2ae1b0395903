"""One base for every thread vcam runs, and one helper for "log once when a state changes".

A :class:`Worker` runs :meth:`Worker.step` on ``threads`` threads until it is stopped or
``step`` returns False. It owns the whole lifecycle:

* ``start()`` starts the threads (once; a stopped worker is not restarted);
* ``stop()`` is idempotent: it sets the stop event, calls :meth:`Worker.on_stop` (to wake
  a thread blocked in I/O), and joins every thread with a timeout;
* an exception in ``step`` ends that thread and is handed to ``on_error`` (the pipeline's
  supervisor) or, without one, kept in :attr:`Worker.error` and logged once: nothing dies
  silently;
* :meth:`Worker.finished` runs once, in the last thread to end (close the outboxes there).

``wait(seconds)`` is the stop-aware sleep every loop uses, so a stop never waits for a
sleeping thread.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

log = logging.getLogger(__name__)


class Worker:
    """Subclasses set :attr:`thread_name` and implement :meth:`step`."""

    thread_name = "vcam-worker"

    def __init__(self, *, on_error: Callable[[BaseException], None] | None = None, threads: int = 1):
        self.on_error = on_error
        self.threads = max(1, int(threads))
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._alive = 0
        self._alive_lock = threading.Lock()

    # --- what subclasses write --------------------------------------------------------------

    def step(self) -> bool:
        """One unit of work; False ends this thread."""
        raise NotImplementedError

    def finished(self) -> None:
        """Called once, by the last thread to end (normally or not)."""

    def on_stop(self) -> None:
        """Called by :meth:`stop` before joining: wake a thread blocked outside :meth:`wait`."""

    # --- the lifecycle ----------------------------------------------------------------------

    def start(self):
        if self._threads:
            return self
        self._alive = self.threads
        names = [self.thread_name] if self.threads == 1 else [f"{self.thread_name}-{i}" for i in range(self.threads)]
        self._threads = [threading.Thread(target=self._run, name=n, daemon=True) for n in names]
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float = 1.0) -> None:
        if not self._stop.is_set():
            self._stop.set()
            self.on_stop()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout)

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when stopped meanwhile."""
        return self._stop.wait(seconds) if seconds > 0 else self._stop.is_set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if not self.step():
                    break
        except BaseException as e:
            if self.on_error is not None:
                self.on_error(e)
            else:
                self.error = e
                log.error("%s stopped: %s: %s", threading.current_thread().name, type(e).__name__, e)
        finally:
            with self._alive_lock:
                self._alive -= 1
                last = self._alive == 0
            if last:
                self.finished()


class StateLog:
    """Log a line when a state *changes*, never once per frame: ``changed = state(new, level, msg)``.

    Thread-safe. ``msg`` is logged with ``args`` only when ``new`` differs from the current state."""

    def __init__(self, logger: logging.Logger, initial=None):
        self.logger = logger
        self.state = initial
        self._lock = threading.Lock()

    def __call__(self, new, level: int = logging.INFO, msg: str = "", *args) -> bool:
        with self._lock:
            if new == self.state:
                return False
            self.state = new
        if msg:
            self.logger.log(level, msg, *args)
        return True
