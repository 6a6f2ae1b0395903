"""The peers' live recipes, re-implemented for side-by-side CPU benchmarks (labelled as such:
these are not the peers' own code, but what their pipelines do per frame).

    python scripts/peers.py lfbw|modnet-worker CLIP --seconds 30 --json out.json

* ``lfbw`` (Linux-Fake-Background-Webcam): MediaPipe's selfie model on every frame, in the
  frame loop; the mask upsampled and blended in float numpy; the background blurred at full
  resolution.
* ``modnet-worker`` (rembg / obs-backgroundremoval style): MODNet at 256 in one worker
  thread on a default onnxruntime session (all cores), the newest mask blended in float
  numpy over a full-resolution blur.

Both read the clip with OpenCV, paced to its frame rate, and drop what they produce (a null
output, as ``vcam bench`` does). The JSON has the same keys ``vcam bench`` prints.
"""
from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np


def _paced_frames(path: str, seconds: float):
    cap = cv2.VideoCapture(path)
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < seconds:
        ok, img = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            continue
        due = t0 + n / fps
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        n += 1
        yield img, time.monotonic()
    cap.release()


def _blend(img: np.ndarray, bg: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = cv2.resize(mask, (img.shape[1], img.shape[0]))[..., None].astype(np.float32)
    return (img.astype(np.float32) * m + bg.astype(np.float32) * (1 - m)).astype(np.uint8)


def _lite_session():
    from ai_edge_litert.interpreter import Interpreter

    from vcam.models import store

    it = Interpreter(model_path=str(store.resolve("lite")), num_threads=1)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    h, w = inp["shape"][1:3]

    def infer(img):
        x = cv2.resize(img, (w, h))[:, :, ::-1].astype(np.float32) / 255.0
        it.set_tensor(inp["index"], x[None])
        it.invoke()
        return it.get_tensor(out["index"])[0, :, :, 0].copy()
    return infer


def _modnet_session(size: int = 256):
    import onnxruntime as ort

    from vcam.models import store

    sess = ort.InferenceSession(str(store.resolve("modnet")), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def infer(img):
        H, W = img.shape[:2]
        s = size / min(H, W)
        h, w = int(round(H * s / 32)) * 32, int(round(W * s / 32)) * 32
        x = cv2.resize(img, (w, h))[:, :, ::-1].astype(np.float32) / 127.5 - 1
        return sess.run(None, {name: x.transpose(2, 0, 1)[None]})[0][0, 0]
    return infer


def run(recipe: str, clip: str, seconds: float) -> dict:
    cpu0, t0 = time.process_time(), time.monotonic()
    lat, sent, matted = [], 0, 0
    if recipe == "lfbw":
        infer = _lite_session()
        for img, t_cap in _paced_frames(clip, seconds):
            mask = infer(img)
            matted += 1
            bg = cv2.GaussianBlur(img, (21, 21), 0)  # LFBW: --background-blur 21 (a kernel size)
            _blend(img, bg, mask)
            sent += 1
            lat.append((time.monotonic() - t_cap) * 1e3)
    elif recipe == "modnet-worker":
        infer = _modnet_session()
        latest = {"img": None, "mask": None}
        stop = threading.Event()
        cond = threading.Condition()

        def worker():
            nonlocal matted
            while not stop.is_set():
                with cond:
                    cond.wait_for(lambda: latest["img"] is not None or stop.is_set(), timeout=0.5)
                    img, latest["img"] = latest["img"], None
                if img is not None:
                    latest["mask"] = infer(img)
                    matted += 1
        th = threading.Thread(target=worker, daemon=True)
        th.start()
        for img, t_cap in _paced_frames(clip, seconds):
            with cond:
                latest["img"] = img
                cond.notify()
            mask = latest["mask"]
            bg = cv2.GaussianBlur(img, (21, 21), 0)  # LFBW: --background-blur 21 (a kernel size)
            out = _blend(img, bg, mask) if mask is not None else bg
            del out
            sent += 1
            lat.append((time.monotonic() - t_cap) * 1e3)
        stop.set()
        with cond:
            cond.notify()
        th.join(2)
    else:
        raise SystemExit(f"unknown recipe {recipe}: lfbw or modnet-worker")
    wall = time.monotonic() - t0
    p = lambda q: round(float(np.percentile(lat, q)), 2) if lat else None  # noqa: E731
    return {"recipe": f"peer recipe: {recipe}", "output_fps": round(sent / wall, 2),
            "matting_hz": round(matted / wall, 2), "cpu_cores": round((time.process_time() - cpu0) / wall, 3),
            "latency_ms": {"p50": p(50), "p95": p(95)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipe", choices=("lfbw", "modnet-worker"))
    ap.add_argument("clip")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--json")
    a = ap.parse_args()
    r = run(a.recipe, a.clip, a.seconds)
    if a.json:
        Path(a.json).write_text(json.dumps(r))
    print(json.dumps(r))


if __name__ == "__main__":
    main()
