"""DeepLagrangian experiments D1-D7; importing this package registers them."""

from oncodyn.experiments.deeplagrangian import gaussian, moments  # noqa: F401
