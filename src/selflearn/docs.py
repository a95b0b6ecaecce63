"""Regenerate the parts of docs/ that come from code: ``python -m selflearn.docs`` (or ``make docs``).

* ``docs/log-schema.json``: the JSON Schema of a turn, from the pydantic models;
* the field table in ``docs/log-format.md`` (between the GENERATED markers);
* ``docs/cli.md``: every command's ``--help``.

``tests/test_docs.py`` fails when any of them is stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from selflearn.logs.schema import Turn

__all__ = ["json_schema_text", "field_table", "cli_reference", "render", "main"]

BEGIN, END = "<!-- BEGIN GENERATED: fields -->", "<!-- END GENERATED: fields -->"


def json_schema_text() -> str:
    return json.dumps(Turn.model_json_schema(), indent=2) + "\n"


def _type(node: dict[str, Any], defs: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return "object", defs[name]
    if "anyOf" in node:
        parts = [_type(a, defs) for a in node["anyOf"]]
        sub = next((s for _, s in parts if s is not None), None)
        return " or ".join(t for t, _ in parts), sub
    if "const" in node:
        return f"{node['const']!r}", None
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"]), None
    kind = node.get("type", "any")
    if kind == "array":
        inner, sub = _type(node.get("items", {}), defs)
        return f"list of {inner}", sub
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return "map of string to scalar", None
    if node.get("format") == "date-time":
        return "timestamp (ISO 8601, with zone)", None
    return kind, None


def field_table() -> str:
    schema = Turn.model_json_schema()
    defs = schema["$defs"]
    rows = ["| field | type | required | meaning |", "| --- | --- | --- | --- |"]

    def walk(node: dict[str, Any], prefix: str) -> None:
        required = set(node.get("required", []))
        for key, sub in node.get("properties", {}).items():
            path = f"{prefix}{key}"
            kind, child = _type(sub, defs)
            desc = sub.get("description") or (child or {}).get("description", "")
            bounds = [f"{op} {sub_node[k]}" for sub_node in [sub, *sub.get("anyOf", [])]
                      for k, op in (("minimum", ">="), ("maximum", "<=")) if k in sub_node]
            if bounds:
                kind += f" ({', '.join(bounds)})"
            rows.append(f"| `{path}` | {kind} | {'yes' if key in required else 'no'} | {desc.replace('|', '/')} |")
            if child is not None:
                walk(child, f"{path}[]." if kind.startswith("list") else f"{path}.")

    walk(schema, "")
    return "\n".join(rows) + "\n"


def cli_reference() -> str:
    from typer.testing import CliRunner

    from selflearn.cli.main import app

    runner = CliRunner()
    parts = ["# CLI reference\n", "Generated from the CLI by `make docs`; do not edit by hand.\n"]
    commands = [[]] + [[c.name] for c in app.registered_commands]
    for g in app.registered_groups:  # sub-commands: `selflearn world build`, `selflearn online train`
        commands += [[g.name]] + [[g.name, c.name] for c in g.typer_instance.registered_commands]
    for args in commands:
        res = runner.invoke(app, [*args, "--help"], terminal_width=100, env={"COLUMNS": "100", "NO_COLOR": "1"})
        parts.append(f"## `{' '.join(['selflearn', *args])}`\n")
        parts.append("```text\n" + res.output.rstrip() + "\n```\n")
    return "\n".join(parts)


def render(docs: Path) -> dict[Path, str]:
    """Every generated file's expected content."""
    fmt = (docs / "log-format.md").read_text(encoding="utf-8")
    head, rest = fmt.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return {
        docs / "log-schema.json": json_schema_text(),
        docs / "log-format.md": f"{head}{BEGIN}\n{field_table()}{END}{tail}",
        docs / "cli.md": cli_reference(),
    }


def main(argv: list[str] | None = None) -> None:
    docs = Path(argv[0] if argv else "docs")
    for path, text in render(docs).items():
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
