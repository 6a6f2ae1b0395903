"""``vcam remove``: images, folders and globs (rembg's CLI, done the vcam way)."""
from __future__ import annotations

from ..config import Config
from ..offline.batch import remove_cli


def main(cfg: Config, a) -> int:
    return remove_cli(cfg, a)
