"""Issue 4's compositing and guard: decontaminated borders, light wrap, the lite model, and a
matte that collapses (no person, garbage) failing closed."""
import logging
import time

import cv2
import numpy as np
import pytest

from vcam import sample
from vcam.media.sources import Source
from vcam.imaging.compositor import Compositor
from vcam.config import CompositorConfig, Config
from vcam.engine.parts import build_parts
from vcam.imaging.guard import collapse_reason
from vcam.live.pipeline import Pipeline

ASTRO = cv2.imread(str(__import__("pathlib").Path(__file__).resolve().parents[1] / "vcam" / "data" / "astronaut.jpg"))


def _disk_scene(h=240, w=320):
    """A blue person (disk with a soft 12 px border) in front of a white room."""
    yy, xx = np.mgrid[:h, :w]
    d = np.hypot(xx - w / 2, yy - h / 2)
    a = np.clip((80 - d) / 12 + 0.5, 0, 1)
    person = np.array([200, 60, 40], np.float64)  # BGR
    room = np.array([240, 240, 240], np.float64)
    img = (a[..., None] * person + (1 - a[..., None]) * room).round().astype(np.uint8)
    return img, (a * 255).round().astype(np.uint8), a, person


def test_decontamination_takes_the_old_room_out_of_the_border():
    img, a8, a, person = _disk_scene()
    ideal = a[..., None] * person  # the same person over a black background
    band = (a8 > 20) & (a8 < 235)
    errs = {}
    for dec in (False, True):
        comp = Compositor(CompositorConfig(mode="color", color="#000000", decontaminate=dec))
        out = comp.compose(img, a8, weight=a8)
        errs[dec] = float(np.abs(out[band].astype(float) - ideal[band]).mean())
    # Without it the white room glows around the person; with it the border is the person's own colour.
    assert errs[True] < errs[False] / 3, errs
    assert errs[True] < 6


def test_light_wrap_lights_the_rim_and_not_the_middle(tmp_path):
    img, a8, a, person = _disk_scene()
    red = np.zeros((240, 320, 3), np.uint8)
    red[:] = (0, 0, 255)
    path = tmp_path / "red.png"
    cv2.imwrite(str(path), red)
    outs = {}
    for lw in (0.0, 0.5):
        comp = Compositor(CompositorConfig(mode="replace", background=str(path), light_wrap=lw))
        outs[lw] = comp.compose(img, a8, weight=cv2.resize(a.astype(np.float32), (80, 60))).astype(int)
    rim = (a8 == 255) & (a8[::-1] == 255)  # inside the person...
    yy, xx = np.mgrid[:240, :320]
    d = np.hypot(xx - 160, yy - 120)
    rim &= (d > 70) & (d < 74)  # ...just inside its edge
    middle = d < 20
    gain = (outs[0.5][..., 2] - outs[0.0][..., 2])
    assert gain[rim].mean() > 15  # the red background's light wraps the rim
    assert abs(gain[middle]).max() <= 1  # the middle of the person is untouched


def test_a_held_matte_keeps_its_light_wrap_and_a_new_one_redraws_it(tmp_path):
    """The wrap is made once per published matte while it is held (render): frame after frame the
    picture is what a fresh compositor gives, and a moved matte or a new strength is not served
    the old wrap."""
    from vcam.core.frames import Frame, Matte

    img, a8, a, person = _disk_scene()
    red = np.zeros((240, 320, 3), np.uint8)
    red[:] = (0, 0, 255)
    path = tmp_path / "red.png"
    cv2.imwrite(str(path), red)
    cfg = CompositorConfig(mode="replace", background=str(path), light_wrap=0.5)
    small = cv2.resize(a.astype(np.float32), (80, 60))
    held = Matte(alpha=small, seq=0, t_capture=0.0)
    moved = Matte(alpha=np.roll(small, 6, axis=1), seq=1, t_capture=0.03)
    comp = Compositor(cfg)
    rng = np.random.default_rng(3)
    frames = [np.clip(img.astype(int) + rng.integers(-3, 4, img.shape), 0, 255).astype(np.uint8) for _ in range(3)]
    for seq, (frame, matte) in enumerate(zip(frames, (held, held, moved))):
        got = comp.render(Frame(frame, seq, 0.0), matte).image
        want = Compositor(cfg).render(Frame(frame, seq, 0.0), matte).image
        assert (got == want).all(), seq
    comp.configure(CompositorConfig(mode="replace", background=str(path), light_wrap=0.1))
    got = comp.render(Frame(frames[0], 3, 0.0), moved).image
    want = Compositor(comp.cfg).render(Frame(frames[0], 3, 0.0), moved).image
    assert (got == want).all()


def test_collapse_reasons():
    assert collapse_reason(np.zeros((144, 256), np.float32)) == "no person in view"
    assert "covers" in collapse_reason(np.ones((144, 256), np.float32))
    mush = np.random.default_rng(0).uniform(0.2, 0.8, (144, 256)).astype(np.float32)
    mush[:40] = 1.0
    assert "undecided" in collapse_reason(mush)
    fine = np.zeros((144, 256), np.float32)
    fine[40:, 80:180] = 1.0
    assert collapse_reason(fine) == ""


FPS, W, H = 20, 320, 180


class Room(Source):
    """A camera on an empty textured room, then someone sits down (frame 30 on)."""

    kind = "camera"
    paced_by_device = True
    fps = FPS

    def __init__(self):
        rng = np.random.default_rng(3)
        self.room = cv2.GaussianBlur(rng.integers(0, 256, (H, W, 3), dtype=np.uint8), (0, 0), 1.0)
        self.n = 0

    def read(self):
        time.sleep(1 / FPS)
        self.n += 1
        return self.room.copy() if self.n < 30 else sample.render(self.n / FPS, W, H, noise=0)


def detail(img):
    return float(np.abs(np.diff(img.astype(np.int16), axis=1)).mean())


def test_empty_room_is_blurred_then_the_person_is_composited(caplog, modnet_path):
    caplog.set_level(logging.INFO, logger="vcam")
    cfg = Config().replace(capture={"source": "sample", "width": W, "height": H, "fps": FPS},
                           compositor={"mode": "color", "color": "#00ff00"}, output={"virtualcam": False})
    parts = build_parts(cfg, source=Room())
    pipe = Pipeline(cfg, parts)
    sent = []
    orig = pipe.output.send
    pipe.output.send = lambda comp, fresh: (sent.append((parts.source.n, comp.image.copy())), orig(comp, fresh))
    stats = pipe.run(6.0)
    assert stats["frames"]["mattes_withheld"] >= 3
    room_detail = detail(parts.source.room)
    empty = [img for n, img in sent if 5 < n < 28]
    assert empty and all(detail(img) < 0.35 * room_detail for img in empty)  # the room, fully blurred
    assert all(np.abs(img.astype(int) - (0, 255, 0)).sum(-1).mean() > 60 for img in empty)  # not the flat colour
    late = [img for n, img in sent if n > 80]
    green = [(np.abs(img.astype(int) - (0, 255, 0)).sum(-1) < 40).mean() for img in late]
    assert late and np.median(green) > 0.3  # someone is there: the background is replaced again
    msgs = [r.getMessage() for r in caplog.records]
    assert sum("no person in view" in m for m in msgs) == 1
    assert any("person in view again" in m for m in msgs)


def test_lite_model_on_the_astronaut():
    pytest.importorskip("ai_edge_litert", reason="--model lite needs the lite extra: pip install -e '.[lite]'")
    from vcam.models.matting import create

    matter = create(Config().matting.__class__(model="lite"))
    assert matter.infer(cv2.resize(ASTRO, (640, 360))).shape == (144, 256)  # 16:9: the landscape model
    a = matter.infer(ASTRO)  # square: the square model
    assert a.shape == (256, 256) and a.dtype == np.float32
    full = cv2.resize(a, (512, 512))
    assert full[100:130, 200:250].mean() > 0.8  # face
    assert full[380:460, 60:180].mean() > 0.8  # suit
    assert full[20:60, 450:500].mean() < 0.2  # wall
