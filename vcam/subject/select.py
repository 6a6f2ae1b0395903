"""Prompted cutouts: SAM says *which* subject, the matting model or closed-form matting says *where its edges are*.

Plain SAM with one click tends to return a part (a shirt, a face) when it ranks
its masks by predicted IoU, and its masks are hard-edged at 256×256. We:

1. encode the image once (:class:`~vcam.segment.sam.MobileSam`), decode the prompt
   into SAM's four candidates and take the *whole* one (:func:`whole_mask`): the largest
   that SAM rates nearly as well as its best; when that whole lies inside the picture, SAM
   is asked again with its box, which tightens a full-body person's limbs;
2. run the portrait matting model on the whole image and take its connected
   regions under the positive points;
3. when that region holds one of SAM's candidates and resembles one of them, the
   subject is a person the matting model knows: its soft matte, cut to that region,
   is the answer (this turns "the shirt" into "the person");
4. but a portrait model misreads full bodies (legs lost, a neighbour glued on): when its
   region and SAM's whole disagree, a third opinion decides, the general-object model's
   (IS-Net) region under the click, so the fusion is never worse than SAM's whole mask
   because it trusted the matte;
5. otherwise (or when a negative point falls inside that region) SAM's mask stands, and its
   edge becomes a trimap band for closed-form matting (pymatting), which gives soft hair and fur;
   when SAM's subject holds the person the matte sees (a rider on a scooter), the parts of the
   person that stick out of SAM's mask (a white helmet against a white wall) join it;
6. either way, foreground colours are estimated so the old background does not fringe.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from ..imaging.alpha import AlphaMatting, closed_form, closed_form_alpha, mask_iou
from ..models.sam import Embedding, Masks, MobileSam
from .prompt import Prompt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Selection:
    alpha: np.ndarray  # [H, W] u8
    foreground: np.ndarray  # [H, W, 3] u8 BGR, decontaminated colours
    source: str  # "matting" or "sam"
    sam_iou: float  # SAM's predicted IoU of its chosen mask
    mask: np.ndarray  # [H, W] bool, the hard selection before refinement
    why: str = ""  # how the fusion chose, for -v


def _components_under(mask: np.ndarray, points) -> np.ndarray:
    """Connected regions of ``mask`` under any of ``points``."""
    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    h, w = mask.shape
    pick = {int(labels[min(int(y), h - 1), min(int(x), w - 1)]) for x, y in points} - {0}
    if not pick:
        return np.zeros_like(mask, bool)
    return np.isin(labels, list(pick))


def _inside(mask: np.ndarray, points) -> bool:
    h, w = mask.shape
    return any(mask[min(int(y), h - 1), min(int(x), w - 1)] for x, y in points)


def _matte_agrees(person: np.ndarray, candidates: np.ndarray, sam_sure: bool = True,
                  best: np.ndarray | None = None) -> bool:
    """Is the matting region under the click the subject SAM sees? Yes when it holds one of
    SAM's candidates (SAM often picks a part of a person) and resembles one of them (the
    matte is not a large blob that merely contains the subject). When SAM itself is unsure
    (every predicted IoU low: it sees crumbs), holding is enough: the matte knows people.
    No when SAM is sure of a whole object (its best mask is most of the region's size), and
    none of its candidates matches the region: the matte has then glued something else to
    the subject."""
    p = person.sum()
    holds = resembles = 0.0
    for c in candidates:
        n = c.sum()
        if not n:
            continue
        inter = (person & c).sum()
        holds = max(holds, inter / n)
        resembles = max(resembles, inter / (p + n - inter))
    if sam_sure and best is not None and best.sum() >= 0.7 * p and resembles < 0.85:
        return False  # SAM's whole object and the matte's region differ, and no candidate of SAM's backs the matte
    return holds >= 0.8 and (resembles >= 0.3 or not sam_sure)


def _with_detached_parts(matte_fg: np.ndarray, person: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Add the matte's detached pieces of the same subject (a raised hand, a strand of hair cut
    off at matte resolution): regions mostly inside a SAM candidate that resembles the person."""
    p = person.sum()
    best, best_iou = None, 0.5
    for c in candidates:
        inter = (person & c).sum()
        u = p + c.sum() - inter
        if u and inter / u >= best_iou:
            best, best_iou = c, inter / u
    if best is None:
        return person
    n, labels, stats, _ = cv2.connectedComponentsWithStats(matte_fg.astype(np.uint8), connectivity=8)
    if n <= 2:
        return person
    inside = np.bincount(labels[best], minlength=n)
    area = stats[:, cv2.CC_STAT_AREA]
    extra = (inside >= 0.5 * area) & (np.arange(n) > 0)
    return person | extra[labels]


def _outward(pieces: np.ndarray, subject: np.ndarray, enclosed: float = 0.35) -> np.ndarray:
    """The pieces (``[H, W]`` bool) that stick out of ``subject``: at most ``enclosed`` of a piece's
    outline runs along the subject or the picture's edge. A helmet on a rider sticks out; the ground
    between a lion's legs, which a portrait matte fills in, is enclosed by the legs and the edge."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(pieces.astype(np.uint8), connectivity=8)
    if n <= 1:
        return pieces
    around = np.pad(subject, 1, constant_values=True)  # the picture's edge encloses too
    keep = np.zeros(n, bool)
    se = np.ones((3, 3), np.uint8)
    for i in range(1, n):
        x, y, w, h = stats[i, :4]  # each piece in its own box (one pixel wider all round, in padded coordinates)
        piece = np.pad(labels[y:y + h, x:x + w] == i, 1)
        ring = (cv2.dilate(piece.astype(np.uint8), se) > 0) & ~piece
        keep[i] = (ring & around[y:y + h + 2, x:x + w + 2]).sum() <= enclosed * max(1, ring.sum())
    return keep[labels] & pieces


def choose_mask(masks: Masks, prompt: Prompt) -> int:
    """SAM's best-rated candidate; with several clicks, only the multi-mask tokens are asked."""
    return int(np.argmax(masks.iou))


WHOLE_SLACK = 0.15  # a candidate this close to SAM's best rating counts as a reading of the click
RIM = 0.01  # of the diagonal: thinner pieces of the matte's person outside SAM's subject are its border
HELD = 0.75  # the share of the matte's person inside SAM's subject at which SAM's subject holds that person
AGREE = 0.85  # IoU at which the matte's region and SAM's whole are the same subject


def _touches_border(mask: np.ndarray) -> bool:
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def whole_mask(sam: MobileSam, emb: Embedding, masks: Masks, prompt: Prompt) -> tuple[np.ndarray, int]:
    """SAM's reading of the whole subject under ``prompt``, ``([H, W] bool, candidate index)``.

    A click is ambiguous (the shirt, the person, the person and their chair); SAM rates all
    readings and its top rating often goes to a part. The whole is the largest candidate
    rated within :data:`WHOLE_SLACK` of the best (and holding no negative point). With a box the user already said how big.
    When the whole lies inside the picture, its box (5 % margin) goes back to SAM with the
    points: a box prompt fits thin limbs better than a click (on generated full-body pictures
    0.946 → 0.968 IoU). A cut-off subject's box is not its box, and a refined mask that moved
    away from the reading (IoU < :data:`AGREE`) is not kept."""
    if prompt.box is not None or not prompt.points:
        best = choose_mask(masks, prompt)
        return masks.binary(best), best
    area = (masks.logits > 0).sum((1, 2))
    near = masks.iou >= masks.iou.max() - WHOLE_SLACK
    if prompt.neg:  # "not this": no reading that holds a negative point
        clean = np.array([not _inside(m, prompt.neg) for m in masks.logits > 0])
        near &= clean if (near & clean).any() else near
    i = int(np.argmax(np.where(near, area, -1)))
    whole = masks.binary(i)
    if not whole.any() or _touches_border(whole):
        return whole, i
    ys, xs = np.nonzero(whole)
    mx, my = 0.05 * (xs.max() - xs.min() + 1), 0.05 * (ys.max() - ys.min() + 1)
    boxed = Prompt(points=prompt.points, neg=prompt.neg,
                   box=(xs.min() - mx, ys.min() - my, xs.max() + mx, ys.max() + my))
    again = sam.predict(emb, boxed, out_size=whole.shape)
    tight = again.binary(int(np.argmax(again.iou)))
    return (tight if mask_iou(tight, whole) >= AGREE else whole), i


def band_trimap(mask: np.ndarray, radius: int) -> np.ndarray:
    se = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    m = mask.astype(np.uint8)
    tri = np.full(mask.shape, 0.5)
    tri[cv2.erode(m, se) > 0] = 1.0
    tri[cv2.dilate(m, se) == 0] = 0.0
    return tri


def select(bgr: np.ndarray, prompt: Prompt, sam: MobileSam, *, matte: np.ndarray | None = None,
           embedding: Embedding | None = None, refine: bool = True,
           referee: Callable[[], np.ndarray | None] | None = None) -> Selection:
    """The subject that ``prompt`` points at, as a soft alpha. ``matte``: the matting model's
    alpha for this image (u8), which lets people get the matting model's edges. ``referee``:
    returns a general-object model's alpha for this image (u8) or ``None``; asked only when
    the matte and SAM disagree about the subject's extent."""
    h, w = bgr.shape[:2]
    prompt.check(w, h)
    emb = embedding or sam.embed(bgr)
    masks = sam.predict(emb, prompt)
    sam_mask, best = whole_mask(sam, emb, masks, prompt)
    sam_iou = float(masks.iou[best])
    diag = float(np.hypot(h, w))
    why = "SAM's whole candidate"
    if matte is not None and prompt.points:
        person = _components_under(matte > 127, prompt.points)
        if _inside(person, prompt.neg):
            person[:] = False  # a "not this" inside the person: only SAM can cut a person apart
            why = "a negative point is inside the matte's region: SAM cuts it apart"
        inside = np.ones_like(person)
        if prompt.box is not None:
            x1, y1, x2, y2 = (int(round(v)) for v in prompt.clipped_box(w, h))
            inside[:] = False
            inside[y1:y2 + 1, x1:x2 + 1] = True
            person &= inside
        candidates = masks.logits > 0
        use_matte = (person.any() and sam_mask.any()
                     and _matte_agrees(person, candidates, float(masks.iou.max()) >= 0.75, masks.binary(choose_mask(masks, prompt))))
        agree = mask_iou(person, sam_mask) if use_matte else 0.0
        if use_matte and agree < AGREE:
            use_matte, why = _referee(person, sam_mask, agree, prompt, referee)
        elif use_matte:
            why = f"the matte's region agrees with SAM's whole (IoU {agree:.2f})"
        elif person.any():
            why = "the matte's region is not the subject SAM sees"
        if use_matte:
            person = _with_detached_parts(matte > 127, person, candidates) & inside
            # Keep the matte's soft border: grow the region a little before cutting.
            r = max(3, int(0.01 * diag))
            region = cv2.dilate(person.astype(np.uint8),
                                cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
            alpha = (matte * region).astype(np.uint8)
            fg = bgr
            if refine:
                alpha, fg = _refine_soft(bgr, alpha, diag)
            return Selection(alpha, fg, "matting", sam_iou, alpha > 127, why)
        if person.any() and sam_mask.any() and (person & sam_mask).sum() >= HELD * person.sum():
            # SAM's subject holds the person the matte sees (a rider and their scooter): the parts of
            # the person that SAM left out (a white helmet against a white wall) are the subject's too.
            # Only pieces thicker than a rim: the matte's border reaches past SAM's edge all around
            # (and past an animal's fur, where the portrait matte is loose), a left-out part is a chunk.
            r = max(2, int(round(RIM * diag)))
            added = cv2.morphologyEx((person & ~sam_mask).astype(np.uint8), cv2.MORPH_OPEN,
                                     cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))) > 0
            added = _outward(added, sam_mask)
            if added.any():
                sam_mask = sam_mask | added
                why += f"; with the person's parts SAM left out ({added.mean() * 100:.1f} % of the picture)"
    if not sam_mask.any():
        return Selection(np.zeros((h, w), np.uint8), bgr, "sam", sam_iou, sam_mask, "SAM found nothing there")
    if not refine:
        return Selection(sam_mask.astype(np.uint8) * 255, bgr, "sam", sam_iou, sam_mask, why)
    radius = max(2, int(round(0.006 * diag)))
    alpha, fg = closed_form(bgr, band_trimap(sam_mask, radius))
    return Selection(alpha, fg, "sam", sam_iou, sam_mask, why)


def _referee(person: np.ndarray, whole: np.ndarray, agree: float, prompt: Prompt,
             referee: Callable[[], np.ndarray | None] | None) -> tuple[bool, str]:
    """The matte's region and SAM's whole differ: which is the subject? The general-object
    model's region under the points sides with one of them. Without it the matte stands
    (the portrait model is right on most pictures where a person is clicked)."""
    third = referee() if referee is not None else None
    if third is None:
        return True, f"the matte's region and SAM's whole differ (IoU {agree:.2f}); no object model to decide"
    region = _components_under(third > 127, prompt.points)
    to_matte, to_sam = mask_iou(region, person), mask_iou(region, whole)
    side = "the matte" if to_matte >= to_sam else "SAM"
    return to_matte >= to_sam, (f"the matte's region and SAM's whole differ (IoU {agree:.2f}); the object model "
                                f"sides with {side} (IoU {max(to_matte, to_sam):.2f} against {min(to_matte, to_sam):.2f})")


def _refine_soft(bgr: np.ndarray, alpha: np.ndarray, diag: float) -> tuple[np.ndarray, np.ndarray]:
    """A soft matte already has its edges: closed-form matting only in its uncertain band
    (``vcam remove --alpha-matting``'s trimap, its erosion ``k`` scaled to the image).

    Deeper than ``k`` inside the matte's region (alpha ≥ 0.5) the refinement may raise alpha but
    not lower it. The trimap's sure foreground is alpha > 0.94, eroded: a limb in motion, which the
    matte holds at 0.6-0.9, has none, and the solve drew it from the background around it (a
    runner's back foot went from the matte's 0.8-1 to 0.1-0.35 on a DAVIS frame). The rule changes
    little elsewhere: on 50 development portraits clicked at their deepest point IoU 0.9641 → 0.9645,
    on the soft-alpha animals MAE 0.0098 either way (anchoring the whole core instead, so the solve
    also widens the limb, did better on limbs but raised that MAE to 0.011-0.012)."""
    k = max(2, int(round(0.004 * diag)))
    refined, fg = closed_form_alpha(bgr, alpha, AlphaMatting(erode_size=k))
    if refined is alpha:
        return refined, fg  # nothing was solved
    se = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
    kept = (cv2.erode((alpha >= 128).astype(np.uint8), se) > 0) & (refined < alpha)
    if kept.any():
        refined = np.where(kept, alpha, refined)
        fg = np.where(kept[..., None], bgr, fg)  # the matte says solid there: the picture's own colour
    return refined, fg
