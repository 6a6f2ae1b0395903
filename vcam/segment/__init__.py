"""Prompted segmentation (MobileSAM): click or box to choose the subject.

* :mod:`.export`: the one-time export from the registry sdist (``vcam models pull mobilesam``);
* :mod:`.sam`: the ONNX encoder/decoder pair;
* :mod:`.select`: SAM's choice fused with the matting model and refined;
* :mod:`.keep`: the live "keep only this person" filter;
* :mod:`.picker`: the interactive picker (``vcam remove --pick``).
"""
from __future__ import annotations

import threading

from .prompt import Prompt, PromptError, parse_box, parse_point

__all__ = ["Prompt", "PromptError", "PromptSession", "get_sam", "parse_box", "parse_point"]

_SAM = None
_SAM_LOCK = threading.Lock()


def get_sam():
    """The process-wide :class:`~vcam.segment.sam.MobileSam` (loaded on first use)."""
    global _SAM
    with _SAM_LOCK:
        if _SAM is None:
            from .sam import MobileSam

            _SAM = MobileSam()
        return _SAM


_MATTING = None


def prompt_matting():
    """The matting session that gives people their edges under a prompt: MODNet at a short
    side of 320 (on the dev portraits the fused IoU is 0.963 there, 0.958 at the live 224)."""
    global _MATTING
    with _SAM_LOCK:
        if _MATTING is None:
            from ..still import new_session

            _MATTING = new_session("modnet", input_size=320)
        return _MATTING


class PromptSession:
    """One image, encoded once: every :meth:`select` after the first answers in milliseconds
    plus refinement. ``matting``: a :class:`vcam.still.Session` whose matte gives people
    their edges (default: :func:`prompt_matting`)."""

    def __init__(self, bgr, *, sam=None, matting=None):
        self.bgr = bgr
        self.sam = sam or get_sam()
        self.embedding = self.sam.embed(bgr)
        self._matting = matting
        self._matte = None

    @property
    def matte(self):
        if self._matte is None:
            if self._matting is None:
                self._matting = prompt_matting()
            self._matte = self._matting.alpha(self.bgr)
        return self._matte

    def select(self, prompt: Prompt, *, refine: bool = True):
        from .select import select

        h, w = self.bgr.shape[:2]
        prompt.check(w, h)
        return select(self.bgr, prompt, self.sam, matte=self.matte if prompt.points else None,
                      embedding=self.embedding, refine=refine)
