"""`selflearn report`: one self-contained HTML file (plotly.js inlined once, no network) with what a
team looks at every morning."""

from __future__ import annotations

import html
import json
from datetime import datetime, timezone
from pathlib import Path

from .. import __version__
from ..errors import InvalidInputError, explain
from ..store.store import Store
from .data import store_summary

__all__ = ["write_report", "read_ab_result", "read_label_curves", "read_rewrite_table"]

CSS = """body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:24px}h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 8px;border-bottom:1px solid #d8dce3;padding-bottom:4px}
.muted{color:#5b6474}.cards{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}.card{background:#fff;border:1px solid #d8dce3;border-radius:6px;padding:10px 14px;min-width:130px}
.card b{display:block;font-size:20px}table{border-collapse:collapse;width:100%;background:#fff;margin:8px 0}th,td{border:1px solid #d8dce3;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef0f4}td.n{text-align:right;font-variant-numeric:tabular-nums}details{margin:2px 0}summary{cursor:pointer;color:#2456a6}.empty{background:#fff;border:1px dashed #c3c8d2;padding:12px;color:#5b6474}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:12px}@media(max-width:800px){.grid{grid-template-columns:1fr}}"""


def _e(x) -> str:
    return html.escape("" if x is None else str(x))


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def read_ab_result(path: Path) -> dict:
    """An A/B result as `selflearn ab --json` writes it."""
    try:
        res = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInputError(explain(str(path), f"must be the JSON `selflearn ab --json` prints ({exc})", "save it with `selflearn ab ... --json > ab.json`")) from exc
    need = {"control_defect_rate", "treatment_defect_rate", "relative_reduction", "ci_low", "ci_high"}
    if not isinstance(res, dict) or need - set(res):
        raise InvalidInputError(explain(str(path), f"an A/B result needs {sorted(need)}", "save it with `selflearn ab ... --json > ab.json`"))
    return res


def read_label_curves(model_dir: Path) -> dict:
    """The precision/coverage curves a label model was calibrated with (its config.json)."""
    try:
        cfg = json.loads((Path(model_dir) / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInputError(explain(str(model_dir), f"must be a label model directory ({exc})", "train one with `selflearn labels train`")) from exc
    return ((cfg.get("calibration") or {}).get("curves")) or {}


def read_rewrite_table(path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(str(path))
    except (OSError, pa.ArrowInvalid) as exc:
        raise InvalidInputError(explain(str(path), f"must be a rewrite table in Parquet ({exc})", "pass the file `selflearn mine` wrote")) from exc
    if {"utterance", "rewrite"} - set(table.column_names):
        raise InvalidInputError(explain(str(path), "a rewrite table needs the columns utterance and rewrite", "pass the file `selflearn mine` wrote"))
    return table


class _Figures:
    """Plotly figures as HTML fragments; plotly.js is inlined with the first one only."""

    def __init__(self) -> None:
        self.first = True

    def __call__(self, fig) -> str:
        import plotly.io as pio

        fig.update_layout(margin={"l": 50, "r": 20, "t": 40, "b": 40}, height=320, template="plotly_white")
        out = pio.to_html(fig, include_plotlyjs="inline" if self.first else False, full_html=False, config={"displaylogo": False})
        self.first = False
        return out


def write_report(store_path: Path, out: Path, *, rewrites: Path | None = None, ab: list[Path] = (), labels_model: Path | None = None,
                 top: int = 10) -> dict:
    """Write the report; returns what it contains (section -> whether it has data)."""
    import plotly.graph_objects as go

    if not Path(store_path).exists():
        raise InvalidInputError(explain(str(store_path), "does not exist", "import logs first (`selflearn import FILE --store ...`)"))
    ab_results = [(Path(p).name, read_ab_result(p)) for p in ab]
    curves = read_label_curves(labels_model) if labels_model else {}
    table = read_rewrite_table(rewrites) if rewrites else None
    with Store(store_path, read_only=False) as st:
        s = store_summary(st, top=top)
    fig = _Figures()
    parts = [f"<h1>selflearn report</h1><p class=muted>{_e(store_path)} · generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC · selflearn {__version__}</p>",
             "<div class=cards>" + "".join(f"<div class=card><b>{v}</b>{_e(k)}</div>" for k, v in (
                 ("turns", f"{s['turns']:,}"), ("sessions", f"{s['sessions']:,}"), ("users", f"{s['users']:,}"), ("defect rate", _pct(s["defect_rate"])))) + "</div>"]

    # defects over time and by domain, intent, device
    parts.append("<h2 id=defects>Defect rate</h2><p class=muted>Share of turns whose defect score (feedback signals) is at least 0.5.</p>")
    day = s["by_day"]
    parts.append(fig(go.Figure(go.Scatter(x=[d["key"] for d in day], y=[d["defect_rate"] for d in day], mode="lines+markers",
                                          text=[f"{d['turns']:,} turns" for d in day]), layout={"title": "by day", "yaxis": {"tickformat": ".0%"}})))
    grid = []
    for key, title in (("by_domain", "by domain"), ("by_intent", f"by intent (top {top} by traffic)"), ("by_device", "by device type")):
        rows = s[key]
        grid.append(fig(go.Figure(go.Bar(x=[r["defect_rate"] for r in rows][::-1], y=[r["key"] for r in rows][::-1], orientation="h",
                                         text=[f"{r['turns']:,} turns" for r in rows][::-1]), layout={"title": title, "xaxis": {"tickformat": ".0%"}})))
    parts.append("<div class=grid>" + "".join(f"<div>{g}</div>" for g in grid) + "</div>")

    # top defects with example sessions
    parts.append("<h2 id=top-defects>Top defects</h2>")
    if s["top_defects"]:
        rows = []
        for d in s["top_defects"]:
            ex = "".join(f"<details><summary>session {_e(x['session_id'])}</summary>{_transcript(x)}</details>" for x in d["sessions"])
            rows.append(f"<tr><td>{_e(d['request']) or '<span class=muted>(nothing heard)</span>'}</td><td>{_e(d['intent'])}</td><td class=n>{d['defects']:,}</td><td class=n>{d['turns']:,}</td><td>{ex}</td></tr>")
        parts.append("<table><tr><th>request (as heard)</th><th>intent understood</th><th>defects</th><th>turns</th><th>example sessions</th></tr>" + "".join(rows) + "</table>")
    else:
        parts.append("<p class=empty>No turn is a defect.</p>")

    # rewrites
    parts.append("<h2 id=rewrites>Rewrites</h2>")
    served = {(r["request"], r["rewrite"]): r for r in s["served_rewrites"]}
    if table is not None and table.num_rows:
        rows = sorted(table.to_pylist(), key=lambda r: -(r.get("support") or 0))[: top * 3]
        body = []
        for r in rows:
            sv = served.get((" ".join(str(r["utterance"]).lower().split()), r["rewrite"]), {})
            body.append(f"<tr><td>{_e(r['utterance'])}</td><td>{_e(r['rewrite'])}</td><td class=n>{_pct(r.get('probability'))}</td>"
                        f"<td class=n>{r.get('support', '')}</td><td class=n>{sv.get('wins', '—')}</td><td class=n>{sv.get('losses', '—')}</td></tr>")
        parts.append(f"<p class=muted>{table.num_rows:,} rewrites in {_e(rewrites)}; wins and losses: turns in these logs where the rewrite was served "
                     "and the turn then looked fine / defective.</p><table><tr><th>request</th><th>rewrite</th><th>success probability</th>"
                     "<th>support</th><th>wins</th><th>losses</th></tr>" + "".join(body) + "</table>")
    elif s["served_rewrites"]:
        parts.append("<table><tr><th>request</th><th>rewrite served</th><th>served</th><th>wins</th><th>losses</th></tr>" + "".join(
            f"<tr><td>{_e(r['request'])}</td><td>{_e(r['rewrite'])}</td><td class=n>{r['served']}</td><td class=n>{r['wins']}</td><td class=n>{r['losses']}</td></tr>"
            for r in s["served_rewrites"]) + "</table>")
    else:
        parts.append("<p class=empty>No rewrite table given (<code>--rewrites</code>) and no rewrite served in these logs.</p>")

    # A/B
    parts.append("<h2 id=ab>A/B results</h2>")
    if ab_results:
        names = [n for n, _ in ab_results]
        red = [r["relative_reduction"] for _, r in ab_results]
        parts.append(fig(go.Figure(go.Bar(x=names, y=red, error_y={"type": "data", "symmetric": False,
                                                                    "array": [r["ci_high"] - r["relative_reduction"] for _, r in ab_results],
                                                                    "arrayminus": [r["relative_reduction"] - r["ci_low"] for _, r in ab_results]}),
                                   layout={"title": "fewer first-attempt defects than the control, with 95% CIs", "yaxis": {"tickformat": ".1%"}})))
        parts.append("<table><tr><th>result</th><th>goals</th><th>control</th><th>treatment</th><th>fewer defects [95% CI]</th><th>win:loss</th></tr>" + "".join(
            f"<tr><td>{_e(n)}</td><td class=n>{_num(r.get('goals'))}</td><td class=n>{_pct(r['control_defect_rate'])}</td><td class=n>{_pct(r['treatment_defect_rate'])}</td>"
            f"<td class=n>{_pct(r['relative_reduction'])} [{_pct(r['ci_low'])}, {_pct(r['ci_high'])}]</td>"
            f"<td class=n>{_ratio(r.get('win_loss_ratio'))}</td></tr>" for n, r in ab_results) + "</table>")
    else:
        parts.append("<p class=empty>No A/B result given (<code>--ab</code>: the JSON of <code>selflearn ab --json</code>).</p>")

    # failure points
    parts.append("<h2 id=failure-points>Failure points</h2>")
    fp = s["failure_points"]
    if fp:
        comp = [(c, v["turns"]) for c, v in fp["by_component"].items() if c != "correct"]
        parts.append(fig(go.Figure(go.Bar(x=[c for c, _ in comp], y=[n for _, n in comp]), layout={"title": f"root causes of {fp['defects']:,} defective turns"})))
        parts.append("<table><tr><th>intent</th><th>turns</th><th>defects</th>" + "".join(f"<th>{_e(k)}</th>" for k in fp["by_intent"][0] if k not in ("key", "turns", "defects")) + "</tr>"
                     + "".join("<tr>" + "".join(f"<td{' class=n' if i else ''}>{_e(_num(v) if i else v)}</td>" for i, v in enumerate(r.values())) + "</tr>" for r in fp["by_intent"]) + "</table>"
                     if fp["by_intent"] else "")
    else:
        parts.append("<p class=empty>No failure points in this store (run <code>selflearn fpi apply</code>).</p>")

    # label curves
    parts.append("<h2 id=labels>Label precision / coverage</h2>")
    if curves:
        f = go.Figure()
        for task, c in curves.items():
            f.add_trace(go.Scatter(x=[p["coverage"] for p in c], y=[p["precision"] for p in c], mode="lines", name=task))
        f.update_layout(title=f"calibration of {labels_model}", xaxis={"title": "coverage (share of turns labelled)", "tickformat": ".0%"},
                        yaxis={"title": "precision", "tickformat": ".0%"})
        parts.append(fig(f))
    else:
        parts.append("<p class=empty>No label model given (<code>--labels-model</code>), or it has no calibration curves.</p>")

    doc = (f"<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content='width=device-width,initial-scale=1'>"
           f"<title>selflearn report</title><style>{CSS}</style></head><body><main>{''.join(parts)}</main></body></html>")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(out).with_suffix(".tmp")
    tmp.write_text(doc, encoding="utf-8")
    tmp.replace(out)  # never a half-written report
    return {"turns": s["turns"], "defects": bool(s["top_defects"]), "rewrites": table is not None or bool(s["served_rewrites"]),
            "ab": len(ab_results), "failure_points": fp is not None, "label_curves": sorted(curves), "bytes": len(doc.encode())}


def _num(x) -> str:
    return f"{x:,}" if isinstance(x, int) else ("" if x is None else str(x))


def _ratio(x) -> str:
    return "—" if x is None else f"{x:.1f}:1"


def _transcript(session: dict) -> str:
    rows = "".join(
        f"<tr><td class=n>{t['turn_index']}</td><td>{_e(t['request'])}</td><td>{_e(t['intent'])}</td><td>{_e(t['reply'])}</td>"
        f"<td>{'barge-in ' if t['barge_in'] else ''}{_e(t['feedback'] or '')}</td><td class=n>{t['defect_score']:.2f}</td></tr>" for t in session["turns"])
    return f"<table><tr><th>#</th><th>user said</th><th>intent</th><th>assistant</th><th>feedback</th><th>defect score</th></tr>{rows}</table>"
