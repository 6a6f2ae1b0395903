"""``vcam remove``: many images through one :class:`~vcam.offline.still.Session`, in parallel,
with a progress line, per-file errors and a summary."""
from __future__ import annotations

import glob
import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from ..config import Config
from ..core.frames import IMAGE_EXTS
from ..core.progress import Progress
from ..errors import ConfigError, SourceError, VcamError
from ..imaging.alpha import AlphaMatting
from ..imaging.background import look_keys
from ..media.images import decode, encode, read_image
from ..subject import Prompt
from ..subject.picker import has_display, pick
from .still import cutout, make_session, prompt_session

log = logging.getLogger(__name__)


RESULT_SUFFIXES = ("-nobg", "-mask")  # what plan_outputs names a result beside its input


def expand_inputs(inputs: list[str]) -> list:
    """Files, folders (their images, sorted) and globs → paths; ``-`` stays ``-``. A folder's or a
    glob's earlier results of vcam (``NAME-nobg.png``, ``NAME-mask.png``, ``NAME.jpg-nobg.png`` beside
    ``NAME.jpg``) are left out, said once: running the same command again would otherwise cut out the
    cutouts, or stop at the first result that is also an input. A file named on its own is always taken."""
    out, left = [], 0
    for item in inputs:
        if item == "-":
            out.append("-")
            continue
        p = Path(item).expanduser()
        if p.is_dir():
            # Not only regular files: a broken link or a link loop is reported for itself, not passed over.
            found = sorted(f for f in p.iterdir() if not f.is_dir() and f.suffix.lower() in IMAGE_EXTS)
        elif any(c in item for c in "*?["):
            found = sorted(Path(m) for m in glob.glob(str(p), recursive=True))
            if not found:
                raise SourceError(f"no files match {item}")
            found = [m for m in found if not m.is_dir()]
        else:
            out.append(p)  # a missing file is reported per file, the batch goes on
            continue
        kept = _without_results(found)
        left += len(found) - len(kept)
        out.extend(kept)
    if left:
        log.info("left out %d earlier result%s of vcam (NAME-nobg/-mask beside NAME; name such a file on its own "
                 "to process it)", left, "s" if left > 1 else "")
    return out


def _without_results(files: list) -> list:
    """``files`` less those that are vcam's results of another of them (see :func:`expand_inputs`)."""
    sources = {(f.parent, key) for f in files for key in (f.stem, f.name)}

    def result(f) -> bool:
        suffix = next((x for x in RESULT_SUFFIXES if f.stem.endswith(x)), None)
        return suffix is not None and (f.parent, f.stem[: -len(suffix)]) in sources

    return [f for f in files if not result(f)]


def _identity(p) -> tuple[int, int] | None:
    """``(device, inode)``: the same file whatever the path (symlinks, hard links); ``None`` if unreadable."""
    try:
        st = os.stat(p)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def plan_outputs(inputs: list, output: str | None, ext: str, suffix: str) -> tuple[dict, Path | None]:
    """Where each input's result goes, decided before any work. Returns ``({input: output path},
    the output folder to create or None)``.

    * ``-o FILE`` with one input: that file; ``-o DIR`` (an existing folder, a name ending in ``/``
      or a name without an extension), or several inputs: ``DIR/<stem>.<ext>``;
    * no ``-o``: beside each input, ``<stem>-nobg.<ext>`` (``-mask`` with ``--only-mask``);
    * inputs that share a stem in one folder keep their extension in the name (``photo.jpg.png``,
      ``photo.webp.png``), so no result overwrites another;
    * an output that is one of the inputs (by inode: links count) is refused.
    """
    files = [p for p in inputs if p != "-"]
    folder = None
    if output:
        o = Path(output).expanduser()
        if len(inputs) > 1 or o.is_dir() or output.endswith(("/", os.sep)) or not o.suffix:
            folder = o
    plan: dict = {}
    for src in files:
        src = Path(src)
        if output and folder is None:
            plan[src] = Path(output).expanduser()
        else:
            plan[src] = (folder if folder is not None else src.parent) / f"{src.stem}{'' if folder else suffix}{ext}"
    taken: dict[Path, list[Path]] = {}
    for src, dst in plan.items():
        taken.setdefault(dst, []).append(src)
    for dst, srcs in taken.items():
        if len(srcs) > 1:
            for src in srcs:
                plan[src] = dst.with_name(f"{src.name}{'' if folder else suffix}{ext}")
    final: dict[Path, Path] = {}
    inodes = {i: src for src in plan if (i := _identity(src)) is not None}
    for src, dst in plan.items():
        if dst in final:
            raise ConfigError(f"{final[dst]} and {src} would both be written to {dst}: rename one, "
                              f"or give them different -o folders")
        final[dst] = src
        ident = _identity(dst)
        if dst in plan or (ident is not None and ident in inodes):
            raise ConfigError(f"{src}: its result {dst} is an input; refusing to overwrite it: choose another -o")
    return plan, folder


@dataclass(frozen=True, kw_only=True)
class RemoveJob:
    """What every image of one ``vcam remove`` gets, decided and checked once, before any work;
    the local pool and the Ray actors (:mod:`.cluster`) both run it."""

    cfg: Config
    ext: str
    only_mask: bool = False
    post_process: bool = False
    alpha_matting: AlphaMatting | None = None
    background: dict | None = None
    prompt: Prompt | None = None
    fast: bool = False
    verbose: bool = False

    def session(self):
        session = make_session(self.cfg.matting.still_model, cfg=self.cfg, fast=self.fast)
        if self.background:  # validate the background once, before any file is touched
            session.compositor(replace(self.cfg.compositor, **self.background))
        return session

    def render(self, session, bgr, name="") -> bytes:
        say = log.info if self.verbose else log.debug
        out = cutout(bgr, session=session, only_mask=self.only_mask, alpha_matting=self.alpha_matting,
                     post_process=self.post_process, background=self.background, prompt=self.prompt,
                     explain=(lambda why: say("%s: %s", name, why)) if name else None)
        if name and getattr(session, "why", "") and self.prompt is None:
            say("%s: %s", name, session.why)
        return encode(out, self.ext)


def make_job(cfg: Config, a, inputs: list) -> RemoveJob:
    """The flags → a checked :class:`RemoveJob` (one-line errors for bad combinations)."""
    ext = "." + (a.format or (Path(a.output).suffix.lstrip(".").lower() if a.output and Path(a.output).suffix
                              and len(inputs) == 1 else "png"))
    ext = {".jpeg": ".jpg"}.get(ext, ext)
    if a.only_mask:
        ext = ".png"
    if ext not in (".png", ".webp", ".jpg"):
        raise ConfigError(f"cannot write {ext} images: use .png, .webp or .jpg")
    background = look_keys(color=a.bgcolor or None, bg=a.bg or None, blur=a.blur) or None
    if ext == ".jpg" and background is None and not a.only_mask:
        raise ConfigError("JPEG has no transparency: add --bgcolor COLOR (or write .png/.webp)")
    am = AlphaMatting(foreground_threshold=a.alpha_matting_foreground_threshold,
                      background_threshold=a.alpha_matting_background_threshold,
                      erode_size=a.alpha_matting_erode_size) if a.alpha_matting else None
    _check_numbers(a)
    # Parallel images, one inference thread each: the cores are used by whole images (and OpenVINO
    # is told how many run at once: matting.workers). One picture: the model gets every core
    # (IS-Net: 2.3 s instead of 4.1 on 2 cores).
    parallel = min(a.workers or os.cpu_count() or 1, len(inputs))
    if getattr(a, "threads", None) is not None:
        m = replace(cfg.matting, workers=parallel)  # --threads says it
    elif parallel > 1:
        m = replace(cfg.matting, threads=1, workers=parallel)
    else:
        m = replace(cfg.matting, threads=a.workers or os.cpu_count() or 1, workers=1)
    if m.still_model == "auto" and m.model_path:
        raise ConfigError("--model-path names one model's file: say which with --model (e.g. --model isnet)")
    return RemoveJob(cfg=replace(cfg, matting=m), ext=ext, only_mask=a.only_mask, post_process=a.post_process,
                     alpha_matting=am, background=background, fast=getattr(a, "fast", False),
                     verbose=getattr(a, "verbose", False))


def remove_cli(cfg: Config, a) -> int:
    inputs = expand_inputs(a.inputs)
    if not inputs:
        raise SourceError(f"no images found in {' '.join(a.inputs)}")
    job = make_job(cfg, a, inputs)
    suffix = "-mask" if a.only_mask else "-nobg"
    plan, folder = plan_outputs(inputs, a.output, job.ext, suffix)
    if "-" in inputs and a.output and len(inputs) > 1:
        raise ConfigError("- (stdin) writes to stdout or to one -o FILE: give it alone")
    job = replace(job, prompt=_prompt(a, inputs))
    workers = max(1, min(a.workers or os.cpu_count() or 1, len(inputs)))
    session = job.session()
    if folder is None and a.output:
        folder = Path(a.output).expanduser().parent  # -o FILE in a folder not made yet
    if folder is not None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create the output folder {folder}: {e.strerror}; choose another -o") from None

    def one(src):
        if src == "-":
            data = job.render(session, decode(sys.stdin.buffer.read(), "stdin"))
            if a.output:
                _write(Path(a.output).expanduser(), data)
            else:
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()
            return "done"
        dst = plan[Path(src)]
        if a.skip_existing and dst.exists():
            return "skipped"
        _write(dst, job.render(session, read_image(src), src))
        return "done"

    counts = {"done": 0, "skipped": 0, "failed": 0}
    bar = Progress(len(inputs), label="vcam remove")

    def guarded(src):
        try:
            return one(src), None
        except VcamError as e:
            return "failed", str(e)
        except Exception as e:  # one bad file must not stop the batch
            return "failed", f"{src}: {type(e).__name__}: {e}"

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vcam-remove")
    interrupted = False
    try:
        for i, (status, err) in enumerate(pool.map(guarded, inputs), 1):
            counts[status] += 1
            if err:
                log.error("skipped %s", err)
            bar(i)
    except BaseException:  # Ctrl-C, SIGTERM: the images in hand finish (each lands whole), the rest never start
        interrupted = True
        finish_in_hand(pool)
        raise
    finally:
        if not interrupted:
            pool.shutdown(wait=True)
        bar.close()
        if not interrupted or not _busy(pool):
            session.close()
    return summary(counts, len(inputs))


GRACE_S = 60.0  # after Ctrl-C/SIGTERM, how long the images in hand may take to finish


def _busy(pool: ThreadPoolExecutor) -> list:
    return [t for t in getattr(pool, "_threads", ()) if t.is_alive()]


def finish_in_hand(pool: ThreadPoolExecutor, grace: float = GRACE_S) -> None:
    """After an interrupt: no new image starts, and the ones in hand get ``grace`` s to finish and be
    written whole. A second Ctrl-C, or an image that takes longer (a stuck native call), ends the
    wait: the process then exits without them (:func:`vcam.cli.app.entry`), their outputs unwritten,
    never half-written."""
    import time

    pool.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + grace
    try:
        for t in _busy(pool):
            t.join(max(0.0, deadline - time.monotonic()))
    except KeyboardInterrupt:
        pass
    if left := _busy(pool):
        log.warning("%d image(s) still in progress were abandoned, their results not written", len(left))


def summary(counts: dict, n: int) -> int:
    if n > 1 or counts["failed"]:
        log.info("%d written, %d skipped, %d failed", counts["done"], counts["skipped"], counts["failed"])
    return 1 if counts["failed"] else 0


def _write(dst: Path, data: bytes) -> None:
    """Whole or not at all: a temporary beside ``dst``, renamed into place."""
    tmp = dst.with_name(f".{dst.name}.vcam-partial-{os.getpid()}-{threading.get_ident()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, dst)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise SourceError(f"{dst}: cannot write ({e.strerror}): check the folder is writable and has space") from None


def _check_numbers(a) -> None:
    if a.workers is not None and a.workers < 0:
        raise ConfigError(f"--workers {a.workers}: give a number of parallel images >= 1 (0: all cores)")
    for flag, value, lo, hi in (("-af/--alpha-matting-foreground-threshold", a.alpha_matting_foreground_threshold, 0, 255),
                                ("-ab/--alpha-matting-background-threshold", a.alpha_matting_background_threshold, 0, 255),
                                ("-ae/--alpha-matting-erode-size", a.alpha_matting_erode_size, 1, 255)):
        if not lo <= value <= hi:
            raise ConfigError(f"{flag} {value} is out of range: use {lo}..{hi}")


def _prompt(a, inputs):
    """``--point/--neg/--box`` → a Prompt (checked against each image when it is read);
    ``--pick`` → the picker on the one input."""
    if getattr(a, "pick", False):
        if len(inputs) != 1 or inputs[0] == "-":
            raise ConfigError("--pick works on one image file at a time: name a single image")
        if not has_display():
            pick(None)  # raises the one-line "needs a display" error before loading models
        return pick(prompt_session(read_image(inputs[0])))
    if not (a.point or a.neg or a.box):
        return None
    if a.neg and not (a.point or a.box):
        raise ConfigError("--neg only removes from a selection: add a --point on the subject or a --box")
    return Prompt(points=tuple(a.point), neg=tuple(a.neg), box=a.box)
