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

    def __init__(self, governor, apply, *, on_error=None, inflight=lambda: 0.0):
        super().__init__(on_error=on_error)
        self.governor, self.apply = governor, apply  # apply(Level): the pipeline switches to it
        self.inflight = inflight  # CPU s of the inferences still running (MattingStage.inflight_cpu)
        self._said = False  # the budget-below-the-floor warning, once
        self._said_model = False  # the model-too-slow-for-the-budget warning, once

    def step(self) -> bool:
        if self.wait(self.period):
            return False
        gov = self.governor
        with gov.lock:
            if not (gov.over_floor or gov.over_model):  # a new budget (vcam ctl budget) may warn afresh
                self._said = self._said_model = False
            # The running inferences' CPU so far is left out until they end (then spent() counts it all).
            gov.observe(time.monotonic(), time.process_time() - self.inflight())
            level = gov.decide(time.monotonic())
            why = gov.reason
            floor = gov.other if gov.over_floor and not self._said else None
            slow = (gov.level.label, gov.cost() * 1e3, gov.fresh_cores(),
                    " or ".join(m for m in ("modnet", "lite") if m != gov.level.model)) \
                if gov.over_model and not self._said_model else None
        if floor is not None:
            self._said = True
            log.warning("CPU budget %.2g cores: capture, compositing and output alone take %.2f cores here, so "
                        "the mean stays above the budget (the output rate is never cut); raise --cpu-budget "
                        "or lower --size", gov.budget, floor)
        if slow is not None:
            self._said_model = True
            log.warning("CPU budget %.2g cores: %s takes %.0f ms of CPU a matte here, and keeping its matte fresh "
                        "(never older than matting.max_age) needs at least %.2f cores with the rest, so the mean "
                        "stays above the budget; raise --cpu-budget, or choose a lighter model (%s)",
                        gov.budget, *slow)
        if level is not None:
            log.info("CPU budget %.2g cores: matting now %s (%s)", gov.budget, level.label, why)
            self.apply(level)
        return True
