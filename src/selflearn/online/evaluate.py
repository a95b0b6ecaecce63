"""How well the online layers find the rewrite that works, on failing requests whose rephrase chain
reached a working turn (a hit means what the chain reached): retrieval recall of the semantic and the
phonetic path, and the ranker's first choice over every candidate."""

from __future__ import annotations

import random

import numpy as np

from .memory import GlobalMemory
from .features import FEATURES
from .online_rewriter import OnlineRewriter
from .replay import replay_examples, request_of
from .train import History

__all__ = ["retrieval_recall", "retrieval_recall_with_own", "ranked_recall", "replayed_recall"]


def _sample(h: History, users: set[str] | None, limit: int, seed: int) -> list[int]:
    rows = [i for i in h.target if users is None or h.rows[i]["user_id"] in users]
    return random.Random(seed).sample(rows, min(limit, len(rows)))


def _index(encoder, g: GlobalMemory):
    """The global layer's candidates indexed under ``encoder`` (faiss, inner product), and the
    meanings they hold."""
    import faiss

    vecs = encoder.encode([g.texts[i] for i in g.candidates])
    index = faiss.IndexFlatIP(vecs.shape[1])
    index.add(vecs)
    return index, {g.meaning_of(int(i)) for i in g.candidates}


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
    index, indexed = _index(encoder, g)
    _, ids = index.search(encoder.encode([h.rows[i]["text"] for i in rows]), k_max + 1)
    hits = {f"recall@{k}": 0 for k in ks} | ({f"union@{k}": 0 for k in ks} if phonetic else {})
    reachable = 0
    for r, found in zip(rows, ids):
        want, q = h.rows[h.target[r]]["meaning"], h.rows[r]["text"]
        semantic = [int(g.candidates[j]) for j in found if j >= 0 and g.texts[g.candidates[j]] != q][:k_max]
        ranked = [int(t) for t in g.phonetic_search(q, k_max + 1)[0] if g.texts[t] != q][:k_max] if phonetic else semantic
        reachable += want in indexed
        for k in ks:
            hits[f"recall@{k}"] += want in {g.meaning_of(t) for t in ranked[:k]}
            if phonetic:
                hits[f"union@{k}"] += want in {g.meaning_of(t) for t in semantic[:k] + ranked[:k]}
    n = max(len(rows), 1)
    return {"queries": len(rows), "reachable": reachable / n, **{k: v / n for k, v in hits.items()}}


def retrieval_recall_with_own(encoder, g: GlobalMemory, h: History, *, users: set[str] | None = None, ks: tuple[int, ...] = (1, 5),
                              limit: int = 5000, seed: int = 0, k_global: int = 10) -> dict:
    """Recall@k when the user's own requests that worked before (as heard, their meaning as the
    assistant understood it then: what the personal layer holds) are candidates beside the
    ``k_global`` nearest of the global index, all ranked by cosine under ``encoder``. ``reachable``:
    the share whose meaning the global index or the user's own working requests have (the ceiling
    of any ranking of both layers' candidates); ``reachable_global``: the index's alone;
    ``same_meaning``: the share whose chain reached the meaning the request already had (it failed
    after understanding: a rewrite cannot fix it, only keep it)."""
    rows = _sample(h, users, limit, seed)
    chosen = set(rows)
    index, indexed = _index(encoder, g)
    own_before: dict[int, dict[str, str]] = {}
    own: dict[str, dict[str, str]] = {}
    asking = {h.rows[i]["user_id"] for i in chosen}
    for i, r in enumerate(h.rows):
        if i in chosen:
            own_before[i] = {t: m for t, m in own.get(r["user_id"], {}).items() if t != r["text"]}
        if r["ok"] and not r["rewrite"] and r["user_id"] in asking:
            own.setdefault(r["user_id"], {})[r["text"]] = r["meaning"]
    texts = sorted({t for m in own_before.values() for t in m})
    vec_of = dict(zip(texts, encoder.encode(texts))) if texts else {}
    qv = encoder.encode([h.rows[i]["text"] for i in rows])
    cos, ids = index.search(qv, k_global + 1)
    hits = {f"recall@{k}": 0 for k in ks} | {"reachable": 0, "reachable_global": 0, "same_meaning": 0}
    for r, v, found, score in zip(rows, qv, ids, cos):
        want, q = h.rows[h.target[r]]["meaning"], h.rows[r]["text"]
        cands = [(float(c), g.meaning_of(int(g.candidates[j]))) for j, c in zip(found, score) if j >= 0 and g.texts[g.candidates[j]] != q][:k_global]
        cands += [(float(vec_of[t] @ v), m) for t, m in own_before[r].items()]
        ranked = [m for _, m in sorted(cands, key=lambda x: -x[0])]
        hits["reachable_global"] += want in indexed
        hits["reachable"] += want in indexed or want in own_before[r].values()
        hits["same_meaning"] += want == h.rows[r]["meaning"]
        for k in ks:
            hits[f"recall@{k}"] += want in ranked[:k]
    n = max(len(rows), 1)
    return {"queries": len(rows), **{k: v / n for k, v in hits.items()}}


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
        ok = g.row.get(texts[b]) is not None and g.meaning_of(g.row[texts[b]]) == h.rows[h.target[i]]["meaning"]
        top1 += ok
        if s[b] >= rw.threshold:
            served += 1
            right += ok
    n = max(len(rows), 1)
    return {"queries": len(rows), "top1": top1 / n, "served": served / n, "served_precision": right / served if served else None}


def replayed_recall(rw: OnlineRewriter, h: History, *, users: set[str] | None = None, ks: tuple[int, ...] = (1, 5),
                    limit: int = 5000, seed: int = 0) -> dict:
    """Recall@k of what the rewriter ranks, as it would have ranked it then: the logs are replayed
    in time order through ``rw``'s personal layer (start it empty), and at each sampled failing
    request a chain fixed, its candidates from every layer (``rw.layers``, ``rw.k_*``) are ordered
    by the ranker and, for comparison, by cosine alone. A hit: a candidate known by the meaning the
    chain reached (:meth:`OnlineRewriter.meanings`). For all such requests and for the ``fixable``
    ones (the chain reached another meaning: what a rewrite can fix); ``reachable`` is the share
    whose meaning any candidate has; ``top_source``: where the ranker's first choice came from when
    it was right."""
    rows = _sample(h, users, limit, seed)
    rw.warm([h.rows[i]["text"] for i in rows])
    cos_col = FEATURES.index("retrieval_cosine")
    out: dict = {}
    groups = {"all": lambda i: True, "fixable": lambda i: h.rows[i]["meaning"] != h.rows[h.target[i]]["meaning"]}
    hits = {g: {f"{how}@{k}": 0 for how in ("ranker", "cosine") for k in ks} | {"reachable": 0, "queries": 0} for g in groups}
    right_from: dict[str, int] = {}
    for i, texts, x, _, sources, meanings in replay_examples(rw, h, set(rows)):
        want = h.rows[h.target[i]]["meaning"]
        order = {"ranker": np.argsort(-rw.ranker.score(x), kind="stable") if texts else [],
                 "cosine": np.argsort(-x[:, cos_col], kind="stable") if texts else []}
        for name, member in groups.items():
            if not member(i):
                continue
            c = hits[name]
            c["queries"] += 1
            c["reachable"] += want in meanings
            for how, o in order.items():
                for k in ks:
                    c[f"{how}@{k}"] += want in {meanings[j] for j in o[:k]}
        if texts and meanings[order["ranker"][0]] == want:
            right_from[sources[order["ranker"][0]]] = right_from.get(sources[order["ranker"][0]], 0) + 1
    for name, c in hits.items():
        n = max(c["queries"], 1)
        out[name] = {"queries": c["queries"], **{k: v / n for k, v in c.items() if k != "queries"}}
    out["top_source"] = right_from
    return out
