"""vcam: a virtual camera that replaces or blurs the background behind a person.

The live pipeline is capture → matting → temporal smoothing → refinement and
compositing → output, each stage in its own thread (see ``docs/architecture.md``).

Python API for stills (see :mod:`vcam.offline.still` for the accepted and returned types)::

    import vcam
    cutout = vcam.remove(pil_image)                      # RGBA PIL image
    session = vcam.new_session("modnet")                 # reuse the model for a batch
    mask = vcam.remove(numpy_rgb, only_mask=True, session=session)
    one = vcam.remove(pil_image, prompt=vcam.Prompt(points=[(320, 200)]))  # MobileSAM picks the subject
"""
from __future__ import annotations

__version__ = "0.1.0"

from .errors import VcamError  # noqa: E402

__all__ = ["AlphaMatting", "Prompt", "Session", "VcamError", "__version__", "new_session", "remove"]


def __getattr__(name):
    # The API pulls in OpenCV, onnxruntime and numba: import it on first use only.
    if name in ("remove", "new_session", "Session", "AlphaMatting"):
        from .offline import still

        return getattr(still, name)
    if name == "Prompt":
        from .subject.prompt import Prompt

        return Prompt
    raise AttributeError(f"module 'vcam' has no attribute {name!r}")
