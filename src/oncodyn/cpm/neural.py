r"""Neural Hamiltonians for the cellular Potts model (NeuralCPM), their baselines and an analytic twin.

A CPM state is an id lattice ``sigma [H, W]`` (0 = medium, ``c`` = cell ``c``) with a type per id
``cell_type [n_cells + 1]`` (``cell_type[0] = 0``, cell types ``1..n_types``). Every model here maps
a state to a scalar energy :math:`H(\sigma)`, differentiable in the model's parameters, so that
:math:`p(\sigma) \propto e^{-H(\sigma)/T}` can be fitted to snapshots (see :mod:`oncodyn.cpm.ebm`).

Neural Hamiltonian (:class:`NeuralHamiltonian`, spec part 2)
-------------------------------------------------------------
1. **Encoding** (:func:`encode_cells`): cell ``c`` becomes a one-hot tensor ``x_c [1 + n_types, H, W]``
   holding its own mask in channel ``τ(c)`` and the medium mask in channel 0 (the medium is a
   channel shared by every cell's tensor). All cells: ``[n_cells, 1 + n_types, H, W]``.
2. **Embedding**: a linear, bias-free convolution with kernel = stride = ``embed`` applied to each
   cell, ``[n_cells, C_0, H / e, W / e]``. The blocks do not overlap, so one lattice site feeds
   exactly one embedded pixel.
3. **NH layers** (:class:`NHLayer`): per cell a CNN φ (2 × [3×3 conv, SiLU]); the global context
   :math:`A = \sum_c φ(h_c)`; per cell a CNN ψ (2 × [3×3 conv, SiLU]) on ``concat[h_c, A]``; a
   residual connection (1×1 projection when the width changes); max-pooling by the layer's rate.
   Every 3×3 convolution is periodic (circular padding): the lattice is a torus.
4. **Read-out**: a 1×1 convolution to 32 channels, summed over cells and pixels to a vector
   ``[32]``, then an MLP (two hidden layers of 32, SiLU, a residual connection) to a scalar.

Invariances. *Permutations of cells*: cells enter only through the sum in ``A`` and the final sum,
so relabelling the cells (each keeping its type) leaves H unchanged (up to the round-off of
summing in another order). *Translations*: the convolutions are periodic and the pooling windows
tile the lattice, so a periodic shift by a multiple of the total stride ``embed · Π pools`` leaves
H unchanged. Other shifts move sites across the blocks of the strided embedding and pooling, so
H is only approximately invariant to them (the network can learn to be nearly invariant).

Lattice size: every side must be a multiple of the total stride (``embed · Π pools``); a clear
``ValueError`` says so otherwise. Presets (:data:`PRESETS`): ``digits`` (widths 8, 16, 32, 32;
pools 3, 2, 1, 1; embed 3; stride 18) and ``bipolar`` (widths 16, 32, 32, 64, 64, 64; pools
2, 1, 2, 1, 2, 1; embed 5 — as in the authors' bipolar configuration; stride 40).

Baselines: :class:`CNNHamiltonian` (a plain CNN on the type map, no permutation symmetry) and
:class:`NHCNNHamiltonian` (one NH layer, the sum over cells, then a CNN on the summed map).
Analytic: :class:`AnalyticTorch`, the cell-sorting Hamiltonian (contact + volume) with trainable
positive J and λ, convertible to the compiled :class:`~oncodyn.cpm.hamiltonians.Hamiltonian`;
:class:`Closure` = ``w1 · H_analytic + w2 · H_NN``.

ΔH of copy proposals (a copy writes the id of flat site ``sources[i]`` into flat site
``targets[i]``; all proposals are evaluated against the same current state):
:func:`delta_full` recomputes the energy of every modified copy (the reference);
:func:`delta_local` exploits locality (exact, see its docstring); :func:`delta_grad` prices all
proposals of a state to first order from one forward and one backward pass (approximate, the
fast CPU path); :func:`make_delta_fn` wraps any of them for
:class:`~oncodyn.cpm.samplers.ApproxParallelSampler`. A :class:`Closure` can instead be sampled
by :class:`~oncodyn.cpm.block_sampler.BlockSampler` (its network evaluated once per block).

Precision and devices: models are float32 by default and run in float64 after ``.double()``;
they run on whatever device their parameters are on (``model.to(device)``); inputs (NumPy or
torch) are moved there.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from oncodyn.cpm.hamiltonians import Contact, ExternalPotential, Hamiltonian, Volume
from oncodyn.cpm.lattice import neighbour_offsets

#: sites (at a layer's own resolution) by which one NH layer spreads a change before pooling:
#: φ (two 3×3 convolutions) then ψ (two more) — 2 + 2.
HALO = 4

#: the spec's architectures (keyword arguments of :class:`NeuralHamiltonian`).
PRESETS = {
    "digits": {"widths": (8, 16, 32, 32), "pools": (3, 2, 1, 1), "embed": 3},
    "bipolar": {"widths": (16, 32, 32, 64, 64, 64), "pools": (2, 1, 2, 1, 2, 1), "embed": 5},
}


# ----------------------------------------------------------------------------- encoding


def _to_long(x, device) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=torch.long)
    return torch.as_tensor(np.asarray(x), dtype=torch.long, device=device)


def _encode_batch(sig: torch.Tensor, ct: torch.Tensor, n_types: int, dtype: torch.dtype) -> torch.Tensor:
    """One-hot cell tensors of a batch: ``sig [B, H, W]``, ``ct [B, N + 1]`` -> ``[B, N, 1 + n_types, H, W]``."""
    n = ct.shape[1] - 1
    ids = torch.arange(1, n + 1, device=sig.device)
    mask = (sig[:, None] == ids[None, :, None, None]).to(dtype)  # [B, N, H, W]
    onehot = F.one_hot(ct[:, 1:], 1 + n_types).to(dtype)  # [B, N, 1 + T]
    x = onehot[..., None, None] * mask[:, :, None]
    x[:, :, 0] = (sig == 0).to(dtype)[:, None]
    return x


def encode_cells(sigma, cell_type, n_types: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One-hot encode every cell of a state (step 1 of the Neural Hamiltonian).

    Cell ``c`` (ids ``1..n_cells``, row ``c - 1`` of the output) gets a tensor with its own mask
    ``[sigma == c]`` in channel ``τ(c) = cell_type[c]`` and the medium mask ``[sigma == 0]`` in
    channel 0; its other type channels are zero. The medium is thus a channel shared by every
    cell's tensor, not a cell of its own.

    Args:
        sigma: ids ``[H, W]`` (NumPy or torch; 0 = medium).
        cell_type: types ``[n_cells + 1]`` with ``cell_type[0] = 0`` and cell types in ``1..n_types``.
        n_types: number of cell types (the output has ``1 + n_types`` channels).
        dtype: floating dtype of the output.

    Returns:
        ``[n_cells, 1 + n_types, H, W]`` on the device of ``sigma`` (CPU for NumPy input).
    """
    device = sigma.device if isinstance(sigma, torch.Tensor) else torch.device("cpu")
    sig, ct = _to_long(sigma, device), _to_long(cell_type, device)
    _check_state(sig, ct, n_types)
    return _encode_batch(sig[None], ct[None], n_types, dtype)[0]


def _check_state(sig: torch.Tensor, ct: torch.Tensor, n_types: int) -> None:
    if sig.ndim != 2:
        raise ValueError(f"sigma must be a 2-D id lattice [H, W], got shape {tuple(sig.shape)}")
    if ct.ndim != 1 or len(ct) < 2 or int(ct[0]) != 0:
        raise ValueError("cell_type must be 1-D [n_cells + 1] with cell_type[0] = 0 and at least one cell")
    if int(sig.min()) < 0 or int(sig.max()) >= len(ct):
        raise ValueError(f"sigma holds ids outside 0..{len(ct) - 1} (cell_type has {len(ct)} entries)")
    if int(ct[1:].min()) < 1 or int(ct.max()) > n_types:
        raise ValueError(f"cell types must lie in 1..{n_types} (the model's n_types), got "
                         f"{int(ct[1:].min())}..{int(ct.max())}")


def _circ_pad(h: torch.Tensor, r: int) -> torch.Tensor:
    """Periodic padding of the last two axes by ``r`` (any size, also ``r`` > side), by index gathering."""
    H, W = h.shape[-2:]
    iy = torch.arange(-r, H + r, device=h.device) % H
    ix = torch.arange(-r, W + r, device=h.device) % W
    return h.index_select(-2, iy).index_select(-1, ix)


def _pool(h: torch.Tensor, p: int) -> torch.Tensor:
    """Max-pool the last two axes of ``[..., C, H, W]`` by ``p`` (``p = 1``: unchanged)."""
    if p == 1:
        return h
    lead = h.shape[:-3]
    y = F.max_pool2d(h.reshape(-1, *h.shape[-3:]), p)
    return y.reshape(*lead, *y.shape[-3:])


# ----------------------------------------------------------------------------- building blocks


class NHLayer(nn.Module):
    """One Neural-Hamiltonian layer on a set of per-cell feature maps.

    ``h [B, N, C_in, H, W]`` (B states, N cells each) → ``[B, N, C_out, H / p, W / p]``:

    - φ(h_c) = SiLU(conv(SiLU(conv(h_c)))) per cell (3×3 convolutions, ``C_in → C_out → C_out``);
    - A = Σ_c φ(h_c) per state (the global context, ``[B, C_out, H, W]``);
    - ψ = SiLU(conv(SiLU(conv(concat[h_c, A])))) per cell (``C_in + C_out → C_out → C_out``);
    - out_c = maxpool_p(ψ + P h_c), ``P`` = 1×1 projection if ``C_in ≠ C_out``, else the identity.

    All 3×3 convolutions are periodic. They are stored without padding: :meth:`core` evaluates
    the layer on an input that is already padded by :data:`HALO` sites (periodically, or with the
    neighbouring values of a window), which is how :func:`delta_local` reuses it on windows.

    Args:
        c_in: input channels per cell.
        c_out: output channels per cell.
        pool: max-pooling rate (1 = none).
    """

    def __init__(self, c_in: int, c_out: int, pool: int = 1):
        super().__init__()
        if c_in < 1 or c_out < 1 or pool < 1:
            raise ValueError(f"NHLayer needs c_in, c_out, pool >= 1, got {c_in}, {c_out}, {pool}")
        self.c_in, self.c_out, self.pool = int(c_in), int(c_out), int(pool)
        self.phi1 = nn.Conv2d(c_in, c_out, 3)
        self.phi2 = nn.Conv2d(c_out, c_out, 3)
        self.psi1 = nn.Conv2d(c_in + c_out, c_out, 3)
        self.psi2 = nn.Conv2d(c_out, c_out, 3)
        self.proj = nn.Conv2d(c_in, c_out, 1, bias=False) if c_in != c_out else None

    def core(self, h: torch.Tensor) -> torch.Tensor:
        """The layer before pooling on a padded input, all convolutions 'valid'.

        Args:
            h: ``[B, N, C_in, h + 2·HALO, w + 2·HALO]``.

        Returns:
            ``[B, N, C_out, h, w]``: the pre-pooling output at the interior sites.
        """
        B, N, C, Y, X = h.shape
        x = h.reshape(B * N, C, Y, X)
        phi = F.silu(self.phi2(F.silu(self.phi1(x))))  # [B N, Co, Y - 4, X - 4]
        a = phi.reshape(B, N, self.c_out, Y - 4, X - 4).sum(1, keepdim=True)
        a = a.expand(B, N, self.c_out, Y - 4, X - 4).reshape(B * N, self.c_out, Y - 4, X - 4)
        y = torch.cat([x[..., 2:-2, 2:-2], a], 1)
        y = F.silu(self.psi2(F.silu(self.psi1(y))))  # [B N, Co, Y - 8, X - 8]
        r = x[..., HALO:-HALO, HALO:-HALO]
        if self.proj is not None:
            r = self.proj(r)
        return (y + r).reshape(B, N, self.c_out, Y - 2 * HALO, X - 2 * HALO)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``h [B, N, C_in, H, W]`` (periodic) → ``[B, N, C_out, H / pool, W / pool]``."""
        return _pool(self.core(_circ_pad(h, HALO)), self.pool)


class _ConvBlock(nn.Module):
    """A residual CNN block for the baselines: 2 × [periodic 3×3 conv, SiLU] + projection, max-pool.

    ``[B, C_in, H, W]`` → ``[B, C_out, H / pool, W / pool]``.
    """

    def __init__(self, c_in: int, c_out: int, pool: int = 1):
        super().__init__()
        self.pool = int(pool)
        self.c1 = nn.Conv2d(c_in, c_out, 3)
        self.c2 = nn.Conv2d(c_out, c_out, 3)
        self.proj = nn.Conv2d(c_in, c_out, 1, bias=False) if c_in != c_out else None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        y = F.silu(self.c2(F.silu(self.c1(_circ_pad(h, 2)))))
        r = h if self.proj is None else self.proj(h)
        return _pool(y + r, self.pool)


def _conv_chain(c_in: int, widths: Sequence[int], pools: Sequence[int]) -> tuple[nn.Sequential, int]:
    """Residual conv blocks of the given widths and pooling rates; returns (blocks, output channels)."""
    blocks, c = [], c_in
    for w, p in zip(widths, pools):
        blocks.append(_ConvBlock(c, w, p))
        c = w
    return nn.Sequential(*blocks), c


class _Readout(nn.Module):
    """1×1 conv to ``width`` channels, sum over cells and pixels, MLP (2 hidden layers, SiLU, residual)."""

    def __init__(self, c_in: int, width: int = 32, hidden: int = 32):
        super().__init__()
        self.head = nn.Conv2d(c_in, width, 1)
        self.l1 = nn.Linear(width, hidden)
        self.l2 = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, 1)

    def vector(self, h: torch.Tensor) -> torch.Tensor:
        """``h [B, M, C, Y, X]`` (M cells, or 1 map) → the summed read-out vector ``[B, width]``."""
        B, M, C, Y, X = h.shape
        return self.head(h.reshape(B * M, C, Y, X)).reshape(B, M, -1, Y, X).sum((1, 3, 4))

    def mlp(self, v: torch.Tensor) -> torch.Tensor:
        """``v [B, width]`` → energies ``[B]``: ``out(u + SiLU(l2(u)))`` with ``u = SiLU(l1(v))``."""
        u = F.silu(self.l1(v))
        u = u + F.silu(self.l2(u))
        return self.out(u).squeeze(-1)


# ----------------------------------------------------------------------------- models


class _EnergyModel(nn.Module):
    """Shared input handling: ``forward(sigma, cell_type) -> scalar``, ``energies(states) -> [B]``.

    Networks implement ``_energy_x(x) -> [B]`` on their one-hot input ``_encode(sig, ct)``;
    analytic models override ``_energy_batch(sig [B, H, W] long, ct [B, N + 1] long) -> [B]``. They
    set ``embed_size``/``_stride_pools`` when their input is strided; ``n_types`` is the number of
    cell types they accept.
    """

    n_types: int
    embed_size: int = 1
    _stride_pools: tuple = ()  # pooling rates after the embedding; empty: no strided input

    #: networks: whether :meth:`_encode` gives per-cell tensors ``[B, N, 1 + T, H, W]`` (else a
    #: type map ``[B, 1 + T, H, W]``); see :func:`delta_grad`.
    per_cell = True

    def _ref(self) -> torch.Tensor:
        return next(self.parameters())

    def _encode(self, sig: torch.Tensor, ct: torch.Tensor) -> torch.Tensor:
        """The one-hot input of a network (per-cell tensors by default, :func:`encode_cells`)."""
        return _encode_batch(sig, ct, self.n_types, self._ref().dtype)

    def _energy_x(self, x: torch.Tensor) -> torch.Tensor:
        """Energies ``[B]`` of encoded inputs (networks; analytic models override ``_energy_batch``)."""
        raise NotImplementedError

    def _energy_batch(self, sig: torch.Tensor, ct: torch.Tensor) -> torch.Tensor:
        return self._energy_x(self._encode(sig, ct))

    @property
    def stride(self) -> int:
        """Total stride ``embed · Π pools``: lattice sides must be multiples of it."""
        return self.embed_size * math.prod(self._stride_pools)

    def _check_shape(self, H: int, W: int) -> None:
        if self._stride_pools:
            _check_divisible(H, W, self.stride,
                             f"{type(self).__name__}(embed={self.embed_size}, pools={self._stride_pools})")

    def _prep(self, sigma, cell_type) -> tuple[torch.Tensor, torch.Tensor]:
        dev = self._ref().device
        sig, ct = _to_long(sigma, dev), _to_long(cell_type, dev)
        _check_state(sig, ct, self.n_types)
        self._check_shape(*sig.shape)
        return sig, ct

    def forward(self, sigma, cell_type) -> torch.Tensor:
        """Energy of one state.

        Args:
            sigma: ids ``[H, W]`` (NumPy or torch).
            cell_type: types per id ``[n_cells + 1]``.

        Returns:
            A 0-d tensor (model dtype and device), differentiable in the parameters.
        """
        sig, ct = self._prep(sigma, cell_type)
        return self._energy_batch(sig[None], ct[None])[0]

    def energies(self, states: Sequence) -> torch.Tensor:
        """Energies of a list of ``(sigma, cell_type)`` states, ``[B]``.

        States of one lattice shape and one number of cells are evaluated as one batch; mixed
        lists are evaluated state by state.
        """
        prepped = [self._prep(s, c) for s, c in states]
        if not prepped:
            raise ValueError("energies() needs at least one state")
        if len({(tuple(s.shape), len(c)) for s, c in prepped}) == 1:
            return self._energy_batch(torch.stack([s for s, _ in prepped]), torch.stack([c for _, c in prepped]))
        return torch.cat([self._energy_batch(s[None], c[None]) for s, c in prepped])

    def energies_and_reg(self, states: Sequence) -> tuple[torch.Tensor, torch.Tensor]:
        """Energies ``[B]`` and the part of them the PCD regulariser α·E² acts on (here all of it)."""
        e = self.energies(states)
        return e, e

    def delta_fn(self, state, targets, sources) -> np.ndarray:
        """ΔH of copy proposals for :class:`~oncodyn.cpm.samplers.ApproxParallelSampler` (float64 NumPy).

        Uses :func:`delta_local` where the model supports it, :func:`delta_full` otherwise
        (``make_delta_fn(model, "auto")``).
        """
        return make_delta_fn(self, "auto")(state, targets, sources)


def _check_divisible(H: int, W: int, stride: int, what: str) -> None:
    if H % stride or W % stride:
        raise ValueError(f"{what}: the lattice sides must be multiples of the total stride {stride}, got H={H}, W={W} "
                         f"(e.g. {max(1, round(H / stride)) * stride}×{max(1, round(W / stride)) * stride})")


class NeuralHamiltonian(_EnergyModel):
    """The NeuralCPM Hamiltonian: embedding, NH layers, read-out (see the module docstring).

    Args:
        n_types: number of cell types (inputs have ``1 + n_types`` channels, 0 = medium).
        widths: channels of the NH layers; the embedding outputs ``widths[0]`` channels.
        pools: max-pooling rate after each NH layer (1 = none), same length as ``widths``.
        embed: kernel = stride of the linear (bias-free) embedding convolution.
        readout: channels of the 1×1 read-out convolution (32 in the spec).
        hidden: width of the MLP's two hidden layers (32 in the spec).

    Lattice sides must be multiples of :attr:`stride` = ``embed · Π pools``.
    """

    def __init__(self, n_types: int, widths: Sequence[int] = (8, 16, 32, 32), pools: Sequence[int] = (3, 2, 1, 1),
                 embed: int = 3, readout: int = 32, hidden: int = 32):
        super().__init__()
        widths, pools = tuple(int(w) for w in widths), tuple(int(p) for p in pools)
        if n_types < 1:
            raise ValueError(f"n_types must be >= 1, got {n_types}")
        if not widths or len(widths) != len(pools):
            raise ValueError(f"widths and pools must be non-empty and of equal length, got {widths}, {pools}")
        if min(widths) < 1 or min(pools) < 1 or embed < 1:
            raise ValueError(f"widths, pools and embed must be >= 1, got {widths}, {pools}, {embed}")
        self.n_types, self.widths, self.pools, self.embed_size = int(n_types), widths, pools, int(embed)
        self._stride_pools = pools
        self.embedding = nn.Conv2d(1 + n_types, widths[0], embed, stride=embed, bias=False)
        c, layers = widths[0], []
        for w, p in zip(widths, pools):
            layers.append(NHLayer(c, w, p))
            c = w
        self.layers = nn.ModuleList(layers)
        self.readout = _Readout(c, readout, hidden)

    @classmethod
    def preset(cls, name: str, n_types: int, **overrides) -> NeuralHamiltonian:
        """A model with the spec's architecture ``name`` (``digits`` | ``bipolar``, see :data:`PRESETS`)."""
        if name not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
        return cls(n_types, **{**PRESETS[name], **overrides})

    def _embed_x(self, x: torch.Tensor) -> torch.Tensor:
        """Encoded cells ``[B, N, 1 + T, H, W]`` → embedded cells ``[B, N, C_0, H / e, W / e]``."""
        B, N = x.shape[:2]
        y = self.embedding(x.reshape(B * N, *x.shape[2:]))
        return y.reshape(B, N, *y.shape[1:])

    def _embed(self, sig: torch.Tensor, ct: torch.Tensor) -> torch.Tensor:
        """``sig [B, H, W]``, ``ct [B, N + 1]`` → embedded cells ``[B, N, C_0, H / e, W / e]``."""
        return self._embed_x(self._encode(sig, ct))

    def _trace_x(self, x: torch.Tensor) -> list[torch.Tensor]:
        hs = [self._embed_x(x)]
        for layer in self.layers:
            hs.append(layer(hs[-1]))
        return hs

    def trace(self, sig: torch.Tensor, ct: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps of a batch: ``[embedded, after layer 1, …, after layer L]``, each ``[B, N, C, h, w]``."""
        return self._trace_x(self._encode(sig, ct))

    def _energy_x(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout.mlp(self.readout.vector(self._trace_x(x)[-1]))


class CNNHamiltonian(_EnergyModel):
    """Baseline: a plain CNN on the type map (no permutation symmetry among cells).

    The state becomes the one-hot type map ``[1 + n_types, H, W]`` (channel ``t`` = sites of type
    ``t``, 0 = medium; which cell a site belongs to is lost), then a bias-free strided embedding,
    residual CNN blocks (2 × [periodic 3×3 conv, SiLU], max-pool), the read-out of
    :class:`NeuralHamiltonian` (1×1 conv, sum over pixels, MLP). Sides must be multiples of
    ``embed · Π pools``.

    Args:
        n_types: number of cell types.
        widths, pools, embed, readout, hidden: as :class:`NeuralHamiltonian`.
    """

    def __init__(self, n_types: int, widths: Sequence[int] = (8, 16, 32, 32), pools: Sequence[int] = (3, 2, 1, 1),
                 embed: int = 3, readout: int = 32, hidden: int = 32):
        super().__init__()
        widths, pools = tuple(int(w) for w in widths), tuple(int(p) for p in pools)
        if not widths or len(widths) != len(pools):
            raise ValueError(f"widths and pools must be non-empty and of equal length, got {widths}, {pools}")
        self.n_types, self.pools, self.embed_size = int(n_types), pools, int(embed)
        self._stride_pools = pools
        self.embedding = nn.Conv2d(1 + n_types, widths[0], embed, stride=embed, bias=False)
        self.blocks, c = _conv_chain(widths[0], widths, pools)
        self.readout = _Readout(c, readout, hidden)

    per_cell = False

    def _encode(self, sig: torch.Tensor, ct: torch.Tensor) -> torch.Tensor:
        """The one-hot type map ``[B, 1 + T, H, W]``."""
        types = torch.gather(ct, 1, sig.reshape(len(sig), -1)).reshape(sig.shape)
        return F.one_hot(types, 1 + self.n_types).permute(0, 3, 1, 2).to(self._ref().dtype)

    def _energy_x(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.embedding(x))
        return self.readout.mlp(self.readout.vector(h[:, None]))


class NHCNNHamiltonian(_EnergyModel):
    """Baseline "1 NH + CNN": one NH layer, the sum over cells, then a CNN on the summed map.

    Cells are encoded and embedded as in :class:`NeuralHamiltonian`, pass one :class:`NHLayer`
    (width ``nh_width``, pool ``nh_pool``), are summed over cells to one map ``[C, h, w]``
    (permutation-invariant), then residual CNN blocks and the usual read-out. Sides must be
    multiples of ``embed · nh_pool · Π pools`` (defaults: 18, as the ``digits`` preset).

    Args:
        n_types: number of cell types.
        nh_width: channels of the embedding and the NH layer.
        nh_pool: max-pooling rate after the NH layer.
        widths, pools: the CNN blocks after the sum.
        embed, readout, hidden: as :class:`NeuralHamiltonian`.
    """

    def __init__(self, n_types: int, nh_width: int = 8, nh_pool: int = 3, widths: Sequence[int] = (16, 32, 32),
                 pools: Sequence[int] = (2, 1, 1), embed: int = 3, readout: int = 32, hidden: int = 32):
        super().__init__()
        widths, pools = tuple(int(w) for w in widths), tuple(int(p) for p in pools)
        if len(widths) != len(pools):
            raise ValueError(f"widths and pools must be of equal length, got {widths}, {pools}")
        self.n_types, self.embed_size = int(n_types), int(embed)
        self._stride_pools = (int(nh_pool),) + pools
        self.embedding = nn.Conv2d(1 + n_types, nh_width, embed, stride=embed, bias=False)
        self.nh = NHLayer(nh_width, nh_width, nh_pool)
        self.blocks, c = _conv_chain(nh_width, widths, pools)
        self.readout = _Readout(c, readout, hidden)

    def _energy_x(self, x: torch.Tensor) -> torch.Tensor:
        B, N = x.shape[:2]
        h = self.embedding(x.reshape(B * N, *x.shape[2:]))
        h = self.nh(h.reshape(B, N, *h.shape[1:])).sum(1)  # [B, C, h, w]
        return self.readout.mlp(self.readout.vector(self.blocks(h)[:, None]))


def _inv_softplus(x) -> torch.Tensor:
    x = torch.as_tensor(x, dtype=torch.float64)
    return x + torch.log(-torch.expm1(-x))


class AnalyticTorch(_EnergyModel):
    r"""Differentiable cell-sorting Hamiltonian: contact + volume, trainable J and λ.

    .. math:: H = \sum_{\{x,y\}} J(τ_x, τ_y)\,[σ_x \ne σ_y] + λ \sum_c (V_c - V^*_{τ_c})^2
              = \sum_{i \le j} J_{ij} B_{ij} + λ S,

    sums over unordered neighbour pairs of order ``order`` (each once, the convention of
    :class:`~oncodyn.cpm.hamiltonians.Contact` with ``scale = 1``). ``B`` and ``S`` are the
    sufficient statistics of :meth:`statistics`. ``J`` is symmetric with ``J[0, 0] = 0`` and every
    other entry ``softplus`` of a raw parameter; ``λ = softplus(raw)``; so both stay positive.
    ``V*`` is fixed (a buffer), or trainable (``learn_target``): ``V* = V*_0 · exp(raw)`` per type,
    positive, with Adam steps of relative size. A fixed V* cannot explain data whose cells are
    compressed below it by forces outside the family (N3: mean volume 138 for V* = 150); the fit
    then lowers λ instead and the sampled cells fragment.

    Args:
        n_types: number of cell types.
        target_volume: V* (sites), a scalar or per type ``[n_types + 1]`` (entry 0 unused).
        order: neighbourhood order of the contact term (1–4).
        J_init: initial J ``[n_types + 1, n_types + 1]`` (symmetric, entries > 0 off ``[0, 0]``); default all 1.
        lam_init: initial λ > 0.
        periodic: periodic lattice (default); ``False``: a wall that acts as medium surrounds it.
        potential: ``(gy, gx)`` adds a trainable external potential :math:`\sum_x Φ(x)\,[τ_x = t_Φ]`
            on cells of type ``potential_type``: Φ is a ``[gy, gx]`` grid of free parameters
            (initially 0), each value covering a block of the lattice (sides must be multiples of
            the grid). ``None`` (default): no potential. This is NeuralCPM's "cellsort + potential"
            baseline.
        potential_type: the type the potential acts on (default: the last type).
        learn_target: train V* too (see above); ``target_volume`` is then its start V*_0.
    """

    def __init__(self, n_types: int, target_volume, order: int = 2, J_init=None, lam_init: float = 1.0,
                 periodic: bool = True, potential: tuple[int, int] | None = None, potential_type: int | None = None,
                 learn_target: bool = False):
        super().__init__()
        self.potential_type = int(n_types) if potential_type is None else int(potential_type)
        if not 1 <= self.potential_type <= int(n_types):
            raise ValueError(f"potential_type must be in 1..{n_types}, got {potential_type}")
        if potential is not None:
            g = tuple(int(v) for v in potential)
            if len(g) != 2 or min(g) < 1:
                raise ValueError(f"potential must be a grid (gy, gx) of positive ints, got {potential}")
            self.phi = nn.Parameter(torch.zeros(g))
        else:
            self.phi = None
        nt = int(n_types) + 1
        self.n_types, self.order, self.periodic = int(n_types), int(order), bool(periodic)
        pairs = [(i, j) for i in range(nt) for j in range(i, nt) if (i, j) != (0, 0)]
        self.register_buffer("_pi", torch.tensor([p[0] for p in pairs]), persistent=False)
        self.register_buffer("_pj", torch.tensor([p[1] for p in pairs]), persistent=False)
        J0 = np.ones((nt, nt)) if J_init is None else np.asarray(J_init, float)
        if J0.shape != (nt, nt) or not np.allclose(J0, J0.T):
            raise ValueError(f"J_init must be a symmetric [{nt}, {nt}] matrix, got shape {J0.shape}")
        vals = np.array([J0[i, j] for i, j in pairs])
        if np.any(vals <= 0) or not lam_init > 0:
            raise ValueError("J_init (off the medium–medium entry) and lam_init must be > 0 (softplus parametrisation)")
        self.raw_J = nn.Parameter(_inv_softplus(vals).float())
        self.raw_lam = nn.Parameter(_inv_softplus(float(lam_init)).float())
        vt = np.asarray(target_volume, float)
        vt = np.full(nt, float(vt)) if vt.ndim == 0 else vt
        if vt.shape != (nt,):
            raise ValueError(f"target_volume must be a scalar or have n_types + 1 = {nt} entries, got {vt.shape}")
        vt = vt.copy()
        vt[0] = 0.0
        if np.any(vt[1:] <= 0):
            raise ValueError(f"target_volume must be > 0, got {vt[1:]}")
        self.register_buffer("v_target0", torch.tensor(vt, dtype=torch.float32))
        self.raw_target = nn.Parameter(torch.zeros(nt)) if learn_target else None
        off = neighbour_offsets(2, self.order)
        self._full_off = [tuple(int(v) for v in d) for d in off]
        first = off[np.arange(len(off)), np.argmax(off != 0, axis=1)]
        self._half_off = [tuple(int(v) for v in d) for d in off[first > 0]]

    def J(self) -> torch.Tensor:
        """Contact matrix ``[n_types + 1, n_types + 1]``: symmetric, positive, ``J[0, 0] = 0``."""
        nt = self.n_types + 1
        v = F.softplus(self.raw_J)
        J = torch.zeros(nt, nt, dtype=v.dtype, device=v.device)
        J = J.index_put((self._pi, self._pj), v)
        return J + J.T - torch.diag(torch.diagonal(J))

    def lam(self) -> torch.Tensor:
        """Volume stiffness λ > 0 (0-d)."""
        return F.softplus(self.raw_lam)

    @property
    def v_target(self) -> torch.Tensor:
        """Target volume per type ``[n_types + 1]`` (sites; entry 0 unused)."""
        return self.v_target0 if self.raw_target is None else self.v_target0 * torch.exp(self.raw_target)

    def _check_shape(self, H: int, W: int) -> None:
        if self.phi is not None and (H % self.phi.shape[0] or W % self.phi.shape[1]):
            raise ValueError(f"AnalyticTorch: lattice {H}×{W} is not a whole number of potential blocks "
                             f"{tuple(self.phi.shape)}")

    def potential_field(self, shape: tuple[int, int]) -> torch.Tensor | None:
        """Φ on the lattice ``[H, W]`` (each grid value repeated over its block), or ``None``."""
        if self.phi is None:
            return None
        H, W = shape
        gy, gx = self.phi.shape
        return self.phi.repeat_interleave(H // gy, 0).repeat_interleave(W // gx, 1)

    def _stats_batch(self, sig: torch.Tensor, ct: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, nt, dtype = sig.shape[0], self.n_types + 1, self._ref().dtype
        s = sig
        if not self.periodic:
            r = max(max(abs(a), abs(b)) for a, b in self._half_off)
            s = F.pad(s, (r, r, r, r), value=0)  # the wall acts as medium
        t = torch.gather(ct, 1, s.reshape(B, -1)).reshape(s.shape)
        m = torch.zeros(B, nt * nt, dtype=dtype, device=sig.device)
        for dy, dx in self._half_off:
            s2 = torch.roll(s, shifts=(-dy, -dx), dims=(1, 2))
            t2 = torch.roll(t, shifts=(-dy, -dx), dims=(1, 2))
            diff = (s != s2).reshape(B, -1).to(dtype)
            m.scatter_add_(1, (t * nt + t2).reshape(B, -1), diff)
        m = m.reshape(B, nt, nt)
        bmat = m + m.transpose(1, 2) - torch.diag_embed(torch.diagonal(m, dim1=1, dim2=2))
        vol = torch.zeros(B, ct.shape[1], dtype=dtype, device=sig.device)
        vol.scatter_add_(1, sig.reshape(B, -1), torch.ones(B, sig[0].numel(), dtype=dtype, device=sig.device))
        vt = self.v_target.to(dtype)[ct]
        S = ((vol - vt)[:, 1:] ** 2).sum(1)
        return bmat, S

    def statistics(self, sigma, cell_type) -> tuple[torch.Tensor, torch.Tensor]:
        """Sufficient statistics ``(B, S)`` of a state.

        Returns:
            ``B [n_types + 1, n_types + 1]``: boundary pairs (order ``order``, unordered, each once)
            by the types of their two sites, symmetric, ``B[0, 0] = 0`` — as
            :func:`oncodyn.cpm.observables.boundary_by_type`; ``S`` (0-d) = ``Σ_c (V_c − V*_{τ_c})²``.
        """
        sig, ct = self._prep(sigma, cell_type)
        b, s = self._stats_batch(sig[None], ct[None])
        return b[0], s[0]

    def _energy_batch(self, sig: torch.Tensor, ct: torch.Tensor) -> torch.Tensor:
        bmat, S = self._stats_batch(sig, ct)
        J = self.J()
        upper = torch.triu(torch.ones_like(J))
        e = (J * upper * bmat).sum((1, 2)) + self.lam() * S
        if self.phi is not None:
            on = (torch.gather(ct, 1, sig.reshape(len(sig), -1)) == self.potential_type).to(e.dtype)
            e = e + on @ self.potential_field(sig.shape[1:]).reshape(-1).to(e.dtype)
        return e

    def delta(self, sigma, cell_type, targets, sources) -> torch.Tensor:
        """Local ΔH of copying ``sigma[sources[i]]`` into ``targets[i]`` (flat indices), ``[k]``.

        Contact: the target's neighbours only; volume: the two cells involved. Equal to the
        difference of two :meth:`forward` calls (tested). A proposal with equal ids has ΔH = 0.
        """
        sig, ct = self._prep(sigma, cell_type)
        H, W = sig.shape
        flat = sig.reshape(-1)
        t, s = _to_long(targets, sig.device), _to_long(sources, sig.device)
        a, b = flat[s], flat[t]
        ta, tb = ct[a], ct[b]
        ty, tx = t // W, t % W
        nb = []
        for dy, dx in self._full_off:
            y, x = ty + dy, tx + dx
            if self.periodic:
                nb.append(sig[y % H, x % W])
            else:
                inside = (y >= 0) & (y < H) & (x >= 0) & (x < W)
                nb.append(torch.where(inside, sig[y.clamp(0, H - 1), x.clamp(0, W - 1)], 0))
        nb = torch.stack(nb, 1)  # [k, n]
        tn = ct[nb]
        J = self.J()
        dc = (J[ta[:, None], tn] * (nb != a[:, None])).sum(1) - (J[tb[:, None], tn] * (nb != b[:, None])).sum(1)
        dtype = J.dtype
        vol = torch.bincount(flat, minlength=len(ct)).to(dtype)
        vt = self.v_target.to(dtype)
        va, vb, sa, sb = vol[a], vol[b], vt[ta], vt[tb]
        dv = torch.where(a != 0, (va + 1 - sa) ** 2 - (va - sa) ** 2, 0.0) + \
            torch.where(b != 0, (vb - 1 - sb) ** 2 - (vb - sb) ** 2, 0.0)
        dh = dc + self.lam() * dv
        if self.phi is not None:  # a = the new id at the target, b = the old one
            pt = self.potential_type
            dh = dh + self.potential_field((H, W)).reshape(-1)[t].to(dtype) * ((ta == pt).to(dtype) - (tb == pt).to(dtype))
        return torch.where(a == b, 0.0, dh)

    def parameters_dict(self) -> dict:
        """``{"J": float64 [n_types + 1, n_types + 1] NumPy array, "lam": float}`` (+ ``"target"`` V* per type
        if trainable, ``"phi"`` grid if any)."""
        out = {"J": self.J().detach().cpu().double().numpy(), "lam": float(self.lam().detach())}
        if self.raw_target is not None:
            out["target"] = self.v_target.detach().cpu().double().numpy()
        if self.phi is not None:
            out["phi"] = self.phi.detach().cpu().double().numpy()
        return out

    def to_hamiltonian(self, temperature: float = 1.0, copy_order: int = 2, shape=None) -> Hamiltonian:
        """The equivalent compiled-sampler Hamiltonian at ``temperature``.

        ``Contact(J, order) + Volume(λ, V*)``, plus ``ExternalPotential(Φ)`` on the lattice ``shape``
        ``(H, W)`` when the model has a potential (then ``shape`` is required).
        """
        p = self.parameters_dict()
        vt = self.v_target.detach().cpu().double().numpy()
        terms = [Contact(p["J"], order=self.order), Volume(lam=p["lam"], target=vt, n_types=self.n_types)]
        if shape is not None and self.phi is not None:
            mu = np.zeros(self.n_types + 1)
            mu[self.potential_type] = 1.0
            terms.append(ExternalPotential(self.potential_field(tuple(shape)).detach().cpu().double().numpy(), mu))
        elif self.phi is not None:
            raise ValueError("to_hamiltonian needs the lattice shape when the model has a potential")
        return Hamiltonian(tuple(terms), temperature=temperature, copy_order=copy_order)


class Closure(_EnergyModel):
    """Neural closure ``H = w1 · H_analytic + w2 · H_NN`` with trainable scalars ``w1``, ``w2``.

    Args:
        analytic: e.g. :class:`AnalyticTorch` (its parameters train too).
        network: e.g. :class:`NeuralHamiltonian`.
        w1, w2: initial weights.
    """

    def __init__(self, analytic: _EnergyModel, network: _EnergyModel, w1: float = 1.0, w2: float = 1.0):
        super().__init__()
        if analytic.n_types != network.n_types:
            raise ValueError(f"analytic and network disagree on n_types: {analytic.n_types} vs {network.n_types}")
        self.n_types = analytic.n_types
        self.analytic, self.network = analytic, network
        self.w1 = nn.Parameter(torch.tensor(float(w1)))
        self.w2 = nn.Parameter(torch.tensor(float(w2)))

    def _check_shape(self, H: int, W: int) -> None:
        self.analytic._check_shape(H, W)
        self.network._check_shape(H, W)

    def _energy_batch(self, sig: torch.Tensor, ct: torch.Tensor) -> torch.Tensor:
        return self.w1 * self.analytic._energy_batch(sig, ct) + self.w2 * self.network._energy_batch(sig, ct)

    def energies_and_reg(self, states: Sequence) -> tuple[torch.Tensor, torch.Tensor]:
        """Energies and the network's share ``w2 · H_NN``: the regulariser bounds the network, not the
        analytic energy (of order 10⁴, which α·E² would drag to 0)."""
        prepped = [self._prep(s, c) for s, c in states]
        if len({(tuple(s.shape), len(c)) for s, c in prepped}) != 1:
            raise ValueError("energies_and_reg needs states of one lattice shape and cell count")
        sig, ct = torch.stack([s for s, _ in prepped]), torch.stack([c for _, c in prepped])
        ea, en = self.analytic._energy_batch(sig, ct), self.w2 * self.network._energy_batch(sig, ct)
        return self.w1 * ea + en, en


# ----------------------------------------------------------------------------- ΔH of proposals


@torch.no_grad()
def delta_full(model: _EnergyModel, sigma, cell_type, targets, sources, chunk: int = 64) -> torch.Tensor:
    """Reference ΔH of k copy proposals by full forward passes on modified copies of the state.

    Proposal ``i`` writes ``sigma[sources[i]]`` into ``targets[i]`` (flat C-order indices); each is
    evaluated alone against the given state. Ids are kept (a copied cell keeps its id); the set of
    cells must not change, i.e. no proposal removes a cell's last site (samplers veto that).

    Args:
        model: any model of this module.
        sigma: ids ``[H, W]``; cell_type: ``[n_cells + 1]``.
        targets, sources: flat site indices ``[k]``.
        chunk: modified states per batched forward pass (memory grows as
            ``chunk · n_cells · (1 + n_types) · H · W`` floats for the one-hot encoding).

    Returns:
        ΔH ``[k]`` (model dtype and device), no gradient.
    """
    sig, ct = model._prep(sigma, cell_type)
    t, s = _to_long(targets, sig.device), _to_long(sources, sig.device)
    if t.shape != s.shape or t.ndim != 1:
        raise ValueError(f"targets and sources must be 1-D of equal length, got {tuple(t.shape)}, {tuple(s.shape)}")
    e0 = model._energy_batch(sig[None], ct[None])[0]
    flat = sig.reshape(-1)
    out, chunk = [], max(1, int(chunk))
    for i in range(0, len(t), chunk):
        tt, ss = t[i:i + chunk], s[i:i + chunk]
        b = len(tt)
        mod = flat.repeat(b, 1)
        mod[torch.arange(b, device=sig.device), tt] = flat[ss]
        out.append(model._energy_batch(mod.reshape(b, *sig.shape), ct.expand(b, -1)) - e0)
    if not out:
        return torch.zeros(0, dtype=model._ref().dtype, device=sig.device)
    return torch.cat(out)


def _supports_local(model) -> bool:
    if isinstance(model, (NeuralHamiltonian, AnalyticTorch)):
        return True
    return isinstance(model, Closure) and all(_supports_local(m) for m in (model.analytic, model.network))


def _span(start: torch.Tensor, n: int, size: int, p: int) -> tuple[torch.Tensor, int]:
    """Pre-pooling output span of an NH layer whose input changed on ``[start, start + n)`` (mod ``size``).

    The change spreads by :data:`HALO`; the span is widened to whole pooling blocks. One common
    length (the batch's largest) keeps the proposals batched; a span that would reach around
    the torus becomes the whole axis (start 0).
    """
    lo = torch.div(start - HALO, p, rounding_mode="floor") * p
    hi = -torch.div(-(start + n + HALO), p, rounding_mode="floor") * p
    length = int((hi - lo).max())
    if length >= size:
        return torch.zeros_like(start), size
    return lo, length


def _gather_window(h: torch.Tensor, iy: torch.Tensor, ix: torch.Tensor) -> torch.Tensor:
    """``h [N, C, H, W]``, periodic indices ``iy [k, Y]``, ``ix [k, X]`` → ``[k, N, C, Y, X]``."""
    return h[:, :, iy[:, :, None], ix[:, None, :]].permute(2, 0, 1, 3, 4)


def _local_nh_chunk(model: NeuralHamiltonian, sig, ct, hs, v_old, e_old, t, s) -> torch.Tensor:
    W = sig.shape[1]
    e, k, dev = model.embed_size, len(t), sig.device
    ty, tx = t // W, t % W
    by, bx = torch.div(ty, e, rounding_mode="floor"), torch.div(tx, e, rounding_mode="floor")
    ar = torch.arange(e, device=dev)
    blk = sig[(by[:, None] * e + ar)[:, :, None], (bx[:, None] * e + ar)[:, None, :]].clone()  # [k, e, e]
    blk[torch.arange(k, device=dev), ty - by * e, tx - bx * e] = sig.reshape(-1)[s]
    V = model._embed(blk, ct.expand(k, -1))  # [k, N, C0, 1, 1]: the changed embedded pixel, every cell
    sy, sx, ny, nx = by, bx, 1, 1
    bi = torch.arange(k, device=dev)[:, None, None]
    for layer, h in zip(model.layers, hs[:-1]):
        Hl, Wl, p = h.shape[-2], h.shape[-1], layer.pool
        if ny == Hl and nx == Wl:  # the change covers the whole map: evaluate the layer on it
            V = layer(V)
            ny, nx = Hl // p, Wl // p
            continue
        ry, ly = _span(sy, ny, Hl, p)
        rx, lx = _span(sx, nx, Wl, p)
        iy = (ry[:, None] - HALO + torch.arange(ly + 2 * HALO, device=dev)) % Hl  # [k, Y]
        ix = (rx[:, None] - HALO + torch.arange(lx + 2 * HALO, device=dev)) % Wl
        win = _gather_window(h, iy, ix)  # old input values around the change
        oy, ox = (iy - sy[:, None]) % Hl, (ix - sx[:, None]) % Wl  # offsets into the changed region
        inside = ((oy < ny)[:, :, None] & (ox < nx)[:, None, :])[:, None, None]
        new = V[bi, :, :, oy.clamp(max=ny - 1)[:, :, None], ox.clamp(max=nx - 1)[:, None, :]].permute(0, 3, 4, 1, 2)
        win = torch.where(inside, new, win)
        V = _pool(layer.core(win), p)  # [k, N, C_out, ly / p, lx / p]
        sy, ny = torch.div(ry, p, rounding_mode="floor") % (Hl // p), ly // p
        sx, nx = torch.div(rx, p, rounding_mode="floor") % (Wl // p), lx // p
    hl = hs[-1]
    iy = (sy[:, None] + torch.arange(ny, device=dev)) % hl.shape[-2]
    ix = (sx[:, None] + torch.arange(nx, device=dev)) % hl.shape[-1]
    dsum = (V - _gather_window(hl, iy, ix)).sum((1, 3, 4))  # [k, C]
    w = model.readout.head.weight.reshape(model.readout.head.out_channels, -1)
    dv = dsum @ w.T  # the 1×1 read-out is linear and its bias cancels (same number of terms)
    return model.readout.mlp(v_old + dv) - e_old


@torch.no_grad()
def delta_local(model: _EnergyModel, sigma, cell_type, targets, sources, chunk: int = 64) -> torch.Tensor:
    """ΔH of k copy proposals, exploiting locality; equal to :func:`delta_full` up to round-off.

    :class:`NeuralHamiltonian`: one full forward pass of the current state stores every layer's
    feature maps. For a copy into site ``(y, x)``:

    - only the embedded pixel ``(y // e, x // e)`` changes (kernel = stride), for every cell —
      the medium channel is shared, and only the two cells involved change otherwise;
    - an NH layer spreads a change on ``[s, s + n)`` (per axis, at its resolution) to
      ``[s − 4, s + n + 4)`` before pooling (φ: 2 convolutions; A is a sum over cells of φ, so
      it changes only there; ψ: 2 more) — for *every* cell, through A; pooling maps it to the
      pooling blocks it touches. The layer is re-evaluated on that span, padded by
      :data:`HALO` sites taken from the stored maps with the changed part overwritten;
    - after the last layer the read-out vector changes by the 1×1 read-out of (new − old) summed
      over the changed window, and the nonlinear MLP is applied to ``v_old + Δv``.

    Window sizes: layer by layer the span per axis grows as ``n → ceil-to-pool(n + 8) / pool``
    (from ``n = 1`` embedded pixel, at most one extra pooling block per side) until it covers
    the axis, after which the layer is evaluated on the whole (small) map. E.g. ``digits`` on a
    216² lattice: 1 → 4 (of 24) → 7 (of 12) → all. The work saved is in the early,
    high-resolution layers.

    :class:`AnalyticTorch`: :meth:`AnalyticTorch.delta`. :class:`Closure` of those:
    ``w1 · ΔH_analytic + w2 · ΔH_NN``. Other models raise ``TypeError`` (use :func:`delta_full`).
    Proposals must not remove a cell's last site (as :func:`delta_full`).

    Args:
        model: a supported model.
        sigma: ids ``[H, W]``; cell_type: ``[n_cells + 1]``.
        targets, sources: flat site indices ``[k]``.
        chunk: proposals per batched window evaluation.

    Returns:
        ΔH ``[k]`` (model dtype and device), no gradient.
    """
    if isinstance(model, AnalyticTorch):
        return model.delta(sigma, cell_type, targets, sources)
    if isinstance(model, Closure) and _supports_local(model):
        return (model.w1 * delta_local(model.analytic, sigma, cell_type, targets, sources, chunk)
                + model.w2 * delta_local(model.network, sigma, cell_type, targets, sources, chunk))
    if not isinstance(model, NeuralHamiltonian):
        raise TypeError(f"delta_local supports NeuralHamiltonian, AnalyticTorch and their Closure, not "
                        f"{type(model).__name__}; use delta_full")
    sig, ct = model._prep(sigma, cell_type)
    t, s = _to_long(targets, sig.device), _to_long(sources, sig.device)
    if t.shape != s.shape or t.ndim != 1:
        raise ValueError(f"targets and sources must be 1-D of equal length, got {tuple(t.shape)}, {tuple(s.shape)}")
    hs = [h[0] for h in model.trace(sig[None], ct[None])]
    v_old = model.readout.vector(hs[-1][None])  # [1, R]
    e_old = model.readout.mlp(v_old)  # [1]
    chunk = max(1, int(chunk))
    out = [_local_nh_chunk(model, sig, ct, hs, v_old, e_old, t[i:i + chunk], s[i:i + chunk])
           for i in range(0, len(t), chunk)]
    if not out:
        return torch.zeros(0, dtype=model._ref().dtype, device=sig.device)
    return torch.cat(out)


def delta_grad(model: _EnergyModel, sigma, cell_type, targets, sources) -> torch.Tensor:
    r"""First-order ΔH of k copy proposals from one forward and one backward pass (any network).

    A copy changes the one-hot input ``x`` of a network in a few entries (a site moves from cell
    ``a`` to cell ``b``): ``ΔH ≈ ∇_x H · Δx``, with the gradient taken once at the current state.
    Per-cell encodings (:class:`NeuralHamiltonian`, :class:`NHCNNHamiltonian`):
    ``ΔH ≈ g[b, τ_b, y, x] − g[a, τ_a, y, x]`` for cells, and ``± Σ_c g[c, 0, y, x]`` for the shared
    medium channel; the type map (:class:`CNNHamiltonian`): ``g[τ_b, y, x] − g[τ_a, y, x]``.

    This is the Taylor step of gradient-informed discrete samplers (Grathwohl et al. 2021,
    "Oops I took a gradient"): the cost of *all* proposals of a state is one forward and one
    backward pass (about 2.5 full passes), against one local re-evaluation per proposal for
    :func:`delta_local`. It is not exact: the network is nonlinear in ``x``
    (``oncodyn bench neuralcpm`` reports its error against :func:`delta_local`). The analytic part
    of a :class:`Closure` (and an :class:`AnalyticTorch`) stays exact (its local ΔH). Training and
    sampling a model with the same ΔH keeps the two consistent; this is the default for networks
    on a CPU, where exact per-proposal ΔH makes a PCD iteration cost seconds per chain.

    Args / Returns: as :func:`delta_local`.
    """
    if isinstance(model, AnalyticTorch):
        return model.delta(sigma, cell_type, targets, sources).detach()
    if isinstance(model, Closure):
        return (model.w1 * delta_grad(model.analytic, sigma, cell_type, targets, sources)
                + model.w2 * delta_grad(model.network, sigma, cell_type, targets, sources)).detach()
    sig, ct = model._prep(sigma, cell_type)
    t, s = _to_long(targets, sig.device), _to_long(sources, sig.device)
    if t.shape != s.shape or t.ndim != 1:
        raise ValueError(f"targets and sources must be 1-D of equal length, got {tuple(t.shape)}, {tuple(s.shape)}")
    f = _gradient_field(model, sig, ct).reshape(len(ct), -1)
    flat = sig.reshape(-1)
    return f[flat[s], t] - f[flat[t], t]  # the copied id's field minus the old id's, at the target


def gradient_field(model: _EnergyModel, sigma, cell_type) -> torch.Tensor:
    r"""The network's energy linearised at a state, as a field per cell id: ``F [n_cells + 1, H, W]``.

    ``F[c, y, x]`` is the gradient of ``H`` with respect to the one-hot entries that say "site (y, x)
    belongs to id c" (id 0 = medium), so a copy of cell ``b`` into a site held by ``a`` changes the
    energy by ``≈ F[b, y, x] − F[a, y, x]`` (:func:`delta_grad`), and ``Σ_x F[σ_x, x]`` is the energy's
    first-order part (:class:`~oncodyn.cpm.hamiltonians.CellField` compiles it for the CPM samplers).
    Per-cell encodings: ``F[c] = g[c − 1, τ_c]`` and ``F[0] = Σ_c g[c, 0]`` (the medium channel every
    cell's tensor shares); a type map: ``F[c] = g[τ_c]``. One forward and one backward pass.

    Args: ``sigma [H, W]`` ids, ``cell_type [n_cells + 1]``. Returns: detached, on the model's device.
    """
    return _gradient_field(model, *model._prep(sigma, cell_type))


def _gradient_field(model: _EnergyModel, sig: torch.Tensor, ct: torch.Tensor) -> torch.Tensor:
    """:func:`gradient_field` of a state already checked and on the device (``model._prep``)."""
    with torch.enable_grad():
        x = model._encode(sig[None], ct[None]).requires_grad_(True)
        (g,) = torch.autograd.grad(model._energy_x(x).sum(), x)
    g = g[0].detach()
    if not model.per_cell:
        return g[ct]
    cells = torch.arange(1, len(ct), device=g.device)
    return torch.cat([g[:, 0].sum(0)[None], g[cells - 1, ct[1:]]])


DELTA_METHODS = ("auto", "local", "full", "grad")


def make_delta_fn(model: _EnergyModel, method: str = "auto", chunk: int | None = None):
    """A ``delta_fn(state, targets, sources) -> ΔH`` (float64 NumPy) for the approximate sampler.

    Args:
        model: a model of this module.
        method: ``local`` (:func:`delta_local`, exact), ``full`` (:func:`delta_full`, exact),
            ``grad`` (:func:`delta_grad`, first order) or ``auto`` (local where supported, else full).
        chunk: batch size passed on (``local``/``full``; default: each function's own).
    """
    if method not in DELTA_METHODS:
        raise ValueError(f"method must be one of {DELTA_METHODS}, got {method!r}")
    if method == "grad":
        def delta_fn(state, targets, sources) -> np.ndarray:
            return delta_grad(model, state.sigma, state.cell_type, targets, sources).cpu().double().numpy()

        return delta_fn
    use_local = method == "local" or (method == "auto" and _supports_local(model))
    fn = delta_local if use_local else delta_full
    kw = {} if chunk is None else {"chunk": int(chunk)}

    def delta_fn(state, targets, sources) -> np.ndarray:
        return fn(model, state.sigma, state.cell_type, targets, sources, **kw).detach().cpu().double().numpy()

    return delta_fn


def time_delta(model: _EnergyModel, sigma, cell_type, targets, sources, repeats: int = 3) -> dict:
    """Wall time of :func:`delta_full` vs :func:`delta_local` on the same proposals (best of ``repeats``).

    Returns:
        ``{"full_s", "local_s", "speedup", "max_abs_diff", "k"}`` (seconds per call of all k proposals).
    """
    sync = torch.cuda.synchronize if model._ref().is_cuda else (lambda: None)

    def best(fn):
        times, res = [], None
        for _ in range(max(1, repeats)):
            sync()
            t0 = time.perf_counter()
            res = fn(model, sigma, cell_type, targets, sources)
            sync()
            times.append(time.perf_counter() - t0)
        return min(times), res

    tf, df = best(delta_full)
    tl, dl = best(delta_local)
    return {"full_s": tf, "local_s": tl, "speedup": tf / tl, "max_abs_diff": float((df - dl).abs().max()),
            "k": len(np.asarray(targets))}
