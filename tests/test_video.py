"""`vcam process` outputs: composited video with audio, transparent WebM/ProRes/PNG, bad inputs."""
import av
import cv2
import numpy as np
import pytest

from vcam import sample
from vcam.cli import main

from helpers import patch_mean, sample_points

W, H, N = 320, 180, 12


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "in.mp4"
    c = av.open(str(path), "w")
    v = c.add_stream("libx264", rate=30)
    v.width, v.height, v.pix_fmt = W, H, "yuv420p"
    a = c.add_stream("aac", rate=44100)
    rng = np.random.default_rng(0)
    for i in range(N):
        for p in v.encode(av.VideoFrame.from_ndarray(sample.render(i / 30, W, H, rng=rng), format="bgr24")):
            c.mux(p)
    t = np.arange(int(N / 30 * 44100)) / 44100
    af = av.AudioFrame.from_ndarray((0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None], format="fltp",
                                    layout="mono")
    af.sample_rate = 44100
    for p in list(a.encode(af)) + list(a.encode(None)) + list(v.encode()):
        c.mux(p)
    c.close()
    return path


def _streams(path):
    with av.open(str(path)) as c:
        return {s.type: s.codec_context.name for s in c.streams}


def test_composite_keeps_audio_and_every_frame(clip, tmp_path, modnet_path):
    out = tmp_path / "out.mp4"
    assert main(["process", str(clip), "-o", str(out), "--bg", "#00ff00"]) == 0
    assert _streams(out) == {"video": "h264", "audio": "aac"}
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
    assert len(frames) == N
    person, background = sample_points(0, W, H)
    assert patch_mean(frames[0], background[0], 3)[1] > 200  # green screen
    assert patch_mean(frames[0], person[0], 3)[1] < 200


@pytest.mark.parametrize("name,codec", [("out.webm", "vp9"), ("out.mov", "prores")])
def test_transparent_video(clip, tmp_path, modnet_path, name, codec):
    out = tmp_path / name
    assert main(["process", str(clip), "-o", str(out), "--transparent"]) == 0
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == codec
        if codec == "vp9":
            assert s.metadata.get("alpha_mode") == "1"
        else:
            assert "yuva" in s.codec_context.pix_fmt
            frame = next(c.decode(video=0)).to_ndarray(format="rgba")
            person, background = sample_points(0, W, H)
            assert patch_mean(frame, person[0], 3)[3] > 230 and patch_mean(frame, background[0], 3)[3] < 25


def test_png_sequence(clip, tmp_path, modnet_path):
    assert main(["process", str(clip), "-o", str(tmp_path / "seq"), "--transparent"]) == 0
    files = sorted((tmp_path / "seq").iterdir())
    assert len(files) == N
    assert cv2.imread(str(files[0]), cv2.IMREAD_UNCHANGED).shape == (H, W, 4)


def test_truncated_video_gives_one_line_and_no_partial_output(tmp_path, clip, capsys):
    bad = tmp_path / "cut.mp4"
    bad.write_bytes(clip.read_bytes()[:600])
    out = tmp_path / "o.mp4"
    assert main(["process", str(bad), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0]
    assert not out.exists()


def test_transparent_needs_an_alpha_container(clip, tmp_path, capsys):
    assert main(["process", str(clip), "-o", str(tmp_path / "o.mp4"), "--transparent"]) == 2
    assert ".webm" in capsys.readouterr().err


def test_process_at_the_live_matting_rate(tmp_path, modnet_path):
    """`--matting-hz N`: mattes only at N Hz of video time, each used one period after its frame and
    refined against every frame between, as the live camera does; the cutout still holds the person."""
    import json

    clip = tmp_path / "c.mp4"
    with av.open(str(clip), "w") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 320, 180, "yuv420p"
        for i in range(30):
            for p in s.encode(av.VideoFrame.from_ndarray(sample.render(i / 30, 320, 180), format="bgr24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    every, live = tmp_path / "every", tmp_path / "live"
    assert main(["process", str(clip), "--alpha-out", str(every), "--stats-json", str(tmp_path / "e.json")]) == 0
    assert main(["process", str(clip), "--alpha-out", str(live), "--matting-hz", "5",
                 "--stats-json", str(tmp_path / "l.json")]) == 0
    e, s5 = json.loads((tmp_path / "e.json").read_text()), json.loads((tmp_path / "l.json").read_text())
    assert e["input_size"] == 320  # offline: the stills preset, no frame deadline
    assert main(["process", str(clip), "--alpha-out", str(tmp_path / "f"), "--fast", "--stats-json",
                 str(tmp_path / "f.json")]) == 0
    assert json.loads((tmp_path / "f.json").read_text())["input_size"] == 224  # --fast: the live input
    f = cv2.imread(str(tmp_path / "f" / "00010.png"), cv2.IMREAD_GRAYSCALE) > 127
    g = cv2.imread(str(every / "00010.png"), cv2.IMREAD_GRAYSCALE) > 127
    assert (f & g).sum() / (f | g).sum() > 0.9
    # 1 s of video: a matte for each of the 30 frames, or 5 at 5 Hz (inferred, or reused while the picture is still)
    assert e["mattes"] + e["mattes_reused"] == 30 and s5["mattes"] + s5["mattes_reused"] == 5 and s5["frames"] == 30
    assert len(list(live.iterdir())) == 30
    for i in (0, 10, 29):
        a = cv2.imread(str(live / f"{i:05d}.png"), cv2.IMREAD_GRAYSCALE) > 127
        b = cv2.imread(str(every / f"{i:05d}.png"), cv2.IMREAD_GRAYSCALE) > 127
        assert (a & b).sum() / (a | b).sum() > 0.9  # the held, refined matte still covers the person
    assert main(["process", str(clip), "--alpha-out", str(tmp_path / "x"), "--matting-hz", "-2"]) == 2


def test_live_rate_schedule():
    from vcam.engine.lockstep import LiveRate

    r = LiveRate(10, 30)  # 10 Hz under 30 fps: a matte every 3rd frame, used 3 frames later
    used = []
    for seq in range(12):
        if r.wants(seq):
            r.made(seq, f"m{seq}")
        used.append(r.matte_for(seq))
    assert used == ["m0"] * 6 + ["m3"] * 3 + ["m6"] * 3
    r = LiveRate(12, 30)  # a rate that does not divide the frame rate: slots at 0, 1/12, 2/12 ... s
    assert [s for s in range(30) if r.wants(s)] == [0, 3, 5, 8, 10, 13, 15, 18, 20, 23, 25, 28]
