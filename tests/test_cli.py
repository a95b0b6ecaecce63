"""The CLI end to end, in-process: help everywhere, import -> stats -> export, errors -> exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import session, write_jsonl
from typer.testing import CliRunner

from selflearn.cli.main import app

runner = CliRunner()


@pytest.mark.parametrize("args", [[], ["store", "import"], ["store", "export"], ["store", "stats"], ["store", "migrate"]])
def test_help_everywhere(args):
    res = runner.invoke(app, [*args, "--help"])
    assert res.exit_code == 0 and "Usage" in res.output


def test_import_stats_export(tmp_path):
    db = str(tmp_path / "s.duckdb")
    turns = session("a", 3) + session("b", 2, start_minute=30)
    turns[1]["feedback"] = {"barge_in": True}
    turns[2]["feedback"] = {"explicit": "negative", "comment": "no, that's not what I asked"}
    logs = write_jsonl(tmp_path / "logs.jsonl", turns)
    res = runner.invoke(app, ["store", "import", str(logs), "--store", db, "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["imported"] == 5
    res = runner.invoke(app, ["store", "stats", "--store", db, "--json"])
    stats = json.loads(res.output)
    assert (stats["turns"], stats["sessions"]) == (5, 2)
    assert stats["feedback"]["barge_in"] == 1 and stats["feedback"]["explicit_negative"] == 1
    assert stats["top_intents"] == [{"name": "music_play", "turns": 5}]
    assert stats["first_turn"] == "2026-03-02T08:00:00Z"
    res = runner.invoke(app, ["store", "stats", "--store", db])
    assert "music_play" in res.output
    res = runner.invoke(app, ["store", "export", str(tmp_path / "out.parquet"), "--store", db])
    assert res.exit_code == 0 and "exported 5 turns" in res.output


def test_store_from_environment_variable(tmp_path):
    db = tmp_path / "env.duckdb"
    logs = write_jsonl(tmp_path / "logs.jsonl", session("a", 1))
    res = runner.invoke(app, ["store", "import", str(logs)], env={"SELFLEARN_STORE": str(db)})
    assert res.exit_code == 0 and db.exists()


def test_stats_on_missing_store_says_what_to_do(tmp_path):
    res = runner.invoke(app, ["store", "stats", "--store", str(tmp_path / "none.duckdb")])
    assert res.exit_code == 2
    assert "selflearn store import" in res.output


def test_unknown_export_format(tmp_path):
    db = str(tmp_path / "s.duckdb")
    runner.invoke(app, ["store", "import", str(write_jsonl(tmp_path / "l.jsonl", session("a", 1))), "--store", db])
    res = runner.invoke(app, ["store", "export", str(tmp_path / "out.xml"), "--store", db])
    assert res.exit_code == 2 and "fix:" in res.output


def test_the_cli_is_one_grammar_with_one_error_mapping():
    """`selflearn NOUN VERB` everywhere; SelflearnError becomes an exit code in one place (cli/app.py)."""
    import typer
    from typer.core import TyperGroup

    import selflearn.cli

    root = typer.main.get_command(app)
    # one verb stands alone: `selflearn forget --user ID`, what a data-protection request asks for
    nouns = {k: c for k, c in root.commands.items() if k != "forget"}
    assert nouns and all(isinstance(c, TyperGroup) for c in nouns.values()), sorted(root.commands)
    sources = Path(selflearn.cli.__file__).parent.glob("*.py")
    assert sum(p.read_text().count("except SelflearnError") for p in sources) == 1


def test_any_command_maps_a_selflearn_error_to_its_exit_code(tmp_path):
    r = runner.invoke(app, ["rewrites", "explain", "play jazz", "--store", str(tmp_path / "none.duckdb")])
    assert r.exit_code == 2 and r.output.startswith("error: ") and "fix: " in r.output
