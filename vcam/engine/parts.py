"""What a run is built from, opened in an order that fails early and cleans up after itself."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from ..config import Config
from . import budget
from ..imaging import smoothing
from ..imaging.compositor import Compositor
from ..media.sinks import Sink, build_sinks
from ..media.sources import Source, open_source
from ..models.matting import Matter, create as create_matter

log = logging.getLogger(__name__)


@dataclass
class Parts:
    """Everything a pipeline is built from; tests, benchmarks and ``vcam process`` build these directly."""

    source: Source
    matter: Matter
    smoother: smoothing.Smoother
    compositor: Compositor
    sinks: list[Sink]
    opening: budget.Opening | None = None  # under a CPU budget: the rung ``matter`` is, and the configured one
    upgrade: object = None  # the configured model, kept loaded when the budget opened lighter (matting.still_upgrade)


def upgrades(m) -> bool:
    """Does a budgeted run keep the configured model for still pictures (``matting.still_upgrade``)? Only
    with ``reuse_still``, which tells a still picture."""
    return bool(m.still_upgrade and m.reuse_still)


def build_parts(cfg: Config, *, sinks: list[Sink] | None = None, source: Source | None = None,
                cpu_budget: float | None = None) -> Parts:
    """Prepare the compositor, open the source, load the model and open the sinks, in that order,
    closing whatever was opened if a later step fails. ``cpu_budget`` (cores): the live run's, which
    may start on a cheaper rung of the budget's ladder than the configured model (:func:`budget.opening`)."""
    c = cfg.capture
    opened: list = []
    try:
        # The compositor first: a bad background fails before the camera is touched.
        compositor = Compositor(cfg.compositor, cfg.refine)
        if source is None:
            source = open_source(c.source, width=c.width, height=c.height, fps=c.fps)
        opened.append(source)
        # The configured model is loaded even when the budget starts lower: a bad setting of it (a
        # provider, a file) fails here, at start, not when the ladder steps up to it mid-call.
        matter = create_matter(cfg.matting)
        opened.append(matter)
        if sinks is None:
            sinks = build_sinks(cfg.output, c.width, c.height, c.fps)
        op = (budget.opening(cfg.matting, cpu_budget, lite=budget.lite_available(), pixel_rate=c.width * c.height * c.fps)
              if cpu_budget else None)
        upgrade = None
        if op is not None and op.why:  # everything opened: the switch is the last step, and its line the last
            cheaper = create_matter(op.matting)
            opened.append(cheaper)
            if upgrades(cfg.matting) and op.matting.model != matter.name:
                upgrade = matter  # a still picture's matte, as the budget allows
            else:
                opened.remove(matter)
                matter.close()
            matter = cheaper
            log.info("CPU budget %g cores: %s", cpu_budget, op.why)
        return Parts(source, matter, smoothing.create(cfg.smoothing), compositor, sinks, op, upgrade)
    except BaseException:
        for o in reversed(opened):
            o.close()
        raise
