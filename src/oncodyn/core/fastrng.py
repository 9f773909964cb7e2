"""A counter-free, checkpointable random generator for compiled kernels (xoshiro256**).

Compiled Monte Carlo kernels draw hundreds of millions of numbers; numba's built-in generator
keeps its state inside the process, so a run could neither be checkpointed and resumed
bit-identically nor split into reproducible per-thread streams. Here the state is a plain
``uint64`` array ``[n_streams, 4]`` owned by the caller: it is saved with the checkpoint, and
stream ``k`` belongs to thread ``k``. The generator is xoshiro256** (Blackman & Vigna 2018),
seeded from :class:`numpy.random.SeedSequence` so streams are independent.
"""

from __future__ import annotations

import numba
import numpy as np

_U53 = 1.0 / 9007199254740992.0  # 2^-53


_ROW = 16  # words per stream: 128 bytes, so threads never share a cache line


def new_state(seed: int, n_streams: int = 1) -> np.ndarray:
    """Generator state ``[n_streams, 16]`` uint64 for ``seed`` (streams are independent).

    Words 0–3 of each row are the xoshiro state; the rest is padding that keeps every stream on
    its own cache lines (threads writing neighbouring streams would otherwise slow each other).
    """
    ss = np.random.SeedSequence(int(seed))
    st = np.zeros((n_streams, _ROW), np.uint64)
    st[:, :4] = np.stack([c.generate_state(4, np.uint64) for c in ss.spawn(n_streams)])
    st[np.all(st[:, :4] == 0, axis=1), 0] = 1  # the all-zero state is forbidden
    return st


@numba.njit(inline="always")
def _rotl(x, k):
    return (x << np.uint64(k)) | (x >> np.uint64(64 - k))


@numba.njit(inline="always")
def next_u64(s, k):
    """Next 64-bit word of stream ``k`` of state ``s`` (updated in place)."""
    s0, s1, s2, s3 = s[k, 0], s[k, 1], s[k, 2], s[k, 3]
    result = _rotl(s1 * np.uint64(5), 7) * np.uint64(9)
    t = s1 << np.uint64(17)
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = _rotl(s3, 45)
    s[k, 0], s[k, 1], s[k, 2], s[k, 3] = s0, s1, s2, s3
    return result


@numba.njit(inline="always")
def uniform(s, k):
    """A float64 uniform on [0, 1) with 53 random bits."""
    return np.float64(next_u64(s, k) >> np.uint64(11)) * _U53


@numba.njit(inline="always")
def two_ints(s, k, n1, n2):
    """Two independent integers uniform on ``[0, n1)`` and ``[0, n2)`` from one 64-bit word.

    Lemire's multiply-shift on each 32-bit half; the bias is below ``n / 2^32`` (< 1e-3 for a
    million-site lattice, < 1e-8 for the neighbour draw and the small lattices of exactness tests).
    """
    r = next_u64(s, k)
    hi = r >> np.uint64(32)
    lo = r & np.uint64(0xFFFFFFFF)
    return np.int64((hi * np.uint64(n1)) >> np.uint64(32)), np.int64((lo * np.uint64(n2)) >> np.uint64(32))


@numba.njit(inline="always")
def below(s, k, n):
    """An integer uniform on ``[0, n)`` (n < 2^53), by scaling a 53-bit uniform."""
    return np.int64(uniform(s, k) * n)


@numba.njit(cache=True)
def uniform_array(s, k, n):
    """``n`` uniforms on [0, 1) from stream ``k``, shape ``[n]``."""
    out = np.empty(n)
    for i in range(n):
        out[i] = uniform(s, k)
    return out
