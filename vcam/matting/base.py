"""The matter interface and the model registry.

A matter turns a full-resolution BGR frame into a model-resolution matte:
``infer(bgr) -> [h, w] float32 in [0, 1]``. ``reset()`` clears any recurrent state
(RVM) and is called on a resize or a source change. Models register by name with
:func:`register`; the CLI's ``--model`` choices come from :data:`MATTERS`.
"""
from __future__ import annotations

import abc
from typing import Callable

import numpy as np

from ..errors import ModelError

MATTERS: dict[str, type["Matter"]] = {}


def register(name: str) -> Callable[[type["Matter"]], type["Matter"]]:
    def deco(cls: type["Matter"]) -> type["Matter"]:
        cls.name = name
        MATTERS[name] = cls
        return cls

    return deco


class Matter(abc.ABC):
    name: str = "?"
    licence: str = "?"
    stateless: bool = True  # infer() may run on several threads at once (False: recurrent)
    default_max_hz: float = 0.0  # the model's own rate cap where matting.max_hz is 0 (0: none)

    @abc.abstractmethod
    def infer(self, bgr: np.ndarray) -> np.ndarray:
        """``bgr``: ``[H, W, 3] uint8``. Returns a fresh ``[h, w] float32`` matte in [0, 1]."""

    def reset(self) -> None:
        """Forget recurrent state. Stateless models have nothing to forget."""

    def close(self) -> None:
        """Release the session."""


def create(cfg) -> Matter:
    """Build the matter named by ``cfg.model`` (a :class:`~vcam.config.MattingConfig`)."""
    from . import lite, modnet, rvm, u2netp  # noqa: F401  (registration side effects)

    cls = MATTERS.get(cfg.model)
    if cls is None:
        raise ModelError(f"unknown model '{cfg.model}': choose one of {', '.join(sorted(MATTERS))}")
    return cls(cfg)


def model_input_shape(width: int, height: int, short_side: int, multiple: int = 32) -> tuple[int, int]:
    """``(h, w)`` with the short side near ``short_side``, the aspect kept, both multiples of ``multiple``."""
    scale = short_side / min(width, height)
    h = max(multiple, int(round(height * scale / multiple)) * multiple)
    w = max(multiple, int(round(width * scale / multiple)) * multiple)
    return h, w
