"""DeepLagrangian experiments D1-D7; importing this package registers them."""

from oncodyn.experiments.deeplagrangian import gaussian, merging, mollifier, moments, radial, walltime  # noqa: F401
