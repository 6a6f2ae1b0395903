#!/usr/bin/env python3
"""One short GPU check (for a machine with an NVIDIA GPU): onnxruntime's providers, MODNet
and RVM ms per frame at 1080p through CUDA (IO binding, inputs and state on the device),
fp16 where the provider allows, TensorRT when present, and the live pipeline's fps at
1080p60 with the model on every frame.

    VCAM_CACHE_DIR=... python scripts/gpu_check.py [--seconds 10]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timeit(fn, n=50, warm=5):
    for _ in range(warm):
        fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return round(float(np.median(ts)) * 1e3, 2), round(float(np.percentile(ts, 95)) * 1e3, 2)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10)
    a = ap.parse_args()
    import onnxruntime as ort

    from vcam.models import store

    out = {"onnxruntime": ort.__version__, "providers": ort.get_available_providers()}
    try:
        out["gpu"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                                    capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception as e:
        out["gpu"] = f"nvidia-smi failed: {e}"
    print(json.dumps(out), flush=True)
    if "CUDAExecutionProvider" not in out["providers"]:
        print("no CUDA execution provider in this onnxruntime: install onnxruntime-gpu for this CUDA", flush=True)
        return 2
    results = {}
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    for prov in [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in out["providers"]]:
        provs = [prov, "CPUExecutionProvider"] if prov == "CUDAExecutionProvider" else \
            [(prov, {"trt_fp16_enable": True, "trt_engine_cache_enable": True, "trt_engine_cache_path": "/tmp/trt"}),
             "CUDAExecutionProvider", "CPUExecutionProvider"]
        # MODNet at the 1080p frame's 16:9 shape, short side 512 (multiples of 32).
        s = ort.InferenceSession(str(store.resolve("modnet", fetch=False)), so, providers=provs)
        for h, w in ((288, 512), (512, 896)):
            x = np.random.rand(1, 3, h, w).astype(np.float32)
            io = s.io_binding()
            xv = ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0)
            io.bind_ortvalue_input("input", xv)
            io.bind_output("output", "cuda")
            results[f"{prov} modnet {w}x{h} (io binding)"] = timeit(lambda: s.run_with_iobinding(io))
            results[f"{prov} modnet {w}x{h} (numpy in/out)"] = timeit(lambda: s.run(None, {"input": x}))
        # RVM at full 1080p, downsample 0.25, recurrent state kept on the GPU between frames.
        r = ort.InferenceSession(str(store.resolve("rvm", fetch=False)), so, providers=provs)
        src = ort.OrtValue.ortvalue_from_numpy(np.random.rand(1, 3, 1080, 1920).astype(np.float32), "cuda", 0)
        ratio = ort.OrtValue.ortvalue_from_numpy(np.array([0.25], np.float32), "cpu")
        rec = [ort.OrtValue.ortvalue_from_numpy(np.zeros((1, 1, 1, 1), np.float32), "cuda", 0) for _ in range(4)]
        names = [o.name for o in r.get_outputs()]

        def rvm_step():
            io = r.io_binding()
            io.bind_ortvalue_input("src", src)
            io.bind_ortvalue_input("downsample_ratio", ratio)
            for i in range(4):
                io.bind_ortvalue_input(f"r{i + 1}i", rec[i])
            for n in names:
                io.bind_output(n, "cuda")
            r.run_with_iobinding(io)
            outs = io.get_outputs()
            rec[:] = outs[2:]

        results[f"{prov} rvm 1920x1080 ds0.25 (io binding, state on GPU)"] = timeit(rvm_step)
        print(json.dumps(results), flush=True)
    # The live pipeline at 1080p60, model on every frame (matting.max_hz 0, one worker).
    cfg = ROOT / ".device-cfg.yaml"
    cfg.write_text("matting: {providers: 'CUDAExecutionProvider,CPUExecutionProvider', input_size: 512, workers: 1, threads: 4}\n"
                   "control: {socket: false, hotkeys: false, watch_config: false}\n")
    for label, extra in (("modnet-512", []), ("rvm", ["--model", "rvm"])):
        stats_path = Path("/tmp") / f"gpu-{label}.json"
        r = subprocess.run([sys.executable, "-m", "vcam", "run", "--source", "sample", "--no-virtualcam", "--size",
                            "1920x1080", "--fps", "60", "--seconds", str(a.seconds), "--config", str(cfg),
                            "--stats-json", str(stats_path), "--log-level", "warning", *extra],
                           capture_output=True, text=True, cwd=ROOT)
        if r.returncode == 0:
            st = json.loads(stats_path.read_text())
            print(json.dumps({"pipeline": label, **{k: st[k] for k in ("output_fps", "new_frames_fps", "matting_hz",
                                                                       "latency_ms", "stage_ms", "cpu_cores")}}), flush=True)
        else:
            print(f"pipeline {label} failed: {r.stderr.strip()[-400:]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
