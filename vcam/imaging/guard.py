"""The live guard: a matte that has collapsed is never used (fail closed).

It sits in the matting thread, after smoothing. A matte with no person, one mostly
undecided or one that claims the whole picture is replaced by "no matte", which the
compositor already turns into the fully blurred frame. Stills and ``vcam process`` do not
use it: an empty product shot is not a collapse.
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np

from ..core.frames import Matte
from ..core.worker import StateLog

log = logging.getLogger(__name__)


def collapse_reason(alpha: np.ndarray) -> str:
    """Why a live matte must not be used (empty string: it is fine). ``alpha``: [h, w] f32.

    No person (under 0.5 % of the picture is foreground), a garbage matte (over 30 % of
    the picture undecided between 0.1 and 0.9), or a matte that claims the whole picture
    (over 97 %): all three would show the room or nothing useful, so the output blurs."""
    cover = float(np.count_nonzero(alpha > 0.5)) / alpha.size
    if cover < 0.005:
        return "no person in view"
    if cover > 0.97:
        return f"the matte covers {cover:.0%} of the picture"
    undecided = float(np.count_nonzero((alpha > 0.1) & (alpha < 0.9))) / alpha.size
    if undecided > 0.3:
        return f"the matte is unreliable ({undecided:.0%} of the picture undecided)"
    return ""


class Guard:
    """``check(matte)``: the matte, or "no matte" when it collapsed; one log line per change."""

    def __init__(self):
        self.withheld = 0
        self._collapsed = StateLog(log, False)

    def check(self, matte: Matte) -> Matte:
        why = collapse_reason(matte.alpha)
        if not why:
            self._collapsed(False, logging.INFO, "person in view again: the matte is in use")
            return matte
        self.withheld += 1
        self._collapsed(True, logging.WARNING, "%s: output fully blurred until a person is clearly in view", why)
        return dataclasses.replace(matte, alpha=None, coef=None)
