"""Offline processing of video files and frame folders (``vcam process``).

Runs the live path's stages in lockstep (:func:`vcam.pipeline.run_lockstep`): the
same matter, smoother, refiner and compositor, with no frame dropped, so what the
quality benchmark measures here is what the live camera does.
"""
from __future__ import annotations

import logging
from pathlib import Path

import cv2

from .capture import FrameDirSource, VideoFileSource
from .config import Config
from .errors import ConfigError, SourceError
from .output import RecordSink
from .pipeline import build_parts, run_lockstep
from .progress import Progress

log = logging.getLogger(__name__)


def open_offline_source(path: str, fps: float | None = None):
    p = Path(path).expanduser()
    if p.is_dir():
        return FrameDirSource(str(p), fps or 30.0)
    if p.is_file():
        return VideoFileSource(str(p))
    raise SourceError(f"input {p} not found: give a video file or a folder of frames")


def process_video(cfg: Config, input_path: str, *, output: str | None = None, alpha_out: str | None = None,
                  fps: float | None = None) -> dict:
    """Composite every frame of ``input_path`` into ``output`` and/or write alpha PNGs to ``alpha_out``."""
    src_path = Path(input_path).expanduser().resolve()
    if output and Path(output).expanduser().resolve() == src_path:
        raise ConfigError(f"refusing to overwrite the input {src_path}: choose another -o")
    source = open_offline_source(input_path, fps)
    try:
        first = source.read()
        source.rewind()
        H, W = first.shape[:2]
        sinks = [RecordSink(output, W, H, source.fps)] if output else []
        alpha_dir = None
        if alpha_out:
            alpha_dir = Path(alpha_out).expanduser()
            if alpha_dir.resolve() == src_path:
                raise ConfigError(f"refusing to write alpha PNGs into the input folder {src_path}: choose another --alpha-out")
            alpha_dir.mkdir(parents=True, exist_ok=True)
        parts = build_parts(cfg, sinks=sinks, source=source)
    except BaseException:
        source.close()
        raise

    def save_alpha(comp, frame):
        if alpha_dir is not None:
            if not cv2.imwrite(str(alpha_dir / f"{comp.seq:05d}.png"), comp.alpha):
                raise SourceError(f"cannot write {alpha_dir / f'{comp.seq:05d}.png'}: check the folder is writable")

    bar = Progress(source.frame_count, label="vcam process")
    try:
        stats = run_lockstep(parts, keep_alpha=alpha_dir is not None, on_composite=save_alpha, progress=bar)
    finally:
        bar.close()
    stats.update(input=str(input_path), output=output, alpha_out=alpha_out, size=[W, H])
    return stats
