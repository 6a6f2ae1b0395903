"""Live control: every way in ends in :meth:`Controller.execute`.

The Unix socket (:mod:`.server`), a terminal key, a global hotkey, a key in the preview
window (:mod:`.hotkeys`) and an edit of ``config.yaml`` (:mod:`.watchers`) all become a
command here. The controller holds the only live config; it applies a change through the
pipeline's small API (``set_look``, ``switch_model``, ``keep``, ``release_camera``,
``stats``) from the next frame, without restarting anything.
"""
from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from dataclasses import replace
from typing import Callable

from .. import config as config_mod
from ..config import Config
from ..errors import ConfigError, VcamError
from ..imaging.background import look_keys
from ..subject.prompt import parse_point

log = logging.getLogger(__name__)

MODES = config_mod.MODES
HELP = ("commands: status | blur on|off|toggle|up|down|N | mode blur|replace|color|none | "
        "bg next|prev|PATH|COLOR | mirror on|off|toggle | pause on|off|toggle | model NAME | budget CORES|auto | "
        "keep X,Y|all | reload | stop")


def _switch(value: bool, arg: str | None) -> bool:
    if arg in (None, "toggle"):
        return not value
    if arg in ("on", "true", "1", "yes"):
        return True
    if arg in ("off", "false", "0", "no"):
        return False
    raise ConfigError(f"expected on, off or toggle, got {arg!r}")


class Controller:
    """Applies commands to a running :class:`~vcam.live.pipeline.Pipeline`; owns the live config."""

    def __init__(self, pipeline, cfg: Config, *, reload: Callable[[], Config] | None = None):
        self.pipeline = pipeline
        self.cfg = cfg
        self._reload = reload
        self._lock = threading.Lock()
        self._last_blur_off_mode = "none" if cfg.compositor.mode == "blur" else cfg.compositor.mode
        self.t_start = time.monotonic()
        self._rotated = self.t_start
        # The command table: a word → a handler of the remaining words (None: reply with the status).
        self.commands: dict[str, Callable[[list[str]], dict | None]] = {
            "status": lambda args: self.status(), "blur": self._blur, "mode": self._mode, "bg": self._bg,
            "background": self._bg, "mirror": self._mirror, "pause": self._pause, "model": self._model,
            "budget": self._budget,
            "keep": self._keep, "reload": self._reload_cmd, "stop": self._stop, "quit": self._stop,
            "help": self._help, "?": self._help,
        }

    # --- applying ------------------------------------------------------------------------

    def execute(self, words: list[str]) -> dict:
        """Run one command; returns a JSON-able reply. Errors are replies, not exceptions."""
        try:
            with self._lock:
                if not words:
                    raise ConfigError(f"empty command; {HELP}")
                handler = self.commands.get(words[0].lower())
                if handler is None:
                    raise ConfigError(f"unknown command {words[0].lower()!r}; {HELP}")
                reply = handler(words[1:])
                return {"ok": True, **(reply if reply is not None else self.status())}
        except VcamError as e:
            return {"ok": False, "error": str(e)}
        except Exception as e:  # a command must never take the pipeline down
            log.exception("command %s failed", words)
            return {"ok": False, "error": f"{type(e).__name__}: {e}"}

    def _set_compositor(self, **changes) -> None:
        new = replace(self.cfg.compositor, **changes)
        config_mod.merge(Config(), {"compositor": dataclasses.asdict(new)}, "command")  # validate
        self.pipeline.set_look(new)
        self.cfg = replace(self.cfg, compositor=new)

    def apply_config(self, new: Config) -> list[str]:
        """Apply a whole new config (a reloaded file); returns the changed keys."""
        old = self.cfg.to_dict()
        changed = [f"{sec}.{k}" for sec, vals in new.to_dict().items() for k, v in vals.items() if old[sec][k] != v]
        if str(new.run.cpu_budget) != str(self.cfg.run.cpu_budget):  # first: it may refuse, before anything changed
            self.pipeline.set_budget(new.run.cpu_budget)
        if new.compositor != self.cfg.compositor:
            self.pipeline.set_look(new.compositor)
        if new.matting != self.cfg.matting:
            self.pipeline.switch_model(new.matting)
        if new.smoothing != self.cfg.smoothing:
            self.pipeline.set_smoothing(new.smoothing)
        self.cfg = new
        return changed

    # --- the commands ------------------------------------------------------------------------

    @staticmethod
    def _arg(args: list[str]) -> str | None:
        return args[0].lower() if args else None

    def _blur(self, args):
        c, arg = self.cfg.compositor, self._arg(args)
        if arg in ("up", "down"):
            self._set_compositor(blur=min(100, max(1, c.blur + (10 if arg == "up" else -10))), mode="blur")
        elif arg is not None and arg.isdigit():
            self._set_compositor(blur=int(arg), mode="blur")
        else:
            on = _switch(c.mode == "blur", arg)
            if on and c.mode != "blur":
                self._last_blur_off_mode = c.mode
            self._set_compositor(mode="blur" if on else self._last_blur_off_mode)

    def _mode(self, args):
        arg = self._arg(args)
        if arg not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}")
        self._set_compositor(mode=arg)

    def _bg(self, args):
        arg = self._arg(args)
        if arg in ("next", "prev", "previous"):
            look = self.pipeline.step_background(1 if arg == "next" else -1)
            self.cfg = replace(self.cfg, compositor=look.cfg)
        elif args:
            self._set_compositor(**look_keys(bg=" ".join(args)))
        else:
            raise ConfigError("bg needs next, prev, a path or a colour")

    def _mirror(self, args):
        self._set_compositor(mirror=_switch(self.cfg.compositor.mirror, self._arg(args)))

    def _pause(self, args):
        paused = _switch(self.cfg.compositor.paused, self._arg(args))
        self._set_compositor(paused=paused)
        if self.cfg.control.release_camera or "--release" in args:
            self.pipeline.release_camera(paused)

    def _model(self, args):
        if not args:
            raise ConfigError("model needs a name, e.g. model rvm")
        m = replace(self.cfg.matting, model=args[0])
        self.pipeline.switch_model(m)
        self.cfg = replace(self.cfg, matting=m)

    def _budget(self, args):
        if len(args) != 1:
            raise ConfigError("budget needs the cores vcam may use, e.g. budget 0.4, or auto")
        self.pipeline.set_budget(args[0])
        self.cfg = replace(self.cfg, run=replace(self.cfg.run, cpu_budget=args[0].lower()))

    def _keep(self, args):
        """``keep X,Y`` in the pixels of the picture the call sees (mirrored if mirror is on);
        ``keep all`` to keep everyone."""
        if not args:
            raise ConfigError("keep needs X,Y (a pixel on the person to keep) or all")
        if args[0].lower() in ("all", "none", "off", "clear"):
            self.pipeline.keep(None)
            return None
        x, y = parse_point(",".join(w for w in re.split(r"[,\s]+", " ".join(args)) if w), "keep")
        self.pipeline.keep(x, y, mirrored=self.cfg.compositor.mirror)
        return None

    def _reload_cmd(self, args):
        if self._reload is None:
            raise ConfigError("this vcam was not started from a config it can reload")
        return {"changed": self.apply_config(self._reload())}

    def _stop(self, args):
        self.pipeline.request_stop()

    def _help(self, args):
        return {"help": HELP}

    # --- asked by the supervisor and by `status` ---------------------------------------------

    def tick(self) -> None:
        """Called a few times a second by the supervisor: timed background rotation."""
        c = self.cfg.compositor
        if c.rotate_seconds > 0 and len(self.pipeline.look.backgrounds) > 1:
            now = time.monotonic()
            if now - self._rotated >= c.rotate_seconds:
                self._rotated = now
                self.execute(["bg", "next"])

    def status(self) -> dict:
        st = self.pipeline.stats()
        c = self.cfg.compositor
        return {
            "mode": c.mode, "paused": c.paused, "mirror": c.mirror, "blur": c.blur,
            "background": self.pipeline.look.current_background,
            "color": c.color, "model": st["model"], "input_size": st["input_size"], "runtime": st["runtime"],
            "cpu_cores": st["cpu_cores"], "budget": st["budget"],
            "fps_in": st["capture_fps"], "fps_out": st["output_fps"], "matting_hz": st["matting_hz"],
            "latency_ms": {"p50": st["latency_ms"]["p50"], "p95": st["latency_ms"]["p95"]},
            "dropped": st["dropped"], "uptime_s": round(time.monotonic() - self.t_start, 1),
            "keep": self.pipeline.keep_status(),
        }
