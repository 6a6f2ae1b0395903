"""``vcam demo``: the full live pipeline on the built-in sample, written to files."""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from ..config import Config
from ..engine import budget
from ..engine.parts import build_parts
from ..live.pipeline import Pipeline
from ..errors import VcamError
from ..media.sinks import RecordSink
from ..models import store

log = logging.getLogger(__name__)


def side_by_side(frame: np.ndarray, alpha: np.ndarray, output: np.ndarray, width: int = 640) -> np.ndarray:
    """``input | matte | output`` in one ``[h, 3*width, 3] uint8`` image."""
    h = int(round(frame.shape[0] * width / frame.shape[1]))
    tiles = [cv2.resize(x, (width, h), interpolation=cv2.INTER_AREA)
             for x in (frame, cv2.cvtColor(alpha, cv2.COLOR_GRAY2BGR), output)]
    return np.hstack(tiles)


def run_demo(cfg: Config, *, out_dir: str = ".", seconds: float = 6.0):
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    video, png = out / "vcam-demo.mp4", out / "vcam-demo.png"
    c = cfg.capture
    cores = budget.resolve(cfg.run.cpu_budget)
    if cores is not None and budget.should_fetch_lite(cfg.run, cfg.matting.model):
        # The demo is the set-up command: it fetches the budget's cheapest rung now, so the first
        # call does not start without it (a live run would fetch it in the background).
        try:
            store.pull("lite")
        except VcamError as e:
            log.warning("the lite model could not be fetched (%s); the CPU budget cannot fall back to it", e)
    parts = build_parts(cfg, sinks=[RecordSink(str(video), c.width, c.height, c.fps)], cpu_budget=cores)
    pipe = Pipeline(cfg, parts, keep_alpha=True)
    picked = {}

    def tap(comp):
        # Keep a composite from the middle of the run, once the smoother has settled.
        if comp.alpha is not None and comp.seq >= int(seconds * c.fps / 2) and "comp" not in picked:
            picked["comp"] = (comp.frame.copy(), comp.alpha.copy(), comp.image.copy())

    pipe.output.taps.append(tap)
    stats = pipe.run(seconds)
    if "comp" not in picked:  # a very slow machine: take the last one
        last = pipe.output.last
        alpha = last.alpha if last.alpha is not None else np.zeros(last.image.shape[:2], np.uint8)
        picked["comp"] = (last.frame, alpha, last.image)
    cv2.imwrite(str(png), side_by_side(*picked["comp"]))
    return video, png, stats


def main(cfg: Config, a) -> int:
    video, png, stats = run_demo(cfg, out_dir=a.out_dir, seconds=a.seconds)
    print(f"demo video:   {video}")
    print(f"side by side: {png}  (input | matte | output)")
    print(f"output {stats['output_fps']} fps, matting {stats['matting_hz']} Hz, "
          f"latency p50 {stats['latency_ms']['p50']} ms, CPU {stats['cpu_cores']} cores")
    return 0
