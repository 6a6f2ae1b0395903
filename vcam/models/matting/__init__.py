"""Matting models behind one interface (see :mod:`.base`): ``create(cfg)`` builds ``cfg.model``."""
from __future__ import annotations

from ...errors import ModelError
from . import isnet, lite, modnet, rvm, u2netp  # noqa: F401  (each registers itself)
from .base import MATTERS, Matter, OnnxMatter, model_input_shape, register

__all__ = ["MATTERS", "Matter", "OnnxMatter", "create", "model_input_shape", "register"]


def create(cfg) -> Matter:
    """Build the matter named by ``cfg.model`` (a :class:`~vcam.config.MattingConfig`)."""
    cls = MATTERS.get(cfg.model)
    if cls is None:
        raise ModelError(f"unknown model '{cfg.model}': choose one of {', '.join(sorted(MATTERS))}")
    return cls(cfg)
