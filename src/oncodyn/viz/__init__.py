"""Figures (matplotlib, imported lazily, Agg backend)."""
