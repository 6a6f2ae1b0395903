"""The ``vcam ctl`` socket: a Unix socket (mode 0600, in the user's runtime folder) that
refuses other users and hands each command to the :class:`~vcam.live.control.Controller`;
and :func:`send_command`, its client."""
from __future__ import annotations

import json
import logging
import os
import selectors
import socket
import struct
import tempfile
import time
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


MAX_REQUEST = 65536  # bytes: a command is a short JSON line
DEADLINE = 2.0  # s a client has to send its line; a slow one is answered with an error and closed
MAX_CLIENTS = 256  # connections open at once; more wait in the listen backlog


def parse_words(data: bytes) -> list[str]:
    """A request line → its words. Only a flat JSON list of strings and numbers is a request:
    nesting is refused before the JSON parser sees it (no recursion to exhaust)."""
    if len(data) > MAX_REQUEST:
        raise ValueError(f"request over {MAX_REQUEST} bytes")
    text = data.decode("utf-8")
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > 1:
                raise ValueError("nested request")
        elif ch in "]}":
            depth -= 1
    words = json.loads(text or "[]")
    if not isinstance(words, list) or not all(isinstance(w, (str, int, float)) for w in words):
        raise ValueError("not a list of words")
    return [str(w) for w in words]


class _Client:
    __slots__ = ("sock", "buf", "deadline")

    def __init__(self, sock: socket.socket):
        self.sock, self.buf, self.deadline = sock, bytearray(), time.monotonic() + DEADLINE


class ControlServer(Worker):
    """``vcam ctl`` endpoint; ``start()`` binds the socket (one-line errors) and starts serving.

    One thread serves every client through a selector: each connection has a deadline and a
    size limit, so a client that drips, floods or never sends cannot hold up the others, and
    a request that breaks a handler is answered with one error line while serving goes on."""

    thread_name = "vcam-control"

    def __init__(self, controller, name: str = "default"):
        super().__init__()
        self.controller = controller
        self.path = socket_path(name)
        self.sock: socket.socket | None = None
        self._sel: selectors.BaseSelector | None = None
        self._clients: dict[int, _Client] = {}

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
        s.listen(128)
        s.setblocking(False)
        self.sock = s
        self._sel = selectors.DefaultSelector()
        self._sel.register(s, selectors.EVENT_READ, None)
        super().start()
        log.info("control: `vcam ctl%s COMMAND` (socket %s)", "" if self.path.stem == "default" else
                 f" --name {self.path.stem}", self.path)
        return self

    def step(self) -> bool:
        for key, _ in self._sel.select(timeout=0.2):
            if key.data is None:
                self._accept()
            else:
                self._receive(key.data)
        now = time.monotonic()
        for c in [c for c in self._clients.values() if c.deadline < now]:
            self._answer(c, {"ok": False, "error": f"no complete request within {DEADLINE:g} s: send one JSON "
                                                   f"line, e.g. [\"status\"]"})
        return True

    def _accept(self) -> None:
        while len(self._clients) < MAX_CLIENTS:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            c = _Client(conn)
            try:
                creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
                _, uid, _ = struct.unpack("3i", creds)
            except OSError:
                conn.close()
                continue
            if uid != os.getuid():
                self._answer(c, {"ok": False, "error": "refused: not the user running vcam"}, registered=False)
                continue
            conn.setblocking(False)
            self._clients[conn.fileno()] = c
            self._sel.register(conn, selectors.EVENT_READ, c)

    def _receive(self, c: _Client) -> None:
        try:
            chunk = c.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(c)
            return
        c.buf += chunk
        if not chunk or b"\n" in c.buf or len(c.buf) > MAX_REQUEST:
            self._answer(c, self._reply(bytes(c.buf.split(b"\n", 1)[0])))

    def _reply(self, data: bytes) -> dict:
        try:
            words = parse_words(data)
        except (ValueError, RecursionError, UnicodeDecodeError):
            return {"ok": False, "error": "malformed request: send one JSON list of words, e.g. [\"status\"]"}
        try:
            return self.controller.execute(words)
        except Exception as e:  # execute() answers its own errors; this is the last line of defence
            log.exception("control request %s failed", words[:8])
            return {"ok": False, "error": f"{type(e).__name__}: {e}"}

    def _answer(self, c: _Client, reply: dict, *, registered: bool = True) -> None:
        try:
            c.sock.setblocking(True)
            c.sock.settimeout(0.5)  # a reply is small; a client that will not read it is dropped
            c.sock.sendall(json.dumps(reply).encode() + b"\n")
        except OSError:
            pass
        if registered:
            self._drop(c)
        else:
            c.sock.close()

    def _drop(self, c: _Client) -> None:
        self._clients.pop(c.sock.fileno(), None)
        try:
            self._sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()

    def stop(self, timeout: float = 1.0) -> None:
        super().stop(timeout)
        for c in list(self._clients.values()):
            self._drop(c)
        if self._sel is not None:
            self._sel.close()
            self._sel = None
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


def exchange(path: Path, request: bytes, timeout: float = 5.0) -> bytes:
    """Send ``request`` to the socket at ``path`` and return the reply line (``OSError`` on failure)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(request)
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


def send_command(words: list[str], name: str = "default", timeout: float = 5.0) -> dict:
    """Client side of ``vcam ctl``."""
    path = socket_path(name)
    if not path.exists():
        raise VcamError(f"no vcam named '{name}' is running (no socket at {path}): start `vcam` first")
    try:
        data = exchange(path, json.dumps(words).encode() + b"\n", timeout)
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
