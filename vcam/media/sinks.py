"""Output sinks, registered by name; :func:`build_sinks` opens the ones the config asks for.

* ``virtualcam`` — pyvirtualcam (v4l2loopback on Linux, OBS on Windows/macOS);
* ``record`` — a video file (``--record out.mp4``);
* ``preview`` — an OpenCV window (``--preview``);
* ``null`` — discards frames (benchmarks), when nothing else is asked for.

The paced output thread that feeds them is :mod:`vcam.live.output`; ``vcam process``'s
writers are in :mod:`vcam.media.video`.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ..core.registry import Registry
from ..errors import OutputError

log = logging.getLogger(__name__)

MODPROBE = 'sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label="vcam"'
SINKS = Registry()  # name → Sink class, in the order build_sinks opens them
register = SINKS.register


class Sink:
    """``send(image)`` takes ``[H, W, 3] uint8 BGR`` (``[H, W, 4]`` BGRA for cutout writers)."""

    kind = "?"
    paces = False  # its send() blocks until the next frame is due (the output thread then sleeps on it)

    @classmethod
    def from_config(cls, out, width: int, height: int, fps: float) -> "Sink | None":
        """The sink the output config ``out`` asks for, opened; ``None`` when it asks for none of this kind."""
        return None

    def send(self, image: np.ndarray) -> None:
        raise NotImplementedError

    def sleep_until_next_frame(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


@register("virtualcam")
class VirtualCamSink(Sink):
    paces = True

    @classmethod
    def from_config(cls, out, width, height, fps):
        return cls(width, height, fps, device=out.device, backend=out.backend) if out.virtualcam else None

    def __init__(self, width: int, height: int, fps: float, *, device: str = "", backend: str = ""):
        import pyvirtualcam
        if sys.platform.startswith("linux") and not backend and not device:
            if not any(is_loopback(d) for d in _video_devices()):
                raise OutputError(f"no v4l2loopback device found: run `{MODPROBE}`, or use --no-virtualcam")
        if device and not backend and sys.platform.startswith("linux") and not os.path.exists(device):
            raise OutputError(f"virtual camera device {device} does not exist: run `{MODPROBE}` "
                              f"(or fix --device)")
        kwargs = {"fmt": pyvirtualcam.PixelFormat.BGR}
        if device:
            kwargs["device"] = device
        if backend:
            kwargs["backend"] = backend
        try:
            self.cam = self._open(pyvirtualcam, width, height, fps, kwargs)
        except Exception as e:  # pyvirtualcam raises RuntimeError/ValueError with multi-line text
            msg = " ".join(str(e).split())[:200]
            if "not a video output device" in msg.lower():
                raise OutputError(f"{device or 'the virtual camera'} does not accept a writer now (v4l2loopback 0.12 "
                                  f"with exclusive_caps=1 stays in capture mode after a previous writer exits): "
                                  f"reload it with `sudo modprobe -r v4l2loopback && {MODPROBE}`") from None
            if "loopback" in msg.lower() or "v4l2" in msg.lower():
                raise OutputError(f"cannot open the virtual camera ({msg}): run `{MODPROBE}`, or use --no-virtualcam") from None
            low = msg.lower()
            if any(w in low for w in ("resolution", "size", "width", "height", "format")):
                raise OutputError(f"the virtual camera refused {width}x{height} @ {fps:g} fps ({msg}): pick another "
                                  f"--size, or reload v4l2loopback (sudo modprobe -r v4l2loopback) so it takes the new size") from None
            if "busy" in low:
                raise OutputError(f"virtual camera {device or ''} is busy ({msg}): close the other writer or pick "
                                  f"another with --device") from None
            raise OutputError(f"cannot open the virtual camera ({msg}): check --device/--backend, "
                              f"or use --no-virtualcam") from None
        log.info("virtual camera: %s (%dx%d @ %g fps)", self.cam.device, width, height, fps)

    @staticmethod
    def _open(pyvirtualcam, width, height, fps, kwargs, patience: float = 5.0):
        """Open the device; while a reader that opened it first is probing it (the meeting app was
        started before vcam, exclusive_caps=1), it briefly refuses writers: retry for a few seconds."""
        t_end = time.monotonic() + patience
        while True:
            try:
                return pyvirtualcam.Camera(width=width, height=height, fps=fps, **kwargs)
            except RuntimeError as e:
                if "not a video output device" not in str(e) or time.monotonic() > t_end:
                    raise
                time.sleep(0.1)

    def send(self, image):
        self.cam.send(image)

    def sleep_until_next_frame(self):
        self.cam.sleep_until_next_frame()

    def close(self):
        cam, self.cam = getattr(self, "cam", None), None
        if cam is not None:
            cam.close()


def _video_devices() -> list[str]:
    try:
        return sorted(f"/dev/{d}" for d in os.listdir("/dev") if d.startswith("video"))
    except OSError:
        return []


def device_openers(dev: str) -> list[tuple[int, str]]:
    """``(pid, command)`` of every process that has ``dev`` open, from /proc (as fuser does;
    only the processes we may inspect)."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == dev:
                    try:
                        comm = Path(f"/proc/{pid}/comm").read_text().strip()
                    except OSError:
                        comm = "?"
                    out.append((int(pid), comm))
                    break
        except OSError:
            continue
    return out


def is_loopback(dev: str) -> bool:
    name = Path("/sys/class/video4linux") / Path(dev).name / "name"
    try:
        driver = (Path("/sys/class/video4linux") / Path(dev).name / "device" / "driver").resolve().name
    except OSError:
        driver = ""
    try:
        label = name.read_text().strip().lower()
    except OSError:
        label = ""
    return "loopback" in driver or "loopback" in label or "vcam" in label or "virtual" in label


@register("record")
class RecordSink(Sink):
    @classmethod
    def from_config(cls, out, width, height, fps):
        return cls(out.record, width, height, fps) if out.record else None

    def __init__(self, path: str, width: int, height: int, fps: float):
        p = Path(path).expanduser()
        if p.parent and not p.parent.exists():
            raise OutputError(f"cannot record to {p}: folder {p.parent} does not exist")
        fourcc = cv2.VideoWriter_fourcc(*("mp4v" if p.suffix.lower() in (".mp4", ".mov", ".m4v") else "MJPG"))
        self.writer = cv2.VideoWriter(str(p), fourcc, fps, (width, height))
        if not self.writer.isOpened():
            raise OutputError(f"cannot record to {p}: use a .mp4 or .avi file name in a writable folder")
        self.path = p
        self.size = (width, height)

    def send(self, image):
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size)
        self.writer.write(image)

    def close(self):
        w, self.writer = getattr(self, "writer", None), None
        if w is not None:
            w.release()


@register("preview")
class PreviewSink(Sink):
    window = "vcam preview"

    @classmethod
    def from_config(cls, out, width, height, fps):
        return cls() if out.preview else None

    def __init__(self):
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise OutputError("--preview needs a display (DISPLAY is not set): drop --preview, or use --record out.mp4")
        try:
            cv2.namedWindow(self.window, cv2.WINDOW_NORMAL)
        except cv2.error as e:
            raise OutputError(f"cannot open a preview window ({str(e).splitlines()[0][:120]}): "
                              f"install opencv-python (not -headless), or drop --preview") from None
        self.on_key: Callable[[int], None] | None = None
        self.on_click: Callable[[str, int, int], None] | None = None  # ("left"|"right", x, y)
        cv2.setMouseCallback(self.window, self._mouse)

    def _mouse(self, event, x, y, flags=0, param=None):
        if self.on_click is None:
            return
        if event == cv2.EVENT_LBUTTONUP:
            self.on_click("left", x, y)
        elif event == cv2.EVENT_RBUTTONUP:
            self.on_click("right", x, y)

    def send(self, image):
        cv2.imshow(self.window, image)
        key = cv2.waitKey(1) & 0xFF
        if key != 0xFF and self.on_key:
            self.on_key(key)

    def close(self):
        try:
            cv2.destroyWindow(self.window)
            cv2.waitKey(1)
        except cv2.error:
            pass


@register("null")
class NullSink(Sink):
    def __init__(self):
        self.frames = 0

    def send(self, image):
        self.frames += 1


def build_sinks(out, width: int, height: int, fps: float) -> list[Sink]:
    """Every sink the output config ``out`` asks for, in registry order (a null sink when none);
    if one fails to open, those already open are closed."""
    sinks: list[Sink] = []
    try:
        for cls in SINKS.values():
            sink = cls.from_config(out, width, height, fps)
            if sink is not None:
                sinks.append(sink)
    except BaseException:
        for s in sinks:
            s.close()
        raise
    return sinks or [NullSink()]
