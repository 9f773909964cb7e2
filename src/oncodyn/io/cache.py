"""A small on-disk cache of derived arrays (phase fields of an anatomy), keyed by content.

Derived data only: nothing is ever downloaded. The folder is ``$ONCODYN_CACHE`` or
``~/.cache/oncodyn``; ``ONCODYN_CACHE=off`` disables caching. Writes are atomic.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from oncodyn.core.atomic import save_npy
from oncodyn.core.safeload import load_npz


def cache_dir() -> Path | None:
    """The cache folder, or ``None`` when caching is off."""
    v = os.environ.get("ONCODYN_CACHE", "")
    if v.lower() == "off":
        return None
    return Path(v) if v else Path.home() / ".cache" / "oncodyn"


def key_of(*parts) -> str:
    """A hex digest of arrays (by bytes, shape, dtype) and plain values (by repr)."""
    h = hashlib.sha1()
    for p in parts:
        if isinstance(p, np.ndarray):
            a = np.ascontiguousarray(p)
            h.update(repr((a.shape, a.dtype.str)).encode())
            h.update(a.tobytes())
        else:
            h.update(repr(p).encode())
    return h.hexdigest()[:20]


def cached_array(kind: str, key: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """``compute()``, or its cached result for ``(kind, key)``."""
    d = cache_dir()
    if d is None:
        return compute()
    path = d / kind / f"{key}.npy"
    if path.exists():
        try:
            return load_npz(path, "cache entry")["arr_0"]
        except (OSError, ValueError):
            pass  # a damaged entry is recomputed
    out = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_npy(path, out)
    except OSError:
        pass  # a read-only home still runs, uncached
    return out
