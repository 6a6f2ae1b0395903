"""Image files in and out for stills: decode with one-line errors, encode PNG/WebP/JPEG."""
from __future__ import annotations

import cv2
import numpy as np

from ..core.imagefile import decode
from ..errors import SourceError

__all__ = ["decode", "encode", "read_image"]


def read_image(path) -> np.ndarray:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SourceError(f"{path}: is a folder") from None
    except OSError as e:
        raise SourceError(f"{path}: cannot read ({e.strerror})") from None
    return decode(data, str(path))


def encode(img: np.ndarray, ext: str = ".png", *, rgb: bool = False, quality: int = 95) -> bytes:
    """Encode ``[H, W]``, ``[H, W, 3]`` or ``[H, W, 4]`` (BGR(A), or RGB(A) when ``rgb``)."""
    if rgb and img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA if img.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    params = []
    if ext in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    elif ext == ".webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, quality]
    ok, buf = cv2.imencode(ext, img, params)
    if not ok:
        raise SourceError(f"cannot encode the result as {ext}")
    return buf.tobytes()
