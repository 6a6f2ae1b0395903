"""Frame sources, registered by name; :func:`open_source` asks each in turn.

A source spec (``capture.source``, or ``vcam process``'s input) is resolved by
:func:`open_source`, in the registry's order:

* ``sample`` — the built-in animated portrait (:mod:`vcam.sample`);
* ``0``, ``1``, … or ``/dev/videoN`` — a camera (V4L2, MJPG requested);
* a directory of images — sorted by name;
* a video file — decoded with OpenCV, paced at its own fps in live mode.

Every source yields ``[H, W, 3] uint8 BGR`` arrays; the capture stage
(:mod:`vcam.live.capture`) stamps them with ``seq`` and ``t_capture``.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import cv2
import numpy as np

from .. import sample
from ..core.frames import IMAGE_EXTS
from ..core.registry import Registry
from ..errors import SourceError

log = logging.getLogger(__name__)

SOURCES = Registry()  # name → Source class, in the order open_source asks them
register = SOURCES.register


class Source:
    """``read()`` returns the next ``[H, W, 3] uint8 BGR`` frame, or ``None`` at the end.

    A registered source says which specs it takes (:meth:`accepts`) and how it is named in
    the "not found" error (:attr:`described`), and opens from a spec (:meth:`open`)."""

    kind = "?"
    described = ""
    fps: float = 30.0
    paced_by_device = False  # a camera blocks in read(); files must be paced by us
    reopenable = False  # a device that can be opened again after a loss or a release (reopen())
    frame_count: int | None = None

    @classmethod
    def accepts(cls, spec: str) -> bool:
        return False

    @classmethod
    def open(cls, spec: str, *, width: int, height: int, fps: float) -> "Source":
        raise NotImplementedError

    def reopen(self) -> "Source":
        """A fresh handle on the same device, after it was lost or released (``reopenable`` sources)."""
        raise SourceError(f"a {self.kind} source cannot be reopened")

    def read(self) -> np.ndarray | None:
        raise NotImplementedError

    def rewind(self) -> bool:
        """Start again from the first frame; False if the source cannot."""
        return False

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@register("sample")
class SampleSource(Source):
    described = "'sample'"

    def __init__(self, width: int = 1280, height: int = 720, fps: float = 30.0, seconds: float = 8.0, seed: int = 0):
        self.width, self.height, self.fps = width, height, fps
        self.frame_count = int(round(seconds * fps))
        self._i = 0
        self._rng = np.random.default_rng(seed)

    @classmethod
    def accepts(cls, spec):
        return spec == "sample"

    @classmethod
    def open(cls, spec, *, width, height, fps):
        return cls(width, height, fps)

    def read(self):
        if self._i >= self.frame_count:
            return None
        img = sample.render(self._i / self.fps, self.width, self.height, rng=self._rng)
        self._i += 1
        return img

    def rewind(self):
        self._i = 0
        return True


@register("camera")
class CameraSource(Source):
    described = "a camera index, /dev/videoN"
    paced_by_device = True
    reopenable = True

    @classmethod
    def accepts(cls, spec):
        return spec.isdigit() or re.fullmatch(r"/dev/video\d+", spec) is not None

    @classmethod
    def open(cls, spec, *, width, height, fps):
        return cls(spec, width, height, fps)

    def reopen(self):
        return CameraSource(self.spec, *self._asked)

    def __init__(self, spec: str, width: int, height: int, fps: float):
        self.spec = spec
        self._asked = (width, height, fps)
        index = int(spec) if spec.isdigit() else spec
        if isinstance(index, str) and not os.path.exists(index):
            raise SourceError(f"camera {spec} does not exist: list cameras with `ls /dev/video*`, "
                              f"or try --source sample")
        if isinstance(index, int) and os.name == "posix" and not os.path.exists(f"/dev/video{index}"):
            raise SourceError(f"no camera at index {index} (/dev/video{index} does not exist): "
                              f"plug one in, pick another with --source, or try --source sample")
        api = cv2.CAP_V4L2 if os.name == "posix" and hasattr(cv2, "CAP_V4L2") else cv2.CAP_ANY
        cap = cv2.VideoCapture(index, api)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open camera {spec}: another program may hold it, or you lack permission "
                              f"(add yourself to the 'video' group); or try --source sample")
        # MJPG lets USB cameras deliver 720p/1080p at 30 fps; raw YUYV often cannot.
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        cap.set(cv2.CAP_PROP_FPS, fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self.cap = cap
        got_w, got_h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.fps = cap.get(cv2.CAP_PROP_FPS) or fps
        fcc = int(cap.get(cv2.CAP_PROP_FOURCC))
        fourcc = "".join(chr((fcc >> (8 * i)) & 0xFF) for i in range(4)) if fcc else "?"
        log.info("camera %s: asked for %dx%d@%g MJPG, got %dx%d@%g %s", spec, width, height, fps,
                 got_w, got_h, self.fps, fourcc)

    def read(self):
        ok, img = self.cap.read()
        return img if ok else None

    def close(self):
        self.cap.release()


@register("frames")
class FrameDirSource(Source):
    described = "a folder of frames"

    @classmethod
    def accepts(cls, spec):
        return Path(spec).expanduser().is_dir()

    @classmethod
    def open(cls, spec, *, width, height, fps):
        return cls(str(Path(spec).expanduser()), fps)

    def __init__(self, path: str, fps: float = 30.0):
        self.path = Path(path)
        self.files = sorted(f for f in self.path.iterdir() if f.suffix.lower() in IMAGE_EXTS)
        if not self.files:
            raise SourceError(f"folder {self.path} has no images ({', '.join(sorted(IMAGE_EXTS))})")
        self.fps = fps
        self.frame_count = len(self.files)
        self._i = 0
        self._shape = None

    def read(self):
        if self._i >= len(self.files):
            return None
        f = self.files[self._i]
        self._i += 1
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            raise SourceError(f"cannot read frame {f}: not an image, or corrupt")
        if self._shape is None:
            self._shape = img.shape
        elif img.shape != self._shape:
            img = cv2.resize(img, (self._shape[1], self._shape[0]), interpolation=cv2.INTER_AREA)
        return img

    def rewind(self):
        self._i = 0
        return True


@register("file")
class VideoFileSource(Source):
    described = "a video file"

    @classmethod
    def accepts(cls, spec):
        return Path(spec).expanduser().is_file()

    @classmethod
    def open(cls, spec, *, width, height, fps):
        return cls(str(Path(spec).expanduser()))

    def __init__(self, path: str):
        p = Path(path)
        if not p.is_file():
            raise SourceError(f"video file {p} not found: check the path given to --source")
        cap = cv2.VideoCapture(str(p))
        if not cap.isOpened():
            raise SourceError(f"cannot open video {p}: not a video format OpenCV/FFmpeg can decode")
        self.path, self.cap = p, cap
        self.fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = n if n > 0 else None
        self._first = None
        self._first = self.read()
        if self._first is None:
            cap.release()
            raise SourceError(f"video {p} has no decodable frames: it may be truncated or corrupt")

    def read(self):
        if self._first is not None:
            img, self._first = self._first, None
            return img
        ok, img = self.cap.read()
        return img if ok else None

    def rewind(self):
        self._first = None
        self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        return True

    def close(self):
        self.cap.release()


def open_source(spec: str, *, width: int = 1280, height: int = 720, fps: float = 30.0,
                kinds: tuple[str, ...] | None = None) -> Source:
    """Resolve a source spec (see the module docstring) with the first registered source
    that accepts it; ``kinds`` limits the choice (``vcam process`` takes files and folders)."""
    spec = str(spec).strip()
    chosen = [cls for name, cls in SOURCES.items() if kinds is None or name in kinds]
    for cls in chosen:
        if cls.accepts(spec):
            return cls.open(spec, width=width, height=height, fps=fps)
    what = "source" if kinds is None else "input"
    raise SourceError(f"{what} {spec!r} not found: give {', '.join(c.described for c in chosen[:-1])}"
                      f"{',' if len(chosen) > 2 else ''} or {chosen[-1].described}")
