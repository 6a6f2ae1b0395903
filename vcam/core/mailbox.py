"""Latest-value-wins slots that join the pipeline's stages.

A :class:`Mailbox` holds at most one item. ``put`` replaces an unread item and
counts it as a drop: a slow reader sees the newest item and never a queue, because
a queue means lag. Readers either *take* the next unseen item (blocking with a
timeout) or *peek* at the newest one without consuming it (the compositor peeks at
the newest matte).
"""
from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class Closed(Exception):
    """Raised by :meth:`Mailbox.take` once the mailbox is closed and empty."""


class Mailbox(Generic[T]):
    def __init__(self, name: str = "slot"):
        self.name = name
        self._cond = threading.Condition()
        self._item: T | None = None
        self._latest: T | None = None
        self._unread = False
        self._closed = False
        self.drops = 0  # items replaced before anyone took them

    def put(self, item: T) -> None:
        with self._cond:
            if self._closed:
                return
            if self._unread:
                self.drops += 1
            self._item = item
            self._latest = item
            self._unread = True
            self._cond.notify_all()

    def take(self, timeout: float | None = None) -> T | None:
        """Return the next unseen item, or ``None`` on timeout. Raises :class:`Closed`."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._unread or self._closed, timeout):
                return None
            if not self._unread:
                raise Closed(self.name)
            self._unread = False
            item, self._item = self._item, None
            self._cond.notify_all()
            return item

    def peek(self) -> T | None:
        """The newest item ever put, read or not; never blocks."""
        with self._cond:
            return self._latest

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

