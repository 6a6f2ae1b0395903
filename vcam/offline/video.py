"""Offline processing of video files and frame folders (``vcam process``).

Runs the live path's units in lockstep (:func:`vcam.engine.lockstep.run_lockstep`): the
same matter, smoother, refiner and compositor, with no frame dropped, so what the
quality benchmark measures here is what the live camera does.

Outputs (:mod:`vcam.media.video`): a composited video (H.264, audio copied from the input), or
with ``--transparent`` a cutout with alpha: ``.webm`` (VP9, yuva420p), ``.mov``
(ProRes 4444) or a folder of RGBA PNGs. Outputs are written under temporary names and moved
into place at the end: a failed, interrupted or truncated run leaves no partial output unless
``--keep-partial`` was given.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ..config import Config
from ..core.frames import IMAGE_EXTS
from ..core.progress import Progress
from ..engine.budget import lite_available
from ..engine.lockstep import run_lockstep
from ..engine.parts import build_parts
from ..errors import ConfigError, OutputError, SourceError
from ..media.sinks import Sink
from ..media.sources import open_source
from ..media.staged import Staged
from ..imaging.background import VIDEO_EXTS
from ..media.video import AvWriter, PngSequence

log = logging.getLogger(__name__)

WRITABLE = (".mp4", ".mkv", ".mov", ".m4v", ".avi", ".webm")  # composites (H.264, or VP9 in .webm)


class _Cutouts(Sink):
    """Turns each composite into a BGRA cutout (frame + alpha) for a transparent sink."""

    def __init__(self, inner: Sink):
        self.inner = inner
        self.kind = inner.kind

    def send_cutout(self, frame: np.ndarray, alpha: np.ndarray) -> None:
        self.inner.send(np.dstack([frame, alpha]))

    def send(self, image):  # composites are not used: the cutout comes from send_cutout
        pass

    def close(self):
        self.inner.close()


def _same(a: Path, b: Path) -> bool:
    """The same file or folder, through any symlink or hard link."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _check_outputs(src: Path, out_path: Path | None, alpha_dir: Path | None, transparent: bool) -> bool:
    """Refuse, before any work, an output that is the input (by inode, not by name), a device, or in
    a missing folder. Returns whether ``-o`` is a folder (an RGBA PNG sequence)."""
    for dst, flag in ((out_path, "-o"), (alpha_dir, "--alpha-out")):
        if dst is not None and _same(dst, src):
            raise ConfigError(f"refusing to overwrite the input {src}: {flag} {dst} is the same "
                              f"{'folder' if src.is_dir() else 'file'}; choose another {flag}")
    if alpha_dir is not None and alpha_dir.exists() and not alpha_dir.is_dir():
        raise ConfigError(f"--alpha-out {alpha_dir} is a file: give a folder for the alpha PNGs")
    if src.is_file() and src.suffix.lower() in IMAGE_EXTS and src.suffix.lower() not in VIDEO_EXTS:
        raise ConfigError(f"{src} is a still picture: use `vcam remove {src}` (vcam process takes a video file "
                          f"or a folder of frames)")
    if out_path is None:
        return False
    ext = out_path.suffix.lower()
    video_exts = (".webm", ".mov") if transparent else WRITABLE
    if ext and ext not in video_exts and not out_path.is_dir():
        raise ConfigError(f"-o {out_path}: vcam process writes {', '.join(video_exts)}"
                          + (" or a folder of RGBA PNGs" if transparent else
                             " (a cutout with alpha: --transparent with .webm, .mov or a folder)"))
    if out_path.exists() and not (out_path.is_file() or out_path.is_dir()):
        raise OutputError(f"-o {out_path} is not a regular file or folder ({os.path.realpath(out_path)}): give a "
                          f"video file name")
    is_dir = out_path.is_dir() or not out_path.suffix
    if is_dir and not transparent:
        raise ConfigError(f"-o {out_path} is a folder: add --transparent for an RGBA PNG sequence, "
                          f"or give a video file name")
    if is_dir and out_path.is_file():
        raise ConfigError(f"-o {out_path} is a file, not a folder for the PNG sequence: give a folder name, or a "
                          f".webm/.mov file")
    if not out_path.parent.exists():
        raise OutputError(f"cannot write {out_path}: folder {out_path.parent} does not exist")
    return is_dir


def process_video(cfg: Config, input_path: str, *, output: str | None = None, alpha_out: str | None = None,
                  fps: float | None = None, transparent: bool = False, keep_partial: bool = False,
                  matting_hz: float = 0.0, cpu_budget: float | None = None) -> dict:
    """Composite every frame of ``input_path`` into ``output`` and/or write alpha PNGs to ``alpha_out``.

    Every output is written under a temporary name and moved into place at the end: a run that
    fails, is interrupted or finds its input truncated leaves nothing, unless ``keep_partial``.
    ``matting_hz`` > 0 makes new mattes only as the live camera would at that rate (see
    :class:`vcam.engine.lockstep.LiveRate`); 0 makes one for every frame. ``cpu_budget`` (cores)
    makes them as the live camera would under that budget (:class:`vcam.engine.lockstep.BudgetRate`)."""
    src_path = Path(input_path).expanduser()
    out_path = Path(output).expanduser() if output else None
    alpha_dir = Path(alpha_out).expanduser() if alpha_out else None
    out_is_dir = _check_outputs(src_path, out_path, alpha_dir, transparent)
    source = open_source(input_path, fps=fps or 30.0, kinds=("frames", "file"))
    staged: list[Staged] = []
    try:
        first = source.read()
        source.rewind()
        H, W = first.shape[:2]
        sinks: list[Sink] = []
        if out_path is not None:
            out = Staged(out_path, folder=out_is_dir)
            staged.append(out)
            inner = (PngSequence(out.tmp, label=out_path) if out_is_dir else
                     AvWriter(out.tmp, W, H, source.fps, transparent=transparent, label=out_path,
                              audio_from=src_path if src_path.is_file() else None))
            sinks.append(_Cutouts(inner) if transparent else inner)
        alpha_stage = None
        if alpha_dir is not None:
            alpha_stage = Staged(alpha_dir, folder=True)
            staged.append(alpha_stage)
        # Lockstep runs one inference at a time: give it the threads the live workers would share.
        m = cfg.matting
        if m.workers > 1 and m.threads > 0:
            cfg = cfg.replace(matting={"threads": m.threads * m.workers})
        parts = build_parts(cfg, sinks=sinks, source=source)
    except BaseException:
        source.close()
        for st in staged:
            st.discard()
        raise

    cutouts = [s for s in sinks if isinstance(s, _Cutouts)]
    alphas = PngSequence(alpha_stage.tmp, label=alpha_dir) if alpha_stage is not None else None

    def per_frame(comp, frame):
        if alphas is not None:
            alphas.send(comp.alpha)
        for s in cutouts:
            s.send_cutout(frame.image, comp.alpha)

    bar = Progress(source.frame_count, label="vcam process")
    try:
        stats = run_lockstep(parts, keep_alpha=alphas is not None or bool(cutouts), on_composite=per_frame,
                             progress=bar, matting_hz=matting_hz, reuse_still=cfg.matting.reuse_still,
                             reuse_max_age=cfg.matting.reuse_max_age, reuse_followed=cfg.matting.reuse_followed,
                             cpu_budget=cpu_budget,
                             lite=lite_available(), crop=cfg.matting.crop)
    except BaseException:
        bar.close()
        _finish(staged, keep=keep_partial)
        raise
    bar.close()
    n, total = stats["frames"], source.frame_count
    if n == 0:
        _finish(staged, keep=False)
        raise SourceError(f"{input_path}: no frames could be decoded")
    if total and n < 0.98 * total:
        _finish(staged, keep=keep_partial)
        if not keep_partial:
            what = ("some of its pictures are unreadable (the first is named above)" if Path(input_path).is_dir()
                    else "the file is truncated or corrupt")
            raise SourceError(f"{input_path}: only {n} of {total} frames decoded: {what}; "
                              f"nothing written (add --keep-partial to keep those {n} frames)")
        log.warning("%s: only %d of %d frames decoded (truncated?); kept them (--keep-partial)", input_path, n, total)
    else:
        _finish(staged, keep=True)
    stats.update(input=str(input_path), output=output, alpha_out=alpha_out, size=[W, H],
                 model=cfg.matting.model, input_size=cfg.matting.input_size)
    return stats


def _finish(staged: list[Staged], *, keep: bool) -> None:
    for st in staged:
        if keep:
            st.commit()
        else:
            st.discard()
