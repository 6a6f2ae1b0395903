"""`vcam bench` runs the real pipeline per configuration and reports every figure."""
import json

import pytest

from vcam.cli import bench
from vcam.cli import main
from vcam.errors import ConfigError


def test_parse_variant():
    assert bench.parse_variant("input_size=256,threads=2,smoothing.kind=ema") == {
        "matting": {"input_size": 256, "threads": 2}, "smoothing": {"kind": "ema"}}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        bench.parse_variant("input_size")


def test_bench_side_by_side(tmp_path, capsys, modnet_path):
    out = tmp_path / "b.json"
    rc = main(["bench", "--sizes", "320x180", "--seconds", "3", "--variant", "input_size=192",
               "--variant", "input_size=224,max_hz=5", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "| input_size=192 | 320x180 |" in text and "copy bandwidth" in text
    data = json.loads(out.read_text())
    assert len(data["runs"]) == 2
    for run in data["runs"]:
        s = run["stats"]
        assert s["output_fps"] > 25 and s["matting_hz"] > 0 and s["size"] == [320, 180]
        assert s["stage_ms"]["matting"]["p50"] > 0 and 0 < s["latency_ms"]["p50"] < 1000
        assert 0 < s["cpu_cores"] <= 2.5 and s["peak_rss_mb"] > 50
        assert f"| {run['variant']} | 320x180 | {s['output_fps']} | {s['matting_hz']} |" in text
    assert [r["stats"]["input_size"] for r in data["runs"]] == [192, 224]
    assert data["runs"][1]["stats"]["matting_hz"] <= 5.5  # the rate cap is honoured
    k = data["kernels"]
    assert k["copy_GBps"] > 0 and k["blend_vs_floor"] > 0 and k["compositor_ms"] > 0


def _stats(hz, fps=30.2, cores=1.9):
    return {"output_fps": fps, "matting_hz": hz, "cpu_cores": cores}


def test_auto_picks_the_largest_modnet_input_that_keeps_up(monkeypatch):
    hz = {288: 6.0, 256: 11.0, 224: 14.0}
    monkeypatch.setattr(bench, "run_one", lambda size, fps, secs, v, cfg: _stats(hz[v["matting"]["input_size"]]))
    cand, rows, why = bench.auto((1280, 720), 30, 5, None)
    assert cand["input_size"] == 256 and "max_hz" not in cand and len(rows) == 2 and "256" in why
    # A fast machine: the largest input, its rate capped so the call keeps its CPU.
    monkeypatch.setattr(bench, "run_one", lambda size, fps, secs, v, cfg: _stats(25.0))
    cand, rows, why = bench.auto((1280, 720), 30, 5, None)
    assert cand == {"input_size": 288, "threads": 1, "workers": 2, "max_hz": 15.0} and "capped" in why


def test_auto_falls_back_to_lite_where_modnet_cannot_keep_up(monkeypatch):
    pytest.importorskip("ai_edge_litert", reason="pip install 'vcam[lite]'")

    def run(size, fps, secs, v, cfg):
        m = v["matting"]
        return _stats(15.0, cores=0.36) if m.get("model") == "lite" else _stats(9.0 - m["input_size"] / 100)
    monkeypatch.setattr(bench, "run_one", run)
    cand, rows, why = bench.auto((1280, 720), 30, 5, None)
    assert cand == {"model": "lite"} and "lite" in why and "0.36 cores" in why
