"""Shared fixtures: seeded generators."""

import numpy as np
import pytest


@pytest.fixture
def rng():
    """A fixed-seed generator: every test's randomness is reproducible."""
    return np.random.default_rng(20261122)
