"""The online rewriter: the precomputed table first, then dense retrieval from the global and the
personal layer, re-ranked, rewritten only above a threshold chosen for precision."""

from __future__ import annotations

import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import InvalidInputError, explain
from ..text import normalise
from ..models.directory import read_config, write_config
from ..privacy.pseudonyms import model_pseudonyms
from ..rewrites.table import TableRewriter
from .habits import HabitRules, habit_rewrite
from .features import as_matrix, candidate_features, query_features
from .memory import GlobalMemory, PersonalMemory, epoch_seconds, hour_bucket
from .ranker import Ranker

__all__ = ["OnlineRewriter", "Decision", "LAYERS", "MODEL_FORMAT", "COMPONENT"]

LAYERS = ("table", "global", "personal")
COMPONENT = "online-rewriter"
MODEL_FORMAT = 3  # 2: the personal layer remembers each user's own fixes; 3: the shared model directory (config.json)
MAX_CHARS = 512  # requests longer than this are not assistant requests; they pass through


@dataclass(frozen=True)
class Decision:
    rewrite: str | None
    source: str | None  # table | global | phonetic | personal | preferences, or None when passed through
    score: float | None


class OnlineRewriter:
    """``rewrite(utterance, user_id=, device=, context=)`` as the world's hook expects;
    ``decide`` adds where the rewrite came from and its score; ``observe(turn)`` feeds the
    personal layer. ``layers`` switches parts off (the A/B arms) without retraining."""

    def __init__(self, encoder, global_memory: GlobalMemory, personal: PersonalMemory, ranker: Ranker, table: TableRewriter | None = None,
                 *, layers: tuple[str, ...] = LAYERS, k_global: int = 10, k_personal: int = 5, k_phonetic: int = 0,
                 threshold: float | None = None, personal_threshold: float | None = None, habits: HabitRules | None = None):
        bad = set(layers) - set(LAYERS)
        if bad:
            raise InvalidInputError(explain(f"layers={sorted(bad)}", f"must be among {list(LAYERS)}", "e.g. layers=('table', 'global')"))
        self.encoder = encoder
        self.global_ = global_memory
        self.personal = personal
        self.ranker = ranker
        self.table = table
        self.layers = tuple(layers)
        self.k_global = k_global
        self.k_personal = k_personal
        self.k_phonetic = k_phonetic  # candidates that sound like the request, beside the k_global nearest in meaning
        self.threshold = ranker.threshold_ if threshold is None else threshold
        # the personal layer's ranked candidates may have a threshold of their own (None: the same)
        self.personal_threshold = personal_threshold
        self.user_free_global = False  # the global layer decides without the user's history (see _ranked; `online calibrate` sets it)
        self.habits = (habits or HabitRules(fix_min=0, phrase_min=0)).check()  # the user's own fixes as rules (off: the ranker decides)
        self.blocked: set[tuple[str, str]] = set()  # (request, rewrite) pairs an operator blocked
        self.preferences = None  # a teach.Preferences: the personal layer fills in what each user taught
        self.ids = None  # the store's Pseudonyms: requests name users by their own ids, the layers by pseudonyms
        self.dp = None  # what the model spent in differential privacy (set on load)
        self._cache: dict[str, np.ndarray] = {}
        self.counts: Counter = Counter()  # decisions by source ("none" for pass-through)
        self._device_col = {d: i for i, d in enumerate(global_memory.device_types)}
        self._location_col = {d: i for i, d in enumerate(global_memory.locations)}

    # -- the hook ----------------------------------------------------------------
    def rewrite(self, utterance: str, *, user_id: str = "", device: dict | None = None, context: dict | None = None) -> str | None:
        d = self.decide(utterance, user_id=user_id, device=device, context=context)
        self.counts[d.source or "none"] += 1
        return d.rewrite

    def _pseudonym(self, user_id: str) -> str:
        return self.ids.of(user_id) if self.ids is not None and user_id else user_id

    def observe(self, turn: dict) -> None:
        """Feed a logged turn (the assistant's own ids) to the personal layer."""
        if "personal" in self.layers:
            if self.ids is not None:
                turn = {**turn, "user_id": self._pseudonym(turn["user_id"]), "session_id": self._pseudonym(turn["session_id"])}
            self.personal.observe(turn)

    def decide(self, utterance: str, *, user_id: str = "", device: dict | None = None, context: dict | None = None) -> Decision:
        """The decision for a request; ``user_id`` is the assistant's own id (pseudonymised here)."""
        q = normalise(utterance)
        if not q or len(q) > MAX_CHARS:
            return Decision(None, None, None)
        taught = self._taught(q, user_id)
        uid = self._pseudonym(user_id)
        if taught is not None:  # what the user taught first ("play the game" -> their team), then the layers on that
            d = self._decide(taught, uid, device, context)
            return d if d.rewrite is not None else Decision(taught, "preferences", None)
        return self._decide(q, uid, device, context)

    def history(self, user_id: str) -> dict[str, list]:
        """What the personal layer remembers about a user (the assistant's own id)."""
        return self.personal.history(self._pseudonym(user_id))

    def forget(self, user_id: str) -> bool:
        """Drop everything the personal layer remembers about a user (the assistant's own id)."""
        return self.personal.forget(self._pseudonym(user_id))

    def _taught(self, q: str, user_id: str) -> str | None:
        if self.preferences is None or "personal" not in self.layers or not user_id:
            return None
        from ..teach.preference_rewriter import PreferenceRewriter

        new = PreferenceRewriter(self.preferences).rewrite(q, user_id=user_id, device={}, context={})
        return new if new is not None and (q, new) not in self.blocked else None

    def _decide(self, q: str, user_id: str, device: dict | None, context: dict | None) -> Decision:
        if "table" in self.layers and self.table is not None:
            new = self.table.rewrite(q, context=context)
            if new is not None and (q, new) not in self.blocked:
                return Decision(new, "table", None)
        if "personal" in self.layers and user_id and (context or {}).get("timestamp") is not None:
            self.personal.catch_up(user_id, _now(context, self.personal, user_id))
        habits = "personal" in self.layers and self.habits.on
        if habits and not self.habits.after_global:
            fix = self._habit(q, user_id, context)
            if fix is not None:
                return Decision(fix, "personal", None)
        ranked = self._ranked(q, user_id, device, context) if "global" in self.layers or "personal" in self.layers else Decision(None, None, None)
        if habits and self.habits.after_global and ranked.source not in ("global", "phonetic"):
            fix = self._habit(q, user_id, context)
            if fix is not None:
                return Decision(fix, "personal", None)
        return ranked

    def _ranked(self, q: str, user_id: str, device: dict | None, context: dict | None) -> Decision:
        """The best candidate that clears its own layer's threshold (or none, with the best score).
        With ``user_free_global``, the global layer decides as it would for a user without history
        (as its threshold was calibrated on a pilot: `selflearn online calibrate`); the user's own
        candidates are ranked after it, and only when the personal layer's threshold can be cleared."""
        device, context = device or {}, context or {}
        if not (self.user_free_global and "global" in self.layers):
            return self._best(*self.candidates(q, user_id=user_id, device=device, context=context))
        d = self._best(*self.candidates(q, user_id="", device=device, context=context))
        if d.rewrite is not None or "personal" not in self.layers or self.threshold_of("personal") >= 1.0:
            return d
        texts, sources, x = self.candidates(q, user_id=user_id, device=device, context=context)
        mine = [k for k, src in enumerate(sources) if src == "personal"]
        own = self._best([texts[k] for k in mine], [sources[k] for k in mine], x[mine])
        return own if own.rewrite is not None else d

    def _best(self, texts: list[str], sources: list[str], x: np.ndarray) -> Decision:
        if not texts:
            return Decision(None, None, None)
        scores = self.ranker.score(x)
        clears = scores >= np.array([self.threshold_of(src) for src in sources])
        if not clears.any():
            return Decision(None, None, float(scores.max()))
        best = int(np.argmax(np.where(clears, scores, -np.inf)))
        return Decision(texts[best], sources[best], float(scores[best]))

    def threshold_of(self, source: str) -> float:
        """The score a candidate from ``source`` needs to be served."""
        return self.personal_threshold if source == "personal" and self.personal_threshold is not None else self.threshold

    def _habit(self, q: str, user_id: str, context: dict | None) -> str | None:
        return habit_rewrite(self.personal, user_id, q, self.habits, g=self.global_, blocked=self.blocked,
                             confidence=(context or {}).get("asr_confidence"))

    # -- candidates and their features -------------------------------------------
    def encode(self, text: str) -> np.ndarray:
        v = self._cache.get(text)
        if v is None:
            if len(self._cache) > 200_000:
                self._cache.clear()
            v = self._cache[text] = self.encoder.encode([text])[0]
        return v

    def warm(self, texts: list[str]) -> None:
        """Encode many requests in batches ahead of time (replays and benchmarks)."""
        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        for t, v in zip(todo, self.encoder.encode(todo) if todo else []):
            self._cache[t] = v

    def candidates(self, q: str, *, user_id: str, device: dict, context: dict) -> tuple[list[str], list[str], np.ndarray]:
        """Candidate rewrites of ``q`` from both layers (never ``q`` itself, never a blocked
        pair), where each came from (the global layer's search by meaning or by sound, or the
        user's own history; one both found is the global layer's), and their feature rows."""
        g = self.global_
        qv = self.encode(q)
        found: dict[str, tuple[str, float]] = {}
        if "global" in self.layers:
            ids, cos = g.search(qv, self.k_global + 1)
            for i, c in zip(ids.tolist(), cos.tolist()):
                found.setdefault(g.texts[i], ("global", c))
            for i in g.phonetic_search(q, self.k_phonetic)[0].tolist():
                if g.texts[i] not in found:
                    found[g.texts[i]] = ("phonetic", float(g.vectors[g.vector_of[i]] @ qv))
        hist = self.personal.history(user_id) if "personal" in self.layers else {}
        if hist:
            mine = [t for t, e in hist.items() if e[1] > 0]
            vecs = [self._vector(t) for t in mine]
            keep = [k for k, v in enumerate(vecs) if v is not None]
            if keep:
                sims = np.stack([vecs[k] for k in keep]) @ qv
                for k in np.argsort(-sims)[: self.k_personal + 1]:  # (one the global layer found stays the global layer's)
                    found.setdefault(mine[keep[k]], ("personal", float(sims[k])))
            for text in self.personal.fixes_of(user_id, q):  # what worked when this user retried this request
                v = self._vector(text)
                if text not in found and v is not None:
                    found[text] = ("personal", float(v @ qv))
        found.pop(q, None)
        for pair in [p for p in self.blocked if p[0] == q]:
            found.pop(pair[1], None)
        if not found:
            return [], [], as_matrix([], [])
        qrow = g.row.get(q)
        q_turns, q_succ, q_fixes = (int(g.turns[qrow]), int(g.successes[qrow]), int(g.fixes[qrow])) if qrow is not None else (0, 0, 0)
        qh = hist.get(q)
        qf = query_features(q_turns, q_succ, qh[0] if qh else 0, qh[1] if qh else 0, context.get("asr_confidence"), q_fixes)
        q_heard = g.meaning_heard[qrow] if qrow is not None else -2
        now = _now(context, self.personal, user_id)
        dcol = self._device_col.get(str(device.get("type")))
        lcol = self._location_col.get(str(device.get("location")))
        hb = hour_bucket(context["hour"]) if isinstance(context.get("hour"), int) else None
        has_screen = device.get("has_screen")
        rows, texts, sources = [], [], []
        for text, (source, cos) in found.items():
            r = g.row.get(text)
            e = hist.get(text)
            served, failed = self.personal.served_stats(user_id, q, text) if "personal" in self.layers else (0, 0)
            fixed = self.personal.fixes_of(user_id, q).get(text, 0) if "personal" in self.layers else 0
            meaning = g.meaning[r] if r is not None else -1
            rows.append(candidate_features(
                q, text, cosine=cos, same_meaning=meaning >= 0 and meaning == q_heard,
                c_turns=int(g.turns[r]) if r is not None else 0, c_successes=int(g.successes[r]) if r is not None else 0,
                u_successes=e[1] if e else 0, u_last_ts=e[2] if e else None, now=now, served=served, failed=failed, fixed=fixed,
                ctx_device=float(g.device_share[r, dcol]) if r is not None and dcol is not None else 0.0,
                ctx_screen=(float(g.screen_share[r]) if has_screen else 1.0 - float(g.screen_share[r])) if r is not None and isinstance(has_screen, bool) else 0.0,
                ctx_hour=float(g.hour_share[r, hb]) if r is not None and hb is not None else 0.0,
                ctx_location=float(g.location_share[r, lcol]) if r is not None and lcol is not None else 0.0))
            texts.append(text)
            sources.append(source)
        return texts, sources, as_matrix(qf, rows)

    def meanings(self, texts: list[str], user_id: str) -> list[str | None]:
        """The meaning each candidate is known by: the global layer's (what it usually means when it
        works) or, for a request only this user says (a pseudonym), the meaning it had when it last
        worked for them; None when neither knows."""
        g, hist = self.global_, self.personal.history(user_id) if user_id else {}
        out = []
        for t in texts:
            r = g.row.get(t)
            m = g.meaning_of(r) if r is not None else None
            out.append(m if m is not None else hist[t][3] if t in hist else None)
        return out

    def _vector(self, text: str) -> np.ndarray | None:
        v = self.global_.vector(text)
        return self.personal.vectors.get(text) if v is None else v

    # -- the model directory -------------------------------------------------------
    def save(self, directory: Path, *, meta: dict | None = None) -> None:
        """Write the layers, the ranker and ``config.json`` into ``directory`` (which already holds
        the encoder: `selflearn online train` writes it first, then the rest)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.global_.save(directory / "global")
        self.personal.save(directory / "personal")
        self.ranker.save(directory / "ranker")
        if self.table is not None and self.table.path is not None and Path(self.table.path).resolve() != (directory / "rewrites.parquet").resolve():
            shutil.copyfile(self.table.path, directory / "rewrites.parquet")
        parts = {"encoder": "encoder/", "encoder_onnx": "encoder.onnx", "global": "global/", "personal": "personal/",
                 "ranker": "ranker/", "table": "rewrites.parquet" if (directory / "rewrites.parquet").exists() else None}
        params = {"k_global": self.k_global, "k_personal": self.k_personal, "k_phonetic": self.k_phonetic, **asdict(self.habits),
                  "user_free_global": self.user_free_global}
        privacy = None if self.ids is None else {"pseudonym_key": self.ids.fingerprint, "key_file": self.ids.source}
        dp = _spent_by_parts(directory, self.ranker, self.global_)
        if dp:
            privacy = {**(privacy or {}), **dp}
        write_config(directory, {"component": COMPONENT, "format_version": MODEL_FORMAT, "params": params, "parts": parts,
                                 "learned": {"threshold": self.threshold, "personal_threshold": self.personal_threshold}, "privacy": privacy, **(meta or {})})

    @classmethod
    def load(cls, directory: Path, *, layers: tuple[str, ...] = LAYERS, threads: int = 1, torch_encoder: bool = False,
             threshold: float | None = None, personal_threshold: float | None = None, fix_min: int | None = None, phrase_min: int | None = None, habits: HabitRules | None = None,
             k_phonetic: int | None = None, key_file: Path | None = None) -> "OnlineRewriter":
        """The saved model; the pseudonym key it was trained under comes from ``key_file``,
        ``$SELFLEARN_PSEUDONYM_KEY`` or the key file recorded at training (checked by fingerprint)."""
        from .encoder import BiEncoder, OnnxEncoder

        directory = Path(directory)
        config = read_config(directory, component=COMPONENT, format_version=MODEL_FORMAT, fix="retrain it with `selflearn online train`")
        params = config["params"]
        encoder = BiEncoder.load(directory / "encoder", threads=threads) if torch_encoder else OnnxEncoder(directory / "encoder.onnx", directory / "encoder" / "tokenizer", threads=threads)
        g = GlobalMemory.load(directory / "global")
        personal = PersonalMemory.load(directory / "personal", encoder, known=g.has_vector)
        table = TableRewriter.load(directory / "rewrites.parquet") if config["parts"].get("table") else None
        rw = cls(encoder, g, personal, Ranker.load(directory / "ranker"), table, layers=layers,
                 k_global=params["k_global"], k_personal=params["k_personal"], k_phonetic=params.get("k_phonetic", 0) if k_phonetic is None else k_phonetic,
                 threshold=config["learned"]["threshold"] if threshold is None else threshold,
                 personal_threshold=_personal_threshold(config["learned"], threshold, personal_threshold),
                 habits=_habits(params, habits, fix_min, phrase_min))
        rw.user_free_global = bool(params.get("user_free_global", False))
        rw.ids = model_pseudonyms(directory, config.get("privacy"), key_file)
        rw.dp = {k: v for k, v in (config.get("privacy") or {}).items() if k not in ("pseudonym_key", "key_file")} or None
        return rw


def _habits(params: dict, habits: HabitRules | None, fix_min: int | None, phrase_min: int | None) -> HabitRules:
    """The saved habit rules (a model saved before the similarity and as-heard checks had neither),
    or ``habits``, with ``fix_min`` / ``phrase_min`` overriding theirs."""
    base = habits or HabitRules(fix_min=params["fix_min"], phrase_min=params["phrase_min"], fix_similarity=params.get("fix_similarity", 0.0),
                                skip_working=params.get("skip_working", False), after_global=params.get("after_global", False),
                                max_confidence=params.get("max_confidence", 1.0))
    return replace(base, **{k: v for k, v in (("fix_min", fix_min), ("phrase_min", phrase_min)) if v is not None})


def _personal_threshold(learned: dict, threshold: float | None, personal_threshold: float | None) -> float | None:
    """The personal layer's threshold on load: the one asked for; else, when only ``threshold`` is
    asked for, that one (a single threshold, as before the personal layer had its own); else the
    saved one (None in models saved before: the global layer's)."""
    if personal_threshold is not None:
        return personal_threshold
    return threshold if threshold is not None else learned.get("personal_threshold")


def _now(context: dict, personal: PersonalMemory, user_id: str) -> float:
    """The request's time: context['timestamp'] (ISO or epoch), else the user's latest turn, else now."""
    ts = context.get("timestamp")
    if ts is not None:
        try:
            return epoch_seconds(ts)
        except (ValueError, TypeError):
            pass
    pending = personal.pending.get(user_id)
    return pending.ts if pending else time.time()


def _spent_by_parts(directory: Path, ranker, global_: GlobalMemory) -> dict | None:
    """The DP budget of the parts released with DP (the encoder's adapter, the ranker, the global
    layer), composed: their epsilons and deltas add up (they learn from the same users' logs)."""
    from ..models.directory import describe

    parts = {}
    if (directory / "encoder" / "config.json").is_file() and (describe(directory / "encoder").get("privacy") or {}).get("epsilon") is not None:
        parts["encoder"] = describe(directory / "encoder")["privacy"]
    if getattr(ranker, "privacy_", None):
        parts["ranker"] = ranker.privacy_
    if global_.privacy:
        parts["global"] = global_.privacy
    if not parts:
        return None
    return {"unit": "user", "epsilon": round(sum(p["epsilon"] for p in parts.values()), 4), "delta": sum(p["delta"] for p in parts.values()),
            "composition": "basic (the parts' epsilons and deltas add up)", "trained_with_dp": " + ".join(parts), "parts": parts}
