"""The command line: every error path gives one line naming the fix; process, demo, models."""
import glob
import os

import cv2
import numpy as np
import pytest

from vcam import sample
from vcam.cli import main

from helpers import patch_mean, sample_points


def _run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line_error(err: str) -> str:
    lines = [l for l in err.strip().splitlines() if l.startswith("vcam: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("argv,needle", [
    (["--source", "/nope/clip.mp4", "--no-virtualcam"], "not found"),
    (["--source", "sample", "--bg", "/nope/beach.jpg", "--no-virtualcam"], "background /nope/beach.jpg not found"),
    (["--source", "/dev/video42", "--no-virtualcam"], "does not exist"),
    (["--source", "7", "--no-virtualcam"], "no camera at index 7"),
    (["--source", "sample", "--model", "nope", "--no-virtualcam"], "unknown model 'nope'"),
    (["--source", "sample", "--blur", "500", "--no-virtualcam"], "allowed range is 1..100"),
    (["--source", "sample", "--providers", "FooExecutionProvider", "--no-virtualcam"], "not available"),
    (["--source", "sample", "--record", "/nope/dir/out.mp4", "--no-virtualcam"], "does not exist"),
])
def test_bad_input_gives_one_line(capsys, argv, needle):
    rc, _, err = _run(capsys, *argv)
    assert rc == 2
    assert needle in _one_line_error(err)


def test_bad_background_file_is_named(capsys, tmp_path):
    junk = tmp_path / "beach.jpg"
    junk.write_bytes(b"not really a jpeg")
    rc, _, err = _run(capsys, "--source", "sample", "--bg", str(junk), "--no-virtualcam")
    assert rc == 2 and "cannot read background image" in _one_line_error(err)


def test_unknown_config_key_names_nearest(capsys, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("matting:\n  input_sise: 256\n")
    rc, _, err = _run(capsys, "--config", str(cfg), "--print-config")
    assert rc == 2 and "did you mean 'input_size'" in _one_line_error(err)


@pytest.mark.skipif(any(os.path.exists(f"/sys/class/video4linux/video{i}") for i in range(64)),
                    reason="a video device exists here; this checks the machine without v4l2loopback")
def test_missing_v4l2loopback_gives_the_modprobe_command(capsys):
    rc, _, err = _run(capsys, "--source", "sample", "--seconds", "1")
    line = _one_line_error(err)
    assert rc == 2
    assert 'sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label="vcam"' in line


def test_print_config_applies_flags(capsys):
    rc, out, _ = _run(capsys, "--bg", "green", "--size", "640x480", "--print-config")
    assert rc == 0
    assert "mode: color" in out and "width: 640" in out and "height: 480" in out


def test_models_list(capsys, modnet_path):
    rc, out, _ = _run(capsys, "models", "list")
    assert rc == 0
    row = next(l for l in out.splitlines() if l.startswith("modnet"))
    assert "Apache-2.0" in row and "25.9MB" in row and "cached" in row and "not cached" not in row
    assert "GPL-3.0" in next(l for l in out.splitlines() if l.startswith("rvm"))


def _process_frames(capsys, tmp_path, n: int, W: int, H: int, seed: int):
    """``vcam process`` over a folder of ``n`` generated frames onto blue, with alphas: the video's path."""
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        cv2.imwrite(str(frames / f"f{i:03d}.png"), sample.render(i / 30, W, H, rng=rng))
    out = tmp_path / "out.mp4"
    rc, _, err = _run(capsys, "process", str(frames), "-o", str(out), "--alpha-out", str(tmp_path / "alpha"),
                      "--bg", "#0000ff")
    assert rc == 0, err
    return out


def test_process_frames_folder_writes_every_alpha(capsys, tmp_path):
    n, W, H = 12, 480, 270
    out = _process_frames(capsys, tmp_path, n, W, H, seed=3)
    pngs = sorted(glob.glob(str(tmp_path / "alpha" / "*.png")))
    assert [os.path.basename(p) for p in pngs] == [f"{i:05d}.png" for i in range(n)]
    for i in (0, n - 1):
        a = cv2.imread(pngs[i], cv2.IMREAD_UNCHANGED)
        assert a.dtype == np.uint8 and a.shape == (H, W)
        person, background = sample_points(i / 30, W, H)
        assert min(patch_mean(a, p, 3) for p in person) > 0.9 * 255
        assert max(patch_mean(a, p, 3) for p in background) < 0.1 * 255
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == n
    ok, f = cap.read()
    person, background = sample_points(0, W, H)
    assert ok and patch_mean(f, background[0], 3)[0] > 200  # #0000ff is blue: BGR channel 0


def test_process_writes_a_video_of_odd_size(capsys, tmp_path):
    """x264's 4:2:0 video holds only even sizes: a 241x135 input used to fail at the first frame ("Generic
    error in an external library; free some space"). The video gets one repeated column and row; the
    alphas keep the input's size."""
    import av

    n, W, H = 6, 241, 135
    out = _process_frames(capsys, tmp_path, n, W, H, seed=5)
    with av.open(str(out)) as c:
        got = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
    assert len(got) == n and got[0].shape == (H + 1, W + 1, 3)
    person, background = sample_points(0, W, H)
    assert patch_mean(got[0], background[0], 3)[0] > 200  # the blue background
    # the added column and row repeat the last ones (within the codec's loss)
    assert np.abs(got[0][:, W].astype(int) - got[0][:, W - 1]).mean() < 6
    assert np.abs(got[0][H].astype(int) - got[0][H - 1]).mean() < 6
    a = cv2.imread(str(tmp_path / "alpha" / "00000.png"), cv2.IMREAD_UNCHANGED)
    assert a.shape == (H, W) and min(patch_mean(a, p, 2) for p in person) > 0.9 * 255


def test_process_refuses_to_overwrite_input(capsys, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "a.png"), sample.render(0, 64, 64))
    rc, _, err = _run(capsys, "process", str(frames), "--alpha-out", str(frames))
    assert rc == 2 and "refusing" in _one_line_error(err)


def test_process_refuses_a_still_input_and_an_output_it_cannot_write_before_any_work(capsys, tmp_path):
    """-o out.gif / out.txt were internal errors from PyAV after the model had loaded; a still picture as
    the input read as "no frames could be decoded". Each is now one line that names the fix, and nothing
    is written."""
    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "a.png"), sample.render(0, 64, 64))
    for out, extra, needle in (("o.gif", [], "writes .mp4, .mkv"), ("o.txt", [], "writes .mp4, .mkv"),
                               ("o.mp4", ["--transparent"], "writes .webm, .mov or a folder")):
        rc, _, err = _run(capsys, "process", str(frames), "-o", str(tmp_path / out), *extra)
        assert rc == 2 and needle in _one_line_error(err), err
    rc, _, err = _run(capsys, "process", str(frames / "a.png"), "-o", str(tmp_path / "o.mp4"))
    assert rc == 2 and "is a still picture: use `vcam remove" in _one_line_error(err), err
    # a --stats-json that could not be written at the end is refused at the start, not after the work
    for stats, needle in ((tmp_path / "no" / "s.json", "folder"), (tmp_path, "it is a folder")):
        rc, _, err = _run(capsys, "process", str(frames), "-o", str(tmp_path / "o.mp4"), "--stats-json", str(stats))
        assert rc == 2 and "cannot write stats" in _one_line_error(err) and needle in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]


def test_process_truncated_video_is_a_clear_error(capsys, tmp_path):
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100)
    rc, _, err = _run(capsys, "process", str(bad), "-o", str(tmp_path / "o.mp4"))
    assert rc == 2 and str(bad) in _one_line_error(err)


def test_demo_writes_video_and_side_by_side(capsys, tmp_path):
    rc, out, err = _run(capsys, "demo", "--out-dir", str(tmp_path), "--seconds", "3")
    assert rc == 0, err
    assert "vcam-demo.mp4" in out and "vcam-demo.png" in out
    png = cv2.imread(str(tmp_path / "vcam-demo.png"))
    assert png.shape[1] == 3 * 640
    cap = cv2.VideoCapture(str(tmp_path / "vcam-demo.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) >= 60
    # The matte tile is a matte: bright person in the middle, dark corners.
    matte = png[:, 640:1280, 0]
    assert matte[:20, :20].mean() < 30 and matte[matte.shape[0] // 2:, 250:390].mean() > 200


@pytest.mark.parametrize("exc,needle", [
    (RuntimeError("device /dev/video7 is busy"), "is busy"),
    (ValueError("resolution 1280x720 not supported by device"), "refused 1280x720"),
    (RuntimeError("weird failure\nwith two lines"), "cannot open the virtual camera"),
])
def test_virtual_camera_errors_are_one_line(capsys, exc, needle):
    import pyvirtualcam

    class Refusing:
        def __init__(self, **kw):
            raise exc

    pyvirtualcam.register_backend("refusing", Refusing)
    cfg = os.path.join(os.environ["XDG_CONFIG_HOME"], "backend.yaml")
    with open(cfg, "w") as f:
        f.write("output: {backend: refusing}\n")
    rc, _, err = _run(capsys, "--source", "sample", "--config", cfg, "--seconds", "1")
    assert rc == 2 and needle in _one_line_error(err)


def test_matting_hz_flag_is_the_live_rate_cap(capsys):
    assert main(["--matting-hz", "7.5", "--print-config"]) == 0
    assert "max_hz: 7.5" in capsys.readouterr().out
