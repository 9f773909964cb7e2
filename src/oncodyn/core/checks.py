"""Validation of parameter objects: one message shape, ``field: must be <allowed>, got <value>``."""

from __future__ import annotations


def require(cond: bool, field: str, allowed: str, value) -> None:
    """Raise ``ValueError("<field>: must be <allowed>, got <value!r>")`` unless ``cond``."""
    if not cond:
        raise ValueError(f"{field}: must be {allowed}, got {value!r}")
