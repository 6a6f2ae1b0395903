#!/usr/bin/env python3
"""`vcam serve` under load, side by side with `vcam remove` on the same images and workers (issue 18).

    python scripts/serve_bench.py [--images DIR] [--n 100] [--workers 2] [--model modnet] [--load 500]

1. `vcam remove DIR --workers W`: the local rate, start-up excluded (a run on 1 image is subtracted).
2. `vcam serve --workers W`: the same N images POSTed at concurrency 2W: rate, p50/p95, RSS before/after.
3. A bounded load test: `--load` requests at concurrency 8, then 32 at once: the codes, p95, RSS growth.
4. 4x overload (concurrency 4 x (workers + queue)) while /healthz is polled: its p95 and worst latency.

Images: the development portraits (../shared/eval/portraits) by default. Prints one table.
"""
from __future__ import annotations

import argparse
import collections
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
VCAM = [sys.executable, "-m", "vcam"]


POLLER = """
import sys, time, urllib.request, signal
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
while True:
    t0 = time.perf_counter()
    urllib.request.urlopen(sys.argv[1], timeout=10).read()
    print(time.perf_counter() - t0, flush=True)
    time.sleep(0.05)
"""


def cpu_name() -> str:
    try:
        return next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", default=str(ROOT.parent / "shared" / "eval" / "portraits" / "images"))
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--queue", type=int, default=8)
    ap.add_argument("--model", default="modnet")
    ap.add_argument("--load", type=int, default=500)
    a = ap.parse_args()
    files = sorted(p for p in Path(a.images).iterdir() if p.suffix.lower() in (".jpg", ".png"))[: a.n]
    tmp = Path(tempfile.mkdtemp(prefix="vcam-serve-bench-"))
    (tmp / "in").mkdir()
    for f in files:
        shutil.copy(f, tmp / "in" / f.name)
    rows = []

    def local(inputs):
        t0 = time.perf_counter()
        c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([*VCAM, "remove", *inputs, "-o", str(tmp / "out"), "--workers", str(a.workers),
                        "--model", a.model, "--log-level", "warning"], check=True)
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        local.cpu = (c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime)
        return time.perf_counter() - t0

    t1 = local([str(tmp / "in" / files[0].name)])
    cpu1 = (local.cpu if (local.cpu or 0) else 0)
    tn = local([str(tmp / "in")])
    local_cpu = (local.cpu - cpu1) / (len(files) - 1)
    local_rate = (len(files) - 1) / max(1e-6, tn - t1)
    rows.append(("vcam remove (local)", f"{local_rate:.2f} img/s", "", "", f"{tn:.1f} s wall incl. {t1:.1f} s start-up"))

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([*VCAM, "serve", "--port", str(port), "--workers", str(a.workers), "--queue", str(a.queue),
                             "--preload", a.model], stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        datas = [f.read_bytes() for f in files]

        def post(i):
            t0 = time.perf_counter()
            r = httpx.post(url + "/api/remove", files={"file": ("x.jpg", datas[i % len(datas)])},
                           data={"model": a.model}, timeout=300)
            return r.status_code, time.perf_counter() - t0

        with ThreadPoolExecutor(2 * a.workers) as pool:
            list(pool.map(post, range(8)))
            rss0 = rss_mb(proc.pid)
            s0, c0 = cpu_s(proc.pid), time.process_time()
            t0 = time.perf_counter()
            res = list(pool.map(post, range(len(files))))
            wall = time.perf_counter() - t0
            server_cpu, client_cpu = (cpu_s(proc.pid) - s0) / len(files), (time.process_time() - c0) / len(files)
        rss1 = rss_mb(proc.pid)
        lat = [t for c, t in res if c == 200]
        rate = len(lat) / wall
        rows.append((f"vcam serve, {len(files)} images at concurrency {2 * a.workers}", f"{rate:.2f} img/s "
                     f"({rate / local_rate:.2f}x local)", f"{pct(lat, 50):.3f} / {pct(lat, 95):.3f}",
                     f"{rss0:.0f} → {rss1:.0f}", f"codes {dict(collections.Counter(c for c, _ in res))}; CPU per image: "
                     f"server {server_cpu:.3f} s, local {local_cpu:.3f} s, this client {client_cpu:.3f} s"))

        with ThreadPoolExecutor(8) as pool:
            res = list(pool.map(post, range(a.load)))
        with ThreadPoolExecutor(32) as pool:
            res += list(pool.map(post, range(32)))
        rss2 = rss_mb(proc.pid)
        lat = [t for c, t in res if c == 200]
        rows.append((f"load: {a.load} at concurrency 8, then 32 at once", f"{len(lat)} answered",
                     f"{pct(lat, 50):.3f} / {pct(lat, 95):.3f}", f"{rss1:.0f} → {rss2:.0f} ({(rss2 / rss1 - 1) * 100:+.1f} %)",
                     f"codes {dict(collections.Counter(c for c, _ in res))}"))

        over = 4 * (a.workers + a.queue)
        # /healthz is polled from its own process: the 40 client threads here would otherwise
        # measure their own GIL, not the server.
        poller = subprocess.Popen([sys.executable, "-c", POLLER, url + "/healthz"], stdout=subprocess.PIPE, text=True)
        time.sleep(1.0)
        with ThreadPoolExecutor(over) as pool:
            res = list(pool.map(post, range(over * 3)))
        poller.terminate()
        health = [float(x) for x in poller.communicate()[0].split()]
        rows.append((f"4x overload: {over} clients", "", "", f"{rss_mb(proc.pid):.0f}",
                     f"/healthz p95 {pct(health, 95) * 1000:.0f} ms, worst {max(health) * 1000:.0f} ms over "
                     f"{len(health)} polls; codes {dict(collections.Counter(c for c, _ in res))}"))
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nCPU: {cpu_name()}, {os.cpu_count()} cores; model {a.model}, {a.workers} workers, queue {a.queue}\n")
    print("| run | throughput | latency p50 / p95 s | server RSS MB | notes |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
