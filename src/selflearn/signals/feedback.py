"""Per-turn feedback signals from the logs alone, and a defect score that combines them.

Signals (one row per turn of the store's ``turns`` table):

- ``barge_in``: the user interrupted the response.
- ``explicit_negative`` / ``explicit_positive``: spoken feedback ("no, that's not what I asked"), or an
  answer to "Did I answer your question?" (``prompted``).
- ``rephrase_candidate``: the next request in the session came within ``window_s`` seconds and is
  similar enough (``min_similarity``; the larger of word-set Jaccard and character edit similarity).
- ``system_failure``: the assistant itself reported failure (could not understand, find or do it).
- ``abandoned``: the session ended on this turn right after a failure or a barge-in.

``defect_score`` is a noisy-OR of the negative signals, each with the weight in
:class:`SignalConfig` (the probability that the signal alone means a defect), damped by explicit
positive feedback. Everything runs in one DuckDB query: no Python loop over turns.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import InvalidInputError, explain

__all__ = ["SignalConfig", "signals_sql", "DEFECT_AT"]

#: a turn whose defect score is at least this is a defect; below it, the turn worked (one setting for
#: mining, serving, labels, failure points, the report and the dashboard)
DEFECT_AT = 0.5


@dataclass(frozen=True)
class SignalConfig:
    window_s: float = 45.0
    min_similarity: float = 0.35
    w_explicit_negative: float = 0.95
    w_barge_in: float = 0.7
    w_rephrase: float = 0.6
    w_system_failure: float = 0.7
    w_abandoned: float = 0.4
    positive_damping: float = 0.05

    def check(self) -> "SignalConfig":
        if not self.window_s > 0:
            raise InvalidInputError(explain(f"window_s={self.window_s}", "must be > 0 seconds", "use e.g. 45"))
        for name, v in asdict(self).items():
            if name != "window_s" and not 0.0 <= v <= 1.0:
                raise InvalidInputError(explain(f"{name}={v}", "must be in [0, 1]", "use a probability"))
        return self

    def as_dict(self) -> dict:
        """The settings, as recorded with the store's ``signals`` table."""
        return asdict(self)


def signals_sql(config: SignalConfig, source: str = "turns") -> str:
    """A SELECT giving one row of signals per turn of ``source`` (the store's turns columns)."""
    c = config.check()
    return f"""
    WITH t AS (
      SELECT session_id, turn_index, ts, user_id, device_type, asr_text, text_norm, intent, response_status,
             barge_in, explicit_feedback, feedback_prompted,
             lead(asr_text) OVER w AS next_text,
             lead(text_norm) OVER w AS next_norm,
             lead(turn_index) OVER w AS next_turn,
             epoch(lead(ts) OVER w) - epoch(ts) AS next_gap_s
      FROM {source}
      WINDOW w AS (PARTITION BY session_id ORDER BY turn_index)
    ), s AS (
      SELECT *,
        CASE WHEN next_text IS NULL THEN NULL ELSE greatest(
          len(list_intersect(list_distinct(string_split(asr_text, ' ')), list_distinct(string_split(next_text, ' '))))
            / greatest(len(list_distinct(list_concat(string_split(asr_text, ' '), string_split(next_text, ' ')))), 1),
          1 - levenshtein(left(asr_text, 1000), left(next_text, 1000)) / greatest(length(left(asr_text, 1000)), length(left(next_text, 1000)), 1)
        ) END AS next_similarity
      FROM t
    ), f AS (
      SELECT *,
        coalesce(explicit_feedback = 'negative', false) AS explicit_negative,
        coalesce(explicit_feedback = 'positive', false) AS explicit_positive,
        coalesce(next_gap_s <= {c.window_s}::DOUBLE AND next_similarity >= {c.min_similarity}::DOUBLE, false) AS rephrase_candidate,
        coalesce(response_status = 'failure', false) AS system_failure,
        (next_text IS NULL AND (coalesce(response_status = 'failure', false) OR barge_in)) AS abandoned
      FROM s
    )
    SELECT session_id, turn_index, ts, user_id, device_type, asr_text, text_norm, intent, response_status,
           barge_in, explicit_negative, explicit_positive, feedback_prompted AS prompted,
           rephrase_candidate, system_failure, abandoned,
           next_turn, next_text, next_norm, next_gap_s, next_similarity,
           (1 - (1 - {c.w_explicit_negative}::DOUBLE * explicit_negative::int)
              * (1 - {c.w_barge_in}::DOUBLE * barge_in::int)
              * (1 - {c.w_rephrase}::DOUBLE * rephrase_candidate::int)
              * (1 - {c.w_system_failure}::DOUBLE * system_failure::int)
              * (1 - {c.w_abandoned}::DOUBLE * abandoned::int))
           * CASE WHEN explicit_positive THEN {c.positive_damping}::DOUBLE ELSE 1 END AS defect_score
    FROM f
    """
