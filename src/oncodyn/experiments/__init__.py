"""Registered experiments; importing this package registers them all."""

from oncodyn.experiments import sipf_focusing  # noqa: F401
