"""`selflearn report write`: one self-contained HTML file (plotly.js inlined once, no network) with what a
team looks at every morning. The page is a Jinja2 template (autoescaped); texts from the logs and the
input files are shortened to a few hundred characters; the store is opened read-only."""

from __future__ import annotations

import html
import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from markupsafe import Markup

from .. import __version__
from ..errors import InvalidInputError, explain
from ..store.store import Store
from ..templating import clip, pct, render
from ..privacy.kanon import K_DEFAULT
from .data import store_summary

__all__ = ["write_report", "read_ab_result", "read_label_curves", "read_rewrite_table", "read_audit"]

def read_ab_result(path: Path) -> dict:
    """An A/B result as `selflearn world ab --json` writes it."""
    try:
        res = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInputError(explain(str(path), f"must be the JSON `selflearn world ab --json` prints ({exc})", "save it with `selflearn world ab ... --json > ab.json`")) from exc
    need = {"control_defect_rate", "treatment_defect_rate", "relative_reduction", "ci_low", "ci_high"}
    if not isinstance(res, dict) or need - set(res):
        raise InvalidInputError(explain(str(path), f"an A/B result needs {sorted(need)}", "save it with `selflearn world ab ... --json > ab.json`"))
    return res


def read_label_curves(model_dir: Path) -> dict:
    """The precision/coverage curves a label model was calibrated with (its config.json)."""
    try:
        cfg = json.loads((Path(model_dir) / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInputError(explain(str(model_dir), f"must be a label model directory ({exc})", "train one with `selflearn labels train`")) from exc
    return ((cfg.get("calibration") or {}).get("curves")) or {}


def read_audit(path: Path) -> dict:
    """A privacy audit as `selflearn privacy audit --out` writes it."""
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInputError(explain(str(path), f"must be the JSON `selflearn privacy audit --out` writes ({exc})", "run the audit with --out audit.json")) from exc
    if not isinstance(report, dict) or "model" not in report or ("membership" not in report and "personal_isolation" not in report):
        raise InvalidInputError(explain(str(path), "a privacy audit needs 'model' and 'membership' or 'personal_isolation'", "run the audit with --out audit.json"))
    return report


def _audit_view(audits: list[tuple[str, dict]], fig) -> dict:
    """The privacy section: one row per audit and attack, user-level ROC curves, exposure by repetitions."""
    import plotly.graph_objects as go

    from ..governance.gate import gate_text, heldout_text

    rows, gates, roc, exp = [], [], go.Figure(), go.Figure()
    for name, a in audits:
        eps = (a.get("privacy") or {}).get("epsilon")
        who = f"{name} ({a['model']}, {'epsilon ' + _num(eps) if eps else 'no DP'})"
        if gate_text(a):
            gates.append(f"{clip(who, 120)}: {gate_text(a)}")
        if a.get("personal_isolation"):
            iso = a["personal_isolation"]
            rows.append([clip(who, 120), "personal memory", "another user's entry", "", f"{iso['leaks']} leaks in {iso['requests']:,} requests", "", "", "", ""])
        for level in ("users", "records") if a.get("membership") else ():
            for attack, r in a["membership"][level].items():
                num = {k: f"{r[k]:.3f}" if isinstance(r.get(k), (int, float)) else "n/a" for k in ("advantage_null_95", "tpr_at_fpr_0.01", "tpr_at_fpr_0.001")}
                rows.append([clip(who, 120), level, attack, f"{r['auc']:.3f}", f"{r['advantage']:.3f}", num["advantage_null_95"], heldout_text(r),
                             num["tpr_at_fpr_0.01"], num["tpr_at_fpr_0.001"]])
                if level == "users":
                    roc.add_trace(go.Scatter(x=r["roc"]["fpr"], y=r["roc"]["tpr"], mode="lines", name=_label(f"{name} {attack}")))
        canaries = [c for c in a.get("canaries") or [] if c.get("exposure_bits") is not None]
        if canaries:
            exp.add_trace(go.Scatter(x=[c["repetitions"] for c in canaries], y=[c["exposure_bits"] for c in canaries], mode="markers", name=_label(name)))
    roc.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "#999"}, name="chance"))
    roc.update_layout(title="membership inference, user level (ROC)", xaxis={"title": "false-positive rate"}, yaxis={"title": "true-positive rate"})
    exp.update_layout(title="canary exposure by repetitions", xaxis={"title": "times the canary was said", "type": "log"}, yaxis={"title": "exposure (bits)"})
    return {"rows": rows, "gates": gates, "roc": fig(roc) if len(roc.data) > 1 else None, "exposure": fig(exp) if exp.data else None}


def read_rewrite_table(path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(str(path))
    except (OSError, pa.ArrowInvalid) as exc:
        raise InvalidInputError(explain(str(path), f"must be a rewrite table in Parquet ({exc})", "pass the file `selflearn rewrites mine` wrote")) from exc
    if {"utterance", "rewrite"} - set(table.column_names):
        raise InvalidInputError(explain(str(path), "a rewrite table needs the columns utterance and rewrite", "pass the file `selflearn rewrites mine` wrote"))
    return table


class _Figures:
    """Plotly figures as HTML fragments; plotly.js is inlined with the first one only. Plotly escapes
    the JSON it embeds; labels are HTML-escaped too, since plotly renders some tags in them."""

    def __init__(self) -> None:
        self.first = True

    def __call__(self, fig) -> Markup:
        import plotly.io as pio

        fig.update_layout(margin={"l": 50, "r": 20, "t": 40, "b": 40}, height=320, template="plotly_white")
        out = pio.to_html(fig, include_plotlyjs="inline" if self.first else False, full_html=False, config={"displaylogo": False})
        self.first = False
        return Markup(out)  # noqa: S704 (plotly's own HTML; every label in it went through _label)


def _label(x, limit: int = 80) -> str:
    return html.escape(clip(x, limit))


def _days(by_day: list[dict]) -> tuple[list[str], list]:
    """Every calendar day from the first to the last, None where there was no traffic (a gap, not a line)."""
    if not by_day:
        return [], []
    rates = {str(d["key"]): d["defect_rate"] for d in by_day}
    first, last = date.fromisoformat(str(by_day[0]["key"])), date.fromisoformat(str(by_day[-1]["key"]))
    days = [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    return days, [rates.get(d) for d in days]


def _num(x) -> str:
    return f"{x:,}" if isinstance(x, int) and not isinstance(x, bool) else ("" if x is None else clip(x, 40))


def _ratio(x) -> str:
    return f"{x:.1f}:1" if isinstance(x, (int, float)) and not isinstance(x, bool) else "—"


TRANSCRIPT = ["#", "user said", "intent", "assistant", "feedback", "defect score"]


def _transcript(turns: list[dict]) -> list[list]:
    return [[t["turn_index"], clip(t["request"]), t["intent"] or "", clip(t["reply"]), ("barge-in " if t["barge_in"] else "") + (t["feedback"] or ""),
             "—" if t["defect_score"] is None else f"{t['defect_score']:.2f}"] for t in turns]


def write_report(store_path: Path, out: Path, *, rewrites: Path | None = None, ab: list[Path] = (), labels_model: Path | None = None, audits: list[Path] = (),
                 top: int = 10, min_users: int = K_DEFAULT) -> dict:
    """Write the report; returns what it contains (section -> whether it has data). Requests and
    example turns fewer than ``min_users`` distinct users said are left out (k-anonymity)."""
    import plotly.graph_objects as go

    if not Path(store_path).exists():
        raise InvalidInputError(explain(str(store_path), "does not exist", "import logs first (`selflearn store import FILE --store ...`)"))
    ab_results = [(Path(p).name, read_ab_result(p)) for p in ab]
    audit_results = [(Path(p).name, read_audit(p)) for p in audits]
    curves = read_label_curves(labels_model) if labels_model else {}
    table = read_rewrite_table(rewrites) if rewrites else None
    with Store(store_path, read_only=True) as st:
        s = store_summary(st, top=top, min_users=min_users)
    fig = _Figures()
    figures: dict = {"grid": []}
    days, rates = _days(s["by_day"])
    figures["by_day"] = fig(go.Figure(go.Scatter(x=days, y=rates, mode="lines+markers", connectgaps=False),
                                      layout={"title": "by day", "yaxis": {"tickformat": ".0%"}}))
    for key, title in (("by_domain", "by domain"), ("by_intent", f"by intent (top {top} by traffic)"), ("by_device", "by device type")):
        rows = s[key]
        figures["grid"].append(fig(go.Figure(go.Bar(x=[r["defect_rate"] for r in rows][::-1], y=[_label(r["key"]) for r in rows][::-1], orientation="h",
                                                    text=[f"{r['turns']:,} turns" for r in rows][::-1]), layout={"title": title, "xaxis": {"tickformat": ".0%"}})))
    top_defects = [{"request": clip(d["request"]), "intent": d["intent"] or "", "defects": f"{d['defects']:,}", "turns": f"{d['turns']:,}",
                    "sessions": [{"session_id": clip(x["session_id"], 80), "rows": _transcript(x["turns"])} for x in d["sessions"]]}
                   for d in s["top_defects"]]

    served = {(r["request"], r["rewrite"]): r for r in s["served_rewrites"]}
    rw: dict = {"mined": None, "served": [], "count": "", "source": clip(rewrites, 200) if rewrites else ""}
    if table is not None:
        mined = sorted(table.to_pylist(), key=lambda r: -(r.get("support") or 0) if isinstance(r.get("support"), (int, float)) else 0)[: top * 3]
        rw["count"] = f"{table.num_rows:,}"
        rw["mined"] = []
        for r in mined:
            sv = served.get((" ".join(str(r["utterance"]).lower().split()), r["rewrite"]), {})
            rw["mined"].append([clip(r["utterance"]), clip(r["rewrite"]), pct(r.get("probability")), _num(r.get("support")),
                                _num(sv.get("wins", "—")), _num(sv.get("losses", "—"))])
    rw["served"] = [[clip(r["request"]), clip(r["rewrite"]), r["served"], r["wins"], r["losses"]] for r in s["served_rewrites"]]

    ab_rows = []
    if ab_results:
        nums = [(n, r) for n, r in ab_results if all(isinstance(r.get(k), (int, float)) for k in ("relative_reduction", "ci_low", "ci_high"))]
        figures["ab"] = fig(go.Figure(go.Bar(x=[_label(n) for n, _ in nums], y=[r["relative_reduction"] for _, r in nums],
                                             error_y={"type": "data", "symmetric": False, "array": [r["ci_high"] - r["relative_reduction"] for _, r in nums],
                                                      "arrayminus": [r["relative_reduction"] - r["ci_low"] for _, r in nums]}),
                                      layout={"title": "fewer first-attempt defects than the control, with 95% CIs", "yaxis": {"tickformat": ".1%"}}))
        ab_rows = [[clip(n, 120), _num(r.get("goals")), pct(r.get("control_defect_rate")), pct(r.get("treatment_defect_rate")),
                    f"{pct(r.get('relative_reduction'))} [{pct(r.get('ci_low'))}, {pct(r.get('ci_high'))}]", _ratio(r.get("win_loss_ratio"))]
                   for n, r in ab_results]

    fp = s["failure_points"]
    fp_view = None
    if fp:
        comp = [(c, v["turns"]) for c, v in fp["by_component"].items() if c != "correct"]
        figures["failure_points"] = fig(go.Figure(go.Bar(x=[_label(c) for c, _ in comp], y=[n for _, n in comp]),
                                                  layout={"title": f"root causes of {fp['defects']:,} defective turns"}))
        if fp["by_intent"]:
            cols = list(fp["by_intent"][0])
            fp_view = {"headers": ["intent" if c == "key" else c for c in cols], "numeric": tuple(range(1, len(cols))),
                       "rows": [[clip(v, 80) if i == 0 else _num(v) for i, v in enumerate(r.values())] for r in fp["by_intent"]]}
        else:
            fp_view = {"headers": [], "rows": [], "numeric": ()}

    figures["labels"] = None
    if curves:
        f = go.Figure()
        for task, c in curves.items():
            f.add_trace(go.Scatter(x=[p["coverage"] for p in c], y=[p["precision"] for p in c], mode="lines", name=_label(task)))
        f.update_layout(title=_label(f"calibration of {labels_model}", 200), xaxis={"title": "coverage (share of turns labelled)", "tickformat": ".0%"},
                        yaxis={"title": "precision", "tickformat": ".0%"})
        figures["labels"] = fig(f)

    privacy = _audit_view(audit_results, fig) if audit_results else None
    doc = render("report.html", privacy=privacy, store=clip(store_path, 200), generated=f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M}", version=__version__,
                 cards=[("turns", f"{s['turns']:,}"), ("sessions", f"{s['sessions']:,}"), ("users", f"{s['users']:,}"), ("defect rate", pct(s["defect_rate"]))],
                 figures=figures, top_defects=top_defects, transcript_headers=TRANSCRIPT, rewrites=rw, ab=ab_rows, failure_points=fp_view)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(out).with_suffix(".tmp")
    tmp.write_text(doc, encoding="utf-8")
    tmp.replace(out)  # never a half-written report
    return {"turns": s["turns"], "defects": bool(s["top_defects"]), "rewrites": table is not None or bool(s["served_rewrites"]),
            "ab": len(ab_results), "failure_points": fp is not None, "label_curves": sorted(curves), "audits": len(audit_results),
            "bytes": len(doc.encode())}
