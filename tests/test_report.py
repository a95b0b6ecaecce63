"""`selflearn report write`: one self-contained HTML file from a store (and optional rewrites, A/B results,
label curves)."""

import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from conftest import session, write_jsonl
from selflearn.cli.main import app
from selflearn.errors import InvalidInputError
from selflearn.report import store_summary, write_report
from selflearn.governance.gate import release_gate
from selflearn.store.importer import import_files
from selflearn.store.store import Store


@pytest.fixture
def logged(tmp_path):
    turns = session("s1", 3) + session("s2", 2, start_minute=30)
    turns[0]["feedback"] = {"barge_in": True}
    turns[0]["utterance"] = {"text": "play the beetles", "asr_confidence": 0.6, "rewrite": "play the beatles"}
    turns[3]["feedback"] = {"barge_in": False, "explicit": "negative"}
    path = write_jsonl(tmp_path / "logs.jsonl", turns)
    with Store(tmp_path / "s.duckdb") as st:
        import_files(st, [path])
    return tmp_path / "s.duckdb"


def test_summary_reads_rates_top_defects_and_served_rewrites(logged):
    with Store(logged) as st:
        s = store_summary(st, min_users=1)
    assert s["turns"] == 5 and s["sessions"] == 2
    assert 0 < s["defect_rate"] < 1 and s["by_day"] and s["by_device"]
    top = s["top_defects"][0]
    assert top["defects"] >= 1 and top["sessions"] and top["sessions"][0]["turns"]
    assert s["served_rewrites"] == [{"request": "play the beetles", "rewrite": "play the beatles", "served": 1, "wins": 0, "losses": 1}]
    assert s["failure_points"] is None  # `fpi apply` did not run


def test_report_is_one_offline_file_with_every_section(logged, tmp_path):
    ab = tmp_path / "ab.json"
    ab.write_text(json.dumps({"goals": 100, "control_defect_rate": 0.3, "treatment_defect_rate": 0.25, "relative_reduction": 0.1667,
                              "ci_low": 0.05, "ci_high": 0.28, "win_loss_ratio": 4.0}))
    table = tmp_path / "rewrites.parquet"
    pq.write_table(pa.table({"utterance": ["play the beetles"], "rewrite": ["play the beatles"], "probability": [0.9], "support": [7]}), table)
    model = tmp_path / "labels"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"calibration": {"curves": {"defect": [{"threshold": 0.9, "precision": 0.97, "coverage": 0.5}]}}}))
    audit = tmp_path / "audit.json"
    gated = {**_audit_json("failure-point-model"), "user_advantage_heldout": 0.01, "user_advantage_heldout_ci95": [-0.05, 0.07],
             "worst_attack": "lira", "users_a_side": 50}
    audit.write_text(json.dumps({**gated, "gate": release_gate(0.05, gated)}))
    out = tmp_path / "r" / "report.html"
    info = write_report(logged, out, rewrites=table, ab=[ab], labels_model=model, audits=[audit], min_users=1)  # one user: k-anonymity off
    doc = out.read_text()
    assert info["ab"] == 1 and info["rewrites"] and info["label_curves"] == ["defect"] and info["audits"] == 1
    assert "membership inference, user level" in doc and "canary exposure" in doc
    for section in ("id=defects", "id=top-defects", "id=rewrites", "id=ab", "id=failure-points", "id=labels", "id=privacy"):
        assert section in doc
    assert "play the beatles" in doc and "4.0:1" in doc and "16.7%" in doc
    assert not re.search(r"<script[^>]+src=[\"']?https?:", doc)  # plotly.js is inlined: works offline
    assert doc.count("Plotly.newPlot") >= 5 and len(re.findall(r"plotly\.js v\d", doc)) == 1  # the library once, many figures
    assert "No failure points" in doc  # empty states say what to run
    assert "passed on the estimate, not confirmed; about 113 users a side (now 50)" in doc  # the release gate's verdict
    assert not list(out.parent.glob("*.tmp"))


def test_report_escapes_what_users_said(tmp_path):
    turns = session("s1", 2)
    turns[0]["utterance"] = {"text": "<script>alert(1)</script>", "asr_confidence": 0.5}
    turns[0]["feedback"] = {"barge_in": True}
    with Store(tmp_path / "s.duckdb") as st:
        import_files(st, [write_jsonl(tmp_path / "l.jsonl", turns)])
    write_report(tmp_path / "s.duckdb", tmp_path / "r.html", min_users=1)
    doc = (tmp_path / "r.html").read_text()
    assert "<script>alert(1)</script>" not in doc and "&lt;script&gt;alert(1)&lt;/script&gt;" in doc


def test_bad_input_is_refused_with_the_fix(logged, tmp_path):
    with pytest.raises(InvalidInputError, match="import logs first"):
        write_report(tmp_path / "nope.duckdb", tmp_path / "r.html")
    bad = tmp_path / "ab.json"
    bad.write_text('{"goals": 3}')
    with pytest.raises(InvalidInputError, match="selflearn world ab"):
        write_report(logged, tmp_path / "r.html", ab=[bad])
    with pytest.raises(InvalidInputError, match="label model directory"):
        write_report(logged, tmp_path / "r.html", labels_model=tmp_path)
    (tmp_path / "t.parquet").write_text("not parquet")
    with pytest.raises(InvalidInputError, match="rewrite table"):
        write_report(logged, tmp_path / "r.html", rewrites=tmp_path / "t.parquet")
    with pytest.raises(InvalidInputError, match="privacy audit"):
        write_report(logged, tmp_path / "r.html", audits=[bad])
    assert not (tmp_path / "r.html").exists()  # nothing half-written


def test_cli_report(logged, tmp_path):
    r = CliRunner().invoke(app, ["report", "write", "--store", str(logged), "--out", str(tmp_path / "r.html")])
    assert r.exit_code == 0, r.output
    assert "wrote" in r.output and (tmp_path / "r.html").exists()
    r = CliRunner().invoke(app, ["report", "write", "--store", str(tmp_path / "missing.duckdb"), "--out", str(tmp_path / "x.html")])
    assert r.exit_code != 0 and "import logs first" in r.output


def _audit_json(model: str, attack: str = "lira") -> dict:
    """An audit shaped as `selflearn privacy audit --out` writes it (its numbers from the attack's own metrics)."""
    import numpy as np

    from selflearn.privacy.membership import attack_metrics

    m = attack_metrics(np.r_[np.ones(50), np.zeros(50)] + np.random.default_rng(0).normal(size=100), np.r_[np.ones(50), np.zeros(50)].astype(bool))
    return {"model": model, "privacy": None, "membership": {"users": {attack: m}, "records": {attack: m}},
            "canaries": [{"repetitions": r, "exposure_bits": 1.0 + r / 8} for r in (1, 4, 16)]}


def _hostile_inputs(tmp_path):
    """A store, a rewrite table, an A/B result and a label model whose every field is markup."""
    from conftest import XSS, hostile_turns

    with Store(tmp_path / "h.duckdb") as st:
        assert import_files(st, [write_jsonl(tmp_path / "h.jsonl", hostile_turns())]).imported == 6
    table = tmp_path / "rewrites.parquet"
    pq.write_table(pa.table({"utterance": [f"play {XSS}"], "rewrite": [f"play the {XSS}"], "probability": [XSS], "support": [XSS],
                             "rephrase_support": [XSS]}), table)
    ab = tmp_path / f"ab{XSS.replace('/', '')}.json"  # the file name is shown too
    ab.write_text(json.dumps({"goals": XSS, "control_defect_rate": XSS, "treatment_defect_rate": XSS, "relative_reduction": 0.1,
                              "ci_low": 0.05, "ci_high": 0.2, "win_loss_ratio": XSS}))
    model = tmp_path / "labels"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"calibration": {"curves": {XSS: [{"threshold": 0.5, "precision": 0.9, "coverage": 0.5}]}}}))
    audit = tmp_path / f"audit{XSS.replace('/', '')}.json"
    audit.write_text(json.dumps(_audit_json(XSS, attack=XSS)))
    return tmp_path / "h.duckdb", table, ab, model, audit


def test_every_field_of_every_input_is_escaped(tmp_path):
    """Strings where numbers belong (the A/B's goals, a table's support) included: all shown as text."""
    from conftest import XSS

    store, table, ab, model, audit = _hostile_inputs(tmp_path)
    out = tmp_path / "r.html"
    write_report(store, out, rewrites=table, ab=[ab], labels_model=model, audits=[audit], min_users=1)
    doc = out.read_text()
    assert "<img src=x" not in doc and "<script>document.title" not in doc
    assert doc.count("&lt;img src=x onerror=") >= 10  # shown, escaped: requests, intents, sessions, rewrites, the A/B, ...
    assert XSS not in doc


def test_the_report_runs_no_script_from_its_inputs_in_a_browser(tmp_path):
    from conftest import chromium_driver

    store, table, ab, model, audit = _hostile_inputs(tmp_path)
    out = tmp_path / "r.html"
    write_report(store, out, rewrites=table, ab=[ab], labels_model=model, audits=[audit], min_users=1)
    browser = chromium_driver()
    if browser is None:
        pytest.skip("needs Debian chromium and chromium-driver (.ci/run installs them)")
    try:
        browser.get(out.as_uri())
        assert browser.execute_script("return document.readyState") == "complete"
        assert browser.title == "selflearn report"  # no payload changed it
        assert browser.execute_script("return document.querySelectorAll('main img, main script:not([type])').length") == 0 or \
            browser.execute_script("return Array.from(document.querySelectorAll('main img')).length") == 0
        assert "onerror=" in browser.find_element("css selector", "main").text  # the markup is there, as text
    finally:
        browser.quit()


def test_long_texts_are_shortened_and_the_store_is_only_read(tmp_path):
    import os
    import stat

    turns = [t for i in range(5) for t in session(f"s{i}", 1, start_minute=i)]  # five one-turn sessions of 1 MB texts
    for t in turns:
        t["utterance"] = {"text": "play " + "la " * 330_000, "asr_confidence": 0.4}
        t["response"] = {"status": "failure", "text": "sorry " * 160_000}
        t["feedback"] = {"barge_in": True}
    with Store(tmp_path / "s.duckdb") as st:
        import_files(st, [write_jsonl(tmp_path / "l.jsonl", turns)])
    import hashlib

    before = hashlib.sha256((tmp_path / "s.duckdb").read_bytes()).hexdigest()
    os.chmod(tmp_path / "s.duckdb", stat.S_IRUSR | stat.S_IRGRP)  # read-only (for a user other than root): the report only reads
    try:
        info = write_report(tmp_path / "s.duckdb", tmp_path / "out" / "r.html", min_users=1)
    finally:
        os.chmod(tmp_path / "s.duckdb", stat.S_IRUSR | stat.S_IWUSR)
    assert hashlib.sha256((tmp_path / "s.duckdb").read_bytes()).hexdigest() == before  # not a byte written (root may write anyway)
    doc = (tmp_path / "out" / "r.html").read_text()
    assert info["bytes"] < 6_000_000 and "characters)" in doc  # plotly.js (~4.7 MB) + shortened texts, not 5 x 2 MB


def test_days_without_traffic_are_gaps_not_lines():
    from selflearn.report.html import _days

    days, rates = _days([{"key": "2026-03-01", "defect_rate": 0.2}, {"key": "2026-03-04", "defect_rate": 0.4}])
    assert days == ["2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04"] and rates == [0.2, None, None, 0.4]
    assert _days([]) == ([], [])
