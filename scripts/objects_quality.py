#!/usr/bin/env python3
"""Stills quality on objects and soft alpha (issue 17): every still path through ``vcam remove``'s own code.

    python scripts/objects_quality.py [--systems modnet,u2netp,isnet-raw,isnet,auto] [--portraits N] [--json out.json]

Data (../shared/eval, development only):

* ``soft_alpha``: animal photos (fur) and GT01 with 8-bit soft alpha → MAE and IoU (alpha ≥ 0.5);
* ``objects``: DIS5K objects with binary masks → IoU and BF (DAVIS boundary F, 0.8 % of the diagonal);
* ``portraits`` (first N, default 40): webcam portraits with binary masks → IoU and BF, so that
  a change for objects is seen next to what it does to people (``auto`` must keep them).

Each system is a :class:`vcam.offline.still.Session` (or the ``auto`` router) exactly as
``vcam remove --model NAME`` builds it; ``isnet-raw`` is IS-Net without the band refinement
(``--fast``); ``NAME@onnxruntime`` runs it on onnxruntime fp32 instead of the machine's checked
choice (OpenVINO bf16/fp32 where they agree with fp32). Prints one table with seconds per image.
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
sys.path.insert(0, str(ROOT / "scripts"))

from quality import bf_score, iou  # noqa: E402

EVAL = ROOT.parent / "shared" / "eval"


def sets(portraits: int):
    def pairs(folder, truth):
        imgs = sorted((EVAL / folder / "images").iterdir())
        return [(p, EVAL / folder / truth / (p.stem + ".png")) for p in imgs if (EVAL / folder / truth / (p.stem + ".png")).exists()]
    return {"soft": pairs("soft_alpha", "alpha"), "objects": pairs("objects", "masks"),
            "portraits": pairs("portraits", "masks")[:portraits]}


def session_for(name: str, runtime: str = "auto"):
    """``NAME[@onnxruntime]``: ``@onnxruntime`` keeps the object model off its per-machine runtime choice."""
    from vcam.config import Config
    from vcam.offline.still import Session

    if "@" in name:
        name, runtime = name.split("@", 1)
    cfg = Config().replace(matting={"runtime": runtime})
    if name == "auto":
        from vcam.offline.still import AutoSession
        return AutoSession(cfg=cfg)
    if name.endswith("-raw"):
        return Session(name[:-4], fast=True, cfg=cfg)
    if name.endswith("-fast"):
        return Session(name[:-5], fast=True, cfg=cfg)
    return Session(name, cfg=cfg)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--systems", default="modnet,u2netp,isnet-raw,isnet,auto")
    ap.add_argument("--portraits", type=int, default=40)
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    data = sets(a.portraits)
    rows = []
    for name in a.systems.split(","):
        sess = session_for(name)
        r = {"system": name}
        times = []
        for kind, items in data.items():
            m1, m2 = [], []
            for img_p, gt_p in items:
                bgr = cv2.imread(str(img_p), cv2.IMREAD_COLOR)
                gt = cv2.imread(str(gt_p), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0
                t0 = time.perf_counter()
                alpha = sess.alpha(bgr).astype(np.float32) / 255.0
                times.append(time.perf_counter() - t0)
                if kind == "soft":
                    m1.append(float(np.abs(alpha - gt).mean()))
                    m2.append(iou(alpha >= 0.5, gt >= 0.5))
                else:
                    m1.append(iou(alpha >= 0.5, gt >= 0.5))
                    m2.append(bf_score(alpha >= 0.5, gt >= 0.5))
            r[kind] = (float(np.mean(m1)), float(np.mean(m2))) if m1 else (float("nan"),) * 2
        r["s_per_image"] = float(np.median(times))
        sess.close()
        rows.append(r)
        print(f"done {name}", file=sys.stderr)
    print(f"\n| system | soft alpha MAE / IoU (n={len(data['soft'])}) | objects IoU / BF (n={len(data['objects'])}) "
          f"| portraits IoU / BF (n={len(data['portraits'])}) | s/image (median) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['system']} | {r['soft'][0]:.4f} / {r['soft'][1]:.4f} | {r['objects'][0]:.4f} / {r['objects'][1]:.4f} "
              f"| {r['portraits'][0]:.4f} / {r['portraits'][1]:.4f} | {r['s_per_image']:.2f} |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
