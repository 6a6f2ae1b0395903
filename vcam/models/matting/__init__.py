"""Matting models behind one interface (see :mod:`.base`): ``create(cfg)`` builds ``cfg.model``."""
from __future__ import annotations

from dataclasses import replace

from ...errors import ModelError
from . import isnet, lite, modnet, rvm, u2netp  # noqa: F401  (each registers itself)
from .base import MATTERS, Matter, OnnxMatter, model_input_shape, register

__all__ = ["MATTERS", "Matter", "OnnxMatter", "check_live", "create", "model_input_shape", "register"]

GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def check_live(cfg) -> None:
    """Refuse, before anything opens, a stills model (IS-Net, seconds a matte) for the live camera
    on a CPU: its matte would always be older than ``matting.max_age`` allows, so the call would see
    only the fail-closed blur. On a GPU (onnxruntime's CUDA or TensorRT) it may run."""
    cls = MATTERS.get(cfg.model)
    if cls is None or not cls.stills_only:
        return
    if cfg.runtime != "openvino":
        from ..runtime import pick_providers

        if any((p[0] if isinstance(p, tuple) else p) in GPU_PROVIDERS for p in pick_providers(cfg.providers)):
            return
    raise ModelError(f"{cfg.model} is a stills model: on a CPU one matte takes seconds, so the live camera would "
                     f"show only blur; use it with `vcam remove` or `vcam process`, and modnet, lite or rvm live")


def create(cfg, *, int8: bool = True, streams: int = 1, check_size: int = 0) -> Matter:
    """Build the matter named by ``cfg.model`` (a :class:`~vcam.config.MattingConfig`). An ONNX
    model on ``runtime: auto`` runs where this machine's check put it (:func:`.precision.resolve`;
    ``int8=False`` keeps it off int8), and the matter's ``cfg`` says which. ``streams``: how many
    threads will infer at once (stills: ``vcam remove``'s parallel pictures, ``vcam serve``'s pool).
    The live workers keep one OpenVINO stream: with a stream each, the soak saw a model loaded and
    dropped every few seconds (file descriptors, RSS and CPU swinging with it). ``check_size``: the input
    size the one-time runtime check runs at, when it is not ``cfg.input_size`` (the stills' larger MODNet:
    the check is the live camera's, whose int8 and CPU per matte it records)."""
    cls = MATTERS.get(cfg.model)
    if cls is None:
        raise ModelError(f"unknown model '{cfg.model}': choose one of {', '.join(sorted(MATTERS))}")
    if issubclass(cls, OnnxMatter) and cfg.runtime == "auto":
        from .precision import resolve

        rt, prec = resolve(cfg, int8=int8, check_size=check_size)
        cfg = replace(cfg, runtime=rt, precision=prec)
    return cls(cfg, streams=streams) if issubclass(cls, OnnxMatter) else cls(cfg)
