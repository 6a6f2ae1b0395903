"""`vcam bench` runs the real pipeline per configuration and reports every figure."""
import json

import pytest

from vcam import bench
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
        for key in ("output_fps", "matting_hz", "stage_ms", "latency_ms", "dropped", "cpu_cores", "peak_rss_mb"):
            assert key in s
        assert s["output_fps"] > 25
    assert data["runs"][1]["stats"]["matting_hz"] <= 5.5  # the rate cap is honoured
    k = data["kernels"]
    assert k["copy_GBps"] > 0 and k["blend_vs_floor"] > 0 and k["compositor_ms"] > 0
