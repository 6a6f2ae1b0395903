"""Live control of a running pipeline: commands, the ``vcam ctl`` socket, config reload, hotkeys.

Every way in — the Unix socket, a terminal key, a global hotkey, a key in the preview
window, an edit of ``config.yaml`` — ends in :meth:`Controller.execute`, which applies
the change from the next frame without restarting anything.
"""
from __future__ import annotations

import json
import logging
import os
import re
import select
import socket
import struct
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from . import config as config_mod
from .background import parse_color
from .config import Config
from .errors import ConfigError, VcamError

log = logging.getLogger(__name__)

MODES = config_mod.MODES
HELP = ("commands: status | blur on|off|toggle|up|down|N | mode blur|replace|color|none | "
        "bg next|prev|PATH|COLOR | mirror on|off|toggle | pause on|off|toggle | model NAME | keep X,Y|all | reload | stop")


def runtime_dir() -> Path:
    """``$XDG_RUNTIME_DIR/vcam``, or a private folder in the temp dir where that is unset."""
    import tempfile

    base = os.environ.get("XDG_RUNTIME_DIR")
    return Path(base) / "vcam" if base else Path(tempfile.gettempdir()) / f"vcam-{os.getuid()}"


def socket_path(name: str = "default") -> Path:
    return runtime_dir() / f"{name}.sock"


def _switch(value: bool, arg: str | None) -> bool:
    if arg in (None, "toggle"):
        return not value
    if arg in ("on", "true", "1", "yes"):
        return True
    if arg in ("off", "false", "0", "no"):
        return False
    raise ConfigError(f"expected on, off or toggle, got {arg!r}")


class Controller:
    """Applies commands to a running :class:`~vcam.pipeline.Pipeline`."""

    def __init__(self, pipeline, cfg: Config, *, reload: Callable[[], Config] | None = None):
        self.pipeline = pipeline
        self.cfg = cfg
        self._reload = reload
        self._lock = threading.Lock()
        self._last_blur_off_mode = "none" if cfg.compositor.mode == "blur" else cfg.compositor.mode
        self.t_start = time.monotonic()

    # --- applying ------------------------------------------------------------------------

    def _set_compositor(self, **changes) -> None:
        new = replace(self.cfg.compositor, **changes)
        config_mod.merge(Config(), {"compositor": config_mod.dataclasses.asdict(new)}, "command")  # validate
        self.pipeline.parts.compositor.configure(new)
        self.cfg = replace(self.cfg, compositor=new)

    def apply_config(self, new: Config) -> list[str]:
        """Apply a whole new config (a reloaded file); returns the changed keys."""
        changed = [f"{sec}.{k}" for sec, vals in new.to_dict().items() for k, v in vals.items()
                   if self.cfg.to_dict()[sec][k] != v]
        if new.compositor != self.cfg.compositor:
            self.pipeline.parts.compositor.configure(new.compositor)
        if new.matting != self.cfg.matting:
            self.pipeline.switch_model(new.matting)
        if new.smoothing != self.cfg.smoothing:
            self.pipeline.switch_smoothing(new.smoothing)
        self.cfg = new
        return changed

    def execute(self, words: list[str]) -> dict:
        """Run one command; returns a JSON-able reply. Errors are replies, not exceptions."""
        try:
            with self._lock:
                return {"ok": True, **(self._execute(words) or {})}
        except VcamError as e:
            return {"ok": False, "error": str(e)}
        except Exception as e:  # a command must never take the pipeline down
            log.exception("command %s failed", words)
            return {"ok": False, "error": f"{type(e).__name__}: {e}"}

    def _execute(self, words: list[str]) -> dict | None:
        if not words:
            raise ConfigError(f"empty command; {HELP}")
        cmd, args = words[0].lower(), words[1:]
        arg = args[0].lower() if args else None
        c = self.cfg.compositor
        if cmd == "status":
            return self.status()
        if cmd == "blur":
            if arg in ("up", "down"):
                self._set_compositor(blur=min(100, max(1, c.blur + (10 if arg == "up" else -10))), mode="blur")
            elif arg is not None and arg.isdigit():
                self._set_compositor(blur=int(arg), mode="blur")
            else:
                on = _switch(c.mode == "blur", arg)
                if on and c.mode != "blur":
                    self._last_blur_off_mode = c.mode
                self._set_compositor(mode="blur" if on else self._last_blur_off_mode)
        elif cmd == "mode":
            if arg not in MODES:
                raise ConfigError(f"mode must be one of {', '.join(MODES)}")
            self._set_compositor(mode=arg)
        elif cmd in ("bg", "background"):
            if arg in ("next", "prev", "previous"):
                look = self.pipeline.parts.compositor.step_background(1 if arg == "next" else -1)
                self.cfg = replace(self.cfg, compositor=replace(look.cfg, mode="replace"))
                self.pipeline.parts.compositor.configure(self.cfg.compositor, index=look.index)
            elif args:
                value = " ".join(args)
                if not Path(value).expanduser().exists() and parse_color(value) is not None:
                    self._set_compositor(mode="color", color=value)
                else:
                    self._set_compositor(mode="replace", background=value)
            else:
                raise ConfigError("bg needs next, prev, a path or a colour")
        elif cmd == "mirror":
            self._set_compositor(mirror=_switch(c.mirror, arg))
        elif cmd == "pause":
            paused = _switch(c.paused, arg)
            self._set_compositor(paused=paused)
            if self.cfg.control.release_camera or "--release" in args:
                self.pipeline.capture.set_released(paused)
        elif cmd == "model":
            if not args:
                raise ConfigError("model needs a name, e.g. model rvm")
            m = replace(self.cfg.matting, model=args[0])
            self.pipeline.switch_model(m)
            self.cfg = replace(self.cfg, matting=m)
        elif cmd == "keep":
            self._keep(args)
        elif cmd == "reload":
            if self._reload is None:
                raise ConfigError("this vcam was not started from a config it can reload")
            return {"changed": self.apply_config(self._reload())}
        elif cmd in ("stop", "quit"):
            self.pipeline.request_stop()
        elif cmd in ("help", "?"):
            return {"help": HELP}
        else:
            raise ConfigError(f"unknown command {cmd!r}; {HELP}")
        return self.status()

    def _keep(self, args: list[str]) -> None:
        """``keep X,Y`` in the pixels of the picture the call sees (mirrored if mirror is on);
        ``keep all`` to keep everyone."""
        if not args:
            raise ConfigError("keep needs X,Y (a pixel on the person to keep) or all")
        if args[0].lower() in ("all", "none", "off", "clear"):
            self.pipeline.keep(None)
            return
        from .segment.prompt import parse_point

        x, y = parse_point(",".join(w for w in re.split(r"[,\s]+", " ".join(args)) if w), "keep")
        frame = self.pipeline.matting.last_frame
        if frame is not None and self.cfg.compositor.mirror:
            x = frame.image.shape[1] - 1 - x
        self.pipeline.keep(x, y)

    def tick(self) -> None:
        """Called a few times a second by the supervisor: timed background rotation."""
        c = self.cfg.compositor
        if c.rotate_seconds > 0 and len(self.pipeline.parts.compositor.look.backgrounds) > 1:
            now = time.monotonic()
            if now - getattr(self, "_rotated", self.t_start) >= c.rotate_seconds:
                self._rotated = now
                self.execute(["bg", "next"])

    def status(self) -> dict:
        st = self.pipeline.stats()
        c = self.cfg.compositor
        look = self.pipeline.parts.compositor.look
        return {
            "mode": c.mode, "paused": c.paused, "mirror": c.mirror, "blur": c.blur,
            "background": look.backgrounds[look.index] if look.backgrounds else None,
            "color": c.color, "model": self.cfg.matting.model,
            "fps_in": st["capture_fps"], "fps_out": st["output_fps"], "matting_hz": st["matting_hz"],
            "latency_ms": {"p50": st["latency_ms"]["p50"], "p95": st["latency_ms"]["p95"]},
            "dropped": st["dropped"], "uptime_s": round(time.monotonic() - self.t_start, 1),
            "keep": keeper.status() if (keeper := self.pipeline.matting.keeper) is not None else {"state": "all"},
        }


# --- the socket -------------------------------------------------------------------------------

class ControlServer:
    """``vcam ctl`` endpoint: a Unix socket (mode 0600) that refuses other users."""

    def __init__(self, controller: Controller, name: str = "default"):
        self.controller = controller
        self.path = socket_path(name)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sock: socket.socket | None = None

    def start(self) -> "ControlServer":
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = self.path.parent.stat()
        if st.st_uid != os.getuid() or st.st_mode & 0o077:
            raise ConfigError(f"{self.path.parent} is not a private folder of this user: remove it, "
                              f"or set XDG_RUNTIME_DIR")
        if self.path.exists():
            if _alive(self.path):
                raise ConfigError(f"another vcam named '{self.path.stem}' is running ({self.path}): "
                                  f"stop it, or start this one with a different control.name")
            self.path.unlink()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # the socket is born 0600: no window where others could connect
        try:
            s.bind(str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        s.listen(4)
        s.settimeout(0.2)
        self.sock = s
        self._thread = threading.Thread(target=self._serve, name="vcam-control", daemon=True)
        self._thread.start()
        log.info("control: `vcam ctl%s COMMAND` (socket %s)", "" if self.path.stem == "default" else
                 f" --name {self.path.stem}", self.path)
        return self

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            with conn:
                try:
                    self._handle(conn)
                except OSError:
                    pass

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(2.0)
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _, uid, _ = struct.unpack("3i", creds)
        if uid != os.getuid():
            conn.sendall(json.dumps({"ok": False, "error": "refused: not the user running vcam"}).encode() + b"\n")
            return
        data = b""
        while not data.endswith(b"\n") and len(data) < 65536:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        try:
            words = json.loads(data.decode() or "[]")
            if not isinstance(words, list):
                raise ValueError
        except ValueError:
            reply = {"ok": False, "error": "malformed request: send a JSON list of words"}
        else:
            reply = self.controller.execute([str(w) for w in words])
        conn.sendall(json.dumps(reply).encode() + b"\n")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)
        if self.sock is not None:
            self.sock.close()
            self.sock = None
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass


def _alive(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            s.connect(str(path))
            return True
    except OSError:
        return False


def send_command(words: list[str], name: str = "default", timeout: float = 5.0) -> dict:
    """Client side of ``vcam ctl``."""
    path = socket_path(name)
    if not path.exists():
        raise VcamError(f"no vcam named '{name}' is running (no socket at {path}): start `vcam` first")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(path))
            s.sendall(json.dumps(words).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except ConnectionRefusedError:
        raise VcamError(f"no vcam named '{name}' is running (stale socket {path}): start `vcam` first") from None
    except PermissionError:
        raise VcamError(f"cannot open {path}: it belongs to another user") from None
    except OSError as e:
        raise VcamError(f"cannot talk to vcam at {path}: {e}") from None
    try:
        return json.loads(data.decode())
    except ValueError:
        raise VcamError(f"vcam at {path} sent a malformed reply") from None


# --- config reload ------------------------------------------------------------------------------

class ConfigWatcher:
    """Polls the config files' modification times; a change reloads and applies the config.
    An invalid edit keeps the old settings and logs one line naming the bad key or value."""

    def __init__(self, controller: Controller, paths: list[Path], interval: float = 0.5):
        self.controller = controller
        self.paths = [Path(p) for p in paths]
        self.interval = interval
        self._stamps = self._read()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self):
        out = []
        for p in self.paths:
            try:
                st = p.stat()
                out.append((st.st_mtime_ns, st.st_size))
            except OSError:
                out.append(None)
        return out

    def start(self) -> "ConfigWatcher":
        self._thread = threading.Thread(target=self._run, name="vcam-config-watch", daemon=True)
        self._thread.start()
        return self

    def check(self) -> None:
        stamps = self._read()
        if stamps == self._stamps:
            return
        self._stamps = stamps
        reply = self.controller.execute(["reload"])
        if reply["ok"]:
            if reply.get("changed"):
                log.info("config reloaded: %s", ", ".join(reply["changed"]))
        else:
            log.error("config change ignored, keeping the old settings: %s", reply["error"])

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)


# --- hotkeys ---------------------------------------------------------------------------------------

KEYMAP = {"b": ["blur", "toggle"], "m": ["mode", "__cycle__"], "n": ["bg", "next"], "N": ["bg", "prev"],
          "p": ["pause", "toggle"], " ": ["pause", "toggle"], "r": ["mirror", "toggle"], "+": ["blur", "up"],
          "=": ["blur", "up"], "-": ["blur", "down"], "q": ["stop"]}
KEY_HELP = "keys: b blur, m mode, n/N background, p pause, r mirror, +/- strength, q quit"


def key_command(controller: Controller, key: str) -> None:
    words = KEYMAP.get(key)
    if not words:
        return
    if words[1:] == ["__cycle__"]:
        modes = list(MODES)
        words = ["mode", modes[(modes.index(controller.cfg.compositor.mode) + 1) % len(modes)]]
    reply = controller.execute(words)
    log.info("%s → %s", " ".join(words), "ok" if reply["ok"] else reply["error"])


class TerminalKeys:
    """Single keys from a terminal (cbreak mode), when stdin is a TTY."""

    def __init__(self, controller: Controller):
        self.controller = controller
        self._stop = threading.Event()
        self._thread = None
        self._saved = None

    def start(self) -> "TerminalKeys | None":
        if not sys.stdin.isatty():
            return None
        import termios
        import tty

        fd = sys.stdin.fileno()
        self._saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)
        self._thread = threading.Thread(target=self._run, args=(fd,), name="vcam-keys", daemon=True)
        self._thread.start()
        log.info(KEY_HELP)
        return self

    def _run(self, fd: int) -> None:
        while not self._stop.is_set():
            r, _, _ = select.select([fd], [], [], 0.2)
            if r:
                ch = os.read(fd, 1).decode(errors="ignore")
                key_command(self.controller, ch)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)
        if self._saved is not None:
            import termios

            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self._saved)
            self._saved = None


def _pynput_combo(spec: str) -> str:
    parts = [p.strip().lower() for p in spec.split("+") if p.strip()]
    return "+".join(f"<{p}>" if len(p) > 1 else p for p in parts)


class GlobalHotkeys:
    """Desktop-wide hotkeys through pynput on X11; elsewhere one log line with the alternative."""

    def __init__(self, controller: Controller, cc):
        self.controller = controller
        self.cc = cc
        self.listener = None

    def start(self) -> "GlobalHotkeys | None":
        why = None
        if os.environ.get("WAYLAND_DISPLAY") and not os.environ.get("DISPLAY"):
            why = "Wayland does not let programs grab global keys"
        elif not os.environ.get("DISPLAY"):
            why = "no X11 display"
        else:
            try:
                from pynput import keyboard
            except Exception:
                why = "pynput is not installed (pip install pynput)"
        if why:
            log.info("global hotkeys unavailable (%s): bind `vcam ctl blur toggle` in your desktop's keyboard "
                     "shortcut settings instead (see README, Hotkeys)", why)
            return None
        mapping = {_pynput_combo(self.cc.hotkey_blur): ["blur", "toggle"],
                   _pynput_combo(self.cc.hotkey_pause): ["pause", "toggle"],
                   _pynput_combo(self.cc.hotkey_next_bg): ["bg", "next"]}
        try:
            self.listener = keyboard.GlobalHotKeys({k: (lambda w=w: self.controller.execute(w)) for k, w in mapping.items()})
            self.listener.start()
        except Exception as e:
            log.info("global hotkeys unavailable (%s): bind `vcam ctl blur toggle` in your desktop's keyboard "
                     "shortcut settings instead", e)
            return None
        log.info("global hotkeys: %s blur, %s pause, %s next background", self.cc.hotkey_blur, self.cc.hotkey_pause,
                 self.cc.hotkey_next_bg)
        return self

    def stop(self) -> None:
        if self.listener is not None:
            self.listener.stop()
            self.listener = None


# --- on-demand camera ----------------------------------------------------------------------------

def readers_of(device: str) -> int:
    """How many *other* processes have ``device`` open."""
    from .output import device_openers

    return sum(1 for pid, _ in device_openers(device) if pid != os.getpid())


class OnDemand:
    """Release the real camera (LED off) while no application reads the virtual camera,
    and take it back within a second when one opens it (``--on-demand``)."""

    def __init__(self, pipeline, device: str, interval: float = 0.3, count: Callable[[str], int] = readers_of):
        self.pipeline, self.device, self.interval, self.count = pipeline, device, interval, count
        self._stop = threading.Event()
        self._thread = None
        self.released: bool | None = None

    def start(self) -> "OnDemand":
        self._thread = threading.Thread(target=self._run, name="vcam-on-demand", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            idle = self.count(self.device) == 0
            if idle != self.released:
                self.released = idle
                self.pipeline.capture.set_released(idle)
                log.info("%s", f"no application reads {self.device}: camera released" if idle
                         else f"an application opened {self.device}: camera on")
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)
