"""Host side: the test clip with a known background, and the masks to check readers against.

The built-in portrait's person (cut out once with vcam's own MODNet) stands over fine
black/white stripes. Replacing the background must turn the stripes into the chosen colour;
blurring must wash them out; the person must come through either way.
"""
import json
import sys
from pathlib import Path

import cv2
import numpy as np

import vcam
from vcam import sample

W, H, N = 320, 240, 30


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    frames = out / "clip"
    frames.mkdir(exist_ok=True)
    portrait = sample.portrait()
    crop = cv2.resize(portrait[0:384, 0:512], (W, H), interpolation=cv2.INTER_AREA)  # head and shoulders, 4:3
    alpha = vcam.remove(crop[:, :, ::-1].copy(), only_mask=True).astype(np.float32) / 255
    stripes = np.zeros((H, W, 3), np.uint8)
    stripes[:, ::4] = 255
    stripes[:, 1::4] = 255
    rng = np.random.default_rng(0)
    for i in range(N):
        comp = crop * alpha[..., None] + stripes * (1 - alpha[..., None])
        comp = np.clip(comp + rng.normal(0, 2, comp.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(frames / f"{i:03d}.png"), comp)
    person = cv2.erode((alpha > 0.95).astype(np.uint8), np.ones((21, 21), np.uint8))
    background = cv2.erode((alpha < 0.05).astype(np.uint8), np.ones((31, 31), np.uint8))
    background[:, :8] = background[:, -8:] = 0
    background[:8] = background[-8:] = 0
    ys, xs = np.nonzero(person)
    yb, xb = np.nonzero(background)
    pick = lambda ys, xs, k: [[int(xs[i]), int(ys[i])] for i in np.linspace(0, len(xs) - 1, k).astype(int)]  # noqa: E731
    points = {"person": pick(ys, xs, 24), "background": pick(yb, xb, 24), "width": W, "height": H,
              "reference": str(frames / "000.png")}
    if len(ys) < 500 or len(yb) < 500:
        sys.exit("make_clip: the person/background regions are too small")
    (out / "points.json").write_text(json.dumps(points))
    print(f"clip: {N} frames {W}x{H} in {frames}; {len(ys)} person and {len(yb)} background pixels to check")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
