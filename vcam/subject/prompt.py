"""Prompts for SAM: positive points, negative points and a box, in image pixels."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError


class PromptError(ConfigError):
    """A point or box that is malformed or outside the image."""


def _pair(text: str, what: str) -> tuple[float, float]:
    parts = [p.strip() for p in str(text).split(",")]
    try:
        if len(parts) != 2:
            raise ValueError
        x, y = (float(p) for p in parts)
    except ValueError:
        raise PromptError(f"{what} '{text}' is malformed: write it as X,Y in pixels, e.g. 320,240") from None
    return x, y


def parse_point(text: str, what: str = "--point") -> tuple[float, float]:
    return _pair(text, what)


def parse_box(text: str, what: str = "--box") -> tuple[float, float, float, float]:
    parts = [p.strip() for p in str(text).split(",")]
    try:
        if len(parts) != 4:
            raise ValueError
        x1, y1, x2, y2 = (float(p) for p in parts)
    except ValueError:
        raise PromptError(f"{what} '{text}' is malformed: write it as X1,Y1,X2,Y2 in pixels, e.g. 100,50,400,460") from None
    return x1, y1, x2, y2


@dataclass(frozen=True)
class Prompt:
    """What to keep: ``points`` (on the subject), ``neg`` (not on it), ``box`` (x1, y1, x2, y2).

    Coordinates are pixels of the input image, x to the right, y down.
    """

    points: tuple = field(default_factory=tuple)
    neg: tuple = field(default_factory=tuple)
    box: tuple | None = None

    def __post_init__(self):
        object.__setattr__(self, "points", tuple(self._xy(p, "point") for p in (self.points or ())))
        object.__setattr__(self, "neg", tuple(self._xy(p, "negative point") for p in (self.neg or ())))
        if self.box is not None:
            b = parse_box(self.box) if isinstance(self.box, str) else tuple(float(v) for v in self.box)
            if len(b) != 4:
                raise PromptError(f"box {self.box} must have four numbers X1,Y1,X2,Y2")
            x1, y1, x2, y2 = b
            object.__setattr__(self, "box", (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)))
        if not self.points and self.box is None:
            raise PromptError("a prompt needs at least one --point or a --box (negative points alone select nothing)")

    @staticmethod
    def _xy(p, what):
        if isinstance(p, str):
            return parse_point(p, what)
        try:
            x, y = (float(v) for v in p)
        except (TypeError, ValueError):
            raise PromptError(f"{what} {p!r} is malformed: give (x, y) in pixels") from None
        return x, y

    def check(self, width: int, height: int) -> None:
        """One-line error for anything outside a ``width`` × ``height`` image."""
        for what, pts in (("--point", self.points), ("--neg", self.neg)):
            for x, y in pts:
                if not (0 <= x < width and 0 <= y < height):
                    raise PromptError(f"{what} {x:g},{y:g} is outside the {width}x{height} image: "
                                      f"use 0 <= X < {width} and 0 <= Y < {height}")
        if self.box is not None:
            x1, y1, x2, y2 = self.box
            if x2 - x1 < 2 or y2 - y1 < 2:
                raise PromptError(f"--box {x1:g},{y1:g},{x2:g},{y2:g} is empty: give two opposite corners")
            if x1 >= width or y1 >= height or x2 <= 0 or y2 <= 0:
                raise PromptError(f"--box {x1:g},{y1:g},{x2:g},{y2:g} is outside the {width}x{height} image")

    def clipped_box(self, width: int, height: int):
        if self.box is None:
            return None
        x1, y1, x2, y2 = self.box
        return max(0.0, x1), max(0.0, y1), min(width - 1.0, x2), min(height - 1.0, y2)
