"""The matter interface, the registry the model classes join, and the ONNX plumbing they share.

A matter turns a full-resolution BGR frame into a model-resolution matte:
``infer(bgr) -> [h, w] float32 in [0, 1]``. ``reset()`` clears any recurrent state
(RVM) and is called on a resize or a source change. Models register by name with
:func:`register`; the name is also their row in the model table
(:data:`vcam.models.store.MODELS`), which says where the file comes from.
"""
from __future__ import annotations

import abc

import cv2
import numpy as np

from ...core.registry import Registry
from .. import store
from ..runtime import make_session

MATTERS = Registry("name")  # matting.model → Matter class
register = MATTERS.register


class Matter(abc.ABC):
    name: str = "?"
    stateless: bool = True  # infer() may run on several threads at once (False: recurrent)
    default_max_hz: float = 0.0  # the model's own rate cap where matting.max_hz is 0 (0: none)
    hard_edges: bool = False  # a segmentation model: stills refine its boundary band (imaging.alpha.refine_band)
    stills_only: bool = False  # seconds a matte on a CPU: refused live there (check_live)
    flip_auto: bool = False  # matting.flip 'auto' mirrors live frames too (a cheap model: engine.units.MattingUnit)
    outputs: int = 0  # how many of the graph's outputs infer() reads, first ones first (0: all)
    # OpenVINO: all the callers' threads in one stream, which they take turns on, rather than a stream
    # each (a large input parallelises within one picture as well as across pictures; see IsnetMatter)
    one_stream: bool = False

    def __init__(self, cfg):
        self.cfg = cfg  # a vcam.config.MattingConfig

    @property
    def licence(self) -> str:
        return store.spec(self.name).licence

    @abc.abstractmethod
    def infer(self, bgr: np.ndarray) -> np.ndarray:
        """``bgr``: ``[H, W, 3] uint8``. Returns a fresh ``[h, w] float32`` matte in [0, 1]."""

    def infer_mirrored(self, bgr: np.ndarray) -> np.ndarray:
        """Test-time flip (``matting.flip``): the mean of the matte of ``bgr`` and, mirrored back, of
        its mirror image; a fresh ``[h, w] float32``. A model that shrinks the frame itself may
        override this to shrink it once and mirror the small picture."""
        a = self.infer(bgr)
        # cv2.flip, not a copy of bgr[:, ::-1]: numpy's reversed-stride copy of a 720p frame takes
        # 6.4 ms here, cv2's 0.3 ms.
        return mirror_mean(a, self.infer(cv2.flip(bgr, 1)))

    def reset(self) -> None:
        """Forget recurrent state. Stateless models have nothing to forget."""

    def resize(self, input_size: int) -> bool:
        """Take another input size without reloading (the CPU budget's ladder); False where the
        model cannot, and must be reloaded instead."""
        return False

    def close(self) -> None:
        """Release the session."""


def mirror_mean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a`` (a matte) averaged in place with ``b`` (the matte of the mirror image), mirrored back."""
    a += b[:, ::-1]
    a *= np.float32(0.5)
    return a


class OnnxMatter(Matter):
    """A matter on an onnxruntime session, loaded from the store (or ``matting.model_path``).
    ``streams``: how many threads will call :meth:`infer` at once (OpenVINO needs to know)."""

    def __init__(self, cfg, *, streams: int = 1):
        super().__init__(cfg)
        path = store.resolve(self.name, cfg.model_path)
        self.path = path
        threads, streams = cfg.threads, (streams if self.stateless else 1)
        if self.one_stream and cfg.runtime == "openvino" and threads:
            threads, streams = threads * streams, 1
        self.session = make_session(path, providers=cfg.providers, threads=threads, spin=cfg.spin, name=self.name,
                                    runtime=cfg.runtime, precision=cfg.precision, streams=streams, outputs=self.outputs)
        self.input_name = self.session.get_inputs()[0].name

    def close(self) -> None:
        self.session = None


def model_input_shape(width: int, height: int, short_side: int, multiple: int = 32) -> tuple[int, int]:
    """``(h, w)`` with the short side near ``short_side``, the aspect kept, both multiples of ``multiple``."""
    scale = short_side / min(width, height)
    h = max(multiple, int(round(height * scale / multiple)) * multiple)
    w = max(multiple, int(round(width * scale / multiple)) * multiple)
    return h, w
