"""Keller--Segel chemotaxis: models, SIPF particle--field solvers, radial FD reference, blow-up."""
