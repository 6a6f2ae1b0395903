"""User-facing errors.

A :class:`VcamError` carries one line that says what went wrong and how to fix
it. The CLI prints that line and exits non-zero; it never shows a traceback for
these. Library code raises them instead of printing or exiting.
"""
from __future__ import annotations


class VcamError(Exception):
    """An error whose message is one line, written for the user, naming the fix."""

    exit_code = 2

    def __init__(self, message: str):
        # One line, always: multi-line messages get folded so that a log line stays a line.
        super().__init__(" ".join(str(message).split()))


class ConfigError(VcamError):
    """A bad config key or value."""


class ModelError(VcamError):
    """A model that is missing, corrupt or cannot be loaded."""


class SourceError(VcamError):
    """A camera, file or folder that cannot be opened or read."""


class OutputError(VcamError):
    """A virtual camera, preview or recording that cannot be opened."""
