"""Edge refinement: the low-resolution matte becomes a full-resolution alpha.

A fast guided filter (He & Sun, 2015): the linear coefficients ``a, b`` that map
the guide's gray level onto the matte are fitted at matte resolution, where box
filters are cheap, then upsampled and applied to the *current* full-resolution
frame in one fused numba pass (:func:`vcam.kernels.guided_upsample`). Edges snap to
the image's real edges (hair, glasses), and a matte a frame or two old still lands
on the current edges.
"""
from __future__ import annotations

import cv2
import numpy as np

from . import kernels


def small_gray(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``image`` (BGR or gray, any size) as ``[h, w] uint8`` gray at ``shape``, area-averaged."""
    h, w = shape
    if image.ndim == 2 and image.shape == (h, w):
        return image
    # Gray first, then the area resize: a third of the bytes to average (3x cheaper at 720p),
    # within one gray level of resizing the colour frame first.
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    return cv2.resize(gray, (w, h), interpolation=cv2.INTER_AREA)


class Refiner:
    """``refine(image, matte, out)``: ``image`` the ``[H, W, 3] uint8`` BGR frame (its gray with
    a 3x3 mean is the guide, made inside the kernel) or an ``[H, W] uint8`` gray guide used as
    is; ``matte`` ``[h, w] float32`` → ``out`` ``[H, W] uint8``."""

    def __init__(self, cfg):
        self.cfg = cfg
        self._scratch: dict = {}  # guided_upsample's buffers, reused
        self._zeros = None

    def refine(self, image: np.ndarray, matte: np.ndarray, out: np.ndarray,
               coef: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """``coef``: coefficients from :meth:`coefficients`, when already fitted (once per matte)."""
        a, b = self.pair(image, matte, coef)
        return kernels.guided_upsample(out, a, b, image, self._scratch, fixed=coef is not None)

    def pair(self, image: np.ndarray, matte: np.ndarray,
             coef: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``(a, b)`` the kernels apply: ``coef`` (fitted once per matte), fitted here when
        ``None``, or ``a = 0, b = matte`` (plain bilinear upsampling) when refinement is off."""
        if not self.cfg.enabled:
            if self._zeros is None or self._zeros.shape != matte.shape:
                self._zeros = np.zeros(matte.shape, np.float32)
            return self._zeros, matte
        return coef if coef is not None else self.coefficients(image, matte)

    def coefficients(self, image: np.ndarray, matte: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Guided-filter coefficients at matte resolution, for a guide in [0, 1].

        ``image``: the frame, ``[H, W, 3]`` BGR or ``[H, W]`` gray, any size (a gray image of the
        matte's size is used as is). ``None`` when refinement is disabled.
        """
        if not self.cfg.enabled:
            return None
        small = small_gray(image, matte.shape)
        I = small.astype(np.float32) * np.float32(1 / 255)  # [h, w] f32
        p = matte
        k = (2 * self.cfg.radius + 1,) * 2
        box = lambda x: cv2.boxFilter(x, cv2.CV_32F, k, borderType=cv2.BORDER_REFLECT)  # noqa: E731
        mean_I = box(I)
        mean_p = box(p)
        cov_Ip = box(I * p) - mean_I * mean_p
        var_I = box(I * I) - mean_I * mean_I
        a = cov_Ip / (var_I + np.float32(self.cfg.eps))
        b = mean_p - a * mean_I
        return box(a), box(b)
