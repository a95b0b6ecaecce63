"""Docs generated from code are up to date, and the documented example record is valid."""

from __future__ import annotations

import json
import re
from pathlib import Path

from selflearn.docs import render
from selflearn.logs.schema import Turn

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_generated_docs_are_current():
    stale = [str(p) for p, text in render(DOCS).items() if p.read_text(encoding="utf-8") != text]
    assert not stale, f"stale: {stale}; run `make docs` and commit"


def test_log_format_example_record_is_valid():
    text = (DOCS / "log-format.md").read_text()
    example = re.search(r"## A record\n\n```json\n(.*?)```", text, re.S).group(1)
    Turn.model_validate_json(example)


def test_json_schema_file_parses_and_names_every_top_level_field():
    schema = json.loads((DOCS / "log-schema.json").read_text())
    assert set(schema["properties"]) == set(Turn.model_fields)


def test_service_doc_examples_are_valid():
    from selflearn.service.app import RewriteRequest, RewriteResponse

    text = (DOCS / "online.md").read_text()
    request = re.search(r"### A request\n\n```json\n(.*?)```", text, re.S).group(1)
    response = re.search(r"### A response\n.*?```json\n(.*?)```", text, re.S).group(1)
    RewriteRequest.model_validate_json(request)
    RewriteResponse.model_validate_json(response)


def test_dialogue_format_example_parses_with_every_label_and_feature():
    from selflearn.labels.dialogues import CATEGORICAL, NUMERIC, TURN_LABELS, parse_dialogue

    text = (DOCS / "dialogue-format.md").read_text()
    example = re.search(r"## A dialogue\n\n.*?```json\n(.*?)```", text, re.S).group(1)
    d = parse_dialogue(json.loads(example))
    assert len(d.exchanges) == 2 and d.exchanges[0].system.startswith("Sorry")
    assert set(TURN_LABELS) == set(d.exchanges[0].labels)
    documented = set(d.exchanges[0].features) | set(d.exchanges[1].features)
    assert set(CATEGORICAL) | set(NUMERIC) == documented
    for name in [*TURN_LABELS, *CATEGORICAL, *NUMERIC]:
        assert f"`{name}`" in text


def _doc_commands():
    """Every `selflearn ...` command line in the bash blocks of the README and docs/."""
    for path in [DOCS.parent / "README.md", *sorted(DOCS.glob("*.md"))]:
        if path.name == "cli.md":
            continue
        for block in re.findall(r"```bash\n(.*?)```", path.read_text(), re.S):
            for line in block.splitlines():
                for part in re.split(r"&&|\|", line.split("#")[0]):
                    words = part.split()
                    if words[:1] == ["selflearn"]:
                        yield path.name, words[1:]


def test_documented_commands_and_options_exist():
    from typer.testing import CliRunner

    from selflearn.cli.main import app

    runner = CliRunner()
    seen = 0
    for doc, words in _doc_commands():
        path = []
        for w in words:
            if w.startswith("-") or "/" in w or "." in w:
                break
            path.append(w)
        res = runner.invoke(app, [*path, "--help"], terminal_width=200, env={"COLUMNS": "200", "NO_COLOR": "1"})
        assert res.exit_code == 0, f"{doc}: `selflearn {' '.join(path)}` is not a command"
        for opt in (w.split("=")[0] for w in words if w.startswith("--")):
            assert opt in res.output, f"{doc}: `selflearn {' '.join(path)}` has no option {opt}"
        seen += 1
    assert seen > 20
