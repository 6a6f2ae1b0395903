"""The units of work, with no thread of their own: the live stages run them in threads, the
offline runs call them in lockstep, stills call :func:`still_matte`.

* :class:`MattingUnit`: inference, then (in frame order) "keep only this person", the
  temporal filter, and the refinement fit against the frame the matte came from;
* :class:`CompositeUnit`: the compositor's render of a frame with a matte, timed.
"""
from __future__ import annotations

import contextlib
import dataclasses
import threading
import time

import cv2
import numpy as np

from ..core.frames import Composite, Frame, Matte
from ..core.stats import Timings
from ..errors import ModelError, VcamError
from ..imaging.alpha import fill_interior, mask_iou
from ..imaging.compositor import Compositor
from ..imaging.follow import is_still, move_by, person_corners, similarity, track_gray
from ..imaging.refine import Refiner, small_gray
from ..imaging.smoothing import Smoother
from ..models.matting import create as create_matter


class StillDetector:
    """Has the picture changed, at matte resolution, since the last inferred frame, where a change
    could change the matte? Sensor noise does not count: the difference is averaged over 3x3 and
    only pixels that moved by more than ``level`` gray levels count; the picture has changed when
    over ``fraction`` of them did, or when the last inference is ``max_age`` s old. Compared with
    the last *inferred* frame, so slow drift adds up until it counts.

    Nor does a change deep inside the person (a talking mouth, blinking eyes, a hand moving over
    the chest): the last matte is solid there, :data:`INTERIOR` pixels in from its edge, and the
    matte would stay solid; the refinement's coefficients are flat there too, so the held matte
    composites the new frame as the model's would. Any change at the person's edge or in the room
    (someone entering) still counts at once.

    With ``follow`` (the compositor moves a held matte with the person, ``refine.follow``), a
    person who moved as a whole is 'carried': the similarity the follower will apply (shift, zoom,
    slight turn) is found the same way here, and the last inferred frame is redrawn moved by it,
    whole (a hand-held camera) or only its person over the unmoved room (the strip of room the
    person uncovered is unknown and not compared). When either explains the new frame at the
    person's edge and in the room (sensor noise aside), the followed matte is as good as a new one.
    A hand raised, a head turned, someone entering: these do not fit one similarity and count at
    once. And only while the model reads the person steadily: each new matte is compared with the
    last one moved onto its frame, and carrying goes on only where they agree (IoU ≥ ``AGREE``), so
    a first matte, or a pose the model misreads from frame to frame, keeps being inferred and the
    temporal filter keeps averaging its readings. On the development portraits swaying rigidly
    (``scripts/quality.py``) carrying raised the moving boundary F from 0.755 to 0.766 and lowered
    dtSSD from 5.52 to 5.32 (400 portraits, 40 clips); with the head bending over a still body
    nothing was carried."""

    SOLID = 0.95  # alpha at or above this is the person's solid inside
    INTERIOR = 0.03  # of the matte's short side (7 px at 224): how far inside the edge a change is ignored
    CARRY_BLUR = 1.0  # px at matte resolution: the Gaussian both sides of the carried comparison get
    # A carried matte is refreshed after this fraction of max_age: changes below the noise add up (a talking
    # head's jaw and hair), and on a development talking head the worst 5 % of frames' boundary F against a
    # matte every frame was 0.972 at one age, 0.975 at half and 0.981 at 0.3 (0.983 without carrying).
    CARRIED_AGE = 0.5
    AGREE = 0.97  # IoU (alpha ≥ 0.5) of a new matte with the last one moved onto its frame, to go on carrying

    def __init__(self, max_age: float, follow: bool = False):
        self.max_age = max_age
        self.follow = follow
        self._guide: np.ndarray | None = None
        self._alpha: np.ndarray | None = None  # the last inferred matte (follow)
        self._pts: np.ndarray | None = None  # its corners on the person (follow)
        self._care: np.ndarray | None = None  # [h, w] bool: where a change counts (None: everywhere)
        self._trusted = False  # the last two mattes agreed (follow): carrying may go on
        self._t = 0.0

    def check(self, guide: np.ndarray, t: float) -> str:
        """``guide``: the frame's ``[h, w] u8`` gray at matte resolution; ``t``: its capture time.
        'still'; 'aged': still, but the last inference is ``max_age`` old; 'carried': the person
        moved as a whole, as the follower moves the matte, and the last inference is younger than
        ``CARRIED_AGE`` of ``max_age``; 'moved'; or 'new' (nothing to compare with)."""
        g = self._guide
        if g is None or g.shape != guide.shape:
            return "new"
        age = t - self._t
        if is_still(guide, g, self._care):
            return "aged" if age >= self.max_age else "still"
        # A person moving, however rigidly, is not a still picture: its refresh is motion's (the lighter
        # model's under a budget, never the still upgrade's).
        return ("carried" if self.follow and self._trusted and age < self.CARRIED_AGE * self.max_age
                and self._carried(guide) else "moved")

    def _carried(self, guide: np.ndarray) -> bool:
        M = similarity(self._guide, guide, self._pts)
        if M is None:
            return False
        # Resampling a sharp edge by a fraction of a pixel is not sensor noise but is not motion either:
        # both sides are compared a little blurred.
        blur = lambda x: cv2.GaussianBlur(x, (0, 0), self.CARRY_BLUR)  # noqa: E731
        moved = move_by(self._guide, M)
        care = None if self._care is None else move_by(self._care.view(np.uint8), M, cv2.INTER_NEAREST) > 0
        guide = blur(guide)
        if is_still(guide, blur(moved), care):
            return True  # the whole picture moved with the person: a hand-held camera
        # The person moved over the unmoved room. Not compared: the room they uncovered (unknown), and the
        # outer half of their soft edge, which mixes them with the room behind (old and new room differ
        # there), each with the 2 px the comparison's blur spreads a difference over.
        a0, a1 = self._alpha, move_by(self._alpha, M)
        unknown = ((a1 > 0.02) & (a1 < 0.5)) | ((a0 > 0.02) & (a1 <= 0.02))
        known = cv2.dilate(unknown.view(np.uint8), np.ones((5, 5), np.uint8)) == 0
        return is_still(guide, blur(np.where(a1 > 0.02, moved, self._guide)), known if care is None else known & care)

    def age(self, t: float) -> float:
        """Seconds since the last inferred frame."""
        return t - self._t

    def inferred(self, guide: np.ndarray, t: float, alpha: np.ndarray | None = None) -> None:
        """``alpha``: the matte inferred on ``guide`` (same shape), whose solid inside is ignored and
        whose person is followed."""
        prev = (self._guide, self._alpha, self._pts)
        self._guide, self._t, self._care, self._alpha, self._pts = guide, t, None, None, None
        self._trusted = False
        if alpha is None or alpha.shape != guide.shape:
            return
        r = max(1, round(self.INTERIOR * min(alpha.shape)))
        inside = cv2.erode((alpha >= self.SOLID).view(np.uint8),
                           cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)),
                           borderType=cv2.BORDER_REPLICATE)
        if inside.any():
            self._care = inside == 0
        if self.follow:
            self._trusted = self._agrees(prev, guide, alpha)
            self._alpha, self._pts = alpha, person_corners(guide, alpha)

    def _agrees(self, prev, guide: np.ndarray, alpha: np.ndarray) -> bool:
        """Does the new matte say what the last one, moved by the follower, said? Only then is the model
        trusted to be carried: a model that reads a picture unsteadily (a pose it misreads, a first matte
        the temporal filter is still settling) keeps inferring, and the filter keeps averaging its readings."""
        g0, a0, pts = prev
        if g0 is None or a0 is None or g0.shape != guide.shape:
            return False
        if is_still(g0, guide):
            moved = a0
        else:
            M = similarity(g0, guide, pts)
            if M is None:
                return False
            moved = move_by(a0, M)
        return mask_iou(moved >= 0.5, alpha >= 0.5) >= self.AGREE

    def reset(self) -> None:
        self._guide, self._care, self._alpha, self._pts = None, None, None, None
        self._trusted = False


class PersonCrop:
    """Spend the model's pixels on the person: infer on the person's box from the last matte, with
    a margin, when that box is clearly smaller than the frame; the crop's matte is pasted into a
    full-frame matte (zero outside). Back to the whole frame at once when the matte touches the
    crop's inner edge (the person moved out of it), after ``refresh`` s (someone may have entered
    elsewhere), or when the last matte has no person."""

    threshold = 0.1  # alpha above this counts as person for the box
    margin = 0.15  # of the box's size, each side
    max_area = 0.6  # crop only when the box (with margin) covers less of the frame than this

    def __init__(self, refresh: float = 1.0):
        self.refresh = refresh
        self._t_full = -1e9
        self._widen = True
        self.crops = 0  # inferences made on a crop

    def plan(self, last: np.ndarray | None, W: int, H: int, t: float) -> tuple[int, int, int, int] | None:
        """The crop ``(x0, y0, x1, y1)`` in frame pixels for the next inference, or ``None`` (whole frame)."""
        if last is None or self._widen or t - self._t_full >= self.refresh:
            self._t_full, self._widen = t, False
            return None
        ys, xs = np.nonzero(last > self.threshold)
        if xs.size == 0:
            return None
        h, w = last.shape
        bx0, bx1, by0, by1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        mx, my = max(4, self.margin * (bx1 - bx0)), max(4, self.margin * (by1 - by0))
        x0, x1 = max(0, int((bx0 - mx) * W / w)), min(W, int(np.ceil((bx1 + mx) * W / w)))
        y0, y1 = max(0, int((by0 - my) * H / h)), min(H, int(np.ceil((by1 + my) * H / h)))
        if (x1 - x0) * (y1 - y0) > self.max_area * W * H or x1 - x0 < 32 or y1 - y0 < 32:
            return None
        return x0, y0, x1, y1

    def paste(self, raw: np.ndarray, crop, W: int, H: int, shape: tuple[int, int]) -> np.ndarray:
        """``raw``: the crop's matte → ``[h, w]`` full-frame matte at ``shape``. Notes whether the
        person reaches an inner edge of the crop (then the next inference takes the whole frame)."""
        x0, y0, x1, y1 = crop
        h, w = shape
        mx0, mx1 = int(round(x0 * w / W)), max(int(round(x0 * w / W)) + 1, int(round(x1 * w / W)))
        my0, my1 = int(round(y0 * h / H)), max(int(round(y0 * h / H)) + 1, int(round(y1 * h / H)))
        out = np.zeros(shape, np.float32)
        out[my0:my1, mx0:mx1] = cv2.resize(raw, (mx1 - mx0, my1 - my0), interpolation=cv2.INTER_AREA)
        edges = []
        if x0 > 0:
            edges.append(raw[:, 0])
        if x1 < W:
            edges.append(raw[:, -1])
        if y0 > 0:
            edges.append(raw[0, :])
        if y1 < H:
            edges.append(raw[-1, :])
        if any(np.count_nonzero(e > 0.5) > 0.02 * e.size for e in edges):
            self._widen = True
        self.crops += 1
        return out


class MattingUnit:
    """``process(frame)``: the matte for ``frame``, or ``None`` when a newer frame's matte was
    made meanwhile (several threads may call it for a stateless model; a recurrent model sees
    one frame at a time). With ``reuse_still`` the last matte is reused, without inference, while
    the picture is still (:class:`StillDetector`)."""

    def __init__(self, matter, smoother: Smoother, refiner: Refiner | None = None, *, reuse_still: bool = False,
                 reuse_max_age: float = 1.0, reuse_followed: bool = False, crop: bool = False):
        self.matter, self.smoother, self.refiner = matter, smoother, refiner
        self.crop = PersonCrop(reuse_max_age) if crop else None
        self._prev_raw: np.ndarray | None = None  # the last inference's full-frame matte (the crop's guide)
        follows = reuse_followed and refiner is not None and refiner.cfg.follow
        self.still = StillDetector(reuse_max_age, follow=follows) if reuse_still else None
        self.reused = 0  # mattes reused for a still picture, without inference
        self.carried = 0  # of those, for a person who moved as a whole (reuse_followed)
        self._last: Matte | None = None
        self.keeper = None  # a vcam.subject.keep.SubjectKeeper once `keep X,Y` is used
        self._lock = threading.Lock()  # frame order, smoother state, the parts swapped live
        self._serial = threading.Lock()
        self._last_seq = -1
        self._last_inferred = -1  # the newest frame a model's matte (not a reuse) came from
        self._size = None
        self.stale = 0  # results that finished after a newer one, dropped
        self.timings = Timings()  # ms per matte; timings.count is the number made
        self.last_frame: Frame | None = None
        # The still upgrade (matting.still_upgrade): under a CPU budget that moved to a lighter model, the
        # configured one (``home``: model, input size) stays loaded as ``upgrade``; once the picture has been
        # still for reuse_max_age it makes the matte, when ``upgrade_gate()`` (the budget's bucket) allows.
        self.home: tuple[str, int] | None = None
        self.upgrade = None
        self.upgrade_gate = None  # callable() -> bool
        self.upgraded = 0  # mattes the upgrade made
        self._busy = False  # an upgrade is running (one at a time, whatever the workers)
        self._on_upgrade = False  # the matte in use is the upgrade's
        self._mine = threading.local()  # .kind: what this thread's last process() did (see last_kind)

    def process(self, frame: Frame) -> Matte | None:
        size = frame.size
        with self._lock:
            if size != self._size:
                self.matter.reset()
                self.smoother.reset()
                self._size = size
                self._prev_raw = None
                self._last = None
                if self.still is not None:
                    self.still.reset()
            matter, last = self.matter, self._last
        guide = None  # [h, w] u8: the frame at matte resolution, made once for the still check and the fit
        up = None  # the upgrade model, when it makes this matte
        self._mine.kind = "inferred"
        if self.still is not None and last is not None and (self.keeper is None or self.keeper.state == "all"):
            guide = small_gray(frame.image, last.alpha.shape)
            with self._lock:
                state = self.still.check(guide, frame.t_capture)
                if state == "aged" and self.upgrade is not None and not self._busy and self.upgrade_gate():
                    up, self._busy = self.upgrade, True
                # Still; or still and aged on the upgrade's matte while the budget cannot pay another yet
                # (a lighter model's matte in between would flicker), up to three ages.
                # While an upgrade runs, the other workers reuse too: a lighter matte meanwhile would make its
                # result stale.
                hold = state == "aged" and (self._busy or (self._on_upgrade and
                                                          self.still.age(frame.t_capture) < 3 * self.still.max_age))
                if up is None and (state in ("still", "carried") or hold) and frame.seq > self._last_seq:
                    self._last_seq = frame.seq
                    self.last_frame = frame
                    self.reused += 1
                    self.carried += state == "carried"
                    self._mine.kind = "reused"
                    return Matte(alpha=last.alpha, seq=frame.seq, t_capture=frame.t_capture, coef=last.coef,
                                 guide=last.guide, origin=last.seq)  # its own frame stays its guide
        t0 = time.perf_counter()
        try:
            if up is not None or matter.stateless:
                raw = self._infer(up or matter, frame)  # [h, w] f32; outside the lock, threads run in parallel
            else:
                with self._serial:
                    raw = self._infer(matter, frame)
        except BaseException:
            if up is None:
                with self._lock:
                    # The model failed: nothing is reused (a still or carried picture) until it makes a matte
                    # again, so the output stays failed closed and "recovered" means the model recovered.
                    if matter is self.matter:
                        self._last = None
            raise
        finally:
            if up is not None:
                self._busy = False
                self._mine.kind = "upgraded"  # its CPU is the upgrade's, whatever becomes of the result
        with self._lock:
            if matter is not self.matter or (up is not None and up is not self.upgrade):
                return None  # the model was switched meanwhile
            # An upgrade ran while the other workers reused the matte for newer (still) frames: it is
            # stale only if a newer inference came meanwhile.
            if frame.seq <= (self._last_inferred if up is not None else self._last_seq):
                self.stale += 1
                return None
            if frame.seq > self._last_seq:
                self._last_seq = frame.seq
                self.last_frame = frame
            self._last_inferred = frame.seq
            if self.keeper is not None:
                raw = self.keeper.apply(raw)  # "keep only this person": in frame order
            # The frame at matte resolution: the smoother's motion detector and the refiner's guide.
            if guide is None or guide.shape != raw.shape:
                guide = small_gray(frame.image, raw.shape)
            if (up is not None) != self._on_upgrade:
                self.smoother.reset()  # the filter does not blend one model's matte into the other's
            alpha = self.smoother(raw, guide)
            if up is not None:
                self.upgraded += 1
            self._on_upgrade = up is not None
        # Fit the refinement once per matte, against the frame it came from (cheap at
        # matte resolution); the compositor only applies it at the full frame rate.
        coef = self.refiner.coefficients(guide, alpha) if self.refiner is not None else None
        # The compositor moves this matte with the person until the next one (vcam.imaging.follow).
        track = track_gray(frame.image, alpha.shape) if self.refiner is not None and self.refiner.cfg.follow else None
        matte = Matte(alpha=alpha, seq=frame.seq, t_capture=frame.t_capture, coef=coef, guide=track)
        with self._lock:
            self.timings.add((time.perf_counter() - t0) * 1e3)
            if self.still is not None and matter is self.matter:
                self._last = matte
                self.still.inferred(guide, frame.t_capture, alpha)
        return matte

    def set_home(self, model: str, input_size: int, upgrade=None) -> None:
        """The configured model (the user's choice), and ``upgrade``: it loaded, while a lighter one runs."""
        with self._lock:
            self.home, self.upgrade = (model, input_size), upgrade

    def last_kind(self) -> str:
        """What this thread's last :meth:`process` did: 'reused' the matte (no inference), 'inferred', or
        'upgraded' (the still upgrade ran; the budget counts its CPU apart). Per thread: with two workers,
        comparing the shared counters before and after would see the other worker's reuses."""
        return getattr(self._mine, "kind", "inferred")

    def _infer(self, matter, frame: Frame) -> np.ndarray:
        """The model's matte of the whole frame, inferred on the person's crop where that helps."""
        crop = None
        if self.crop is not None and getattr(matter, "croppable", False) and (self.keeper is None
                                                                               or self.keeper.state == "all"):
            H, W = frame.image.shape[:2]
            crop = self.crop.plan(self._prev_raw, W, H, frame.t_capture)
        if crop is None:
            raw = self._model(matter, frame.image)
        else:
            x0, y0, x1, y1 = crop
            shape = matter.input_shape(W, H)
            raw = self.crop.paste(self._model(matter, frame.image[y0:y1, x0:x1]), crop, W, H, shape)
        self._prev_raw = raw
        return raw

    @staticmethod
    def _model(matter, image: np.ndarray) -> np.ndarray:
        """The model's matte of ``image``; with ``matting.flip`` averaged with its matte of the mirror image
        (:meth:`Matter.infer_mirrored`)."""
        return matter.infer_mirrored(image) if flips(matter) else matter.infer(image)

    def move_to(self, model: str, input_size: int):
        """The CPU budget's ladder moved: the same model at another input size (no reload), or
        another model loaded and swapped in. Returns the new matter, or ``None`` if it was resized.

        With a ``home`` (the still upgrade), a move from the configured model to another keeps the
        configured one loaded as :attr:`upgrade`, and a move back to it takes it from there, no reload."""
        matter, up = self.matter, self.upgrade
        if model == matter.name and matter.resize(input_size):
            self.swap()  # the temporal filter restarts at the new matte size
            return None
        if up is not None and model == up.name and up.resize(input_size):
            new = up
        else:
            new = self.prepare(create_matter(dataclasses.replace(matter.cfg, model=model, input_size=input_size)))
        keep = self.home is not None and matter.name == self.home[0] and model != matter.name
        if keep:
            matter.resize(self.home[1])
        with self._lock:
            self.upgrade = matter if keep else None
        self.swap(matter=new)
        return new

    def prepare(self, matter):
        """Run a newly loaded model once on the last frame, in the caller's thread, before it is
        swapped in: its first inference (graph set-up, a delegate's creation, first-call
        allocations) can take several of its usual times, and while it runs the old model's
        matte would age past the point where the output fails closed. A model that fails here
        raises :class:`ModelError` and the old one stays."""
        frame = self.last_frame
        if frame is not None:
            try:
                matter.infer(frame.image)
            except VcamError:
                raise
            except Exception as e:
                raise ModelError(f"{matter.name} failed on its first frame ({type(e).__name__}: {e}); "
                                 f"staying with {self.matter.name}") from None
            finally:
                matter.reset()  # a recurrent model starts the live run from a clean state
        return matter

    def swap(self, matter=None, smoother: Smoother | None = None):
        """Switch the model and/or the temporal filter while running; returns the old matter
        (``None`` if the model stayed). The filter restarts either way."""
        with self._lock:
            old = self.matter
            if matter is not None:
                self.matter = matter
            if smoother is not None:
                self.smoother = smoother
            self.smoother.reset()
            self._prev_raw = None
            self._last = None  # a new model or filter: infer afresh, do not reuse the old one's matte
            self._on_upgrade = False
            return old if matter is not None else None


def flips(matter) -> bool:
    """``matting.flip`` for this model: 'on', 'off', or 'auto' (the model's ``flip_auto``: cheap enough
    that a second run costs little). A recurrent model never (the mirror image would enter its state)."""
    setting = getattr(matter.cfg, "flip", "off")
    return matter.stateless and (setting == "on" or (setting == "auto" and matter.flip_auto))


def still_matte(matter, refiner: Refiner, frame: Frame, *, mirror=None, raw: np.ndarray | None = None) -> Matte:
    """The matte of one independent image: no order, no temporal state, the same refinement fit.

    ``mirror`` (an executor, for a stateless matter): the matter also reads the mirror image, on another
    thread while this one reads the picture, and the two readings are combined as the
    portrait ensemble's views are (:func:`_combine`: their mean where they are unsure; where each is
    sure but they disagree, a vote, which for two readings is the surer one's). IS-Net, the stills'
    object model, is not mirror-symmetric: one reading of a picture may drop a part the other keeps (on
    the development soft-alpha photos a bird read at IoU 0.54 one way and 0.98 the other). Keeping the
    part on every such split instead helped the soft photos (MAE 0.0205 → 0.0196) and cost the binary
    objects (IoU 0.9796 → 0.9772), the held-out set's weaker side, so the surer reading decides.

    ``raw``: the matter's reading of this picture, already made (:func:`read_still`)."""
    if raw is None:
        raw = read_still(matter, frame.image, mirror=mirror)
    coef = refiner.coefficients(small_gray(frame.image, raw.shape), raw)
    return Matte(alpha=raw, seq=frame.seq, t_capture=frame.t_capture, coef=coef)


def read_still(matter, image: np.ndarray, *, mirror=None, first: np.ndarray | None = None) -> np.ndarray:
    """``matter``'s reading of ``image`` ``[h, w] f32``, combined with its reading of the mirror image
    where ``mirror`` (an executor, see :func:`still_matte`) is given. ``first``: the reading of
    ``image`` alone, if already made."""
    matter.reset()
    flipped = None if mirror is None else mirror.submit(matter.infer, np.ascontiguousarray(image[:, ::-1]))
    first = matter.infer(image) if first is None else first
    return first if flipped is None else _combine(np.stack([first, flipped.result()[:, ::-1]]), raw=True)


def ensemble_alpha(members, refiner: Refiner, frame: Frame, *, tiebreakers=(), mirror: bool = True,
                   locks=None, outline: Refiner | None = None, first: dict | None = None) -> np.ndarray:
    """A still's test-time ensemble, ``[H, W] u8``: each of ``members`` (matters) on the picture and,
    with ``mirror``, on its mirror image; every matte refined against its own view at full
    resolution (averaging the raw mattes first loses boundary accuracy: BF 0.810 against 0.813 on
    the development portraits), then combined per pixel (:func:`combine_views`):

    * where the views are unsure themselves (a soft edge: hair, motion blur), their mean;
    * where each view is sure but they disagree (one model takes a helmet held in front, the
      other does not), a vote, feathered by a pixel, not a mean: a mean would make the helmet
      half transparent. A tie keeps the part (on the development portraits that scores better
      than siding with either model).

    ``tiebreakers`` (weaker matters) are heard only where the members' own mean is unsure (between
    :data:`TIE_LOW` and 1 − it, widened by :data:`TIE_REACH` of the diagonal), and only on which side
    of α 0.5 a pixel falls: they move an uncertain edge, and never add their own haze where the
    members agree.

    A member whose reading of the subject differs from the reference's (IoU < :data:`ENSEMBLE_AGREE`)
    is left out for that picture: RVM knows only people, and on an animal or a toy it would pull a
    good MODNet matte apart. The reference is the first member unless the others disagree with it and
    side with each other (:func:`_reference`).

    ``outline``: a second refiner, with a wider window, that decides only which side of α 0.5 a
    pixel falls on; the soft values stay ``refiner``'s. A wider guided filter follows the picture's
    own edges further (radius 4 against 2 in matte pixels: BF +0.002 to +0.003 on each of four sets of
    100 development portraits), but as the only refiner it also spreads faint haze around the person
    (0.74 % → 1.13 % of the pixels far from them at α 5-60); used for the side alone, the haze stays
    where it was. The models run once either way.

    Last, the interior is made opaque away from the outline (:func:`~vcam.imaging.alpha.fill_interior`).

    ``locks[i]``: held around a recurrent member (members, then tiebreakers). ``first[i]``: matter
    ``i``'s reading of the picture itself (``[h, w] f32``, from a reset state), already made."""
    matters = [*members, *tiebreakers]
    n = len(members)
    if outline is None:
        views = ensemble_views(matters, refiner, frame, mirror=mirror, locks=locks, first=first)
        return fill_interior(combine_views(views[:n], views[n:]))
    soft, lines = _views(matters, (refiner, outline), frame, mirror, locks, first)
    return fill_interior(outlined(soft[:n], soft[n:], lines[:n], lines[n:]))


def outlined(soft: list, soft_ties: list, lines: list, line_ties: list) -> np.ndarray:
    """The views refined narrowly (``soft``) and widely (``lines``), members' and tiebreakers', combined
    with one choice of readers: the wide combination decides which side of α 0.5 a pixel is on."""
    keep = kept_readers(soft, soft_ties)  # one choice of readers for both: the outline only moves edges
    alpha, line = combine_views(soft, soft_ties, keep=keep), combine_views(lines, line_ties, keep=keep)
    return np.where((line >= 128) != (alpha >= 128), line, alpha)


def ensemble_views(matters, refiner: Refiner, frame: Frame, *, mirror: bool = True, locks=None,
                   first: dict | None = None) -> list:
    """Per matter, its refined alpha of the picture and (with ``mirror``) of its mirror image, each
    ``[H, W] u8`` in the picture's orientation: what :func:`combine_views` combines."""
    return _views(matters, (refiner,), frame, mirror, locks, first)[0]


def _views(matters, refiners, frame: Frame, mirror: bool, locks, first: dict | None = None) -> list:
    """:func:`ensemble_views` for each of ``refiners``, from one inference per matter and view."""
    img = frame.image
    H, W = img.shape[:2]
    views = [img] + ([cv2.flip(img, 1)] if mirror else [])
    out = [[] for _ in refiners]  # per refiner, per matter, per view
    for i, m in enumerate(matters):
        lock = (locks[i] if locks else None) or contextlib.nullcontext()
        own = [[] for _ in refiners]
        for view in views:
            if view is img and first and i in first:
                raw = first[i]
            else:
                with lock:
                    m.reset()
                    raw = m.infer(view)  # [h, w] f32
            guide = small_gray(view, raw.shape)
            for r, o in zip(refiners, own):
                a = r.refine(view, raw, np.empty((H, W), np.uint8), r.coefficients(guide, raw))
                o.append(a if view is img else cv2.flip(a, 1))
        for r_out, o in zip(out, own):
            r_out.append(o)
    return out


def combine_views(alphas: list, tiebreakers: list = (), *, keep: list[int] | None = None) -> np.ndarray:
    """:func:`ensemble_alpha`'s per-pixel combination: ``alphas[i]`` is member ``i``'s list of
    refined views (``[H, W] u8`` each, the picture's orientation); ``tiebreakers`` likewise, used only
    where the members kept are unsure. ``keep``: the readers heard (:func:`kept_readers`; by default
    chosen from these views)."""
    if keep is None:
        keep = kept_readers(alphas, tiebreakers)
    strong = [a for i in keep if i < len(alphas) for a in alphas[i]]  # a member that does not know this subject is left out
    weak = [a for i in keep if i >= len(alphas) for a in tiebreakers[i - len(alphas)]]
    stack = np.stack(strong).astype(np.float32) * (1 / 255.0)  # [views, H, W]
    out = strong[0] if len(strong) == 1 else _combine(stack)
    if not weak:
        return out
    H, W = out.shape
    mean = stack.mean(0)
    unsure = ((mean > TIE_LOW) & (mean < 1 - TIE_LOW)).astype(np.uint8)
    if not unsure.any():
        return out
    k = max(1, int(round(TIE_REACH * (H * H + W * W) ** 0.5)))
    unsure = cv2.dilate(unsure, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))) > 0
    heard = _combine(np.concatenate([stack, np.stack(weak).astype(np.float32) * (1 / 255.0)]))
    # The tiebreakers decide which side of the edge a pixel lies on, not how soft it is: on furry
    # animals (soft alpha) their soft values in this band cost MAE 0.0181 -> 0.0226, their side alone 0.0204.
    return np.where(unsure & ((heard >= 128) != (out >= 128)), heard, out)


def kept_readers(alphas: list, tiebreakers: list = ()) -> list[int]:
    """The readers :func:`combine_views` hears (indices: members, then tiebreakers): the reference
    (:func:`_reference`) and those whose reading of the subject agrees with it (IoU ≥ :data:`ENSEMBLE_AGREE`)."""
    # each member's own reading of the subject: where more than half its views say subject (the mean of
    # its views above α 0.5), so that one misread view of two cannot make it
    per = [np.mean(np.stack(own), 0, dtype=np.float32) > 127.5 for own in [*alphas, *tiebreakers]]
    ref = _reference(per, len(alphas))
    return [i for i in range(len(per)) if i == ref or mask_iou(per[i], per[ref]) >= ENSEMBLE_AGREE]


def _reference(per: list, members: int) -> int:
    """Which member's reading of the subject the others are held to: the first (MODNet) while every
    member agrees with it; otherwise the member that agrees best with all the other readers, tiebreakers
    included. Two against one: where MODNet takes the room for the person and RVM and the selfie model
    do not, RVM leads (400 development portraits: IoU 0.9611 -> 0.9657, BF 0.8250 -> 0.8282; 4 pictures
    better, 1 worse, 395 the same; the furry animals' MAE unchanged: the selfie model does not side with
    RVM there)."""
    if all(mask_iou(per[i], per[0]) >= ENSEMBLE_AGREE for i in range(1, members)):
        return 0
    score = [sum(mask_iou(per[i], per[j]) for j in range(len(per)) if j != i) for i in range(members)]
    return int(np.argmax(score))  # the first on a tie


def _combine(stack: np.ndarray, *, raw: bool = False) -> np.ndarray:
    """Views ``[n, H, W] f32`` in [0, 1] → ``[H, W] u8``: their mean where they are unsure, a feathered
    vote where each is sure but they disagree (see :func:`ensemble_alpha`). ``raw``: ``[H, W] f32`` in
    [0, 1] instead (a matte to refine)."""
    mean = stack.mean(0)
    sure = np.abs(2 * stack - 1).mean(0) >= ENSEMBLE_SURE  # every view near 0 or 1...
    split = sure & (mean > 0.1) & (mean < 0.9)  # ...yet they disagree
    if split.any():
        vote = (mean >= 0.5).astype(np.float32)
        vote = cv2.GaussianBlur(vote, (3, 3), 0)
        mean = np.where(split, vote, mean)
    if raw:
        return np.ascontiguousarray(mean, dtype=np.float32)
    return (mean * 255 + 0.5).astype(np.uint8)


ENSEMBLE_SURE = 0.7  # mean |2α − 1| over the views above which a split is a disagreement, not a soft edge
ENSEMBLE_AGREE = 0.7  # a member whose reading (IoU at α 0.5) differs more from the reference's is left out
# Tiebreakers are heard where the members' mean lies in (TIE_LOW, 1 - TIE_LOW), widened by TIE_REACH of
# the diagonal. On the 400 development portraits, lite as a tiebreaker to MODNet + RVM: BF 0.8166 -> 0.8253
# (as a full member 0.8255), while a full member doubled the faint haze far from the person (alpha 5-60:
# 0.75 % -> 1.58 % of those pixels; as a tiebreaker 0.75 %). scripts/ensemble_quality.py prints the table.
TIE_LOW = 0.1
TIE_REACH = 0.005


class CompositeUnit:
    """``process(frame, matte)``: refine + blend ``frame`` with ``matte`` (``None``: fail closed)."""

    def __init__(self, compositor: Compositor, *, keep_alpha: bool = False):
        self.compositor = compositor
        self.keep_alpha = keep_alpha
        self.timings = Timings()  # ms per composite; timings.count is the number made
        self.matte_age = Timings()  # frames between the matte's frame and the composited frame

    def process(self, frame: Frame, matte: Matte | None) -> Composite:
        t0 = time.perf_counter()
        comp = self.compositor.render(frame, matte, keep_alpha=self.keep_alpha)
        self.timings.add((time.perf_counter() - t0) * 1e3)
        if matte is not None:
            self.matte_age.add(frame.seq - matte.seq)
        return comp
