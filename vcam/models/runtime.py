"""The inference runtimes behind one interface: onnxruntime (its providers, threads) and
OpenVINO (extra ``vcam[openvino]``, fp32 / bf16 / int8), with clear load errors.

Both give a session with onnxruntime's two calls, ``get_inputs()`` and ``run(None, feeds)``,
so a matter does not know which one it runs on. ``cpu_flags()`` says what the CPU offers
(bf16 needs AMX or avx512_bf16); which precision a machine uses is decided by
``vcam bench --auto`` after checking its mattes against fp32 (:mod:`vcam.models.precision`)."""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import ModelError
from .store import cache_dir

log = logging.getLogger(__name__)

AUTO_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def pick_providers(setting: str) -> list:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if setting.strip().lower() in ("", "auto"):
        chosen = [p for p in AUTO_ORDER if p in available]
    else:
        chosen = []
        for p in (x.strip() for x in setting.split(",") if x.strip()):
            full = p if p.endswith("ExecutionProvider") else p[:1].upper() + p[1:] + "ExecutionProvider"
            full = {"CudaExecutionProvider": "CUDAExecutionProvider",
                    "TensorRTExecutionProvider": "TensorrtExecutionProvider",
                    "TensorrtExecutionProvider": "TensorrtExecutionProvider"}.get(full, full)
            if full not in available:
                raise ModelError(f"execution provider {p} is not available here (available: {', '.join(available)}); "
                                 f"fix matting.providers or install onnxruntime-gpu")
            chosen.append(full)
    out = []
    for p in chosen:
        if p == "TensorrtExecutionProvider":
            trt_cache = cache_dir().parent / "trt"
            trt_cache.mkdir(parents=True, exist_ok=True)
            out.append((p, {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(trt_cache),
                            "trt_fp16_enable": True}))
        else:
            out.append(p)
    if "CPUExecutionProvider" not in chosen:
        out.append("CPUExecutionProvider")
    return out


RUNTIMES = ("auto", "onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16", "int8")


@lru_cache(maxsize=1)
def _cpuinfo() -> dict:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    info: dict = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break
            k, _, v = line.partition(":")
            info[k.strip()] = v.strip()
    except OSError:
        pass
    return info


def cpu_flags() -> frozenset:
    return frozenset(_cpuinfo().get("flags", "").split())


def cpu_model() -> str:
    import platform

    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def has_bf16() -> bool:
    """The CPU computes in bf16 natively (AMX tiles or AVX-512 BF16); elsewhere OpenVINO would emulate it."""
    f = cpu_flags()
    return "amx_bf16" in f or "avx512_bf16" in f


def have_openvino() -> bool:
    return importlib.util.find_spec("openvino") is not None


def openvino():
    """``import openvino``, without its usage telemetry. OpenVINO's package sends an event to Google
    Analytics on every import (and NNCF on every quantisation) unless the user opted out, writing a
    client id under ``~/intel``; vcam never asked its users for that. Only a recorded opt-in
    (``opt_in_out --opt_in``) is honoured; no record counts as declined, which is what the library
    does in CI."""
    _decline_telemetry()
    import openvino as ov

    return ov


def nncf():
    """``import nncf``, without its telemetry (see :func:`openvino`)."""
    _decline_telemetry()
    import nncf as n

    return n


_TELEMETRY = threading.Lock()


def _decline_telemetry() -> None:
    with _TELEMETRY:
        try:
            from openvino_telemetry.utils import opt_in_checker as oc
        except ImportError:
            return
        if getattr(oc.OptInChecker.check, "_vcam", False):
            return
        ask = oc.OptInChecker.check

        def check(self, *args, **kwargs):
            said = ask(self, *args, **kwargs)
            return said if said == oc.ConsentCheckResult.ACCEPTED else oc.ConsentCheckResult.DECLINED

        check._vcam = True
        oc.OptInChecker.check = check


def int8_path(path: Path) -> Path:
    """Where the NNCF-quantised copy of the model at ``path`` lives (made by ``vcam bench --auto``)."""
    return cache_dir() / f"{Path(path).stem}.int8.xml"


_UNCACHED = threading.local()


@contextlib.contextmanager
def uncached_compiles():
    """OpenVINO models compiled inside (on this thread) skip the compiled-model cache: the runtime check's
    candidates (each precision, one thread) would leave a blob on disk that no run uses."""
    before = getattr(_UNCACHED, "on", False)
    _UNCACHED.on = True
    try:
        yield
    finally:
        _UNCACHED.on = before


def compile_cache() -> Path | None:
    """Where OpenVINO keeps compiled models (``CACHE_DIR``): ``openvino/`` beside the model store, or
    ``VCAM_OV_CACHE`` where that names a folder; ``None`` inside :func:`uncached_compiles`, with
    ``VCAM_OV_CACHE=0``, or where the folder is not writable. A compiled model loads from it in about a third of the
    time: IS-Net int8 0.8 s → 0.25 s on an AVX2 EPYC, half a second off every ``vcam remove`` start.
    OpenVINO keys each blob on the model, the device, its settings and its own version, and compiles
    afresh over a blob that does not load (a corrupt one is rewritten)."""
    where = os.environ.get("VCAM_OV_CACHE", "").strip()
    if getattr(_UNCACHED, "on", False) or where == "0":
        return None
    d = Path(where).expanduser() if where not in ("", "1") else cache_dir().parent / "openvino"
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return d if os.access(d, os.W_OK) else None


class _Input:
    def __init__(self, name: str):
        self.name = name


_OV_NUMPY = threading.Lock()
_ov_numpy_ready = False


def _ov_numpy() -> None:
    """Make OpenVINO's binding set up its numpy API once, on one thread. Two threads whose first
    ``infer`` starts at the same moment can otherwise deadlock inside it, for good: one holds a C++
    static's init guard and waits for the GIL, the other holds the GIL and waits for the guard
    (seen as a ``vcam remove`` folder job hanging in CI; reproduced here in 2 of 30 fresh processes,
    0 of 90 with this)."""
    global _ov_numpy_ready
    if _ov_numpy_ready:
        return
    with _OV_NUMPY:
        if not _ov_numpy_ready:
            ov = openvino()

            t = ov.Tensor(np.zeros((1, 1), np.float32))
            t.data[:] = np.ones((1, 1), np.float32)  # the path InferRequest.infer takes with numpy inputs
            _ov_numpy_ready = True


class OpenVinoSession:
    """An OpenVINO compiled model with onnxruntime's ``get_inputs()`` / ``run(None, feeds)``.
    One infer request per calling thread (matting may run on several); outputs are copied,
    since OpenVINO reuses its output buffers on the next call.

    ``streams``: how many threads call at once. OpenVINO runs one request per stream at a time, so
    with a single stream two callers take turns: IS-Net with two 1-thread callers (``vcam remove``
    over a folder) used 1.0 core and 5.1 s a picture, with two streams 2.0 cores and 2.6 s.
    ``threads`` is each stream's."""

    def __init__(self, path: Path, *, threads: int, precision: str, name: str, streams: int = 1, outputs: int = 0):
        ov = openvino()

        core = ov.Core()
        model_file = path
        if precision == "int8":
            model_file = int8_path(path)
            if not model_file.exists():
                raise ModelError(f"no int8 copy of the {name} model is calibrated on this machine; run "
                                 f"`vcam bench --auto` (it calibrates and checks it) or set matting.precision: fp32")
        config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32", "PERFORMANCE_HINT": "LATENCY",
                  "ENABLE_CPU_PINNING": False}
        if streams > 1:
            config["NUM_STREAMS"] = int(streams)
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads) * max(1, int(streams))
        if (blobs := compile_cache()) is not None:
            config["CACHE_DIR"] = str(blobs)
        try:
            model = core.read_model(str(model_file))
            # Only the outputs the matter reads: IS-Net's graph also returns five side outputs at 1024² and six
            # feature maps (about 100 MB a picture), which OpenVINO materialises and this binding copied.
            # Without them, medians of 5 on an AVX2 EPYC: 1.90 s against 2.41 a picture on one stream, 1.80 against
            # 2.00 on two. onnxruntime gains nothing from the same pruning.
            for r in list(model.get_results())[outputs:] if outputs else ():
                model.remove_result(r)
            self.compiled = core.compile_model(model, "CPU", config)
        except Exception as e:  # OpenVINO raises RuntimeError with pages of text
            first = str(e).strip().splitlines()[0][:140] if str(e).strip() else type(e).__name__
            raise ModelError(f"OpenVINO cannot load {name} model {model_file} ({first}); run "
                             f"`vcam models pull {name} --force` or set matting.runtime: onnxruntime") from None
        self._inputs = [_Input(p.get_any_name()) for p in self.compiled.inputs]
        self._local = threading.local()
        self.precision = precision
        _ov_numpy()  # before any thread's first request

    def get_inputs(self):
        return self._inputs

    def get_providers(self):
        return [f"OpenVINO-CPU-{self.precision}"]

    def run(self, output_names, feeds: dict):
        req = getattr(self._local, "req", None)
        if req is None:
            req = self._local.req = self.compiled.create_infer_request()
        res = req.infer(feeds)
        return [np.array(res[o], copy=True) for o in self.compiled.outputs]


def make_session(path: Path, *, providers: str = "auto", threads: int = 2, spin: bool = False, name: str = "model",
                 runtime: str = "onnxruntime", precision: str = "fp32", streams: int = 1, outputs: int = 0):
    """An inference session on ``runtime`` ('auto' is onnxruntime: a machine moves to OpenVINO
    through ``vcam bench --auto``, which checks that its mattes agree with fp32 first).
    ``threads`` per inference; ``streams``: inferences that run at once (OpenVINO needs to know;
    an onnxruntime session runs concurrent calls as they come); ``outputs``: how many of the graph's
    outputs, first ones first, the caller reads (0: all); OpenVINO drops the others."""
    if runtime == "openvino":
        if not have_openvino():
            raise ModelError("matting.runtime is openvino but OpenVINO is not installed; "
                             "pip install 'vcam[openvino]' or set matting.runtime: onnxruntime")
        return OpenVinoSession(path, threads=threads, precision=precision, name=name, streams=streams, outputs=outputs)
    if precision != "fp32":
        raise ModelError(f"precision {precision} needs the OpenVINO runtime; set matting.runtime: openvino "
                         f"(pip install 'vcam[openvino]') or matting.precision: fp32")
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    # Spinning threads wait for work at 100% CPU; in a pipeline that shares two
    # cores with capture and compositing they steal the cycles the other stages need.
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    try:
        sess = ort.InferenceSession(str(path), so, providers=pick_providers(providers))
    except ModelError:
        raise
    except Exception as e:  # onnxruntime raises its own types for a bad file
        first = str(e).strip().splitlines()[0][:140] if str(e).strip() else type(e).__name__
        raise ModelError(f"cannot load {name} model {path} ({first}): it is corrupt or not ONNX; "
                         f"run `vcam models pull {name} --force` or fix --model-path") from None
    log.debug("%s on %s", name, sess.get_providers())
    return sess
