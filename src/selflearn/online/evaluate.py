"""How well the online layers find the rewrite that works, on failing requests whose rephrase chain
reached a working turn (a hit means what the chain reached): retrieval recall of the semantic and the
phonetic path, and the ranker's first choice over every candidate."""

from __future__ import annotations

import random

import numpy as np

from .memory import GlobalMemory
from .online_rewriter import OnlineRewriter
from .train import History, request_of

__all__ = ["retrieval_recall", "ranked_recall"]


def _sample(h: History, users: set[str] | None, limit: int, seed: int) -> list[int]:
    rows = [i for i in h.target if users is None or h.rows[i]["user_id"] in users]
    return random.Random(seed).sample(rows, min(limit, len(rows)))


def _meaning(g: GlobalMemory, text_id: int) -> str | None:
    return g.meanings[g.meaning[text_id]] if g.meaning[text_id] >= 0 else None


def retrieval_recall(encoder, g: GlobalMemory, h: History, *, users: set[str] | None = None, ks: tuple[int, ...] = (1, 5),
                     limit: int = 5000, seed: int = 0, phonetic: bool = False) -> dict:
    """Recall@k of the global index under ``encoder`` (the index is re-encoded with it): the share
    of the requests whose top k candidates hold one with the meaning the chain reached. With
    ``phonetic`` the ranking is by sound instead (metaphone codes; the encoder is not used), and
    ``union@k`` is the share whose k nearest in meaning together with the k nearest in sound hold
    one (what the ranker gets to choose from). ``reachable`` is the share whose meaning any indexed
    candidate has: no retrieval can do better."""
    rows = _sample(h, users, limit, seed)
    k_max = max(ks)
    import faiss

    vecs = encoder.encode([g.texts[i] for i in g.candidates])
    index = faiss.IndexFlatIP(vecs.shape[1])
    index.add(vecs)
    _, ids = index.search(encoder.encode([h.rows[i]["text"] for i in rows]), k_max + 1)
    indexed = {_meaning(g, int(i)) for i in g.candidates}
    hits = {f"recall@{k}": 0 for k in ks} | ({f"union@{k}": 0 for k in ks} if phonetic else {})
    reachable = 0
    for r, found in zip(rows, ids):
        want, q = h.rows[h.target[r]]["meaning"], h.rows[r]["text"]
        semantic = [int(g.candidates[j]) for j in found if j >= 0 and g.texts[g.candidates[j]] != q][:k_max]
        ranked = [int(t) for t in g.phonetic_search(q, k_max + 1)[0] if g.texts[t] != q][:k_max] if phonetic else semantic
        reachable += want in indexed
        for k in ks:
            hits[f"recall@{k}"] += want in {_meaning(g, t) for t in ranked[:k]}
            if phonetic:
                hits[f"union@{k}"] += want in {_meaning(g, t) for t in semantic[:k] + ranked[:k]}
    n = max(len(rows), 1)
    return {"queries": len(rows), "reachable": reachable / n, **{k: v / n for k, v in hits.items()}}


def ranked_recall(rw: OnlineRewriter, h: History, *, users: set[str] | None = None, limit: int = 2000, seed: int = 0) -> dict:
    """The global layer end to end (no personal history): the share of the requests whose
    highest-ranked candidate has the meaning the chain reached (``top1``), the share served (its
    score clears the threshold) and, of those, the share right (``served_precision``)."""
    g = rw.global_
    rows = _sample(h, users, limit, seed)
    top1 = served = right = 0
    rw.warm([h.rows[i]["text"] for i in rows])
    for i in rows:
        r = h.rows[i]
        texts, _, x = rw.candidates(r["text"], user_id="", **request_of(r))
        if not texts:
            continue
        s = rw.ranker.score(x)
        b = int(np.argmax(s))
        ok = g.row.get(texts[b]) is not None and _meaning(g, g.row[texts[b]]) == h.rows[h.target[i]]["meaning"]
        top1 += ok
        if s[b] >= rw.threshold:
            served += 1
            right += ok
    n = max(len(rows), 1)
    return {"queries": len(rows), "top1": top1 / n, "served": served / n, "served_precision": right / served if served else None}
