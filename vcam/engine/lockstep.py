"""Offline runs: every frame through the same matting and compositing units as the live
threads, in order, none dropped, so what a benchmark measures here is what the camera does."""
from __future__ import annotations

import time
from typing import Callable

from ..core.frames import Composite, Frame
from ..core.stats import CpuMeter, peak_rss_mb
from .budget import CEILING_HZ, Governor, ladder
from .parts import Parts
from .units import CompositeUnit, MattingUnit


class LiveRate:
    """Which frames get a new matte, and when it reaches the compositor, as in the live path with
    the model at ``hz``: a matte is made from the frame at each 1/hz s of video time and is used one
    period after its frame (a model that runs flat out at ``hz``), the compositor refining the
    newest matte against every frame in between. The first matte is used from its own frame: the
    start of a run is not what this measures."""

    def __init__(self, hz: float, fps: float):
        self.period, self.fps = 1.0 / hz, fps
        self._next = 0.0
        self._pending: list[tuple[float, object]] = []  # (when it is ready, matte), oldest first
        self.held = None

    def wants(self, seq: int) -> bool:
        t = seq / self.fps
        if t + 1e-9 < self._next:
            return False
        while self._next <= t + 1e-9:
            self._next += self.period
        return True

    def made(self, seq: int, matte, delay: float | None = None) -> None:
        """``matte`` from frame ``seq`` is ready ``delay`` s later (default: one period)."""
        if self.held is None:
            self.held = matte
        else:
            self._pending.append((seq / self.fps + (self.period if delay is None else delay), matte))

    def matte_for(self, seq: int):
        t = seq / self.fps
        while self._pending and self._pending[0][0] <= t + 1e-9:
            self.held = self._pending.pop(0)[1]
        return self.held


class BudgetRate(LiveRate):
    """Which frames get a new matte as the live path decides them under a CPU budget
    (:class:`~vcam.engine.budget.Governor`), on video time and the CPU this run measures for the
    live path's own work (reading, matting, compositing; not the encoder of ``vcam process``).
    Each matte reaches the compositor its inference's CPU time after its frame (one thread)."""

    def __init__(self, cores: float, fps: float, matting: MattingUnit, *, max_hz: float = 0.0, lite: bool = False):
        super().__init__(fps, fps)
        m = matting.matter.cfg
        self.governor = Governor(cores, *ladder(m.model, m.input_size, lite=lite), ceiling_hz=max_hz or CEILING_HZ,
                                 max_age=m.max_age)
        self.matting = matting
        self.cpu = 0.0  # CPU s of the live path's work so far
        if matting.still is not None and m.still_upgrade:
            self.governor.still_upgrade = True
            matting.set_home(m.model, m.input_size)
            matting.upgrade_gate = self.governor.may_upgrade

    def spend(self, cpu_s: float) -> None:
        self.cpu += cpu_s

    def step(self, frame: Frame):
        """Run the governor at this frame's time; infer if it allows. Returns the matte to use."""
        t = frame.seq / self.fps
        gov = self.governor
        gov.observe(t, self.cpu)
        level = gov.decide(t)
        if level is not None:
            self.matting.move_to(level.model, level.input_size)
        if gov.may_start(t) == 0.0:
            c0 = time.thread_time()
            matte = self.matting.process(frame)
            cpu = time.thread_time() - c0
            self.cpu += cpu
            kind = self.matting.last_kind()
            gov.spent(cpu, inferred=kind != "reused", wall_s=cpu, upgrade=kind == "upgraded")
            if matte is not None:
                self.made(frame.seq, matte, delay=cpu)
        return self.matte_for(frame.seq)


def run_lockstep(parts: Parts, *, keep_alpha: bool = False, on_composite: Callable[[Composite, Frame], None] | None = None,
                 progress: Callable[[int], None] | None = None, close: bool = True, matting_hz: float = 0.0,
                 reuse_still: bool = False, reuse_max_age: float = 1.0, reuse_followed: bool = False, cpu_budget: float | None = None,
                 lite: bool = False, crop: bool = False) -> dict:
    """Read ``parts.source`` to its end; each composite goes to every sink and ``on_composite``.
    Sinks and source are closed at the end, the model too unless ``close`` is False.

    ``matting_hz`` > 0: new mattes only as the live path makes them at that rate (:class:`LiveRate`),
    so what is measured is what a call sees; 0: a matte for every frame. ``reuse_still``: as live,
    the last matte is reused while the picture is still (frames are stamped with their video time,
    so ``reuse_max_age`` is in seconds of video). ``cpu_budget``: new mattes as the live path
    makes them under that budget (:class:`BudgetRate`; ``lite``: its ladder may end at the lite
    model)."""
    matting = MattingUnit(parts.matter, parts.smoother, parts.compositor.refiner, reuse_still=reuse_still,
                          reuse_max_age=reuse_max_age, reuse_followed=reuse_followed, crop=crop)
    compositing = CompositeUnit(parts.compositor, keep_alpha=keep_alpha)
    fps = parts.source.fps or 30.0
    if cpu_budget is not None:
        rate = BudgetRate(cpu_budget, fps, matting, max_hz=matting_hz, lite=lite)
    else:
        rate = LiveRate(matting_hz, fps) if matting_hz > 0 else None
    cpu = CpuMeter().start()
    t0 = time.monotonic()
    seq = 0
    try:
        while True:
            c0 = time.thread_time()
            img = parts.source.read()
            if img is None:
                break
            frame = Frame(img, seq, t0 + seq / fps)  # its time in the video
            if isinstance(rate, BudgetRate):
                rate.spend(time.thread_time() - c0)
                matte = rate.step(frame)
                c0 = time.thread_time()
            elif rate is None:
                matte = matting.process(frame)
            else:
                if rate.wants(seq):
                    rate.made(seq, matting.process(frame))
                matte = rate.matte_for(seq)
            comp = compositing.process(frame, matte)
            if isinstance(rate, BudgetRate):
                rate.spend(time.thread_time() - c0)
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
            for m in (matting.matter, matting.upgrade):  # the ladder moved to another model (and kept the configured one)
                if m is not None and m is not parts.matter:
                    m.close()
    wall = time.monotonic() - t0
    return {"frames": seq, "seconds": round(wall, 2), "fps": round(seq / wall, 2) if wall else 0.0,
            "mattes": matting.timings.count, "mattes_reused": matting.reused,
            "mattes_carried": matting.carried, "mattes_upgraded": matting.upgraded,
            "mattes_cropped": matting.crop.crops if matting.crop is not None else 0, "matting_hz": matting_hz or None,
            "budget": rate.governor.status() if isinstance(rate, BudgetRate) else None,
            "video_matting_hz": round(matting.timings.count / (seq / fps), 2) if seq else 0.0,
            "stage_ms": {"matting": matting.timings.summary(), "compositor": compositing.timings.summary()},
            "cpu_cores": cpu.cores(), "peak_rss_mb": peak_rss_mb()}
