"""Checks a reader's frames: rate, replaced/blurred background, untouched person.

    python check.py POINTS.json MODE NAME FPS frames.npy SECONDS      (frames: [n, H, W, 3] RGB)
    python check.py POINTS.json MODE NAME FPS frames.rgb SECONDS      (ffmpeg's rawvideo rgb24)
    python check.py POINTS.json MODE NAME FPS --samples samples.json  (Chromium's pixel samples)

Prints one JSON line, exit 0 when every check passes.
"""
import json
import sys

import cv2
import numpy as np


def judge(mode, bg_px, person_px, ref_person, bg_std=None):
    """bg_px, person_px: [k, 3] RGB samples; ref_person: the clip's pixels there.

    Returns the fractions of background and person points that pass, and the colour errors
    (mean |RGB difference| in levels): background against pure green (replace) or the
    stripes' remaining local std (blur); person against the clip."""
    if mode == "replace":
        bg_ok = (bg_px[:, 1] > 170) & (bg_px[:, 0] < 100) & (bg_px[:, 2] < 100)  # green
        bg_err = float(np.abs(bg_px.astype(int) - (0, 255, 0)).mean())
    else:  # blur: the 2-px stripes must be gone
        bg_ok = np.asarray(bg_std) < 30
        bg_err = float(np.mean(bg_std))
    person_d = np.abs(person_px.astype(int) - ref_person.astype(int)).mean(axis=1)
    person_ok = person_d < 45
    return float(bg_ok.mean()), float(person_ok.mean()), round(bg_err, 1), round(float(person_d.mean()), 1)


def main(argv):
    points = json.load(open(argv[0]))
    mode, name, fps = argv[1], argv[2], float(argv[3])
    ref = cv2.imread(points["reference"])[:, :, ::-1]
    P = np.array(points["person"])
    B = np.array(points["background"])
    ref_person = ref[P[:, 1], P[:, 0]]
    if argv[4] == "--samples":
        s = json.load(open(argv[5]))
        frames, seconds = s["frames"], s["seconds"]
        bg_ok, person_ok, bg_err, person_err = judge(mode, np.array(s["bg"]), np.array(s["person"]), ref_person, s.get("bg_std"))
    else:
        arr = (np.fromfile(argv[4], np.uint8).reshape(-1, points["height"], points["width"], 3)
               if argv[4].endswith(".rgb") else np.load(argv[4]))
        if len(arr) == 0:
            print(json.dumps({"reader": name, "mode": mode, "frames": 0, "pass": False}), flush=True)
            return 1
        frames, seconds = len(arr), float(argv[5])
        last = arr[-1]
        stds = [float(last[max(0, y - 4):y + 5, max(0, x - 4):x + 5].std()) for x, y in B]
        bg_ok, person_ok, bg_err, person_err = judge(mode, last[B[:, 1], B[:, 0]], last[P[:, 1], P[:, 0]], ref_person, stds)
    rate = frames / seconds if seconds else 0.0
    ok = seconds >= 3.0 and rate >= 0.8 * fps and bg_ok >= 0.9 and person_ok >= 0.9
    print(json.dumps({"reader": name, "mode": mode, "frames": frames, "seconds": round(seconds, 2),
                      "fps": round(rate, 2), "background_ok": bg_ok, "person_ok": person_ok,
                      "background_error": bg_err, "person_error": person_err, "pass": ok}), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
