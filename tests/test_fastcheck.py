"""The fast path may only change speed: whatever it accepts, pydantic accepts too."""

from __future__ import annotations

import copy
import json

import msgspec
from conftest import make_turn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from selflearn.logs.fastcheck import compile_fast_type
from selflearn.logs.schema import Turn

FAST = compile_fast_type(Turn.model_json_schema())

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
    st.sampled_from(["", "2026-03-02T08:15:00Z", "2026-03-02 08:15:00Z", "2026-02-30T08:15:00Z",
                     "2026-03-02T08:15:00", "2026-03-02T08:15:00.1234567Z", "1700000000", "success", "resolved",
                     "positive", "1", "true"]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                            max_size=3), max_leaves=6)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


BASE = make_turn()
PATHS = [p for p in _paths(BASE) if p]


@st.composite
def mutated(draw):
    turn = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        parent = turn
        try:
            for part in path[:-1]:
                parent = parent[part]
            action = draw(st.sampled_from(["set", "delete", "add"]))
            if action == "delete" and isinstance(parent, dict):
                parent.pop(path[-1], None)
            elif action == "add" and isinstance(parent, dict):
                parent[draw(st.text(min_size=1, max_size=6))] = draw(values)
            else:
                parent[path[-1]] = draw(values)
        except (KeyError, IndexError, TypeError):
            pass
    return turn


def _pydantic_ok(raw: bytes) -> bool:
    try:
        Turn.model_validate_json(raw)
        return True
    except ValidationError:
        return False


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_fast_path_accepts_only_what_pydantic_accepts(turn):
    raw = json.dumps(turn).encode()
    try:
        FAST.decode(raw)
    except (msgspec.DecodeError, ValueError):
        return  # rejected: pydantic decides, nothing to check
    assert _pydantic_ok(raw), raw


def test_fast_path_takes_ordinary_records():
    for turn in (make_turn(), make_turn(nlu=None, entity_resolution=None, response=None, feedback=None)):
        FAST.decode(json.dumps(turn).encode())


def test_fast_path_defers_what_it_cannot_judge():
    for turn in (make_turn(app_version="1"), make_turn(timestamp="2026-03-02 08:15:00Z")):
        raw = json.dumps(turn).encode()
        try:
            FAST.decode(raw)
            raise AssertionError("fast path should defer")
        except msgspec.ValidationError:
            pass
        assert _pydantic_ok(raw)


def test_fast_path_refuses_a_date_that_does_not_exist():
    """The timestamp pattern admits 2026-02-30 (and 29 February of a common year); pydantic refuses
    them, so the fast path must send them to pydantic rather than store them."""
    for stamp in ("2026-02-30T08:15:00Z", "2027-02-29T00:00:00+01:00", "2026-04-31T23:59:59.5Z"):
        raw = json.dumps(make_turn(timestamp=stamp)).encode()
        try:
            FAST.decode(raw)
            raise AssertionError(f"fast path accepted {stamp}")
        except msgspec.ValidationError:
            pass
        assert not _pydantic_ok(raw)
    for stamp in ("2028-02-29T08:15:00Z", "2026-03-02T08:15:00.123456+05:30"):
        FAST.decode(json.dumps(make_turn(timestamp=stamp)).encode())
