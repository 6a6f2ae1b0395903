"""``vcam remove``: many images through one :class:`~vcam.offline.still.Session`, in parallel,
with a progress line, per-file errors and a summary."""
from __future__ import annotations

import glob
import logging
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from ..config import Config
from ..core.frames import IMAGE_EXTS
from ..core.progress import Progress
from ..errors import ConfigError, SourceError, VcamError
from ..imaging.alpha import AlphaMatting
from ..imaging.background import look_keys
from ..media.images import decode, encode, read_image
from ..subject import Prompt, PromptSession
from ..subject.picker import has_display, pick
from .still import Session, cutout, prompt_matting


def expand_inputs(inputs: list[str]) -> list:
    """Files, folders (their images, sorted) and globs → paths; ``-`` stays ``-``."""
    out = []
    for item in inputs:
        if item == "-":
            out.append("-")
            continue
        p = Path(item).expanduser()
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTS))
        elif any(c in item for c in "*?["):
            matches = sorted(Path(m) for m in glob.glob(str(p), recursive=True))
            if not matches:
                raise SourceError(f"no files match {item}")
            out.extend(m for m in matches if m.is_file())
        else:
            out.append(p)  # a missing file is reported per file, the batch goes on
    return out


def output_path(src, output: str | None, ext: str, suffix: str, many: bool) -> Path:
    if output and not many and not Path(output).is_dir() and Path(output).suffix:
        return Path(output).expanduser()
    folder = Path(output).expanduser() if output else Path(src).parent
    return folder / f"{Path(src).stem}{'' if output else suffix}{ext}"

log = logging.getLogger(__name__)


def remove_cli(cfg: Config, a) -> int:
    inputs = expand_inputs(a.inputs)
    if not inputs:
        raise SourceError(f"no images found in {' '.join(a.inputs)}")
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
    prompt = _prompt(a, inputs)
    workers = a.workers or os.cpu_count() or 1
    workers = max(1, min(workers, len(inputs)))
    # Parallel images, one onnxruntime thread each: the cores are used by whole images.
    m = replace(cfg.matting, threads=1) if workers > 1 else cfg.matting
    session = Session(m.model, cfg=replace(cfg, matting=m))
    if background:  # validate the background once, before any file is touched
        session.compositor(replace(cfg.compositor, **background))
    many = len(inputs) > 1 or (a.output is not None and Path(a.output).is_dir())
    if many and a.output:
        Path(a.output).expanduser().mkdir(parents=True, exist_ok=True)
    resolved_inputs = {Path(p).resolve() for p in inputs if p != "-"}
    suffix = "-mask" if a.only_mask else "-nobg"

    def one(src):
        if src == "-":
            data = sys.stdin.buffer.read()
            out = cutout(decode(data, "stdin"), session=session, only_mask=a.only_mask, alpha_matting=am,
                         post_process=a.post_process, background=background, prompt=prompt)
            sys.stdout.buffer.write(encode(out, ext))
            sys.stdout.buffer.flush()
            return "done"
        dst = output_path(src, a.output, ext, suffix, many)
        if dst.resolve() in resolved_inputs:
            raise SourceError(f"{src}: refusing to overwrite an input; choose another -o")
        if a.skip_existing and dst.exists():
            return "skipped"
        out = cutout(read_image(src), session=session, only_mask=a.only_mask, alpha_matting=am,
                     post_process=a.post_process, background=background, prompt=prompt)
        data = encode(out, ext)
        tmp = dst.with_name(dst.name + ".part")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, dst)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise SourceError(f"{dst}: cannot write ({e.strerror})") from None
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

    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vcam-remove") as pool:
            for i, (status, err) in enumerate(pool.map(guarded, inputs), 1):
                counts[status] += 1
                if err:
                    log.error("skipped %s", err)
                bar(i)
    finally:
        bar.close()
        session.close()
    if len(inputs) > 1 or counts["failed"]:
        log.info("%d written, %d skipped, %d failed", counts["done"], counts["skipped"], counts["failed"])
    return 1 if counts["failed"] else 0


def _prompt(a, inputs):
    """``--point/--neg/--box`` → a Prompt (checked against each image when it is read);
    ``--pick`` → the picker on the one input."""
    if getattr(a, "pick", False):
        if len(inputs) != 1 or inputs[0] == "-":
            raise ConfigError("--pick works on one image file at a time: name a single image")
        if not has_display():
            pick(None)  # raises the one-line "needs a display" error before loading models
        return pick(PromptSession(read_image(inputs[0]), matting=prompt_matting))
    if not (a.point or a.neg or a.box):
        return None
    if a.neg and not (a.point or a.box):
        raise ConfigError("--neg only removes from a selection: add a --point on the subject or a --box")
    return Prompt(points=tuple(a.point), neg=tuple(a.neg), box=a.box)
