"""numba kernels for the per-pixel work at full resolution.

Convention (docs/architecture.md): explicit signatures, ``nogil=True``, ``cache=True``, the
output array first. Each kernel has a thin public wrapper that checks shapes and
dtypes, and a plain numpy reference in ``tests/test_kernels.py``.

Why numba and not numpy: a numpy float blend at 720p allocates several
temporaries and takes 11-25 ms; the fused u8 kernels below stream each byte once
(about 0.3 ms at 720p), and release the GIL so the matting thread runs beside them.
"""
from __future__ import annotations

import cv2
import numpy as np
from numba import njit

from ..core.frames import check_image


@njit("void(u1[::1], u1[::1], u1[::1], u1[::1])", nogil=True, cache=True, fastmath=True)
def _blend_row(out, fg, bg, alpha):
    # out, fg, bg: [N*3] u8 (a row, or a whole flattened image); alpha: [N] u8.
    # out = (fg*a + bg*(255-a)) / 255, rounded. 16-bit arithmetic on purpose:
    # fg*a + bg*(255-a) + 128 <= 65153 fits a u16, so AVX2 works on 16 lanes instead of
    # 8 (int32): 1.25 ms instead of 1.9 ms at 1080p here, 1.7x the copy-bandwidth floor.
    for i in range(alpha.shape[0]):
        a = np.uint16(alpha[i])
        ia = np.uint16(255 - alpha[i])
        for c in range(3):
            j = 3 * i + c
            x = np.uint16(np.uint16(fg[j]) * a + np.uint16(bg[j]) * ia + np.uint16(128))
            out[j] = np.uint8(np.uint16(x + (x >> 8)) >> 8)


@njit("void(u1[::1], u1[::1], u1[::1], u2, u2)", nogil=True, cache=True, fastmath=True)
def _lerp_row(out, r0, r1, w1, w0):
    # out = (r0*w0 + r1*w1) / 256, rounded; w0 + w1 = 256. u16 lanes: 255*256 fits.
    for j in range(out.shape[0]):
        out[j] = np.uint8(np.uint16(np.uint16(r0[j]) * w0 + np.uint16(r1[j]) * w1 + np.uint16(128)) >> 8)


@njit("Tuple((i8, i8, f8))(i8, f8, i8)", nogil=True, cache=True)
def _row_pair(y, sy, h):
    # The two low-res rows output row y lies between, and the weight of the second, with
    # pixel centres aligned as cv2.resize INTER_LINEAR does (sy = h / H).
    fy = min(max((y + 0.5) * sy - 0.5, 0.0), h - 1.0)
    y0 = min(int(fy), h - 1)
    return y0, min(y0 + 1, h - 1), fy - y0


@njit("u1[::1](u1[:, ::1], i8, i8, u1[::1])", nogil=True, cache=True)
def _rows_at(src, y, H, row):
    # Row y of a full-height image given as [hs, W*3] rows at full width: the row itself
    # (hs == H), the one row (hs == 1, a flat colour), or, for a low-resolution image stretched
    # to H rows (bilinear, pixel centres aligned as cv2.resize), a lerp of two of its rows into
    # the scratch `row`, so a full-resolution image is never written.
    hs = src.shape[0]
    if hs == H:
        return src[y]
    if hs == 1:
        return src[0]
    y0, y1, f = _row_pair(y, hs / H, hs)
    w1 = np.uint16(int(f * 256.0 + 0.5))
    _lerp_row(row, src[y0], src[y1], w1, np.uint16(256) - w1)
    return row


@njit("void(u1[::1], u1[::1], u1[:, ::1], i8, i8, u1[::1], u1[::1])", nogil=True, cache=True)
def _blend_bg_row(out, fg, bg, y, H, row, alpha):
    # Output row y of blend(fg, bg, alpha), bg given as rows (_rows_at), blended at once while
    # the row is in L1. The per-row work is in helper functions on purpose: LLVM vectorises
    # them there, not inlined in the row loop (measured: 0.34 ms against 1.9 ms for the lerp at 1080p).
    _blend_row(out, fg, _rows_at(bg, y, H, row), alpha)


@njit("void(u1[:, ::1], u1[:, ::1], u1[:, ::1], u1[:, ::1], u1[::1])", nogil=True, cache=True)
def _blend_rows(out, fg, bg, alpha, row):
    # out, fg: [H, W*3] u8; bg: [hb, W*3] (see _blend_bg_row); alpha: [H, W] u8; row: [W*3] scratch.
    H = out.shape[0]
    for y in range(H):
        _blend_bg_row(out[y], fg[y], bg, y, H, row, alpha[y])


@njit("void(u1[::1], f4[::1], f4[::1], f4[::1], f4[::1], f4, u1[::1])", nogil=True, cache=True, fastmath=True)
def _guided_row(out, a0, a1, b0, b1, wy, gray):
    # One output row: a and b lerped between two stretched low-res rows, then
    # out = clip(a * gray + b * 255) (a, b fitted for a guide in [0, 1]; gray here in [0, 255]).
    for x in range(out.shape[0]):
        a = a0[x] + (a1[x] - a0[x]) * wy
        b = b0[x] + (b1[x] - b0[x]) * wy
        v = a * np.float32(gray[x]) + b * np.float32(255.0) + np.float32(0.5)
        out[x] = np.uint8(min(max(v, np.float32(0.0)), np.float32(255.0)))


@njit("void(u1[::1], u1[::1])", nogil=True, cache=True, fastmath=True)
def _gray_row(out, bgr):
    # BT.601 luma with 8-bit weights (29, 150, 77)/256, u16 lanes: within 1 level of cv2's.
    for x in range(out.shape[0]):
        out[x] = np.uint8(np.uint16(np.uint16(bgr[3 * x]) * np.uint16(29) + np.uint16(bgr[3 * x + 1]) * np.uint16(150)
                                    + np.uint16(bgr[3 * x + 2]) * np.uint16(77) + np.uint16(128)) >> 8)


@njit("void(u1[::1], u2[::1], u1[::1], u1[::1], u1[::1])", nogil=True, cache=True, fastmath=True)
def _box_row(out, colsum, g0, g1, g2):
    # out = the 3x3 mean of three gray rows, rounded (reflect-101 at the row's ends, as cv2.blur).
    W = out.shape[0]
    for x in range(W):
        colsum[x] = np.uint16(g0[x]) + np.uint16(g1[x]) + np.uint16(g2[x])
    if W == 1:
        out[0] = np.uint8((np.uint32(colsum[0]) + 1) // 3)
        return
    for x in range(1, W - 1):  # x * 7282 >> 16 == x // 9 (rounded) for x <= 2295
        out[x] = np.uint8((np.uint32(colsum[x - 1] + colsum[x] + colsum[x + 1] + 4) * np.uint32(7282)) >> 16)
    out[0] = np.uint8((np.uint32(2 * colsum[1] + colsum[0] + 4) * np.uint32(7282)) >> 16)
    out[W - 1] = np.uint8((np.uint32(2 * colsum[W - 2] + colsum[W - 1] + 4) * np.uint32(7282)) >> 16)


@njit("void(u1[:, ::1], f4[:, ::1], f4[:, ::1], u1[:, ::1])", nogil=True, cache=True)
def _guided_rows(out, ah, bh, guide):
    # out: [H, W] u8; ah, bh: [h, W] f32 coefficients stretched to full width; guide: [H, W] u8.
    # Rows are lerped as cv2.resize INTER_LINEAR does (pixel centres aligned). Per-row
    # helpers on purpose: LLVM vectorises them there, not inlined in this loop.
    H = out.shape[0]
    h = ah.shape[0]
    sy = h / H
    for y in range(H):
        y0, y1, f = _row_pair(y, sy, h)
        _guided_row(out[y], ah[y0], ah[y1], bh[y0], bh[y1], np.float32(f), guide[y])


@njit("void(u1[:, ::1], u1[:, ::1], u2[::1], u1[::1], i8)", nogil=True, cache=True)
def _guide_at(img, ring, colsum, guide, y):
    # The guide's row y: the gray of BGR rows y-1..y+1 with a 3x3 mean (reflect-101 at the
    # frame's edges, as cv2.blur), kept in a ring of three gray rows so that neither a
    # full-resolution gray nor its blur is ever written. Called for y = 0, 1, ... in order:
    # it grays row y+1 (rows 0 and 1 at y = 0). img: [H, W*3]; ring: [3, W]; colsum: [W] u16.
    H = img.shape[0]
    if y == 0:
        _gray_row(ring[0], img[0])
    if y + 1 < H:
        _gray_row(ring[(y + 1) % 3], img[y + 1])
    mid = ring[y % 3]
    if H == 1:
        up = dn = mid
    elif y == 0:
        up = dn = ring[1]
    elif y == H - 1:
        up = dn = ring[(y - 1) % 3]
    else:
        up = ring[(y - 1) % 3]
        dn = ring[(y + 1) % 3]
    _box_row(guide, colsum, up, mid, dn)


@njit("void(u1[:, ::1], f4[:, ::1], f4[:, ::1], u1[:, ::1], u1[:, ::1], u2[::1], u1[::1])", nogil=True, cache=True)
def _guided_rows_bgr(out, ah, bh, img, ring, colsum, guide):
    # As _guided_rows, with the guide made here from the BGR frame img [H, W*3] (_guide_at):
    # the 3x3 mean takes the sensor noise out of the guide, which would otherwise flicker the
    # alpha along every edge. guide: [W] u8 scratch.
    H = out.shape[0]
    h = ah.shape[0]
    sy = h / H
    for y in range(H):
        _guide_at(img, ring, colsum, guide, y)
        y0, y1, f = _row_pair(y, sy, h)
        _guided_row(out[y], ah[y0], ah[y1], bh[y0], bh[y1], np.float32(f), guide)


@njit("void(u1[:, ::1], u1[:, ::1], u1[:, ::1], f4[:, ::1], f4[:, ::1], u1[:, ::1], u1[:, ::1], u2[::1], u1[::1], "
      "u1[::1])", nogil=True, cache=True)
def _refine_blend_rows(out, alpha, img, ah, bh, bg, ring, colsum, guide, row):
    # The guided upsampling (_guided_rows_bgr) and the blend in one pass over the frame: each
    # row of img [H, W*3] is read once, while in L1, for its gray, its alpha and the blend, and
    # the full-resolution alpha is written only when the caller keeps it. (Measured on a
    # 2-core Xeon: in isolation no faster than the two kernels, which are compute-bound per
    # row; in the live pipeline, with the frame coming from the decoding core, the compositor
    # thread took less CPU.)
    # out: [H, W*3]; alpha: [H, W] (kept) or [1, W] (a scratch row); ah, bh: [h, W] f32
    # coefficients stretched to full width; bg: [hb, W*3] (see _blend_bg_row); row: [W*3] scratch.
    H = out.shape[0]
    h = ah.shape[0]
    sy = h / H
    keep = alpha.shape[0] == H
    for y in range(H):
        _guide_at(img, ring, colsum, guide, y)
        y0, y1, f = _row_pair(y, sy, h)
        a = alpha[y] if keep else alpha[0]
        _guided_row(a, ah[y0], ah[y1], bh[y0], bh[y1], np.float32(f), guide)
        _blend_bg_row(out[y], img[y], bg, y, H, row, a)


ALL_SET = np.uint64(0xFFFF_FFFF_FFFF_FFFF)  # eight alpha bytes of 255


@njit("void(u1[::1], u1[::1], u1[::1], u1[::1], u1[::1], u1[::1], u1[::1], i8, i8)", nogil=True, cache=True,
      fastmath=True)
def _edge_px(out, img, bg, est, soft, wrap, alpha, x, n):
    # Pixels x..x+n-1 of a row that already holds the plain blend: redo those in the border.
    # In the soft border the camera pixel is a mix I = a·F + (1 - a)·B of the person F and the
    # old room B; with est ≈ B (the matte-weighted blur of the room) F = (I - (1 - a)·est) / a
    # takes the old room's colour out (decontamination). Then the light wrap mixes a little of
    # the new background's blurred light (soft) into the person's solid rim.
    # Branch-free: where a = 0, or 255 without wrap, the formula gives the plain blend's value
    # exactly, and without a branch the loop runs 1.4x faster (1 ms a 720p frame here).
    for i in range(x, x + n):
        j = 3 * i
        af = np.float32(alpha[i]) * np.float32(1 / 255)
        inv = np.float32(1.0) / max(af, np.float32(0.125))
        # Light wraps the solid rim, not the see-through strands (they already show the new background).
        wf = np.float32(wrap[i]) * np.float32(1 / 255) * af * af
        for c in range(3):
            f = (np.float32(img[j + c]) - (np.float32(1.0) - af) * np.float32(est[j + c])) * inv
            f = min(max(f, np.float32(0.0)), np.float32(255.0))
            f += (np.float32(soft[j + c]) - f) * wf
            v = f * af + np.float32(bg[j + c]) * (np.float32(1.0) - af) + np.float32(0.5)
            out[j + c] = np.uint8(min(max(v, np.float32(0.0)), np.float32(255.0)))


@njit("void(u1[:, ::1], u1[:, ::1], u1[:, ::1], u1[:, ::1], u1[:, ::1], u1[:, ::1], u1[:, ::1], u1[::1], u1[::1])",
      nogil=True, cache=True)
def _blend_edge_rows(out, img, bg, est, soft, wrap, alpha, row, est_row):
    # out, img, soft: [H, W*3]; bg, est: [hb, W*3] / [he, W*3] (full, one row, or low-res rows
    # stretched to full width: _rows_at); wrap, alpha: [H, W]; row, est_row: [W*3] scratch.
    # Each row is blended plainly first (the vectorised u16 blend, which is exact where a is 0,
    # or 255 without wrap: nearly the whole frame), then only its border pixels are redone; the
    # old room's estimate is never written at full resolution.
    # The border is found eight pixels at a time (alpha and wrap read as u64 words: a word of
    # alpha 0, or of 255 with no wrap, needs nothing more), which is what makes it cheap.
    H, W = alpha.shape
    n8 = W // 8
    for y in range(H):
        b = _rows_at(bg, y, H, row)
        _blend_row(out[y], img[y], b, alpha[y])
        # The old room's row, stretched on every row: doing it only on rows with a border word
        # measured slower (0.5 ms more at 720p) than the stretch itself (about 0.2 ms).
        e = _rows_at(est, y, H, est_row)
        a8 = alpha[y][: 8 * n8].view(np.uint64)
        w8 = wrap[y][: 8 * n8].view(np.uint64)
        for k in range(n8):
            ak = a8[k]
            if ak == 0 or (ak == ALL_SET and w8[k] == 0):
                continue
            _edge_px(out[y], img[y], b, e, soft[y], wrap[y], alpha[y], 8 * k, 8)
        if W > 8 * n8:  # the last few pixels of a width that is not a multiple of 8
            _edge_px(out[y], img[y], b, e, soft[y], wrap[y], alpha[y], 8 * n8, W - 8 * n8)


def _flat(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1)


def blend(out: np.ndarray, fg: np.ndarray, bg: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``out = fg·α + bg·(1-α)`` in u8. ``fg, bg, out``: ``[H, W, 3] uint8``; ``alpha``: ``[H, W] uint8``."""
    fg = check_image(fg, "fg")
    bg = check_image(bg, "bg")
    _check_alpha(alpha, fg.shape)
    if bg.shape != fg.shape or out.shape != fg.shape or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError(f"blend: fg {fg.shape}, bg {bg.shape} and out {out.shape} must match (uint8, contiguous)")
    _blend_row(_flat(out), _flat(fg), _flat(bg), _flat(alpha))
    return out


def _bg_rows(bg: np.ndarray, H: int, W: int, scratch: dict) -> np.ndarray:
    """A background as the ``[hb, W*3]`` rows the kernels take (:func:`_blend_bg_row`): ``[3]`` a BGR
    colour (one row, made once per colour), ``[H, W, 3]`` an image (as it is), or ``[h, w, 3]`` of
    another size, stretched to full width with OpenCV (SIMD, h rows only: ~0.1 ms); its height is
    stretched inside the blend."""
    if bg.shape == (3,):
        if scratch.get("color_key") != (W, bg.tobytes()):
            scratch.update(color_key=(W, bg.tobytes()), color_row=np.tile(bg, W).reshape(1, W * 3))
        return scratch["color_row"]
    if bg.shape == (H, W, 3):
        return bg.reshape(H, W * 3)
    hb = bg.shape[0]
    if scratch.get("bg_key") != (hb, W):
        scratch.update(bg_key=(hb, W), bg_rows=np.empty((hb, W * 3), np.uint8))
    cv2.resize(bg, (W, hb), dst=scratch["bg_rows"].reshape(hb, W, 3), interpolation=cv2.INTER_LINEAR)
    return scratch["bg_rows"]


def _row(W: int, scratch: dict) -> np.ndarray:
    """The kernels' ``[W*3]`` scratch row, made once per width."""
    if scratch.get("row") is None or scratch["row"].shape[0] != W * 3:
        scratch["row"] = np.empty(W * 3, np.uint8)
    return scratch["row"]


def blend_color(out: np.ndarray, fg: np.ndarray, color_bgr, alpha: np.ndarray, scratch: dict | None = None) -> np.ndarray:
    """``out = fg·α + color·(1-α)``; ``color_bgr`` is three ints. ``scratch``: a dict this
    function keeps its colour row in; pass the same one back to reuse it."""
    fg = check_image(fg, "fg")
    _check_alpha(alpha, fg.shape)
    if out.shape != fg.shape or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError(f"blend_color: out {out.shape} must match fg {fg.shape} (uint8, contiguous)")
    H, W = fg.shape[:2]
    scratch = {} if scratch is None else scratch
    rows = _bg_rows(np.asarray(color_bgr, np.uint8).reshape(3), H, W, scratch)
    _blend_rows(out.reshape(H, W * 3), fg.reshape(H, W * 3), rows, alpha, _row(W, scratch))
    return out


def blend_edge(out: np.ndarray, img: np.ndarray, bg: np.ndarray, est: np.ndarray, soft: np.ndarray,
               wrap: np.ndarray, alpha: np.ndarray, scratch: dict | None = None) -> np.ndarray:
    """Blend with foreground decontamination and light wrap (see ``_edge_px``).

    ``img``: the camera frame ``[H, W, 3] uint8``; ``bg``: the new background, ``[H, W, 3]``,
    a ``[3]`` BGR colour, or ``[h, w, 3]`` of another size (upsampled as :func:`blend_upsample`
    does); ``est``: an estimate of the old room behind the person (a matte-weighted blur), at
    full or any lower resolution (upsampled the same way, a row at a time, never written at
    full resolution); ``soft``: the new background, blurred, ``[H, W, 3]``; ``wrap``: ``[H, W] u8``
    light-wrap weight; ``alpha``: ``[H, W] u8``. ``scratch``: a dict this function keeps its
    buffers in. With ``est`` = ``img`` and ``wrap`` = 0 this is :func:`blend` wherever alpha ≥ 1/8.
    """
    img = check_image(img, "img")
    H, W = img.shape[:2]
    for name, a in (("soft", soft), ("out", out)):
        if a.shape != img.shape or a.dtype != np.uint8 or not a.flags.c_contiguous:
            raise ValueError(f"blend_edge: {name} {a.shape} must match img {img.shape} (uint8, contiguous)")
    bg = np.asarray(bg)
    if bg.shape != (3,) or bg.dtype != np.uint8:
        bg = check_image(bg, "bg")
    est = check_image(est, "est")
    _check_alpha(alpha, img.shape)
    _check_alpha(wrap, img.shape)
    scratch = {} if scratch is None else scratch
    est_scratch = scratch.setdefault("est", {})
    if "est_row" not in est_scratch or est_scratch["est_row"].shape[0] != W * 3:
        est_scratch["est_row"] = np.empty(W * 3, np.uint8)
    _blend_edge_rows(out.reshape(H, W * 3), img.reshape(H, W * 3), _bg_rows(bg, H, W, scratch),
                     _bg_rows(est, H, W, est_scratch), soft.reshape(H, W * 3), wrap, alpha, _row(W, scratch),
                     est_scratch["est_row"])
    return out


def blend_upsample(out: np.ndarray, fg: np.ndarray, small_bg: np.ndarray, alpha: np.ndarray,
                   scratch: dict | None = None) -> np.ndarray:
    """``out = fg·α + up(small_bg)·(1-α)``, where ``up`` is a bilinear upsample (as
    ``cv2.resize`` INTER_LINEAR) of ``small_bg`` ``[h, w, 3] uint8`` to ``fg``'s size, fused
    so the full-resolution background is never written. ``scratch``: a dict this function
    fills with its buffers; pass the same one back to reuse them."""
    fg = check_image(fg, "fg")
    _check_alpha(alpha, fg.shape)
    small_bg = check_image(small_bg, "small_bg")
    if out.shape != fg.shape or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError(f"blend_upsample: out {out.shape} must match fg {fg.shape} (uint8, contiguous)")
    H, W = fg.shape[:2]
    scratch = {} if scratch is None else scratch
    _blend_rows(out.reshape(H, W * 3), fg.reshape(H, W * 3), _bg_rows(small_bg, H, W, scratch), alpha,
                _row(W, scratch))
    return out


def _stretched(a_lo: np.ndarray, b_lo: np.ndarray, W: int, scratch: dict, fixed: bool):
    """``a_lo``, ``b_lo`` ``[h, w]`` stretched to ``[h, W]`` f32 (width only: OpenCV's SIMD, h rows).
    ``fixed``: the caller promises these arrays are not changed while it passes them again (the
    frame contract for a matte's coefficients), so the stretch is reused until others come: a
    matte arrives a few times a second, the frames 30 times."""
    h = a_lo.shape[0]
    if scratch.get("key") != (h, W):
        scratch.update(key=(h, W), ah=np.empty((h, W), np.float32), bh=np.empty((h, W), np.float32),
                       ring=np.empty((3, W), np.uint8), colsum=np.empty(W, np.uint16), guide=np.empty(W, np.uint8),
                       src=None)
    src = scratch["src"]
    if not (fixed and src is not None and src[0] is a_lo and src[1] is b_lo):
        cv2.resize(np.asarray(a_lo, np.float32), (W, h), dst=scratch["ah"], interpolation=cv2.INTER_LINEAR)
        cv2.resize(np.asarray(b_lo, np.float32), (W, h), dst=scratch["bh"], interpolation=cv2.INTER_LINEAR)
        scratch["src"] = (a_lo, b_lo) if fixed else None
    return scratch["ah"], scratch["bh"]


def _check_coef(a_lo: np.ndarray, b_lo: np.ndarray, name: str) -> None:
    if a_lo.shape != b_lo.shape or a_lo.ndim != 2:
        raise ValueError(f"{name}: a {a_lo.shape} and b {b_lo.shape} must be equal 2-D arrays")


def guided_upsample(out: np.ndarray, a_lo: np.ndarray, b_lo: np.ndarray, guide: np.ndarray,
                    scratch: dict | None = None, *, fixed: bool = False) -> np.ndarray:
    """Full-resolution ``[H, W] uint8`` alpha from low-resolution guided-filter coefficients:
    ``out = clip(a·g + b)`` with ``a``, ``b`` bilinearly upsampled and ``g`` the guide in [0, 1].

    ``guide``: ``[H, W] uint8`` gray, used as is, or the ``[H, W, 3] uint8`` BGR frame: then
    the guide is its gray with a 3x3 mean, made row by row inside the kernel (what
    ``cv2.blur(cvtColor(frame, BGR2GRAY), (3, 3))`` gives, within a level, without writing
    either). ``scratch``: a dict this function fills with its buffers; pass the same one
    back to reuse them. ``fixed``: see :func:`_stretched`.
    """
    if guide.dtype != np.uint8 or not guide.flags.c_contiguous or guide.ndim not in (2, 3) or (
            guide.ndim == 3 and guide.shape[2] != 3):
        raise ValueError(f"guided_upsample: guide must be a contiguous [H, W] gray or [H, W, 3] BGR uint8 image, "
                         f"got {guide.shape} {guide.dtype}")
    if out.shape != guide.shape[:2] or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError(f"guided_upsample: out must be [H, W] uint8 matching guide {guide.shape[:2]}, got {out.shape} {out.dtype}")
    _check_coef(a_lo, b_lo, "guided_upsample")
    H, W = out.shape
    scratch = {} if scratch is None else scratch
    ah, bh = _stretched(a_lo, b_lo, W, scratch, fixed)  # height inside the kernel
    if guide.ndim == 2:
        _guided_rows(out, ah, bh, guide)
    else:
        _guided_rows_bgr(out, ah, bh, guide.reshape(H, W * 3), scratch["ring"], scratch["colsum"], scratch["guide"])
    return out


def refine_blend(out: np.ndarray, img: np.ndarray, a_lo: np.ndarray, b_lo: np.ndarray, bg: np.ndarray,
                 alpha: np.ndarray | None = None, scratch: dict | None = None, *, fixed: bool = False) -> np.ndarray:
    """:func:`guided_upsample` from the BGR frame ``img`` and the blend of ``img`` over ``bg`` with
    that alpha, in one pass over the frame (the same result as the two calls, but the frame is
    read once and the full-resolution alpha is written only into ``alpha``, if given).

    ``bg``: ``[H, W, 3] uint8`` (an image), ``[3]`` (a BGR colour), or ``[h, w, 3] uint8`` of
    another size (a low-resolution background, upsampled as :func:`blend_upsample` does).
    ``alpha``: ``[H, W] uint8`` to keep the alpha in, or ``None``.
    """
    img = check_image(img, "img")
    H, W = img.shape[:2]
    if out.shape != img.shape or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError(f"refine_blend: out {out.shape} must match img {img.shape} (uint8, contiguous)")
    if alpha is not None:
        _check_alpha(alpha, img.shape)
    _check_coef(a_lo, b_lo, "refine_blend")
    scratch = {} if scratch is None else scratch
    ah, bh = _stretched(a_lo, b_lo, W, scratch, fixed)
    bg = np.asarray(bg)
    if bg.shape != (3,):
        bg = check_image(bg, "bg")
    elif bg.dtype != np.uint8:
        raise ValueError(f"refine_blend: a colour bg must be uint8, got {bg.dtype}")
    if "alpha_row" not in scratch or scratch["alpha_row"].shape[1] != W:
        scratch["alpha_row"] = np.empty((1, W), np.uint8)
    _refine_blend_rows(out.reshape(H, W * 3), scratch["alpha_row"] if alpha is None else alpha,
                       img.reshape(H, W * 3), ah, bh, _bg_rows(bg, H, W, scratch), scratch["ring"], scratch["colsum"],
                       scratch["guide"], _row(W, scratch))
    return out


def _check_alpha(alpha: np.ndarray, shape) -> None:
    if not isinstance(alpha, np.ndarray) or alpha.dtype != np.uint8:
        raise TypeError(f"alpha: expected uint8 ndarray, got {getattr(alpha, 'dtype', type(alpha).__name__)}")
    if alpha.shape != tuple(shape[:2]) or not alpha.flags.c_contiguous:
        raise ValueError(f"alpha: expected contiguous shape {list(shape[:2])}, got {list(alpha.shape)}")


def warm() -> None:
    """Compile (or load from numba's cache) every kernel once, on tiny images: for a process
    whose first frame must not wait for the compiler (the VM test, a slow machine)."""
    img = np.zeros((4, 4, 3), np.uint8)
    a = np.zeros((4, 4), np.uint8)
    lo = np.zeros((2, 2), np.float32)
    blend(img.copy(), img, img, a)
    blend_color(img.copy(), img, (0, 0, 0), a)
    blend_upsample(img.copy(), img, img[:2, :2].copy(), a)
    blend_edge(img.copy(), img, img, img, img, a, a)
    guided_upsample(a.copy(), lo, lo, a)
    guided_upsample(a.copy(), lo, lo, img)
    refine_blend(img.copy(), img, lo, lo, img[:2, :2].copy())
