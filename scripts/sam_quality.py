#!/usr/bin/env python3
"""Prompted cutouts (issue 8) against the prompt-free models, on ../shared/eval.

    python scripts/sam_quality.py [--portraits N] [--json out.json]

* ``soft_alpha`` (13 AM-2k animals + alphamatting GT01, soft ground truth): one click at
  the deepest interior point of the true mask → ``vcam remove --point`` (SAM + matting
  fusion + closed-form refinement) against ``--model u2netp`` and ``--model modnet``
  without a prompt. MAE, SAD (sum |Δα| / 1000) and IoU per image.
* ``portraits`` (every k-th of the 400, binary truth): one click at the deepest interior
  point, and one on the face (the deepest point of the mask's top 30 %, the head) → IoU; plain SAM with SAM's best-rated mask as the anchor.

Prints tables; the click for every image is listed.
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

import vcam  # noqa: E402
from vcam.models.sam import MobileSam  # noqa: E402
from vcam import sample  # noqa: E402
from vcam.offline.still import prompt_matting, prompt_referee, prompt_session  # noqa: E402
from vcam.subject import Prompt, PromptSession  # noqa: E402
from vcam.subject.select import choose_mask  # noqa: E402

EVAL = ROOT.parent / "shared" / "eval"


def deepest(mask: np.ndarray) -> tuple[int, int]:
    # A zero border first, so the image edge counts as outside the subject.
    d = cv2.distanceTransform(np.pad(mask.astype(np.uint8), 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(d)), d.shape)
    return int(x), int(y)


def face_point(mask: np.ndarray) -> tuple[int, int]:
    """A click on the face: the deepest point of the mask's top 30 % (the head, in these
    head-and-shoulders portraits; OpenCV 5 dropped the cascade face detector)."""
    rows = np.nonzero(mask.any(1))[0]
    top = np.zeros_like(mask)
    cut = rows[0] + int(0.3 * (rows[-1] - rows[0]))
    top[: cut + 1] = mask[: cut + 1]
    return deepest(top)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def full_body(sam: MobileSam, n: int) -> dict:
    keys = ("sam_best", "sam_largest", "sam_oracle", "sam_box", "vcam", "vcam_misread")
    res: dict = {k: [] for k in keys}
    print(f"\n## full body: {n} generated pictures, one click at the deepest interior point, IoU\n")
    print("| seed | " + " | ".join(keys) + " | fusion with the misreading matte |")
    print("|---" * (len(keys) + 2) + "|")
    for seed in range(n):
        img, truth = sample.full_body(seed=seed)
        truth = truth > 127
        click = deepest(truth)
        rows = np.nonzero(truth.any(1))[0]
        hips = int(rows[0] + 0.5 * (rows[-1] - rows[0]))

        def legless(bgr, hips=hips):
            a = prompt_matting(bgr).copy()
            a[hips:] = 0
            return a

        session = PromptSession(img, sam=sam, matting=prompt_matting, referee=prompt_referee)
        m = sam.predict(session.embedding, Prompt(points=[click]))
        ys, xs = np.nonzero(truth)
        b = sam.predict(session.embedding, Prompt(box=(xs.min(), ys.min(), xs.max(), ys.max())))
        res["sam_best"].append(iou(m.binary(choose_mask(m, None)), truth))
        res["sam_largest"].append(iou(m.logits[int(np.argmax((m.logits > 0).sum((1, 2))))] > 0, truth))
        res["sam_oracle"].append(max(iou(c, truth) for c in m.logits > 0))
        res["sam_box"].append(iou(b.binary(choose_mask(b, None)), truth))
        res["vcam"].append(iou(session.select(Prompt(points=[click])).alpha > 127, truth))
        misread = PromptSession(img, sam=sam, matting=legless, referee=prompt_referee)
        sel = misread.select(Prompt(points=[click]))
        res["vcam_misread"].append(iou(sel.alpha > 127, truth))
        print(f"| {seed} | " + " | ".join(f"{res[k][-1]:.3f}" for k in keys) + f" | {sel.source}: {sel.why} |",
              flush=True)
    print("| **mean** | " + " | ".join(f"**{np.mean(res[k]):.3f}**" for k in keys) + " | |")
    return {k: float(np.mean(v)) for k, v in res.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--portraits", type=int, default=400, help="how many portraits (evenly spaced)")
    ap.add_argument("--skip-soft", action="store_true")
    ap.add_argument("--full-body", type=int, default=8, help="how many generated full-body pictures")
    ap.add_argument("--json")
    args = ap.parse_args()
    sam = MobileSam()
    out: dict = {}

    if not args.skip_soft:
        rows = []
        print("\n## soft_alpha: one click at the deepest interior point\n")
        print("| image | click | prompt MAE | SAD | IoU | source | modnet MAE | SAD | IoU | u2netp MAE | SAD | IoU | s |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for f in sorted((EVAL / "soft_alpha" / "images").iterdir()):
            img = cv2.imread(str(f))
            gt = cv2.imread(str(EVAL / "soft_alpha" / "alpha" / (f.stem + ".png")), cv2.IMREAD_GRAYSCALE)
            g = gt.astype(np.float32) / 255
            click = deepest(gt > 127)
            t = time.perf_counter()
            sel = prompt_session(img).select(Prompt(points=[click]))
            a = sel.alpha
            dt = time.perf_counter() - t
            row = {"image": f.stem, "click": click, "s": dt}
            for name, alpha in (("prompt", a),
                                ("modnet", vcam.remove(img[:, :, ::-1].copy(), model="modnet", only_mask=True)),
                                ("u2netp", vcam.remove(img[:, :, ::-1].copy(), model="u2netp", only_mask=True))):
                e = np.abs(alpha.astype(np.float32) / 255 - g)
                row[name] = {"mae": float(e.mean()), "sad": float(e.sum() / 1000), "iou": iou(alpha > 127, gt > 127)}
            row["source"] = sel.source
            rows.append(row)
            p, m, u = row["prompt"], row["modnet"], row["u2netp"]
            print(f"| {f.stem} | {click[0]},{click[1]} | {p['mae']:.4f} | {p['sad']:.1f} | {p['iou']:.3f} | "
                  f"{row['source']} | {m['mae']:.4f} | {m['sad']:.1f} | {m['iou']:.3f} | {u['mae']:.4f} | "
                  f"{u['sad']:.1f} | {u['iou']:.3f} | {dt:.1f} |", flush=True)
        mean = {k: {q: float(np.mean([r[k][q] for r in rows])) for q in ("mae", "sad", "iou")}
                for k in ("prompt", "modnet", "u2netp")}
        print("| **mean** | | " + " | ".join(
            f"**{mean[k]['mae']:.4f}** | {mean[k]['sad']:.1f} | {mean[k]['iou']:.3f}" + (" |" if k == "prompt" else "")
            for k in ("prompt", "modnet", "u2netp")) + " |")
        out["soft_alpha"] = {"rows": rows, "mean": mean}

    if args.full_body:
        out["full_body"] = full_body(sam, args.full_body)

    files = sorted((EVAL / "portraits" / "images").glob("*.jpg"))
    step = max(1, len(files) // max(1, args.portraits))
    files = files[::step][: args.portraits]
    res = {"deepest": [], "face": [], "sam_best": [], "sam_largest": []}
    clicks_ms, encode_s = [], []
    t0 = time.perf_counter()
    for f in files:
        img = cv2.imread(str(f))
        gt = cv2.imread(str(EVAL / "portraits" / "masks" / (f.stem + ".png")), cv2.IMREAD_GRAYSCALE) > 127
        t = time.perf_counter()
        session = prompt_session(img)  # one encoding per image, as the picker does
        encode_s.append(time.perf_counter() - t)
        d = deepest(gt)
        fp = face_point(gt)
        res["deepest"].append(iou(session.select(Prompt(points=[d])).alpha > 127, gt))
        res["face"].append(iou(session.select(Prompt(points=[fp])).alpha > 127, gt))
        for pt in (d, fp):  # what the picker does on each click: decoder + fusion, no closed-form refinement
            t = time.perf_counter()
            session.select(Prompt(points=[pt]), refine=False)
            clicks_ms.append((time.perf_counter() - t) * 1e3)
        m = session.sam.predict(session.embedding, Prompt(points=[d]))
        res["sam_best"].append(iou(m.binary(choose_mask(m, None)), gt))
        res["sam_largest"].append(iou(m.logits[int(np.argmax((m.logits > 0).sum((1, 2))))] > 0, gt))
    n = len(files)
    print(f"\n## portraits: {n} images, IoU at alpha 0.5 ({(time.perf_counter() - t0) / max(1, n):.2f} s/image; "
          "face click: deepest point of the mask's top 30 %)\n")
    print("| prompt | IoU mean | IoU p10 | share ≥ 0.95 |")
    print("|---|---|---|---|")
    for k, label in (("sam_best", "plain SAM, deepest point, best predicted IoU"),
                     ("sam_largest", "plain SAM, deepest point, largest mask"),
                     ("deepest", "vcam, deepest interior point"), ("face", "vcam, click on the face")):
        v = np.array(res[k])
        print(f"| {label} | {v.mean():.3f} | {np.percentile(v, 10):.3f} | {(v >= 0.95).mean():.2f} |")
    print(f"\npicker: image encoding {np.median(encode_s):.2f} s median; each click {np.median(clicks_ms):.0f} ms "
          f"median, {np.percentile(clicks_ms, 95):.0f} ms p95 (decoder + fusion, {len(clicks_ms)} clicks)")
    out["portraits"] = {k: float(np.mean(v)) for k, v in res.items()}
    out["click_ms"] = {"p50": float(np.median(clicks_ms)), "p95": float(np.percentile(clicks_ms, 95))}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
