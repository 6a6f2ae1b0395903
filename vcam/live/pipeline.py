"""The live pipeline: stages in their own threads, joined by latest-wins mailboxes.

    capture ─▶ [frames→matting] ─▶ matting+smoothing ─▶ [mattes] ─┐
            └▶ [frames→compositor] ─────────────────▶ compositor ◀┘ ─▶ [composites] ─▶ output

Matting runs at its own rate; the compositor refines the *newest* matte against each
current frame. A stage's exception is handed to the supervisor (:meth:`Pipeline.run`),
which stops everything and re-raises it. Live changes come through a small API
(:meth:`set_look`, :meth:`switch_model`, :meth:`keep`, :meth:`release_camera`, ...), so
nobody reaches into the stages' parts.
"""
from __future__ import annotations

import gc
import logging
import threading
import time
from typing import Callable

import cv2
import numpy as np

from ..config import CompositorConfig, Config, MattingConfig, SmoothingConfig
from ..core.mailbox import Mailbox
from ..core.stats import CpuMeter, peak_rss_mb
from ..engine import budget
from ..engine.parts import Parts, upgrades
from ..engine.units import CompositeUnit, MattingUnit
from ..errors import ConfigError, VcamError
from ..imaging import smoothing
from ..imaging.compositor import Look
from ..models.matting import check_live, create as create_matter
from ..subject.keep import SubjectKeeper
from .budget import BudgetKeeper
from .capture import CaptureStage
from .output import OutputStage
from .stages import CompositeStage, MattingStage

log = logging.getLogger(__name__)


class Pipeline:
    """``run()`` blocks until ``seconds`` pass, the source ends, :meth:`request_stop` is called
    (signal handlers do this), or a stage fails."""

    def __init__(self, cfg: Config, parts: Parts, *, keep_alpha: bool = False):
        self.cfg = cfg  # the configuration it was started with (size, rate); live changes come through the API
        self.parts = parts
        c = cfg.capture
        self.m_frames = Mailbox("capture→matting")
        self.c_frames = Mailbox("capture→compositor")
        self.mattes = Mailbox("matting→compositor")
        self.comps = Mailbox("compositor→output")
        self._errors: list[BaseException] = []
        self._stop = threading.Event()
        self.capture = CaptureStage(parts.source, [self.m_frames, self.c_frames], loop=c.loop,
                                    size=(c.width, c.height), on_error=self._fail)
        m = cfg.matting
        cores = budget.resolve(cfg.run.cpu_budget)
        self.governor = None
        if cores is not None:
            op = parts.opening
            self._ladder_cfg = op.configured if op is not None else parts.matter.cfg  # what the ladder is built from
            levels, start = self._ladder(self._ladder_cfg)
            self.governor = budget.Governor(cores, levels, start, ceiling_hz=m.max_hz or budget.CEILING_HZ,
                                            max_age=m.max_age)
            if op is not None:
                self.governor.open_at(op, start)
        self.matting = MattingStage(MattingUnit(parts.matter, parts.smoother, parts.compositor.refiner,
                                                reuse_still=m.reuse_still, reuse_max_age=m.reuse_max_age,
                                                reuse_followed=m.reuse_followed,
                                                crop=m.crop),
                                    self.m_frames, self.mattes, max_hz=cfg.matting.max_hz,
                                    threads=cfg.matting.workers, guard=cfg.matting.guard, on_error=self._fail,
                                    governor=self.governor)
        if self.governor is not None and upgrades(m):
            self.governor.still_upgrade = True
            unit = self.matting.unit
            unit.set_home(self._ladder_cfg.model, self._ladder_cfg.input_size, parts.upgrade)
            unit.upgrade_gate = self._may_upgrade
        self.budget = (BudgetKeeper(self.governor, self.apply_level, on_error=self._fail,
                                    inflight=self.matting.inflight_cpu) if self.governor else None)
        self.compositing = CompositeStage(CompositeUnit(parts.compositor, keep_alpha=keep_alpha), self.c_frames,
                                          self.mattes, self.comps, max_matte_age=cfg.matting.max_age,
                                          on_error=self._fail)
        self.output = OutputStage(self.comps, parts.sinks, c.fps, on_error=self._fail,
                                  curtain=lambda img: parts.compositor.fail_blur(img, None, np.empty_like(img)),
                                  stall_after=cfg.output.stall_after)
        self.cpu = CpuMeter()
        self._lite_fetch = None  # the lite model being fetched in the background (subprocess.Popen)
        self.t_start = 0.0
        self.t_end = 0.0

    def _may_upgrade(self) -> bool:
        with self.governor.lock:
            return self.governor.may_upgrade()

    def _fail(self, e: BaseException) -> None:
        self._errors.append(e)
        self._stop.set()

    # --- the live API (vcam.live.control.Controller is its one caller) --------------------------

    @property
    def look(self) -> Look:
        return self.parts.compositor.look

    def set_look(self, compositor_cfg: CompositorConfig, *, index: int | None = None) -> Look:
        """Prepare and swap in a new look; a bad value raises and the current one stays."""
        return self.parts.compositor.configure(compositor_cfg, index=index)

    def step_background(self, step: int) -> Look:
        return self.parts.compositor.step_background(step)

    def switch_model(self, matting_cfg: MattingConfig) -> None:
        """Load another model (or the same with new settings) and swap it in; the old one keeps
        serving until the new one is ready, so the output never stalls."""
        check_live(matting_cfg)
        new = self.matting.unit.prepare(create_matter(matting_cfg))
        if not new.stateless and self.matting.threads > 1:
            log.info("%s is recurrent: its inferences run one at a time", matting_cfg.model)
        self.matting.swap(matter=new, max_hz=matting_cfg.max_hz)
        if self.governor is not None:  # the user chose a model: the budget's ladder starts from it
            self._ladder_cfg = matting_cfg
            self.governor.set_levels(*self._ladder(matting_cfg))
            self.matting.unit.set_home(matting_cfg.model, matting_cfg.input_size)
            self.governor.ceiling_hz = matting_cfg.max_hz or budget.CEILING_HZ
        # The old model is not closed here: a worker may still be inside its infer(); it is
        # released when the last reference goes.
        self.parts.matter = new

    def set_budget(self, setting) -> float:
        """``run.cpu_budget`` while running: a number of cores or 'auto' (not 'off': a run started
        without a budget has no controller to give one to, and one with a budget keeps it)."""
        if str(setting).strip().lower() in ("off", "none", "no"):
            raise ConfigError("the budget cannot be turned off while running: give a number of cores "
                              "(up to this machine's), or restart with --cpu-budget off")
        cores = budget.resolve(setting, name="budget", off=False)
        if self.governor is None:
            raise ConfigError("this vcam runs without a CPU budget (started with --cpu-budget off): "
                              f"restart it with --cpu-budget {setting}")
        self.governor.set_budget(cores)
        log.info("CPU budget now %.2g cores", cores)
        return cores

    @staticmethod
    def _ladder(m: MattingConfig):
        return budget.ladder(m.model, m.input_size, lite=budget.lite_available())

    def _fetch_lite(self) -> None:
        """Under a budget, on a machine with LiteRT but without the lite model cached (a fresh install that
        pulled only MODNet), the ladder's cheapest rung is missing: a slow CPU then stays on MODNet at
        192 over the budget. Fetch it in the background; the ladder gets the rung once it is cached."""
        if self.governor is None or not budget.should_fetch_lite(self.cfg.run, self._ladder_cfg.model):
            return
        from ..models import store

        self._lite_fetch = store.pull_detached("lite")
        if self._lite_fetch is not None:
            log.info("CPU budget: fetching the lite model in the background (once; `vcam models pull lite`), so the "
                     "budget can fall back to it")

    def _lite_fetched(self, returncode: int) -> None:
        if returncode != 0 or not budget.lite_available():
            log.warning("CPU budget: fetching the lite model failed (exit %d), so the budget cannot fall back to it; "
                        "run `vcam models pull lite` to see why", returncode)
        elif self.governor.extend(self._ladder(self._ladder_cfg)[0]):
            log.info("CPU budget: the lite model is cached; the ladder can now fall back to it")

    def apply_level(self, level: budget.Level) -> None:
        """The CPU budget's ladder moved. A model that cannot load here leaves the ladder, logged once."""
        try:
            new = self.matting.move_to(level.model, level.input_size)
        except VcamError as e:
            log.warning("CPU budget: cannot use %s here (%s); staying with %s", level.label, e,
                        self.matting.unit.matter.name)
            self.governor.drop(level, f"{level.label} is not available")
            return
        if new is not None:
            self.parts.matter = new

    def set_smoothing(self, smoothing_cfg: SmoothingConfig) -> None:
        self.matting.swap(smoother=smoothing.create(smoothing_cfg))

    def keep(self, x: float | None, y: float | None = None, *, mirrored: bool = False) -> dict:
        """Keep only the person at pixel (x, y) of the picture (``mirrored``: as the call sees it);
        ``None`` keeps everyone again. Returns the keeper's status."""
        unit = self.matting.unit
        if x is None:
            if unit.keeper is not None:
                unit.keeper.clear()
            return self.keep_status()
        frame = unit.last_frame
        if frame is None:
            raise ConfigError("no camera frame has been matted yet: try again in a moment")
        if mirrored:
            x = frame.image.shape[1] - 1 - x
        if unit.keeper is None:
            unit.keeper = SubjectKeeper()
        unit.keeper.request(frame.image, x, y)
        return unit.keeper.status()

    def keep_status(self) -> dict:
        keeper = self.matting.unit.keeper
        return keeper.status() if keeper is not None else {"state": "all"}

    def release_camera(self, released: bool) -> None:
        """Release the real camera (LED off) or take it back; files and the sample keep running."""
        self.capture.set_released(released)

    def request_stop(self) -> None:
        self._stop.set()

    # --- running ----------------------------------------------------------------------------------

    def run(self, seconds: float = 0.0, *, on_tick: Callable[["Pipeline"], None] | None = None) -> dict:
        # OpenCV's own worker pool would fight onnxruntime's threads for the same
        # cores; each stage is already its own thread, so OpenCV runs serially in it.
        cv2.setNumThreads(1)
        # Everything loaded so far (models, numba, the interpreter's own start-up) lives as long as the run:
        # moved out of the collector's reach, a full collection never walks it, so it cannot pause the
        # output thread for the tens of ms such a walk takes on a large heap. (No gc.collect() first: a
        # stall here would make a paced source catch up in a burst.)
        gc.freeze()
        self._fetch_lite()
        self.cpu.start()
        self.t_start = time.monotonic()
        try:
            for s in (self.output, self.compositing, self.matting, self.capture, self.budget):
                if s is not None:
                    s.start()
            deadline = self.t_start + seconds if seconds > 0 else None
            while not self._stop.is_set():
                # Short waits keep the main thread responsive to Ctrl-C and SIGTERM.
                self._stop.wait(0.1)
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if not self.output.alive:
                    break  # the source ended and everything drained
                if self._lite_fetch is not None and (rc := self._lite_fetch.poll()) is not None:
                    self._lite_fetch = None
                    self._lite_fetched(rc)
                if on_tick:
                    on_tick(self)
        finally:
            self.t_end = time.monotonic()
            self.close()
            gc.unfreeze()
        if self._errors:
            raise self._errors[0]
        return self.stats()

    def close(self) -> None:
        """Stop every stage (idempotent); each join is bounded so the whole stop stays under 2 s."""
        self._stop.set()
        for box in (self.m_frames, self.c_frames, self.mattes, self.comps):
            box.close()
        for s in (self.budget, self.capture, self.matting, self.compositing, self.output):
            if s is not None:
                s.stop(timeout=0.4)
        if self.matting.unit.keeper is not None:
            self.matting.unit.keeper.close()
        for sink in self.parts.sinks:
            try:
                sink.close()
            except Exception as e:  # closing must not hide the real error
                log.warning("closing %s failed: %s", sink.kind, e)
        self.capture.source.close()
        self.matting.unit.matter.close()
        if self.matting.unit.upgrade is not None:
            self.matting.unit.upgrade.close()

    def stats(self) -> dict:
        """Run statistics; valid while running too (``vcam ctl status``)."""
        o, m, cap, comp = self.output, self.matting, self.capture, self.compositing
        out_wall = (o.t_last - o.t_first) if o.t_first and o.t_last and o.t_last > o.t_first else 0.0
        t_end = self.t_end or time.monotonic()
        m_wall = (t_end - m.t_first) if m.t_first else 0.0
        cap_wall = t_end - self.t_start if self.t_start else 0.0
        matter = m.unit.matter
        matted = m.unit.timings.count
        return {
            "capture_fps": round(cap.frames / cap_wall, 2) if cap_wall else 0.0,
            "output_fps": round((o.sent - 1) / out_wall, 2) if out_wall else 0.0,
            "new_frames_fps": round((o.new - 1) / out_wall, 2) if out_wall else 0.0,
            "matting_hz": round(matted / m_wall, 2) if m_wall else 0.0,
            "latency_ms": o.latency.summary(),
            "frames": {"captured": cap.frames, "matted": matted, "composited": comp.unit.timings.count,
                       "sent": o.sent, "repeated": o.repeats, "matting_errors": m.errors,
                       "mattes_withheld": m.withheld, "mattes_reused": m.unit.reused,
                       "mattes_carried": m.unit.carried, "mattes_upgraded": m.unit.upgraded,
                       "mattes_cropped": m.unit.crop.crops if m.unit.crop is not None else 0,
                       # composites whose held matte was moved with the person (vcam.imaging.follow)
                       "composites_followed": f.moved if (f := comp.unit.compositor.follower) is not None else 0,
                       # fully blurred because the matte in use was older than matting.max_age (and how often)
                       "composites_stale": comp.stale_frames, "stale_episodes": comp.stale_episodes},
            "dropped": {"matting stale": m.unit.stale, "capture→matting": self.m_frames.drops,
                        "capture→compositor": self.c_frames.drops, "compositor→output": self.comps.drops},
            "stage_ms": {"capture": cap.timings.summary(), "matting": m.unit.timings.summary(),
                         "compositor": comp.unit.timings.summary(), "output": o.send_ms.summary()},
            "matte_age_frames": comp.unit.matte_age.summary(),
            "max_output_gap_ms": round(o.max_gap * 1e3, 1),
            "camera_reconnects": cap.reconnects,
            "cpu_cores": self.cpu.cores(),
            "peak_rss_mb": peak_rss_mb(),
            "seconds": round(t_end - self.t_start, 2),
            "size": [self.cfg.capture.width, self.cfg.capture.height],
            "fps_target": self.cfg.capture.fps,
            "model": matter.name,
            "input_size": matter.cfg.input_size,
            "runtime": matter.session.get_providers()[0] if getattr(matter, "session", None) is not None else matter.name,
            "budget": self.governor.status() if self.governor is not None else None,
        }
