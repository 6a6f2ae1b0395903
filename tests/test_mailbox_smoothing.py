"""The latest-wins mailbox and the temporal smoother's step response."""
import threading

import numpy as np
import pytest

from vcam.config import SmoothingConfig
from vcam.core.mailbox import Closed, Mailbox
from vcam.imaging.smoothing import create


def test_mailbox_latest_wins_and_counts_drops():
    box = Mailbox()
    for i in range(5):
        box.put(i)
    assert box.take(0) == 4
    assert box.drops == 4
    assert box.take(0) is None  # nothing new
    assert box.peek() == 4  # peek sees the newest, read or not
    box.close()
    with pytest.raises(Closed):
        box.take(0.01)


def test_mailbox_take_blocks_until_put():
    box = Mailbox()
    threading.Timer(0.05, box.put, args=("x",)).start()
    assert box.take(1.0) == "x"


def _run(kind, values, **kw):
    s = create(SmoothingConfig(kind=kind, **kw))
    return [float(s(np.full((4, 4), v, np.float32))[0, 0]) for v in values]


def test_adaptive_follows_a_real_step_at_once():
    out = _run("adaptive", [0.0] * 5 + [1.0] * 3)
    assert out[5] > 0.95, out  # a person stepping in is not smeared


def test_adaptive_filters_small_noise_strongly():
    out = _run("adaptive", [0.5, 0.54, 0.46, 0.54, 0.46, 0.54], strength=0.8, motion=0.12)
    jitter = np.abs(np.diff(out)).mean()
    assert jitter < 0.04, out  # raw jitter is 0.08


def test_ema_lags_on_a_step():
    out = _run("ema", [0.0] * 3 + [1.0] * 3, strength=0.5)
    assert out[3] == pytest.approx(0.5) and out[4] == pytest.approx(0.75)


def test_smoother_owns_its_state():
    s = create(SmoothingConfig(kind="adaptive"))
    m = np.zeros((4, 4), np.float32)
    first = s(m)
    m += 0.05  # the caller reuses its buffer...
    first += 1  # ...and scribbles over what it got back
    second = s(np.zeros((4, 4), np.float32))
    assert np.all(second == 0), "state must not alias the caller's arrays"


def test_resize_resets_state():
    s = create(SmoothingConfig(kind="ema", strength=0.9))
    s(np.zeros((4, 4), np.float32))
    assert s(np.ones((8, 8), np.float32))[0, 0] == 1.0


def test_adaptive_uses_image_motion():
    """Static image: matte noise is averaged away. Moving image: the new matte is taken at once."""
    s = create(SmoothingConfig(kind="adaptive", strength=0.9))
    rng = np.random.default_rng(0)
    guide = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    noisy = [np.clip(0.5 + rng.normal(0, 0.2, (16, 16)), 0, 1).astype(np.float32) for _ in range(12)]
    outs = [s(m, guide) for m in noisy]
    raw_flicker = np.mean([np.abs(noisy[i] - noisy[i - 1]).mean() for i in range(6, 12)])
    out_flicker = np.mean([np.abs(outs[i] - outs[i - 1]).mean() for i in range(6, 12)])
    assert out_flicker < 0.15 * raw_flicker
    # The person moves: the image changes, and the matte follows in one step.
    moved = np.roll(guide, 5, axis=1)
    step = np.zeros((16, 16), np.float32)
    assert np.abs(s(step, moved)).max() < 0.05


def test_adaptive_averages_its_first_readings_instead_of_keeping_the_first():
    """A model's unlucky first reading of a still picture is one sample: the next readings average with it
    (a mean of n readings) until there are enough of them for ``strength``. Kept at 95 % instead, it
    stayed for seconds at the 2-4 mattes/s a CPU budget gives."""
    s = create(SmoothingConfig(kind="adaptive", strength=0.95))
    guide = np.random.default_rng(1).integers(0, 256, (16, 16), dtype=np.uint8)
    wrong, right = np.zeros((16, 16), np.float32), np.ones((16, 16), np.float32)
    outs = [s(wrong, guide)] + [s(right, guide) for _ in range(4)]
    assert [float(o.mean()) for o in outs] == pytest.approx([0, 1 / 2, 2 / 3, 3 / 4, 4 / 5], abs=1e-4)
    for _ in range(40):  # then it settles to `strength`: a reading moves it by 5 %
        s(right, guide)
    before = s(right, guide)
    after = s(wrong, guide)
    assert float((before - after).mean()) == pytest.approx(0.05, abs=1e-3)
    s.reset()
    assert float(s(wrong, guide).mean()) == 0.0 and float(s(right, guide).mean()) == pytest.approx(0.5, abs=1e-4)
    small = guide[:8, :8]  # a new input size (the budget's ladder) starts the count again too
    assert float(s(wrong[:8, :8], small).mean()) == 0.0
    assert float(s(right[:8, :8], small).mean()) == pytest.approx(0.5, abs=1e-4)
