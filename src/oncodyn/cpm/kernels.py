r"""Compiled (numba) Metropolis kernels of the cellular Potts model.

Algorithm (the exact sampler). The Markov chain is *random-site Metropolis–Hastings*: each
attempt picks a site x uniformly among the N sites, a neighbour y uniformly among the copy
neighbourhood, and proposes σ(x) ← a = σ(y). Because the proposal prefers ids that are
frequent around x, its probability is ∝ m_a (the number of a-neighbours of x) and the reverse
is ∝ m_b (b = σ(x)); the acceptance ``min(1, e^{−ΔH/T} · m_b / m_a)`` therefore makes the chain
reversible with respect to e^{−H/T} (the classic CPM acceptance ``min(1, e^{−ΔH/T})``, which
Morpheus, CompuCell3D and Artistoo use, is available with ``hastings=False``; it is not exactly
Boltzmann).

Speed. Attempts at sites with no foreign neighbour are no-ops, so the kernel keeps the list of
*border* sites B (sites with a foreign neighbour) and jumps over the no-ops: the number of
random-site attempts until the next one that lands in B is geometric with p = |B|/N, so the
kernel draws that number, advances its random-site clock by it and performs the attempt at a
uniform border site. The sequence of states and the clock are exactly those of the random-site
chain; the work per MCS is ∝ |B|, as in Artistoo (whose attempts are also border-site picks,
so our "copy attempts per second" are counted the same way). ΔH is local: neighbour ids of x
and the incrementally kept volumes and perimeters of the two cells (never recounted).

Parallel exact sampler. The lattice is cut into slabs along axis 0 at a random offset each
phase (independent of the state); thread t runs slabs t, t + n_threads, … (interleaved, so a
central aggregate is shared between the threads). A slab proposes only at sites whose whole
neighbourhood lies in it, and only copies between cells whose every site is in it (the medium,
which has no global term, is shared). Such a move changes nothing another slab
reads, so the phase equals running the slabs one after another; and "both cells lie in slab
k" holds before a move iff it holds after it, so each thread's restricted kernel is still
reversible. The phase is therefore an exact Metropolis–Hastings update and the run is
bit-reproducible whatever the thread timing. Cells straddling a slab boundary wait for a later
phase with another offset.

State arrays (flat, C order): ``sigma`` [N + 1] int32 with ``sigma[N]`` = the wall id
``n_cells + 1`` (a walled lattice's outside; type 0, never copied); ``vol``, ``perim``
[n_cells + 2] int64 (the medium's and the wall's entries are not kept); ``ndiff`` [N] int32 =
foreign neighbours in the copy neighbourhood; border lists ``blist`` [n_threads, N], ``bpos``
[N] (position or −1), ``nborder`` [n_threads]; ``site_owner`` [N] int32 (thread allowed to
select the site, −1 none); ``cell_owner`` [n_cells + 2] int32 (thread allowed to move the cell).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from oncodyn.core.fastrng import below, two_ints, uniform

# ----------------------------------------------------------------------------- local pieces


@numba.njit(cache=True, inline="always")
def local_delta(x, y, a, b, sigma, ctype, nbr, vol, perim, J, lam_v, v_t, lam_p, p_t, phi, mu, chem, chi, cfield,
                n_prop, n_contact, n_perim, chem_form):
    """ΔH of σ(x): b → a (a copied from y) and (m_a, m_b) in the copy neighbourhood."""
    ta = ctype[a]
    tb = ctype[b]
    n_max = max(n_prop, n_contact, n_perim)
    dh = 0.0
    ma = 0
    mb = 0
    mpa = 0
    mpb = 0
    for k in range(n_max):
        s = sigma[nbr[x, k]]
        if k < n_contact:
            ts = ctype[s]
            if s != a:
                dh += J[ta, ts]
            if s != b:
                dh -= J[tb, ts]
        if s == a:
            if k < n_prop:
                ma += 1
            if k < n_perim:
                mpa += 1
        elif s == b:
            if k < n_prop:
                mb += 1
            if k < n_perim:
                mpb += 1
    if a != 0:
        dh += lam_v[a] * (2.0 * (vol[a] - v_t[a]) + 1.0)
    if b != 0:
        dh += lam_v[b] * (1.0 - 2.0 * (vol[b] - v_t[b]))
    if n_perim > 0:
        if a != 0:
            pa = perim[a] - p_t[a]
            dpa = n_perim - 2 * mpa
            dh += lam_p[a] * ((pa + dpa) ** 2 - pa * pa)
        if b != 0:
            pb = perim[b] - p_t[b]
            dpb = 2 * mpb - n_perim
            dh += lam_p[b] * ((pb + dpb) ** 2 - pb * pb)
    if phi.shape[0] > 0:
        dh += phi[x] * (mu[ta] - mu[tb])
    if cfield.shape[0] > 0:  # a field per cell id (CellField): the energy of site x held by a vs by b
        dh += cfield[a, x] - cfield[b, x]
    if chem.shape[0] > 0:
        if chem_form == 0:
            dh -= chi[ta] * (chem[x] - chem[y])
        else:
            dh -= chem[x] * (chi[ta] - chi[tb])
    return dh, ma, mb


@numba.njit(cache=True, inline="always")
def _set_border(z, k, on, site_owner, blist, bpos, nborder):
    if site_owner[z] != k:
        return
    if on:
        if bpos[z] < 0:
            i = nborder[k]
            blist[k, i] = z
            bpos[z] = i
            nborder[k] = i + 1
    elif bpos[z] >= 0:
        i = bpos[z]
        last = blist[k, nborder[k] - 1]
        blist[k, i] = last
        bpos[last] = i
        bpos[z] = -1
        nborder[k] -= 1


@numba.njit(cache=True)
def apply_flip(k, x, a, b, sigma, nbr, vol, perim, ndiff, n_prop, n_perim, site_owner, blist, bpos, nborder):
    """Set σ(x) = a (was b) and update volumes, perimeters, foreign-neighbour counts and border lists."""
    n_sites = ndiff.shape[0]
    sigma[x] = a
    ma = 0
    mpa = 0
    mpb = 0
    for j in range(max(n_prop, n_perim)):
        z = nbr[x, j]
        s = sigma[z]
        if j < n_perim:
            if s == a:
                mpa += 1
            elif s == b:
                mpb += 1
        if j < n_prop:
            if s == a:
                ma += 1
            if z < n_sites:
                ndiff[z] += (1 if s != a else 0) - (1 if s != b else 0)
                _set_border(z, k, ndiff[z] > 0, site_owner, blist, bpos, nborder)
    ndiff[x] = n_prop - ma
    _set_border(x, k, ndiff[x] > 0, site_owner, blist, bpos, nborder)
    if a != 0:
        vol[a] += 1
        perim[a] += n_perim - 2 * mpa
    if b != 0:
        vol[b] -= 1
        perim[b] += 2 * mpb - n_perim


@numba.njit(cache=True)
def stays_connected(x, a, b, sigma, nbr, n_conn, stamp, tstamp, queue, gen):
    """Whether every cell stays connected when σ(x): b → a (connectivity in the first ``n_conn``
    neighbours): a must touch x, and b's neighbours of x must still reach each other without x."""
    n_sites = stamp.shape[0] - 1
    if a != 0:
        touch = False
        for j in range(n_conn):
            if sigma[nbr[x, j]] == a:
                touch = True
                break
        if not touch:
            return False
    if b == 0:
        return True
    n_t = 0
    first = -1
    for j in range(n_conn):
        z = nbr[x, j]
        if z < n_sites and sigma[z] == b and tstamp[z] != gen:
            tstamp[z] = gen
            n_t += 1
            if first < 0:
                first = z
    if n_t <= 1:
        return True
    stamp[x] = gen
    stamp[first] = gen
    queue[0] = first
    head, tail, found = 0, 1, 1
    while head < tail:
        z = queue[head]
        head += 1
        for j in range(n_conn):
            w = nbr[z, j]
            if w < n_sites and stamp[w] != gen and sigma[w] == b:
                stamp[w] = gen
                if tstamp[w] == gen:
                    found += 1
                    if found == n_t:
                        return True
                queue[tail] = w
                tail += 1
    return False


# ----------------------------------------------------------------------------- the attempt loop


@numba.njit(cache=True)
def run_attempts(k, budget, n_sel, sigma, ctype, nbr, vol, perim, ndiff, blist, bpos, nborder, site_owner,
                 cell_owner, rng, stamp, tstamp, queue, gens, J, lam_v, v_t, lam_p, p_t, phi, mu, chem, chi, cfield,
                 n_prop, n_contact, n_perim, chem_form, temperature, hastings, connectivity, n_conn):
    """``budget`` random-site attempts of thread ``k`` over its ``n_sel`` selectable sites.

    Returns (border-site attempts made, accepted copies).
    """
    wall = sigma.shape[0] - 1
    wall_id = sigma[wall]
    inv_t = 1.0 / temperature
    clock = 0
    attempts = 0
    accepted = 0
    nb = nborder[k]
    logq = math.log1p(-nb / n_sel) if nb < n_sel else 0.0
    while nb > 0:
        if nb < n_sel:
            clock += 1 + np.int64(math.floor(math.log(1.0 - uniform(rng, k)) / logq))
        else:
            clock += 1
        if clock > budget:
            break
        i, j = two_ints(rng, k, nb, n_prop)
        x = blist[k, i]
        y = nbr[x, j]
        a = sigma[y]
        b = sigma[x]
        attempts += 1
        if a == b or a == wall_id:
            continue
        if (a != 0 and cell_owner[a] != k) or (b != 0 and cell_owner[b] != k):
            continue
        if b != 0 and vol[b] <= 1:
            continue  # a copy may not delete a cell
        dh, ma, mb = local_delta(x, y, a, b, sigma, ctype, nbr, vol, perim, J, lam_v, v_t, lam_p, p_t, phi, mu,
                                 chem, chi, cfield, n_prop, n_contact, n_perim, chem_form)
        if hastings:
            if mb == 0:
                continue  # the reverse copy could never be proposed
            w = -dh * inv_t + math.log(mb / ma)
        else:
            w = -dh * inv_t
        if w < 0.0 and uniform(rng, k) >= math.exp(w):
            continue
        if connectivity:
            gens[k] += 1
            if not stays_connected(x, a, b, sigma, nbr, n_conn, stamp[k], tstamp[k], queue[k], gens[k]):
                continue
        apply_flip(k, x, a, b, sigma, nbr, vol, perim, ndiff, n_prop, n_perim, site_owner, blist, bpos, nborder)
        accepted += 1
        if nborder[k] != nb:
            nb = nborder[k]
            logq = math.log1p(-nb / n_sel) if nb < n_sel else 0.0
    return attempts, accepted


@numba.njit(cache=True)
def sweep_sequential(budget, sigma, ctype, nbr, vol, perim, ndiff, blist, bpos, nborder, site_owner, cell_owner,
                     rng, stamp, tstamp, queue, gens, J, lam_v, v_t, lam_p, p_t, phi, mu, chem, chi, cfield, n_prop,
                     n_contact, n_perim, chem_form, temperature, hastings, connectivity, n_conn):
    """``budget`` random-site attempts of the sequential exact sampler (thread 0, every site)."""
    return run_attempts(0, budget, ndiff.shape[0], sigma, ctype, nbr, vol, perim, ndiff, blist, bpos, nborder,
                        site_owner, cell_owner, rng, stamp, tstamp, queue, gens, J, lam_v, v_t, lam_p, p_t, phi,
                        mu, chem, chi, cfield, n_prop, n_contact, n_perim, chem_form, temperature, hastings, connectivity,
                        n_conn)


@numba.njit(cache=True, parallel=True)
def sweep_parallel(n_phases, frac, n_threads, n_slabs, rows, reach, periodic, sigma, ctype, nbr, vol, perim, ndiff,
                   blist, bpos, nborder, site_owner, cell_owner, rng, stamp, tstamp, queue, gens, J, lam_v, v_t,
                   lam_p, p_t, phi, mu, chem, chi, cfield, n_prop, n_contact, n_perim, chem_form, temperature, hastings,
                   connectivity, n_conn):
    """``n_phases`` phases of the parallel exact sampler over ``n_slabs`` slabs (thread t runs slabs
    t, t + n_threads, …, one after another); each slab gets ``frac`` × (its sites) random-site
    attempts per phase. ``rng`` has ``n_slabs + 1`` streams (the last draws the offsets).

    Returns (border-site attempts, accepted copies, random-site attempts).
    """
    n_sites = ndiff.shape[0]
    row_size = n_sites // rows
    n_ids = vol.shape[0]
    per_thread = n_slabs // n_threads
    region = np.empty(rows, np.int64)
    interior = np.empty(rows, np.bool_)
    seen = np.zeros((n_slabs, n_ids), np.bool_)
    n_int = np.zeros(n_slabs, np.int64)
    att = np.zeros(n_slabs, np.int64)
    acc = np.zeros(n_slabs, np.int64)
    tot_att = 0
    tot_acc = 0
    tot_rs = 0
    for _ in range(n_phases):
        off = below(rng, n_slabs, rows)
        for r in range(rows):
            region[r] = ((r - off) % rows) * n_slabs // rows
        for r in range(rows):
            ok = True
            for d in range(-reach, reach + 1):
                rr = r + d
                if periodic:
                    rr %= rows
                elif rr < 0 or rr >= rows:
                    continue
                if region[rr] != region[r]:
                    ok = False
            interior[r] = ok
        for t in prange(n_threads):
            for j in range(per_thread):
                k = t + j * n_threads
                nborder[k] = 0
                n_int[k] = 0
                seen[k, :] = False
                for r in range(rows):
                    if region[r] != k:
                        continue
                    for s in range(r * row_size, (r + 1) * row_size):
                        seen[k, sigma[s]] = True
                        bpos[s] = -1
                        if interior[r]:
                            site_owner[s] = k
                            n_int[k] += 1
                            if ndiff[s] > 0:
                                i = nborder[k]
                                blist[k, i] = s
                                bpos[s] = i
                                nborder[k] = i + 1
                        else:
                            site_owner[s] = -1
        for c in range(1, n_ids):
            owner = -1
            cnt = 0
            for k in range(n_slabs):
                if seen[k, c]:
                    owner = k
                    cnt += 1
            cell_owner[c] = owner if cnt == 1 else -2
        for t in prange(n_threads):
            for j in range(per_thread):
                k = t + j * n_threads
                budget = np.int64(round(frac * n_int[k]))
                att[k], acc[k] = run_attempts(k, budget, n_int[k], sigma, ctype, nbr, vol, perim, ndiff, blist, bpos,
                                              nborder, site_owner, cell_owner, rng, stamp, tstamp, queue, gens, J,
                                              lam_v, v_t, lam_p, p_t, phi, mu, chem, chi, cfield, n_prop, n_contact, n_perim,
                                              chem_form, temperature, hastings, connectivity, n_conn)
        for k in range(n_slabs):
            tot_att += att[k]
            tot_acc += acc[k]
            tot_rs += np.int64(round(frac * n_int[k]))
    return tot_att, tot_acc, tot_rs


# ----------------------------------------------------------------------------- approximate parallel


@numba.njit(cache=True)
def approx_propose(n_prop_k, sigma, nbr, n_prop, blist, nborder, rng, mark, gens, targets, sources, new_ids):
    """Draw up to ``n_prop_k`` distinct border sites and, for each, a neighbour with another id.

    Fills ``targets``, ``sources``, ``new_ids`` and returns how many proposals were made.
    """
    n_sites = mark.shape[0]
    nb = nborder[0]
    kk = min(n_prop_k, nb)
    gens[0] += 1
    g = gens[0]
    cand = np.empty(n_prop, np.int64)
    n = 0
    tries = 0
    while n < kk and tries < 50 * kk + 100:
        tries += 1
        x = blist[0, below(rng, 0, nb)]
        if mark[x] == g:
            continue
        mark[x] = g
        cnt = 0
        for j in range(n_prop):
            z = nbr[x, j]
            if z < n_sites and sigma[z] != sigma[x]:
                cand[cnt] = z
                cnt += 1
        if cnt == 0:
            continue
        y = cand[below(rng, 0, cnt)]
        targets[n] = x
        sources[n] = y
        new_ids[n] = sigma[y]
        n += 1
    return n


@numba.njit(cache=True)
def batch_delta(n, targets, sources, new_ids, sigma, ctype, nbr, vol, perim, J, lam_v, v_t, lam_p, p_t, phi, mu,
                chem, chi, cfield, n_prop, n_contact, n_perim, chem_form, out):
    """ΔH of each of the first ``n`` proposals against the same (current) state."""
    for i in range(n):
        x = targets[i]
        dh, _, _ = local_delta(x, sources[i], new_ids[i], sigma[x], sigma, ctype, nbr, vol, perim, J, lam_v, v_t,
                               lam_p, p_t, phi, mu, chem, chi, cfield, n_prop, n_contact, n_perim, chem_form)
        out[i] = dh


@numba.njit(cache=True)
def approx_apply(n, targets, new_ids, accept, sigma, nbr, vol, perim, ndiff, n_prop, n_perim, site_owner, blist,
                 bpos, nborder):
    """Apply the accepted proposals in order (zero-volume veto at apply time); returns how many."""
    done = 0
    for i in range(n):
        if not accept[i]:
            continue
        x = targets[i]
        a = new_ids[i]
        b = sigma[x]
        if a == b or (b != 0 and vol[b] <= 1):
            continue
        apply_flip(0, x, a, b, sigma, nbr, vol, perim, ndiff, n_prop, n_perim, site_owner, blist, bpos, nborder)
        done += 1
    return done


@numba.njit(cache=True)
def approx_sweep(mcs, k, sigma, ctype, nbr, vol, perim, ndiff, blist, bpos, nborder, site_owner, rng, mark, gens,
                 targets, sources, new_ids, dh, J, lam_v, v_t, lam_p, p_t, phi, mu, chem, chi, cfield, n_prop, n_contact,
                 n_perim, chem_form, temperature):
    """Batches of the approximate sampler with the analytic ΔH until ``mcs`` MCS have elapsed
    (each batch of n proposals adds n / |B| MCS). Returns (proposals, applied copies, MCS done)."""
    done_mcs = 0.0
    props = 0
    applied = 0
    accept = np.zeros(k, np.bool_)
    while done_mcs < mcs - 1e-12 and nborder[0] > 0:
        nb = nborder[0]
        n = approx_propose(k, sigma, nbr, n_prop, blist, nborder, rng, mark, gens, targets, sources, new_ids)
        if n == 0:
            break
        batch_delta(n, targets, sources, new_ids, sigma, ctype, nbr, vol, perim, J, lam_v, v_t, lam_p, p_t, phi, mu,
                    chem, chi, cfield, n_prop, n_contact, n_perim, chem_form, dh)
        for i in range(n):
            w = -dh[i] / temperature
            accept[i] = w >= 0.0 or uniform(rng, 0) < math.exp(w)
        applied += approx_apply(n, targets, new_ids, accept, sigma, nbr, vol, perim, ndiff, n_prop, n_perim,
                                site_owner, blist, bpos, nborder)
        props += n
        done_mcs += n / nb
    return props, applied, done_mcs
