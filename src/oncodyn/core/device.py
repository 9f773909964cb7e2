"""Device selection (``--device auto|cpu|cuda``)."""

from __future__ import annotations

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str = "auto") -> str:
    """Return ``"cuda"`` or ``"cpu"``; ``auto`` picks CUDA when torch sees one.

    Raises:
        ValueError: unknown name, or ``cuda`` requested on a machine without CUDA.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    import torch

    has_cuda = torch.cuda.is_available()
    if device == "auto":
        return "cuda" if has_cuda else "cpu"
    if device == "cuda" and not has_cuda:
        raise ValueError("device 'cuda' requested but torch.cuda.is_available() is False; use --device cpu or auto")
    return device
