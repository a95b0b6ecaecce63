"""Turn a pydantic ValidationError on a log record into one line: value, rule, fix."""

from __future__ import annotations

from pydantic import ValidationError

from selflearn.errors import explain
from selflearn.logs.schema import SUPPORTED_SCHEMA_VERSIONS

__all__ = ["describe_validation_error"]

_FIX = {
    "missing": "add the field (docs/log-format.md lists what each record needs)",
    "string_type": "write it as a JSON string in quotes",
    "int_type": "write it as a JSON integer without quotes, e.g. 3",
    "float_type": "write it as a JSON number without quotes, e.g. 0.5",
    "bool_type": "write it as JSON true or false",
    "model_type": "write it as a JSON object {...}",
    "model_attributes_type": "write it as a JSON object {...}",
    "dict_type": "write it as a JSON object {...}",
    "list_type": "write it as a JSON array [...]",
    "timezone_aware": "add the zone: ...Z for UTC or an offset such as +02:00",
    "datetime_parsing": "use ISO 8601 with a zone, e.g. 2026-01-31T17:05:00Z",
    "datetime_type": "use ISO 8601 with a zone, e.g. 2026-01-31T17:05:00Z",
    "datetime_from_date_parsing": "use ISO 8601 with a zone, e.g. 2026-01-31T17:05:00Z",
    "greater_than_equal": "use a value inside the range",
    "less_than_equal": "use a value inside the range",
    "string_too_short": "give a non-empty value",
    "finite_number": "use a finite number",
    "literal_error": "use one of the allowed values",
    "enum": "use one of the allowed values",
    "json_invalid": "write one complete JSON object per line",
    "value_error": "see docs/log-format.md for the field's format",
}


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "record"


def describe_validation_error(error: ValidationError) -> str:
    """The first problem of the record, as ``<field> = <value>: <rule>; fix: <fix>`` (+ how many more)."""
    errors = error.errors(include_url=False)
    first = errors[0]
    kind, loc = first["type"], first["loc"]
    where = _where(loc)
    if kind == "json_invalid":
        line = explain("line", f"not valid JSON ({first['ctx'].get('error', first['msg'])})", _FIX[kind])
    elif kind == "missing":
        line = explain(where, "required field is missing", _FIX[kind])
    elif kind == "literal_error" and loc == ("schema_version",):
        supported = ", ".join(map(str, SUPPORTED_SCHEMA_VERSIONS))
        line = explain(
            f"schema_version = {first['input']!r}",
            f"this selflearn reads schema_version {supported}",
            "upgrade selflearn, or convert the log to a supported version (docs/log-format.md)",
        )
    elif loc == () and kind in ("model_type", "model_attributes_type"):
        line = explain(f"record = {first['input']!r}", "each line must be a JSON object", _FIX[kind])
    elif kind == "value_error":  # a rule of our own (a validator): its message is the rule
        rule = str(first.get("ctx", {}).get("error", first["msg"]))
        fix = (_FIX["timezone_aware"] if "timezone" in rule else _FIX["datetime_parsing"]) if loc == ("timestamp",) else _FIX[kind]
        line = explain(f"{where} = {first['input']!r}", rule, fix)
    else:
        rule = first["msg"][0].lower() + first["msg"][1:]
        line = explain(f"{where} = {first['input']!r}", rule, _FIX.get(kind, "see docs/log-format.md"))
    if len(errors) > 1:
        line += f" (+{len(errors) - 1} more problem{'s' if len(errors) > 2 else ''} in this record)"
    return line
