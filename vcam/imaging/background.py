"""What goes behind the person: a blurred frame, an image, or a colour.

Backgrounds are prepared once per output size and reused; only the blur, which
depends on the frame, is computed per frame, at reduced resolution.
"""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from ..core.frames import IMAGE_EXTS
from ..core.imagefile import check_size, decode
from ..errors import ConfigError, SourceError

log = logging.getLogger(__name__)

NAMED_COLORS = {  # BGR
    "green": (64, 177, 0), "greenscreen": (64, 177, 0), "blue": (255, 71, 0), "bluescreen": (255, 71, 0),
    "black": (0, 0, 0), "white": (255, 255, 255), "gray": (128, 128, 128), "grey": (128, 128, 128),
    "red": (0, 0, 255),
}


def parse_color(text: str) -> tuple[int, int, int] | None:
    """``#rrggbb``, ``rrggbb``, ``r,g,b`` or a name → BGR tuple; ``None`` if it is not a colour."""
    t = str(text).strip().lower()
    if t in NAMED_COLORS:
        return NAMED_COLORS[t]
    h = t[1:] if t.startswith("#") else t
    if len(h) == 6 and all(c in "0123456789abcdef" for c in h):
        r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
        return (b, g, r)
    parts = t.split(",")
    if len(parts) == 3 and all(p.strip().isdigit() and int(p) <= 255 for p in parts):
        r, g, b = (int(p) for p in parts)
        return (b, g, r)
    return None


def color_bgr(text: str) -> tuple[int, int, int]:
    c = parse_color(text)
    if c is None:
        raise ConfigError(f"bad colour {text!r} for compositor.color: use #rrggbb, r,g,b or one of {', '.join(NAMED_COLORS)}")
    return c


def look_keys(*, bg: str | None = None, color: str | None = None, blur: int | None = None) -> dict:
    """``--bg`` / ``--bgcolor`` / ``--blur`` as compositor keys, the first one given winning.

    ``bg`` is an image, video or folder; or a colour (``#rrggbb``, ``r,g,b``, a name) when no
    such file exists. ``blur``: a strength 1-100, or -1 for the configured strength."""
    if color is not None:
        return {"mode": "color", "color": str(color)}
    if bg is not None:
        if not Path(bg).expanduser().exists():
            if parse_color(bg) is not None:
                return {"mode": "color", "color": bg}
            if str(bg).strip().startswith("#"):
                raise ConfigError(f"{bg!r} is not a colour: use #rrggbb (six hex digits), r,g,b or a name like "
                                  f"green")
        return {"mode": "replace", "background": str(bg)}
    if blur is not None:
        return {"mode": "blur", **({"blur": int(blur)} if blur != -1 else {})}
    return {}


def load_image(path: str) -> np.ndarray:
    """Read an image file as ``[H, W, 3] uint8 BGR``, or raise a one-line error (missing, not an
    image, truncated, or over the pixel cap)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise SourceError(f"background image {p} not found: check the path given to --bg")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise SourceError(f"cannot read background image {p}: {e.strerror}") from None
    return np.ascontiguousarray(decode(data, f"cannot read background image {p}"))


def cover_fit(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale ``img`` to cover ``width × height`` and centre-crop: no bars, no distortion."""
    h, w = img.shape[:2]
    s = max(width / w, height / h)
    nw, nh = max(width, int(round(w * s))), max(height, int(round(h * s)))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    big = cv2.resize(img, (nw, nh), interpolation=interp)
    x0, y0 = (nw - width) // 2, (nh - height) // 2
    return np.ascontiguousarray(big[y0:y0 + height, x0:x0 + width])


VIDEO_EXTS = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".gif", ".m4v")


class ImageBackground:
    """A still image, cover-fitted once per output size."""

    def __init__(self, path: str):
        self.path = path
        self.image = load_image(path)
        self._fitted: np.ndarray | None = None

    def at(self, width: int, height: int) -> np.ndarray:
        if self._fitted is None or self._fitted.shape[:2] != (height, width):
            self._fitted = cover_fit(self.image, width, height)
        return self._fitted


class VideoBackground:
    """A looping video or GIF, played at its own frame rate whatever the output rate.

    A new source frame is decoded and cover-fitted only when it is due; output frames
    in between reuse the prepared one.
    """

    def __init__(self, path: str):
        import time

        self.path = path
        self._clock = time.monotonic
        self.cap = cv2.VideoCapture(str(path))
        ok, first = self.cap.read() if self.cap.isOpened() else (False, None)
        if not ok:
            self.cap.release()
            raise SourceError(f"cannot read background video {path}: not a video OpenCV/FFmpeg can decode")
        try:
            check_size(first.shape[1], first.shape[0], f"background video {path}")
        except SourceError:
            self.cap.release()
            raise
        self.fps = self.cap.get(cv2.CAP_PROP_FPS) or 10.0
        self._raw = first
        self._t0 = self._clock()
        self._index = 0
        self._fitted = None
        self._fitted_key = None

    def _advance(self) -> None:
        due = int((self._clock() - self._t0) * self.fps)
        if due <= self._index:
            return
        while self._index < due:
            ok, img = self.cap.read()
            if not ok:  # loop
                self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                self._t0 = self._clock()
                self._index, due = 0, 0
                ok, img = self.cap.read()
                if not ok:
                    return
            else:
                self._index += 1
            self._raw = img
        self._fitted_key = None

    def at(self, width: int, height: int) -> np.ndarray:
        self._advance()
        key = (width, height, self._index)
        if self._fitted_key != key:
            self._fitted = cover_fit(self._raw, width, height)
            self._fitted_key = key
        return self._fitted


def open_background(path: str):
    """An image or a looping video/GIF background, by file type."""
    p = Path(path).expanduser()
    if not p.exists():
        raise SourceError(f"background {p} not found: check the path given to --bg")
    if p.suffix.lower() in VIDEO_EXTS:
        return VideoBackground(str(p))
    return ImageBackground(str(p))


def list_backgrounds(path: str) -> list[str]:
    """The backgrounds a path offers: a folder's images and videos (sorted), or the one file."""
    p = Path(path).expanduser()
    if p.is_dir():
        files = sorted(str(f) for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTS + VIDEO_EXTS)
        if not files:
            raise SourceError(f"background folder {p} has no images or videos")
        return files
    return [str(p)]


def pause_card(width: int, height: int, text: str = "camera paused") -> np.ndarray:
    """The privacy card shown while paused: ``[H, W, 3] uint8``."""
    card = np.full((height, width, 3), 40, np.uint8)
    scale = max(0.6, width / 900)
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
    cv2.putText(card, text, ((width - tw) // 2, (height + th) // 2), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (220, 220, 220), 2, cv2.LINE_AA)
    return card


def shrink(img: np.ndarray, size: tuple[int, int], dst: np.ndarray | None = None) -> np.ndarray:
    """Area-average ``img`` down to ``size`` (w, h), fast, for pictures about to be blurred:
    OpenCV's INTER_AREA is quick for exact halvings (0.7 ms at 1080p) but slow for other
    factors, even on a small image (8 ms for 1080p → 120x67; 0.7 ms for 320x180 → 256x144).
    So halve while the result stays at least the target, then finish a step of less than 2
    bilinearly (the halvings have already averaged what it would alias): 720p → 256x144 in
    0.37 ms instead of 1.2, within a few levels of a direct INTER_AREA before the blur."""
    w, h = size
    while img.shape[1] % 2 == 0 and img.shape[0] % 2 == 0 and img.shape[1] >= 2 * w and img.shape[0] >= 2 * h:
        img = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
    small_step = img.shape[1] < 2 * w and img.shape[0] < 2 * h
    return cv2.resize(img, (w, h), dst=dst, interpolation=cv2.INTER_LINEAR if small_step else cv2.INTER_AREA)


class Blur:
    """Background blur at reduced resolution, weighted by the matte so that the
    person never bleeds into the blurred background (normalised convolution).

    Strength 1-100 maps to a Gaussian sigma of up to 6% of the frame's short side.
    """

    def __init__(self, strength: int, *, step: float = 2.0):
        self.strength = int(strength)
        self.step = float(step)
        self._key = None

    def _setup(self, W: int, H: int):
        sigma_full = max(0.5, self.strength / 100.0 * 0.06 * min(W, H))
        # Blur at a resolution where sigma is about `step` px (2: smooth enough to be seen
        # upsampled): the cost is then a few small-image passes, whatever the strength.
        factor = int(min(16, max(1, sigma_full / self.step)))
        w, h = max(8, W // factor), max(8, H // factor)
        self.small_size = (w, h)
        self.sigma = sigma_full * w / W
        self._small = np.empty((h, w, 3), np.uint8)
        self._key = (W, H, self.strength)

    def __call__(self, frame: np.ndarray, matte: np.ndarray | None, out: np.ndarray) -> np.ndarray:
        """``frame`` ``[H, W, 3] u8`` → blurred ``out``; ``matte``: ``[h, w] f32`` in [0, 1] or
        ``[h, w] u8`` in [0, 255], any resolution, or ``None`` (plain blur)."""
        H, W = frame.shape[:2]
        return cv2.resize(self.small(frame, matte), (W, H), dst=out, interpolation=cv2.INTER_LINEAR)

    def small(self, frame: np.ndarray, matte: np.ndarray | None) -> np.ndarray:
        """The blurred background at the blur's working size, ``[h, w, 3] u8`` (fresh or
        this object's scratch: read it before the next call). Upsampling it is the caller's
        job: ``kernels.blend_upsample`` does it inside the blend."""
        H, W = frame.shape[:2]
        if self._key != (W, H, self.strength):
            self._setup(W, H)
        w, h = self.small_size
        shrink(frame, (w, h), self._small)
        if matte is None:
            blurred = cv2.GaussianBlur(self._small, (0, 0), self.sigma, borderType=cv2.BORDER_REFLECT)
        else:
            # Weight each pixel by how much it is background, blur, and renormalise:
            # person colours get zero weight and cannot halo into the background.
            wgt = shrink(matte, (w, h))
            wgt = wgt.astype(np.float32) * np.float32(1 / 255) if wgt.dtype == np.uint8 else wgt
            np.subtract(1.0, wgt, out=wgt)
            wgt = np.maximum(wgt, 1e-3, out=wgt)  # keep a trace of everything: no holes
            num = cv2.GaussianBlur(self._small.astype(np.float32) * wgt[..., None], (0, 0), self.sigma,
                                   borderType=cv2.BORDER_REFLECT)
            den = cv2.GaussianBlur(wgt, (0, 0), self.sigma, borderType=cv2.BORDER_REFLECT)
            blurred = np.clip(num / den[..., None], 0, 255).astype(np.uint8)
        return blurred
