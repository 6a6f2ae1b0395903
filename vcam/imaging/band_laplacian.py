"""Closed-form alpha matting's linear system on the trimap's unknown pixels only.

pymatting's ``estimate_alpha_cf`` builds the matting Laplacian of the whole picture (25 entries a
pixel, about 190 MB at half a megapixel) and then slices out the unknown rows: on a portrait
whose band is 7 % of the picture, building and slicing take 0.26 of its 0.37 s. The system
itself, ``L_U x = −R f`` (Levin et al. 2008; pymatting's notation), only involves the 3×3 windows
that hold an unknown pixel, so :func:`band_system` visits those windows alone and writes
``L_U`` (in CSR, the pattern pymatting's slice has) and ``−R f`` directly. The solve stays
pymatting's (its incomplete-Cholesky preconditioner and conjugate gradients), so the alpha is
pymatting's to rounding (``tests/test_kernels.py`` compares them).

The kernel follows pymatting's ``_cf_laplacian`` term by term (window radius 1, its epsilon),
with the explicit-signature, ``nogil``, ``cache`` convention of :mod:`vcam.imaging.kernels`. It
is its own module so that only stills that matte an edge compile or load it.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse
from numba import njit

EPSILON = 1e-7  # pymatting's cf_laplacian default


@njit("void(f8[:, :, ::1], f8[:, :, ::1], f8[::1], f8[:, :, ::1], i8[:, ::1], f8[:, ::1], f8)",
      nogil=True, cache=True)
def _band_system(values, c, b, image, index, fg, epsilon):
    # values[k, dy, dx]: L(unknown pixel k, the pixel at offset (dy - 2, dx - 2) from it);
    # b[k]: -sum over known pixels j of L(k, j) * fg[j]; index[y, x]: the unknown pixel's k, or -1;
    # c: scratch [3, 3, 3] for the window's centred colours.
    h, w, _ = image.shape
    area = 9.0
    for y in range(1, h - 1):
        for x in range(1, w - 1):
            unknown = False
            for dy in range(3):
                for dx in range(3):
                    if index[y + dy - 1, x + dx - 1] >= 0:
                        unknown = True
            if not unknown:
                continue
            for dc in range(3):
                s = 0.0
                for dy in range(3):
                    for dx in range(3):
                        s += image[y + dy - 1, x + dx - 1, dc]
                for dy in range(3):
                    for dx in range(3):
                        c[dy, dx, dc] = image[y + dy - 1, x + dx - 1, dc] - s / area
            a00 = epsilon
            a01 = 0.0
            a02 = 0.0
            a11 = epsilon
            a12 = 0.0
            a22 = epsilon
            for dy in range(3):
                for dx in range(3):
                    a00 += c[dy, dx, 0] * c[dy, dx, 0]
                    a01 += c[dy, dx, 0] * c[dy, dx, 1]
                    a02 += c[dy, dx, 0] * c[dy, dx, 2]
                    a11 += c[dy, dx, 1] * c[dy, dx, 1]
                    a12 += c[dy, dx, 1] * c[dy, dx, 2]
                    a22 += c[dy, dx, 2] * c[dy, dx, 2]
            a00 /= area
            a01 /= area
            a02 /= area
            a11 /= area
            a12 /= area
            a22 /= area
            det = a00 * a12 * a12 + a01 * a01 * a22 + a02 * a02 * a11 - a00 * a11 * a22 - 2 * a01 * a02 * a12
            inv_det = 1.0 / det
            m00 = (a12 * a12 - a11 * a22) * inv_det
            m01 = (a01 * a22 - a02 * a12) * inv_det
            m02 = (a02 * a11 - a01 * a12) * inv_det
            m11 = (a02 * a02 - a00 * a22) * inv_det
            m12 = (a00 * a12 - a01 * a02) * inv_det
            m22 = (a01 * a01 - a00 * a11) * inv_det
            for dyi in range(3):
                for dxi in range(3):
                    k = index[y + dyi - 1, x + dxi - 1]
                    if k < 0:
                        continue  # a known row: not in the system
                    s = c[dyi, dxi, 0]
                    t = c[dyi, dxi, 1]
                    u = c[dyi, dxi, 2]
                    c0 = m00 * s + m01 * t + m02 * u
                    c1 = m01 * s + m11 * t + m12 * u
                    c2 = m02 * s + m12 * t + m22 * u
                    for dyj in range(3):
                        for dxj in range(3):
                            temp = c0 * c[dyj, dxj, 0] + c1 * c[dyj, dxj, 1] + c2 * c[dyj, dxj, 2]
                            value = (1.0 if (dyi == dyj and dxi == dxj) else 0.0) - (1 + temp) / area
                            yj = y + dyj - 1
                            xj = x + dxj - 1
                            if index[yj, xj] >= 0:
                                values[k, dyj - dyi + 2, dxj - dxi + 2] += value
                            else:
                                b[k] -= value * fg[yj, xj]


def band_system(image: np.ndarray, trimap: np.ndarray) -> tuple[scipy.sparse.csr_matrix, np.ndarray, np.ndarray]:
    """The closed-form system on ``trimap``'s unknown pixels (``image`` ``[H, W, 3]`` float in [0, 1],
    ``trimap`` ``[H, W]``: 0 background, 1 foreground, anything else unknown): ``(L_U, rhs, unknown)``
    with ``L_U x = rhs`` for the unknown pixels' alpha, in raster order of ``unknown`` (``[H, W]`` bool)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[:2] != trimap.shape:
        raise ValueError(f"image {image.shape} and trimap {trimap.shape} do not match")
    h, w = trimap.shape
    unknown = (trimap != 0) & (trimap != 1)
    index = np.full((h, w), -1, np.int64)
    ys, xs = np.nonzero(unknown)
    m = ys.size
    index[ys, xs] = np.arange(m)
    values = np.zeros((m, 5, 5))
    rhs = np.zeros(m)
    _band_system(values, np.empty((3, 3, 3)), rhs, np.ascontiguousarray(image, np.float64), index,
                 np.ascontiguousarray(trimap == 1, np.float64), EPSILON)
    # CSR rows in raster order; within a row the 5x5 neighbourhood in raster order is also column order.
    oy, ox = np.mgrid[-2:3, -2:3]
    ny, nx = ys[:, None] + oy.ravel()[None], xs[:, None] + ox.ravel()[None]
    inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
    cols = np.where(inside, index[np.clip(ny, 0, h - 1), np.clip(nx, 0, w - 1)], -1)
    keep = cols >= 0
    indptr = np.zeros(m + 1, np.int64)
    np.cumsum(keep.sum(axis=1), out=indptr[1:])
    L = scipy.sparse.csr_matrix((values.reshape(m, 25)[keep], cols[keep], indptr), shape=(m, m))
    return L, rhs, unknown


def estimate_alpha(image: np.ndarray, trimap: np.ndarray) -> np.ndarray:
    """pymatting's ``estimate_alpha_cf(image, trimap)`` with its default preconditioner and solver,
    built on the unknown pixels alone (:func:`band_system`): ``[H, W]`` float64 alpha in [0, 1]."""
    from pymatting import cg, ichol

    L, rhs, unknown = band_system(image, trimap)
    x = trimap.astype(np.float64, copy=True)
    if rhs.size:
        x[unknown] = cg(L, rhs, M=ichol(L))
    return np.clip(x, 0, 1)
