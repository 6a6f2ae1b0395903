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
    # Whole portrait pixels: the frame is then a plain resize of a crop (0.8 ms at
    # 720p, against 5 ms for a sub-pixel warp).
    return float(round(x0)), float(round(cy - h / 2)), float(round(w)), float(round(h))


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
    x0, y0, w, h = (int(v) for v in crop_window(t, width / height))
    crop = portrait()[y0:y0 + h, x0:x0 + w]
    interp = cv2.INTER_AREA if width < w else cv2.INTER_LINEAR
    frame = cv2.resize(crop, (width, height), dst=out, interpolation=interp)
    if noise > 0:
        pos, neg = _noise_pair(width, height, noise, int((rng or _RNG).integers(_BANK)))
        cv2.add(frame, pos, dst=frame)
        cv2.subtract(frame, neg, dst=frame)
    return frame


_BANK = 6
_RNG = np.random.default_rng()


@lru_cache(maxsize=_BANK * 2)
def _noise_pair(width: int, height: int, sigma: float, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian sensor noise as a saturating add/subtract pair of ``uint8`` images.

    A small bank is drawn once per size and reused at random: drawing fresh noise
    for every 720p frame costs more than a camera's MJPG decode, and the sample should
    cost about what a camera does.
    """
    n = np.random.default_rng(1000 + k).normal(0.0, sigma, (height, width, 3)).round()
    return np.clip(n, 0, 255).astype(np.uint8), np.clip(-n, 0, 255).astype(np.uint8)


def product(height: int = 480, width: int = 640, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic product photo and its true mask: a shaded red mug with a handle (and the hole
    inside it) on a studio backdrop, with a soft contact shadow that is *not* the subject, and
    sensor noise. ``([H, W, 3] u8 BGR, [H, W] u8 0/255)``; drawn at 640x480 and scaled."""
    h, w = 480, 640
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    backdrop = 225 + 20 * (y / h)
    img = np.dstack([backdrop * 0.97, backdrop * 0.98, backdrop])
    mask = np.zeros((h, w), np.uint8)
    cv2.rectangle(mask, (230, 150), (400, 380), 255, -1)
    cv2.ellipse(mask, (315, 380), (85, 25), 0, 0, 180, 255, -1)
    cv2.ellipse(mask, (405, 260), (55, 70), 0, -90, 90, 255, 28)
    shadow = cv2.GaussianBlur(cv2.ellipse(np.zeros((h, w), np.float32), (330, 405), (130, 22), 0, 0, 360, 1, -1),
                              (41, 41), 15)
    img *= (1 - 0.35 * shadow)[..., None]
    shade = 0.55 + 0.45 * np.cos((x - 300) / 110 * np.pi / 2).clip(0, 1)
    img = np.where((mask > 0)[..., None], np.dstack([40 * shade, 50 * shade, 200 * shade]), img)
    img += np.random.default_rng(seed).normal(0, 2, img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    if (height, width) != (h, w):
        img = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)
    return img, mask
