"""Registries: classes that register themselves by name, so that every choice (``--model``,
``capture.source``, sinks, ``smoothing.kind``) is read from one table, never an if-chain."""
from __future__ import annotations

from typing import Callable, TypeVar

T = TypeVar("T", bound=type)


class Registry(dict):
    """``name → class``, in registration order. ``@REGISTRY.register("name")`` adds a class and
    sets its ``attr`` (``kind`` or ``name``) to the name it is known by."""

    def __init__(self, attr: str = "kind"):
        super().__init__()
        self.attr = attr

    def register(self, name: str) -> Callable[[T], T]:
        def deco(cls: T) -> T:
            setattr(cls, self.attr, name)
            self[name] = cls
            return cls

        return deco
