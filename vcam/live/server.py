"""The ``vcam ctl`` socket: a Unix socket (mode 0600, in the user's runtime folder) that
refuses other users and hands each command to the :class:`~vcam.live.control.Controller`;
and :func:`send_command`, its client."""
from __future__ import annotations

import json
import logging
import os
import socket
import struct
import tempfile
from pathlib import Path

from ..core.worker import Worker
from ..errors import ConfigError, VcamError

log = logging.getLogger(__name__)


def runtime_dir() -> Path:
    """``$XDG_RUNTIME_DIR/vcam``, or a private folder in the temp dir where that is unset."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    return Path(base) / "vcam" if base else Path(tempfile.gettempdir()) / f"vcam-{os.getuid()}"


def socket_path(name: str = "default") -> Path:
    return runtime_dir() / f"{name}.sock"


class ControlServer(Worker):
    """``vcam ctl`` endpoint; ``start()`` binds the socket (one-line errors) and starts serving."""

    thread_name = "vcam-control"

    def __init__(self, controller, name: str = "default"):
        super().__init__()
        self.controller = controller
        self.path = socket_path(name)
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
        super().start()
        log.info("control: `vcam ctl%s COMMAND` (socket %s)", "" if self.path.stem == "default" else
                 f" --name {self.path.stem}", self.path)
        return self

    def step(self) -> bool:
        try:
            conn, _ = self.sock.accept()
        except (socket.timeout, OSError):
            return True
        with conn:
            try:
                self._handle(conn)
            except OSError:
                pass
        return True

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

    def stop(self, timeout: float = 1.0) -> None:
        super().stop(timeout)
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
