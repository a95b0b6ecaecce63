"""What `selflearn fpi` does, as library calls: read an annotated failure-point set, train (on it, or
on weak labels from the logs), evaluate, and add failure points to the store with a root-cause
breakdown."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InvalidInputError, explain
from ..metrics import classification_report
from ..store.derived import replace_table
from ..store.store import Store
from .model import FailurePointModel
from .rules import RuleBaseline
from .turns import CLASSES, FpiTurn, store_turns
from .weak import weak_failure_points

__all__ = ["open_store", "read_failure_labels", "labelled", "train_fpi", "evaluate_fpi", "fpi_metrics", "apply_fpi", "breakdown"]


def open_store(path: Path) -> Store:
    """An existing store (an error naming the fix when there is none at ``path``)."""
    if not Path(path).exists():
        raise InvalidInputError(explain(str(path), "does not exist", "import logs first (`selflearn store import FILE --store ...`)"))
    return Store(path)


def read_failure_labels(path: Path, ids=None) -> dict[tuple[str, int], str]:
    """An annotated set: a Parquet, CSV or JSONL file with ``session_id``, ``turn_index`` and
    ``failure_point`` per turn (a world run's ``truth/turns.parquet`` is one). Annotators see the
    logs' own session ids: with ``ids`` (the store's pseudonyms) they are turned into the store's."""
    import duckdb

    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(explain(str(path), "does not exist", "pass a Parquet/CSV/JSONL file with session_id, turn_index, failure_point"))
    reader = {".parquet": "read_parquet", ".csv": "read_csv_auto", ".jsonl": "read_json_auto", ".json": "read_json_auto"}.get(path.suffix.lower())
    if reader is None:
        raise InvalidInputError(explain(path.suffix or str(path), "must be .parquet, .csv or .jsonl", "convert the annotations to one of them"))
    con = duckdb.connect()
    try:
        rel = con.execute(f"SELECT * FROM {reader}(?)", [str(path)])
        names = [d[0] for d in rel.description]
        missing = {"session_id", "turn_index", "failure_point"} - set(names)
        if missing:
            raise InvalidInputError(explain(f"{path}: columns {names}", f"needs columns {sorted(missing)}", "add them (one row per annotated turn)"))
        ix = [names.index(c) for c in ("session_id", "turn_index", "failure_point")]
        rows = [(r[ix[0]], r[ix[1]], r[ix[2]]) for r in rel.fetchall()]
    except duckdb.Error as exc:
        raise InvalidInputError(explain(str(path), f"cannot be read ({exc})", "pass a valid Parquet/CSV/JSONL file")) from exc
    finally:
        con.close()
    bad = sorted({str(fp) for _, _, fp in rows if fp not in CLASSES})
    if bad:
        raise InvalidInputError(explain(f"failure_point values {bad[:5]}", f"must be one of {list(CLASSES)}", "map your annotation scheme onto these"))
    key = ids.of if ids is not None else str
    return {(key(str(s)), int(i)): fp for s, i, fp in rows}


def labelled(turns: list[FpiTurn], labels: dict[tuple[str, int], str]) -> tuple[list[FpiTurn], list[str]]:
    """The turns that have an annotation, and their annotations (an error when none match)."""
    keep = [t for t in turns if (t.session_id, t.turn_index) in labels]
    if not keep:
        raise InvalidInputError(explain(f"{len(labels)} annotations", "none matches a turn of the store (session_id, turn_index)",
                                        "annotate turns of the logs in this store"))
    return keep, [labels[(t.session_id, t.turn_index)] for t in keep]


def train_fpi(store: Store, out: Path, model: FailurePointModel, *, labels_path: Path | None = None, progress=None) -> dict:
    """Train on an annotated set (``labels_path``) or, without one, on weak labels from the logs; save."""
    turns = store_turns(store)
    if labels_path is not None:
        turns, y = labelled(turns, read_failure_labels(labels_path, store.pseudonyms()))
        source = f"annotations: {labels_path}"
    else:
        y = weak_failure_points(turns)
        source = "weak labels from signals and traces"
    model.fit(turns, y, progress=progress)
    model.save(Path(out))
    return {"turns": len(turns), "labels": source, "class_counts": model.class_counts_, "train_seconds": model.train_seconds_,
            "privacy": model.privacy_}


def fpi_metrics(y_true: list[str], y_pred: list[str]) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix (rows:
    reference, columns: predicted, in :data:`CLASSES` order)."""
    present = [c for c in CLASSES if c in set(y_true) | set(y_pred)]
    return {"turns": len(y_true), **classification_report(y_true, y_pred, present, confusion_labels=CLASSES)}


def evaluate_fpi(predictor, store: Store, labels_path: Path) -> dict:
    """Metrics of ``predictor`` (anything with ``predict(turns)``; "rules" for the confidence-threshold
    rules at their default thresholds) on the store's annotated turns."""
    turns, y = labelled(store_turns(store), read_failure_labels(labels_path, store.pseudonyms()))
    if predictor == "rules":
        predictor = RuleBaseline().fit(turns)
    return fpi_metrics(y, predictor.predict(turns))


def apply_fpi(store: Store, model: FailurePointModel) -> dict:
    """Add a failure point to every turn of the store (table ``failure_points``, replaced in one
    transaction) and return the root-cause breakdown."""
    import pyarrow as pa

    turns = store_turns(store)
    proba = model.predict_proba(turns)
    table = pa.table({"session_id": [t.session_id for t in turns], "turn_index": pa.array([t.turn_index for t in turns], pa.int32()),
                      "failure_point": [CLASSES[i] for i in proba.argmax(1)] if len(turns) else pa.array([], pa.string()),
                      "confidence": pa.array(proba.max(1) if len(turns) else np.zeros(0), pa.float64())})
    with store.transaction() as con:
        con.register("_fp", table)
        replace_table(con, "failure_points", "SELECT * FROM _fp", {"model": model.component, "params": model.saved_params(),
                                                                    "data_fingerprint": getattr(model, "data_fingerprint_", None)})
        con.unregister("_fp")
    return breakdown(store)


def breakdown(store: Store, *, top: int = 10) -> dict:
    """Root causes of the store's defects: per component, per domain and intent, per device type, per day."""
    if not store.has_derived("failure_points"):
        raise InvalidInputError(explain(str(store.path), "has no failure points", "run `selflearn fpi apply` first"))
    con = store.reader()
    total = con.execute("SELECT count(*) FROM failure_points").fetchall()[0][0]
    comp = con.execute("SELECT failure_point, count(*) FROM failure_points GROUP BY 1 ORDER BY 2 DESC").fetchall()
    defects = sum(n for c, n in comp if c != "correct")

    def by(col: str, limit: int | None) -> list[dict]:
        rows = con.execute(
            f"""SELECT {col} AS k, count(*) AS turns, count(*) FILTER (WHERE f.failure_point <> 'correct') AS defects,
                       {', '.join(f"count(*) FILTER (WHERE f.failure_point = '{c}') AS {c}" for c in CLASSES if c != 'correct')}
                FROM failure_points f JOIN turns t USING (session_id, turn_index)
                GROUP BY 1 ORDER BY defects DESC, k {'LIMIT ' + str(limit) if limit else ''}""").fetchall()
        keys = ["key", "turns", "defects"] + [c for c in CLASSES if c != "correct"]
        return [dict(zip(keys, [str(r[0])] + list(r[1:]))) for r in rows]

    return {"turns": total, "defects": defects, "defect_rate": defects / total if total else 0.0,
            "by_component": {c: {"turns": n, "share_of_defects": n / defects if defects and c != "correct" else None} for c, n in comp},
            "by_domain": by("coalesce(t.domain, '')", top), "by_intent": by("coalesce(t.intent, '')", top),
            "by_device_type": by("t.device_type", None), "by_day": by("strftime(t.ts, '%Y-%m-%d')", None)}
