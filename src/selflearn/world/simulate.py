"""Run the world: users pursue goals over simulated days through the assistant
under test (wake word → ASR → [rewriter] → NLU → entity resolution → result),
and react to what it does. Emits log turns (our schema) and hidden truth rows.

Randomness is split so that runs with and without a rewriter see identical
traffic: a user's schedule and goals come from a per-user stream, and each
goal's acoustic draws and behaviour from a per-goal stream.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from rapidfuzz import fuzz

from ..errors import InvalidInputError, explain
from .build import World, interpret
from .catalogue import CATALOGUE_TYPES
from .population import User, make_users, mix
from .records import ACT_AT, device_context, geometric, log_turn, poisson, respond, truth_row
from ..rewriters import Rewriter
from ..taxonomy import FAILURE_POINTS  # re-exported: the truth tables use these names
from .teaching import DEFAULT_SLOTS, WorldTeaching, decline_propensity, guided_answers, starts_guided, user_answer, vague_text

__all__ = ["SimConfig", "Simulator", "FAILURE_POINTS"]

FALSE_WAKE_P = 0.02  # per session
PROMPT_P = 0.04  # "Did I answer your question?" after an executed turn
EPOCH = datetime(2026, 1, 5, tzinfo=timezone.utc)


@dataclass
class SimConfig:
    users: int = 2000
    days: int = 14
    seed: int = 0
    start: datetime = EPOCH
    #: simulate days [first_day, first_day + days): the same users, later traffic (e.g. after mining)
    first_day: int = 0
    #: share of requests for the user's own genre or cuisine said without it ("play some music"):
    #: ambiguous requests only what the user taught can resolve; 0 leaves traffic as it was
    vague_share: float = 0.0

    def check(self) -> None:
        for name, v, lo in (("users", self.users, 1), ("days", self.days, 1), ("first_day", self.first_day, 0)):
            if not isinstance(v, int) or v < lo:
                raise InvalidInputError(explain(f"{name}={v!r}", f"must be an integer >= {lo}", f"use e.g. --{name} 10"))
        if not isinstance(self.vague_share, (int, float)) or not 0.0 <= self.vague_share <= 1.0:
            raise InvalidInputError(explain(f"vague_share={self.vague_share!r}", "must be a share in [0, 1]", "e.g. 0.5"))


class Simulator:
    """``run(rewriter, on_turn)`` simulates every user; ``on_turn(turn, truth)`` gets
    each log turn and its truth row, in time order within each user."""

    def __init__(self, world: World, config: SimConfig, *, nlu_loader: Callable | None = None, teaching: WorldTeaching | None = None):
        config.check()
        self.world = world
        self.config = config
        self.nlu_loader = nlu_loader
        self.teaching = teaching  # the assistant remembers what users teach it
        self._names = {e["id"]: e["name"] for e in world.entities}
        self._prev: dict | None = None  # the session's previous turn
        self._declines: dict[int, float] = {}
        self.users = make_users(world, config.users, config.seed)
        self._catalogue = None
        self._nlu = None
        self._text_ids = None
        self._goal_surfaces: dict[int, list[int]] = {}
        for i, s in enumerate(world.surfaces):
            self._goal_surfaces.setdefault(s["goal"], []).append(i)
        self._pop_cum = []
        acc = 0.0
        for g in world.sentences:
            acc += g["popularity"]
            self._pop_cum.append(acc)
        self._skill_fail = {}
        r = random.Random(mix(config.seed, 99))
        for g in world.sentences:
            self._skill_fail.setdefault(g["intent"], r.choice((0.0, 0.0, 0.005, 0.01, 0.02)))
        self._cond_ix = {c: i for i, c in enumerate(world.conditions)}
        self._entity_ids = {(e["type"], e["name"]): e for e in world.entities if not e["id"].startswith("decoy")}
        self.rewrites = 0

    # -- outcome of one text for one goal -------------------------------------
    def _interp_of_text(self, text: str) -> list:
        if self._text_ids is None:
            self._text_ids = {t: i for i, t in enumerate(self.world.texts)}
        i = self._text_ids.get(text)
        if i is not None:
            return self.world.interp[i]
        if self._nlu is None:
            if self.nlu_loader is None:
                raise InvalidInputError(explain("rewriter", "produced a text the world has not seen, and no NLU model is loaded", "simulate from a world directory"))
            self._nlu = self.nlu_loader()
            self._catalogue = self.world.catalogue()
        res = interpret(self._nlu.predict([text])[0], self._catalogue, text)
        self.world.texts.append(text)
        self.world.interp.append(res)
        self._text_ids[text] = len(self.world.texts) - 1
        return res

    def intended(self, user: User, goal: dict) -> list:
        """Entity ids the user means for each catalogue slot of the goal."""
        out = []
        for t, v in goal["slots"]:
            if t not in CATALOGUE_TYPES:
                out.append(None)
                continue
            e = self._entity_ids.get((t, v))
            if e is None:
                out.append(None)
            elif len(e["senses"]) > 1:
                out.append(f"{e['id']}@{user.senses[e['id']]}")
            elif e["senses"]:
                out.append(f"{e['id']}@{e['senses'][0]}")
            else:
                out.append(e["id"])
        return out

    @staticmethod
    def judge(goal: dict, intended: list, it: list) -> str:
        """'' when the interpretation meets the goal, else the first component
        (nlu / entity_resolution) that got it wrong on this text."""
        intent, conf, _, slots, _, ents = it
        if intent != goal["intent"] or conf < ACT_AT:
            return "nlu"
        by_type: dict[str, list[str]] = {}
        for t, v in slots:
            by_type.setdefault(t, []).append(v)
        resolved = {(e[0], e[3]) for e in ents}
        places = {(e[0], e[3].split("@")[0]) for e in ents if e[3]}
        for (t, v), want in zip(goal["slots"], intended):
            if want is not None and (t, want) in resolved:
                continue  # entity resolution recovered whatever NLU tagged
            said = by_type.get(t, ())
            if want is not None and (t, want.split("@")[0]) in places:
                return "entity_resolution"  # the right name, the wrong one of its namesakes
            if want is None:
                if v not in said and not any(fuzz.ratio(v, x) >= 80 for x in said):
                    return "nlu"  # dates, times, amounts: taken as said, near enough is fine
            elif v in said or any(fuzz.ratio(v, x) >= 90 for x in said):
                return "entity_resolution"  # NLU found the words; resolution picked wrong
            else:
                return "nlu"
        if any(e[2] == "unresolved" for e in ents):
            return "nlu"  # a spurious slot the assistant could not resolve stops the action
        return ""

    # -- the run ---------------------------------------------------------------
    def run(self, rewriter: Rewriter | None = None, on_turn: Callable[[dict, dict], None] | None = None) -> list[tuple]:
        """Simulate all users; returns per goal (user idx, first attempt defective,
        goal failed, first failure point, attempts, first attempt rewritten, and the first
        attempt's context: acoustic condition, device type, ASR confidence, intent right)."""
        goals_out: list[tuple] = []
        for user in self.users:
            self._run_user(user, rewriter, on_turn, goals_out)
        return goals_out

    def _run_user(self, user: User, rewriter, on_turn, goals_out) -> None:
        cfg, w = self.config, self.world
        plan = random.Random(mix(cfg.seed, user.idx, 1, *((cfg.first_day,) if cfg.first_day else ())))
        clock = cfg.start
        goal_no = cfg.first_day * 100_000  # goal streams and ids never repeat across periods
        if self.teaching is not None and starts_guided(user, cfg.seed):
            self.teaching.guided(user.user_id, guided_answers(user))  # "learn my preferences"
        for day in range(cfg.first_day, cfg.first_day + cfg.days):
            session_no = 0
            n_sessions = poisson(plan, user.sessions_per_day)
            starts = sorted(
                cfg.start + timedelta(days=day, hours=min(23.99, max(0.0, plan.gauss(plan.choice(user.peaks), 1.5))))
                for _ in range(n_sessions)
            )
            for planned in starts:
                t = max(planned, clock + timedelta(seconds=60))
                device = user.devices[int(plan.random() * len(user.devices))]
                n_goals = 1 + geometric(plan, 0.45)
                sid = f"{user.user_id}-d{day:03d}-s{session_no:02d}"
                session_no += 1
                turn_index = 0
                self._prev = None
                if plan.random() < FALSE_WAKE_P:
                    t, turn_index = self._false_wake(user, device, sid, t, plan, rewriter, on_turn)
                for _ in range(n_goals):
                    if plan.random() < user.habit:
                        goal_ix = user.favourites[bisect.bisect(user.fav_cum, plan.random() * user.fav_cum[-1])]
                    else:
                        goal_ix = bisect.bisect(self._pop_cum, plan.random() * self._pop_cum[-1])
                    goal_ix = min(goal_ix, len(w.sentences) - 1)
                    t, turn_index = self._pursue(user, device, sid, t, turn_index, goal_ix, goal_no, rewriter, on_turn, goals_out)
                    goal_no += 1
                    t += timedelta(seconds=plan.uniform(15, 90))  # after a goal, a longer gap
                clock = t

    def _false_wake(self, user, device, sid, t, plan, rewriter, on_turn):
        """TV speech wakes the device: a random wording heard in the noisy condition."""
        w = self.world
        sf = int(plan.random() * len(w.surfaces))
        cond = w.noisy_condition or user.condition
        text_id, conf = w.heard[sf][self._cond_ix[cond]]
        text = w.texts[text_id]
        new, it = self._rewrite(rewriter, text, user, device, t, sid, 0, conf * 0.6)
        if new is None:
            it = w.interp[text_id]
        status, response = respond(it, False)
        barge = plan.random() < 0.6
        turn = log_turn(sid, 0, t, user, device, text, conf * 0.6, it, status, response, {"barge_in": barge}, new)
        truth = truth_row(sid, 0, user, None, None, [], True, "false_wake", None, 0, "false_wake", None, cond, "", new is not None)
        if on_turn:
            on_turn(turn, truth)
        return t + timedelta(seconds=plan.uniform(3, 10)), 1

    def _rewrite(self, rewriter, text, user, device, t, sid, turn_index, conf):
        """(the rewritten text, its interpretation), or (None, None) when passed through."""
        if rewriter is None:
            return None, None
        new = rewriter.rewrite(text, user_id=user.user_id, device=device_context(device), context={"hour": t.hour, "timestamp": t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "session_id": sid, "turn_index": turn_index,
                                                                                               "asr_confidence": round(conf, 3)})
        if new is None or " ".join(new.lower().split()) in ("", text):
            return None, None
        self.rewrites += 1
        new = " ".join(new.lower().split())
        return new, self._interp_of_text(new)

    def _pursue(self, user, device, sid, t, turn_index, goal_ix, goal_no, rewriter, on_turn, goals_out):
        w = self.world
        goal = w.sentences[goal_ix]
        r = random.Random(mix(self.config.seed, user.idx, goal_no, 3))
        intended = self.intended(user, goal)
        surfaces = self._goal_surfaces[goal_ix]
        plain = [s for s in surfaces if w.surfaces[s]["kind"] != "detail"]
        surface = plain[0] if r.random() < 0.7 or len(plain) == 1 else r.choice(plain)
        tried = {surface}
        vague = self._vague_value(user, goal, goal_no)
        goal_id = f"{user.user_id}-g{goal_no:07d}"
        first_fp, met, attempt, action = None, False, 0, "first"
        while True:
            if user.noise_p and r.random() < user.noise_p:
                cond = w.noisy_condition  # a noisy room
            elif action == "repeat" and r.random() < 0.5:
                cond = user.careful
            else:
                cond = user.condition
            text_id, conf = w.heard[surface][self._cond_ix[cond]]
            text = w.texts[text_id]
            said_vague = vague_text(text, vague) if vague and attempt == 0 else None  # the genre or cuisine left out
            if said_vague:
                text = said_vague
            new, it = self._rewrite(rewriter, text, user, device, t, sid, turn_index, conf)
            rewritten = new is not None
            nlu_text = new if rewritten else text
            if not rewritten:
                it = self._interp_of_text(text) if said_vague else w.interp[text_id]
            if self.teaching is not None:
                it = self.teaching.resolve(user.user_id, it)
            wrong = self.judge(goal, intended, it)
            skill_failed = r.random() < self._skill_fail[goal["intent"]] or (not device["state"]["online"] and goal["scenario"] == "iot")
            status, response = respond(it, skill_failed)
            defective = bool(wrong) or status not in ("success", "unsupported")
            if defective and said_vague:
                fp = wrong or "result"  # nothing misheard: the request left open what only the user's preference says
            elif defective:
                fp = self._failure_point(goal, intended, surface, nlu_text, wrong)
            else:
                fp = "correct"
            if first_fp is None:
                first_fp, first_rewritten = fp, rewritten
                first_ctx = (cond, device["type"], conf, it[0] == goal["intent"])
            # the user's reaction
            fb: dict = {"barge_in": False}
            if status == "success" and r.random() < (user.p_barge if defective else 0.02):
                fb["barge_in"] = True
            if defective and r.random() < user.p_explicit:
                fb.update(explicit="negative", comment="no that's not what i asked")
            elif status in ("success", "unsupported") and not fb["barge_in"] and r.random() < PROMPT_P and r.random() < user.p_answer:
                fb.update(explicit="negative" if defective else "positive", prompted=True, comment="no" if defective else "yes")
            turn = log_turn(sid, turn_index, t, user, device, text, conf, it, status, response, fb, nlu_text if rewritten else None)
            kind, reference = ("vague", vague_text(w.surfaces[surface]["text"], vague) or text) if said_vague else (w.surfaces[surface]["kind"], w.surfaces[surface]["text"])
            truth = truth_row(sid, turn_index, user, goal_id, goal, intended, defective, fp, turn_index - 1 if attempt else None, attempt, action, kind, cond, reference, rewritten)
            if on_turn:
                on_turn(turn, truth)
            if self.teaching is not None:
                self.teaching.after_turn(turn, self._prev, t, lambda m: user_answer(user, m, intended, self._names, r, self._decline_p(user)))
            self._prev = turn
            turn_index += 1
            t += timedelta(seconds=1.5 + r.uniform(0.5, 4.0))
            if not defective:
                met = True
                break
            attempt += 1
            if attempt >= user.patience or r.random() < 0.15:
                break  # abandon
            if said_vague:  # say it again with what was left out
                action = "rephrase"
                t += timedelta(seconds=r.uniform(1.0, 8.0))
                continue
            # repeat, or rephrase; a wrong place gets its state added when the user can
            detail = [s for s in surfaces if w.surfaces[s]["kind"] == "detail" and w.surfaces[s]["sense"] and any(i and i.endswith("@" + w.surfaces[s]["sense"]) for i in intended)]
            others = [s for s in plain if s not in tried]
            if fp == "entity_resolution" and detail and r.random() < 0.8:
                surface, action = detail[0], "rephrase"
            elif others and r.random() < user.p_rephrase:
                surface, action = r.choice(others), "rephrase"
            else:
                action = "repeat"
            tried.add(surface)
            t += timedelta(seconds=r.uniform(1.0, 8.0))
        goals_out.append((user.idx, first_fp != "correct", not met, first_fp, attempt + (1 if met else 0), first_rewritten, *first_ctx))
        return t, turn_index

    def _vague_value(self, user: User, goal: dict, goal_no: int) -> str | None:
        """The user's own genre or cuisine when this request for it will be said without it (its own
        random stream, so the rest of the traffic is the same with and without vague requests)."""
        slot = DEFAULT_SLOTS.get(goal["intent"])
        if not self.config.vague_share or slot is None:
            return None
        mine = user.preferences.get(slot)
        if mine is None or [tuple(x) for x in goal["slots"] if x[0] == slot] != [(slot, mine)]:
            return None  # only a request whose one genre or cuisine is the user's own is left open
        return mine if random.Random(mix(self.config.seed, user.idx, goal_no, 5)).random() < self.config.vague_share else None

    def _decline_p(self, user: User) -> float:
        if user.idx not in self._declines:
            self._declines[user.idx] = decline_propensity(user, self.config.seed)
        return self._declines[user.idx]

    def _failure_point(self, goal, intended, surface, nlu_text, wrong) -> str:
        """The first component whose failure the assistant did not recover from:
        ASR when its error changed what NLU understood or when the clean words
        would have worked; else the component ``judge`` blamed; else the result."""
        if not wrong:
            return "result"
        w = self.world
        ref = w.ref_text[surface]
        if nlu_text != w.texts[ref]:
            clean, heard = w.interp[ref], self._interp_of_text(nlu_text)
            if not self.judge(goal, intended, clean) or (heard[0], heard[3]) != (clean[0], clean[3]):
                return "asr"
        return wrong


def load_nlu_for(world_dir: Path):
    from .nlu import JointNLU

    return lambda: JointNLU.load(world_dir / "nlu")
