"""vcam: a virtual camera that replaces or blurs the background behind a person.

The live pipeline is capture → matting → temporal smoothing → refinement and
compositing → output, each stage in its own thread (see ``docs/architecture.md``).
"""
from __future__ import annotations

__version__ = "0.1.0"

from .errors import VcamError  # noqa: E402

__all__ = ["VcamError", "__version__"]
