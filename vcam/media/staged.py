"""Outputs that appear whole or not at all: write under a hidden temporary name beside the final
one, and rename into place at the end. Until :meth:`Staged.commit`, an error, Ctrl-C or SIGTERM
leaves nothing but the temporary, which :meth:`Staged.discard` removes."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import OutputError


class Staged:
    """``final``: the file or folder the user named; write to :attr:`tmp` instead."""

    def __init__(self, final: Path, *, folder: bool = False):
        self.final, self.folder = final, folder
        tag = f".vcam-partial-{os.getpid()}"
        # A file keeps its extension last: the muxer picks the container format from it.
        self.tmp = final.with_name(f".{final.name}{tag}" if folder else f".{final.stem}{tag}{final.suffix}")
        if folder:
            try:
                self.tmp.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise OutputError(f"cannot write into {final.parent}: {e.strerror}; choose another folder") from None

    def commit(self) -> None:
        """Move what was written into place (a folder's files join any already there)."""
        try:
            if not self.folder:
                if self.tmp.exists():
                    os.replace(self.tmp, self.final)
            elif not self.final.exists():
                os.rename(self.tmp, self.final)
            else:
                for f in sorted(self.tmp.iterdir()):
                    os.replace(f, self.final / f.name)
                self.tmp.rmdir()
        except OSError as e:
            raise OutputError(f"cannot move the result into {self.final}: {e.strerror}") from None

    def discard(self) -> None:
        if self.tmp.is_dir():
            shutil.rmtree(self.tmp, ignore_errors=True)
        elif self.tmp.exists():
            self.tmp.unlink()
