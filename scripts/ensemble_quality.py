#!/usr/bin/env python3
"""The stills' portrait ensemble, member by member (issue 17): each member's views computed once per
picture, then combined each way by vcam's own :func:`vcam.engine.units.combine_views`.

    python scripts/ensemble_quality.py [--portraits 400] [--cache DIR]

Data (../shared/eval, development only): ``portraits`` (binary masks → IoU, BF, and the faint haze
far from the person: the share of pixels more than 7 px outside the true mask with α in 5-60) and
``soft_alpha`` (furry animals and GT01 → MAE), and the see-through inside the person (the share of pixels more
than 7 px inside the true mask with α below 0.95). Rows: MODNet + RVM; + lite as a full member; + lite as
a tiebreaker (heard only where MODNet and RVM are unsure, and only on the side of α 0.5), first with
MODNet always the reference (as before), then with two readers that agree outvoting MODNet, then
refined at the outline's wider radius alone, then with the wider refinement deciding only which side of α 0.5 a
pixel falls on (the soft values stay the narrow one's), then as vcam does it (the default: that, with the interior
made opaque away from the outline, ``fill_interior``).
BF is also printed on four disjoint subsets (every fourth picture), so one subset's luck does not decide.
``--cache DIR`` keeps the views (``.npy`` a picture) for a rerun.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from quality import bf_score, iou  # noqa: E402

EVAL = ROOT.parent / "shared" / "eval"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--portraits", type=int, default=400)
    ap.add_argument("--cache", default="")
    a = ap.parse_args()

    from vcam.core.frames import Frame
    from vcam.engine import units
    from vcam.engine.units import combine_views
    from vcam.imaging.alpha import fill_interior
    from vcam.offline.still import Session

    s = Session("modnet")
    if [m.name for m in s.members] != ["modnet", "rvm"] or [m.name for m in s.tiebreakers] != ["lite"]:
        sys.exit("needs RVM and the lite model (pip install 'vcam[lite]'; vcam models pull rvm lite)")
    refiner, outline = s.compositor().refiner, s._outline()

    def views(path: Path) -> list[list[np.ndarray]]:
        """Per member (MODNet, RVM, lite): its refined alpha of the picture and of its mirror image, each
        twice: refined at ``refine.radius``, then at the outline's wider radius."""
        cached = Path(a.cache) / f"{path.parent.parent.name}-{path.stem}.npy" if a.cache else None
        if cached is not None and cached.exists():
            v = np.load(cached)
        else:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            per_refiner = units._views(s.members + s.tiebreakers, (refiner, outline), Frame(bgr, 0, 0.0), True, None)
            v = np.stack([a for views in per_refiner for own in views for a in own])
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                np.save(cached, v)
        return [[v[0], v[1]], [v[2], v[3]], [v[4], v[5]], [v[6], v[7]], [v[8], v[9]], [v[10], v[11]]]

    def modnet_leads(p):
        """The combination as it was: MODNet always the reference."""
        reference = units._reference
        units._reference = lambda per, n: 0
        try:
            return combine_views(p[:2], p[2:3])
        finally:
            units._reference = reference

    def with_outline(p):
        """The outline (the wider refiner's combination) decides the side of α 0.5."""
        return units.outlined(p[:2], p[2:3], p[3:5], p[5:])

    rows = {"MODNet + RVM": lambda p: combine_views(p[:2]),
            "+ lite as a full member": lambda p: combine_views(p[:3]),
            "+ lite as a tiebreaker, MODNet always the reference": modnet_leads,
            "+ lite as a tiebreaker, outvoting": lambda p: combine_views(p[:2], p[2:3]),
            "+ lite as a tiebreaker, outvoting, refined at the outline's radius alone": lambda p: combine_views(p[3:5], p[5:]),
            "+ lite as a tiebreaker, outvoting, the outline deciding the side": with_outline,
            "+ the same, interior opaque away from the outline (default)": lambda p: fill_interior(with_outline(p))}
    res = {k: {"iou": [], "bf": [], "haze": [], "mae": [], "seams": []} for k in rows}
    portraits = sorted((EVAL / "portraits" / "images").iterdir())[:a.portraits]
    for i, path in enumerate(portraits):
        truth = cv2.imread(str(EVAL / "portraits" / "masks" / (path.stem + ".png")), cv2.IMREAD_GRAYSCALE) >= 128
        far = ~cv2.dilate(truth.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
        deep = cv2.erode(truth.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)  # 7 px inside the truth
        per = views(path)
        for k, f in rows.items():
            al = f(per)
            res[k]["iou"].append(iou(al >= 128, truth))
            res[k]["bf"].append(bf_score(al >= 128, truth))
            res[k]["haze"].append(float(((al > 5) & (al < 60) & far).mean()))
            res[k]["seams"].append(float((al[deep] < 243).mean()) if deep.any() else 0.0)
        if (i + 1) % 50 == 0:
            print(f"{i + 1} portraits", file=sys.stderr)
    for path in sorted((EVAL / "soft_alpha" / "images").iterdir()):
        truth = cv2.imread(str(EVAL / "soft_alpha" / "alpha" / (path.stem + ".png")), cv2.IMREAD_GRAYSCALE) / 255.0
        per = views(path)
        for k, f in rows.items():
            res[k]["mae"].append(float(np.abs(f(per) / 255.0 - truth).mean()))
    print(f"\n| portrait ensemble | portraits IoU (n={len(portraits)}) | BF | BF on four disjoint subsets | "
          f"haze far from the person (α 5-60) | see-through inside the person (α < 0.95, 7 px in) "
          f"| soft alpha MAE (n={len(res['MODNet + RVM']['mae'])}) |")
    print("|---|---|---|---|---|---|---|")
    for k, r in res.items():
        bf = np.array(r["bf"])
        subsets = " / ".join(f"{bf[j::4].mean():.3f}" for j in range(4))
        print(f"| {k} | {np.mean(r['iou']):.4f} | {bf.mean():.4f} | {subsets} | {100 * np.mean(r['haze']):.2f} % "
              f"| {100 * np.mean(r['seams']):.2f} % | {np.mean(r['mae']):.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
