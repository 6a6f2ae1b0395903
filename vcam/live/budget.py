"""The CPU budget in the live path: a worker that measures the process's CPU a few times a
second, feeds the :class:`~vcam.engine.budget.Governor` (which the matting stage asks before
each inference), and applies the ladder's decisions through the pipeline."""
from __future__ import annotations

import logging
import time

from ..core.worker import Worker

log = logging.getLogger(__name__)


class BudgetKeeper(Worker):
    thread_name = "vcam-budget"
    period = 0.25  # s between measurements

    def __init__(self, governor, apply, *, on_error=None):
        super().__init__(on_error=on_error)
        self.governor, self.apply = governor, apply  # apply(Level): the pipeline switches to it
        self._said = False  # the budget-below-the-floor warning, once

    def step(self) -> bool:
        if self.wait(self.period):
            return False
        gov = self.governor
        with gov.lock:
            gov.observe(time.monotonic(), time.process_time())
            level = gov.decide(time.monotonic())
            why = gov.reason
            floor = gov.other if gov.over_floor and not self._said else None
        if floor is not None:
            self._said = True
            log.warning("CPU budget %.2g cores: capture, compositing and output alone take %.2f cores here, so "
                        "the mean stays above the budget (the output rate is never cut); raise --cpu-budget "
                        "or lower --size", gov.budget, floor)
        if level is not None:
            log.info("CPU budget %.2g cores: matting now %s (%s)", gov.budget, level.label, why)
            self.apply(level)
        return True
