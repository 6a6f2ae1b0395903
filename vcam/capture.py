"""Frame sources, registered by name, and the capture stage that runs them.

A source spec (``capture.source``) is resolved by :func:`open_source`:

* ``0``, ``1``, … or ``/dev/videoN`` — a camera (V4L2, MJPG requested);
* ``sample`` — the built-in animated portrait (:mod:`vcam.sample`);
* a video file — decoded with OpenCV, paced at its own fps in live mode;
* a directory of images — sorted by name.

Every source yields ``[H, W, 3] uint8 BGR`` arrays; the capture stage stamps
them with ``seq`` and ``t_capture``.
"""
from __future__ import annotations

import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .errors import SourceError
from .frames import Frame
from .mailbox import Mailbox
from .stats import Timings

log = logging.getLogger(__name__)

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
SOURCES: dict[str, Callable] = {}


def register(name: str):
    def deco(cls):
        SOURCES[name] = cls
        cls.kind = name
        return cls

    return deco


class Source:
    """``read()`` returns the next ``[H, W, 3] uint8 BGR`` frame, or ``None`` at the end."""

    kind = "?"
    fps: float = 30.0
    paced_by_device = False  # a camera blocks in read(); files must be paced by us
    frame_count: int | None = None

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


@register("camera")
class CameraSource(Source):
    paced_by_device = True

    def __init__(self, spec: str, width: int, height: int, fps: float):
        self.spec = spec
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


@register("file")
class VideoFileSource(Source):
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


@register("frames")
class FrameDirSource(Source):
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


@register("sample")
class SampleSource(Source):
    def __init__(self, width: int = 1280, height: int = 720, fps: float = 30.0, seconds: float = 8.0, seed: int = 0):
        from . import sample

        self._sample = sample
        self.width, self.height, self.fps = width, height, fps
        self.frame_count = int(round(seconds * fps))
        self._i = 0
        self._rng = np.random.default_rng(seed)

    def read(self):
        if self._i >= self.frame_count:
            return None
        img = self._sample.render(self._i / self.fps, self.width, self.height, rng=self._rng)
        self._i += 1
        return img

    def rewind(self):
        self._i = 0
        return True


def open_source(spec: str, *, width: int = 1280, height: int = 720, fps: float = 30.0) -> Source:
    """Resolve a source spec (see the module docstring) and open it."""
    spec = str(spec).strip()
    if spec == "sample":
        return SampleSource(width, height, fps)
    if spec.isdigit() or re.fullmatch(r"/dev/video\d+", spec):
        return CameraSource(spec, width, height, fps)
    p = Path(spec).expanduser()
    if p.is_dir():
        return FrameDirSource(str(p), fps)
    if p.is_file():
        return VideoFileSource(str(p))
    raise SourceError(f"source {spec!r} not found: give a camera index, /dev/videoN, a video file, "
                      f"a folder of frames, or 'sample'")


class CaptureStage:
    """The capture thread: reads the source and publishes frames to its outboxes.

    In live mode it never waits for downstream stages: every outbox is a
    latest-wins :class:`Mailbox`. Files and folders are paced at their own fps
    (or ``fps`` if given); a camera paces itself. At the end of a file it loops or
    closes the outboxes.
    """

    def __init__(self, source: Source, outboxes: list[Mailbox], *, loop: bool = True, fps: float | None = None,
                 size: tuple[int, int] | None = None, on_error: Callable[[BaseException], None] | None = None,
                 reopen: Callable[[], Source] | None = None):
        self.source = source
        self.reopen = reopen
        self._released = threading.Event()
        self.lost = False  # the camera failed and we are reconnecting
        self.reconnects = 0
        self.outboxes = outboxes
        self.loop = loop
        self.fps = fps or source.fps
        self.size = size
        self.on_error = on_error
        self.frames = 0
        self.timings = Timings()  # read + resize, ms per frame
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "CaptureStage":
        self._thread = threading.Thread(target=self._run, name="vcam-capture", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 1.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _read_camera(self) -> np.ndarray | None:
        """One camera frame; on failure, reconnect with backoff (one log line per state change)."""
        try:
            img = self.source.read()
        except Exception as e:  # a driver error is a lost camera, not a crash
            img, why = None, f"{type(e).__name__}: {e}"
        else:
            why = "read failed"
        if img is not None:
            return img
        if self.reopen is None:
            raise SourceError(f"camera {getattr(self.source, 'spec', '')} stopped delivering frames ({why})")
        self.lost = True
        log.warning("camera lost (%s): showing a blurred frame, reconnecting", why)
        delay = 0.25
        while not self._stop.is_set():
            try:
                self.source.close()
            except Exception:
                pass
            if self._stop.wait(delay):
                return None
            try:
                self.source = self.reopen()
                img = self.source.read()
                if img is not None:
                    log.info("camera reconnected")
                    self.lost = False
                    self.reconnects += 1
                    return img
            except Exception:
                pass
            delay = min(delay * 2, 4.0)
        return None

    def set_released(self, released: bool) -> None:
        """Release the real camera (its LED goes off) or take it back. Files and the sample
        keep running: there is nothing to release."""
        if self.reopen is None:
            return
        if released:
            self._released.set()
        else:
            self._released.clear()

    def _hold_released(self) -> None:
        """While released: close the camera, idle, and reopen it when asked."""
        log.info("camera released")
        self.source.close()
        while self._released.is_set() and not self._stop.wait(0.05):
            pass
        if not self._stop.is_set():
            self.source = self.reopen()
            log.info("camera reopened")

    def _prepare(self, img: np.ndarray) -> np.ndarray:
        if self.size and (img.shape[1], img.shape[0]) != self.size:
            img = cv2.resize(img, self.size, interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(img)

    def _run(self) -> None:
        try:
            period = 1.0 / self.fps
            t_next = time.monotonic()
            seq = 0
            while not self._stop.is_set():
                if self._released.is_set():
                    self._hold_released()
                    continue
                if not self.source.paced_by_device:
                    delay = t_next - time.monotonic()
                    if delay > 0:
                        if self._stop.wait(delay):
                            break
                    t_next = max(t_next + period, time.monotonic() - period)
                t0 = time.perf_counter()
                if self.source.paced_by_device:
                    img = self._read_camera()
                    if img is None:
                        continue  # lost: reconnecting (the output shows a curtain meanwhile)
                else:
                    img = self.source.read()
                    if img is None and self.loop and self.source.rewind():
                        img = self.source.read()
                    if img is None:
                        break
                frame = Frame(self._prepare(img), seq, time.monotonic())
                self.timings.add((time.perf_counter() - t0) * 1e3)
                seq += 1
                self.frames = seq
                for box in self.outboxes:
                    box.put(frame)
        except BaseException as e:  # handed to the supervisor
            if self.on_error:
                self.on_error(e)
            else:
                raise
        finally:
            for box in self.outboxes:
                box.close()
