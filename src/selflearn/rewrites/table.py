"""Mine the rewrite table from the store's signals, and serve it (`TableRewriter`).

Each turn of the ``signals`` table becomes one edge of the chain graph: a rephrase candidate goes
to the next utterance, a turn that looks fine (defect score below ``success_below``) to its own
success, any other turn to FAIL. Counting edges is one DuckDB aggregation; solving is
:mod:`selflearn.rewrites.markov`; filtering is vectorised.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InvalidInputError, NotFittedError, explain
from ..models.base import no_progress
from ..privacy.kanon import K_DEFAULT, check_k, users_per_text_sql
from ..signals.feedback import DEFECT_AT
from ..store.store import Store
from ..text import normalise, normalise_sql
from .markov import best_rewrites, solve_absorbing

__all__ = ["MiningConfig", "mine_rewrites", "TableRewriter", "TABLE_SCHEMA", "BASELINE_REPHRASES", "MODEL_REPHRASES",
           "CONFIDENCE_BANDS", "confidence_band"]

#: bands of the recogniser's confidence (lower edges). The same heard text is right as heard more
#: often when the recogniser was sure of it, so the table judges an utterance per band.
CONFIDENCE_BANDS = (0.0, 0.5, 0.7, 0.85)


def confidence_band(conf: object) -> int | None:
    """The band of an ASR confidence in [0, 1]; None when unknown or not a confidence."""
    if isinstance(conf, bool) or not isinstance(conf, (int, float)) or not 0.0 <= conf <= 1.0:
        return None
    return max(i for i, b in enumerate(CONFIDENCE_BANDS) if conf >= b)

TABLE_SCHEMA = pa.schema(
    [
        ("utterance", pa.string()),
        ("rewrite", pa.string()),
        ("probability", pa.float64()),  # chains from `utterance` end in `rewrite`'s success
        ("self_probability", pa.float64()),  # ... end in `utterance`'s own success
        ("share", pa.float64()),  # of the chains from `utterance` that end in a success, the share ending in `rewrite`'s meaning
        ("direct_success", pa.float64()),  # share of `utterance`'s turns that looked fine as they were
        ("rewrite_success", pa.float64()),  # share of `rewrite`'s turns that looked fine
        ("support", pa.int64()),  # turns of `utterance` seen
        ("rephrase_support", pa.int64()),  # of which were followed by a rephrase
        ("band_support", pa.list_(pa.int64())),  # turns of `utterance` per ASR-confidence band (CONFIDENCE_BANDS)
        ("band_success", pa.list_(pa.float64())),  # ... and the share of them that looked fine as they were
    ]
)


@dataclass(frozen=True)
class MiningConfig:
    success_below: float = DEFECT_AT  # a turn with a lower defect score counts as a success
    min_support: int = 3  # turns of the utterance seen
    min_probability: float = 0.6  # least success probability of the rewrite (how often it works when said)
    min_share: float = 0.5  # least share of the utterance's successful chains that end in the rewrite
    max_direct_success: float = 0.5  # never rewrite an utterance that usually succeeds as it is
    min_gain: float = 0.2  # the rewrite must succeed this much more often than the utterance
    min_users: int = K_DEFAULT  # k-anonymity: the utterance and the rewrite each said by at least this many users

    def check(self) -> "MiningConfig":
        check_k(self.min_users)
        for name in ("success_below", "min_probability", "min_share", "max_direct_success", "min_gain"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise InvalidInputError(explain(f"{name}={v}", "must be in [0, 1]", "use a probability"))
        if not isinstance(self.min_support, int) or self.min_support < 1:
            raise InvalidInputError(explain(f"min_support={self.min_support!r}", "must be an integer >= 1", "use e.g. 3"))
        return self


_EDGES_SQL = """
WITH r AS ({rephrases}),
e AS (
  SELECT s.text_norm AS u,
         CASE WHEN r.rephrase IS NOT NULL THEN 'next' WHEN s.defect_score < {success_below} THEN 'success' ELSE 'fail' END AS kind,
         r.rephrase AS v
  FROM signals s LEFT JOIN r USING (session_id, turn_index) WHERE s.text_norm <> ''
)
SELECT u, kind, v, count(*)::BIGINT AS n FROM e GROUP BY ALL ORDER BY u, kind, v NULLS FIRST
"""


#: rephrase pairs from the signals' pairwise baseline
BASELINE_REPHRASES = "SELECT session_id, turn_index, next_norm AS rephrase FROM signals WHERE rephrase_candidate"
#: rephrase pairs a model wrote to the store's ``rephrases`` table
MODEL_REPHRASES = f"SELECT session_id, turn_index, {normalise_sql('rephrase')} AS rephrase FROM rephrases"


def mine_rewrites(store: Store, config: MiningConfig | None = None, *, rephrases: str = BASELINE_REPHRASES, progress=None) -> tuple[pa.Table, dict]:
    """Mine the rewrite table from the store's ``signals`` (run ``compute_signals`` first) and
    rephrase pairs (``rephrases``: a SELECT of session_id, turn_index, rephrase text).
    Returns (table, statistics)."""
    c = (config or MiningConfig()).check()
    say = progress or no_progress
    started = time.perf_counter()
    con = store.reader()
    if not store.has_derived("signals"):
        raise InvalidInputError(explain(str(store.path), "has no signals table", "run `selflearn rewrites mine` (it computes signals first)"))
    say("aggregate chains", 0, 0)
    cur = con.execute(_EDGES_SQL.format(success_below=float(c.success_below), rephrases=rephrases))
    rows = cur.fetchall()
    texts: dict[str, int] = {}
    for u, _, v, _ in rows:
        texts.setdefault(u, len(texts))
        if v is not None:
            texts.setdefault(v, len(texts))
    n_t = len(texts)
    kinds = np.array([k for _, k, _, _ in rows])
    u_id = np.array([texts[u] for u, _, _, _ in rows], dtype=np.int64)
    v_id = np.array([texts[v] if v is not None else -1 for _, _, v, _ in rows], dtype=np.int64)
    n = np.array([x for *_, x in rows], dtype=float)
    # absorbing ids: success of utterance k is k; FAIL is n_t
    dst = np.where(kinds == "next", v_id, np.where(kinds == "success", n_t + u_id, n_t + n_t))
    say("solve", 0, 0)
    chain = solve_absorbing(u_id, dst, n, n_transient=n_t, n_absorbing=n_t + 1)
    success_of = np.arange(n_t)
    utterance_of_success = np.concatenate([np.arange(n_t), [-1]])
    say("meanings", 0, 0)
    meaning = _meanings(con, texts, c.success_below)
    u, v, p, p_self, p_success, p_group = best_rewrites(chain, success_of, utterance_of_success=utterance_of_success, meaning=meaning)
    share = p_group / np.maximum(p_success, 1e-12)
    support = np.bincount(u_id, weights=n, minlength=n_t)
    direct = np.bincount(u_id, weights=n * (kinds == "success"), minlength=n_t) / np.maximum(support, 1)
    reph = np.bincount(u_id, weights=n * (kinds == "next"), minlength=n_t)
    users = np.zeros(n_t, np.int64)
    for text, k in con.execute(users_per_text_sql("signals")).fetchall():
        if text in texts:
            users[texts[text]] = k
    say("filter", 0, 0)
    base_keep = (
        (support[u] >= c.min_support)
        & (direct[v] >= c.min_probability)
        & (share >= c.min_share)
        & (direct[u] <= c.max_direct_success)
        & (direct[v] >= direct[u] + c.min_gain)
    )
    anonymous = (users[u] >= c.min_users) & (users[v] >= c.min_users)
    keep = base_keep & anonymous
    names = np.array(list(texts), dtype=object)
    bands = _bands(con, set(names[u[keep]].tolist()), c.success_below)
    empty = ([0] * len(CONFIDENCE_BANDS), [0.0] * len(CONFIDENCE_BANDS))
    table = pa.table(
        {
            "utterance": names[u[keep]].tolist(),
            "rewrite": names[v[keep]].tolist(),
            "probability": p[keep],
            "self_probability": p_self[keep],
            "share": share[keep],
            "direct_success": direct[u[keep]],
            "rewrite_success": direct[v[keep]],
            "support": support[u[keep]].astype(np.int64),
            "rephrase_support": reph[u[keep]].astype(np.int64),
            "band_support": [bands.get(x, empty)[0] for x in names[u[keep]]],
            "band_success": [bands.get(x, empty)[1] for x in names[u[keep]]],
        },
        schema=TABLE_SCHEMA,
    ).sort_by([("support", "descending"), ("utterance", "ascending")])
    stats = {
        "utterances": n_t,
        "edges": len(rows),
        "turns": int(n.sum()),
        "candidates": int(u.size),
        "rewrites": table.num_rows,
        "min_users": c.min_users,
        "withheld_by_k_anonymity": int((base_keep & ~anonymous).sum()),
        "unreachable_utterances": int(chain.unreachable.size),
        "seconds": round(time.perf_counter() - started, 2),
        "config": asdict(c),
    }
    return table, stats


def _bands(con, utterances: set[str], success_below: float) -> dict[str, tuple[list[int], list[float]]]:
    """Per utterance: its turns in each ASR-confidence band and the share that looked fine as they were."""
    if not utterances:
        return {}
    edges = list(CONFIDENCE_BANDS[1:])
    band_sql = " ".join(f"WHEN t.asr_confidence >= {e} THEN {len(edges) - k}" for k, e in enumerate(reversed(edges)))
    rows = con.execute(
        f"""SELECT s.text_norm, CASE {band_sql} ELSE 0 END AS band, count(*) AS n,
                   count(*) FILTER (WHERE s.defect_score < {float(success_below)} AND NOT coalesce(s.rephrase_candidate, false)) AS ok
            FROM signals s JOIN turns t USING (session_id, turn_index)
            WHERE t.asr_confidence IS NOT NULL AND s.text_norm <> '' GROUP BY ALL"""
    ).fetchall()
    out: dict[str, tuple[list[int], list[float]]] = {}
    for text, band, n, ok in rows:
        if text in utterances:
            support, success = out.setdefault(text, ([0] * len(CONFIDENCE_BANDS), [0.0] * len(CONFIDENCE_BANDS)))
            support[band], success[band] = int(n), ok / n
    return out


def _meanings(con, texts: dict[str, int], success_below: float) -> np.ndarray:
    """Group utterances by what the assistant understood when they worked: the most common logged
    interpretation (intent + slots) of each utterance's successful turns. Successes with the same
    meaning are interchangeable rewrite targets. Utterances that never worked get their own group."""
    rows = con.execute(
        f"""SELECT s.text_norm, arg_max(t.intent || ' ' || CAST(t.slots AS VARCHAR), n) AS meaning FROM (
              SELECT session_id, turn_index, text_norm FROM signals WHERE defect_score < {float(success_below)}) s
            JOIN turns t USING (session_id, turn_index)
            JOIN (SELECT s2.text_norm AS a, t2.intent AS i, CAST(t2.slots AS VARCHAR) AS sl, count(*) AS n
                  FROM signals s2 JOIN turns t2 USING (session_id, turn_index)
                  WHERE s2.defect_score < {float(success_below)} GROUP BY ALL) c
              ON c.a = s.text_norm AND c.i IS NOT DISTINCT FROM t.intent AND c.sl = CAST(t.slots AS VARCHAR)
            GROUP BY s.text_norm ORDER BY s.text_norm"""
    ).fetchall()
    keys: dict[str, int] = {}
    meaning = np.arange(len(texts), dtype=np.int64) + len(texts)  # own group by default
    for text, m in rows:
        k = texts.get(text)
        if k is not None and m is not None:
            meaning[k] = keys.setdefault(m, len(keys))
    return meaning


class TableRewriter:
    """Serves a rewrite table: exact lookup of the (whitespace- and case-normalised) utterance.

    The confidence gate: when the caller sends the recogniser's confidence
    (``context["asr_confidence"]``) and, in that confidence band, the utterance was seen at least
    ``gate_min_support`` times and looked fine as heard more than ``gate_above`` of the time, it
    passes through (the mining rule "never rewrite an utterance that usually works as it is", per
    band). ``gate_above=None`` switches the gate off."""

    def __init__(self, path: Path | None = None, *, gate_above: float | None = 0.5, gate_min_support: int = 3):
        self.path = path
        self.gate_above = gate_above
        self.gate_min_support = gate_min_support

    def fit(self, table: pa.Table) -> "TableRewriter":
        missing = {"utterance", "rewrite"} - set(table.column_names)
        if missing:
            raise InvalidInputError(explain(f"columns {sorted(table.column_names)}", f"a rewrite table needs {sorted(missing)}", "write it with `selflearn rewrites mine`"))
        keys = [normalise(x) for x in table.column("utterance").to_pylist()]
        self.table_ = dict(zip(keys, table.column("rewrite").to_pylist()))
        self.bands_ = {}  # tables mined before the gate existed have no bands: never gated
        if {"band_support", "band_success"} <= set(table.column_names):
            self.bands_ = dict(zip(keys, zip(table.column("band_support").to_pylist(), table.column("band_success").to_pylist())))
        self.gated = 0  # rewrites held back by the confidence gate
        return self

    @classmethod
    def load(cls, path: Path) -> "TableRewriter":
        try:
            table = pq.read_table(str(path))
        except (OSError, pa.ArrowInvalid) as exc:
            raise InvalidInputError(explain(str(path), f"must be a rewrite table in Parquet ({exc})", "pass the file `selflearn rewrites mine` wrote")) from exc
        return cls(path).fit(table)

    def rewrite(self, utterance: str, *, user_id: str = "", device: dict | None = None, context: dict | None = None) -> str | None:
        if getattr(self, "table_", None) is None:
            raise NotFittedError(explain("TableRewriter", "has no table", "fit(table) or TableRewriter.load(path)"))
        q = normalise(utterance)
        new = self.table_.get(q)
        if new is not None and self._works_as_heard(q, (context or {}).get("asr_confidence")):
            self.gated += 1
            return None
        return new

    def _works_as_heard(self, q: str, conf: object) -> bool:
        band = confidence_band(conf)
        if self.gate_above is None or band is None or q not in self.bands_:
            return False
        support, success = self.bands_[q]
        return support[band] >= self.gate_min_support and success[band] > self.gate_above

    def __len__(self) -> int:
        return len(getattr(self, "table_", {}))




def write_table(table: pa.Table, stats: dict, path: Path) -> None:
    """Parquet with the mining statistics in the file's metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {b"selflearn.mining": json.dumps(stats).encode()}
    pq.write_table(table.replace_schema_metadata(meta), str(path))
