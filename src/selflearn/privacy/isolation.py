"""The online model's personal memory as a data store: can one user's entries be read by another
user's requests?

Each user's private entries are the requests only they (and fewer than k users in all) said, which
the global layer never holds. The check replays, as OTHER users, requests chosen to reach those
entries (the owner's own requests, the private texts themselves and their one-word variants) and
counts every rewrite that returns a text private to someone other than the asking user. Zero is
the only acceptable answer; a rewrite that returns the asker's own entry is the layer working."""

from __future__ import annotations

import random

from .kanon import K_DEFAULT

__all__ = ["personal_isolation"]


def personal_isolation(rw, *, owners: int = 30, askers: int = 10, requests: int = 5, min_users: int = K_DEFAULT, seed: int = 0) -> dict:
    """Replay ``requests`` of each of ``owners`` users' private entries as ``askers`` other users;
    the leaks found (who asked, whose entry came back: pseudonyms only)."""
    personal, g = rw.personal, rw.global_
    said_by: dict[str, set[str]] = {}
    for user, hist in personal.users.items():
        for text in hist:
            said_by.setdefault(text, set()).add(user)
    private = {t for t, us in said_by.items() if len(us) < min_users and not g.has_vector(t)}
    rng = random.Random(seed)
    users = sorted(personal.users)
    if len(users) < 2:
        return {"owners": 0, "requests": 0, "rewrites": 0, "leaks": 0, "examples": [], "note": "fewer than 2 users in the personal memory"}
    ids, rw.ids = rw.ids, None  # the memory holds pseudonyms: ask under them directly
    leaks, rewrites, asked, checked = [], 0, 0, 0
    try:
        for owner in rng.sample(users, min(owners, len(users))):
            mine = [t for t in personal.users[owner] if t in private]
            if not mine:
                continue
            checked += 1
            probes = rng.sample(mine, min(requests, len(mine)))
            probes += [" ".join(w for k, w in enumerate(t.split()) if k != len(t.split()) - 1) for t in probes if len(t.split()) > 2]
            for asker in rng.sample([u for u in users if u != owner], min(askers, len(users) - 1)):
                for q in probes:
                    asked += 1
                    d = rw.decide(q, user_id=asker)
                    if d.rewrite is None:
                        continue
                    rewrites += 1
                    whose = said_by.get(d.rewrite, set())
                    if d.rewrite in private and asker not in whose:
                        leaks.append({"asker": asker, "owner_of_entry": sorted(whose)[:3], "source": d.source})
    finally:
        rw.ids = ids
    return {"owners": checked, "requests": asked, "rewrites": rewrites, "leaks": len(leaks), "examples": leaks[:5],
            "private_entries": len(private)}
