"""Offline runs: every frame through the same matting and compositing units as the live
threads, in order, none dropped, so what a benchmark measures here is what the camera does."""
from __future__ import annotations

import time
from typing import Callable

from ..core.frames import Composite, Frame
from ..core.stats import CpuMeter, peak_rss_mb
from .parts import Parts
from .units import CompositeUnit, MattingUnit


def run_lockstep(parts: Parts, *, keep_alpha: bool = False, on_composite: Callable[[Composite, Frame], None] | None = None,
                 progress: Callable[[int], None] | None = None, close: bool = True) -> dict:
    """Read ``parts.source`` to its end; each composite goes to every sink and ``on_composite``.
    Sinks and source are closed at the end, the model too unless ``close`` is False."""
    matting = MattingUnit(parts.matter, parts.smoother, parts.compositor.refiner)
    compositing = CompositeUnit(parts.compositor, keep_alpha=keep_alpha)
    cpu = CpuMeter().start()
    t0 = time.monotonic()
    seq = 0
    try:
        while True:
            img = parts.source.read()
            if img is None:
                break
            frame = Frame(img, seq, time.monotonic())
            comp = compositing.process(frame, matting.process(frame))
            for s in parts.sinks:
                s.send(comp.image)
            if on_composite:
                on_composite(comp, frame)
            seq += 1
            if progress:
                progress(seq)
    finally:
        for s in parts.sinks:
            s.close()
        parts.source.close()
        if close:
            parts.matter.close()
    wall = time.monotonic() - t0
    return {"frames": seq, "seconds": round(wall, 2), "fps": round(seq / wall, 2) if wall else 0.0,
            "stage_ms": {"matting": matting.timings.summary(), "compositor": compositing.timings.summary()},
            "cpu_cores": cpu.cores(), "peak_rss_mb": peak_rss_mb()}
