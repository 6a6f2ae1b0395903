"""MobileSAM: the one-time export (:mod:`.export`) and the ONNX encoder/decoder pair (:mod:`.sam`)."""
from __future__ import annotations

import threading

from .sam import Embedding, Masks, MobileSam

__all__ = ["Embedding", "Masks", "MobileSam", "get_sam"]

_SAM: MobileSam | None = None
_SAM_LOCK = threading.Lock()


def get_sam() -> MobileSam:
    """The process-wide :class:`MobileSam` (loaded on first use)."""
    global _SAM
    with _SAM_LOCK:
        if _SAM is None:
            _SAM = MobileSam()
        return _SAM
