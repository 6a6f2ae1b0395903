#!/usr/bin/env python3
"""What the live rate costs on real video: each recipe at N mattes a second against the same
recipe with a matte for every frame, on real clips (../shared/eval/clips).

    python scripts/rate_loss.py [--hz 4,8] [--frames 150] [--model lite] [--variant SEC.KEY=V,...] [--clips a.mp4,...]

Real clips have no true masks, so the reference is what the recipe itself gives with a new
matte every frame (``vcam process --alpha-out``); the table shows how far the live rate moves
the output from it: IoU and boundary F (alpha ≥ 0.5; BF tolerance 0.8 % of the diagonal) per
frame, their mean and their worst 5 % (the frames of fast motion, where a trailing matte leaves
the room sharp beside the person). It separates what the rate loses from what the model gets
wrong, which ``scripts/quality.py --matting-hz`` measures on synthetic motion with true masks.

``move_dev.mp4`` is not in the default list: its people are small, fast and cut between scenes,
and the every-frame reference itself jumps between readings (IoU 0.2 between live and
reference whatever the rate), so the table would measure the model, not the rate.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vcam.offline.quality import bf_score, iou, lockstep_alphas  # noqa: E402
from vcam.cli.bench import parse_variant  # noqa: E402
from vcam.config import Config  # noqa: E402
from vcam.models.matting import create as create_matter  # noqa: E402

CLIPS = ROOT.parent / "shared" / "eval" / "clips"


def read(path: Path, n: int, height: int) -> list[np.ndarray]:
    """The first ``n`` frames, scaled to ``height`` (a small clip such as carphone's 176x144 to a webcam's size)."""
    cap = cv2.VideoCapture(str(path))
    out = []
    while len(out) < n:
        ok, img = cap.read()
        if not ok:
            break
        if img.shape[0] != height:
            img = cv2.resize(img, (round(img.shape[1] * height / img.shape[0]), height), interpolation=cv2.INTER_CUBIC)
        out.append(img)
    cap.release()
    return out


def alphas(cfg: Config, matter, frames, hz: float) -> list[np.ndarray]:
    return [a >= 0.5 for a in lockstep_alphas(cfg, matter, frames, hz)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hz", default="4,8", help="comma-separated matting rates")
    ap.add_argument("--frames", type=int, default=150, help="frames per clip, from its start")
    ap.add_argument("--height", type=int, default=720, help="frames scaled to this height")
    ap.add_argument("--clips", default="carphone_pristine.mp4,talk_dev.mp4", help=f"comma-separated files (in {CLIPS})")
    ap.add_argument("--model", default="lite", help="matting.model for every recipe")
    ap.add_argument("--variant", action="append", default=[], metavar="SEC.KEY=V[,SEC.KEY=V]",
                    help="a recipe: the default config with these overrides (repeatable); the default itself always runs")
    args = ap.parse_args()
    base = Config().replace(matting={"model": args.model})
    recipes = {"default": base} | {v: base.replace(**parse_variant(v)) for v in args.variant}
    rates = [float(x) for x in args.hz.split(",")]
    head = "| clip | recipe | Hz | IoU mean | IoU worst 5 % | BF mean | BF worst 5 % |"
    print(f"{args.model}, {args.frames} frames a clip, against the same recipe with a matte every frame\n")
    print(head)
    print("|" + "|".join("---" for _ in head.split("|")[1:-1]) + "|")
    matters: dict = {}
    for clip in args.clips.split(","):
        frames = read(CLIPS / clip, args.frames, args.height)
        for name, cfg in recipes.items():
            key = repr(cfg.matting)
            matter = matters.get(key) or matters.setdefault(key, create_matter(cfg.matting))
            ref = alphas(cfg, matter, frames, 0.0)
            for hz in rates:
                got = alphas(cfg, matter, frames, hz)
                ious = np.array([iou(a, r) for a, r in zip(got, ref)])
                bfs = np.array([bf_score(a, r) for a, r in zip(got, ref)])
                worst = lambda x: float(np.sort(x)[: max(1, len(x) // 20)].mean())  # noqa: E731
                print(f"| {clip} | {name} | {hz:g} | {ious.mean():.3f} | {worst(ious):.3f} | {bfs.mean():.3f} | "
                      f"{worst(bfs):.3f} |", flush=True)


if __name__ == "__main__":
    main()
