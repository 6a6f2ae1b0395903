"""``vcam bench``: the real live pipeline, side by side over configurations, plus kernel costs.

Each configuration runs in its own process (``vcam run --source sample --no-virtualcam
--stats-json``), so CPU time and peak memory are its own. ``--auto`` picks the largest
model input that keeps the output at its frame rate with the matting rate at the target,
and writes it to the user config.
"""
from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import yaml

from .. import sample
from ..config import CompositorConfig, Config, RefineConfig, load_yaml, merge, user_config_path
from ..config import load as load_config
from ..core.frames import Frame, Matte
from ..errors import ConfigError
from ..imaging import kernels
from ..imaging.compositor import Compositor
from ..imaging.refine import Refiner
from .app import parse_size, write_json

log = logging.getLogger(__name__)


def parse_variant(text: str) -> dict:
    """``"input_size=256,threads=2"`` → ``{"matting": {...}}`` (keys of the matting section, or sec.key)."""
    layer: dict = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        if "=" not in item:
            raise ConfigError(f"bad --variant item {item!r}: use KEY=VALUE, e.g. input_size=256")
        key, value = item.split("=", 1)
        sec, _, k = key.rpartition(".")
        layer.setdefault(sec or "matting", {})[k] = yaml.safe_load(value)
    return layer


def run_one(size: tuple[int, int], fps: float, seconds: float, layer: dict, config: str | None = None,
            source: str = "sample") -> dict:
    with tempfile.TemporaryDirectory(prefix="vcam-bench-") as tmp:
        cfg_path = Path(tmp) / "variant.yaml"
        base = yaml.safe_load(Path(config).read_text()) if config else {}
        for sec, vals in layer.items():
            base.setdefault(sec, {}).update(vals)
        base.setdefault("control", {}).update(socket=False, hotkeys=False, watch_config=False)
        cfg_path.write_text(yaml.safe_dump(base))
        out = Path(tmp) / "stats.json"
        cmd = [sys.executable, "-m", "vcam", "run", "--source", source, "--no-virtualcam",
               "--size", f"{size[0]}x{size[1]}", "--fps", str(fps), "--seconds", str(seconds),
               "--stats-json", str(out), "--config", str(cfg_path), "--log-level", "warning"]
        r = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=seconds + 120)
        if r.returncode != 0 or not out.exists():
            why = (r.stderr.strip().splitlines() or ["?"])[-1].removeprefix("vcam: error: ")
            raise ConfigError(f"bench run failed: {why}")
        return json.loads(out.read_text())


def kernels_report(width: int = 1920, height: int = 1080, repeats: int = 30) -> dict:
    """Copy bandwidth, the blend kernel against it, and the whole compositor, at one size."""
    cv2.setNumThreads(1)

    def best(f):
        f()
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t)
        return float(np.median(ts))

    big_src = np.ones(256 * 2**20, np.uint8)
    big_dst = np.empty_like(big_src)
    t_copy = best(lambda: np.copyto(big_dst, big_src))
    bandwidth = 2 * big_src.nbytes / t_copy  # read + write, bytes/s
    del big_src, big_dst
    fg = sample.render(1.0, width, height)
    bg = cv2.GaussianBlur(fg, (0, 0), 9)
    alpha = np.random.default_rng(0).integers(0, 256, (height, width), dtype=np.uint8)
    out = np.empty_like(fg)
    t_blend = best(lambda: kernels.blend(out, fg, bg, alpha))
    stream_bytes = fg.nbytes * 3 + alpha.nbytes  # fg, bg, alpha in; out
    floor = stream_bytes / bandwidth
    matte = np.clip(np.random.default_rng(1).random((224, 384), np.float32), 0, 1)
    comp = Compositor(CompositorConfig(mode="blur"), RefineConfig())
    coef = Refiner(RefineConfig()).coefficients(fg, matte)
    m = Matte(alpha=matte, seq=0, t_capture=0.0, coef=coef)
    frame = Frame(fg, 0, 0.0)
    t_comp = best(lambda: comp.render(frame, m))
    return {"size": [width, height], "copy_GBps": round(bandwidth / 1e9, 1), "blend_ms": round(t_blend * 1e3, 3),
            "blend_floor_ms": round(floor * 1e3, 3), "blend_vs_floor": round(t_blend / floor, 2),
            "compositor_ms": round(t_comp * 1e3, 2)}


def peers_table(rows: list[tuple[str, str, dict]]) -> str:
    """vcam and the peers' recipes per clip: cores, fps, matting Hz, latency, and CPU per output
    frame against the best peer recipe on the same clip."""
    head = "| clip | recipe | out fps | matting Hz | latency ms p50/p95 | CPU cores | CPU/frame vs best peer | chosen |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    best: dict[str, float] = {}
    for clip, name, s in rows:
        if name.startswith("peer") and s["output_fps"]:
            per = s["cpu_cores"] / s["output_fps"]
            best[clip] = min(best.get(clip, per), per)
    for clip, name, s in rows:
        per = s["cpu_cores"] / s["output_fps"] if s["output_fps"] else float("nan")
        ratio = f"{per / best[clip]:.2f}" if clip in best else "-"
        b = s.get("budget") or {}
        chosen = f"{s.get('model', '')}@{s.get('input_size', '')} {s.get('runtime', '')}".strip() if "model" in s else "-"
        if b:
            chosen = f"{b['chosen']} ({s.get('runtime', '')}), mean {b['mean_cores']} of {b['budget_cores']}"
        lines.append(f"| {clip} | {name} | {s['output_fps']} | {s['matting_hz']} | {s['latency_ms']['p50']}/"
                     f"{s['latency_ms']['p95']} | {s['cpu_cores']} | {ratio} | {chosen} |")
    return "\n".join(lines)


def run_peer(recipe: str, clip: str, seconds: float) -> dict:
    script = Path(__file__).resolve().parents[2] / "scripts" / "peers.py"
    if not script.exists():
        raise ConfigError("--peers needs a source checkout of vcam (scripts/peers.py): run it from a git clone")
    with tempfile.TemporaryDirectory(prefix="vcam-peer-") as tmp:
        out = Path(tmp) / "peer.json"
        r = subprocess.run([sys.executable, str(script), recipe, clip, "--seconds", str(seconds), "--json", str(out)],
                           capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=seconds + 120)
        if r.returncode != 0 or not out.exists():
            raise ConfigError(f"peer recipe {recipe} failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
        return json.loads(out.read_text())


def table(rows: list[tuple[str, dict]]) -> str:
    head = ("| configuration | size | out fps | matting Hz | capture ms p50/p95 | matting ms p50/p95 | "
            "compositor ms p50/p95 | latency ms p50/p95 | drops cap→mat/cap→comp/comp→out | CPU cores | peak RSS MB |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, s in rows:
        st = s["stage_ms"]
        d = s["dropped"]
        pp = lambda x: f"{x['p50']}/{x['p95']}"  # noqa: E731
        lines.append(f"| {name} | {s['size'][0]}x{s['size'][1]} | {s['output_fps']} | {s['matting_hz']} | "
                     f"{pp(st['capture'])} | {pp(st['matting'])} | {pp(st['compositor'])} | {pp(s['latency_ms'])} | "
                     f"{d['capture→matting']}/{d['capture→compositor']}/{d['compositor→output']} | "
                     f"{s['cpu_cores']} | {s['peak_rss_mb']} |")
    return "\n".join(lines)


AUTO_CANDIDATES = [
    {"input_size": 288, "threads": 1, "workers": 2},
    {"input_size": 256, "threads": 1, "workers": 2},
    {"input_size": 224, "threads": 1, "workers": 2},
]
# Not below 224: MODNet's IoU drops fast there (0.94 at 192, 0.84 at 160 on the portrait set),
# and the lite model is then both better and far cheaper.
AUTO_RATE_CAP = 15.0  # Hz: mattes beyond this add little at 30 fps (the refiner tracks the frame) and cost CPU


def pick_runtime(calibrate: str | None) -> tuple[dict, str]:
    """The cheapest runtime/precision whose MODNet mattes agree with onnxruntime fp32 here."""
    from ..config import MattingConfig
    from ..models.matting.precision import check_live_model

    best, cands = check_live_model(MattingConfig(), calibrate=calibrate)
    print("| runtime | precision | CPU ms per matte (1 thread) | worst IoU vs fp32 | mean abs dalpha | IoU with truth below fp32 (unseen pictures) | used |")
    print("|---|---|---|---|---|---|---|")
    for c in cands:
        ms = f"{c.ms:.1f}" if c.ms else "-"
        print(f"| {c.runtime} | {c.precision} | {ms} | {c.iou:.4f} | {c.mae:.4f} | {c.truth_loss:.3f} | "
              f"{'yes' if c is best else 'no'}{'' if c.ok else ': ' + c.why} |")
    print(f"\nruntime: {best.label} ({best.why})\n")
    rt = "openvino" if best.runtime == "openvino" else "onnxruntime"
    return {"runtime": rt, "precision": best.precision}, best.why


def check_stills() -> dict | None:
    """The object model's runtime, checked again and recorded (stills use it; see
    :func:`vcam.models.matting.precision.resolve`); ``None`` where IS-Net is not cached."""
    from ..config import MattingConfig
    from ..errors import ModelError
    from ..models import store
    from ..models.matting.precision import check_still_model

    try:
        store.resolve("isnet", fetch=False)
    except ModelError:
        print("stills: IS-Net is not cached (`vcam models pull isnet`); its runtime is chosen on first use\n")
        return None
    best, cands = check_still_model(MattingConfig(model="isnet"))
    print("| stills model | runtime | precision | s per picture | worst IoU vs fp32 | mean abs dalpha | IoU with truth below fp32 | used |")
    print("|---|---|---|---|---|---|---|---|")
    for c in cands:
        print(f"| isnet | {c.runtime} | {c.precision} | {c.ms / 1e3:.2f} | {c.iou:.4f} | {c.mae:.4f} | {c.truth_loss:.3f} | "
              f"{'yes' if c is best else 'no'}{'' if c.ok else ': ' + c.why} |")
    print(f"\nstills: isnet on {best.label} ({best.why})")
    from ..offline.still import mirror_fits

    mirror, mirror_why = mirror_fits("isnet", store.resolve("isnet", fetch=False), best.runtime, best.precision)
    print(f"stills: the object path {'also reads' if mirror else 'does not read'} each picture's mirror image "
          f"with matting.still_object_mirror: auto ({mirror_why})\n")
    return {"model": "isnet", "runtime": best.runtime, "precision": best.precision, "why": best.why,
            "mirror": mirror, "mirror_why": mirror_why}


def auto(size, fps, seconds, config, min_hz: float = 10.0, base: dict | None = None) -> tuple[dict, list, str]:
    """Largest MODNet input (best edges) whose run keeps the output rate and reaches ``min_hz``;
    failing that, the ``lite`` model when vcam[lite] is installed and it does; failing that,
    the MODNet input with the highest matting rate. Where MODNet runs faster than
    ``AUTO_RATE_CAP``, the rate is capped there (``matting.max_hz``)."""
    import importlib.util

    have_lite = importlib.util.find_spec("ai_edge_litert") is not None
    rows = []
    base = base or {}
    for cand in AUTO_CANDIDATES:
        cand = {**base, **cand}
        s = run_one(size, fps, seconds, {"matting": cand, "run": {"cpu_budget": "off"}}, config)
        rows.append((cand, s))
        if s["output_fps"] >= 0.97 * fps and s["matting_hz"] >= min_hz:
            why = (f"input {cand['input_size']} is the largest that keeps {fps:g} fps out with "
                   f"matting at {s['matting_hz']} Hz (≥ {min_hz:g} Hz) on this machine")
            if s["matting_hz"] > AUTO_RATE_CAP:
                cand = dict(cand, max_hz=AUTO_RATE_CAP)
                why += f"; capped at {AUTO_RATE_CAP:g} Hz to leave the call its CPU ({s['cpu_cores']} cores uncapped)"
            return cand, rows, why
    best_cand, best = max(rows, key=lambda r: r[1]["matting_hz"])
    if have_lite:
        # This CPU cannot run MODNet fast enough, and what it manages takes every core the call
        # needs: the selfie model keeps up at a fraction of the CPU (its edges are softer).
        cand = {"model": "lite"}
        s = run_one(size, fps, seconds, {"matting": cand, "run": {"cpu_budget": "off"}}, config)
        rows.append((cand, s))
        if s["output_fps"] >= 0.97 * fps and s["matting_hz"] >= min_hz:
            return cand, rows, (f"MODNet reaches at most {best['matting_hz']} Hz here (input "
                                f"{best_cand['input_size']}, {best['cpu_cores']} cores); the lite model keeps "
                                f"{fps:g} fps out with mattes at {s['matting_hz']} Hz on {s['cpu_cores']} cores "
                                f"(softer edges than MODNet; `vcam --model modnet` when they matter more)")
    cand, s = best_cand, best
    hint = "" if have_lite else "; pip install 'vcam[lite]' for a lighter model"
    return cand, rows, (f"no candidate reached {min_hz:g} Hz here; input {cand['input_size']} gives "
                        f"{s['matting_hz']} Hz (smaller inputs lose too much quality){hint}")


def write_user_config(matting: dict) -> Path:
    p = user_config_path()
    data = load_yaml(p) if p.exists() else {}
    data.setdefault("matting", {}).update(matting)
    merge(Config(), data, str(p))  # validate before writing
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


def _unbudgeted(layer: dict) -> dict:
    """A variant runs as written: no CPU budget moving its model or input, unless it sets one."""
    layer.setdefault("run", {}).setdefault("cpu_budget", "off")
    return layer


def clips_bench(a) -> list:
    """vcam (default, each --variant, each --budgets) and, with --peers, the peer recipes, on
    each --source clip, in one run."""
    size = parse_size(a.sizes.split(",")[0])
    sources = a.source or ["sample"]
    budgets = [b.strip() for b in (a.budgets or "").split(",") if b.strip()]
    rows, out = [], []
    configs = [("vcam default", {})] + [(f"vcam {v}", _unbudgeted(parse_variant(v))) for v in a.variant]
    configs += [(f"vcam --cpu-budget {b}", {"run": {"cpu_budget": b}}) for b in budgets]
    layers = dict(configs)
    for src in sources:
        clip = Path(src).name if src != "sample" else "sample"
        for name, layer in configs:
            s = run_one(size, a.fps, a.seconds, layer, a.config, source=src)
            rows.append((clip, name, s))
            print(f"  {clip}: {name}: {s['output_fps']} fps, {s['matting_hz']} Hz, {s['cpu_cores']} cores",
                  file=sys.stderr)
        if a.peers:
            if src == "sample":
                raise ConfigError("--peers runs on video files: give --source CLIP.mp4")
            for recipe in ("lfbw", "modnet-worker"):
                s = run_peer(recipe, src, a.seconds)
                rows.append((clip, s["recipe"], s))
                print(f"  {clip}: {s['recipe']}: {s['output_fps']} fps, {s['cpu_cores']} cores", file=sys.stderr)
    print(peers_table(rows))
    quality = {} if getattr(a, "no_quality", False) else rate_quality(rows, a.config, layers)
    if quality:
        print("\n" + quality_table(rows, quality))
    for clip, name, s in rows:
        out.append({"clip": clip, "recipe": name, "stats": s, **({"quality": quality[(clip, name)]}
                                                                 if (clip, name) in quality else {})})
    return out


def _reached(s: dict, layer: dict, config: str | None) -> tuple[Config, float]:
    """The configuration a vcam run ended on (its variant, and the model and input size its CPU
    budget chose) and the matting rate it reached."""
    cfg = merge(load_config(config), layer, "--variant")  # as the run had it: user config < --config < variant
    chosen = (s.get("budget") or {}).get("chosen") or f"{s['model']}@{s['input_size']}"
    model, _, size = chosen.partition("@")
    cfg = cfg.replace(matting={"model": model, **({"input_size": int(size)} if size else {})})
    return cfg, float(s["matting_hz"])


def rate_quality(rows, config: str | None, layers: dict) -> dict:
    """vcam's matte quality at the rate each of its runs reached (and with a matte every frame,
    for reference), on moving clips of the shipped generated full-body pictures with true masks
    (:func:`vcam.offline.quality.moving_quality`)."""
    from ..models.matting import create as create_matter
    from ..offline.quality import moving_quality

    out: dict = {}
    for clip, name, s in rows:
        if name.startswith("peer") or not s.get("matting_hz"):
            continue
        cfg, hz = _reached(s, layers.get(name, {}), config)
        print(f"  {clip}: {name}: matte quality at {hz:g} Hz",
              file=sys.stderr)
        # Long enough for four mattes at that rate (each is used a period after its frame): at 2 Hz a
        # 1 s clip showed only the first matte, so only the model's first reading was measured.
        frames = int(min(150, max(30, math.ceil(4 * 30 / max(hz, 0.1)))))
        matter = create_matter(cfg.matting)
        try:
            out[(clip, name)] = {"model": cfg.matting.model, "input_size": cfg.matting.input_size, "hz": hz,
                                 "at_rate": moving_quality(cfg, hz, matter=matter, frames=frames),
                                 "every_frame": moving_quality(cfg, 0.0, matter=matter, frames=frames)}
        finally:
            matter.close()
    return out


def quality_table(rows, quality: dict) -> str:
    head = ("| clip | recipe | model | matting Hz | moving IoU | moving BF | moving dtSSD | "
            "every frame: IoU / BF / dtSSD |")
    lines = ["Matte quality at the rate reached (generated full-body pictures swaying ±4 %, true masks; "
             "`vcam process --matting-hz`):", head, "|" + "---|" * (head.count("|") - 1)]
    for clip, name, _s in rows:
        q = quality.get((clip, name))
        if q is None:
            continue
        r, e = q["at_rate"], q["every_frame"]
        model = q["model"] if q["model"] == "lite" else f"{q['model']}@{q['input_size']}"
        lines.append(f"| {clip} | {name} | {model} | {q['hz']:g} | {r['iou']:.3f} | {r['bf']:.3f} | {r['dtssd']:.2f} | "
                     f"{e['iou']:.3f} / {e['bf']:.3f} / {e['dtssd']:.2f} |")
    return "\n".join(lines)


def main(a) -> int:
    sizes = [parse_size(s) for s in a.sizes.split(",") if s]
    result: dict = {"runs": []}
    if a.auto:
        size = sizes[0]
        rt, rt_why = pick_runtime(a.calibrate)
        result["stills"] = check_stills()
        cand, rows, why = auto(size, a.fps, a.seconds, a.config, base=rt)
        print(table([(", ".join(f"{k}={v}" for k, v in c.items()), s) for c, s in rows]))
        # Every key auto decides is written, so nothing from an earlier choice lingers (max_hz 0: no cap).
        cand = {**rt, **cand} if cand.get("model") != "lite" else {**cand, "runtime": "auto", "precision": "fp32"}
        path = write_user_config({"model": "modnet", "max_hz": 0.0, **cand})
        print(f"\nchose {cand} for {size[0]}x{size[1]}@{a.fps:g}: {why}\nwritten to {path}")
        result.update(auto=cand, why=why, runs=[{"variant": c, "stats": s} for c, s in rows])
    elif a.source or a.peers or a.budgets:
        result["clips"] = clips_bench(a)
    else:
        variants = a.variant or [""]
        rows = []
        for size in sizes:
            for v in variants:
                s = run_one(size, a.fps, a.seconds, _unbudgeted(parse_variant(v)) if v else {}, a.config)
                rows.append((v or "default", s))
                result["runs"].append({"variant": v or "default", "stats": s})
                print(f"  {v or 'default'} @ {size[0]}x{size[1]}: {s['output_fps']} fps, {s['matting_hz']} Hz",
                      file=sys.stderr)
        print(table(rows))
    if not a.no_kernels:
        k = kernels_report()
        result["kernels"] = k
        print(f"\nkernels at {k['size'][0]}x{k['size'][1]}: copy bandwidth {k['copy_GBps']} GB/s; blend "
              f"{k['blend_ms']} ms = {k['blend_vs_floor']}x the {k['blend_floor_ms']} ms it takes to stream its bytes; "
              f"whole compositor (refine + blur + blend) {k['compositor_ms']} ms")
    if a.json:
        write_json(a.json, result)
    return 0
