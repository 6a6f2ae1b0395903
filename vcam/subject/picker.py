"""``vcam remove IMG --pick``: choose the subject with the mouse.

Left click adds a point on the subject, right click a point that is not, a left
drag draws a box; ``u``/Backspace undoes, ``r`` resets, Enter saves, Esc cancels.
The image is encoded once when the window opens; every click after that is one
decoder run (milliseconds), drawn as a tinted overlay.

:class:`PickState` holds the interaction and is tested without a display;
:func:`pick` is the OpenCV window around it.
"""
from __future__ import annotations

import os
import time

import cv2
import numpy as np

from ..errors import OutputError, VcamError
from .prompt import Prompt

WINDOW = "vcam pick: click subject, right-click not, drag box, Enter save, u undo, Esc cancel"
DRAG_PX = 6  # a press and release farther apart than this is a box, not a click


class PickState:
    """Mouse and keys → a :class:`Prompt`, and the overlay to draw. Coordinates are image pixels."""

    def __init__(self, session, scale: float = 1.0):
        self.session = session  # a PromptSession (image encoded once)
        self.scale = scale  # display pixels per image pixel
        self.points: list = []
        self.neg: list = []
        self.box = None
        self._history: list = []
        self._press = None
        self.mask = None
        self.last_ms = 0.0

    def _img_xy(self, x, y):
        h, w = self.session.bgr.shape[:2]
        return min(w - 1, max(0, x / self.scale)), min(h - 1, max(0, y / self.scale))

    @property
    def prompt(self) -> Prompt | None:
        if not self.points and self.box is None:
            return None
        return Prompt(points=tuple(self.points), neg=tuple(self.neg), box=self.box)

    def on_mouse(self, event, x, y, flags=0, param=None) -> None:
        if event == cv2.EVENT_LBUTTONDOWN:
            self._press = (x, y)
        elif event == cv2.EVENT_LBUTTONUP and self._press is not None:
            (x0, y0), self._press = self._press, None
            if abs(x - x0) > DRAG_PX or abs(y - y0) > DRAG_PX:
                a, b = self._img_xy(x0, y0), self._img_xy(x, y)
                self._push()
                self.box = (min(a[0], b[0]), min(a[1], b[1]), max(a[0], b[0]), max(a[1], b[1]))
            else:
                self._push()
                self.points.append(self._img_xy(x, y))
            self.update()
        elif event == cv2.EVENT_RBUTTONUP:
            self._push()
            self.neg.append(self._img_xy(x, y))
            self.update()

    def on_key(self, key: int) -> str | None:
        """``"save"``, ``"cancel"`` or None."""
        if key in (13, 10):
            return "save" if self.prompt is not None else None
        if key == 27:
            return "cancel"
        if key in (ord("u"), 8, 127) and self._history:
            self.points, self.neg, self.box = self._history.pop()
            self.update()
        elif key == ord("r"):
            self._push()
            self.points, self.neg, self.box = [], [], None
            self.update()
        return None

    def _push(self):
        self._history.append((list(self.points), list(self.neg), self.box))

    def update(self) -> None:
        p = self.prompt
        if p is None:
            self.mask = None
            return
        t = time.perf_counter()
        self.mask = self.session.select(p, refine=False).alpha > 127
        self.last_ms = (time.perf_counter() - t) * 1000

    def render(self) -> np.ndarray:
        img = self.session.bgr.copy()
        if self.mask is not None:
            tint = img.copy()
            tint[self.mask] = (0.5 * tint[self.mask] + (0, 127, 0)).astype(np.uint8)
            tint[~self.mask] = (0.45 * tint[~self.mask]).astype(np.uint8)
            img = tint
        if self.scale != 1.0:
            img = cv2.resize(img, None, fx=self.scale, fy=self.scale, interpolation=cv2.INTER_AREA)
        s = self.scale
        for x, y in self.points:
            cv2.circle(img, (int(x * s), int(y * s)), 6, (0, 255, 0), -1)
        for x, y in self.neg:
            cv2.circle(img, (int(x * s), int(y * s)), 6, (0, 0, 255), -1)
        if self.box is not None:
            x1, y1, x2, y2 = (int(v * s) for v in self.box)
            cv2.rectangle(img, (x1, y1), (x2, y2), (255, 200, 0), 2)
        if self.mask is not None:
            cv2.putText(img, f"{self.last_ms:.0f} ms", (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
        return img


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def pick(session, *, max_size: tuple[int, int] = (1280, 800)) -> Prompt:
    """Open the picker on ``session``'s image; return the prompt saved with Enter."""
    if not has_display():
        raise OutputError("--pick needs a display (no DISPLAY or WAYLAND_DISPLAY): "
                          "give the subject with --point X,Y or --box X1,Y1,X2,Y2 instead")
    h, w = session.bgr.shape[:2]
    scale = min(1.0, max_size[0] / w, max_size[1] / h)
    state = PickState(session, scale)
    try:
        cv2.namedWindow(WINDOW, cv2.WINDOW_AUTOSIZE)
        cv2.setMouseCallback(WINDOW, state.on_mouse)
    except cv2.error as e:
        raise OutputError(f"--pick cannot open a window ({str(e).strip().splitlines()[-1][:100]}): "
                          f"use --point X,Y or --box X1,Y1,X2,Y2 instead") from None
    try:
        while True:
            cv2.imshow(WINDOW, state.render())
            key = cv2.waitKey(30) & 0xFF
            if key == 255:
                if cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) < 1:
                    raise VcamError("picker closed without saving: press Enter to save the selection")
                continue
            what = state.on_key(key)
            if what == "save":
                return state.prompt
            if what == "cancel":
                raise VcamError("picking cancelled (Esc): nothing written")
    finally:
        cv2.destroyAllWindows()
