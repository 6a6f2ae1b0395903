"""Issue 16: the CPU budget (the governor, live and in ``vcam process``) and the runtimes behind
one interface (OpenVINO fp32/bf16/int8, each checked against onnxruntime fp32)."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from vcam import sample
from vcam.config import MattingConfig
from vcam.engine import budget
from vcam.errors import ConfigError, ModelError

from helpers import patch_mean, sample_points

VCAM = [sys.executable, "-m", "vcam"]
HAVE_OV = __import__("importlib.util").util.find_spec("openvino") is not None


def run_vcam(*args, timeout=240):
    return subprocess.run([*VCAM, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def error_line(r) -> str:
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.startswith("vcam: error:")]
    assert r.returncode != 0 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


# --- the setting ----------------------------------------------------------------------------

def test_budget_setting():
    assert budget.resolve("auto", cores=2) == 0.6 and budget.resolve("auto", cores=16) == 1.0
    assert budget.resolve("off") is None and budget.resolve("0.45", cores=2) == 0.45
    for bad, word in (("0", "outside"), ("-1", "outside"), ("3", "this machine has 2 cores"), ("lots", "number")):
        with pytest.raises(ConfigError, match=word):
            budget.resolve(bad, cores=2)


def test_bad_budget_is_one_line():
    too_many = (os.cpu_count() or 1) + 1
    for value in ("0", str(too_many), "fast"):
        line = error_line(run_vcam("run", "--source", "sample", "--no-virtualcam", "--seconds", "1",
                                   "--cpu-budget", value))
        assert "--cpu-budget" in line and ("give e.g. 0.6" in line or "'off'" in line), line


# --- the governor, on a simulated clock --------------------------------------------------------

def simulate(gov, seconds, *, cost, other, still_fraction=0.0, fps=30.0, start=0.0, cpu=0.0):
    """Frames at ``fps``; each may start an inference costing ``cost(level)`` CPU s; everything else
    costs ``other`` cores. A fraction of the frames is still (the matte is reused, no inference)."""
    rng = np.random.default_rng(0)
    cpu0, t, mattes, levels = cpu, start, 0, []
    for i in range(int(seconds * fps)):
        t = start + i / fps
        cpu += other / fps
        gov.observe(t, cpu)
        if gov.decide(t) is not None:
            levels.append(gov.level.label)
        if gov.may_start(t) == 0.0:
            if rng.random() < still_fraction:
                gov.spent(0.0002, inferred=False)
            else:
                c = cost(gov.level)
                cpu += c
                gov.spent(c)
                mattes += 1
    return (cpu - cpu0) / (t - start), mattes / (t - start), levels, cpu


@pytest.mark.parametrize("cores", [0.3, 0.6, 1.0])
def test_governor_holds_the_budget(cores):
    levels, start = budget.ladder("modnet", 224, lite=False)
    gov = budget.Governor(cores, levels, start)
    mean, hz, _, _ = simulate(gov, 60, cost=lambda lv: 0.07 * lv.cost, other=0.2)
    assert mean <= cores + 0.05, (mean, hz)
    assert mean >= min(cores, 0.2 + 15 * 0.07) - 0.1  # it uses what it may, not far less
    assert 0 < hz <= 15.5


def test_budget_below_the_pipelines_own_floor_is_said():
    """Where capture and compositing alone take more than the budget, the output rate is kept and the
    governor says so (status below_floor), rather than pretending the budget holds."""
    levels, start = budget.ladder("modnet", 224, lite=True)
    gov = budget.Governor(0.3, levels, start)
    mean, hz, _, _ = simulate(gov, 20, cost=lambda lv: 0.008 if lv.model == "lite" else 0.09 * lv.cost, other=0.35)
    st = gov.status()
    assert st["below_floor"] and st["other_cores"] == pytest.approx(0.35, abs=0.03) and gov.level.label == "lite"
    assert "leaves nothing" in st["why"], st["why"]  # not "0.0 Hz fit the budget"
    assert hz > 0  # a matte still comes now and then (max_gap), so the picture follows the person
    ok = budget.Governor(0.6, *budget.ladder("modnet", 224, lite=True))
    simulate(ok, 20, cost=lambda lv: 0.008 if lv.model == "lite" else 0.09 * lv.cost, other=0.2)
    assert not ok.status()["below_floor"]


def test_ladder_steps_down_then_back_up():
    levels, start = budget.ladder("modnet", 224, lite=True)
    assert [lv.label for lv in levels] == ["modnet@256", "modnet@224", "modnet@192", "lite"] and start == 1
    gov = budget.Governor(0.5, levels, start)
    cost = lambda lv: 0.008 if lv.model == "lite" else 0.09 * lv.cost  # noqa: E731
    mean, hz, moves, cpu = simulate(gov, 20, cost=cost, other=0.2)  # moving: MODNet cannot reach 8 Hz here
    assert gov.level.label == "lite" and hz >= 8 and mean <= 0.55, (moves, hz, mean)
    mean, _, moves, _ = simulate(gov, 30, cost=cost, other=0.2, still_fraction=0.95, start=20, cpu=cpu)  # still
    assert gov.level.model == "modnet", moves  # few mattes needed: the better model again
    assert gov.status()["chosen"] == gov.level.label and "fit the budget" in gov.status()["why"]


def test_a_budget_set_while_running_is_held_from_then_on():
    """``vcam ctl budget``: the ladder judges its rungs against the new budget at once, down and up."""
    levels, start = budget.ladder("modnet", 224, lite=True)
    gov = budget.Governor(1.0, levels, start)
    cost = lambda lv: 0.008 if lv.model == "lite" else 0.05 * lv.cost  # noqa: E731
    _, _, _, cpu = simulate(gov, 20, cost=cost, other=0.2)
    assert gov.level.model == "modnet"
    gov.set_budget(0.35)
    assert gov.status()["budget_cores"] == 0.35 and "set to 0.35" in gov.status()["why"]
    _, _, _, cpu = simulate(gov, 10, cost=cost, other=0.2, start=20, cpu=cpu)
    mean, hz, _, cpu = simulate(gov, 20, cost=cost, other=0.2, start=30, cpu=cpu)
    assert gov.level.label == "lite" and mean <= 0.35 + 0.05 and hz >= 8, (gov.status(), mean, hz)
    gov.set_budget(1.0)
    simulate(gov, 60, cost=cost, other=0.2, still_fraction=0.9, start=50, cpu=cpu)
    assert gov.level.model == "modnet", gov.status()


def test_a_call_that_alternates_still_and_moving_does_not_swing_the_ladder_each_time():
    """Still moments make MODNet look affordable, movement drops it again: each swing loads a model.
    Each fall from a level doubles the wait before returning to it, so a call that keeps alternating
    settles, and one that stays still long enough still gets the better model back."""
    levels, start = budget.ladder("modnet", 224, lite=True)
    gov = budget.Governor(0.5, levels, start)
    cost = lambda lv: 0.008 if lv.model == "lite" else 0.09 * lv.cost  # noqa: E731
    t, cpu, moves = 0.0, 0.0, []
    for k in range(60):  # 10 minutes: 5 s still, 5 s moving
        _, _, m, cpu = simulate(gov, 5, cost=cost, other=0.2, still_fraction=0.95 if k % 2 else 0.0, start=t, cpu=cpu)
        moves += m
        t += 5
    assert 2 <= len(moves) <= 12, moves  # without the backoff: about one swing every 10 s, 60 of them
    _, _, m, _ = simulate(gov, 400, cost=cost, other=0.2, still_fraction=0.95, start=t, cpu=cpu)
    assert gov.level.model == "modnet", m  # a long still stretch: the better model again


def test_a_still_call_that_a_level_serves_keeps_it_though_it_could_not_serve_motion():
    """MODNet at 224 sustains about 6 mattes/s here, below the floor of 8, and a still call asks for about 4:
    the bucket holds an inference back now and then (a burst), which is no reason to fall to the lite model.
    Before, every such hold-back counted, and the ladder swung between MODNet and lite every few seconds.
    Motion (a matte asked for every frame) still takes it down, to a level that sustains the floor."""
    levels, start = budget.ladder("modnet", 224, lite=True)
    gov = budget.Governor(1.0, levels, start)
    cost = lambda lv: 0.008 if lv.model == "lite" else 0.1 * lv.cost  # noqa: E731
    mean, hz, moves, cpu = simulate(gov, 60, cost=cost, other=0.35, still_fraction=0.73)
    assert 3 <= hz <= 5.5 and gov.level.model == "modnet" and "lite" not in moves, (hz, moves)
    assert len(moves) <= 2, moves
    _, hz, moves, _ = simulate(gov, 10, cost=cost, other=0.35, start=60, cpu=cpu)
    assert moves and gov.sustained_hz() >= gov.floor and hz >= 7, (hz, moves)  # 192 (8.4 Hz) or lite


def test_a_matting_rate_capped_below_the_floor_is_not_a_reason_to_step_down(monkeypatch):
    """`matting.max_hz 4`: the user asked for 4 mattes/s, so 4 sustained is enough; with the floor of 8
    every level would fail it and the ladder would fall to the lightest model."""
    levels, start = budget.ladder("modnet", 224, lite=True)
    gov = budget.Governor(0.6, levels, start, ceiling_hz=4.0)
    assert gov.floor == pytest.approx(3.6)
    _, hz, moves, _ = simulate(gov, 60, cost=lambda lv: 0.008 if lv.model == "lite" else 0.09 * lv.cost, other=0.2)
    assert gov.level.model == "modnet" and "lite" not in moves and 3 < hz <= 4.2, (moves, hz)
    monkeypatch.setattr(budget, "recorded_ms", lambda cfg: 178.0)  # 3.6 mattes/s of it need 0.64 cores
    op = budget.opening(dataclasses.replace(MattingConfig(), max_hz=4.0), 0.8, lite=True)
    assert op.matting.model == "modnet" and op.matting.input_size == 192 and "3.6 mattes/s" in op.why, op.why


def test_a_budget_the_configured_model_cannot_meet_starts_on_the_rung_that_can(monkeypatch):
    """Where this machine's runtime check measured the configured model too slow for the floor rate
    within what the budget leaves capture and compositing, the run loads the first rung that could,
    and the ladder still starts from the configured model: it can step back up, knowing that model's
    cost."""
    m = MattingConfig()
    monkeypatch.setattr(budget, "recorded_ms", lambda cfg: 178.0)  # a slow AVX2 machine's MODNet
    op = budget.opening(m, 0.6, lite=True)
    assert (op.matting.model, op.configured) == ("lite", m) and "178 ms" in op.why
    assert "1.42 cores, and capture and compositing about 0.25, of the 0.6" in op.why, op.why
    op = budget.opening(m, 2.0, lite=True)  # 1.42 + 0.25 cores fit a 2-core budget: the configured model
    assert op.matting == m and not op.why
    assert budget.opening(m, 1.4, lite=True).matting.input_size == 192  # the smaller input is enough there
    # MODNet int8 on an AVX2 EPYC: 84 ms at 224, so 192 needs 0.49 cores at 8 Hz. Alone that fits 0.6; with
    # capture and compositing it does not (the demo measured 0.69 cores starting there, 0.51 on lite).
    monkeypatch.setattr(budget, "recorded_ms", lambda cfg: 84.0)
    assert budget.opening(m, 0.6, lite=True).matting.model == "lite"
    assert budget.opening(m, 1.0, lite=True).matting == m
    assert budget.opening(m, 0.6, lite=True, pixel_rate=640 * 360 * 30).matting.input_size == 192  # a quarter of the pixels
    assert budget.opening(m, 0.6, lite=False).matting.input_size == 192  # no lite: the last rung
    monkeypatch.setattr(budget, "recorded_ms", lambda cfg: 0.0)  # not checked yet: as configured
    assert budget.opening(m, 0.6, lite=True).matting == m
    assert budget.opening(m, None, lite=True).matting == m
    levels, start = budget.ladder("modnet", 224, lite=True)
    gov = budget.Governor(0.6, levels, start)
    gov.open_at(budget.Opening(dataclasses.replace(m, model="lite"), m, 178.0, "started at lite"), start)
    assert gov.level.label == "lite" and gov.status()["why"] == "started at lite"
    assert gov.cost(start) == pytest.approx(0.178) and gov.cost(start + 1) == pytest.approx(0.178 * (192 / 224) ** 2)


# --- live ------------------------------------------------------------------------------------

def test_live_run_under_a_budget(tmp_path):
    out = tmp_path / "stats.json"
    r = run_vcam("run", "--source", "sample", "--no-virtualcam", "--seconds", "10", "--cpu-budget", "0.5",
                 "--stats-json", out, "--log-level", "info")
    assert r.returncode == 0, r.stderr
    s = json.loads(out.read_text())
    b = s["budget"]
    assert b["budget_cores"] == 0.5 and b["chosen"] and b["why"]
    assert s["output_fps"] >= 27  # output fps never gives way to the budget
    assert b["mean_cores"] <= 0.5 + 0.15, b  # the start (loading, first compiles) included
    assert s["frames"]["matted"] > 0 and s["frames"]["matting_errors"] == 0


def test_ctl_status_shows_the_budget(tmp_path):
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path))
    p = subprocess.Popen([*VCAM, "run", "--source", "sample", "--no-virtualcam", "--seconds", "20", "--name", "bud",
                          "--cpu-budget", "0.7"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(60):
            r = subprocess.run([*VCAM, "ctl", "--name", "bud", "status"], env=env, capture_output=True, text=True)
            if r.returncode == 0 and '"budget"' in r.stdout and '"chosen"' in r.stdout:
                break
            __import__("time").sleep(0.5)
        st = json.loads(r.stdout)
        assert st["budget"]["budget_cores"] == 0.7 and st["budget"]["chosen"] and "cpu_cores" in st, r.stdout
        r = subprocess.run([*VCAM, "ctl", "--name", "bud", "budget", "0.4"], env=env, capture_output=True, text=True)
        st = json.loads(r.stdout)
        assert r.returncode == 0 and st["budget"]["budget_cores"] == 0.4 and "set to 0.4" in st["budget"]["why"]
        for bad, says in (("off", "cannot be turned off while running"), ("9999", "outside (0,")):
            r = subprocess.run([*VCAM, "ctl", "--name", "bud", "budget", bad], env=env, capture_output=True, text=True)
            assert r.returncode != 0 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    finally:
        p.terminate()
        p.wait(10)


# --- offline, at the budget's decisions ---------------------------------------------------------

def test_process_under_a_budget(tmp_path):
    src = tmp_path / "in.mp4"
    w = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"mp4v"), 30, (640, 360))
    # 10 s: the ladder may move only after 3 s (loading and first-frame compiles cost CPU), and over a
    # shorter clip that start, at the configured model, is most of the mean (0.41 cores in a 5 s CI run).
    n = 300
    for i in range(n):
        w.write(sample.render(i / 30, 640, 360))
    w.release()
    alphas, stats = tmp_path / "alpha", tmp_path / "s.json"
    r = run_vcam("process", src, "--alpha-out", alphas, "--cpu-budget", "0.3", "--stats-json", stats)
    assert r.returncode == 0, r.stderr
    s = json.loads(stats.read_text())
    assert s["frames"] == n and len(list(alphas.glob("*.png"))) == n
    assert 0 < s["mattes"] < n and s["budget"]["budget_cores"] == 0.3  # fewer mattes than frames
    assert s["budget"]["mean_cores"] <= 0.3 + 0.1, s["budget"]
    # Every frame is still matted well: the held matte is refined against each frame.
    a = cv2.imread(str(alphas / "00120.png"), cv2.IMREAD_GRAYSCALE)
    person, background = sample_points(120 / 30, 640, 360)
    assert min(patch_mean(a, p) for p in person) > 150 and max(patch_mean(a, p) for p in background) < 80


# --- runtimes -----------------------------------------------------------------------------

def test_precision_needs_openvino():
    from vcam.models.matting import create

    with pytest.raises(ModelError, match="set matting.runtime: openvino"):
        create(MattingConfig(precision="bf16", runtime="onnxruntime"))


@pytest.mark.skipif(not HAVE_OV, reason="OpenVINO is not installed (pip install 'vcam[openvino]')")
def test_openvino_agrees_with_onnxruntime(modnet_path):
    from vcam.models.matting import create
    from vcam.models.matting.precision import agreement

    frames = [sample.render(t, 1280, 720) for t in (0.5, 3.0, 6.0)]
    ref = create(MattingConfig(threads=1, runtime="onnxruntime"))
    ov = create(MattingConfig(threads=1, runtime="openvino"))
    iou, mae = agreement([ref.infer(f) for f in frames], [ov.infer(f) for f in frames])
    assert iou >= 0.999 and mae < 1e-3
    assert ov.session.get_providers()[0].startswith("OpenVINO")


@pytest.mark.skipif(not HAVE_OV, reason="OpenVINO is not installed (pip install 'vcam[openvino]')")
def test_openvino_runs_as_many_inferences_at_once_as_there_are_callers(tmp_path, modnet_path):
    """OpenVINO runs one request per stream at a time: with one stream, two 1-thread callers (a folder
    in `vcam remove`, `vcam serve`'s pool) took turns on one core. The session gets a stream per
    caller, each caller's matte is its own, and `vcam remove` tells the stills session how many
    pictures run at once (one picture: one stream with every core)."""
    import argparse
    import threading

    from vcam.config import Config
    from vcam.models.matting import create
    from vcam.offline.batch import make_job

    frames = [sample.render(t, 1280, 720) for t in (0.5, 3.0)]
    ov = create(MattingConfig(threads=1, runtime="openvino"), streams=2)
    assert ov.session.compiled.get_property("NUM_STREAMS") == 2
    assert ov.session.compiled.get_property("INFERENCE_NUM_THREADS") == 2
    alone = [ov.infer(f) for f in frames]
    got = [None, None]

    def one(i):
        got[i] = ov.infer(frames[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for a, b in zip(alone, got):
        assert np.abs(a - b).max() < 1e-5
    single = create(MattingConfig(threads=2, runtime="openvino"))
    assert single.session.compiled.get_property("NUM_STREAMS") == 1

    a = argparse.Namespace(workers=None, format=None, output=None, only_mask=True, bgcolor=None, bg=None, blur=None,
                           alpha_matting=False, alpha_matting_foreground_threshold=240,
                           alpha_matting_background_threshold=10, alpha_matting_erode_size=10, post_process=False)
    folder = make_job(Config(), a, ["a.png", "b.png", "c.png"]).cfg.matting
    assert (folder.threads, folder.workers) == (1, min(3, os.cpu_count()))
    one_pic = make_job(Config(), a, ["a.png"]).cfg.matting
    assert one_pic.workers == 1 and one_pic.threads == os.cpu_count()


@pytest.mark.skipif(not HAVE_OV, reason="OpenVINO is not installed (pip install 'vcam[openvino]')")
def test_precision_check_and_int8(tmp_path, monkeypatch, modnet_path):
    """Every precision is timed and checked against fp32 on shipped frames, and against the true masks of
    shipped pictures calibration did not see; int8 is calibrated on them (never on evaluation data)
    and refused where it is not calibrated."""
    from vcam.models.matting import create
    from vcam.models.matting.precision import MAX_MAE, MAX_TRUTH_LOSS, MIN_IOU, choose, shipped_frames

    monkeypatch.setenv("VCAM_CACHE_DIR", str(tmp_path))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "modnet.onnx").symlink_to(modnet_path)
    with pytest.raises(ModelError, match="vcam bench --auto"):
        create(MattingConfig(runtime="openvino", precision="int8"))
    best, cands = choose(MattingConfig(), check_frames=shipped_frames(640, 360, n=3))
    labels = {c.label: c for c in cands}
    assert {"onnxruntime fp32", "openvino fp32", "openvino int8", "openvino bf16"} <= set(labels)
    assert labels["openvino fp32"].ok and labels["openvino fp32"].iou >= MIN_IOU
    for c in cands:
        if c.ms:
            agrees = c.iou >= MIN_IOU and c.mae <= MAX_MAE and c.truth_loss <= MAX_TRUTH_LOSS
            assert c.ms > 0 and c.ok == agrees
        else:
            assert not c.ok and c.why
    assert best.ok and best.ms == min(c.ms for c in cands if c.ok)
    assert (tmp_path / "models" / "modnet.int8.xml").exists()
    # Calibrated on full bodies in other poses too, int8 reads the unseen ones about as fp32 does: −0.007 on
    # an AVX2 EPYC. On head and shoulders alone it lost 0.041-0.053 IoU against the truth there (AVX2 EPYC,
    # Zen 5, Xeon with AMX; one pose 0.912 → 0.714). int8 kernels differ by instruction set, so the bound
    # here is twice the check's, still well under the old loss; whether the check takes it is the CPU's.
    assert labels["openvino int8"].truth_loss <= 2 * MAX_TRUTH_LOSS
    m = create(dataclasses.replace(MattingConfig(threads=1), runtime="openvino", precision="int8"))
    alpha = m.infer(sample.render(1.0, 640, 360))
    assert alpha.shape == (224, 384) and alpha.max() > 0.9 and alpha.min() < 0.1


def test_modnets_runtime_is_checked_at_the_live_size_whichever_path_asks_first(tmp_path, monkeypatch, modnet_path):
    """Stills run MODNet larger (320) and never take its int8, but the one-time check they trigger records
    int8's verdict and the CPU per matte for the live camera (224): it runs at the live size. (A record made
    at 320 had int8 pass where a check at 224 refused it, 0.041 IoU lower against the truth.)"""
    from vcam.config import Config
    from vcam.models.matting import precision
    from vcam.offline.still import Session

    pytest.importorskip("openvino")
    monkeypatch.setenv("VCAM_CACHE_DIR", str(tmp_path))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "modnet.onnx").symlink_to(modnet_path)
    asked = []

    def check(cfg, **kw):
        asked.append(cfg)
        c = precision.Candidate("onnxruntime", "fp32", ms=80.0, why="the reference")
        precision._write_record(cfg.model, modnet_path, c, [c])
        return c, [c]

    monkeypatch.setattr(precision, "check_live_model", check)
    cfg = Config().replace(matting={"still_ensemble": False})
    s = Session("modnet", cfg=cfg)
    assert s.matter.cfg.input_size == cfg.matting.still_input_size != cfg.matting.input_size
    assert [c.input_size for c in asked] == [cfg.matting.input_size]  # the live camera's size
    Session("modnet", cfg=cfg)
    assert len(asked) == 1  # recorded: not checked again
    s.matter.close()


# --- spending pixels on the person ---------------------------------------------------------------

def test_person_crop(modnet):
    """A small person in a wide frame: after the first whole-frame matte the model sees the person's
    box; the pasted matte keeps the person and nothing far away; when the person jumps to the other
    side, the next matte takes the whole frame again and finds them there."""
    from vcam.core.frames import Frame
    from vcam.config import SmoothingConfig
    from vcam.engine.units import MattingUnit
    from vcam.imaging import smoothing

    person = cv2.resize(sample.portrait(), (360, 360))
    room = cv2.resize(cv2.GaussianBlur(sample.portrait(), (0, 0), 30), (1280, 720))

    def frame_at(x0):
        f = room.copy()
        f[360:, x0:x0 + 360] = person
        return f

    unit = MattingUnit(modnet, smoothing.create(SmoothingConfig(kind="none")), None, crop=True)
    for i in range(3):
        m = unit.process(Frame(frame_at(100), i, i * 0.05)).alpha
    assert unit.crop.crops == 2 and m.shape == modnet.input_shape(1280, 720)
    h, w = m.shape
    assert m[int(0.85 * h), int(280 / 1280 * w)] > 0.8  # the person (the face/suit at the crop's centre)
    assert m[:, int(0.6 * w):].max() < 0.05  # far from the box: nothing
    moved = [unit.process(Frame(frame_at(880), 3 + i, 0.2 + i * 0.05)).alpha for i in range(3)]
    assert unit.crop.crops <= 4  # the move was noticed at the crop's edge: a whole frame in between
    assert moved[-1][int(0.85 * h), int(1060 / 1280 * w)] > 0.8 and moved[-1][:, : int(0.3 * w)].max() < 0.05


@pytest.mark.skipif(not budget.lite_runtime(), reason="LiteRT is not installed (pip install 'vcam[lite]')")
def test_a_run_without_the_lite_model_fetches_it_and_the_ladder_can_fall_back_to_it(tmp_path, monkeypatch,
                                                                                   modnet_path, caplog):
    """A fresh install that pulled only MODNet: under a budget the slow model cannot meet, the live run
    fetches the lite model in the background (a detached process, here one that copies the real files in
    a second later, as the registry would) and the ladder steps down to it once it is cached."""
    import logging
    import shutil

    from vcam.config import Config
    from vcam.engine.parts import build_parts
    from vcam.live.pipeline import Pipeline
    from vcam.models import store

    files = [store.resolve("lite"), store.companion("lite-square")]
    monkeypatch.setenv("VCAM_CACHE_DIR", str(tmp_path))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "modnet.onnx").symlink_to(modnet_path)
    run = Config().run
    assert budget.should_fetch_lite(run, "modnet") and not budget.should_fetch_lite(run, "rvm")  # no ladder to lite
    assert not budget.should_fetch_lite(dataclasses.replace(run, fetch_lite=False), "modnet")
    started = []

    def fetch(name):
        started.append(name)
        copy = "; ".join(f"shutil.copy({str(f)!r}, {str(tmp_path / 'models' / ('.' + f.name))!r}); "
                         f"os.replace({str(tmp_path / 'models' / ('.' + f.name))!r}, "
                         f"{str(tmp_path / 'models' / f.name)!r})" for f in files if f is not None)
        return subprocess.Popen([sys.executable, "-c", f"import os, shutil, time; time.sleep(1.5); {copy}"])

    monkeypatch.setattr(store, "pull_detached", fetch)
    cfg = Config().replace(capture={"source": "sample", "width": 640, "height": 360, "fps": 15},
                           output={"virtualcam": False}, run={"cpu_budget": "0.2"},
                           matting={"runtime": "onnxruntime", "threads": 1})
    pipe = Pipeline(cfg, build_parts(cfg, sinks=[], cpu_budget=0.2))
    with caplog.at_level(logging.INFO, logger="vcam"):
        stats = pipe.run(10.0)
    log = caplog.text
    assert started == ["lite"] and "fetching the lite model in the background" in log, log
    assert "the ladder can now fall back to it" in log, log
    assert [lv.label for lv in pipe.governor.levels][-2:] == ["modnet@192", "lite"]
    assert stats["budget"]["chosen"] == "lite" and stats["model"] == "lite", stats["budget"]
    assert stats["frames"]["matted"] > 0 and stats["frames"]["matting_errors"] == 0

    # Already cached: nothing is fetched.
    started.clear()
    pipe = Pipeline(cfg, build_parts(cfg, sinks=[], cpu_budget=0.2))
    pipe.run(1.0)
    assert not started


# --- the still upgrade -------------------------------------------------------------------

def test_governor_lets_a_still_picture_have_the_configured_model_when_the_bucket_holds_it():
    """On a lighter model the configured one may make a still picture's matte, once the bucket holds
    its cost and two of the lighter mattes; that CPU counts against the budget, teaches the configured
    rung's cost, and is not one of the rate's mattes (the ladder's demand)."""
    levels, start = budget.ladder("modnet", 224, lite=True)
    gov = budget.Governor(0.5, levels, start)
    gov.still_upgrade = True
    assert gov.upgrade_level is None and not gov.may_upgrade()  # on the configured model: nothing to upgrade to
    cost = lambda lv: 0.008 if lv.model == "lite" else 0.12 * lv.cost  # noqa: E731
    _, _, _, cpu = simulate(gov, 20, cost=cost, other=0.2)  # moving: MODNet cannot reach 8 Hz, down to lite
    assert gov.level.label == "lite" and gov.upgrade_level.label == "modnet@224"
    assert gov.status()["still_upgrade"] == "modnet@224"
    gov.tokens = 0.05
    assert not gov.may_upgrade()  # not yet banked
    t = 20.0
    while not gov.may_upgrade():
        t += 0.25
        cpu += 0.2 * 0.25
        gov.observe(t, cpu)
        assert t < 25, gov.tokens
    need = gov.cost(gov.home) + 2 * gov.cost()
    assert gov.tokens >= need and gov._cap() >= need  # the cap lets it bank that much
    before, inferences = gov.tokens, gov._inferences
    gov.spent(0.15, upgrade=True)
    assert gov.tokens == pytest.approx(before - 0.15) and gov.upgrades == 1 and gov._inferences == inferences
    assert gov.cost(gov.home) < 0.15 and gov.cost(gov.home) > 0.12  # learnt towards the measured cost
    assert not gov.may_upgrade()
    off = budget.Governor(0.5, *budget.ladder("modnet", 224, lite=True))
    simulate(off, 20, cost=cost, other=0.2)
    assert off.level.label == "lite" and off.upgrade_level is None and not off.may_upgrade()  # still_upgrade off


def test_still_upgrade_makes_a_still_pictures_matte_with_the_configured_model(modnet_path):
    """Under a budget on the lite model, the configured MODNet stays loaded: a picture still for
    reuse_max_age gets MODNet's matte, held while the budget cannot pay another, refreshed by MODNet
    while it can; motion goes back to the lite model; the ladder's way back to MODNet reloads nothing."""
    pytest.importorskip("ai_edge_litert")
    from vcam.config import Config
    from vcam.core.frames import Frame
    from vcam.engine.units import MattingUnit
    from vcam.imaging import smoothing
    from vcam.imaging.refine import Refiner
    from vcam.models.matting import create

    cfg = Config().replace(matting={"runtime": "onnxruntime"})
    modnet = create(cfg.matting)
    unit = MattingUnit(modnet, smoothing.create(cfg.smoothing), Refiner(cfg.refine), reuse_still=True, reuse_max_age=1.0)
    unit.set_home("modnet", 224)
    allow = [True]
    unit.upgrade_gate = lambda: allow[0]
    img, truth = sample.full_body(360, 640, seed=1)
    rng = np.random.default_rng(0)
    seq = [0]

    def frame(t, image=img):
        seq[0] += 1
        noisy = np.clip(image + rng.normal(0, 2, image.shape), 0, 255).astype(np.uint8)
        return Frame(noisy, seq[0], t)

    unit.last_frame = frame(0.0)
    lite = unit.move_to("lite", 224)  # the ladder falls to lite: MODNet is kept
    assert lite.name == "lite" and unit.upgrade is modnet
    first = unit.process(frame(0.0))
    assert first is not None and unit.last_kind() != "upgraded" and first.alpha.shape == (144, 256)
    for t in (0.1, 0.5, 0.9):  # still: the lite matte is reused
        assert unit.process(frame(t)).alpha is first.alpha
    up = unit.process(frame(1.0))  # still for reuse_max_age: MODNet makes it
    assert unit.last_kind() == "upgraded" and unit.upgraded == 1 and up.alpha.shape != first.alpha.shape
    own = modnet.infer(img)
    assert np.abs(up.alpha - own).mean() < 0.01  # MODNet's own matte (the filter starts afresh from it)
    allow[0] = False
    assert unit.process(frame(2.1)).alpha is up.alpha  # aged, but the budget cannot pay: MODNet's is held
    again = unit.process(frame(4.1))  # three ages: the lite model refreshes it
    assert unit.last_kind() != "upgraded" and again.alpha.shape == first.alpha.shape
    allow[0] = True
    moved = np.roll(img, 60, axis=1)
    m = unit.process(frame(4.2, moved))  # motion: the lite model, whatever the budget holds
    assert unit.last_kind() != "upgraded" and m.alpha.shape == first.alpha.shape and unit.upgraded == 1
    back = unit.move_to("modnet", 224)  # the ladder returns: the kept model, not a new one
    assert back is modnet and unit.upgrade is None
    lite.close()
    modnet.close()


def test_a_live_run_that_opens_lighter_keeps_the_configured_model_for_still_pictures(tmp_path, monkeypatch):
    """The budget opens on lite (this machine's check measured MODNet too slow), MODNet stays loaded, and
    a still picture gets its mattes within the budget; with matting.still_upgrade off, MODNet is closed."""
    pytest.importorskip("ai_edge_litert")
    from vcam.config import Config
    from vcam.engine.parts import build_parts
    from vcam.live.pipeline import Pipeline

    if not budget.lite_available():
        pytest.skip("the lite model is not cached")
    img, _ = sample.full_body(360, 640, seed=2)
    src = tmp_path / "still.mp4"
    w = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"mp4v"), 15, (640, 360))
    rng = np.random.default_rng(0)
    for _ in range(15 * 8):
        w.write(np.clip(img + rng.normal(0, 2, img.shape), 0, 255).astype(np.uint8))
    w.release()
    monkeypatch.setattr(budget, "recorded_ms", lambda cfg: 400.0)  # far too slow for 8 Hz within 0.5 cores
    cfg = Config().replace(capture={"source": str(src), "width": 640, "height": 360, "fps": 15},
                           output={"virtualcam": False}, run={"cpu_budget": "0.5"},
                           matting={"runtime": "onnxruntime", "threads": 1})
    parts = build_parts(cfg, sinks=[], cpu_budget=0.5)
    assert parts.matter.name == "lite" and parts.upgrade is not None and parts.upgrade.name == "modnet"
    pipe = Pipeline(cfg, parts, keep_alpha=True)
    seen = []
    pipe.output.taps.append(lambda c: seen.append(c) if c.matte_seq >= 0 else None)
    stats = pipe.run(7.5)
    b, f = stats["budget"], stats["frames"]
    assert b["still_upgrade"] == "modnet@224" and b["upgrades"] >= 2 and f["mattes_upgraded"] >= 2, (b, f)
    assert b["chosen"] == "lite" and b["mean_cores"] <= 0.5 + 0.15, b
    assert f["mattes_reused"] > f["mattes_upgraded"]  # the still picture mostly reuses the upgrade's matte
    # The last composites carry MODNet's matte, not the lite model's: a still picture, refined as every
    # other matte is, sides with MODNet's own reading of it.
    from vcam.models.matting import create

    modnet, lite = create(cfg.matting), create(dataclasses.replace(cfg.matting, model="lite"))
    frame = seen[-1].frame
    last = seen[-1].alpha > 127
    ref, other = (cv2.resize(m.infer(frame), (640, 360)) > 0.5 for m in (modnet, lite))
    modnet.close()
    lite.close()
    agree = lambda a, b: (a & b).sum() / max(1, (a | b).sum())  # noqa: E731
    assert agree(last, ref) > 0.95 and agree(last, ref) > agree(last, other), (agree(last, ref), agree(last, other))
    off = cfg.replace(matting={"still_upgrade": False})
    parts = build_parts(off, sinks=[], cpu_budget=0.5)
    assert parts.matter.name == "lite" and parts.upgrade is None
    parts.matter.close()
    parts.source.close()


def _slow_model_run(corrected: bool, seconds: int = 30, other: float = 0.3, cost: float = 0.7) -> dict:
    """A model that takes ``cost`` s of CPU a matte over as long a wall time (u2netp on a slow CPU, one
    inference at a time), its CPU accruing while it runs, as the process's clock sees it. The budget's
    keeper reads the process's CPU four times a second; ``corrected``: minus the running inference's CPU
    so far (``MattingStage.inflight_cpu``), as the live path does."""
    gov = budget.Governor(0.6, *budget.ladder("u2netp", 320, lite=True))
    cpu, inflight, began, t_obs, fps = 0.0, 0.0, None, 0.0, 30
    for i in range(seconds * fps):
        t = i / fps
        cpu += other / fps
        if began is not None:
            cpu += 1 / fps
            inflight += 1 / fps
            if inflight >= cost:
                gov.spent(inflight, wall_s=t - began)
                began, inflight = None, 0.0
        if began is None and gov.may_start(t) == 0.0:
            began = t
        if t >= t_obs:
            gov.observe(t, cpu - (inflight if corrected else 0.0))
            gov.decide(t)
            t_obs = t + 0.25
    return gov.status()


def test_a_model_slower_than_the_keepers_period_is_not_blamed_on_capture():
    """A matte that takes longer than the keeper's 0.25 s period used to count as CPU of everything else
    until it ended (and the window it ended in was clamped at zero): with u2netp live under 0.6 cores,
    'other' read 0.68 where capture and compositing took 0.31, and the log said capture and compositing
    alone were over the budget. The running inference's CPU is now left out until it ends; the status
    and the log then say what is true: this model, kept fresh, needs more than the budget."""
    before = _slow_model_run(corrected=False)
    assert before["other_cores"] > 0.6 and before["below_floor"]  # the old reading, for the record
    st = _slow_model_run(corrected=True)
    assert st["other_cores"] == pytest.approx(0.3, abs=0.05) and not st["below_floor"]
    assert st["model_over_budget"] and st["chosen"] == "u2netp"  # its label has no input size: u2netp's is fixed
    assert st["ms_per_matte"] == pytest.approx(700, abs=40)
    # Where the rest takes most of the budget (a replaced background's compositing, 0.56 of 0.6 here), a cheap
    # model is not what to blame, whatever its forced rate adds: no model_over_budget ("lite takes 28 ms ...
    # choose a lighter model (modnet or lite)" was said live once).
    gov = budget.Governor(0.6, *budget.ladder("modnet", 224, lite=True))
    simulate(gov, 20, cost=lambda lv: 0.028 if lv.model == "lite" else 0.2 * lv.cost, other=0.56)
    assert gov.level.label == "lite" and not gov.status()["model_over_budget"], gov.status()


@pytest.mark.skipif(not HAVE_OV, reason="OpenVINO is not installed (pip install 'vcam[openvino]')")
def test_openvino_keeps_compiled_models_and_recompiles_a_corrupt_one(tmp_path, monkeypatch, modnet_path):
    """A compiled model is kept (IS-Net int8 then loads in a third of the time) and used again; a blob
    that does not load is compiled afresh, to the same matte; the runtime check's candidates keep none."""
    from vcam.models import runtime
    from vcam.models.matting import create

    blobs = tmp_path / "ov"
    monkeypatch.setenv("VCAM_OV_CACHE", str(blobs))
    frame = sample.render(1.0, 1280, 720)
    cfg = MattingConfig(threads=1, runtime="openvino")
    want = create(cfg).infer(frame).copy()
    kept = list(blobs.glob("*.blob"))
    assert len(kept) == 1 and kept[0].stat().st_size > 1_000_000
    assert np.array_equal(create(cfg).infer(frame), want)  # from the blob
    kept[0].chmod(0o600)
    kept[0].write_bytes(b"not a compiled model")
    assert np.abs(create(cfg).infer(frame) - want).max() < 1e-5
    assert kept[0].stat().st_size > 1_000_000  # rewritten
    with runtime.uncached_compiles():
        create(MattingConfig(threads=2, runtime="openvino")).infer(frame)
    assert list(blobs.glob("*.blob")) == kept
    monkeypatch.setenv("VCAM_OV_CACHE", "0")
    assert runtime.compile_cache() is None
