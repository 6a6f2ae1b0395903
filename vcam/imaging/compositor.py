"""The compositor: refine the newest matte against the current frame, then blend.

Modes (``compositor.mode``): ``blur``, ``replace`` (an image), ``color`` (a solid
colour or green screen) and ``none`` (passthrough), each a small strategy that the
:class:`Look` prepares once per change. It fails closed: with no matte yet, or a failed
one, every mode but ``none`` shows the fully blurred frame, never the raw room.
"""
from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass, replace

import cv2
import numpy as np

from ..config import CompositorConfig, RefineConfig
from ..core.frames import Composite, Frame, Matte
from ..errors import ConfigError
from . import kernels
from .background import Blur, color_bgr, list_backgrounds, open_background, pause_card
from .follow import MatteFollower, track_gray
from .refine import Refiner

log = logging.getLogger(__name__)


class BufferPool:
    """Reusable arrays of one shape. A buffer is handed out again only when nobody
    else holds a reference to it (the frame contract's ownership rule, checked
    rather than trusted), so the hot path does not allocate once the pool is warm."""

    def __init__(self, shape, dtype=np.uint8, limit: int = 8):
        self.shape, self.dtype, self.limit = tuple(shape), dtype, limit
        self._bufs: list[np.ndarray] = []

    def get(self) -> np.ndarray:
        for b in self._bufs:
            # References: the list, the loop variable, getrefcount's argument.
            if sys.getrefcount(b) <= 3:
                return b
        b = np.empty(self.shape, self.dtype)
        if len(self._bufs) < self.limit:
            self._bufs.append(b)
        return b


# --- modes: one small strategy each, prepared inside the Look ----------------------------------

class Passthrough:
    """``none``: the camera as it is; the matte is not needed."""

    uses_matte = False
    fuses = False  # see BlurMode.compose_refined

    def compose(self, comp: "Compositor", img, alpha, out, fg, weight):
        np.copyto(out, img)
        return out


class BlurMode:
    """``blur``: the frame blurred where the matte says background (``Blur``, matte-weighted)."""

    uses_matte = True
    fuses = True

    def __init__(self, blur: Blur):
        self.blur = blur

    def compose(self, comp, img, alpha, out, fg, weight):
        small = self.blur.small(img, weight)
        return kernels.blend_upsample(out, fg, small, alpha, comp.scratch("up"))

    def compose_refined(self, comp, img, a, b, out, weight, keep):
        """The refinement and this mode's blend in one pass over the frame (``kernels.refine_blend``),
        from the matte's coefficients ``a, b``; ``keep``: an ``[H, W] u8`` to keep the alpha in, or None.
        Only for modes where ``fuses`` (no decontamination, no light wrap: those need the whole alpha)."""
        return comp.refine_blend(img, a, b, self.blur.small(img, weight), out, keep)


class ColorMode:
    """``color``: a flat colour; with ``decontaminate``, the old room is taken out of the border."""

    uses_matte = True

    def __init__(self, color: np.ndarray, decontaminate: bool):
        self.color, self.decontaminate = color, decontaminate  # [3] u8 BGR
        self.fuses = not decontaminate

    def compose_refined(self, comp, img, a, b, out, weight, keep):
        return comp.refine_blend(img, a, b, self.color, out, keep)

    def compose(self, comp, img, alpha, out, fg, weight):
        if self.decontaminate and fg is img:
            # The colour itself as the background (one row, not a frame to read); the light-wrap
            # term never reads ``soft`` here (no wrap), but the kernel takes a full frame for it.
            return comp.compose_edge(img, alpha, out, weight, self.color, comp.flat(self.color), decontaminate=True,
                                     light_wrap=0.0)
        return kernels.blend_color(out, fg, self.color, alpha, comp.scratch("color"))


class ReplaceMode:
    """``replace``: an image or a looping video; decontamination and light wrap at the border."""

    uses_matte = True

    def __init__(self, background, decontaminate: bool, light_wrap: float):
        self.background, self.decontaminate, self.light_wrap = background, decontaminate, light_wrap
        self.fuses = not decontaminate and light_wrap <= 0

    def compose_refined(self, comp, img, a, b, out, weight, keep):
        H, W = img.shape[:2]
        return comp.refine_blend(img, a, b, self.background.at(W, H), out, keep)

    def compose(self, comp, img, alpha, out, fg, weight):
        H, W = img.shape[:2]
        bg = self.background.at(W, H)
        if (self.decontaminate or self.light_wrap > 0) and fg is img:
            return comp.compose_edge(img, alpha, out, weight, bg, comp.soft_of(bg), decontaminate=self.decontaminate,
                                     light_wrap=self.light_wrap)
        return kernels.blend(out, fg, bg, alpha)


@dataclass(frozen=True)
class Look:
    """Everything the compositor's mode depends on, swapped as one object so that a
    live change never shows a half-applied state."""

    cfg: CompositorConfig
    background: object | None  # ImageBackground | VideoBackground | None
    backgrounds: tuple[str, ...]  # the rotation set (a folder's files, or the one file)
    index: int
    blur: Blur
    mode: object  # Passthrough | BlurMode | ColorMode | ReplaceMode

    @property
    def current_background(self) -> str | None:
        return self.backgrounds[self.index] if self.backgrounds else None


def _mode(cfg: CompositorConfig, background, color: np.ndarray, blur: Blur):
    if cfg.mode == "none":
        return Passthrough()
    if cfg.mode == "color":
        return ColorMode(color, cfg.decontaminate)
    if cfg.mode == "replace":
        return ReplaceMode(background, cfg.decontaminate, cfg.light_wrap)
    return BlurMode(blur)


class Compositor:
    def __init__(self, cfg: CompositorConfig, refine: RefineConfig = RefineConfig()):
        self.refiner = Refiner(refine)
        self.follower = MatteFollower() if refine.follow and refine.enabled else None
        self._size = None
        self.fail_blur = Blur(100)
        # The old room behind the person's border, for decontamination: a rough estimate by nature,
        # so it is made at half the blur's usual working size (sigma 1 px there; 0.6 ms a 720p frame
        # instead of 1.6, and 2 levels from the finer one on average in the border).
        self._est_blur = Blur(25, step=1.0)
        self._soft_key = None
        self._flat_key = None
        self._card = None
        self._scratch: dict[str, dict] = {}  # kernels' reused buffers, per kernel
        self._published = None  # while render() composes: the published matte's alpha (immutable)
        self._lock = threading.Lock()  # serialises configure() calls, not rendering
        self.look: Look | None = None
        self.configure(cfg)

    @property
    def cfg(self) -> CompositorConfig:
        return self.look.cfg

    def configure(self, cfg: CompositorConfig, *, index: int | None = None) -> Look:
        """Apply a compositor config, also while running. Everything is prepared first; a bad
        value raises and the current look stays. Returns the new look."""
        with self._lock:
            old = self.look
            backgrounds: tuple[str, ...] = ()
            background = None
            if cfg.background:
                same_set = old is not None and old.cfg.background == cfg.background
                backgrounds = old.backgrounds if same_set else tuple(list_backgrounds(cfg.background))
                if index is None:
                    index = old.index if same_set else 0
                index %= len(backgrounds)
                if same_set and old.index == index and old.background is not None:
                    background = old.background
                else:
                    background = open_background(backgrounds[index])
            elif cfg.mode == "replace":
                raise ConfigError("mode 'replace' needs a background: pass --bg IMAGE or set compositor.background")
            color = np.array(color_bgr(cfg.color), np.uint8)
            blur = old.blur if old is not None and old.cfg.blur == cfg.blur else Blur(cfg.blur)
            self.look = Look(cfg, background, backgrounds, index or 0, blur, _mode(cfg, background, color, blur))
            return self.look

    def step_background(self, step: int) -> Look:
        """Next (+1) or previous (-1) background of the rotation set, in mode ``replace``."""
        look = self.look
        if len(look.backgrounds) < 2:
            raise ConfigError("only one background to choose from: give a folder with --bg to rotate")
        return self.configure(replace(look.cfg, mode="replace"), index=look.index + step)

    # --- buffers the modes share --------------------------------------------------------------

    def scratch(self, kernel: str) -> dict:
        return self._scratch.setdefault(kernel, {})

    def _buffers(self, H: int, W: int):
        if self._size != (H, W):
            self._size = (H, W)
            self._out = BufferPool((H, W, 3))
            self._alpha = BufferPool((H, W))
            self._card = None
            self._soft = np.empty((H, W, 3), np.uint8)
            self._wrap = np.zeros((H, W), np.uint8)
            self._wrap_dirty = False
            self._wrap_key = None  # (matte, strength, W, H) the wrap was made from, if a published matte
            self._flat_bg = np.empty((H, W, 3), np.uint8)
            self._soft_key = None
            self._flat_key = None

    def flat(self, color: np.ndarray) -> np.ndarray:
        """A whole frame of ``color``, filled once per colour and size."""
        if self._flat_key != color.tobytes():
            self._flat_bg[:] = color
            self._flat_key = color.tobytes()
        return self._flat_bg

    def compose(self, img: np.ndarray, alpha: np.ndarray, out: np.ndarray | None = None, *,
                fg: np.ndarray | None = None, weight: np.ndarray | None = None, look: Look | None = None) -> np.ndarray:
        """Blend ``fg`` (default ``img``) over this mode's background with a full-resolution alpha.

        ``img``: ``[H, W, 3] u8`` BGR, the frame the background blur is made from; ``alpha``:
        ``[H, W] u8``; ``weight``: the matte that keeps the person out of the blur (any
        resolution; default ``alpha``).
        """
        look = look or self.look
        H, W = img.shape[:2]
        self._buffers(H, W)
        out = np.empty_like(img) if out is None else out
        fg = img if fg is None else fg
        return look.mode.compose(self, img, alpha, out, fg, alpha if weight is None else weight)

    def refine_blend(self, img, a, b, bg, out, keep) -> np.ndarray:
        return kernels.refine_blend(out, img, a, b, bg, keep, self.scratch("refine"), fixed=True)

    def compose_edge(self, img, alpha, out, weight, bg, soft, *, decontaminate: bool, light_wrap: float) -> np.ndarray:
        """replace/color with decontamination and light wrap (``kernels.blend_edge``)."""
        H, W = img.shape[:2]
        if decontaminate:
            # Only clear room counts: a pixel a quarter person is already excluded, so the
            # estimate behind the border is not tinted by the person it is removed from.
            w = weight.astype(np.float32) * np.float32(4 / 255) if weight.dtype == np.uint8 else weight * np.float32(4)
            # At the blur's working size: the kernel stretches it a row at a time.
            est = self._est_blur.small(img, np.minimum(w, 1.0, out=w))
        else:
            est = img
        if light_wrap > 0:
            # The wrap depends on the matte alone: a published matte (the frame contract: never
            # written again) keeps its wrap while it is held, at 30 frames a second, a few mattes.
            key = (weight, light_wrap, W, H)
            held = weight is self._published and self._wrap_key is not None and self._wrap_key[0] is weight
            if not (held and self._wrap_key[1:] == key[1:]):
                self._wrap_weight(weight, light_wrap, W, H)
                self._wrap_key = key if weight is self._published else None
            self._wrap_dirty = True
        elif self._wrap_dirty:  # zeroed once when light wrap goes off, not every frame
            self._wrap.fill(0)
            self._wrap_dirty = False
            self._wrap_key = None
        return kernels.blend_edge(out, img, bg, est, soft, self._wrap, alpha, self.scratch("edge"))

    def soft_of(self, bg: np.ndarray) -> np.ndarray:
        """The new background blurred (what light from it looks like); cached while it is the same image."""
        key = (id(bg), bg.shape, bg.__array_interface__["data"][0])
        if self._soft_key != key:
            H, W = bg.shape[:2]
            small = cv2.resize(bg, (max(8, W // 8), max(8, H // 8)), interpolation=cv2.INTER_AREA)
            cv2.GaussianBlur(small, (0, 0), 2.0, dst=small)
            cv2.resize(small, (W, H), dst=self._soft, interpolation=cv2.INTER_LINEAR)
            self._soft_key = key
        return self._soft

    def _wrap_weight(self, matte: np.ndarray, strength: float, W: int, H: int) -> None:
        """Light-wrap weight: high on the person's side of the border, fading inwards over
        about 1 % of the width. Computed at matte resolution, upsampled once."""
        m = matte.astype(np.float32) * np.float32(1 / 255) if matte.dtype == np.uint8 else matte
        if m.shape[1] > 480:  # a full-resolution alpha (stills): work at a matte-like size
            m = cv2.resize(m, (480, max(8, int(480 * m.shape[0] / m.shape[1]))), interpolation=cv2.INTER_AREA)
        sigma = max(1.0, 0.012 * m.shape[1])
        outside = 1.0 - cv2.GaussianBlur(m, (0, 0), sigma)
        w = np.clip(m * outside * (2.0 * strength), 0.0, 1.0)
        cv2.resize((w * 255).astype(np.uint8), (W, H), dst=self._wrap, interpolation=cv2.INTER_LINEAR)

    def follow(self, matte: Matte, img: np.ndarray) -> Matte:
        """``matte`` moved with the person from its own frame onto ``img`` (the same matte when it
        is this frame's, carries no guide, or the motion is unknown): :mod:`vcam.imaging.follow`."""
        g = matte.guide
        if self.follower is None or g is None or g.shape != matte.alpha.shape:
            return matte
        gray = track_gray(img, g.shape)  # [h, w] u8, the current frame at matte resolution
        alpha, coef, moved = self.follower.follow(matte.alpha, matte.coef, g, gray)
        return replace(matte, alpha=alpha, coef=coef) if moved else matte

    def render(self, frame: Frame, matte: Matte | None, *, keep_alpha: bool = False) -> Composite:
        """Composite ``frame`` with ``matte`` (``None``: no matte yet → fail closed)."""
        look = self.look  # one snapshot per frame: a live change applies from the next frame
        cfg = look.cfg
        img = frame.image  # [H, W, 3] u8 BGR
        H, W = img.shape[:2]
        self._buffers(H, W)
        out = self._out.get()
        alpha = None
        have_matte = matte is not None and matte.alpha is not None
        if have_matte and not cfg.paused and (matte.origin if matte.origin >= 0 else matte.seq) != frame.seq:
            matte = self.follow(matte, img)
        if cfg.paused:
            if cfg.pause_style == "card":
                if self._card is None:
                    self._card = pause_card(W, H)
                np.copyto(out, self._card)
            else:
                self.fail_blur(img, None, out)
            have_matte = False
        elif have_matte and look.mode.fuses:
            # Refinement and blend in one pass over the frame; the alpha is written only if kept.
            a, b = self.refiner.pair(img, matte.alpha, matte.coef)
            alpha = self._alpha.get() if keep_alpha else None
            look.mode.compose_refined(self, img, a, b, out, matte.alpha, alpha)
        else:
            if have_matte and (look.mode.uses_matte or keep_alpha):
                # The guide is the frame's gray with a 3x3 mean (made inside the kernel): the
                # mean takes the sensor noise out (it would otherwise flicker the alpha along
                # every edge) and moves edges by less than a pixel.
                alpha = self.refiner.refine(img, matte.alpha, self._alpha.get(), matte.coef)  # [H, W] u8
            if not look.mode.uses_matte:
                look.mode.compose(self, img, None, out, img, None)
            elif not have_matte:
                self.fail_blur(img, None, out)  # fail closed: never the raw room
            else:
                self._published = matte.alpha
                try:
                    self.compose(img, alpha, out, weight=matte.alpha, look=look)
                finally:
                    self._published = None
        if keep_alpha and alpha is None:
            alpha = np.zeros((H, W), np.uint8)  # no matte: everything is background
        if cfg.mirror:
            cv2.flip(out, 1, dst=out)
            if keep_alpha:
                alpha = cv2.flip(alpha, 1)
        return Composite(image=out, seq=frame.seq, t_capture=frame.t_capture,
                         matte_seq=matte.seq if have_matte else -1,
                         alpha=alpha if keep_alpha else None, frame=img)
