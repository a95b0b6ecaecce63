"""The realism report of a world and one simulated run (evaluation: reads the truth)."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path

import duckdb

from .build import World
from .corpus import word_error_rate
from .simulate import FAILURE_POINTS
from .truth import read_truth

__all__ = ["realism_report"]


def _raw_norm(text: str) -> str:
    """The ASR README's WER convention: lower case, punctuation removed, nothing else."""
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def realism_report(world: World, run_dir: Path, corpus_rows: dict | None = None) -> dict:
    truth = read_truth(run_dir)
    con = duckdb.connect()
    con.register("truth", truth)
    logs = str(run_dir / "logs.jsonl")
    n_turns = con.execute("select count(*) from truth").fetchone()[0]
    fp = dict(con.execute("select failure_point, count(*) from truth group by 1").fetchall())
    defective = sum(v for k, v in fp.items() if k != "correct")
    actions = dict(con.execute("select action, count(*) from truth group by 1").fetchall())
    # goals: first-attempt defect, eventually fixed by a later attempt
    g = con.execute(
        """
        with per_goal as (
          select goal_id,
                 bool_or(attempt = 0 and defective) as first_defective,
                 bool_or(not defective) as fulfilled,
                 count(*) as attempts
          from truth where goal_id is not null group by goal_id)
        select count(*), avg(first_defective::int), avg((not fulfilled)::int),
               avg(case when first_defective then fulfilled::int end),
               avg(attempts)
        from per_goal
        """
    ).fetchone()
    fixed_later = con.execute(
        """
        with retried as (
          select t.goal_id, t.turn_index, t.session_id from truth t
          where t.defective and t.goal_id is not null
            and exists (select 1 from truth u where u.goal_id = t.goal_id and u.turn_index > t.turn_index and u.session_id = t.session_id))
        select count(*),
               sum((exists (select 1 from truth u where u.goal_id = r.goal_id and u.turn_index > r.turn_index
                            and u.session_id = r.session_id and not u.defective))::int)
        from retried r
        """
    ).fetchone()
    fb = con.execute(
        f"""select avg(feedback.barge_in::int), avg(coalesce(feedback.explicit = 'negative' and not coalesce(feedback.prompted, false), false)::int),
                   avg(coalesce(feedback.prompted, false)::int), count(distinct user_id), count(distinct session_id)
            from read_json_auto('{logs}', format='newline_delimited')"""
    ).fetchone()

    # WER per condition on the corpus sentences, both conventions
    wer: dict[str, dict] = {}
    originals = [i for i, s in enumerate(world.surfaces) if s["kind"] == "original"]
    for ci, c in enumerate(world.conditions):
        e = n = e_raw = exact = 0
        for i in originals:
            ref = world.texts[world.ref_text[i]]
            hyp = world.texts[world.heard[i][ci][0]]
            a, b = word_error_rate(ref, hyp)
            e, n, exact = e + a, n + b, exact + (a == 0)
            if corpus_rows is not None:
                row = corpus_rows.get((world.sentences[world.surfaces[i]["goal"]]["slurp_id"], c))
                if row is not None:
                    e_raw += word_error_rate(ref, _raw_norm(row.hypothesis))[0]
        wer[c] = {"wer_normalised": e / n, "exact_sentences": exact / len(originals)}
        if corpus_rows is not None:
            wer[c]["wer_raw"] = e_raw / n

    # NLU intent accuracy and goal success of the text alone, clean vs heard, held-out vs trained
    nlu: dict[str, dict] = defaultdict(dict)
    for split in (False, True):
        items = [i for i in originals if world.sentences[world.surfaces[i]["goal"]]["in_nlu_train"] == split]
        name = "nlu_training_sentences" if split else "held_out_sentences"
        ok = sum(world.interp[world.ref_text[i]][0] == world.sentences[world.surfaces[i]["goal"]]["intent"] for i in items)
        nlu[name]["clean_text"] = ok / max(len(items), 1)
        for ci, c in enumerate(world.conditions):
            ok = sum(world.interp[world.heard[i][ci][0]][0] == world.sentences[world.surfaces[i]["goal"]]["intent"] for i in items)
            nlu[name][f"asr_{c}"] = ok / max(len(items), 1)
        nlu[name]["sentences"] = len(items)
    kinds = Counter(s["kind"] for s in world.surfaces)
    return {
        "turns": n_turns,
        "users": fb[3],
        "sessions": fb[4],
        "defect_rate": defective / n_turns,
        "failure_points": {k: fp.get(k, 0) / n_turns for k in FAILURE_POINTS},
        "defects_by_failure_point": {k: fp.get(k, 0) / max(defective, 1) for k in FAILURE_POINTS if k != "correct"},
        "goals": g[0],
        "first_attempt_defect_rate": g[1],
        "goal_failure_rate": g[2],
        "first_attempt_defects_fixed_later": g[3],
        "attempts_per_goal": g[4],
        "rephrase_share_of_turns": actions.get("rephrase", 0) / n_turns,
        "repeat_share_of_turns": actions.get("repeat", 0) / n_turns,
        "retried_defects_fixed_by_a_later_attempt": (fixed_later[1] or 0) / max(fixed_later[0], 1),
        "barge_in_rate": fb[0],
        "explicit_negative_rate": fb[1],
        "prompted_feedback_rate": fb[2],
        "wer_by_condition": wer,
        "nlu_intent_accuracy": dict(nlu),
        "wordings": dict(kinds),
        "world": world.stats,
    }
