"""k-anonymity of shared artefacts: a text enters an artefact shared across users (the mined table,
the global index, the report, the dashboard) only when at least ``k`` distinct users said it."""

from __future__ import annotations

from ..errors import InvalidInputError, explain

__all__ = ["K_DEFAULT", "check_k", "users_per_text_sql"]

K_DEFAULT = 5  # the default k of every shared artefact (a setting of each command that writes one)


def check_k(k, name: str = "min_users") -> int:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise InvalidInputError(explain(f"{name}={k!r}", "must be an integer >= 1 (the least number of distinct users behind a shared text)",
                                        f"use {K_DEFAULT} (the default); 1 switches k-anonymity off"))
    return k


def users_per_text_sql(table: str = "turns", text: str = "text_norm") -> str:
    """SELECT text, users: how many distinct users said each (normalised) text."""
    return f"SELECT {text} AS text, count(DISTINCT user_id) AS users FROM {table} WHERE {text} IS NOT NULL GROUP BY 1"
