"""Atomic file output: every file oncodyn writes appears complete, or not at all.

Each writer here writes to a temporary name in the destination's folder, flushes it to disk
(``fsync``), then renames it onto the final name with ``os.replace`` (and syncs the folder), so
a crash, a full disk or an interrupt mid-write leaves either no file or the previous complete
one, never a partial file. A directory output (a Zarr store) is written to a temporary folder and
renamed into place; an old one is moved aside first and deleted afterwards.

The temporary name is ``.tmp-<random>-<final name>``: hidden, unique per write (concurrent worker
processes never collide), and ending in the final name, so a library that picks the format from
the extension (matplotlib, nibabel, xarray) writes the same format it would write to the final
name. On failure the temporary is removed; only a killed process can leave one behind, and
:func:`remove_stale` clears those.

Every output of the package is written through this module; a test scans ``src/oncodyn`` for
direct writes (its one listed exception: the DeepLagrangian ``FlowSolution.save``, which renames a
temporary itself). It lives in ``core`` beside :mod:`oncodyn.core.safeload`, its reading counterpart,
because the run loop's checkpoints (``core``) write through it and imports only go down.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

TMP_PREFIX = ".tmp-"


def temp_name(path: str | Path) -> Path:
    """A fresh temporary path beside ``path`` whose name ends in ``path``'s name."""
    path = Path(path)
    return path.with_name(f"{TMP_PREFIX}{secrets.token_hex(4)}-{path.name}")


def _fsync(path: Path) -> None:
    """``fsync`` a file or folder by name (best effort: some platforms cannot sync a folder).

    On a folder this makes a rename inside it durable."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    """Flush a file written by a library, or every file and folder of a written tree, to disk."""
    if not path.is_dir():
        _fsync(path)
        return
    for root, _, files in os.walk(path):
        for f in files:
            _fsync(Path(root) / f)
        _fsync(Path(root))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write ``path`` through (for libraries that need a file name).

    The body writes the temporary file; on normal exit it is synced and renamed onto ``path``,
    on an exception it is removed and ``path`` is left as it was.

    Example:
        ``with atomic_path(out / "fig.png") as tmp: fig.savefig(tmp)``
    """
    path = Path(path)
    tmp = temp_name(path)
    try:
        yield tmp
        _fsync_tree(tmp)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    _fsync(path.parent)


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """A file object that becomes ``path`` only when the ``with`` block finishes without error.

    Args:
        path: the final file.
        mode: ``"w"`` (text) or ``"wb"`` (binary).
        encoding: text encoding (ignored in binary mode).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, "xb" if mode == "wb" else "x", encoding=None if mode == "wb" else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """A temporary folder that replaces the folder ``path`` when the ``with`` block succeeds.

    An existing ``path`` is renamed aside, the new folder renamed into place, then the old one
    deleted: at any moment ``path`` is the old complete folder, the new complete folder, or (for
    the instant between the two renames) absent with the old one kept under a hidden name.
    """
    path = Path(path)
    tmp = temp_name(path)
    try:
        yield tmp
        _fsync_tree(tmp)
        old = None
        if path.exists() or path.is_symlink():
            old = temp_name(path)
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    _fsync(path.parent)
    if old is not None:
        _remove(old)


# ----------------------------------------------------------------------------- helpers by kind


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w") as f:
        f.write(text)
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_json(path: str | Path, data: Any, indent: int | None = 2, **kw) -> Path:
    """``json.dumps(data)`` written to ``path`` atomically (``kw`` passed to :func:`json.dumps`)."""
    return write_text(path, json.dumps(data, indent=indent, **kw))


def save_npz(path: str | Path, arrays: dict[str, Any], compressed: bool = True) -> Path:
    """Named arrays as one ``.npz`` at exactly ``path`` (no suffix is appended), atomically."""
    import numpy as np

    with atomic_open(path, "wb") as f:
        (np.savez_compressed if compressed else np.savez)(f, **arrays)
    return Path(path)


def save_npy(path: str | Path, array: Any) -> Path:
    """One array as ``.npy`` at exactly ``path``, atomically (never pickled)."""
    import numpy as np

    with atomic_open(path, "wb") as f:
        np.save(f, array, allow_pickle=False)
    return Path(path)


def save_torch(path: str | Path, obj: Any) -> Path:
    """``torch.save(obj)`` to ``path`` atomically."""
    import torch

    with atomic_open(path, "wb") as f:
        torch.save(obj, f)
    return Path(path)


def save_figure(fig, path: str | Path, **savefig_kw) -> Path:
    """``fig.savefig`` to ``path`` atomically; the format is the extension's (PNG if there is none)."""
    path = Path(path)
    savefig_kw.setdefault("format", path.suffix[1:] or "png")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, **savefig_kw)
    return path


def copy_file(src: str | Path, dest: str | Path) -> Path:
    """Copy the bytes of ``src`` to ``dest`` atomically."""
    with atomic_open(dest, "wb") as f, open(src, "rb") as s:
        shutil.copyfileobj(s, f)
    return Path(dest)


def remove_stale(folder: str | Path) -> list[Path]:
    """Delete temporaries that a killed writer left under ``folder`` (recursively); returns them.

    Call it only where no other process is writing into ``folder``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = sorted(folder.rglob(f"{TMP_PREFIX}*"), key=lambda p: len(p.parts))
    gone = []
    for p in stale:
        if any(q in p.parents for q in gone):
            continue
        _remove(p)
        gone.append(p)
    return gone
