"""``vcam remove --ray [ADDRESS|local]``: the same removal on a Ray cluster, with Ray Data.

The plan is the local path's (:func:`~vcam.offline.batch.plan_outputs`: the same names, the
collision rule, never an input overwritten), made on the driver before any work. Ray Data then
streams the plan (paths, never decoded pictures) through ``map_batches`` with a pool of actors:
each actor builds one :class:`~vcam.offline.batch.RemoveJob` session (the model loads once per
actor) with one onnxruntime thread per CPU Ray gives it, reads its files itself (local paths or
any URI that pyarrow's filesystems open: ``s3://``, ``gs://``, ``file://``), writes each result
whole, and returns one status row per file. A bad file is one line in the summary; the job
goes on. The rows come back through ``iter_batches``, so nothing is materialised.
"""
from __future__ import annotations

import fnmatch
import logging
import os
import socket
import time
import warnings
from dataclasses import replace
from pathlib import Path

from ..config import Config
from ..core.frames import IMAGE_EXTS
from ..core.progress import Progress
from ..errors import ConfigError, SourceError, VcamError
from ..media.images import decode
from .batch import _write, expand_inputs, make_job, plan_outputs, summary

log = logging.getLogger(__name__)


def is_uri(s: str) -> bool:
    return "://" in str(s)


def _fs(uri: str):
    import pyarrow.fs as pafs

    try:
        return pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as e:
        raise SourceError(f"{uri}: pyarrow cannot open it ({e}); use a local path, s3://, gs:// or file://") from None


def _scheme(uri: str) -> str:
    return uri.split("://", 1)[0] + "://"


def expand(items: list[str]) -> list[str]:
    """Local folders, files and globs (as the local path) plus URIs: a file, a folder (its images)
    or a glob in the last part."""
    import pyarrow.fs as pafs

    out: list[str] = []
    for item in items:
        if not is_uri(item):
            out.extend(str(p) for p in expand_inputs([item]) if p != "-")
            continue
        pattern = ""
        base = item
        if any(c in item.rsplit("/", 1)[-1] for c in "*?["):
            base, pattern = item.rsplit("/", 1)
        fs, path = _fs(base)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.File and not pattern:
            out.append(item)
        elif info.type == pafs.FileType.Directory:
            found = sorted(i.path for i in fs.get_file_info(pafs.FileSelector(path))
                           if i.type == pafs.FileType.File and Path(i.path).suffix.lower() in IMAGE_EXTS
                           and (not pattern or fnmatch.fnmatch(Path(i.path).name, pattern)))
            if pattern and not found:
                raise SourceError(f"no files match {item}")
            out.extend(_scheme(item) + p.lstrip("/") if _scheme(item) != "file://" else "file://" + p for p in found)
        else:
            out.append(item)  # missing: reported per file, as the local path does
    return out


def _as_path(s: str) -> Path:
    return Path(s.replace("://", ":/", 1)) if is_uri(s) else Path(s)


def _as_str(p: Path) -> str:
    s = str(p)
    return s.replace(":/", "://", 1) if s.split("/", 1)[0].endswith(":") else s


def read_bytes(src: str) -> bytes:
    if not is_uri(src):
        try:
            return Path(src).read_bytes()
        except FileNotFoundError:
            raise SourceError(f"{src}: no such file") from None
        except OSError as e:
            raise SourceError(f"{src}: cannot read ({e.strerror})") from None
    fs, path = _fs(src)
    try:
        with fs.open_input_stream(path) as f:
            return f.read()
    except (FileNotFoundError, OSError) as e:
        raise SourceError(f"{src}: cannot read ({e})") from None


def write_bytes(dst: str, data: bytes) -> None:
    if not is_uri(dst) or dst.startswith("file://"):
        p = Path(dst[len("file://"):] if dst.startswith("file://") else dst)
        p.parent.mkdir(parents=True, exist_ok=True)
        _write(p, data)
        return
    fs, path = _fs(dst)
    try:
        with fs.open_output_stream(path) as f:  # object stores publish the object whole, on close
            f.write(data)
    except OSError as e:
        raise SourceError(f"{dst}: cannot write ({e})") from None


def exists(dst: str) -> bool:
    if not is_uri(dst):
        return Path(dst).exists()
    import pyarrow.fs as pafs

    fs, path = _fs(dst)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


class RemoveActor:
    """One Ray actor: one session, loaded once; a batch of ``(src, dst)`` in, a status per file out."""

    def __init__(self, job, threads: int):
        self.job = replace(job, cfg=job.cfg.replace(matting={"threads": threads, "workers": 1}))  # one picture at a time
        self.session = self.job.session()

    def __call__(self, batch: dict) -> dict:
        status, error = [], []
        for src, dst in zip(batch["src"], batch["dst"]):
            try:
                write_bytes(dst, self.job.render(self.session, decode(read_bytes(src), src)))
                status.append("done")
                error.append("")
            except VcamError as e:
                status.append("failed")
                error.append(str(e))
            except Exception as e:  # one bad file must not stop the job
                status.append("failed")
                error.append(f"{src}: {type(e).__name__}: {e}")
        return {"src": list(batch["src"]), "status": status, "error": error}


def connect(address: str, workers: int):
    """``ray.init`` for ``local`` (an in-process cluster of this machine's cores) or an address."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray Data: pip install 'vcam[ray]'") from None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kw = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR, configure_logging=True)
    fix = ("start one with `ray start --head` there (and `ray start --address HEAD:6379` on the others), "
           "or use --ray local")
    if address not in ("local", "", "auto"):
        # ray.init retries an unreachable address for minutes: look first, and say so in seconds.
        host, _, port = address.split("://", 1)[-1].rpartition(":")
        try:
            socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
        except ValueError:
            raise ConfigError(f"--ray {address}: give HOST:PORT of the head node (e.g. 10.0.0.5:6379), or local") from None
        except OSError as e:
            raise ConfigError(f"cannot reach the Ray cluster at {address} ({e.strerror or e}): {fix}") from None
    try:
        if address in ("local", ""):
            ray.init(num_cpus=max(workers, os.cpu_count() or 1), **kw)
        else:
            ray.init(address=address, **kw)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
        why = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise ConfigError(f"cannot join the Ray cluster at {address} ({why}): {fix}") from None
    return ray


def remove_ray_cli(cfg: Config, a) -> int:
    if "-" in a.inputs:
        raise ConfigError("--ray reads files, not stdin: name files, folders, globs or URIs")
    if getattr(a, "pick", False):
        raise ConfigError("--pick opens a window on one image: run it without --ray")
    local = lambda u: u[len("file://"):] if u and u.startswith("file://") else u  # noqa: E731  (file:// is a path)
    a.inputs, a.output = [local(u) for u in a.inputs], local(a.output)
    inputs = expand(a.inputs)
    if not inputs:
        raise SourceError(f"no images found in {' '.join(a.inputs)}")
    job = make_job(cfg, a, inputs)
    if a.point or a.box or a.neg:
        from .batch import _prompt

        job = replace(job, prompt=_prompt(a, inputs))
    suffix = "-mask" if a.only_mask else "-nobg"
    if a.output and is_uri(a.output) and not a.output.endswith("/") and len(inputs) > 1:
        a.output += "/"
    paths, _ = plan_outputs([_as_path(s) for s in inputs], _as_str(_as_path(a.output)) if a.output and is_uri(a.output)
                            else a.output, job.ext, suffix)
    plan = {_as_str(src): _as_str(dst) for src, dst in paths.items()}
    if a.output and is_uri(a.output):  # plan_outputs saw the URI as a path: give back its scheme
        plan = {src: (a.output.rstrip("/") + "/" + Path(dst).name if len(inputs) > 1 or a.output.endswith("/")
                      else a.output) for src, dst in plan.items()}
    counts = {"done": 0, "skipped": 0, "failed": 0}
    todo = []
    for src in inputs:
        if a.skip_existing and exists(plan[src]):
            counts["skipped"] += 1
        else:
            todo.append(src)
    if not todo:
        return summary(counts, len(inputs))
    t0 = time.monotonic()
    ray = connect(a.ray, a.workers or 0)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        actors = max(1, min(a.workers or cpus, cpus, len(todo)))
        per_actor = max(1, cpus // actors) if not a.workers else 1
        log.info("Ray: %d CPUs, %d actors (%d onnxruntime thread%s each), %d images; cluster up in %.1f s",
                 cpus, actors, per_actor, "" if per_actor == 1 else "s", len(todo), time.monotonic() - t0)
        import ray.data

        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        ds = ray.data.from_items([{"src": s, "dst": plan[s]} for s in todo], override_num_blocks=min(len(todo), 4 * actors))
        with warnings.catch_warnings():  # max_restarts still goes through ray_remote_args in Ray 2.6x
            warnings.simplefilter("ignore")
            # No actor restarts: Ray cannot restart one whose constructor arguments left the object store (ray#53727).
            out = ds.map_batches(RemoveActor, fn_constructor_args=(job, per_actor), batch_size=1, num_cpus=per_actor,
                                 compute=ray.data.ActorPoolStrategy(size=actors), batch_format="numpy", max_restarts=0)
        bar = Progress(len(inputs), label="vcam remove --ray")
        done = counts["skipped"]
        try:
            for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
                for status, err in zip(batch["status"], batch["error"]):
                    counts[str(status)] += 1
                    if err:
                        log.error("skipped %s", err)
                    done += 1
                    bar(done)
        except (KeyboardInterrupt, VcamError):
            raise
        except Exception as e:  # an actor or a node lost: what is written stays, --skip-existing resumes
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise SourceError(f"the Ray job stopped after {done} of {len(inputs)} images ({first}); rerun with "
                              f"--skip-existing to resume") from None
        bar.close()
    finally:
        ray.shutdown()
    return summary(counts, len(inputs))
