#!/usr/bin/env python3
"""Matte quality of vcam's live path against the peers' recipes, on ../shared/eval.

    python scripts/quality.py [--limit N] [--clips N] [--frames N] [--recipes a,b,...] [--matting-hz N]
                              [--speed X] [--bend] [--json out.json]

Every recipe runs through the same code as ``vcam process --alpha-out`` (the lockstep
runner: matter → temporal filter → refiner → compositor alpha), on:

* stills: each portrait alone → IoU (alpha ≥ 0.5), BF (DAVIS boundary F, tolerance 0.8 %
  of the diagonal), MAE;
* a static clip per portrait: the portrait repeated with Gaussian sensor noise σ = 4 →
  flicker = mean |α_t − α_{t−1}| × 1000 (the truth never moves, so any change is flicker);
* a moving clip per portrait: image and mask warped together (±4 % translation, ±3 % zoom,
  smooth sway) with noise → IoU, BF and dtSSD × 100, where
  dtSSD = mean_t sqrt(mean_p ((α_t − α_{t−1}) − (g_t − g_{t−1}))²).

``--matting-hz N`` measures the clips at the live rate instead of a matte per frame: new mattes
only at N Hz, each used one period after its frame and refined against every frame between
(``vcam process --matting-hz``), which is what a call sees when the model runs at N Hz.
The sway is rigid, so the matte follower carries it between mattes whatever the rate; ``--bend``
makes the head sway while the body stays, and ``--speed X`` plays it X times faster, which is where
the rate shows.

Prints a table; ``--json`` also writes the numbers.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vcam.cli.bench import parse_variant  # noqa: E402
from vcam.config import Config  # noqa: E402
from vcam.models.matting import create as create_matter  # noqa: E402
from vcam.offline.quality import bf_score, dtssd, iou, lockstep_alphas, moving_clip, noisy  # noqa: E402

EVAL = ROOT.parent / "shared" / "eval" / "portraits"


def recipes() -> dict[str, Config]:
    d = Config()
    naive = {"refine": {"enabled": False}, "smoothing": {"kind": "none"}}
    return {
        "vcam (default live config)": d,
        "MODNet 512, bilinear": d.replace(matting={"input_size": 512}, **naive),
        "MODNet 256, bilinear": d.replace(matting={"input_size": 256}, **naive),
        "MODNet 512 + EMA 0.5": d.replace(matting={"input_size": 512}, refine={"enabled": False},
                                          smoothing={"kind": "ema", "strength": 0.5}),
        "MODNet 224, bilinear (vcam's size, no filters)": d.replace(matting={"input_size": 224}, **naive),
        "RVM (vcam refine + filter)": d.replace(matting={"model": "rvm", "input_size": 256}),
        "U2-Net-p 320, bilinear": d.replace(matting={"model": "u2netp"}, **naive),
        "lite: MediaPipe selfie (vcam refine + filter)": d.replace(matting={"model": "lite"}),
    }


_MATTERS: dict = {}


MATTING_HZ = 0.0  # --matting-hz: 0, a matte per frame
MOTION = {"speed": 1.0, "bend": False}  # --speed, --bend: how the moving clips move


def run_frames(cfg: Config, frames: list[np.ndarray]) -> tuple[list[np.ndarray], float]:
    """The lockstep path (what `vcam process --alpha-out` runs): alphas in [0, 1] and s/frame.

    The model session is loaded once per recipe; smoother and compositor are new for every
    clip, and the model's recurrent state (RVM) is reset, as on a source change."""
    key = repr(cfg.matting)
    if key not in _MATTERS:
        _MATTERS[key] = create_matter(cfg.matting)
    t0 = time.perf_counter()
    out = lockstep_alphas(cfg, _MATTERS[key], frames, MATTING_HZ)
    return out, (time.perf_counter() - t0) / max(1, len(frames))


def load(limit: int):
    files = sorted((EVAL / "images").glob("*.jpg"))
    if not files:
        sys.exit(f"no portraits in {EVAL}: this benchmark needs ../shared/eval")
    step = max(1, len(files) // limit) if limit else 1
    out = []
    for f in files[::step][: limit or None]:
        img = cv2.imread(str(f))
        gt = cv2.imread(str(EVAL / "masks" / (f.stem + ".png")), cv2.IMREAD_GRAYSCALE)
        out.append((f.stem, img, gt))
    return out


def evaluate(cfg: Config, data, clips: int, frames: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    r = {"iou": [], "bf": [], "mae": [], "spf": [], "flicker": [], "m_iou": [], "m_bf": [], "dtssd": []}
    for name, img, gt in data:
        (a,), dt = run_frames(cfg, [img])
        g = gt > 127
        r["iou"].append(iou(a >= 0.5, g))
        r["bf"].append(bf_score(a >= 0.5, g))
        r["mae"].append(float(np.abs(a - g).mean()))
        r["spf"].append(dt)
    h, w = data[0][1].shape[:2]
    for name, img, gt in data[:clips]:
        h, w = img.shape[:2]
        static = [noisy(img, rng) for _ in range(frames)]
        alphas, _ = run_frames(cfg, static)
        r["flicker"].append(1000 * float(np.mean([np.abs(alphas[i] - alphas[i - 1]).mean() for i in range(1, frames)])))
        mv, mg = moving_clip(img, gt, frames, rng, speed=MOTION["speed"], bend=MOTION["bend"])
        alphas, _ = run_frames(cfg, mv)
        r["m_iou"].append(np.mean([iou(a >= 0.5, g >= 0.5) for a, g in zip(alphas, mg)]))
        r["m_bf"].append(np.mean([bf_score(a >= 0.5, g >= 0.5) for a, g in zip(alphas, mg)]))
        r["dtssd"].append(dtssd(alphas, mg))
    return {k: float(np.mean(v)) if v else float("nan") for k, v in r.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=0, help="stills to use (0: all 400)")
    ap.add_argument("--clips", type=int, default=40, help="portraits to build static and moving clips from")
    ap.add_argument("--frames", type=int, default=20, help="frames per clip")
    ap.add_argument("--recipes", default="", help="comma-separated substrings of recipe names to run")
    ap.add_argument("--json", help="also write the numbers here")
    ap.add_argument("--variant", action="append", default=[], metavar="SEC.KEY=V[,SEC.KEY=V]",
                    help="also run the default config with these overrides (repeatable), e.g. smoothing.strength=0.95")
    ap.add_argument("--matting-hz", type=float, default=0.0, metavar="N",
                    help="clips at the live rate: new mattes only at N Hz (default: one per frame)")
    ap.add_argument("--speed", type=float, default=1.0, metavar="X",
                    help="moving clips sway X times faster (default 1: a webcam's sway)")
    ap.add_argument("--bend", action="store_true",
                    help="moving clips bend instead of moving rigidly: the head sways, the body stays "
                         "(what the matte follower cannot carry)")
    args = ap.parse_args()
    global MATTING_HZ
    MATTING_HZ = args.matting_hz
    MOTION.update(speed=args.speed, bend=args.bend)
    data = load(args.limit)
    chosen = {k: v for k, v in recipes().items()
              if not args.recipes or any(s.strip().lower() in k.lower() for s in args.recipes.split(","))}
    for spec in args.variant:
        chosen[f"vcam + {spec}"] = Config().replace(**parse_variant(spec))
    print(f"{len(data)} stills, {min(args.clips, len(data))} static + moving clips of {args.frames} frames "
          f"(600x800 portraits, ../shared/eval)"
          + (f"; clips at the live rate, {args.matting_hz:g} Hz mattes under 30 fps" if args.matting_hz else "")
          + (f"; moving {args.speed:g}x" if args.speed != 1 else "") + ("; bending" if args.bend else "") + "\n")
    head = f"| {'recipe':<48} | IoU   | BF    | MAE   | s/frame | flicker | moving IoU | moving BF | moving dtSSD |"
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    results = {}
    for name, cfg in chosen.items():
        m = evaluate(cfg, data, args.clips, args.frames)
        results[name] = m
        print(f"| {name:<48} | {m['iou']:.3f} | {m['bf']:.3f} | {m['mae']:.3f} | {m['spf']:7.3f} | "
              f"{m['flicker']:7.2f} | {m['m_iou']:10.3f} | {m['m_bf']:9.3f} | {m['dtssd']:12.2f} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
