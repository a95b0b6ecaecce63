"""The users of the world: voices, homes, devices, habits, rhythms, temperaments
and hidden preferences. Everything is drawn from one seed per user, so a user is
the same person in every run with that seed."""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field

from .build import World
from .catalogue import STATES

__all__ = ["DEVICE_TYPES", "User", "make_users", "mix"]

#: (type, has_screen, relative frequency)
DEVICE_TYPES = (("speaker", False, 5), ("screen_speaker", True, 3), ("phone", True, 2), ("tv", True, 1), ("car", False, 1))
ROOMS = ("kitchen", "living room", "bedroom", "office")


def mix(*parts: int) -> int:
    """A reproducible integer seed from several integers (no Python hash salt)."""
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (p & 0xFFFFFFFFFFFF)) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


@dataclass
class User:
    idx: int
    user_id: str
    condition: str
    #: a repeat is a new, more careful realisation: another voice's recording of the same words
    careful: str
    noise_p: float  # share of turns spoken in a noisy room
    home_state: str
    devices: list[dict]
    favourites: list[int]
    fav_cum: list[float]
    habit: float  # share of requests from the user's own favourites
    peaks: tuple[float, float]  # hours of day the user is most active
    sessions_per_day: float
    patience: int  # attempts before giving up, at most
    p_barge: float
    p_explicit: float
    p_rephrase: float  # rephrase rather than repeat
    p_answer: float  # answers "Did I answer your question?"
    preferences: dict = field(default_factory=dict)
    senses: dict = field(default_factory=dict)  # entity id -> the state this user means


def make_users(world: World, n: int, seed: int) -> list[User]:
    codes = [c for _, c in STATES]
    goals = world.sentences
    pop = [g["popularity"] for g in goals]
    cum = _cumulative(pop)
    by_value: dict[tuple[str, str], list[int]] = {}
    for i, g in enumerate(goals):
        for t, v in g["slots"]:
            by_value.setdefault((t, v), []).append(i)
    genres = sorted({v for (t, v) in by_value if t == "music_genre"}) or ["pop"]
    cuisines = sorted({v for (t, v) in by_value if t == "food_type"}) or ["italian"]
    teams = ["warriors", "lakers", "yankees", "giants", "patriots", "cowboys"]
    ambiguous = [e for e in world.entities if len(e["senses"]) > 1]
    quiet = [c for c in world.conditions if c != world.noisy_condition] or list(world.conditions)
    users = []
    for i in range(n):
        r = random.Random(mix(seed, i, 7))
        rank = 1 + int(r.random() * n)  # Zipf-like activity: a few heavy users, a long tail; mean ≈ 2.5 sessions/day
        home = r.choice(codes)
        prefs = {"music_genre": r.choice(genres), "food_type": r.choice(cuisines), "sports_team": r.choice(teams), "home_state": home}
        k = r.randint(5, 25)
        fav = [bisect.bisect(cum, r.random() * cum[-1]) for _ in range(k)]
        fav += by_value.get(("music_genre", prefs["music_genre"]), [])[:2] + by_value.get(("food_type", prefs["food_type"]), [])[:2]
        weights = [r.paretovariate(1.2) for _ in fav]
        ndev = r.choice((1, 1, 2, 2, 3))
        devices = []
        for d in range(ndev):
            t, screen, _ = r.choices(DEVICE_TYPES, weights=[w for *_, w in DEVICE_TYPES])[0]
            devices.append({
                "device_id": f"d{i:05d}-{d}",
                "type": t,
                "has_screen": screen,
                "location": r.choice(ROOMS) if t not in ("phone", "car") else None,
                "state": {"volume": r.randint(2, 9), "dnd": r.random() < 0.1, "online": r.random() > 0.03},
            })
        senses = {}
        for e in ambiguous:
            senses[e["id"]] = home if home in e["senses"] else (e["senses"][0] if r.random() < 0.5 else r.choice(e["senses"][1:]))
        users.append(
            User(
                idx=i,
                user_id=f"u{i:05d}",
                condition=(voice := r.choice(quiet)),
                careful=r.choice([c for c in quiet if c != voice] or [voice]),
                noise_p=r.choice((0.0, 0.05, 0.1, 0.25)) if world.noisy_condition else 0.0,
                home_state=home,
                devices=devices,
                favourites=fav,
                fav_cum=_cumulative(weights),
                habit=r.uniform(0.3, 0.8),
                peaks=(r.gauss(7.5, 1.0), r.gauss(19.0, 1.5)),
                sessions_per_day=min(20.0, max(0.1, 1.25 * n**0.5 * rank**-0.5)),
                patience=r.choice((1, 2, 3, 3, 4, 5)),
                p_barge=r.uniform(0.2, 0.8),
                p_explicit=r.uniform(0.0, 0.15),
                p_rephrase=r.uniform(0.3, 0.9),
                p_answer=r.uniform(0.5, 1.0),
                preferences=prefs,
                senses=senses,
            )
        )
    return users


def _cumulative(weights: list[float]) -> list[float]:
    out, acc = [], 0.0
    for w in weights:
        acc += w
        out.append(acc)
    return out
