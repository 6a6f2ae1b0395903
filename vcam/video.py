"""Offline processing of video files and frame folders (``vcam process``).

Runs the live path's stages in lockstep (:func:`vcam.pipeline.run_lockstep`): the
same matter, smoother, refiner and compositor, with no frame dropped, so what the
quality benchmark measures here is what the live camera does.

Outputs (PyAV/FFmpeg): a composited video (H.264, audio copied from the input), or
with ``--transparent`` a cutout with alpha: ``.webm`` (VP9, yuva420p), ``.mov``
(ProRes 4444) or a folder of RGBA PNGs. A failed run leaves no partial output unless
``--keep-partial`` was given.
"""
from __future__ import annotations

import logging
import os
import shutil
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from .capture import FrameDirSource, VideoFileSource
from .config import Config
from .errors import ConfigError, OutputError, SourceError
from .output import Sink
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


def _rate(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


class AvWriter(Sink):
    """Writes composites (BGR) or cutouts (BGRA) with PyAV, copying the input's audio."""

    kind = "av"

    def __init__(self, path: Path, width: int, height: int, fps: float, *, transparent: bool = False,
                 audio_from: Path | None = None):
        import av

        self.path = path
        ext = path.suffix.lower()
        if transparent and ext not in (".webm", ".mov"):
            raise ConfigError(f"--transparent needs a .webm (VP9) or .mov (ProRes 4444) file, or a folder for PNGs, not {ext}")
        if not transparent and ext == ".webm":
            codec, pix = "libvpx-vp9", "yuv420p"
        elif transparent and ext == ".webm":
            codec, pix = "libvpx-vp9", "yuva420p"
        elif transparent:
            codec, pix = "prores_ks", "yuva444p10le"
        else:
            codec, pix = "libx264", "yuv420p"
        try:
            self.container = av.open(str(path), "w")
        except (OSError, av.error.FFmpegError) as e:
            raise OutputError(f"cannot write {path}: {e}") from None
        self.stream = self.container.add_stream(codec, rate=_rate(fps))
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, pix
        if codec == "libx264":
            self.stream.options = {"crf": "18", "preset": "veryfast"}
        elif codec == "prores_ks":
            self.stream.options = {"profile": "4444"}
        elif codec == "libvpx-vp9":
            self.stream.options = {"crf": "30", "b:v": "0", "deadline": "realtime", "cpu-used": "8",
                                   **({"auto-alt-ref": "0"} if transparent else {})}
        self.transparent = transparent
        self.audio_in = None
        if audio_from is not None:
            try:
                src = av.open(str(audio_from))
                webm_ok = ext != ".webm" or (src.streams.audio and src.streams.audio[0].codec_context.name in ("opus", "vorbis"))
                if src.streams.audio and not webm_ok:
                    log.warning("audio not copied: WebM holds only Opus/Vorbis audio; write .mkv or .mov to keep it")
                    src.close()
                elif src.streams.audio:
                    self.audio_in = src
                    self.audio_out = self.container.add_stream_from_template(src.streams.audio[0])
                else:
                    src.close()
            except Exception as e:  # audio is a bonus; say so and carry on
                log.warning("audio not copied from %s: %s", audio_from, e)
                self.audio_in = None

    def send(self, image: np.ndarray) -> None:
        import av

        fmt = "bgra" if image.ndim == 3 and image.shape[2] == 4 else "bgr24"
        frame = av.VideoFrame.from_ndarray(image, format=fmt)
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        if self.container is None:
            return
        try:
            for packet in self.stream.encode():
                self.container.mux(packet)
            if self.audio_in is not None:
                for packet in self.audio_in.demux(self.audio_in.streams.audio[0]):
                    if packet.dts is None:
                        continue
                    packet.stream = self.audio_out
                    self.container.mux(packet)
        finally:
            if self.audio_in is not None:
                self.audio_in.close()
            self.container.close()
            self.container = None


class PngSequence(Sink):
    kind = "png"

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.n = 0

    def send(self, image):
        if not cv2.imwrite(str(self.folder / f"{self.n:05d}.png"), image):
            raise OutputError(f"cannot write PNGs into {self.folder}: check it is writable")
        self.n += 1


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
    source = open_offline_source(input_path, fps)
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
