"""Which subject: prompts for MobileSAM and what is done with its answer.

* :mod:`.prompt`: points, negative points and a box, checked against the image;
* :mod:`.select`: SAM's choice fused with the matting model's matte and refined;
* :mod:`.keep`: the live "keep only this person" filter;
* :mod:`.picker`: the interactive picker (``vcam remove --pick``).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..models.sam import MobileSam, get_sam
from .prompt import Prompt, PromptError, parse_box, parse_point
from .select import Selection, select

__all__ = ["Prompt", "PromptError", "PromptSession", "Selection", "parse_box", "parse_point"]


class PromptSession:
    """One image, encoded once: every :meth:`select` after the first answers in milliseconds
    plus refinement.

    ``matting``: ``bgr -> [H, W] u8 alpha`` from a portrait matting model, which gives people
    their edges (computed once, on the first point prompt); ``None``: SAM's mask alone.
    ``referee``: ``bgr -> [H, W] u8 alpha or None`` from a general-object model, computed once
    and only when the matte and SAM disagree about a clicked subject (a full-body person)."""

    def __init__(self, bgr: np.ndarray, *, sam: MobileSam | None = None,
                 matting: Callable[[np.ndarray], np.ndarray] | None = None,
                 referee: Callable[[np.ndarray], np.ndarray | None] | None = None):
        self.bgr = bgr  # [H, W, 3] u8 BGR
        self.sam = sam or get_sam()
        self.embedding = self.sam.embed(bgr)
        self._matting = matting
        self._matte: np.ndarray | None = None
        self._referee = referee
        self._third: np.ndarray | None = None
        self._asked = False

    @property
    def matte(self) -> np.ndarray | None:
        if self._matte is None and self._matting is not None:
            self._matte = self._matting(self.bgr)
        return self._matte

    def third_opinion(self) -> np.ndarray | None:
        if not self._asked and self._referee is not None:
            self._third, self._asked = self._referee(self.bgr), True
        return self._third

    def select(self, prompt: Prompt, *, refine: bool = True) -> Selection:
        h, w = self.bgr.shape[:2]
        prompt.check(w, h)
        return select(self.bgr, prompt, self.sam, matte=self.matte if prompt.points else None,
                      embedding=self.embedding, refine=refine, referee=self.third_opinion)
