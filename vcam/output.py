"""Output sinks, registered by name, and the paced output stage.

* ``virtualcam`` — pyvirtualcam (v4l2loopback on Linux, OBS on Windows/macOS);
* ``preview`` — an OpenCV window (``--preview``);
* ``record`` — a video file (``--record out.mp4``);
* ``null`` — discards frames (benchmarks).

The output stage sends at a steady fps and re-sends the last frame when nothing
new has arrived, so the meeting app never sees a stall.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .errors import OutputError
from .frames import Composite
from .mailbox import Closed, Mailbox
from .stats import Timings

log = logging.getLogger(__name__)

MODPROBE = 'sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label="vcam"'
SINKS: dict[str, type["Sink"]] = {}


def register(name: str):
    def deco(cls):
        SINKS[name] = cls
        cls.kind = name
        return cls

    return deco


class Sink:
    kind = "?"

    def send(self, image: np.ndarray) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


@register("null")
class NullSink(Sink):
    def __init__(self, *a, **k):
        self.frames = 0

    def send(self, image):
        self.frames += 1


@register("virtualcam")
class VirtualCamSink(Sink):
    def __init__(self, width: int, height: int, fps: float, *, device: str = "", backend: str = ""):
        try:
            import pyvirtualcam
        except ImportError as e:  # pragma: no cover - it is a dependency
            raise OutputError(f"pyvirtualcam is not importable ({e}): pip install pyvirtualcam, or use --no-virtualcam")
        if sys.platform.startswith("linux") and not backend and not device:
            if not any(_is_loopback(d) for d in _video_devices()):
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


def _is_loopback(dev: str) -> bool:
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


@register("preview")
class PreviewSink(Sink):
    window = "vcam preview"

    def __init__(self, *a, **k):
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


@register("record")
class RecordSink(Sink):
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


class OutputStage:
    """The output thread: sends the newest composite at a steady ``fps`` to every sink,
    repeating the last one when nothing new has come."""

    def __init__(self, inbox: Mailbox, sinks: list[Sink], fps: float,
                 on_error: Callable[[BaseException], None] | None = None,
                 curtain: Callable[[np.ndarray], np.ndarray] | None = None, stall_after: float = 0.5):
        self.inbox = inbox
        # When nothing new comes for `stall_after` s (camera unplugged or stuck), the last
        # input frame is shown through `curtain` (fully blurred) instead of a frozen picture
        # that may have been composited with a matte that no longer fits.
        self.curtain = curtain
        self.stall_after = stall_after
        self.stalled = False
        self._curtain_frame: np.ndarray | None = None
        self.sinks = sinks
        self.fps = fps
        self.on_error = on_error
        self.sent = 0  # frames sent, repeats included
        self.new = 0  # distinct composites sent
        self.repeats = 0
        self.latency = Timings()  # capture -> send, ms, first send of each composite
        self.send_ms = Timings()
        self.t_first: float | None = None
        self.t_last: float | None = None
        self.t_last_new = time.monotonic()
        self.max_gap = 0.0  # longest time between two sends, s
        self.last: Composite | None = None
        self.taps: list[Callable[[Composite], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "OutputStage":
        self._thread = threading.Thread(target=self._run, name="vcam-output", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 1.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _pacer(self):
        for s in self.sinks:
            if isinstance(s, VirtualCamSink):
                return s.sleep_until_next_frame
        period = 1.0 / self.fps
        state = {"next": time.monotonic() + period}

        def sleep():
            now = time.monotonic()
            if state["next"] > now:
                self._stop.wait(state["next"] - now)
            # If we fell behind by more than a frame, don't try to catch up in a burst.
            state["next"] = max(state["next"] + period, time.monotonic())

        return sleep

    def send(self, comp: Composite, fresh: bool) -> None:
        t0 = time.perf_counter()
        for s in self.sinks:
            s.send(comp.image)
        now = time.monotonic()
        self.send_ms.add((time.perf_counter() - t0) * 1e3)
        if self.t_first is None:
            self.t_first = now
        if self.t_last is not None:
            self.max_gap = max(self.max_gap, now - self.t_last)
        self.t_last = now
        self.sent += 1
        if fresh:
            self.t_last_new = now
            self.new += 1
            self.latency.add((now - comp.t_capture) * 1e3)
            for tap in self.taps:
                tap(comp)
        else:
            self.repeats += 1

    def _run(self) -> None:
        try:
            sleep = self._pacer()
            ended = False
            while not self._stop.is_set():
                try:
                    comp = self.inbox.take(timeout=0 if self.last is not None else 0.05)
                except Closed:
                    comp, ended = None, True
                if comp is not None:
                    if self.stalled:
                        self.stalled = False
                        log.info("frames flowing again")
                    self.last = comp
                    self.send(comp, True)
                elif ended:
                    break
                elif self.last is not None:
                    if (self.curtain is not None and not self.stalled
                            and time.monotonic() - self.t_last_new > self.stall_after):
                        self.stalled = True
                        self._curtain_frame = self.curtain(self.last.frame if self.last.frame is not None
                                                           else self.last.image)
                        log.warning("no new frames for %.1f s: showing the blurred last frame", self.stall_after)
                    if self.stalled:
                        self.send(dataclasses.replace(self.last, image=self._curtain_frame), False)
                    else:
                        self.send(self.last, False)
                else:
                    continue
                sleep()
        except BaseException as e:
            if self.on_error:
                self.on_error(e)
            else:
                raise
