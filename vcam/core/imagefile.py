"""What an image file is before it is decoded: its declared size, checked against the pixel cap,
and whether it is whole. Stills, backgrounds and frame folders all pass through here, so a
20000×20000 PNG is refused from its header (not after 5 GB of decoding) and a truncated JPEG is
refused instead of being used half grey. :func:`decode` is the one checked decode they all use.

The cap is ``run.max_pixels`` (``--max-pixels``); the CLI sets it once with :func:`set_max_pixels`.
"""
from __future__ import annotations

import io
import re
import warnings

import cv2
import numpy as np

from ..config import RunConfig
from ..errors import SourceError

_max_pixels = RunConfig().max_pixels  # the config's default, until the CLI sets the configured one


def set_max_pixels(n: int) -> None:
    global _max_pixels
    _max_pixels = int(n)


class TooLarge(SourceError):
    """An image over the pixel cap: the user's call (``--max-pixels``), never skipped silently."""


def check_size(width: int, height: int, name: str) -> None:
    """A one-line error when ``width × height`` is over the cap."""
    _check(width * height, f"{width}x{height}", name)


def _check(pixels: int, dims: str, name: str) -> None:
    if pixels > _max_pixels:
        raise TooLarge(f"{name}: {dims} is {pixels / 1e6:.0f} MP, over the {_max_pixels / 1e6:g} MP limit: "
                          f"shrink it, or raise --max-pixels (run.max_pixels)")


def _check_header(data: bytes, name: str) -> None:
    """The size the file's header declares, against the cap (Pillow reads only the header)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                size = im.size
    except Image.DecompressionBombError as e:  # over Pillow's own limit, which is above ours by default
        m = re.search(r"\((\d+) pixels\)", str(e))
        _check(int(m.group(1)) if m else 1 << 62, "the size its header declares", name)
        return
    except Exception:  # not a format Pillow reads: OpenCV decides, within its own 2^30 limit
        return
    check_size(*size, name)


def truncated(data: bytes) -> bool:
    """A JPEG without its end marker or a PNG without its IEND chunk: the file was cut short."""
    if data[:3] == b"\xff\xd8\xff":
        return data.rstrip(b"\x00")[-2:] != b"\xff\xd9"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return b"IEND" not in data[-32:]
    return False


def check_bytes(data: bytes, name: str) -> None:
    """Refuse an image file that is over the pixel cap or truncated, before decoding it."""
    _check_header(data, name)
    if truncated(data):
        raise SourceError(f"{name}: the file is truncated (cut short while copying or downloading?): "
                          f"use a complete copy")


def decode(data: bytes, name: str = "image") -> np.ndarray:
    """Encoded bytes → ``[H, W, 3] uint8 BGR``; a one-line error for anything else (empty, not an
    image, truncated, or over the pixel cap)."""
    if not data:
        raise SourceError(f"{name}: empty file (0 bytes)")
    check_bytes(data, name)
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:  # OpenCV's own limits, as an assertion text
        img = None
    if img is None:
        raise SourceError(f"{name}: not an image OpenCV can decode, or corrupt")
    return img
