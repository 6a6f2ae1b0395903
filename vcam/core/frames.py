"""The frame contract, written down once.

* Images are ``uint8``, C-contiguous, ``[H, W, 3]``, **BGR**, from capture to output.
* A *matte* is the model's opinion at model resolution: ``float32`` ``[h, w]`` in
  ``[0, 1]`` (1 = person). Smoothing works on mattes.
* An *alpha* is the refined, full-resolution matte the compositor blends with:
  ``uint8`` ``[H, W]`` in ``[0, 255]``. Only the refiner makes alphas.
* Every frame carries ``seq`` (monotonic per source, starting at 0) and
  ``t_capture`` (``time.monotonic()`` when the source produced it). Mattes carry
  the ``seq``/``t_capture`` of the frame they were computed from, so every stage can
  report its latency and its drops.
* Buffer ownership: a stage never writes into an array after it has handed it on.
  Whoever receives an array may read it but must not modify it; stages that keep
  state (the smoother) own private buffers and hand out copies or fresh arrays.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np


# Image files that every folder input, background folder and `vcam remove` folder takes (what OpenCV reads).
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")


@dataclass(frozen=True, slots=True)
class Frame:
    """A captured image. ``image`` is ``[H, W, 3] uint8 BGR``, C-contiguous."""

    image: np.ndarray
    seq: int
    t_capture: float = field(default_factory=time.monotonic)

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)``."""
        return self.image.shape[1], self.image.shape[0]


@dataclass(frozen=True, slots=True)
class Matte:
    """A model-resolution matte for the frame ``seq``: ``alpha`` is ``[h, w] float32`` in [0, 1],
    or ``None`` for "no usable matte" (matting failed or the guard withheld it: fail closed)."""

    alpha: np.ndarray
    seq: int
    t_capture: float
    # Guided-filter coefficients (a, b), each [h, w] float32, fitted against the
    # frame the matte came from; the compositor applies them to every newer frame.
    coef: tuple[np.ndarray, np.ndarray] | None = None
    # That frame's gray at matte resolution, [h, w] uint8: the compositor tracks the person's
    # motion from it to each newer frame and moves the matte along (vcam.imaging.follow).
    guide: np.ndarray | None = None
    # A reused matte (the picture was still, or the person moved as a whole) is stamped with the
    # frame it is reused for (``seq``, ``t_capture``: its age starts again); ``origin`` is then the
    # frame its pixels came from, which the compositor follows the person from. -1: ``seq`` itself.
    origin: int = -1


@dataclass(frozen=True, slots=True)
class Composite:
    """An output image ``[H, W, 3] uint8 BGR`` plus the provenance of its pieces."""

    image: np.ndarray
    seq: int
    t_capture: float
    matte_seq: int = -1  # -1: no matte yet (fail-closed output)
    alpha: np.ndarray | None = None  # [H, W] uint8, when someone asked for it
    frame: np.ndarray | None = None  # the input image it was made from (read-only)


def check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Validate an image against the contract; return it C-contiguous.

    Raises ``TypeError``/``ValueError`` with the exact mismatch, in the style of
    pyvirtualcam ("expected uint8, got float32").
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name}: expected numpy.ndarray, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise TypeError(f"{name}: expected uint8, got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name}: expected shape [H, W, 3], got {list(image.shape)}")
    return np.ascontiguousarray(image)
