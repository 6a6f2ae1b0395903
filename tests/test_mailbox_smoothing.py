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
