"""Carry a held matte along with the person until the next one arrives.

The model runs slower than the camera (a few mattes a second under a tight CPU budget), so
the compositor blends most frames with a matte made from an older frame. The guided filter
snaps that matte's edges to the current frame, but only within a few pixels: when the person
moves further, the matte trails them, the room shows sharp where they were and their leading
shoulder goes into the blur.

:class:`MatteFollower` tracks how the person moved since the matte's frame and moves the matte
(and its guided-filter coefficients) with them:

* once per matte, up to :data:`POINTS` corners on the person (inside the matte, away from its
  border) of the matte's own frame at matte resolution;
* every frame, pyramidal Lucas-Kanade from those corners to the current frame at matte
  resolution, then a similarity (shift, zoom, small rotation) fitted with RANSAC;
* the matte and its coefficients are warped by that similarity, bilinearly, at matte
  resolution (a few hundred thousand floats), and then refined and blended as usual.

It costs about a millisecond a frame at 720p, far less than one more matte. Rigid motion of
head and shoulders is most of what a call sees; the parts that move otherwise (a waving hand)
get no worse than without it. When the tracking is unsure (too few corners, few inliers, a
zoom or turn too large to be a person moving between two mattes) the matte stays where it
is, which is what vcam did before.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

POINTS = 40  # corners tracked per matte (Lucas-Kanade costs about 20 us a corner)
MIN_INLIERS = 10  # fewer agreeing corners than this: the motion is not known, do not move the matte
MIN_SHIFT = 0.25  # matte pixels: a motion within this of the last one keeps the last warp (and its stretch)


STILL_LEVEL = 4  # gray levels, after a 3x3 mean (sensor noise is about 1 there)
STILL_FRACTION = 0.002  # of the pixels: a 13x13 patch of a 224x384 picture


def is_still(a: np.ndarray, b: np.ndarray, care: np.ndarray | None = None) -> bool:
    """Are two ``[h, w] u8`` grays of the same scene the same picture, sensor noise aside? Only
    pixels that differ by more than :data:`STILL_LEVEL` after a 3x3 mean count, and at most
    :data:`STILL_FRACTION` of them may. ``care``: a ``[h, w] bool`` mask of the pixels whose change
    counts (``None``: all)."""
    moved = cv2.blur(cv2.absdiff(a, b), (3, 3)) > STILL_LEVEL
    if care is not None:
        moved &= care
    return np.count_nonzero(moved) <= STILL_FRACTION * moved.size


def person_corners(guide: np.ndarray, alpha: np.ndarray) -> np.ndarray | None:
    """Up to :data:`POINTS` corners of ``guide`` (``[h, w] u8``) on the person of ``alpha`` (same shape), away
    from the outline: corners on the outline belong to the room as much as to the person, and the room does
    not move with them. ``None`` when too few."""
    inside = cv2.erode((alpha > 0.5).view(np.uint8), np.ones((5, 5), np.uint8))
    if np.count_nonzero(inside) < 64:
        return None
    pts = cv2.goodFeaturesToTrack(guide, POINTS, 0.01, max(3, guide.shape[1] // 48), mask=inside, blockSize=5)
    return pts if pts is not None and len(pts) >= MIN_INLIERS else None


def similarity(guide: np.ndarray, gray: np.ndarray, pts: np.ndarray | None) -> np.ndarray | None:
    """The 2x3 similarity taking ``guide`` (the matte's frame) onto ``gray``, both ``[h, w] u8``, from the
    corners ``pts`` on its person (:func:`person_corners`): pyramidal Lucas-Kanade, then RANSAC. ``None``
    when there is no motion to speak of, or it is not known well enough, or it is not a person moving
    between two mattes (a cut, a camera swap, bad tracking)."""
    if pts is None or is_still(guide, gray):
        return None
    p1, st, _err = cv2.calcOpticalFlowPyrLK(guide, gray, pts, None, winSize=(11, 11), maxLevel=3,
                                            criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 8, 0.05))
    ok = st.ravel() == 1
    if np.count_nonzero(ok) < MIN_INLIERS:
        return None
    M, inl = cv2.estimateAffinePartial2D(pts[ok], p1[ok], method=cv2.RANSAC, ransacReprojThreshold=1.5,
                                         maxIters=200, refineIters=5)
    if M is None or inl is None or int(inl.sum()) < max(MIN_INLIERS, 0.5 * np.count_nonzero(ok)):
        return None
    scale = math.hypot(M[0, 0], M[1, 0])
    turn = abs(math.atan2(M[1, 0], M[0, 0]))
    h, w = guide.shape
    if not (0.85 < scale < 1.18) or turn > 0.2 or abs(M[0, 2]) > 0.3 * w or abs(M[1, 2]) > 0.3 * h:
        return None
    return M


def move_by(x: np.ndarray, M: np.ndarray, flags: int = cv2.INTER_LINEAR) -> np.ndarray:
    """``x`` (a matte, its coefficients, a gray or a mask at matte resolution) moved by the similarity ``M``,
    its size kept; what comes in at the border repeats the edge."""
    h, w = x.shape[:2]
    return cv2.warpAffine(x, M, (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE)


def track_gray(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``image`` (``[H, W, 3] u8`` BGR) as the ``[h, w] u8`` gray the follower tracks on.
    Bilinear, not area-averaged: it samples the frame rather than reading all of it (0.27
    against 0.9 ms at 720p), and Lucas-Kanade on a pyramid does not need the smoother picture."""
    h, w = shape
    return cv2.cvtColor(cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2GRAY)


class MatteFollower:
    """``follow(alpha, coef, guide, gray)`` → the matte and its coefficients moved onto ``gray``.

    State is per matte, keyed by its guide's identity (a matte is never written after it is
    published, and a reused still matte keeps its guide): the matte's corners, the frame last
    tracked and what it gave. A frame that is the same picture as the last one tracked (sensor
    noise aside) gets that result again without tracking, and a motion within :data:`MIN_SHIFT`
    of the last one gets the same warped arrays, so the kernels' stretched coefficients are
    reused as for an unmoved matte."""

    def __init__(self):
        self.reset()
        self.moved = 0  # frames whose matte was moved
        self.held = 0  # frames where tracking was unsure and the matte stayed
        self.tracked = 0  # frames tracked (the rest repeated the last frame's answer)

    def reset(self) -> None:
        self._guide = None  # the matte's guide the state below belongs to (held: its id is the key)
        self._pts: np.ndarray | None = None  # [n, 1, 2] f32 corners of the matte's frame
        self._gray = None  # the frame last tracked, [h, w] u8
        self._M = None  # what it gave: the 2x3 similarity, or None
        self._out = None  # and the (alpha, coef, moved) answered for it

    def _shift(self, M: np.ndarray | None, N: np.ndarray | None) -> float:
        """How far the matte's pixels move between two similarities (``None``: not moved), at the
        corners of the picture: the most any pixel moves."""
        h, w = self._guide.shape
        box = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64).T  # [3, 4]
        eye = np.array([[1, 0, 0], [0, 1, 0]], np.float64)
        d = ((eye if M is None else M) - (eye if N is None else N)) @ box  # [2, 4]
        return float(np.hypot(d[0], d[1]).max())

    def follow(self, alpha: np.ndarray, coef, guide: np.ndarray, gray: np.ndarray):
        """``(alpha, coef, moved)``: the matte and coefficients moved onto ``gray`` (the current
        frame at matte resolution, :func:`track_gray`), or the same objects and ``False`` when the
        motion is unknown or negligible."""
        if self._guide is not guide:
            self.reset()
            self._guide, self._pts = guide, person_corners(guide, alpha)
            self._out = (alpha, coef, False)
        elif self._gray is not None and is_still(self._gray, gray):
            return self._out  # nothing moved since the frame last tracked
        self.tracked += 1
        M = similarity(guide, gray, self._pts)
        self._gray = gray
        if self._shift(M, self._M) < MIN_SHIFT:
            return self._out  # (about) where the last frame put it: the same arrays
        self._M = M
        if M is None or self._shift(M, None) < MIN_SHIFT:
            self._M = None
            self._out = (alpha, coef, False)
            self.held += M is None
            return self._out
        self.moved += 1
        self._out = (move_by(alpha, M), None if coef is None else (move_by(coef[0], M), move_by(coef[1], M)), True)
        return self._out
