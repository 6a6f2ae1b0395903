"""The live pipeline with a file/synthetic source and a recording pyvirtualcam backend."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from vcam import sample
from vcam.media.sources import SampleSource, Source
from vcam.models.matting import Matter
from vcam.config import Config
from vcam.engine.parts import build_parts
from vcam.live.pipeline import Pipeline

from helpers import patch_mean, sample_points

GREEN = np.array([0, 255, 0])  # BGR of #00ff00


def _cfg(**over):
    base = {"capture": {"source": "sample", "width": 640, "height": 360, "fps": 15},
            "compositor": {"mode": "color", "color": "#00ff00"},
            "output": {"virtualcam": True, "backend": "recording", "device": "rec0"}}
    for k, v in over.items():
        base.setdefault(k, {}).update(v)
    return Config().replace(**base)


def test_live_run_sends_composited_frames_at_the_configured_fps(recording_backend, no_leaked_threads):
    cfg = _cfg()
    pipe = Pipeline(cfg, build_parts(cfg))
    stats = pipe.run(seconds=4.0)
    cam = recording_backend.instances[0]
    assert cam.closed, "the virtual device must be closed on exit"
    # Frames arrive at the configured fps, steadily (repeats fill in for slow frames).
    times = np.array(cam.times)
    span = times[-1] - times[0]
    rate = (len(times) - 1) / span
    assert span > 3.0 and abs(rate - 15) < 1.0, rate
    assert np.percentile(np.diff(times), 95) < 2.5 / 15
    assert stats["output_fps"] == pytest.approx(15, abs=1.0)
    assert stats["matting_hz"] > 1.0 and stats["frames"]["matting_errors"] == 0
    # ...and they are composited: once mattes flow, the background is green, the person is not.
    last = cam.frames[-1]
    assert last.shape == (360, 640, 3)
    matted = [f for f in cam.frames[len(cam.frames) // 2:]]
    greenish = 0
    for f in matted:
        # Each frame is from some t; check the points that hold for any pan position.
        person, background = sample_points(0.0, 640, 360)
        bg = np.mean([np.abs(patch_mean(f, p, 3) - GREEN).max() for p in background])
        greenish += bg < 40
    assert greenish > 0.8 * len(matted)
    # The statistics agree with what the backend received.
    assert stats["frames"]["sent"] == len(cam.frames)
    assert stats["frames"]["captured"] >= stats["frames"]["composited"] >= stats["frames"]["matted"] > 0
    assert 0 < stats["latency_ms"]["p50"] <= stats["latency_ms"]["p95"] < 1000
    assert 0 < stats["cpu_cores"] <= 2.5 and stats["peak_rss_mb"] > 50
    assert stats["stage_ms"]["matting"]["n"] == stats["frames"]["matted"]
    assert stats["model"] == "modnet" and stats["size"] == [640, 360]
    assert set(stats["dropped"]) == {"matting stale", "capture→matting", "capture→compositor", "compositor→output"}


def test_person_is_kept_in_live_output(recording_backend):
    cfg = _cfg()
    pipe = Pipeline(cfg, build_parts(cfg), keep_alpha=True)
    seen = []
    pipe.output.taps.append(lambda c: seen.append(c) if c.matte_seq >= 0 else None)
    pipe.run(seconds=3.0)
    assert seen, "no composite with a matte came out"
    comp = seen[-1]
    # The compositor keeps the input frame: locate the person via the matte itself.
    person = comp.alpha > 240
    assert person.mean() > 0.2
    assert np.abs(comp.image[person].astype(int) - comp.frame[person]).mean() < 3


def test_fail_closed_before_the_first_matte(recording_backend):
    """No frame leaks the raw room: before any matte exists, output is fully blurred."""
    cfg = _cfg()
    parts = build_parts(cfg)

    class SlowMatter(Matter):
        name = "slow"

        def __init__(self, inner):
            super().__init__(inner.cfg)
            self.inner = inner

        def infer(self, bgr):
            time.sleep(10)  # never finishes within the run
            return self.inner.infer(bgr)

    parts.matter = SlowMatter(parts.matter)
    pipe = Pipeline(cfg, parts, keep_alpha=True)
    comps = []
    pipe.output.taps.append(comps.append)
    pipe.run(seconds=1.5)
    assert comps and all(c.matte_seq == -1 for c in comps)
    for c in comps[:5]:
        # Blurred: much less high-frequency detail than the input frame.
        detail_in = np.abs(np.diff(c.frame.astype(int), axis=1)).mean()
        detail_out = np.abs(np.diff(c.image.astype(int), axis=1)).mean()
        assert detail_out < 0.35 * detail_in


class ExplodingSource(Source):
    kind = "exploding"
    fps = 30.0

    def __init__(self):
        self.n = 0

    def read(self):
        self.n += 1
        if self.n > 5:
            raise RuntimeError("camera on fire")
        return sample.render(0, 320, 180)


def test_stage_exception_reaches_the_supervisor(no_leaked_threads):
    cfg = _cfg(output={"virtualcam": False}, capture={"width": 320, "height": 180})
    pipe = Pipeline(cfg, build_parts(cfg, source=ExplodingSource()))
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="camera on fire"):
        pipe.run(seconds=10)
    assert time.monotonic() - t0 < 3


def test_file_source_ends_the_run_and_threads_are_joined(tmp_path, no_leaked_threads):
    cfg = _cfg(output={"virtualcam": False}, capture={"loop": False})
    parts = build_parts(cfg, source=SampleSource(640, 360, 30, seconds=1.0))
    stats = Pipeline(cfg, parts).run(seconds=20)
    assert stats["seconds"] < 5
    assert stats["frames"]["captured"] == 30


def test_sigterm_stops_within_two_seconds(tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    p = subprocess.Popen([sys.executable, "-m", "vcam", "--source", "sample", "--size", "320x180",
                          "--no-virtualcam", "--stats-json", str(tmp_path / "s.json")],
                         stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = []
        while not any("running" in line for line in lines) and len(lines) < 10:
            lines.append(p.stderr.readline())
        assert "running" in lines[-1], lines
        time.sleep(1.0)
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=5)
        assert time.monotonic() - t0 < 2.0
        assert rc == 0
        assert (tmp_path / "s.json").exists()
    finally:
        p.kill()


def test_a_matte_older_than_max_age_fails_closed_and_a_model_that_keeps_falling_behind_is_said_once(caplog):
    """The compositor never uses a matte older than matting.max_age (the room the person moved away from would
    show): the frame is fully blurred instead. A model that keeps falling behind (u2netp live on a slow CPU) made
    two log lines a second; after three episodes one line says so, and the stats count them."""
    import logging

    from vcam.core.frames import Frame, Matte
    from vcam.core.mailbox import Mailbox
    from vcam.engine.units import CompositeUnit
    from vcam.imaging.compositor import Compositor
    from vcam.live.stages import CompositeStage

    cfg = Config()
    W, H = 320, 180
    stage = CompositeStage(CompositeUnit(Compositor(cfg.compositor, cfg.refine)), Mailbox("f"), Mailbox("m"),
                           Mailbox("o"), max_matte_age=1.0)
    person = np.ones((36, 64), np.float32)  # "all person": a matte in use shows the frame itself

    def sharpness(img):
        g = img[..., 1].astype(np.float32)
        return float(np.abs(np.diff(g, axis=1)).mean())

    seq = 0
    with caplog.at_level(logging.INFO, logger="vcam.live.stages"):
        for episode in range(6):
            for age in (0.2, 1.5):  # a fresh matte, then one too old
                img = sample.render(seq / 30, W, H, rng=np.random.default_rng(seq))
                stage.mattes.put(Matte(alpha=person, seq=seq, t_capture=seq / 30 - age))
                stage.handle(Frame(img, seq, seq / 30))
                out = stage.outbox.take(timeout=1).image
                if age < 1.0:
                    assert np.array_equal(out, img)  # the matte says person everywhere: the frame as it is
                else:
                    assert sharpness(out) < 0.5 * sharpness(img)  # fully blurred, never the sharp room
                seq += 1
    assert stage.stale_episodes == 6 and stage.stale_frames == 6
    lines = [r.getMessage() for r in caplog.records]
    assert sum("output is fully blurred" in m for m in lines) == 3
    assert sum("keeps falling behind" in m for m in lines) == 1
    assert sum("first matte in use" in m for m in lines) == 1 and "first matte in use" in lines[0]
