"""``vcam run`` (the default command): the live virtual camera, with its control socket,
hotkeys, config watcher and on-demand camera."""
from __future__ import annotations

import logging
import signal
import threading

from .. import config as config_mod
from ..engine import budget
from ..engine.parts import build_parts
from ..errors import ConfigError
from ..live.control import Controller
from ..live.hotkeys import GlobalHotkeys, TerminalKeys, key_command
from ..live.pipeline import Pipeline
from ..live.server import ControlServer
from ..live.watchers import ConfigWatcher, OnDemand
from ..models.matting import check_live
from ..media.sinks import PreviewSink, VirtualCamSink
from .app import flags_to_layer, write_json

log = logging.getLogger(__name__)


def main(cfg: config_mod.Config, a) -> int:
    layer = flags_to_layer(a)
    watch = [p for p in (config_mod.user_config_path(), a.config) if p]
    return run(cfg, reload=lambda: config_mod.load(a.config, layer), watch=watch)


def run(cfg: config_mod.Config, reload=None, watch: list | None = None) -> int:
    check_live(cfg.matting)  # before the camera opens
    parts = build_parts(cfg, cpu_budget=budget.resolve(cfg.run.cpu_budget))
    pipe = Pipeline(cfg, parts)
    _install_signal_handlers(pipe.request_stop)
    controller = Controller(pipe, cfg, reload=reload)
    helpers = []
    try:
        if cfg.control.socket:
            helpers.append(ControlServer(controller, cfg.control.name).start())
        if cfg.control.on_demand:
            cams = [sk for sk in parts.sinks if isinstance(sk, VirtualCamSink)]
            if not cams or not str(cams[0].cam.device).startswith("/dev/"):
                raise ConfigError("--on-demand needs the v4l2loopback virtual camera (it watches who opens it)")
            helpers.append(OnDemand(pipe, str(cams[0].cam.device)).start())
        if cfg.control.watch_config and watch:
            helpers.append(ConfigWatcher(controller, watch).start())
        if cfg.control.hotkeys:
            helpers += [h for h in (TerminalKeys(controller).start(), GlobalHotkeys(controller, cfg.control).start()) if h]
            for sink in parts.sinks:
                if isinstance(sink, PreviewSink):
                    sink.on_key = lambda k: key_command(controller, chr(k))
                    # A click keeps only that person (MobileSAM); a right click keeps everyone again.
                    sink.on_click = lambda b, x, y: log.info("keep: %s", controller.execute(
                        ["keep", f"{x},{y}"] if b == "left" else ["keep", "all"]).get("keep", {}))
    except BaseException:
        for h in helpers:
            h.stop()
        pipe.close()
        raise
    c = cfg.capture
    mc = pipe.parts.matter.cfg
    on = f" on {mc.runtime} {mc.precision}" if getattr(pipe.parts.matter, "session", None) is not None else ""
    log.info("running: %s → %s (%s%s), %dx%d @ %g fps; Ctrl-C to stop", c.source, cfg.compositor.mode,
             mc.model, on, c.width, c.height, c.fps)
    try:
        stats = pipe.run(cfg.run.seconds, on_tick=lambda p: controller.tick())
    finally:
        for h in reversed(helpers):
            h.stop()
    log.info("output %.1f fps, matting %.1f Hz, latency p50 %s ms, CPU %.2f cores",
             stats["output_fps"], stats["matting_hz"], stats["latency_ms"]["p50"], stats["cpu_cores"])
    if cfg.run.stats_json:
        write_json(cfg.run.stats_json, stats)
    return 0


def _install_signal_handlers(stop) -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop())
