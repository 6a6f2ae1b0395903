"""``vcam remove``: images, folders and globs (rembg's CLI, done the vcam way)."""
from __future__ import annotations

from ..config import Config
from ..offline.batch import remove_cli
from .app import stop_cleanly_on_sigterm


def main(cfg: Config, a) -> int:
    stop_cleanly_on_sigterm()
    if a.ray:
        from ..offline.cluster import remove_ray_cli  # Ray is imported only here

        return remove_ray_cli(cfg, a)
    return remove_cli(cfg, a)
