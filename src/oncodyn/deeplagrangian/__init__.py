"""DeepLagrangian: a flow-based Lagrangian solver of whole-space parabolic--elliptic Keller--Segel.

The probability density p = rho / M is pushed forward by a time-dependent KRnet
x = T(z, t) trained segment by segment on the velocity-matching loss; the result is a
:class:`FlowSolution` with exact ``density(x, t)`` and ``sample(n, t)``. See the spec
``deeplagrangian.md`` and the README's DeepLagrangian section.

Example::

    import math
    from oncodyn.deeplagrangian import (GaussianP0, KRnetSpec, KSWholeSpace, MarchOptions,
                                        NoAdvection, march)
    res = march(KSWholeSpace(mu=1.0, chi=4 * math.pi, mass=1.0, dim=2), GaussianP0((0.0, 0.0), 1.0),
                NoAdvection(), KRnetSpec(dim=2), MarchOptions(t_end=0.5))
    res.solution.density([[0.0, 0.0]], 0.5), res.solution.sample(1000, 0.5)
"""

from oncodyn.deeplagrangian.flow import FlowChain, FlowSolution
from oncodyn.deeplagrangian.initial import GaussianMixtureP0, GaussianP0, UniformBallP0
from oncodyn.deeplagrangian.krnet import KRnetMap, KRnetSpec
from oncodyn.deeplagrangian.marching import (
           MarchOptions,
           MarchResult,
           blowup_time_bound,
           march,
)
from oncodyn.deeplagrangian.model import KSWholeSpace
from oncodyn.deeplagrangian.velocity import (
           CellularFlow,
           ConstantAdvection,
           NoAdvection,
           make_advection,
)

__all__ = ["CellularFlow", "ConstantAdvection", "FlowChain", "FlowSolution", "GaussianMixtureP0", "GaussianP0",
           "KRnetMap", "KRnetSpec", "KSWholeSpace", "MarchOptions", "MarchResult", "NoAdvection", "UniformBallP0",
           "blowup_time_bound", "make_advection", "march"]
