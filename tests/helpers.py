"""Helpers shared by the tests (imported as ``helpers``; pytest puts tests/ on sys.path)."""
from __future__ import annotations

import numpy as np

from vcam import sample


def sample_points(t: float, width: int, height: int):
    """Known person and far-background pixel positions in the sample frame at time ``t``."""
    win = sample.crop_window(t, width / height)
    person = [q for p in sample.PERSON_POINTS if (q := sample.to_frame(p, win, width, height))]
    background = [q for p in sample.BACKGROUND_POINTS if (q := sample.to_frame(p, win, width, height))]
    assert len(person) >= 3 and len(background) >= 2
    return person, background


def patch_mean(img: np.ndarray, xy, r: int = 6) -> np.ndarray:
    x, y = xy
    return img[max(0, y - r):y + r + 1, max(0, x - r):x + r + 1].reshape(-1, *img.shape[2:]).mean(axis=0)


class RecordingBackend:
    """A pyvirtualcam backend that keeps what it is sent (registered as 'recording')."""

    instances: list["RecordingBackend"] = []

    def __init__(self, *, width, height, fps, fourcc, device, **kw):
        self.width, self.height, self.fps = width, height, fps
        self.frames: list[np.ndarray] = []
        self.times: list[float] = []
        self.closed = False
        self._device = device or "recording0"
        RecordingBackend.instances.append(self)

    def send(self, frame):
        import time

        self.frames.append(frame.reshape(self.height, self.width, 3).copy())
        self.times.append(time.monotonic())

    def close(self):
        self.closed = True

    def device(self):
        return self._device

    def native_fourcc(self):
        return None
