#!/usr/bin/env python3
"""`vcam remove --ray local` against the local path on the same images (issue 19), start-up included.

    python scripts/ray_bench.py [--images DIR] [--n 264] [--model auto]

Runs, one after another on the same copy of the images: the local path (all cores), Ray with
1 actor, Ray with 2 actors (--workers). Wall time of the whole command, start-up included.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", default=str(ROOT.parent / "shared" / "eval" / "portraits" / "images"))
    ap.add_argument("--n", type=int, default=264)
    ap.add_argument("--model", default="auto")
    a = ap.parse_args()
    files = sorted(p for p in Path(a.images).iterdir() if p.suffix.lower() in (".jpg", ".png"))[: a.n]
    tmp = Path(tempfile.mkdtemp(prefix="vcam-ray-bench-"))
    src = tmp / "in"
    src.mkdir()
    for f in files:
        shutil.copy(f, src / f.name)
    runs = [("local path, all cores", []), ("Ray local, 1 actor", ["--ray", "local", "--workers", "1"]),
            ("Ray local, 2 actors", ["--ray", "local", "--workers", "2"]),
            ("Ray local, actors = CPUs", ["--ray", "local"])]
    rows = []
    base = None
    for name, extra in runs:
        out = tmp / f"out{len(rows)}"
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "vcam", "remove", str(src), "-o", str(out), "--model", a.model,
                            "--log-level", "warning", *extra], capture_output=True, text=True)
        dt = time.perf_counter() - t0
        n = len(list(out.glob("*.png")))
        rate = n / dt
        base = base or rate
        rows.append((name, f"{dt:.1f}", f"{rate:.2f}", f"{rate / base:.2f}", str(n), str(r.returncode)))
    shutil.rmtree(tmp, ignore_errors=True)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"\nCPU: {cpu}, {os.cpu_count()} cores; {len(files)} images, --model {a.model}\n")
    print("| run | wall s (start-up incl.) | images/s | vs local | written | rc |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
