"""Glioblastoma growth on brain anatomy: Fisher--Kolmogorov on a diffuse domain, forward and inverse.

Modules: ``model`` (parameters, initial condition), ``domain`` (tissue maps on a voxel grid),
``anatomy`` (MNI152 templates, user NIfTI maps, resampling, slices), ``phasefield``
(Cahn--Hilliard smoothing of the brain mask), ``fk`` (finite-difference solvers), ``radial``
(1D radial reference), ``inverse`` (differentiable FD inverse with uncertainty), ``pinn``
(the physics-informed network baseline), ``clinical`` (visible tumour, radiotherapy targets).
"""
