"""Shared numerical core: grids, spectral tools, particles, random numbers, run loop."""
