"""Between mattes, the held matte moves with the person (vcam.imaging.follow): the real model
on the shipped portrait, moved as a person sways at a webcam."""
from pathlib import Path

import cv2
import numpy as np

from vcam.config import CompositorConfig, Config, RefineConfig
from vcam.core.frames import Frame
from vcam.engine.units import MattingUnit
from vcam.imaging import smoothing
from vcam.imaging.compositor import Compositor
from vcam.imaging.follow import MatteFollower, track_gray

ASTRO = cv2.imread(str(Path(__file__).resolve().parents[1] / "vcam" / "data" / "astronaut.jpg"))


def _motion(w, h, dx, dy, zoom):
    M = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, zoom)
    M[:, 2] += (dx, dy)
    return M


def _moved(img, dx, dy, zoom=1.0, seed=0):
    """The portrait moved by (dx, dy) px and zoomed about its centre, with sensor noise."""
    h, w = img.shape[:2]
    out = cv2.warpAffine(img, _motion(w, h, dx, dy, zoom), (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    noise = np.random.default_rng(seed).normal(0, 3, out.shape)
    return np.clip(out + noise, 0, 255).astype(np.uint8)


def _alpha(refine: RefineConfig, frame: Frame, matte) -> np.ndarray:
    comp = Compositor(CompositorConfig(mode="color"), refine)
    return comp.render(frame, matte, keep_alpha=True).alpha


def _iou(a, b):
    a, b = a >= 128, b >= 128
    return (a & b).sum() / (a | b).sum()


def test_a_held_matte_moves_with_the_person(modnet):
    cfg = Config()
    unit = MattingUnit(modnet, smoothing.create(cfg.smoothing), Compositor(cfg.compositor, cfg.refine).refiner)
    old = unit.process(Frame(_moved(ASTRO, 0, 0, seed=1), 0, 0.0))  # the matte the compositor holds
    assert old.guide is not None and old.guide.shape == old.alpha.shape
    first = _alpha(cfg.refine, Frame(_moved(ASTRO, 0, 0, seed=1), 0, 0.0), old)  # the matte on its own frame
    now = Frame(_moved(ASTRO, 30, 12, zoom=1.03, seed=2), 8, 0.27)  # 8 frames later the person has moved
    h, w = ASTRO.shape[:2]
    # Where that matte belongs now: moved exactly as the picture was (the model's reading of the
    # new frame would differ elsewhere too, which is not what is tested here).
    truth = cv2.warpAffine(first, _motion(w, h, 30, 12, 1.03), (w, h), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)

    followed = _alpha(cfg.refine, now, old)
    held = _alpha(RefineConfig(follow=False), now, old)
    assert _iou(held, truth) < 0.9  # without following, the old matte trails the person
    assert _iou(followed, truth) > 0.98
    # The room where the person was is not left sharp: pixels that are room in the new frame's
    # own matte yet person in the output.
    room = truth < 10
    assert np.count_nonzero(room & (followed > 128)) < 0.002 * truth.size
    assert np.count_nonzero(room & (held > 128)) > 0.01 * truth.size


def test_unsure_tracking_and_a_still_picture_leave_the_matte_as_it_is(modnet):
    cfg = Config()
    unit = MattingUnit(modnet, smoothing.create(cfg.smoothing), Compositor(cfg.compositor, cfg.refine).refiner)
    m = unit.process(Frame(_moved(ASTRO, 0, 0, seed=1), 0, 0.0))
    f = MatteFollower()
    # The same picture again (new sensor noise only): the very same arrays, so the kernels keep
    # their stretched coefficients.
    a, coef, moved = f.follow(m.alpha, m.coef, m.guide, track_gray(_moved(ASTRO, 0, 0, seed=3), m.guide.shape))
    assert not moved and a is m.alpha and coef is m.coef
    # A cut to another scene (nothing of the matte's frame is in it): the matte stays put.
    other = cv2.resize(cv2.imread(str(Path(__file__).resolve().parents[1] / "vcam" / "data" / "astronaut.jpg"))[::-1],
                       ASTRO.shape[1::-1])
    a, coef, moved = f.follow(m.alpha, m.coef, m.guide, track_gray(cv2.GaussianBlur(other, (0, 0), 9), m.guide.shape))
    assert not moved and a is m.alpha
    # A moved picture: moved, and the next frame at the same place gives the same arrays again.
    g = track_gray(_moved(ASTRO, 20, 0, seed=4), m.guide.shape)
    a1, c1, moved = f.follow(m.alpha, m.coef, m.guide, g)
    assert moved and a1 is not m.alpha
    a2, c2, moved2 = f.follow(m.alpha, m.coef, m.guide, track_gray(_moved(ASTRO, 20, 0, seed=5), m.guide.shape))
    assert moved2 and a2 is a1 and c2 is c1
    # It was moved by the picture's motion: 20 px right of 512, none down, no zoom.
    M = f._M * (ASTRO.shape[1] / m.alpha.shape[1])
    assert abs(M[0, 2] - 20) < 2 and abs(M[1, 2]) < 2 and abs(f._M[0, 0] - 1) < 0.01
