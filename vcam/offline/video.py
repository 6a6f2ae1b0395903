"""Offline processing of video files and frame folders (``vcam process``).

Runs the live path's units in lockstep (:func:`vcam.engine.lockstep.run_lockstep`): the
same matter, smoother, refiner and compositor, with no frame dropped, so what the
quality benchmark measures here is what the live camera does.

Outputs (:mod:`vcam.media.video`): a composited video (H.264, audio copied from the input), or
with ``--transparent`` a cutout with alpha: ``.webm`` (VP9, yuva420p), ``.mov``
(ProRes 4444) or a folder of RGBA PNGs. A failed run leaves no partial output unless
``--keep-partial`` was given.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import cv2
import numpy as np

from ..config import Config
from ..core.progress import Progress
from ..engine.lockstep import run_lockstep
from ..engine.parts import build_parts
from ..errors import ConfigError, OutputError, SourceError
from ..media.sinks import Sink
from ..media.sources import open_source
from ..media.video import AvWriter, PngSequence

log = logging.getLogger(__name__)


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


def process_video(cfg: Config, input_path: str, *, output: str | None = None, alpha_out: str | None = None,
                  fps: float | None = None, transparent: bool = False, keep_partial: bool = False) -> dict:
    """Composite every frame of ``input_path`` into ``output`` and/or write alpha PNGs to ``alpha_out``."""
    src_path = Path(input_path).expanduser().resolve()
    out_path = Path(output).expanduser() if output else None
    if out_path is not None and out_path.resolve() == src_path:
        raise ConfigError(f"refusing to overwrite the input {src_path}: choose another -o")
    source = open_source(input_path, fps=fps or 30.0, kinds=("frames", "file"))
    created: list[Path] = []
    try:
        first = source.read()
        source.rewind()
        H, W = first.shape[:2]
        sinks: list[Sink] = []
        if out_path is not None:
            is_dir = out_path.is_dir() or not out_path.suffix
            if is_dir and not transparent:
                raise ConfigError(f"-o {out_path} is a folder: add --transparent for an RGBA PNG sequence, "
                                  f"or give a video file name")
            if not is_dir and not out_path.parent.exists():
                raise OutputError(f"cannot write {out_path}: folder {out_path.parent} does not exist")
            if not is_dir:
                created.append(out_path)
            elif not out_path.exists():
                created.append(out_path)
            inner = PngSequence(out_path) if is_dir else AvWriter(out_path, W, H, source.fps, transparent=transparent,
                                                                   audio_from=src_path if src_path.is_file() else None)
            sinks.append(_Cutouts(inner) if transparent else inner)
        alpha_dir = None
        if alpha_out:
            alpha_dir = Path(alpha_out).expanduser()
            if alpha_dir.resolve() == src_path:
                raise ConfigError(f"refusing to write alpha PNGs into the input folder {src_path}: choose another --alpha-out")
            alpha_dir.mkdir(parents=True, exist_ok=True)
        # Lockstep runs one inference at a time: give it the threads the live workers would share.
        m = cfg.matting
        if m.workers > 1 and m.threads > 0:
            cfg = cfg.replace(matting={"threads": m.threads * m.workers})
        parts = build_parts(cfg, sinks=sinks, source=source)
    except BaseException:
        source.close()
        _discard(created)
        raise

    cutouts = [s for s in sinks if isinstance(s, _Cutouts)]

    def per_frame(comp, frame):
        if alpha_dir is not None:
            if not cv2.imwrite(str(alpha_dir / f"{comp.seq:05d}.png"), comp.alpha):
                raise OutputError(f"cannot write {alpha_dir / f'{comp.seq:05d}.png'}: check the folder is writable")
        for s in cutouts:
            s.send_cutout(frame.image, comp.alpha)

    bar = Progress(source.frame_count, label="vcam process")
    ok = False
    try:
        stats = run_lockstep(parts, keep_alpha=alpha_dir is not None or bool(cutouts), on_composite=per_frame,
                             progress=bar)
        ok = True
    finally:
        bar.close()
        if not ok and not keep_partial:
            _discard(created)
    if stats["frames"] == 0:
        _discard(created)
        raise SourceError(f"{input_path}: no frames could be decoded")
    if source.frame_count and stats["frames"] < 0.98 * source.frame_count:
        log.warning("%s: only %d of %d frames decoded: the file may be truncated", input_path, stats["frames"],
                    source.frame_count)
    stats.update(input=str(input_path), output=output, alpha_out=alpha_out, size=[W, H])
    return stats


def _discard(paths: list[Path]) -> None:
    for p in paths:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists():
            p.unlink()
