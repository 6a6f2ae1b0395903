"""Which runtime and precision a machine should run a model at: each candidate (onnxruntime
fp32, OpenVINO fp32 / bf16 / int8) is timed on one thread and its mattes are compared with
onnxruntime fp32 on check frames; only a candidate whose mattes agree is eligible, and the
cheapest one in CPU per matte wins. ``vcam bench --auto`` runs this.

Calibration frames are the shipped sample (the astronaut portrait at the sample clip's poses,
mirrored, darker and brighter), generated full-body pictures (:func:`calibration_frames`) and,
when given, the user's own pictures or video (``--calibrate``): never evaluation data. The check
adds shipped pictures calibration never sees, with their true masks (:func:`truth_frames`), so
int8 must hold beyond the frames it was fitted to.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import logging
import os
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
    truth_loss: float = 0.0  # mean IoU with true masks below fp32's (see truth_loss)
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


CALIBRATION_BODIES = (10, 11, 12, 13)  # full-body seeds int8 is calibrated on; never those of truth_frames


def calibration_frames() -> list[np.ndarray]:
    """What int8 is calibrated on: :func:`shipped_frames` (head and shoulders) and generated full-body
    pictures in other poses than :func:`truth_frames`' (each also mirrored). On the head-and-shoulders
    frames alone, an int8 MODNet never saw a whole body's activations: on the unseen full-body poses it
    lost 0.041 IoU against the truth (one pose 0.912 → 0.714; AVX2-only AMD EPYC), and it passed at
    −0.007 with these four poses added, at the same speed (78-80 ms a matte against onnxruntime's 143)."""
    out = []
    for seed in CALIBRATION_BODIES:
        img, _ = sample.full_body(seed=seed)
        out += [img, np.ascontiguousarray(img[:, ::-1])]
    return shipped_frames() + out


def truth_frames() -> list[tuple[np.ndarray, np.ndarray]]:
    """Shipped pictures calibration never sees, with their true masks: the full-body picture in three
    poses, each also mirrored. ``[(BGR u8, mask u8 0/255)]``."""
    out = []
    for seed in (0, 1, 2):
        img, mask = sample.full_body(seed=seed)
        out += [(img, mask), (np.ascontiguousarray(img[:, ::-1]), np.ascontiguousarray(mask[:, ::-1]))]
    return out


def truth_iou(alpha: np.ndarray, mask: np.ndarray) -> float:
    """IoU of ``alpha > 0.5`` with a true mask (resized to the matte)."""
    import cv2

    t = cv2.resize(mask, (alpha.shape[1], alpha.shape[0]), interpolation=cv2.INTER_AREA) > 127
    a = alpha > 0.5
    union = np.count_nonzero(a | t)
    return np.count_nonzero(a & t) / union if union else 1.0


MAX_TRUTH_LOSS = 0.01  # mean IoU against the true masks of :func:`truth_frames`, below fp32's


def truth_loss(ref: list[np.ndarray], got: list[np.ndarray], truths: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """How much lower ``got``'s mean IoU with the truth is than ``ref``'s (fp32), over the pictures fp32
    itself gets right (IoU ≥ 0.9; where fp32 fails, a difference says nothing). Agreement with fp32 on
    the frames int8 was calibrated on does not show this: an int8 MODNet that agreed there at IoU 0.998
    lost 0.05 here (0.22 on one pose), and the small person of a wide shot with it."""
    return _loss(truth_scores(ref, got, truths))


READS_RIGHT = 0.9  # fp32's IoU with the true mask at which it reads a picture right


def truth_scores(ref: list[np.ndarray], got: list[np.ndarray],
                 truths: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[float, float]]:
    """``(fp32's, the candidate's)`` IoU with the true mask, per picture."""
    return [(truth_iou(r, m), truth_iou(g, m)) for r, g, (_, m) in zip(ref, got, truths)]


def _loss(scores: list[tuple[float, float]]) -> float:
    pairs = [(r, g) for r, g in scores if r >= READS_RIGHT]
    return float(np.mean([r - g for r, g in pairs])) if pairs else 0.0


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
        nncf, ov = runtime.nncf(), runtime.openvino()
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
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # NNCF's progress bars
        q = nncf.quantize(model, nncf.Dataset(data), preset=nncf.QuantizationPreset.MIXED,
                          subset_size=len(data), fast_bias_correction=True, ignored_scope=_float_ends(model))
    out = runtime.int8_path(matter.path)
    out.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(q, str(out))
    log.debug("int8 %s calibrated on %d frames: %s", matter.name, len(data), out)
    return out


def _float_ends(model):
    """NNCF's scope to leave in float: the first convolution (it reads the picture itself, whose fine
    edges 8 bits of scaled pixels lose) and the last (it writes alpha). In one run on MODNet at 224
    with the shipped check frames, everything quantised gave worst IoU 0.9947 (below :data:`MIN_IOU`)
    at 33 ms a matte; these two in float 0.9978 at 29 ms, against onnxruntime fp32's 78 ms (1 thread)."""
    nncf = runtime.nncf()
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


def _uncached(fn):
    """The runtime check compiles each candidate once, on one thread: none of them goes to OpenVINO's
    compiled-model cache (:func:`runtime.compile_cache`), which keeps the models that runs load."""
    @functools.wraps(fn)
    def check(*args, **kwargs):
        with runtime.uncached_compiles():
            return fn(*args, **kwargs)
    return check


@_uncached
def choose(cfg, *, calibrate: str | None = None, check_frames: list[np.ndarray] | None = None) -> tuple[Candidate, list[Candidate]]:
    """Time and check every runtime/precision this machine has for ``cfg.model`` (one thread each,
    as the live workers run); returns the winner (the cheapest that agrees) and all candidates."""
    cls = MATTERS.get(cfg.model)
    if cls is None or not issubclass(cls, OnnxMatter):
        return Candidate("onnxruntime", "fp32", why=f"{cfg.model} is not an ONNX model"), []
    frames = shipped_frames()  # the agreement check's
    calib = calibration_frames()  # int8's, which add full bodies
    if calibrate:
        mine = user_frames(calibrate)
        frames, calib = frames + mine, calib + mine
    check = check_frames if check_frames is not None else frames
    truths = truth_frames()  # and pictures calibration did not see, against their true masks
    check = check + [img for img, _ in truths]
    n = len(check) - len(truths)
    base = dataclasses.replace(cfg, threads=1, runtime="onnxruntime", precision="fp32")
    ref_matter = cls(base)
    ref, ms = _mattes(ref_matter, check)
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
                    calibrate_int8(ref_matter, calib)
                m = cls(dataclasses.replace(base, runtime="openvino", precision=prec))
                got, c.ms = _mattes(m, check)
                m.close()
            except ModelError as e:
                c.ok, c.why = False, str(e)
                cands.append(c)
                continue
            judge(c, ref[:n], got[:n])
            c.truth_loss = loss = truth_loss(ref[n:], got[n:], truths)
            if c.ok and loss > MAX_TRUTH_LOSS:
                c.ok = False
                c.why = (f"on pictures it was not calibrated on, its masks are further from the truth than "
                         f"fp32's (mean IoU {loss:.3f} lower, more than {MAX_TRUTH_LOSS})")
                log.info("%s skipped: %s", c.label, c.why)
            cands.append(c)
    else:
        cands.append(Candidate("openvino", "fp32", ok=False, why="OpenVINO is not installed (pip install 'vcam[openvino]')"))
    ref_matter.close()
    best = min((c for c in cands if c.ok), key=lambda c: c.ms)
    if best.why != "the reference":
        best.why = f"{cands[0].ms / best.ms:.2f}x less CPU per matte than onnxruntime fp32, mattes agree"
    return best, cands


# --- checked once per machine, on first use, and recorded --------------------------------------

RECORD = "runtime-choice.json"
CHECK_VERSION = 5  # a choice recorded by an older check is made again (2: true masks of unseen pictures; 3: int8
# IS-Net; 4: MODNet checked at the live input size, whichever path asks first; 5: MODNet's int8 calibrated on
# full bodies too)
CHECKED = ("modnet", "isnet")  # the models whose runtime `matting.runtime: auto` chooses per machine


def _signature(path: Path | None = None) -> dict:
    """What a recorded choice holds for: this CPU, these runtime versions and this model file."""
    import onnxruntime

    sig = {"check": CHECK_VERSION, "cpu": runtime.cpu_model(), "bf16": runtime.has_bf16(), "onnxruntime": onnxruntime.__version__}
    if runtime.have_openvino():
        sig["openvino"] = runtime.openvino().__version__
    if path is not None:
        try:
            sig["model"] = f"{Path(path).resolve()}:{Path(path).stat().st_size}"
        except OSError:
            sig["model"] = str(path)
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


def _write_record(model: str, path: Path, best: Candidate, cands: list[Candidate], threads: int = 1) -> None:
    import json

    data = _read_record()
    data[model] = {"runtime": best.runtime, "precision": best.precision, "ms": round(best.ms, 1), "why": best.why,
                   "threads": int(threads), "signature": _signature(path),
                   "candidates": [dataclasses.asdict(c) for c in cands]}
    try:
        rec = _record_path()
        rec.parent.mkdir(parents=True, exist_ok=True)
        tmp = rec.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(rec)
    except OSError as e:
        log.warning("cannot record the runtime choice in %s (%s): it is checked again next time", _record_path(), e)


def _record_of(model: str, path: Path | None) -> dict | None:
    """``model``'s recorded check, where it holds for this machine, these versions and the file at ``path``."""
    rec = _read_record().get(model)
    return rec if isinstance(rec, dict) and rec.get("signature") == _signature(path) else None


def recorded(model: str, path: Path | None = None, *, int8: bool = True) -> Candidate | None:
    """The runtime/precision checked for ``model`` (the file at ``path``) on this machine, if it
    still holds; with ``int8=False`` the cheapest agreeing candidate that is not int8."""
    rec = _record_of(model, path)
    if rec is None:
        return None
    try:
        best = Candidate(str(rec["runtime"]), str(rec["precision"]), ms=float(rec.get("ms", 0)),
                         why=str(rec.get("why", "")))
        if best.precision == "int8" and not int8:
            cands = [Candidate(**c) for c in rec.get("candidates", [])]
            best = min((c for c in cands if c.ok and c.precision != "int8"), key=lambda c: c.ms)
    except (KeyError, TypeError, ValueError):
        return None
    if best.precision == "int8" and path is not None and not runtime.int8_path(path).exists():
        return None  # the calibrated copy is gone: checked (and calibrated) again
    return best


def check_live_model(cfg, *, calibrate: str | None = None) -> tuple[Candidate, list[Candidate]]:
    """:func:`choose` for ``cfg.model`` (onnxruntime, OpenVINO fp32 / bf16 / int8), recorded."""
    from .. import store

    best, cands = choose(cfg, calibrate=calibrate)
    if cands:
        _write_record(cfg.model, store.resolve(cfg.model, cfg.model_path), best, cands)
    return best, cands


def still_check_frames() -> list[tuple[np.ndarray, np.ndarray]]:
    """The stills check's pictures, with their true masks: the product photo and the full-body picture in
    three poses (one mirrored). None of them is in :func:`shipped_frames`, which int8 is calibrated on."""
    out = [sample.product(), sample.full_body(seed=0)]
    img, mask = sample.full_body(seed=1)
    out.append((np.ascontiguousarray(img[:, ::-1]), np.ascontiguousarray(mask[:, ::-1])))
    return out + [sample.full_body(seed=2)]


def judge_on_truth(c: Candidate, ref: list[np.ndarray], got: list[np.ndarray],
                   truths: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """:func:`judge` on the pictures fp32 reads right (IoU ≥ 0.9 with the true mask), and on each of
    the others ``c`` may not be further from the truth than fp32 by more than :data:`MAX_TRUTH_LOSS`:
    where fp32 misreads a picture, agreeing with it means agreeing with its mistake (int8 IS-Net took
    the generated full-body picture at IoU 0.934 with the truth where fp32 took it at 0.876, and so
    "disagreed" at 0.936). Then :func:`truth_loss` over them all."""
    scores = truth_scores(ref, got, truths)
    right = [i for i, (r, _) in enumerate(scores) if r >= READS_RIGHT]
    judge(c, [ref[i] for i in right], [got[i] for i in right])
    worse = [r - g for r, g in scores if r < READS_RIGHT and r - g > MAX_TRUTH_LOSS]
    c.truth_loss = loss = _loss(scores)
    if c.ok and (loss > MAX_TRUTH_LOSS or worse):
        c.ok = False
        c.why = (f"its masks of shipped pictures are further from the truth than fp32's (IoU "
                 f"{max([loss, *worse]):.3f} lower, more than {MAX_TRUTH_LOSS})")
        log.info("%s skipped: %s", c.label, c.why)


@_uncached
def check_still_model(cfg, frames: list[np.ndarray] | None = None) -> tuple[Candidate, list[Candidate]]:
    """Time onnxruntime fp32 and OpenVINO fp32 / bf16 / int8 for the stills model ``cfg.model`` at the
    stills' own thread count (wall time per picture, one warm-up; the fastest picture's, since the input
    size is fixed and a busy moment slows only some: the mean of one check on an AVX2-only AMD EPYC said
    1.41 s a picture on 2 threads where the same machine, idle, takes 0.98 s, and the record decides the
    object path's mirror reading for good), check each against onnxruntime fp32
    on shipped pictures (:func:`still_check_frames`; ``frames``: others, without truth), and record the
    fastest that agrees.

    With true masks, agreement counts where fp32 reads the picture right (:func:`judge_on_truth`).
    int8 (NNCF, calibrated on :func:`shipped_frames`, like MODNet's) must also keep its masks as close
    to the true ones as fp32's (:func:`truth_loss`) on those pictures, which it was not calibrated on.
    On IS-Net it halves the time a picture (2.30 → 1.08 s on an AVX2-only AMD EPYC, 2 threads), and on
    the development objects and soft-alpha photos its masks agree with fp32's at IoU ≥ 0.99 (one
    soft-alpha photo 0.93, where int8 is nearer the truth), calibrated on the eight poses alone or
    with their variants (16 pictures; twice the time for no gain); calibrating on product and
    full-body pictures instead agreed less (0.985-0.993). The whole check takes about two minutes, once."""
    from .. import store

    cls = MATTERS[cfg.model]
    truths = [] if frames else still_check_frames()
    frames = frames or [img for img, _ in truths]
    base = dataclasses.replace(cfg, runtime="onnxruntime", precision="fp32")
    wanted = [("onnxruntime", "fp32"), ("openvino", "fp32")] + ([("openvino", "bf16")] if runtime.has_bf16() else [])
    if runtime.have_openvino():
        wanted.append(("openvino", "int8"))
    ref, cands = None, []
    for rt, prec in wanted:
        c = Candidate(rt, prec)
        try:
            if prec == "int8":  # calibrated once, on every core, on the sample clip's eight poses
                calibrator = cls(dataclasses.replace(base, runtime="openvino", threads=os.cpu_count() or 1))
                try:
                    calibrate_int8(calibrator, shipped_frames()[::2])
                finally:
                    calibrator.close()
            m = cls(dataclasses.replace(base, runtime=rt, precision=prec))
            got, times = [m.infer(frames[0]).copy()], []  # also the warm-up
            for f in frames[1:]:
                t = time.perf_counter()
                got.append(m.infer(f).copy())
                times.append(time.perf_counter() - t)
            c.ms = min(times or [0.0]) * 1e3  # the least disturbed: the choice is recorded for good
            m.close()
        except ModelError as e:
            if ref is None:
                raise
            c.ok, c.why = False, str(e)
            cands.append(c)
            continue
        if ref is None:
            ref, c.why = got, "the reference"
        elif truths:
            judge_on_truth(c, ref, got, truths)
        else:
            judge(c, ref, got)
        cands.append(c)
    best = min((c for c in cands if c.ok), key=lambda c: c.ms)
    if best is not cands[0]:
        best.why = f"{cands[0].ms / best.ms:.2f}x faster than onnxruntime fp32, mattes agree (worst IoU {best.iou:.4f})"
    _write_record(cfg.model, store.resolve(cfg.model, cfg.model_path), best, cands,
                  threads=base.threads or os.cpu_count() or 1)
    return best, cands


def cpu_seconds(model: str, path: Path, rt: str, prec: str) -> float | None:
    """CPU seconds one inference of ``model`` (the file at ``path``) takes on ``rt``/``prec`` on this
    machine, from its recorded runtime check (wall time × the threads it ran on); None where no check
    of this machine, these versions and this file measured it."""
    rec = _record_of(model, path)
    if rec is None:
        return None
    try:
        ms = next(float(c["ms"]) for c in rec.get("candidates", [])
                  if c.get("runtime") == rt and c.get("precision") == prec and c.get("ok") and c.get("ms"))
        threads = int(rec.get("threads", 1))  # a record from before it was kept: the stills' one thread
    except (StopIteration, KeyError, TypeError, ValueError):
        return None
    return ms * max(1, threads) / 1e3


def _record_lock():
    """An exclusive lock on the record while one process checks: others wait, then read its result."""
    from .. import store

    return store.locked(_record_path().with_suffix(".lock"))


def resolve(cfg, *, int8: bool = True, check_size: int = 0) -> tuple[str, str]:
    """The runtime and precision ``cfg`` runs at. An explicit ``matting.runtime`` is kept; 'auto' is
    onnxruntime fp32 where OpenVINO is missing, on a GPU, or for a model not in :data:`CHECKED`;
    otherwise the machine's checked choice (:func:`check_live_model` for MODNet, with int8;
    :func:`check_still_model` for IS-Net), made once on first use and kept in the model cache.
    ``int8=False`` (MODNet's stills preset) takes the cheapest agreeing choice that is not int8.
    ``check_size``: the input size to check at, if not ``cfg.input_size``. MODNet's check is the live
    camera's (its int8 verdict and CPU per matte are for the live path), so stills, which run MODNet larger,
    check it at the live size. A record a stills run made at 320 px had int8 pass (truth loss −0.0007),
    where a check at the live 224 on the same machine and versions refused it (0.041 lower)."""
    if cfg.runtime != "auto":
        return cfg.runtime, cfg.precision
    if cfg.precision != "fp32":  # a precision only OpenVINO runs
        return "openvino", cfg.precision
    if cfg.model not in CHECKED or not runtime.have_openvino():
        return "onnxruntime", "fp32"
    first = runtime.pick_providers(cfg.providers)[0]
    if (first if isinstance(first, str) else first[0]) != "CPUExecutionProvider":
        return "onnxruntime", "fp32"  # a GPU provider beats any CPU runtime
    from .. import store

    path = store.resolve(cfg.model, cfg.model_path)
    rec = recorded(cfg.model, path, int8=int8)
    if rec is None:
        with _record_lock():
            rec = recorded(cfg.model, path, int8=int8)  # another process may have checked meanwhile
            if rec is None:
                live = cfg.model != "isnet"
                log.warning("choosing %s's runtime for this CPU, once: onnxruntime against OpenVINO "
                            "fp32/bf16/int8, about %s ...", cfg.model, "half a minute" if live else "two minutes")
                check = check_live_model if live else check_still_model
                rec, _ = check(dataclasses.replace(cfg, runtime="onnxruntime", precision="fp32",
                                                   input_size=check_size or cfg.input_size))
                log.warning("%s runs on %s (%s)", cfg.model, rec.label, rec.why)
                rec = recorded(cfg.model, path, int8=int8) or rec
    return rec.runtime, rec.precision
