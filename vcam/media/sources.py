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
from ..core.imagefile import TooLarge, check_size
from ..core.registry import Registry
from ..errors import SourceError
from .images import decode

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
    CACHE_BYTES = 96 << 20  # decoded frames kept for the next pass of a loop (a 720p clip of 1 s at 30 fps is 83 MB)

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
        self._said: set[str] = set()
        # A looped folder is decoded once: its frames, kept while the whole folder fits in
        # CACHE_BYTES (a short clip), come back from memory on every later pass. The frame
        # contract makes that safe: no stage writes into a frame it was handed.
        self._cache: dict[int, np.ndarray] | None = {}

    def _once(self, what: str, msg: str, *args) -> None:
        if what not in self._said:
            self._said.add(what)
            log.warning(msg, *args)

    def read(self):
        """The next readable frame: an unreadable one is skipped (said once), one over the pixel
        cap stops the run; a frame of another size is resized to the first one's (said once)."""
        while self._i < len(self.files):
            i, f = self._i, self.files[self._i]
            self._i += 1
            if self._cache is not None and i in self._cache:
                return self._cache[i]
            try:
                img = decode(f.read_bytes(), f"frame {f}")
            except TooLarge:
                raise
            except (SourceError, OSError) as e:
                self._once("unreadable", "skipping unreadable frames in %s (first: %s)", self.path,
                           e if isinstance(e, SourceError) else f"{f}: {e.strerror}")
                continue
            if self._shape is None:
                self._shape = img.shape
            elif img.shape != self._shape:
                self._once("size", "frames in %s differ in size (%s is %dx%d, the first %dx%d): resizing them to "
                           "the first", self.path, f.name, img.shape[1], img.shape[0], self._shape[1], self._shape[0])
                img = cv2.resize(img, (self._shape[1], self._shape[0]), interpolation=cv2.INTER_AREA)
            if self._cache is not None:
                if len(self.files) * img.nbytes <= self.CACHE_BYTES:
                    self._cache[i] = img
                else:
                    self._cache = None  # too long a clip to hold: decode every pass
            return img
        return None

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
        if p.stat().st_size == 0:
            raise SourceError(f"video {p} is empty (0 bytes): use a complete copy")
        # One decoding thread: FFmpeg's frame threads cost a fifth more CPU per frame (5.0 against
        # 4.0 ms at 720p H.264), and one thread decodes 720p30 with time to spare.
        cap = cv2.VideoCapture(str(p), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
        if not cap.isOpened():
            cap = cv2.VideoCapture(str(p))
        if not cap.isOpened():
            raise SourceError(f"cannot open video {p}: not a video FFmpeg can decode, or truncated or corrupt "
                              "(an MP4 cut short loses its index): use a complete copy, or convert it with ffmpeg")
        self.path, self.cap = p, cap
        try:
            check_size(int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), f"video {p}")
        except SourceError:
            cap.release()
            raise
        self.fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = n if n > 0 else None
        self._pos = 0  # frames read since the start
        self._good: int | None = None  # frames a whole pass gave (known after the first)
        self._said_truncated = False
        self._first = None
        self._first = self.read()
        if self._first is None:
            cap.release()
            raise SourceError(f"video {p} has no decodable frames: it may be truncated or corrupt")

    def read(self):
        if self._first is not None:
            img, self._first = self._first, None
            return img
        if self._good is not None and self._pos >= self._good:
            return None  # a looped truncated file ends where it broke: FFmpeg is not asked (and noisy) again
        ok, img = self.cap.read()
        if not ok:
            if self._good is None:
                self._good = self._pos
            return None
        self._pos += 1
        return img

    def rewind(self):
        if self._good is not None and self._pos == self._good and self.frame_count \
                and self._good < 0.98 * self.frame_count and not self._said_truncated:
            self._said_truncated = True
            log.warning("%s: only %d of %d frames decode (truncated?): looping over those", self.path,
                        self._good, self.frame_count)
        self._first = None
        self._pos = 0
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
