"""The pipeline: stages in their own threads, joined by latest-wins mailboxes.

    capture ─▶ [frames→matting] ─▶ matting+smoothing ─▶ [mattes] ─┐
            └▶ [frames→compositor] ─────────────────▶ compositor ◀┘ ─▶ [composites] ─▶ output

Matting runs at its own rate; the compositor refines the *newest* matte against
each current frame. A stage's exception is handed to the supervisor
(:meth:`Pipeline.run`), which stops everything and re-raises it. Offline inputs
run the very same stage objects in lockstep (:func:`run_lockstep`): nothing dropped.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import smoothing
from .capture import CaptureStage, Source, open_source
from .compositor import Compositor
from .refine import Refiner, small_gray
from .config import Config
from .errors import ConfigError, VcamError
from .frames import Composite, Frame, Matte
from .mailbox import Closed, Mailbox
from .matting import Matter, create as create_matter
from .output import OutputStage, RecordSink, Sink, VirtualCamSink, NullSink, PreviewSink
from .stats import CpuMeter, Timings, peak_rss_mb

log = logging.getLogger(__name__)



class _Worker:
    """A stage run by ``workers`` threads: ``_loop_once`` until stopped; exceptions go to ``on_error``."""

    thread_name = "vcam-worker"

    def __init__(self, on_error: Callable[[BaseException], None] | None = None, workers: int = 1):
        self.on_error = on_error
        self.workers = max(1, int(workers))
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._alive = 0
        self._alive_lock = threading.Lock()

    def start(self):
        self._alive = self.workers
        self._threads = [threading.Thread(target=self._run, name=f"{self.thread_name}-{i}" if self.workers > 1
                                          else self.thread_name, daemon=True) for i in range(self.workers)]
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float = 1.0) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout)

    def _run(self):
        try:
            while not self._stop.is_set():
                if not self._loop_once():
                    break
        except BaseException as e:
            if self.on_error:
                self.on_error(e)
            else:
                raise
        finally:
            with self._alive_lock:
                self._alive -= 1
                last = self._alive == 0
            if last:
                self._finish()

    def _loop_once(self) -> bool:
        raise NotImplementedError

    def _finish(self) -> None:
        pass


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


class MattingStage(_Worker):
    """Model inference plus temporal smoothing. ``process(frame)`` is the unit of work."""

    thread_name = "vcam-matting"

    def __init__(self, matter: Matter, smoother: smoothing.Smoother, refiner: Refiner | None = None,
                 inbox: Mailbox | None = None, outbox: Mailbox | None = None, *, max_hz: float = 0.0,
                 workers: int = 1, on_error=None):
        # Several workers only for stateless models: a recurrent model needs its frames in order
        # (and if one is switched in later, its inferences are serialised).
        super().__init__(on_error, workers if getattr(matter, "stateless", False) else 1)
        self.matter, self.smoother, self.refiner = matter, smoother, refiner
        self._lock = threading.Lock()  # smoother state and counters, when workers > 1
        self._serial = threading.Lock()
        self._last_seq = -1
        self.stale = 0  # results that finished after a newer one (workers > 1), dropped
        self.inbox, self.outbox = inbox, outbox
        self.max_hz = max_hz  # the user's cap; 0: the model's own default_max_hz
        self.min_period = self._period()
        self._next_start = 0.0
        self.timings = Timings()
        self.count = 0
        self.errors = 0
        self._consecutive = 0
        self._failed_seq = -1
        self._size = None
        self.t_first: float | None = None
        self.keeper = None  # a segment.keep.SubjectKeeper once `keep X,Y` is used
        self.guard = False  # live runs: blur when the matte collapses (see collapse_reason)
        self.collapsed = 0  # mattes withheld by the guard
        self._collapse = ""
        self.last_frame: Frame | None = None

    def process(self, frame: Frame) -> Matte | None:
        """Matte for ``frame``; ``None`` if a newer frame's matte was published meanwhile."""
        size = frame.size
        with self._lock:
            if size != self._size:
                self.matter.reset()
                self.smoother.reset()
                self._size = size
        t0 = time.perf_counter()
        matter = self.matter
        if getattr(matter, "stateless", False):
            raw = matter.infer(frame.image)  # [h, w] f32; outside the lock, workers run in parallel
        else:
            with self._serial:  # a recurrent model sees one frame at a time
                raw = matter.infer(frame.image)
        with self._lock:
            if matter is not self.matter:
                return None  # the model was switched meanwhile
            if frame.seq <= self._last_seq:
                self.stale += 1
                return None
            self._last_seq = frame.seq
            self.last_frame = frame
            if self.keeper is not None:
                raw = self.keeper.apply(raw)  # "keep only this person": in frame order
            # The frame at matte resolution: the smoother's motion detector and the refiner's guide.
            guide = small_gray(frame.image, raw.shape)  # [h, w] u8
            alpha = self.smoother(raw, guide)
        # Fit the refinement once per matte, against the frame it came from (cheap at
        # matte resolution); the compositor only applies it at the full frame rate.
        coef = self.refiner.coefficients(guide, alpha) if self.refiner is not None else None
        with self._lock:
            self.timings.add((time.perf_counter() - t0) * 1e3)
            self.count += 1
        return Matte(alpha=alpha, seq=frame.seq, t_capture=frame.t_capture, source_size=size, coef=coef)

    def _period(self) -> float:
        hz = self.max_hz or getattr(self.matter, "default_max_hz", 0.0)
        return 1.0 / hz if hz > 0 else 0.0

    def swap(self, matter: Matter | None = None, smoother: smoothing.Smoother | None = None,
             max_hz: float | None = None) -> Matter | None:
        """Switch model, smoother and/or rate cap while running; returns the old matter."""
        with self._lock:
            old = self.matter
            if matter is not None:
                self.matter = matter
            if max_hz is not None:
                self.max_hz = max_hz
            self.min_period = self._period()  # a new model brings its own default rate
            if smoother is not None:
                self.smoother = smoother
            self.smoother.reset()
            return old if matter is not None else None

    def _loop_once(self) -> bool:
        if not self._pace():  # wait for our slot first, then take the newest frame
            return False
        try:
            frame = self.inbox.take(timeout=0.1)
        except Closed:
            return False
        if frame is None:
            return True
        if self.t_first is None:
            self.t_first = time.monotonic()
        try:
            matte = self.process(frame)
            if matte is None:
                return True
        except VcamError:
            raise
        except Exception as e:
            # Fail closed: publish a "no matte" so the compositor blurs everything, log once
            # per run of failures, and retry with backoff rather than on every frame. The
            # camera stays in the call, blurred, instead of the program dying.
            with self._lock:
                self.errors += 1
                self._consecutive += 1
                self._failed_seq = max(self._failed_seq, frame.seq)
                first = self._consecutive == 1
                backoff = min(2.0, 0.05 * 2 ** min(self._consecutive, 6))
            if first:
                log.error("matting failed (%s: %s); output is fully blurred until it recovers", type(e).__name__, e)
            self.outbox.put(Matte(alpha=None, seq=frame.seq, t_capture=frame.t_capture, source_size=frame.size))
            self._stop.wait(backoff)
            return True
        if self._recovering(frame.seq):
            log.info("matting recovered")
        if self.guard:
            matte = self._guarded(matte)
        self.outbox.put(matte)
        return True

    def _guarded(self, matte: Matte) -> Matte:
        """Fail closed on a collapsed matte: publish "no matte" (the compositor blurs everything)."""
        why = collapse_reason(matte.alpha)
        with self._lock:
            was, self._collapse = self._collapse, why
            if why:
                self.collapsed += 1
        if why and not was:
            log.warning("%s: output fully blurred until a person is clearly in view", why)
        elif was and not why:
            log.info("person in view again: the matte is in use")
        if why:
            return Matte(alpha=None, seq=matte.seq, t_capture=matte.t_capture, source_size=matte.source_size)
        return matte

    def _pace(self) -> bool:
        """Honour ``max_hz`` across all workers: each inference starts a full period after the
        previous one started. False if stopped while waiting."""
        if not self.min_period:
            return True
        with self._lock:
            start = max(time.monotonic(), self._next_start)
            self._next_start = start + self.min_period
        delay = start - time.monotonic()
        return delay <= 0 or not self._stop.wait(delay)

    def _recovering(self, seq: int) -> bool:
        """A success on a frame newer than the last failure ends a run of failures (a result that
        was already in flight on another worker does not)."""
        with self._lock:
            if self._consecutive == 0 or seq < self._failed_seq:
                return False
            self._consecutive = 0
            return True

    def _finish(self):
        if self.outbox is not None:
            self.outbox.close()


class CompositeStage(_Worker):
    """Refine + blend each frame with the newest matte."""

    thread_name = "vcam-compositor"

    def __init__(self, compositor: Compositor, inbox: Mailbox | None = None, mattes: Mailbox | None = None,
                 outbox: Mailbox | None = None, *, keep_alpha: bool = False, on_error=None):
        super().__init__(on_error)
        self.compositor = compositor
        self.inbox, self.mattes, self.outbox = inbox, mattes, outbox
        self.keep_alpha = keep_alpha
        self.max_matte_age = 1.0  # s between the matte's frame and the current one before failing closed
        self.stale_matte = False
        self.first_matte = False
        self.t_first_frame: float | None = None
        self.timings = Timings()
        self.count = 0
        self.matte_age = Timings()  # frames between the matte's frame and the composited frame

    def process(self, frame: Frame, matte: Matte | None) -> Composite:
        t0 = time.perf_counter()
        comp = self.compositor.render(frame, matte, keep_alpha=self.keep_alpha)
        self.timings.add((time.perf_counter() - t0) * 1e3)
        self.count += 1
        if matte is not None:
            self.matte_age.add(frame.seq - matte.seq)
        return comp

    def _loop_once(self) -> bool:
        try:
            frame = self.inbox.take(timeout=0.1)
        except Closed:
            return False
        if frame is None:
            return True
        if self.t_first_frame is None:
            self.t_first_frame = frame.t_capture
        matte = self.mattes.peek()
        if matte is not None and frame.t_capture - matte.t_capture > self.max_matte_age:
            # Matting has stalled (a slow or stuck model): an old matte no longer fits the
            # person, and would uncover the room they moved away from. Fail closed.
            if not self.stale_matte:
                log.warning("matte is %.1f s old: output is fully blurred until matting catches up",
                            frame.t_capture - matte.t_capture)
            self.stale_matte = True
            matte = None
        elif self.stale_matte and matte is not None:
            self.stale_matte = False
            log.info("matting caught up")
        if matte is not None and not self.first_matte:
            self.first_matte = True
            log.info("first matte in use, %.1f s after the first frame", frame.t_capture - self.t_first_frame)
        self.outbox.put(self.process(frame, matte))
        return True

    def _finish(self):
        if self.outbox is not None:
            self.outbox.close()


@dataclass
class Parts:
    """Everything a pipeline is built from; tests and ``vcam process`` build these directly."""

    source: Source
    matter: Matter
    smoother: smoothing.Smoother
    compositor: Compositor
    sinks: list[Sink]
    reopen: Callable[[], Source] | None = None  # opens the source again (after releasing the camera)


def build_sinks(cfg: Config, width: int, height: int, fps: float) -> list[Sink]:
    sinks: list[Sink] = []
    try:
        if cfg.output.virtualcam:
            sinks.append(VirtualCamSink(width, height, fps, device=cfg.output.device, backend=cfg.output.backend))
        if cfg.output.record:
            sinks.append(RecordSink(cfg.output.record, width, height, fps))
        if cfg.output.preview:
            sinks.append(PreviewSink())
    except BaseException:
        for s in sinks:
            s.close()
        raise
    if not sinks:
        sinks.append(NullSink())
    return sinks


def build_parts(cfg: Config, *, sinks: list[Sink] | None = None, source: Source | None = None) -> Parts:
    """Open the source, load the model, prepare the compositor and open the sinks, in that order,
    closing whatever was opened if a later step fails."""
    c = cfg.capture
    opened: list = []
    try:
        # The compositor first: a bad background fails before the camera is touched.
        compositor = Compositor(cfg.compositor, cfg.refine)
        if source is None:
            source = open_source(c.source, width=c.width, height=c.height, fps=c.fps)
        opened.append(source)
        matter = create_matter(cfg.matting)
        opened.append(matter)
        if sinks is None:
            sinks = build_sinks(cfg, c.width, c.height, c.fps)
        reopen = None
        if getattr(source, "kind", "") == "camera":
            reopen = lambda: open_source(c.source, width=c.width, height=c.height, fps=c.fps)  # noqa: E731
        return Parts(source, matter, smoothing.create(cfg.smoothing), compositor, sinks, reopen)
    except BaseException:
        for o in reversed(opened):
            o.close()
        raise


class Pipeline:
    """The live pipeline. ``run()`` blocks until ``seconds`` pass, the source ends,
    :meth:`request_stop` is called (signal handlers do this), or a stage fails."""

    def __init__(self, cfg: Config, parts: Parts, *, live_size: bool = True, keep_alpha: bool = False):
        self.cfg = cfg
        self.parts = parts
        c = cfg.capture
        self.fps = c.fps
        self.m_frames = Mailbox("capture→matting")
        self.c_frames = Mailbox("capture→compositor")
        self.mattes = Mailbox("matting→compositor")
        self.comps = Mailbox("compositor→output")
        self._errors: list[BaseException] = []
        self._stop = threading.Event()
        size = (c.width, c.height) if live_size else None
        self.capture = CaptureStage(parts.source, [self.m_frames, self.c_frames], loop=c.loop,
                                    size=size, on_error=self._fail, reopen=parts.reopen)
        self.matting = MattingStage(parts.matter, parts.smoother, parts.compositor.refiner, self.m_frames, self.mattes,
                                    max_hz=cfg.matting.max_hz, workers=cfg.matting.workers, on_error=self._fail)
        self.compositing = CompositeStage(parts.compositor, self.c_frames, self.mattes, self.comps,
                                          keep_alpha=keep_alpha, on_error=self._fail)
        self.compositing.max_matte_age = cfg.matting.max_age
        self.matting.guard = cfg.matting.guard
        self.output = OutputStage(self.comps, parts.sinks, c.fps, on_error=self._fail,
                                  curtain=lambda img: parts.compositor.fail_blur(img, None, np.empty_like(img)),
                                  stall_after=cfg.output.stall_after)
        self.cpu = CpuMeter()
        self.t_start = 0.0
        self.t_end = 0.0

    def _fail(self, e: BaseException) -> None:
        self._errors.append(e)
        self._stop.set()

    def switch_model(self, matting_cfg) -> None:
        """Load another model (or the same with new settings) and swap it in; the old one keeps
        serving until the new one is ready, so the output never stalls."""
        new = create_matter(matting_cfg)
        if not getattr(new, "stateless", False) and self.matting.workers > 1:
            log.info("%s is recurrent: it runs on one matting worker", matting_cfg.model)
        self.matting.swap(matter=new, max_hz=matting_cfg.max_hz)
        self.cfg = self.cfg.replace(matting=dataclasses.asdict(matting_cfg))

    def switch_smoothing(self, smoothing_cfg) -> None:
        self.matting.swap(smoother=smoothing.create(smoothing_cfg))

    def keep(self, x: float | None, y: float | None = None) -> dict:
        """Keep only the person at camera pixel (x, y); ``None`` keeps everyone again."""
        if x is None:
            if self.matting.keeper is not None:
                self.matting.keeper.clear()
            return {"state": "all"}
        frame = self.matting.last_frame
        if frame is None:
            raise ConfigError("no camera frame has been matted yet: try again in a moment")
        if self.matting.keeper is None:
            from .segment.keep import SubjectKeeper

            self.matting.keeper = SubjectKeeper()
        self.matting.keeper.request(frame.image, x, y)
        return self.matting.keeper.status()

    def request_stop(self) -> None:
        self._stop.set()

    def run(self, seconds: float = 0.0, *, on_tick: Callable[["Pipeline"], None] | None = None) -> dict:
        # OpenCV's own worker pool would fight onnxruntime's threads for the same
        # cores; each stage is already its own thread, so OpenCV runs serially in it.
        import cv2

        cv2.setNumThreads(1)
        self.cpu.start()
        self.t_start = time.monotonic()
        stages = [self.output, self.compositing, self.matting, self.capture]
        try:
            for s in stages:
                s.start()
            deadline = self.t_start + seconds if seconds > 0 else None
            while not self._stop.is_set():
                # Short waits keep the main thread responsive to Ctrl-C and SIGTERM.
                self._stop.wait(0.1)
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if not self.output.alive:
                    break  # the source ended and everything drained
                if on_tick:
                    on_tick(self)
        finally:
            self.t_end = time.monotonic()
            self.close()
        if self._errors:
            raise self._errors[0]
        return self.stats()

    def close(self) -> None:
        """Stop every stage (idempotent); each join is bounded so the whole stop stays under 2 s."""
        self._stop.set()
        for box in (self.m_frames, self.c_frames, self.mattes, self.comps):
            box.close()
        for s in (self.capture, self.matting, self.compositing, self.output):
            s.stop(timeout=0.4)
        for sink in self.parts.sinks:
            try:
                sink.close()
            except Exception as e:  # closing must not hide the real error
                log.warning("closing %s failed: %s", sink.kind, e)
        self.capture.source.close()
        self.matting.matter.close()

    def stats(self) -> dict:
        """Run statistics; valid while running too (``vcam ctl status``)."""
        o = self.output
        out_wall = (o.t_last - o.t_first) if o.t_first and o.t_last and o.t_last > o.t_first else 0.0
        m = self.matting
        t_end = self.t_end or time.monotonic()
        m_wall = (t_end - m.t_first) if m.t_first else 0.0
        cap_wall = t_end - self.t_start if self.t_start else 0.0
        return {
            "capture_fps": round(self.capture.frames / cap_wall, 2) if cap_wall else 0.0,
            "output_fps": round((o.sent - 1) / out_wall, 2) if out_wall else 0.0,
            "new_frames_fps": round((o.new - 1) / out_wall, 2) if out_wall else 0.0,
            "matting_hz": round(m.count / m_wall, 2) if m_wall else 0.0,
            "latency_ms": o.latency.summary(),
            "frames": {"captured": self.capture.frames, "matted": m.count, "composited": self.compositing.count,
                       "sent": o.sent, "repeated": o.repeats, "matting_errors": m.errors,
                       "mattes_withheld": m.collapsed},
            "dropped": {"matting stale": m.stale, "capture→matting": self.m_frames.drops, "capture→compositor": self.c_frames.drops,
                        "compositor→output": self.comps.drops},
            "stage_ms": {"capture": self.capture.timings.summary(), "matting": m.timings.summary(),
                         "compositor": self.compositing.timings.summary(), "output": o.send_ms.summary()},
            "matte_age_frames": self.compositing.matte_age.summary(),
            "max_output_gap_ms": round(o.max_gap * 1e3, 1),
            "camera_reconnects": self.capture.reconnects,
            "cpu_cores": self.cpu.cores(),
            "peak_rss_mb": peak_rss_mb(),
            "seconds": round(t_end - self.t_start, 2),
            "size": [self.cfg.capture.width, self.cfg.capture.height],
            "fps_target": self.fps,
            "model": self.cfg.matting.model,
            "input_size": self.cfg.matting.input_size,
        }


def run_lockstep(parts: Parts, *, keep_alpha: bool = False, on_composite: Callable[[Composite, Frame], None] | None = None,
                 progress: Callable[[int], None] | None = None, close: bool = True) -> dict:
    """Offline mode: every frame through the same matting and compositor stages, in order, none dropped."""
    matting = MattingStage(parts.matter, parts.smoother, parts.compositor.refiner)
    compositing = CompositeStage(parts.compositor, keep_alpha=keep_alpha)
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
