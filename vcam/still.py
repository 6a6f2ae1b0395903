"""Still images: ``vcam remove`` and the Python API (:func:`remove`, :func:`new_session`).

Stills skip the threads but run the live path's own pieces: the same matter,
the same :class:`~vcam.pipeline.MattingStage` (refinement fit included) and the
same :class:`~vcam.compositor.Compositor`. On top of that, optional closed-form
alpha matting (pymatting) and island removal.

Types (the API returns the kind it was given):

* ``PIL.Image.Image`` in → ``PIL.Image.Image`` out (RGBA cutout, RGB with a
  background, or mode ``L`` for ``only_mask``);
* ``numpy.ndarray`` in (``[H, W, 3|4] uint8`` **RGB(A)**, as PIL and rembg use, or
  ``[H, W]`` gray) → ``numpy.ndarray`` out (``[H, W, 4]`` RGBA, ``[H, W, 3]`` RGB
  with a background, ``[H, W]`` alpha for ``only_mask``);
* ``bytes`` in (any encoded image) → PNG ``bytes`` out.
"""
from __future__ import annotations

import contextlib
import io
import threading
from dataclasses import dataclass, replace

import cv2
import numpy as np

from .compositor import Compositor
from .config import Config, MattingConfig
from .errors import ConfigError, SourceError
from .frames import Frame
from .matting import create as create_matter
from .pipeline import MattingStage
from .smoothing import create as create_smoother


@dataclass(frozen=True, kw_only=True)
class AlphaMatting:
    """rembg-style trimap thresholds: ``-af``, ``-ab``, ``-ae``."""

    foreground_threshold: int = 240
    background_threshold: int = 10
    erode_size: int = 10


class Session:
    """A loaded model plus the live path's refiner and compositor, reused across images.

    Thread-safe: several threads may call :meth:`alpha` / :meth:`composite` at once
    (the model session is shared; per-thread state is kept per thread).
    """

    def __init__(self, name: str = "modnet", providers: str | list | None = None, *, cfg: Config | None = None):
        cfg = cfg or Config()
        m = cfg.matting
        if providers is not None:
            m = replace(m, providers=",".join(providers) if isinstance(providers, (list, tuple)) else providers)
        self.cfg = replace(cfg, matting=replace(m, model=name))
        self.matter = create_matter(self.cfg.matting)
        self._local = threading.local()

    @property
    def name(self) -> str:
        return self.cfg.matting.model

    def _compositor(self, compositor_cfg=None) -> Compositor:
        loc = self._local
        if getattr(loc, "compositor", None) is None:
            loc.compositor = Compositor(self.cfg.compositor, self.cfg.refine)
        if compositor_cfg is not None and compositor_cfg != loc.compositor.cfg:
            loc.compositor.configure(compositor_cfg)
        return loc.compositor

    def run(self, bgr: np.ndarray, compositor_cfg=None):
        """The live path on one image: ``(alpha [H, W] u8, composite [H, W, 3] u8 BGR)``."""
        # No temporal state between independent images: a fresh stage, smoothing off.
        self.matter.reset()
        stage = MattingStage(self.matter, create_smoother(replace(self.cfg.smoothing, kind="none")),
                             self._compositor().refiner)
        frame = Frame(np.ascontiguousarray(bgr), 0, 0.0)
        comp = self._compositor(compositor_cfg).render(frame, stage.process(frame), keep_alpha=True)
        return comp.alpha, comp.image

    def alpha(self, bgr: np.ndarray) -> np.ndarray:
        return self.run(bgr)[0]

    def close(self) -> None:
        self.matter.close()


_SESSIONS: dict[tuple, Session] = {}
_SESSIONS_LOCK = threading.Lock()


def new_session(name: str = "modnet", providers: str | list | None = None, **matting) -> Session:
    """A reusable session for ``name`` (``modnet``, ``u2netp``, ``rvm``); ``matting`` sets
    :class:`~vcam.config.MattingConfig` keys, e.g. ``input_size=320``."""
    cfg = Config()
    if matting:
        cfg = cfg.replace(matting=matting)
    return Session(name, providers, cfg=cfg)


def _session_for(model: str) -> Session:
    with _SESSIONS_LOCK:
        if model not in _SESSIONS:
            _SESSIONS[model] = new_session(model)
        return _SESSIONS[model]


# --- image decoding -------------------------------------------------------------------

def decode(data: bytes, name: str = "image") -> np.ndarray:
    """Encoded bytes → ``[H, W, 3] uint8 BGR``; a one-line error for anything else."""
    if not data:
        raise SourceError(f"{name}: empty file (0 bytes)")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise SourceError(f"{name}: not an image, or corrupt/truncated")
    return img


def read_image(path) -> np.ndarray:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SourceError(f"{path}: is a folder") from None
    except OSError as e:
        raise SourceError(f"{path}: cannot read ({e.strerror})") from None
    return decode(data, str(path))


def _to_bgr(image) -> tuple[np.ndarray, str]:
    """Any accepted input → (BGR array, kind)."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode(bytes(image)), "bytes"
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise TypeError(f"image: expected uint8, got {image.dtype}")
        if image.ndim == 2:
            return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), "numpy"
        if image.ndim == 3 and image.shape[2] in (3, 4):
            return np.ascontiguousarray(image[:, :, 2::-1]), "numpy"  # RGB(A) → BGR
        raise ValueError(f"image: expected shape [H, W], [H, W, 3] or [H, W, 4], got {list(image.shape)}")
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        rgb = np.asarray(image.convert("RGB"))
        return np.ascontiguousarray(rgb[:, :, ::-1]), "pil"
    raise TypeError(f"image: expected PIL.Image, numpy.ndarray or bytes, got {type(image).__name__}")


# --- the cutout -------------------------------------------------------------------------

def remove_islands(alpha: np.ndarray, min_fraction: float = 0.02) -> np.ndarray:
    """Drop blobs much smaller than the main subject (``--post-process``); soft edges are kept."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats((alpha > 127).astype(np.uint8), connectivity=8)
    if n <= 2:
        return alpha
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.zeros(n, np.uint8)
    keep[1:] = areas >= min_fraction * areas.max()
    mask = keep[labels]
    # Grow the kept region a little so the soft border around it survives.
    mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9)))
    return (alpha * mask).astype(np.uint8)


def closed_form_alpha(bgr: np.ndarray, alpha: np.ndarray, am: AlphaMatting) -> tuple[np.ndarray, np.ndarray]:
    """Trimap from the mask (rembg's ``-af/-ab/-ae``), then pymatting's closed-form alpha and
    its foreground estimation. Returns ``(alpha [H, W] u8, foreground [H, W, 3] u8 BGR)``."""
    k = max(1, int(am.erode_size))
    se = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
    fg = cv2.erode((alpha > am.foreground_threshold).astype(np.uint8), se)
    bg = cv2.erode((alpha < am.background_threshold).astype(np.uint8), se)
    trimap = np.full(alpha.shape, 0.5)
    trimap[fg > 0] = 1.0
    trimap[bg > 0] = 0.0
    if not (trimap == 0.5).any() or not (fg > 0).any() or not (bg > 0).any():
        return alpha, bgr  # nothing unknown, or no sure region: the mask is already final
    return closed_form(bgr, trimap)


def closed_form(bgr: np.ndarray, trimap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pymatting's closed-form alpha for a float ``trimap`` (0, 0.5, 1) and its foreground estimation:
    ``(alpha [H, W] u8, foreground [H, W, 3] u8 BGR)``."""
    try:
        from pymatting import estimate_alpha_cf, estimate_foreground_ml
    except ImportError:
        raise ConfigError("alpha matting needs pymatting: pip install pymatting") from None
    img = bgr[:, :, ::-1].astype(np.float64) / 255.0
    # pymatting prints solver warnings on stdout, which would corrupt `vcam remove - > out.png`.
    with contextlib.redirect_stdout(io.StringIO()):
        a = np.clip(estimate_alpha_cf(img, trimap), 0, 1)
        f = np.clip(estimate_foreground_ml(img, a), 0, 1)
    return (a * 255 + 0.5).astype(np.uint8), np.ascontiguousarray((f[:, :, ::-1] * 255 + 0.5).astype(np.uint8))


def cutout(bgr: np.ndarray, *, session: Session, only_mask: bool = False, alpha_matting: AlphaMatting | None = None,
           post_process: bool = False, background: dict | None = None, prompt=None) -> np.ndarray:
    """The core of ``remove``, in the frame contract's BGR: returns ``[H, W]`` alpha (``only_mask``),
    ``[H, W, 3]`` BGR composite (``background``: compositor keys) or ``[H, W, 4]`` BGRA cutout.

    ``prompt``: a :class:`vcam.segment.Prompt` → MobileSAM chooses the subject, fused with
    MODNet's matte and refined (see :mod:`vcam.segment.select`)."""
    comp_cfg = replace(session.cfg.compositor, **background) if background else None
    if prompt is not None:
        from .segment import PromptSession

        sel = PromptSession(bgr).select(prompt)  # people get MODNet's edges, whatever --model says
        return finish(bgr, sel.alpha, sel.foreground, session=session, only_mask=only_mask, comp_cfg=comp_cfg,
                      post_process=post_process)
    alpha, composite = session.run(bgr, comp_cfg)
    if not post_process and alpha_matting is None:
        return alpha if only_mask else composite if background else np.dstack([bgr, alpha])
    fg = bgr
    if post_process:
        alpha = remove_islands(alpha)
    if alpha_matting is not None:
        alpha, fg = closed_form_alpha(bgr, alpha, alpha_matting)
    return finish(bgr, alpha, fg, session=session, only_mask=only_mask, comp_cfg=comp_cfg)


def finish(bgr: np.ndarray, alpha: np.ndarray, fg: np.ndarray, *, session: Session, only_mask: bool = False,
           comp_cfg=None, post_process: bool = False) -> np.ndarray:
    """A final alpha (and its decontaminated foreground) → the requested output."""
    if post_process:
        alpha = remove_islands(alpha)
    if only_mask:
        return alpha
    if comp_cfg is not None:
        # The alpha changed after the live path composited: blend again, same compositor.
        return session._compositor(comp_cfg).compose(bgr, alpha, fg=fg)
    return np.dstack([fg, alpha])


def remove(image, *, model: str = "modnet", only_mask: bool = False, alpha_matting: bool | AlphaMatting = False,
           bgcolor=None, bg=None, blur: int | None = None, post_process: bool = False, session: Session | None = None,
           prompt=None):
    """Remove the background from one image. Returns the same kind it was given (see the module docstring).

    ``prompt``: a :class:`vcam.segment.Prompt` (points, negative points, box, in pixels) to choose
    the subject with MobileSAM (``vcam models pull mobilesam`` once); e.g.
    ``vcam.remove(img, prompt=vcam.Prompt(points=[(320, 200)]))``.

    ``bgcolor``: ``"#rrggbb"``, a colour name or an ``(r, g, b[, a])`` tuple → an opaque RGB result.
    ``bg``: a background image path; ``blur``: blur strength 1-100 for a blurred background.
    ``session``: a :func:`new_session` to reuse the loaded model across calls.
    """
    bgr, kind = _to_bgr(image)
    session = session or _session_for(model)
    background = _background_spec(bgcolor, bg, blur)
    am = alpha_matting if isinstance(alpha_matting, AlphaMatting) else (AlphaMatting() if alpha_matting else None)
    out = cutout(bgr, session=session, only_mask=only_mask, alpha_matting=am, post_process=post_process,
                 background=background, prompt=prompt)
    return _to_kind(out, kind)


def _background_spec(bgcolor=None, bg=None, blur=None) -> dict | None:
    if bgcolor is not None:
        if isinstance(bgcolor, (tuple, list)):
            r, g, b = (int(v) for v in bgcolor[:3])
            bgcolor = f"#{r:02x}{g:02x}{b:02x}"
        return {"mode": "color", "color": str(bgcolor)}
    if bg is not None:
        return {"mode": "replace", "background": str(bg)}
    if blur is not None:
        return {"mode": "blur", "blur": int(blur)}
    return None


def _to_kind(out: np.ndarray, kind: str):
    if out.ndim == 3:
        out = cv2.cvtColor(out, cv2.COLOR_BGRA2RGBA if out.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    if kind == "numpy":
        return out
    if kind == "pil":
        from PIL import Image

        return Image.fromarray(out)
    return encode(out, ".png", rgb=True)


def encode(img: np.ndarray, ext: str = ".png", *, rgb: bool = False, quality: int = 95) -> bytes:
    """Encode ``[H, W]``, ``[H, W, 3]`` or ``[H, W, 4]`` (BGR(A), or RGB(A) when ``rgb``)."""
    if rgb and img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA if img.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    params = []
    if ext in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    elif ext == ".webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, quality]
    ok, buf = cv2.imencode(ext, img, params)
    if not ok:
        raise SourceError(f"cannot encode the result as {ext}")
    return buf.tobytes()


# --- files and folders (``vcam remove``) --------------------------------------------------

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def expand_inputs(inputs: list[str]) -> list:
    """Files, folders (their images, sorted) and globs → paths; ``-`` stays ``-``."""
    import glob
    from pathlib import Path

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


def output_path(src, output: str | None, ext: str, suffix: str, many: bool):
    from pathlib import Path

    if output and not many and not Path(output).is_dir() and Path(output).suffix:
        return Path(output).expanduser()
    folder = Path(output).expanduser() if output else Path(src).parent
    return folder / f"{Path(src).stem}{'' if output else suffix}{ext}"
