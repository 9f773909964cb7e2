"""oncodyn: simulate and learn the dynamics of cancer cells and tumours.

Families: :mod:`oncodyn.chemotaxis` (Keller--Segel solvers), with the shared core in
:mod:`oncodyn.core`, run directories in :mod:`oncodyn.io`, figures in :mod:`oncodyn.viz`
and registered, reproducible experiments in :mod:`oncodyn.experiments`.
"""

__version__ = "0.1.0"
