"""Video writers for ``vcam process`` (PyAV/FFmpeg): a composited video (H.264, audio copied
from the input), or a cutout with alpha: ``.webm`` (VP9, yuva420p), ``.mov`` (ProRes 4444)
or a folder of RGBA PNGs."""
from __future__ import annotations

import errno
import logging
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from ..errors import ConfigError, OutputError
from .sinks import Sink

log = logging.getLogger(__name__)


def _rate(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


class AvWriter(Sink):
    """Writes composites (BGR) or cutouts (BGRA) with PyAV, copying the input's audio."""

    kind = "av"

    def __init__(self, path: Path, width: int, height: int, fps: float, *, transparent: bool = False,
                 audio_from: Path | None = None, label: Path | None = None):
        import av

        self.path = path
        self.label = label or path  # what errors call it (the final name, when writing to a temporary one)
        self.container = None
        self.failed = False
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
            raise self._error(e) from None
        self.stream = self.container.add_stream(codec, rate=_rate(fps))
        # 4:2:0 video holds only even sizes (x264 refuses odd ones): pad an odd frame by one
        # repeated row or column rather than drop the picture's last one.
        self.pad = (height % 2, width % 2) if pix.endswith("420p") else (0, 0)
        if any(self.pad):
            log.info("%s: the frames are %dx%d; the video is %dx%d (4:2:0 video needs even sizes, the last "
                     "row/column is repeated)", self.label, width, height, width + self.pad[1], height + self.pad[0])
        self.stream.width, self.stream.height = width + self.pad[1], height + self.pad[0]
        self.stream.pix_fmt = pix
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

    def _error(self, e: Exception) -> OutputError:
        why = getattr(e, "strerror", None) or " ".join(str(e).split())[:120]
        full = getattr(e, "errno", None) == errno.ENOSPC or "space" in why.lower()
        return OutputError(f"cannot write {self.label}: {why}; "
                           + ("free some space, or choose another -o" if full else
                              "check that the folder is writable and has space, or choose another -o"))

    def send(self, image: np.ndarray) -> None:
        import av

        fmt = "bgra" if image.ndim == 3 and image.shape[2] == 4 else "bgr24"
        if any(self.pad):
            image = cv2.copyMakeBorder(image, 0, self.pad[0], 0, self.pad[1], cv2.BORDER_REPLICATE)
        frame = av.VideoFrame.from_ndarray(image, format=fmt)
        try:
            for packet in self.stream.encode(frame):
                self.container.mux(packet)
        except (OSError, av.error.FFmpegError) as e:
            self.failed = True
            raise self._error(e) from None

    def close(self) -> None:
        import av

        if self.container is None:
            return
        if self.failed:
            # After a failed write, flushing the encoder into the broken muxer crashes FFmpeg
            # (a segfault in PyAV 18): drop the file's remains without touching the encoder again.
            self.container = None
            if self.audio_in is not None:
                self.audio_in.close()
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
        except (OSError, av.error.FFmpegError) as e:
            self.failed = True
            raise self._error(e) from None
        finally:
            if self.audio_in is not None:
                self.audio_in.close()
            container, self.container = self.container, None
            if not self.failed:  # (after a failed write the muxer is not touched again: see above)
                try:
                    container.close()
                except (OSError, av.error.FFmpegError) as e:
                    raise self._error(e) from None


class PngSequence(Sink):
    """One PNG a frame, ``00000.png`` onwards (BGR or BGRA)."""

    kind = "png"

    def __init__(self, folder: Path, *, label: Path | None = None):
        self.folder = folder
        self.label = label or folder  # what errors call it (the final name, when writing to a temporary one)
        folder.mkdir(parents=True, exist_ok=True)
        self.n = 0

    def send(self, image):
        ok, buf = cv2.imencode(".png", image)
        try:
            if not ok:
                raise OSError(0, "PNG encoding failed")
            (self.folder / f"{self.n:05d}.png").write_bytes(buf.tobytes())
        except OSError as e:
            raise OutputError(f"cannot write PNGs into {self.label}: {e.strerror}; free some space, or check "
                              f"the folder is writable") from None
        self.n += 1
