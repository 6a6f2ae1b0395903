"""Process-wide memory behaviour that the heavy stages depend on."""
from __future__ import annotations

import os


def avoid_hugepage_stalls() -> None:
    """Stop numpy asking the kernel for transparent huge pages on each large array.

    numpy madvises every allocation of 4 MB or more for huge pages. After a large model's inference
    has fragmented memory, the kernel then zeroes and compacts pages on each such allocation: on an
    AMD EPYC VM (kernel 6.18, THP ``madvise``) the object path's edge matting, 0.3-0.5 s of work on a
    1 MP picture, took 0.5-3.7 s right after IS-Net, up to 2.2 s of it in the kernel; without the
    madvise, 0.4-0.55 s every time. Called by every ``vcam`` command and by the stills sessions; a
    ``NUMPY_MADVISE_HUGEPAGE`` set in the environment is the user's choice and is kept."""
    if "NUMPY_MADVISE_HUGEPAGE" in os.environ:
        return
    try:
        from numpy._core.multiarray import _set_madvise_hugepage
    except ImportError:  # numpy 1.x
        try:
            from numpy.core.multiarray import _set_madvise_hugepage
        except ImportError:
            return
    _set_madvise_hugepage(False)
