"""Absorbing Markov chains over rephrase chains (after "Why ambient computing needs self-learning", "Precomputed rewriting").

States are normalised utterances. From an utterance a user either succeeds (an absorbing state
"success of that utterance"), rephrases into another utterance (a transient state), or gives up
(the absorbing FAIL state). With Q the transient-to-transient and R the transient-to-absorbing
transition probabilities, B = (I - Q)^-1 R gives, for every utterance, the probability that its
chain ends in each success. The best rewrite of u is the utterance v != u whose success u's chains
most likely end in.

Math only: pure functions on integer-coded edges, no I/O. The graph is split into weakly connected
components and each is solved on its own: small ones exactly (dense solve), large ones by the
sparse series B = sum_k Q^k R, so neither the fundamental matrix nor a dense B is ever formed for
the whole graph. Transient states that cannot reach any absorbing state (closed
cycles) are dropped first: their rows would make I - Q singular, and they have no rewrite anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

__all__ = ["AbsorbingChain", "solve_absorbing", "best_rewrites"]

DENSE_UP_TO = 400


@dataclass(frozen=True)
class AbsorbingChain:
    """Absorption probabilities: ``probs[k]`` is the probability that a chain starting at
    transient state ``rows[k]`` ends in absorbing state ``cols[k]`` (only entries > 0)."""

    rows: np.ndarray
    cols: np.ndarray
    probs: np.ndarray
    n_transient: int
    n_absorbing: int
    unreachable: np.ndarray  # transient states with no path to any absorbing state

    def dense(self) -> np.ndarray:
        out = np.zeros((self.n_transient, self.n_absorbing))
        out[self.rows, self.cols] = self.probs
        return out


def solve_absorbing(src: np.ndarray, dst: np.ndarray, count: np.ndarray, *, n_transient: int, n_absorbing: int) -> AbsorbingChain:
    """Edges ``src -> dst`` with counts. ``src`` are transient ids in [0, n_transient); ``dst`` are
    transient ids, or absorbing ids offset by ``n_transient`` (absorbing j is ``n_transient + j``)."""
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    count = np.asarray(count, dtype=float)
    n = n_transient + n_absorbing
    if src.size and (src.min() < 0 or src.max() >= n_transient or dst.min() < 0 or dst.max() >= n):
        raise ValueError("edge ids out of range: sources must be transient, destinations any state")
    if np.any(count <= 0):
        raise ValueError("edge counts must be positive")
    graph = sp.csr_matrix((count, (src, dst)), shape=(n, n))  # duplicates are summed
    out_total = np.asarray(graph.sum(axis=1)).ravel()

    # transient states that can reach an absorbing state: propagate backwards until nothing changes
    can_reach = np.zeros(n, dtype=bool)
    can_reach[n_transient:] = True
    while True:
        grown = can_reach | (graph @ can_reach.astype(float) > 0)
        if np.array_equal(grown, can_reach):
            break
        can_reach = grown
    live = can_reach[:n_transient] & (out_total[:n_transient] > 0)
    unreachable = np.flatnonzero(~can_reach[:n_transient] & (out_total[:n_transient] > 0))

    # transition probabilities from live transient states; mass into dead states is lost (a failure)
    prob = sp.diags(np.where(out_total > 0, 1.0 / np.maximum(out_total, 1e-300), 0.0)) @ graph
    keep = np.concatenate([live, np.ones(n_absorbing, dtype=bool)])
    prob = prob.tocsr()[keep][:, keep].tocsr()
    live_ids = np.flatnonzero(live)
    m = live_ids.size
    q = prob[:m, :m]
    r = prob[:m, m:]

    n_comp, labels = connected_components(prob, directed=True, connection="weak")
    rows, cols, vals = [], [], []
    order = np.argsort(labels[:m], kind="stable")
    bounds = np.flatnonzero(np.diff(labels[:m][order])) + 1
    r_csc = r.tocsc()
    for members in np.split(order, bounds) if m else []:
        absorb = np.unique(r[members].indices)
        if absorb.size == 0:
            continue
        qc = q[members][:, members]
        if members.size <= DENSE_UP_TO:
            rc = r_csc[:, absorb].tocsr()[members].toarray()
            x = np.linalg.solve(np.identity(members.size) - qc.toarray(), rc)
            nz = np.nonzero(x > 1e-12)
            rows.append(live_ids[members[nz[0]]])
            cols.append(absorb[nz[1]])
            vals.append(x[nz])
        else:
            x = _series_solve(qc.tocsr(), r[members].tocsr())
            rows.append(live_ids[members[x.row]])
            cols.append(x.col)
            vals.append(x.data)
    cat = (lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dtype=dt))
    return AbsorbingChain(cat(rows, np.int64), cat(cols, np.int64), cat(vals, float), n_transient, n_absorbing, unreachable)


def _series_solve(q: sp.csr_matrix, r: sp.csr_matrix, *, tol: float = 1e-13, max_steps: int = 100_000) -> sp.coo_matrix:
    """B = sum_k Q^k R with sparse products, for large components: chains are short, so the
    terms stay sparse and their mass falls fast, while a dense (I - Q)^-1 R would need
    members x absorbing memory. Stops when a term's mass is below ``tol``."""
    total = r.copy()
    term = r
    for _ in range(max_steps):
        term = (q @ term).tocsr()
        term.data[term.data < tol * 1e-3] = 0
        term.eliminate_zeros()
        if term.nnz == 0 or term.sum() < tol:
            break
        total = total + term
    out = total.tocoo()
    keep = out.data > 1e-12
    return sp.coo_matrix((out.data[keep], (out.row[keep], out.col[keep])), shape=out.shape)


def best_rewrites(
    chain: AbsorbingChain, success_of: np.ndarray, *, utterance_of_success: np.ndarray, meaning: np.ndarray | None = None
) -> tuple[np.ndarray, ...]:
    """For every transient state u, the success (other than its own) its chains most likely end in.

    ``success_of[u]`` is the absorbing id of u's own success (-1 if none); ``utterance_of_success[a]``
    is the transient id whose success absorbing state ``a`` is (-1 for FAIL). ``meaning[v]`` (optional)
    groups utterances that mean the same (e.g. the same logged interpretation): the best group is the
    one u's chains most likely end in, and the target is that group's most likely utterance.

    Returns (u, v, p_v, p_self, p_success, p_group): the target v, the probability of ending in v's
    success, in u's own success, in any success, and in any success of v's group (so p_group /
    p_success is the share of u's successful chains that end in v's meaning).
    """
    if chain.rows.size == 0:
        e = np.zeros(0, dtype=np.int64)
        z = np.zeros(0)
        return e, e, z, z, z, z
    target = utterance_of_success[chain.cols]
    p_success = np.bincount(chain.rows, weights=chain.probs * (target >= 0), minlength=chain.n_transient)
    own = success_of[chain.rows] == chain.cols
    p_self = np.zeros(chain.n_transient)
    p_self[chain.rows[own]] = chain.probs[own]
    cand = (target >= 0) & (target != chain.rows)
    rows, tgt, probs = chain.rows[cand], target[cand], chain.probs[cand]
    group = meaning[tgt] if meaning is not None else tgt
    # probability per (row, group), then per row the best group, then the best utterance in it
    key = np.unique(np.stack([rows, group]), axis=1, return_inverse=True)[1].ravel() if rows.size else np.zeros(0, dtype=np.int64)
    p_group = np.bincount(key, weights=probs)[key] if rows.size else np.zeros(0)
    order = np.lexsort((tgt, -probs, group, -p_group, rows))
    rows, tgt, probs, p_group = rows[order], tgt[order], probs[order], p_group[order]
    first = np.ones(rows.size, dtype=bool)
    first[1:] = rows[1:] != rows[:-1]
    u = rows[first]
    return u, tgt[first], probs[first], p_self[u], p_success[u], p_group[first]
