"""The inference runtime: onnxruntime sessions, provider selection, threads, and clear load errors."""
from __future__ import annotations

import logging
from pathlib import Path

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


def make_session(path: Path, *, providers: str = "auto", threads: int = 2, spin: bool = False, name: str = "model"):
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
