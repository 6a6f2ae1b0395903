"""Keys: single keys in the terminal, desktop-wide hotkeys (X11, pynput), and the preview
window's keys; each becomes a :class:`~vcam.live.control.Controller` command."""
from __future__ import annotations

import logging
import os
import select
import sys

from ..config import MODES
from ..core.worker import Worker

log = logging.getLogger(__name__)

KEYMAP = {"b": ["blur", "toggle"], "m": ["mode", "__cycle__"], "n": ["bg", "next"], "N": ["bg", "prev"],
          "p": ["pause", "toggle"], " ": ["pause", "toggle"], "r": ["mirror", "toggle"], "+": ["blur", "up"],
          "=": ["blur", "up"], "-": ["blur", "down"], "q": ["stop"]}
KEY_HELP = "keys: b blur, m mode, n/N background, p pause, r mirror, +/- strength, q quit"


def key_command(controller, key: str) -> None:
    words = KEYMAP.get(key)
    if not words:
        return
    if words[1:] == ["__cycle__"]:
        modes = list(MODES)
        words = ["mode", modes[(modes.index(controller.cfg.compositor.mode) + 1) % len(modes)]]
    reply = controller.execute(words)
    log.info("%s → %s", " ".join(words), "ok" if reply["ok"] else reply["error"])


class TerminalKeys(Worker):
    """Single keys from a terminal (cbreak mode). ``start()`` returns ``None`` when stdin is no TTY."""

    thread_name = "vcam-keys"

    def __init__(self, controller):
        super().__init__()
        self.controller = controller
        self._fd = -1
        self._saved = None

    def start(self) -> "TerminalKeys | None":
        if not sys.stdin.isatty():
            return None
        import termios
        import tty

        self._fd = sys.stdin.fileno()
        self._saved = termios.tcgetattr(self._fd)
        tty.setcbreak(self._fd)
        super().start()
        log.info(KEY_HELP)
        return self

    def step(self) -> bool:
        r, _, _ = select.select([self._fd], [], [], 0.2)
        if r:
            key_command(self.controller, os.read(self._fd, 1).decode(errors="ignore"))
        return True

    def stop(self, timeout: float = 1.0) -> None:
        super().stop(timeout)
        if self._saved is not None:
            import termios

            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
            self._saved = None


def _pynput_combo(spec: str) -> str:
    parts = [p.strip().lower() for p in spec.split("+") if p.strip()]
    return "+".join(f"<{p}>" if len(p) > 1 else p for p in parts)


class GlobalHotkeys:
    """Desktop-wide hotkeys through pynput on X11 (pynput runs its own listener thread);
    elsewhere one log line with the alternative."""

    def __init__(self, controller, cc):
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
