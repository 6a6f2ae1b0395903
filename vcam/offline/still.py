"""Still images: the Python API (:func:`remove`, :func:`new_session`) behind ``vcam remove``.

Stills skip the threads but run the live path's own pieces: the same matter, the same
refinement fit (:func:`vcam.engine.units.still_matte`) and the same
:class:`~vcam.imaging.compositor.Compositor`. On top of that, optional closed-form alpha
matting and island removal (:mod:`vcam.imaging.alpha`) and MobileSAM prompts
(:mod:`vcam.subject`).

Types (the API returns the kind it was given):

* ``PIL.Image.Image`` in → ``PIL.Image.Image`` out (RGBA cutout, RGB with a
  background, or mode ``L`` for ``only_mask``);
* ``numpy.ndarray`` in (``[H, W, 3|4] uint8`` **RGB(A)**, as PIL and rembg use, or
  ``[H, W]`` gray) → ``numpy.ndarray`` out (``[H, W, 4]`` RGBA, ``[H, W, 3]`` RGB
  with a background, ``[H, W]`` alpha for ``only_mask``);
* ``bytes`` in (any encoded image) → PNG ``bytes`` out.
"""
from __future__ import annotations

import threading
from dataclasses import replace

import cv2
import numpy as np
from PIL import Image

from ..config import CompositorConfig, Config
from ..core.frames import Frame
from ..engine.units import still_matte
from ..imaging.alpha import AlphaMatting, closed_form_alpha, remove_islands
from ..imaging.background import look_keys
from ..imaging.compositor import Compositor
from ..media.images import decode, encode
from ..models.matting import create as create_matter
from ..subject import PromptSession

__all__ = ["AlphaMatting", "Session", "cutout", "new_session", "remove"]


class Session:
    """A loaded model plus the live path's refiner and compositor, reused across images.

    Thread-safe: several threads may call :meth:`alpha` / :meth:`run` at once (the model
    session is shared; each thread has its own compositor)."""

    def __init__(self, name: str = "modnet", providers: str | list | None = None, *, cfg: Config | None = None,
                 fast: bool = False):
        cfg = cfg or Config()
        m = cfg.matting
        if providers is not None:
            m = replace(m, providers=",".join(providers) if isinstance(providers, (list, tuple)) else providers)
        if name == "modnet" and not fast:
            # A still has no 33 ms deadline: the stills preset's larger input (better edges);
            # `fast` keeps the live camera's input_size.
            m = replace(m, input_size=m.still_input_size)
        self.cfg = replace(cfg, matting=replace(m, model=name))
        self.matter = create_matter(self.cfg.matting)
        self._local = threading.local()

    @property
    def name(self) -> str:
        return self.cfg.matting.model

    def compositor(self, compositor_cfg: CompositorConfig | None = None) -> Compositor:
        """This thread's compositor, set to ``compositor_cfg`` when given (a bad value raises here)."""
        loc = self._local
        if getattr(loc, "compositor", None) is None:
            loc.compositor = Compositor(self.cfg.compositor, self.cfg.refine)
        if compositor_cfg is not None and compositor_cfg != loc.compositor.cfg:
            loc.compositor.configure(compositor_cfg)
        return loc.compositor

    def run(self, bgr: np.ndarray, compositor_cfg: CompositorConfig | None = None):
        """The live path on one image: ``(alpha [H, W] u8, composite [H, W, 3] u8 BGR)``."""
        comp = self.compositor(compositor_cfg)
        frame = Frame(np.ascontiguousarray(bgr), 0, 0.0)
        out = comp.render(frame, still_matte(self.matter, comp.refiner, frame), keep_alpha=True)
        return out.alpha, out.image

    def alpha(self, bgr: np.ndarray) -> np.ndarray:
        return self.run(bgr)[0]

    def close(self) -> None:
        self.matter.close()


_SESSIONS: dict[tuple, Session] = {}
_SESSIONS_LOCK = threading.Lock()


def new_session(name: str = "modnet", providers: str | list | None = None, **matting) -> Session:
    """A reusable session for ``name`` (``modnet``, ``u2netp``, ``rvm``, ``lite``); ``matting`` sets
    :class:`~vcam.config.MattingConfig` keys, e.g. ``input_size=320``."""
    cfg = Config()
    if "input_size" in matting:  # an explicit size is the one used, for stills too
        matting.setdefault("still_input_size", matting["input_size"])
    if matting:
        cfg = cfg.replace(matting=matting)
    return Session(name, providers, cfg=cfg)


def _shared_session(name: str, **matting) -> Session:
    key = (name, tuple(sorted(matting.items())))
    with _SESSIONS_LOCK:
        if key not in _SESSIONS:
            _SESSIONS[key] = new_session(name, **matting)
        return _SESSIONS[key]


def prompt_matting(bgr: np.ndarray) -> np.ndarray:
    """The matte that gives people their edges under a prompt, ``[H, W] u8``: MODNet at a short
    side of 320 (on the dev portraits the fused IoU is 0.963 there, 0.958 at the live 224)."""
    return _shared_session("modnet", input_size=320).alpha(bgr)


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
    if isinstance(image, Image.Image):
        rgb = np.asarray(image.convert("RGB"))
        return np.ascontiguousarray(rgb[:, :, ::-1]), "pil"
    raise TypeError(f"image: expected PIL.Image, numpy.ndarray or bytes, got {type(image).__name__}")


def cutout(bgr: np.ndarray, *, session: Session, only_mask: bool = False, alpha_matting: AlphaMatting | None = None,
           post_process: bool = False, background: dict | None = None, prompt=None) -> np.ndarray:
    """The core of ``remove``, in the frame contract's BGR: returns ``[H, W]`` alpha (``only_mask``),
    ``[H, W, 3]`` BGR composite (``background``: compositor keys) or ``[H, W, 4]`` BGRA cutout.

    ``prompt``: a :class:`vcam.subject.Prompt` → MobileSAM chooses the subject, fused with
    MODNet's matte and refined (see :mod:`vcam.subject.select`)."""
    comp_cfg = replace(session.cfg.compositor, **background) if background else None
    if prompt is not None:
        sel = PromptSession(bgr, matting=prompt_matting).select(prompt)  # people get MODNet's edges, whatever --model says
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
           comp_cfg: CompositorConfig | None = None, post_process: bool = False) -> np.ndarray:
    """A final alpha (and its decontaminated foreground) → the requested output."""
    if post_process:
        alpha = remove_islands(alpha)
    if only_mask:
        return alpha
    if comp_cfg is not None:
        # The alpha changed after the live path composited: blend again, same compositor.
        return session.compositor(comp_cfg).compose(bgr, alpha, fg=fg)
    return np.dstack([fg, alpha])


def remove(image, *, model: str = "modnet", only_mask: bool = False, alpha_matting: bool | AlphaMatting = False,
           bgcolor=None, bg=None, blur: int | None = None, post_process: bool = False, session: Session | None = None,
           prompt=None):
    """Remove the background from one image. Returns the same kind it was given (see the module docstring).

    ``prompt``: a :class:`vcam.Prompt` (points, negative points, box, in pixels) to choose
    the subject with MobileSAM (``vcam models pull mobilesam`` once); e.g.
    ``vcam.remove(img, prompt=vcam.Prompt(points=[(320, 200)]))``.

    ``bgcolor``: ``"#rrggbb"``, a colour name or an ``(r, g, b[, a])`` tuple → an opaque RGB result.
    ``bg``: a background image path; ``blur``: blur strength 1-100 for a blurred background.
    ``session``: a :func:`new_session` to reuse the loaded model across calls.
    """
    bgr, kind = _to_bgr(image)
    session = session or _shared_session(model)
    if isinstance(bgcolor, (tuple, list)):
        r, g, b = (int(v) for v in bgcolor[:3])
        bgcolor = f"#{r:02x}{g:02x}{b:02x}"
    background = look_keys(color=bgcolor, bg=bg, blur=blur) or None
    am = alpha_matting if isinstance(alpha_matting, AlphaMatting) else (AlphaMatting() if alpha_matting else None)
    out = cutout(bgr, session=session, only_mask=only_mask, alpha_matting=am, post_process=post_process,
                 background=background, prompt=prompt)
    return _to_kind(out, kind)


def _to_kind(out: np.ndarray, kind: str):
    if out.ndim == 3:
        out = cv2.cvtColor(out, cv2.COLOR_BGRA2RGBA if out.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    if kind == "numpy":
        return out
    if kind == "pil":
        return Image.fromarray(out)
    return encode(out, ".png", rgb=True)
