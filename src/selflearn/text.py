"""The one text normalisation every part of selflearn keys requests by: lower case, runs of ASCII
whitespace collapsed to one space, no space at either end. The store computes it once per turn at
import (the ``text_norm`` column, with :func:`normalise_sql`); mining, serving, reviews, the report
and the dashboard all use it, so a request means the same string everywhere."""

from __future__ import annotations

import re

__all__ = ["normalise", "normalise_sql"]

_SPACE = re.compile(r"[ \t\n\r\f\v]+")
_SPACE_SQL = "[ \\t\\n\\r\\f\\v]+"


def normalise(text: object) -> str:
    """``"  Play\\tJAZZ "`` -> ``"play jazz"`` (the same string :func:`normalise_sql` gives in DuckDB)."""
    t = _SPACE.sub(" ", str(text)).strip(" ")
    if t.isascii():
        return t.lower()
    # DuckDB lower-cases each character on its own (no final-sigma rule; İ -> i), so do the same
    return "".join(c.lower()[0] for c in t)


def normalise_sql(expr: str) -> str:
    """The DuckDB expression that normalises the SQL expression ``expr`` as :func:`normalise` does."""
    return f"lower(trim(regexp_replace({expr}, '{_SPACE_SQL}', ' ', 'g'), ' '))"
