"""The built-in ``sample`` clip: a public-domain portrait, animated.

The astronaut portrait (NASA, public domain, as shipped by scikit-image) is cropped
to a head-and-shoulders 16:9 window that pans and zooms slowly, with Gaussian
sensor noise, so the whole pipeline can run on a machine with no camera. The
crop geometry is exposed so tests can map known person and background points of
the portrait into any generated frame.
"""
from __future__ import annotations

import math
from functools import lru_cache
from importlib import resources

import cv2
import numpy as np

PERIOD_S = 8.0  # one pan/zoom cycle

# Points of the 512x512 portrait (x, y) that are certainly person / far background.
PERSON_POINTS = [(225, 110), (215, 210), (90, 280), (320, 285)]
BACKGROUND_POINTS = [(330, 40), (125, 30), (485, 40)]


@lru_cache(maxsize=1)
def portrait() -> np.ndarray:
    """The 512×512 astronaut portrait, ``[512, 512, 3] uint8 BGR``."""
    data = resources.files("vcam").joinpath("data/astronaut.jpg").read_bytes()
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return img


def crop_window(t: float, aspect: float) -> tuple[float, float, float, float]:
    """The portrait window ``(x0, y0, w, h)`` shown at time ``t`` for an output aspect ``w/h``."""
    phase = 2 * math.pi * t / PERIOD_S
    w = 512.0 * (0.97 + 0.03 * math.cos(phase))  # slow zoom, ±3%
    h = w / aspect
    if h > 512.0:
        h = 512.0
        w = h * aspect
    cx = 256.0 + 8.0 * math.sin(phase)  # slow pan, ±8 px
    cy = min(512.0 - h / 2, max(h / 2, h / 2 + 6.0 + 6.0 * math.sin(phase * 0.5)))
    x0 = min(max(cx - w / 2, 0.0), 512.0 - w)
    return x0, cy - h / 2, w, h


def to_frame(point: tuple[float, float], window, width: int, height: int) -> tuple[int, int] | None:
    """Map a portrait point into frame pixels; ``None`` if it is outside the window."""
    x0, y0, w, h = window
    fx = (point[0] - x0) * width / w
    fy = (point[1] - y0) * height / h
    if 0 <= fx < width and 0 <= fy < height:
        return int(fx), int(fy)
    return None


def render(t: float, width: int, height: int, *, noise: float = 3.0, rng: np.random.Generator | None = None,
           out: np.ndarray | None = None) -> np.ndarray:
    """The sample frame at time ``t``: ``[height, width, 3] uint8 BGR``."""
    x0, y0, w, h = crop_window(t, width / height)
    sx, sy = w / width, h / height
    # Affine map from output pixel centres to portrait coordinates.
    M = np.array([[sx, 0, x0 + 0.5 * sx - 0.5], [0, sy, y0 + 0.5 * sy - 0.5]], np.float32)
    frame = cv2.warpAffine(portrait(), M, (width, height), dst=out,
                           flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
    if noise > 0:
        # Sensor noise in 2x2 blocks, gray (cv2.randn is several times faster than
        # numpy's normal, and the sample should cost about what a camera decode does).
        if rng is not None:
            cv2.setRNGSeed(int(rng.integers(1 << 31)))
        n = np.empty((height // 2, width // 2), np.int16)
        cv2.randn(n, 0, noise)
        n = cv2.resize(n, (width, height), interpolation=cv2.INTER_NEAREST)
        frame = cv2.add(frame, cv2.merge([n, n, n]), dst=frame, dtype=cv2.CV_8U)
    return frame
