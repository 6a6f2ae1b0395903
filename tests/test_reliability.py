"""Faults injected on cue: camera loss and stalls, matting errors and stalls. Output keeps its
rate and never shows the unmasked room."""
import logging
import threading
import time

import numpy as np

from vcam import sample
from vcam.media.sources import Source
from vcam.models.matting import Matter
from vcam.config import Config
from vcam.engine.parts import build_parts
from vcam.live.pipeline import Pipeline

FPS = 20
W, H = 320, 180


def _cfg():
    return Config().replace(capture={"source": "sample", "width": W, "height": H, "fps": FPS},
                            compositor={"mode": "none"},  # passthrough: any non-blurred frame is the raw room
                            output={"virtualcam": False})


def detail(img: np.ndarray) -> float:
    return float(np.abs(np.diff(img.astype(np.int16), axis=1)).mean())


RAW_DETAIL = detail(sample.render(0, W, H, noise=0))


class Camera(Source):
    """A fake camera: paced by its own read(), able to fail or stall on cue; ``reopener`` opens it again."""

    kind = "camera"
    paced_by_device = True
    reopenable = True
    fps = FPS

    def __init__(self, script, reopener=None):
        self.script = script  # callable(n) -> "ok" | "fail" | ("stall", seconds)
        self.reopener = reopener
        self.n = 0

    def reopen(self):
        return self.reopener()

    def read(self):
        time.sleep(1 / FPS)
        self.n += 1
        what = self.script(self.n)
        if what == "fail":
            return None
        if isinstance(what, tuple):
            time.sleep(what[1])
        return sample.render(self.n / FPS, W, H, noise=0)


def _run(parts, seconds, cfg=None):
    cfg = cfg or _cfg()
    pipe = Pipeline(cfg, parts, keep_alpha=True)
    sent = []
    orig = pipe.output.send
    pipe.output.send = lambda comp, fresh: (sent.append((time.monotonic(), comp.image.copy(), fresh)), orig(comp, fresh))
    stats = pipe.run(seconds)
    return pipe, stats, sent


def test_unplugged_camera_blurs_then_reconnects(caplog, modnet_path):
    caplog.set_level(logging.INFO, logger="vcam")
    attempts = {"n": 0}

    def reopen():
        attempts["n"] += 1
        if attempts["n"] < 3:
            raise OSError("no such device")
        return Camera(lambda n: "ok")

    cfg = _cfg()
    parts = build_parts(cfg, source=Camera(lambda n: "ok" if n < 20 else "fail", reopen))
    pipe, stats, sent = _run(parts, 5.0, cfg)
    times = np.array([t for t, _, _ in sent])
    assert np.diff(times).max() < 0.2, "the output must not stall while the camera is away"
    assert stats["camera_reconnects"] == 1
    msgs = [r.getMessage() for r in caplog.records]
    assert sum("camera lost" in m for m in msgs) == 1 and sum("camera reconnected" in m for m in msgs) == 1
    # During the outage (repeats after 0.5 s without news) the picture is the blurred last frame.
    curtain = [img for t, img, fresh in sent if not fresh and detail(img) < 0.35 * RAW_DETAIL]
    assert len(curtain) >= 5
    assert sent[-1][2] and detail(sent[-1][1]) > 0.6 * RAW_DETAIL  # live again afterwards


def test_stalled_camera_shows_curtain_not_a_frozen_room(modnet_path):
    cfg = _cfg()
    parts = build_parts(cfg, source=Camera(lambda n: ("stall", 1.5) if n == 30 else "ok"))
    pipe, stats, sent = _run(parts, 4.0, cfg)
    times = np.array([t for t, _, _ in sent])
    assert np.diff(times).max() < 0.2
    late, last_fresh = [], sent[0][0]
    for t, img, fresh in sent:
        if fresh:
            last_fresh = t
        elif t - last_fresh > 0.6:  # well into a stall
            late.append(img)
    assert len(late) >= 10 and all(detail(img) < 0.35 * RAW_DETAIL for img in late)


class BrokenMatter(Matter):
    name = "broken"

    def __init__(self, inner, fail_after=2, hang=0.0):
        super().__init__(inner.cfg)
        self.inner, self.fail_after, self.hang, self.calls = inner, fail_after, hang, 0

    def infer(self, bgr):
        self.calls += 1
        if self.calls > self.fail_after:
            if self.hang:
                time.sleep(self.hang)
            else:
                raise RuntimeError("CUDA out of memory (injected)")
        return self.inner.infer(bgr)


def _blur_cfg():
    return _cfg().replace(compositor={"mode": "color", "color": "#00ff00"})


def test_matting_exception_fails_closed_and_logs_once(caplog, modnet_path):
    caplog.set_level(logging.INFO, logger="vcam")
    cfg = _blur_cfg()
    parts = build_parts(cfg)
    parts.matter = BrokenMatter(parts.matter)
    pipe, stats, sent = _run(parts, 2.5, cfg)
    assert stats["frames"]["matting_errors"] >= 3
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "matting failed" in errors[0].getMessage()
    tail = [img for t, img, fresh in sent[-10:]]
    assert all(detail(img) < 0.35 * RAW_DETAIL for img in tail)  # blurred, not the raw room


def test_stuck_model_fails_closed_after_a_second(modnet_path):
    cfg = _blur_cfg()
    parts = build_parts(cfg)
    parts.matter = BrokenMatter(parts.matter, fail_after=1, hang=30.0)
    pipe = Pipeline(cfg.replace(matting={"workers": 1}), parts)
    comps = []
    pipe.output.taps.append(comps.append)
    threading.Timer(3.0, pipe.request_stop).start()
    pipe.run(0)
    assert comps[0].matte_seq == -1  # before the first matte: blurred
    late = [c for c in comps if c.t_capture - comps[0].t_capture > 2.0]
    assert late and all(c.matte_seq == -1 for c in late), "an old matte must not be used for ever"
    assert all(detail(c.image) < 0.35 * RAW_DETAIL for c in late)


def test_on_demand_releases_and_takes_back_the_camera(modnet_path):
    """Unit-level fake: the reader count comes from a stub instead of /proc (the VM harness
    is where a real reader opens /dev/videoN)."""
    from vcam.live.watchers import OnDemand

    opened = []
    readers = {"n": 0}

    def reopen():
        opened.append(time.monotonic())
        return Camera(lambda n: "ok")

    cfg = _cfg()
    parts = build_parts(cfg, source=Camera(lambda n: "ok", reopen))
    pipe = Pipeline(cfg, parts)
    od = OnDemand(pipe, "/dev/video9", interval=0.1, count=lambda dev: readers["n"])
    t = threading.Thread(target=pipe.run, args=(4.0,))
    t.start()
    od.start()
    time.sleep(1.0)
    assert od.released is True and pipe.capture.source is not None
    frames_while_released = pipe.capture.frames
    time.sleep(0.5)
    assert pipe.capture.frames == frames_while_released  # the camera is closed: nothing is read
    readers["n"] = 1
    t_open = time.monotonic()
    time.sleep(1.0)
    assert opened and opened[0] - t_open < 1.0  # back within a second
    assert pipe.capture.frames > frames_while_released
    od.stop()
    t.join(5)
