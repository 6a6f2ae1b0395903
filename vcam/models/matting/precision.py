"""Which runtime and precision a machine should run a model at: each candidate (onnxruntime
fp32, OpenVINO fp32 / bf16 / int8) is timed on one thread and its mattes are compared with
onnxruntime fp32 on check frames; only a candidate whose mattes agree is eligible, and the
cheapest one in CPU per matte wins. ``vcam bench --auto`` runs this.

Check and calibration frames are the shipped sample (the astronaut portrait at the sample
clip's poses, mirrored, darker and brighter) plus, when given, the user's own pictures or
video (``--calibrate``): never evaluation data.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np

from ... import sample
from ...errors import ModelError
from .. import runtime
from .base import MATTERS, OnnxMatter

log = logging.getLogger(__name__)

MIN_IOU = 0.995  # the worst check frame's IoU of alpha > 0.5 with fp32
MAX_MAE = 0.01  # mean |alpha - alpha_fp32| over the check frames


@dataclasses.dataclass
class Candidate:
    runtime: str
    precision: str
    ms: float = 0.0  # CPU ms per matte, one thread
    iou: float = 1.0  # worst frame
    mae: float = 0.0  # mean
    ok: bool = True
    why: str = ""

    @property
    def label(self) -> str:
        return f"{self.runtime} {self.precision}"


def shipped_frames(width: int = 1280, height: int = 720, n: int = 8) -> list[np.ndarray]:
    """The sample clip's poses, each also mirrored, darker and brighter: ``[H, W, 3] u8`` BGR."""
    out = []
    for i, t in enumerate(np.linspace(0, sample.PERIOD_S, n, endpoint=False)):
        f = sample.render(float(t), width, height, rng=np.random.default_rng(i))
        out.append(f)
        variant = i % 3
        if variant == 0:
            out.append(np.ascontiguousarray(f[:, ::-1]))
        elif variant == 1:
            out.append((f * 0.55).astype(np.uint8))
        else:
            out.append(np.clip(f.astype(np.int16) + 50, 0, 255).astype(np.uint8))
    return out


def user_frames(path: str, limit: int = 40) -> list[np.ndarray]:
    """Up to ``limit`` frames from the user's folder of pictures or video file."""
    import cv2

    from ...core.imagefile import decode

    p = Path(path).expanduser()
    frames: list[np.ndarray] = []
    if p.is_dir():
        for f in sorted(p.iterdir())[: limit * 2]:
            if f.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp", ".bmp"):
                frames.append(decode(f.read_bytes(), str(f)))
            if len(frames) >= limit:
                break
    elif p.is_file():
        cap = cv2.VideoCapture(str(p))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or limit
        step = max(1, n // limit)
        i = 0
        while len(frames) < limit:
            ok, f = cap.read()
            if not ok:
                break
            if i % step == 0:
                frames.append(f)
            i += 1
        cap.release()
    if not frames:
        raise ModelError(f"--calibrate {path}: no pictures or video frames there; give a folder of photos "
                         f"of your usual scene or a short video of it")
    return frames


class _Recorder:
    """Stands in for a session to capture what the matter feeds its model (the int8 calibration set)."""

    def __init__(self, session):
        self.session, self.feeds = session, []

    def get_inputs(self):
        return self.session.get_inputs()

    def run(self, names, feeds):
        self.feeds.append({k: np.array(v, copy=True) for k, v in feeds.items()})
        return self.session.run(names, feeds)


def calibrate_int8(matter: OnnxMatter, frames: list[np.ndarray]) -> Path:
    """NNCF post-training quantisation of ``matter``'s model on ``frames``; saved next to the
    cached model (:func:`runtime.int8_path`)."""
    try:
        import nncf
        import openvino as ov
    except ImportError:
        raise ModelError("int8 needs NNCF and OpenVINO: pip install 'vcam[openvino]'") from None
    rec = _Recorder(matter.session)
    matter.session = rec
    try:
        for f in frames:
            matter.reset()
            matter.infer(f)
    finally:
        matter.session = rec.session
    model = ov.Core().read_model(str(matter.path))
    names = [i.name for i in rec.get_inputs()]
    data = [f[names[0]] if len(f) == 1 else f for f in rec.feeds]
    logging.getLogger("nncf").setLevel(logging.ERROR)
    q = nncf.quantize(model, nncf.Dataset(data), preset=nncf.QuantizationPreset.MIXED,
                      subset_size=len(data), fast_bias_correction=True, ignored_scope=_float_ends(model))
    out = runtime.int8_path(matter.path)
    out.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(q, str(out))
    log.info("int8 %s calibrated on %d frames: %s", matter.name, len(data), out)
    return out


def _float_ends(model):
    """NNCF's scope to leave in float: the first convolution (it reads the picture itself, whose fine
    edges 8 bits of scaled pixels lose) and the last (it writes alpha). In one run on MODNet at 224
    with the shipped check frames, everything quantised gave worst IoU 0.9947 (below :data:`MIN_IOU`)
    at 33 ms a matte; these two in float 0.9978 at 29 ms, against onnxruntime fp32's 78 ms (1 thread)."""
    import nncf

    convs = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"]
    if len(convs) < 3:
        return None
    return nncf.IgnoredScope(names=[convs[0], convs[-1]], validate=False)


def _mattes(matter, frames) -> tuple[list[np.ndarray], float]:
    matter.reset()
    matter.infer(frames[0])  # warm-up: first-call allocations and kernel selection
    out = []
    t = time.thread_time()
    for f in frames:
        matter.reset()
        out.append(matter.infer(f).copy())
    return out, (time.thread_time() - t) / len(frames) * 1e3


def agreement(ref: list[np.ndarray], got: list[np.ndarray]) -> tuple[float, float]:
    """(worst IoU of alpha > 0.5, mean |delta alpha|)."""
    ious, maes = [], []
    for a, b in zip(ref, got):
        A, B = a > 0.5, b > 0.5
        union = np.count_nonzero(A | B)
        ious.append(np.count_nonzero(A & B) / union if union else 1.0)
        maes.append(float(np.abs(a - b).mean()))
    return float(min(ious)), float(np.mean(maes))


def judge(c: Candidate, ref: list[np.ndarray], got: list[np.ndarray]) -> None:
    """Set ``c``'s agreement with the fp32 mattes ``ref``; it stays eligible only at worst-frame
    IoU ≥ :data:`MIN_IOU` and mean |Δα| ≤ :data:`MAX_MAE`."""
    c.iou, c.mae = agreement(ref, got)
    if c.iou < MIN_IOU or c.mae > MAX_MAE:
        c.ok = False
        c.why = (f"its mattes differ from fp32 (worst IoU {c.iou:.4f} < {MIN_IOU} or mean |Δα| "
                 f"{c.mae:.4f} > {MAX_MAE})")
        log.info("%s skipped: %s", c.label, c.why)


def choose(cfg, *, calibrate: str | None = None, check_frames: list[np.ndarray] | None = None) -> tuple[Candidate, list[Candidate]]:
    """Time and check every runtime/precision this machine has for ``cfg.model`` (one thread each,
    as the live workers run); returns the winner (the cheapest that agrees) and all candidates."""
    cls = MATTERS.get(cfg.model)
    if cls is None or not issubclass(cls, OnnxMatter):
        return Candidate("onnxruntime", "fp32", why=f"{cfg.model} is not an ONNX model"), []
    frames = check_frames if check_frames is not None else shipped_frames()
    if calibrate:
        frames = frames + user_frames(calibrate)
    base = dataclasses.replace(cfg, threads=1, runtime="onnxruntime", precision="fp32")
    ref_matter = cls(base)
    ref, ms = _mattes(ref_matter, frames)
    cands = [Candidate("onnxruntime", "fp32", ms=ms, why="the reference")]
    if runtime.have_openvino():
        wanted = ["fp32"]
        if runtime.has_bf16():
            wanted.append("bf16")
        else:
            cands.append(Candidate("openvino", "bf16", ok=False, why="this CPU has no AMX or avx512_bf16"))
        wanted.append("int8")
        for prec in wanted:
            c = Candidate("openvino", prec)
            try:
                if prec == "int8":
                    calibrate_int8(ref_matter, frames)
                m = cls(dataclasses.replace(base, runtime="openvino", precision=prec))
                got, c.ms = _mattes(m, frames)
                m.close()
            except ModelError as e:
                c.ok, c.why = False, str(e)
                cands.append(c)
                continue
            judge(c, ref, got)
            cands.append(c)
    else:
        cands.append(Candidate("openvino", "fp32", ok=False, why="OpenVINO is not installed (pip install 'vcam[openvino]')"))
    ref_matter.close()
    best = min((c for c in cands if c.ok), key=lambda c: c.ms)
    if best.why != "the reference":
        best.why = f"{cands[0].ms / best.ms:.2f}x less CPU per matte than onnxruntime fp32, mattes agree"
    return best, cands


# --- stills models: checked once per machine, on first use ----------------------------------------

RECORD = "runtime-choice.json"


def _signature() -> dict:
    """What a recorded choice holds for: this CPU and these runtime versions."""
    import onnxruntime

    sig = {"cpu": runtime.cpu_model(), "bf16": runtime.has_bf16(), "onnxruntime": onnxruntime.__version__}
    if runtime.have_openvino():
        import openvino

        sig["openvino"] = openvino.__version__
    return sig


def _record_path() -> Path:
    return runtime.cache_dir() / RECORD


def _read_record() -> dict:
    import json

    try:
        data = json.loads(_record_path().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: checked again and rewritten


def recorded(model: str) -> Candidate | None:
    """The runtime/precision checked for ``model`` on this machine, if it still holds."""
    rec = _read_record().get(model)
    if not isinstance(rec, dict) or rec.get("signature") != _signature():
        return None
    try:
        return Candidate(str(rec["runtime"]), str(rec["precision"]), ms=float(rec.get("ms", 0)),
                         why=str(rec.get("why", "")))
    except KeyError:
        return None


def check_still_model(cfg, frames: list[np.ndarray] | None = None) -> tuple[Candidate, list[Candidate]]:
    """Time onnxruntime fp32 and OpenVINO fp32 / bf16 for the stills model ``cfg.model`` at the
    stills' own thread count (wall time per picture, one warm-up), check each against
    onnxruntime fp32 on shipped pictures (the product and full-body samples), and record the
    fastest that agrees. int8 is not tried: its calibration is MODNet's."""
    import json

    cls = MATTERS[cfg.model]
    frames = frames or [sample.product()[0], sample.full_body()[0]]
    base = dataclasses.replace(cfg, runtime="onnxruntime", precision="fp32")
    wanted = [("onnxruntime", "fp32"), ("openvino", "fp32")] + ([("openvino", "bf16")] if runtime.has_bf16() else [])
    ref, cands = None, []
    for rt, prec in wanted:
        c = Candidate(rt, prec)
        try:
            m = cls(dataclasses.replace(base, runtime=rt, precision=prec))
            got = [m.infer(frames[0]).copy()]  # also the warm-up
            t = time.perf_counter()
            got += [m.infer(f).copy() for f in frames[1:]]
            c.ms = (time.perf_counter() - t) / max(1, len(frames) - 1) * 1e3
            m.close()
        except ModelError as e:
            if ref is None:
                raise
            c.ok, c.why = False, str(e)
            cands.append(c)
            continue
        if ref is None:
            ref, c.why = got, "the reference"
        else:
            judge(c, ref, got)
        cands.append(c)
    best = min((c for c in cands if c.ok), key=lambda c: c.ms)
    if best is not cands[0]:
        best.why = f"{cands[0].ms / best.ms:.2f}x faster than onnxruntime fp32, mattes agree (worst IoU {best.iou:.4f})"
    data = _read_record()
    data[cfg.model] = {"runtime": best.runtime, "precision": best.precision, "ms": round(best.ms, 1), "why": best.why,
                       "signature": _signature(),
                       "candidates": [dataclasses.asdict(c) for c in cands]}
    try:
        path = _record_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(path)
    except OSError as e:
        log.warning("cannot record the runtime choice in %s (%s): it is checked again next time", _record_path(), e)
    return best, cands


def still_runtime(cfg) -> tuple[str, str]:
    """The runtime and precision a stills model (IS-Net) runs at here: onnxruntime where
    the user chose it, where OpenVINO is missing, or on a GPU; otherwise the machine's checked
    choice, made once (:func:`check_still_model`, about 15 s) and kept in the model cache."""
    if cfg.runtime == "onnxruntime" or not runtime.have_openvino():
        return "onnxruntime", "fp32"
    first = runtime.pick_providers(cfg.providers)[0]
    if (first if isinstance(first, str) else first[0]) != "CPUExecutionProvider":
        return "onnxruntime", "fp32"  # a GPU provider beats any CPU runtime
    rec = recorded(cfg.model)
    if rec is None:
        log.warning("vcam: choosing %s's runtime for this CPU, once (onnxruntime against OpenVINO fp32/bf16, "
                    "about 15 s) ...", cfg.model)
        rec, _ = check_still_model(cfg)
        log.warning("vcam: %s runs on %s (%s)", cfg.model, rec.label, rec.why)
    return rec.runtime, rec.precision
