"""Reading saved arrays and tensors without running code from the file.

Every checkpoint, weights and results file that oncodyn reads goes through these loaders:
``.npz``/``.npy`` files are read with ``numpy.load(allow_pickle=False)`` and PyTorch files
with ``torch.load(weights_only=True)``, so a file holds data only (arrays, tensors, and plain
dicts, lists, strings and numbers) and a planted pickle is refused instead of executed. A
file that cannot be read this way -- damaged, foreign, or written by an older unsafe format --
raises :class:`UnreadableFileError` naming the file and the reason.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np


class UnreadableFileError(ValueError):
    """A file that is damaged, foreign, or would need code to load; the message names the file.

    Attributes:
        reason: why, in one line (the message without the file's name).
        holds_code: the file holds pickled objects (rather than being merely damaged or foreign).
    """

    def __init__(self, message: str, reason: str = "", holds_code: bool = False):
        super().__init__(message)
        self.reason, self.holds_code = reason or message, holds_code


def load_npz(path: str | Path, what: str = "array file") -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` (or the one of an ``.npy``) file, read without pickle.

    Args:
        path: the file.
        what: what the file is, for the error message (e.g. ``"run checkpoint"``).

    Returns:
        ``{name: array}`` (an ``.npy`` file gives ``{"arr_0": array}``).

    Raises:
        FileNotFoundError: no such file.
        UnreadableFileError: anything else that stops the read (pickled objects included).
    """
    try:
        with open(path, "rb") as f:
            z = np.load(f, allow_pickle=False)
            if isinstance(z, np.ndarray):
                return {"arr_0": z}
            with z:
                return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure means the file is not a plain array file
        pickled = "pickle" in str(e)
        reason = ("it holds pickled Python objects" if pickled
                  else f"{type(e).__name__}: {' '.join(str(e).split())}")
        raise UnreadableFileError(f"{what} {path} cannot be read safely: {reason}", reason, pickled) from None


def load_torch(path: str | Path, what: str = "weights file") -> Any:
    """The content of a ``torch.save`` file, read with ``weights_only=True`` onto the CPU.

    Args:
        path: the file.
        what: what the file is, for the error message (e.g. ``"PCD checkpoint"``).

    Raises:
        FileNotFoundError: no such file.
        UnreadableFileError: anything else that stops the read (objects other than tensors and
            plain containers, e.g. a planted pickle, included).
    """
    import torch

    if not Path(path).exists():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # foreign pickles
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure means the file is not a plain weights file
        reason = _reason(e)
        raise UnreadableFileError(f"{what} {path} cannot be read safely: {reason}", reason,
                                  reason.startswith("it holds more than")) from None


def _reason(e: Exception) -> str:
    """One line on why ``torch.load`` refused a file (the unpickler's verdict, without its advice)."""
    text = str(e)
    if "WeightsUnpickler error:" in text:
        detail = " ".join(text.split("WeightsUnpickler error:", 1)[1].strip().split("\n\n")[0].split())
        detail = detail.split(" was not an allowed global")[0].split(". Please")[0]
        return f"it holds more than tensors and plain data ({detail})"
    return f"{type(e).__name__}: {' '.join(text.split())}"
