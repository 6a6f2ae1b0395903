#!/usr/bin/env python3
"""Soak test: the live pipeline for a long time, watching for leaks and stalls.

    python scripts/soak.py --minutes 30 [--size 1280x720] [--fps 30] [--json out.json]

A looping video file (made from the built-in sample) → the full live pipeline → the
null sink. Every interval it samples RSS, threads, open file descriptors, CPU cores
and the longest gap between output frames. After warm-up it checks:

* RSS growth ≤ 5 %;  * no thread or file-descriptor growth;
* no output gap over 200 ms;
* CPU does not creep: the later half's mean within 25 % (or 0.05 cores) of the earlier half's.
  Under a CPU budget the controller spends what the budget allows (it steps up to a better model
  when the picture is still), so a leak would show as less matting, not more CPU: there the
  check is on the CPU of everything but inference, and the mean must stay within the budget
  (+0.05). Single intervals may differ.

Prints a table and a verdict; exits 1 if a check fails.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def make_clip(path: Path, width: int, height: int, fps: float, seconds: float = 10.0) -> None:
    import av
    import numpy as np

    from vcam import sample

    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=int(fps))
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.options = {"preset": "ultrafast", "crf": "23"}
        for i in range(int(seconds * fps)):
            for p in s.encode(av.VideoFrame.from_ndarray(sample.render(i / fps, width, height, rng=rng), format="bgr24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def soak(minutes: float, width: int, height: int, fps: float, interval: float, warmup: float) -> dict:
    from vcam.config import Config
    from vcam.engine.parts import build_parts
    from vcam.live.pipeline import Pipeline

    tmp = Path(tempfile.mkdtemp(prefix="vcam-soak-"))
    clip = tmp / "clip.mp4"
    make_clip(clip, width, height, fps)
    cfg = Config().replace(capture={"source": str(clip), "width": width, "height": height, "fps": fps, "loop": True},
                           output={"virtualcam": False}, control={"socket": False})
    pipe = Pipeline(cfg, build_parts(cfg))
    rows: list[dict] = []
    done = threading.Event()

    def sampler():
        gov = pipe.governor
        inferred = lambda: gov.matting_cpu_total if gov is not None else 0.0  # noqa: E731
        mattes = lambda: pipe.matting.unit.timings.count  # noqa: E731
        last_cpu, last_t, last_inf, last_n = time.process_time(), time.monotonic(), inferred(), mattes()
        t0 = last_t
        while not done.wait(interval):
            o = pipe.output
            now, cpu, inf, n = time.monotonic(), time.process_time(), inferred(), mattes()
            gap, o.max_gap = o.max_gap, 0.0  # the longest gap within this interval
            dt = now - last_t
            rows.append({"t_s": round(now - t0, 1), "rss_mb": round(rss_mb(), 1), "threads": threading.active_count(),
                         "fds": fds(), "cpu_cores": round((cpu - last_cpu) / dt, 3),
                         "other_cores": round((cpu - last_cpu - (inf - last_inf)) / dt, 3),
                         "chosen": gov.level.label if gov is not None else "-",
                         "matting_hz": round((n - last_n) / dt, 1),
                         "max_gap_ms": round(gap * 1e3, 1), "out_fps": None})
            last_cpu, last_t, last_inf, last_n = cpu, now, inf, n

    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    stats = pipe.run(minutes * 60)
    done.set()
    th.join(2)
    clip.unlink()
    tmp.rmdir()
    return {"rows": rows, "stats": stats, "warmup_s": warmup}


def verdict(result: dict) -> list[tuple[str, bool, str]]:
    import numpy as np

    rows = [r for r in result["rows"] if r["t_s"] > result["warmup_s"]]
    if len(rows) < 2:
        return [("enough samples after warm-up", False, f"{len(rows)}")]
    rss0, rss1 = rows[0]["rss_mb"], max(r["rss_mb"] for r in rows)
    cpu = np.array([r["cpu_cores"] for r in rows])
    budget = (result["stats"].get("budget") or {}).get("budget_cores")
    watched = np.array([r["other_cores"] for r in rows]) if budget else cpu
    half = len(cpu) // 2
    early, late = float(watched[:half].mean()), float(watched[half:].mean())
    what = "CPU but inference" if budget else "CPU"
    checks = [
        ("RSS growth ≤ 5 %", rss1 <= rss0 * 1.05, f"{rss0:.1f} → max {rss1:.1f} MB ({100 * (rss1 / rss0 - 1):+.1f} %)"),
        ("no thread growth", max(r["threads"] for r in rows) <= rows[0]["threads"], f"{rows[0]['threads']} → {rows[-1]['threads']}"),
        ("no fd growth", max(r["fds"] for r in rows) <= rows[0]["fds"], f"{rows[0]['fds']} → {rows[-1]['fds']}"),
        ("no output gap > 200 ms", max(r["max_gap_ms"] for r in result["rows"]) <= 200,
         f"max {max(r['max_gap_ms'] for r in result['rows']):.0f} ms"),
        (f"{what} does not creep", late <= max(early * 1.25, early + 0.05),
         f"earlier half {early:.2f} → later half {late:.2f} cores (range {watched.min():.2f}-{watched.max():.2f})"),
    ]
    if budget:
        checks.append(("mean CPU within the budget (+0.05)", float(cpu.mean()) <= budget + 0.05,
                       f"mean {cpu.mean():.2f} cores, budget {budget:g}"))
    return checks


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds before the checks start")
    ap.add_argument("--json", help="also write samples and verdict here")
    a = ap.parse_args(argv)
    w, h = (int(v) for v in a.size.split("x"))
    result = soak(a.minutes, w, h, a.fps, a.interval, a.warmup)
    print(f"soak: {a.minutes:g} min at {a.size}@{a.fps:g}, file source, null sink; warm-up {a.warmup:g} s\n")
    print("| t (s) | RSS MB | threads | fds | CPU cores | but inference | matting | mattes/s | max gap ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in result["rows"]:
        print(f"| {r['t_s']} | {r['rss_mb']} | {r['threads']} | {r['fds']} | {r['cpu_cores']} | {r['other_cores']} "
              f"| {r['chosen']} | {r['matting_hz']} | {r['max_gap_ms']} |")
    st = result["stats"]
    print(f"\noutput {st['output_fps']} fps, matting {st['matting_hz']} Hz, latency p50/p95 "
          f"{st['latency_ms']['p50']}/{st['latency_ms']['p95']} ms, dropped {st['dropped']}\n")
    checks = verdict(result)
    for name, ok, detail in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")
    if a.json:
        Path(a.json).write_text(json.dumps({**result, "verdict": checks}, indent=2, default=str))
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
