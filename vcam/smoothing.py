"""Temporal smoothing of the model-resolution matte.

The peers use a plain exponential moving average: it cuts flicker but smears
motion. The ``adaptive`` filter keeps a strong average only where the matte is
static, and follows at once where it changes by more than ``motion``:

    keep = strength · clip(1 − |m − s| / motion, 0, 1)
    s    = keep · s + (1 − keep) · m

A scene cut (most of the matte changing at once) or a size change resets the
state. The smoother owns its state buffer and hands out a fresh array each time.
"""
from __future__ import annotations

import numpy as np

SMOOTHERS: dict[str, type["Smoother"]] = {}


def register(name):
    def deco(cls):
        SMOOTHERS[name] = cls
        cls.kind = name
        return cls

    return deco


class Smoother:
    kind = "none"

    def __init__(self, cfg):
        self.cfg = cfg
        self._state: np.ndarray | None = None

    def reset(self) -> None:
        self._state = None

    def __call__(self, matte: np.ndarray) -> np.ndarray:
        """``matte``: ``[h, w] float32``. Returns a new ``[h, w] float32`` array."""
        if self._state is None or self._state.shape != matte.shape:
            self._state = matte.astype(np.float32, copy=True)
            return self._state.copy()
        self._step(matte)
        return self._state.copy()

    def _step(self, matte: np.ndarray) -> None:
        self._state[...] = matte


register("none")(Smoother)


@register("ema")
class EmaSmoother(Smoother):
    def _step(self, matte):
        k = np.float32(self.cfg.strength)
        self._state *= k
        self._state += (1 - k) * matte


@register("adaptive")
class AdaptiveSmoother(Smoother):
    scene_cut = 0.25  # mean |Δ| above which the old state is thrown away

    def _step(self, matte):
        s = self._state
        d = np.abs(matte - s)
        if float(d.mean()) > self.scene_cut:
            s[...] = matte
            return
        keep = np.clip(1.0 - d * np.float32(1.0 / self.cfg.motion), 0.0, 1.0)
        keep *= np.float32(self.cfg.strength)
        s += (1.0 - keep) * (matte - s)


def create(cfg) -> Smoother:
    return SMOOTHERS[cfg.kind](cfg)
