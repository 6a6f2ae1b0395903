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


def _capsule(shape, a, b, r):
    """Coverage (0/1, float32) and a cylinder shading of the segment ``a``–``b`` of radius ``r``."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    ax, ay = a
    dx, dy = b[0] - ax, b[1] - ay
    t = np.clip(((x - ax) * dx + (y - ay) * dy) / max(1e-6, dx * dx + dy * dy), 0, 1)
    d = np.hypot(x - ax - t * dx, y - ay - t * dy) / r
    inside = (d <= 1).astype(np.float32)
    side = ((x - ax - t * dx) * -dy + (y - ay - t * dy) * dx) / max(1e-6, np.hypot(dx, dy)) / r  # -1..1 across
    shade = np.sqrt(np.clip(1 - d * d, 0, 1)) * (0.8 + 0.2 * np.clip(side, -1, 1))
    return inside, shade


def full_body(height: int = 640, width: int = 960, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic full-body photo and its true mask: a person in a dancing pose (the public-domain
    astronaut's head on a shaded body in a shirt and trousers, arms and legs spread as ``seed``
    picks) standing in a room (wall, window, cabinet, wooden floor, a floor shadow that is *not* the
    subject), with sensor noise. ``([H, W, 3] u8 BGR, [H, W] u8 0/255)``; drawn at twice 960x640
    and scaled, so the edges are antialiased like a photo's."""
    rng = np.random.default_rng(seed)
    s = 2
    H, W = 640 * s, 960 * s
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    horizon = 0.72 * H
    wall = np.array([170, 190, 205], np.float32) * (0.85 + 0.15 * (y / H))[..., None]
    wall = wall + rng.normal(0, 3, (H // 8, W // 8, 3)).astype(np.float32).repeat(8, 0).repeat(8, 1)
    plank = ((x - W / 2) / np.maximum(1, y - horizon * 0.6) * 40).astype(np.int32) % 2
    floor = np.dstack([60 + 25 * plank, 100 + 25 * plank, 150 + 20 * plank]).astype(np.float32)
    floor *= (0.8 + 0.3 * (y - horizon) / (H - horizon))[..., None]
    img = np.where((y < horizon)[..., None], wall, floor)
    wx = int(rng.uniform(0.05, 0.2) * W)
    cv2.rectangle(img, (wx, int(0.12 * H)), (wx + int(0.18 * W), int(0.5 * H)), (235, 240, 245), -1)
    cv2.rectangle(img, (wx, int(0.12 * H)), (wx + int(0.18 * W), int(0.5 * H)), (90, 90, 95), 10 * s)
    cv2.line(img, (wx + int(0.09 * W), int(0.12 * H)), (wx + int(0.09 * W), int(0.5 * H)), (90, 90, 95), 6 * s)
    cx0 = int(rng.uniform(0.72, 0.85) * W)
    cv2.rectangle(img, (cx0, int(0.45 * H)), (cx0 + int(0.2 * W), int(0.78 * H)), (40, 70, 110), -1)

    # The figure: head units u, feet near the bottom.
    u = 0.115 * H
    cx = W * rng.uniform(0.42, 0.58)
    top = 0.06 * H
    cover = np.zeros((H, W), np.float32)
    paint = np.zeros((H, W, 3), np.float32)
    skin = np.array([120, 150, 205], np.float32)
    shirt = rng.choice(np.array([[60, 60, 200], [200, 120, 40], [60, 160, 60], [200, 200, 200]], np.float32))
    trousers = np.array([90, 50, 30], np.float32) * rng.uniform(0.7, 1.2)

    def add(cov, shade, colour):
        on = cov > 0
        c = colour * (0.45 + 0.6 * shade)[..., None]
        paint[on] = c[on]
        cover[on] = 1.0

    sh_y, hip_y = top + 1.35 * u, top + 3.9 * u
    # Legs (behind the torso), each thigh then shin at angles from straight down.
    for side, (a1, a2) in ((-1, rng.uniform([-0.5, -0.2], [0.05, 0.3])), (1, rng.uniform([-0.05, -0.3], [0.6, 0.2]))):
        hip = (cx + side * 0.42 * u, hip_y)
        knee = (hip[0] + 2.0 * u * np.sin(a1), hip[1] + 2.0 * u * np.cos(a1))
        foot = (knee[0] + 1.9 * u * np.sin(a1 + a2), min(H - 0.2 * u, knee[1] + 1.9 * u * np.cos(a1 + a2)))
        add(*_capsule((H, W), hip, knee, 0.34 * u), trousers)
        add(*_capsule((H, W), knee, foot, 0.26 * u), trousers)
        toe = (foot[0] + side * 0.45 * u, foot[1] + 0.05 * u)
        add(*_capsule((H, W), foot, toe, 0.18 * u), np.array([30, 30, 30], np.float32))
    # Torso: a tapered polygon (shoulders to hips), shaded across.
    poly = np.array([(cx - 0.95 * u, sh_y), (cx + 0.95 * u, sh_y), (cx + 0.7 * u, top + 3.0 * u),
                     (cx + 0.8 * u, hip_y + 0.2 * u), (cx - 0.8 * u, hip_y + 0.2 * u), (cx - 0.7 * u, top + 3.0 * u)])
    torso = cv2.fillPoly(np.zeros((H, W), np.uint8), [poly.astype(np.int32)], 1).astype(np.float32)
    add(torso, np.clip(1 - ((x - cx) / (1.1 * u)) ** 2, 0, 1) ** 0.5, shirt)
    add(*_capsule((H, W), (cx, top + 0.9 * u), (cx, sh_y + 0.1 * u), 0.2 * u), skin)
    # Arms: upper arm then forearm at angles from straight down (one often raised).
    for side, (a1, a2) in ((-1, rng.uniform([0.3, 0.0], [2.6, 1.2])), (1, rng.uniform([0.2, 0.0], [2.2, 1.0]))):
        sh = (cx + side * 0.85 * u, sh_y + 0.2 * u)
        el = (sh[0] + side * 1.5 * u * np.sin(a1), sh[1] + 1.5 * u * np.cos(a1))
        wr = (el[0] + side * 1.3 * u * np.sin(a1 + a2), el[1] + 1.3 * u * np.cos(a1 + a2))
        add(*_capsule((H, W), sh, el, 0.25 * u), shirt)
        add(*_capsule((H, W), el, wr, 0.18 * u), skin)
        hand = (wr[0] + side * 0.25 * u * np.sin(a1 + a2), wr[1] + 0.25 * u * np.cos(a1 + a2))
        add(*_capsule((H, W), wr, hand, 0.16 * u), skin)
    # Head: the astronaut's hair and face, scaled into an ellipse pair.
    p = portrait()
    hmask = np.zeros((512, 512), np.uint8)
    cv2.ellipse(hmask, (226, 82), (74, 64), 0, 0, 360, 1, -1)
    cv2.ellipse(hmask, (224, 125), (50, 62), 0, 0, 360, 1, -1)
    x0, y0, x1, y1 = 150, 16, 302, 188
    k = 1.15 * u / (y1 - y0)
    hw, hh = int((x1 - x0) * k), int((y1 - y0) * k)
    hx, hy = int(cx - hw / 2), int(top)
    face = cv2.resize(p[y0:y1, x0:x1], (hw, hh), interpolation=cv2.INTER_AREA).astype(np.float32)
    fm = cv2.resize(hmask[y0:y1, x0:x1], (hw, hh), interpolation=cv2.INTER_NEAREST) > 0
    paint[hy:hy + hh, hx:hx + hw][fm] = face[fm]
    cover[hy:hy + hh, hx:hx + hw][fm] = 1.0
    # A soft floor shadow by the feet: part of the room, not the subject.
    shadow = np.zeros((H, W), np.float32)
    cv2.ellipse(shadow, (int(cx), int(H - 0.25 * u)), (int(2.2 * u), int(0.3 * u)), 0, 0, 360, 1, -1)
    img *= (1 - 0.45 * cv2.GaussianBlur(shadow, (0, 0), 0.25 * u))[..., None]
    img = img * (1 - cover[..., None]) + paint * cover[..., None]
    img = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)
    cov = cv2.resize(cover, (width, height), interpolation=cv2.INTER_AREA)
    img += rng.normal(0, 2.5, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), np.where(cov >= 0.5, 255, 0).astype(np.uint8)
