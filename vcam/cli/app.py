"""The ``vcam`` command line: the parser, the flags' config layer, logging, and the dispatch to
one module per subcommand. The CLI is the only code that configures logging or exits."""
from __future__ import annotations

import argparse
import faulthandler
import importlib
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from .. import __version__
from .. import config as config_mod
from ..core import imagefile
from ..core.memory import avoid_hugepage_stalls
from ..errors import ConfigError, VcamError
from ..imaging.background import look_keys
from ..models import store

log = logging.getLogger("vcam")

# subcommand → (its module in vcam.cli, whether it takes the layered config)
SUBCOMMANDS = {"run": ("run", True), "process": ("process", True), "demo": ("demo", True),
               "models": ("models", False), "remove": ("remove", True), "ctl": ("ctl", False),
               "doctor": ("doctor", False), "bench": ("bench", False), "serve": ("serve", True)}


def parse_size(text: str) -> tuple[int, int]:
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
    m.add_argument("--model", help=f"matting model (matting.model): {', '.join(store.names('matting'))}; "
                                   f"vcam remove also takes auto, its default (matting.still_model)")
    m.add_argument("--model-path", help="local path or URL of the model file (matting.model_path)")
    m.add_argument("--input-size", type=int, help="short side the model sees (matting.input_size)")
    m.add_argument("--threads", type=int, help="onnxruntime threads (matting.threads)")
    m.add_argument("--providers", help="onnxruntime providers, comma-separated, or auto (matting.providers)")
    m.add_argument("--runtime", choices=("auto", "onnxruntime", "openvino"), help="inference runtime (matting.runtime)")
    m.add_argument("--precision", choices=("fp32", "bf16", "int8"), help="OpenVINO precision (matting.precision)")
    _config_args(p)


def _config_args(p: argparse.ArgumentParser) -> None:
    c = p.add_argument_group("config")
    c.add_argument("--config", metavar="FILE", help="a config.yaml to apply over the user config")
    c.add_argument("--print-config", action="store_true", help="print the effective config and exit")
    c.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="run.log_level")
    c.add_argument("--max-pixels", type=int, metavar="N",
                   help="refuse images over N pixels, from their header (run.max_pixels, default 50 MP)")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that every ``finally`` cleans up as for Ctrl-C."""

    signum = signal.SIGTERM


def stop_cleanly_on_sigterm() -> None:
    """For the offline commands: SIGTERM unwinds like Ctrl-C (temporaries removed), exit 143."""
    if threading.current_thread() is threading.main_thread():
        def raise_terminated(*_):
            raise Terminated()

        signal.signal(signal.SIGTERM, raise_terminated)


def dump_stacks_on_sigusr1() -> None:
    """`kill -USR1 PID` prints every thread's stack to stderr, for a run that seems stuck (the process goes on)."""
    if hasattr(signal, "SIGUSR1") and threading.current_thread() is threading.main_thread():
        try:
            faulthandler.register(signal.SIGUSR1, all_threads=True, chain=False)
        except (ValueError, OSError, RuntimeError):  # stderr closed or not a real file: nothing to dump to
            pass


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vcam", description="A virtual camera that blurs or replaces your background.")
    p.add_argument("--version", action="version", version=f"vcam {__version__}")
    sub = p.add_subparsers(dest="command")

    r = sub.add_parser("run", help="run the live virtual camera (the default command)")
    r.add_argument("--source", help="camera index, /dev/videoN, video file, folder of frames, or 'sample' (capture.source)")
    r.add_argument("--size", type=parse_size, metavar="WxH", help="capture and output size (capture.width/height)")
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
    r.add_argument("--matting-hz", type=float, metavar="N", help="cap the matting rate at N Hz (matting.max_hz)")
    r.add_argument("--cpu-budget", metavar="CORES",
                   help="mean cores vcam may use: the matting rate, then its input size, then the model give way, "
                        "never the output fps (run.cpu_budget; default auto = 0.6 on up to 4 cores, 1.0 above; off)")
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
    pr.add_argument("--fast", action="store_true",
                    help="the live camera's model input (matting.input_size, 224) instead of the offline preset "
                         "(matting.still_input_size, 320): about 2x faster, softer edges, more flicker")
    pr.add_argument("--matting-hz", type=float, metavar="N",
                    help="make new mattes only as the live camera would at N Hz (each used one period after its "
                         "frame, refined against every frame between): measure what a call sees")
    pr.add_argument("--cpu-budget", metavar="CORES",
                    help="make new mattes as the live camera would under this CPU budget (its controller's decisions, "
                         "on the CPU this run measures): measure what a call sees at that budget")
    _common_effects(pr)

    d = sub.add_parser("demo", help="run the whole pipeline on the built-in sample; no camera or display needed")
    d.add_argument("--out-dir", default=".", help="where to write vcam-demo.mp4 and vcam-demo.png")
    d.add_argument("--seconds", type=float, default=6.0, help="length of the demo (default 6)")
    _common_effects(d)

    rm = sub.add_parser("remove", help="remove the background from images, folders or globs (like rembg)")
    rm.add_argument("inputs", nargs="+", metavar="INPUT", help="image file, folder, glob, or - for stdin (to stdout, or -o FILE)")
    rm.add_argument("-o", "--output", metavar="OUT", help="output file (one input), or folder (several inputs, an existing folder, a name ending in / or "
                         "without an extension); default: beside each input, *-nobg.png. Inputs that share a stem keep "
                         "their extension in the name: photo.jpg.png")
    rm.add_argument("--fast", action="store_true",
                    help="the live camera's model input (matting.input_size) instead of the stills preset "
                         "(matting.still_input_size, 320): about 2x faster, softer edges")
    rm.add_argument("-v", "--verbose", action="store_true",
                    help="say per picture which path --model auto chose (portrait or object) and why")
    rm.add_argument("--only-mask", action="store_true", help="write the 8-bit alpha mask as PNG, same stem")
    rm.add_argument("--format", choices=("png", "webp", "jpg"), help="output format (default png; jpg needs --bgcolor)")
    rm.add_argument("--bgcolor", metavar="COLOR", help="flatten onto a colour: #rrggbb, r,g,b or a name")
    rm.add_argument("-a", "--alpha-matting", action="store_true", help="refine edges with closed-form matting (pymatting)")
    rm.add_argument("-af", "--alpha-matting-foreground-threshold", type=int, default=240, metavar="N")
    rm.add_argument("-ab", "--alpha-matting-background-threshold", type=int, default=10, metavar="N")
    rm.add_argument("-ae", "--alpha-matting-erode-size", type=int, default=10, metavar="N")
    rm.add_argument("--post-process", action="store_true", help="drop small islands away from the subject")
    rm.add_argument("--workers", type=int, default=0, metavar="N", help="parallel workers for folders (default: all cores)")
    rm.add_argument("--skip-existing", action="store_true", help="skip inputs whose output already exists")
    rm.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS|local",
                    help="run on a Ray cluster (vcam[ray]): local starts one on this machine, an address joins one; "
                         "inputs and -o may also be s3://, gs:// or file:// URIs")
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
    b.add_argument("--auto", action="store_true",
                   help="pick the runtime/precision (checked against fp32), input size and rate for this machine; "
                        "write the user config")
    b.add_argument("--calibrate", metavar="DIR|VIDEO",
                   help="with --auto: also check (and calibrate int8) on your own pictures or video of your scene")
    b.add_argument("--source", action="append", default=[], metavar="FILE",
                   help="run on this video (repeatable; default: the built-in sample), e.g. a still call and a moving one")
    b.add_argument("--budgets", metavar="C[,C...]", help="also run vcam at these CPU budgets (run.cpu_budget), e.g. 0.3,0.6,1.0")
    b.add_argument("--peers", action="store_true",
                   help="also run the peers' recipes (scripts/peers.py in a source checkout: LFBW, MODNet-in-a-worker)")
    b.add_argument("--no-kernels", action="store_true", help="skip the kernel/bandwidth measurements")
    b.add_argument("--no-quality", action="store_true",
                   help="with --source/--peers/--budgets: skip vcam's matte quality at the rate each run reached")
    b.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    b.add_argument("--config", metavar="FILE", help="base config for every run")

    sv = sub.add_parser("serve", help="HTTP API (rembg's /api/remove and more) and a web page at /")
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; any other needs --token)")
    sv.add_argument("--port", type=int, default=7000, help="port (default 7000)")
    sv.add_argument("--workers", type=int, default=0, metavar="N",
                    help="parallel inferences, one core each (default: all cores)")
    sv.add_argument("--queue", type=int, default=0, metavar="N",
                    help="requests that may wait beyond the workers before 503 (default 4 x workers)")
    sv.add_argument("--deadline", type=float, default=60.0, metavar="S", help="seconds a request may take (default 60)")
    sv.add_argument("--token", default=None, help="require Authorization: Bearer TOKEN on /api/* and /metrics "
                                                  "(or set VCAM_TOKEN)")
    sv.add_argument("--no-auth", action="store_true", help="allow a non-loopback --host without a token "
                                                          "(behind your own authenticating proxy)")
    sv.add_argument("--max-upload-mb", type=float, default=25.0, metavar="MB", help="largest upload (default 25)")
    sv.add_argument("--cors", metavar="ORIGIN", help="allow browser calls from ORIGIN (comma-separated); none by default")
    sv.add_argument("--preload", default="auto", metavar="MODEL", help="model loaded at start-up (default auto; '' none)")
    sv.add_argument("--runtime", choices=("auto", "onnxruntime", "openvino"), help="inference runtime (matting.runtime)")
    sv.add_argument("--precision", choices=("fp32", "bf16", "int8"), help="OpenVINO precision (matting.precision)")
    _config_args(sv)
    sub.add_parser("doctor", help="check v4l2loopback, cameras, GPU runtime, models and hotkeys; say how to fix")

    mo = sub.add_parser("models", help="list or fetch models")
    msub = mo.add_subparsers(dest="models_cmd")
    msub.add_parser("list", help="name, licence, size and whether it is cached")
    pl = msub.add_parser("pull", help="fetch models into the user cache")
    pl.add_argument("names", nargs="+", metavar="NAME", help="a model (see `vcam models list`), several, or 'all'")
    pl.add_argument("--force", action="store_true", help="fetch again even if cached")
    return p


def flags_to_layer(a: argparse.Namespace) -> dict:
    """The command-line layer of the config, as nested sections."""
    layer: dict[str, dict] = {s: {} for s in config_mod.SECTIONS}
    g = lambda name: getattr(a, name, None)  # noqa: E731
    if g("source") is not None:
        layer["capture"]["source"] = a.source
    if g("size") is not None:
        layer["capture"]["width"], layer["capture"]["height"] = a.size
    if g("fps") is not None:
        layer["capture"]["fps"] = a.fps
    layer["compositor"].update(look_keys(bg=g("bg")))
    layer["compositor"].update(look_keys(blur=g("blur")))  # after --bg: --blur's mode wins, the background stays
    if g("mode") is not None:
        layer["compositor"]["mode"] = a.mode
    if g("mirror"):
        layer["compositor"]["mirror"] = True
    for flag, key in (("model", "model"), ("model_path", "model_path"), ("input_size", "input_size"),
                      ("threads", "threads"), ("providers", "providers"), ("runtime", "runtime"),
                      ("precision", "precision")):
        if g(flag) is not None:
            layer["matting"][key] = getattr(a, flag)
    if g("model") is not None and a.command == "remove":  # --model names the stills model too
        layer["matting"]["still_model"] = a.model
    if g("input_size") is not None and a.command == "remove":  # an explicit size wins over the stills preset
        layer["matting"]["still_input_size"] = a.input_size
    if g("device") is not None:
        layer["output"]["device"] = a.device
    if g("preview"):
        layer["output"]["preview"] = True
    if g("record") is not None:
        layer["output"]["record"] = a.record
    if g("no_virtualcam"):
        layer["output"]["virtualcam"] = False
    if g("matting_hz") is not None and a.command == "run":
        layer["matting"]["max_hz"] = a.matting_hz
    if g("cpu_budget") is not None and a.command == "run":
        layer["run"]["cpu_budget"] = a.cpu_budget
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
    if g("max_pixels") is not None:
        layer["run"]["max_pixels"] = a.max_pixels
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


def check_json_target(path: str) -> None:
    """Refuse, before any work, a --stats-json that could not be written at the end (a run of an hour
    would otherwise end with "cannot write stats")."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise ConfigError(f"cannot write stats to {path}: it is a folder; give a file name, e.g. {p / 'stats.json'}")
    folder = p.parent
    if not folder.is_dir():
        raise ConfigError(f"cannot write stats to {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise ConfigError(f"cannot write stats to {path}: permission denied; choose another --stats-json")


def write_json(path: str, data: dict) -> None:
    try:
        Path(path).expanduser().write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    except OSError as e:
        raise ConfigError(f"cannot write stats to {path}: {e.strerror}") from None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help", "--version")):
        argv.insert(0, "run")
    parser = build_parser()
    a = parser.parse_args(argv)
    _setup_logging("info")
    if getattr(a, "log_level", None) != "debug":
        # OpenCV's FFmpeg backend prints the decoder's own complaints ("[mjpeg @ 0x…] No JPEG data
        # found") before vcam's one-line error about the same file; --log-level debug keeps them.
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        if "OPENCV_LOG_LEVEL" not in os.environ:  # and OpenCV's "[ WARN:0@1.0] … can't be used" lines
            import cv2.utils.logging as cv_log  # (cv2 is loaded by now: the variable alone comes too late)

            cv_log.setLogLevel(cv_log.LOG_LEVEL_ERROR)
    avoid_hugepage_stalls()
    dump_stacks_on_sigusr1()
    module, takes_cfg = SUBCOMMANDS[a.command]
    try:
        command = importlib.import_module(f"{__package__}.{module}")
        if not takes_cfg:
            return command.main(a)
        layer = flags_to_layer(a)
        if a.command == "demo":
            layer.setdefault("capture", {}).update(source="sample")
            layer.setdefault("output", {}).update(virtualcam=False)
        cfg = config_mod.load(a.config, layer)
        _setup_logging(cfg.run.log_level)
        imagefile.set_max_pixels(cfg.run.max_pixels)
        if cfg.run.stats_json and not a.print_config:
            check_json_target(cfg.run.stats_json)
        if a.print_config:
            print(config_mod.dump(cfg), end="")
            return 0
        return command.main(cfg, a)
    except VcamError as e:
        print(f"vcam: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:
        return 128 + (e.signum if isinstance(e, Terminated) else signal.SIGINT)
    except Exception as e:  # a bug: one line for the user, the traceback only when asked for
        if logging.getLogger("vcam").isEnabledFor(logging.DEBUG):
            raise
        print(f"vcam: internal error: {type(e).__name__}: {e} (rerun with --log-level debug for details, "
              f"and report it)", file=sys.stderr)
        return 1


def entry() -> None:
    """The console script (and ``python -m vcam``): :func:`main`, then exit.

    A stage's thread may still be inside a native call when the run ends: a model's inference that
    outlived the bounded join of ``stop()`` (an inference takes seconds on a very slow machine; 12 s
    under the VM test's emulation). Interpreter shutdown would end that thread mid-call, and the
    runtime's C++ can then abort the whole process ("FATAL: exception not rethrown", exit 134) after
    everything had been written and closed. So with such a thread left, end the process directly,
    with the exit code the run chose."""
    rc = main()
    stuck = [t for t in threading.enumerate()
             if t is not threading.main_thread() and t.is_alive() and t.name.startswith("vcam-")]
    if stuck:
        logging.getLogger("vcam").debug("exiting with %s still in a native call", ", ".join(t.name for t in stuck))
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    sys.exit(rc)
