"""Matting models behind one interface (see :mod:`vcam.matting.base`)."""
from .base import MATTERS, Matter, create, register  # noqa: F401
from . import modnet, rvm, u2netp  # noqa: F401,E402  (register the models)
