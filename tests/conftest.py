"""Shared fixtures: one thread for native libraries, a turn factory, a fresh store."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
# One pseudonym key for the suite: stores order sessions by pseudonym, so a fixed key keeps trained
# models the same from run to run (the key-file tests unset it).
os.environ["SELFLEARN_PSEUDONYM_KEY"] = "selflearn-test-suite-pseudonym-key"

import pytest  # noqa: E402

from selflearn.store.store import Store  # noqa: E402

BASE_TURN: dict[str, Any] = {
    "schema_version": 1,
    "session_id": "s1",
    "turn_index": 0,
    "timestamp": "2026-03-02T08:15:00Z",
    "user_id": "u-7f3a",
    "device_id": "kitchen-echo",
    "device": {"type": "speaker", "has_screen": False, "state": {"oven": "on", "volume": 6}, "location": "kitchen"},
    "utterance": {
        "text": "play we don't talk anymore",
        "asr_confidence": 0.87,
        "nbest": [{"text": "play we don't talk anymore", "confidence": 0.87},
                  {"text": "play we don't talk about bruno", "confidence": 0.09}],
    },
    "nlu": {
        "domain": "music",
        "intent": "music_play",
        "slots": [{"name": "song_name", "value": "we don't talk anymore"}],
        "confidence": 0.93,
        "top_k": [{"intent": "music_play", "confidence": 0.93}, {"intent": "audio_volume_up", "confidence": 0.03}],
    },
    "entity_resolution": {
        "status": "resolved",
        "entities": [{"slot": "song_name", "value": "we don't talk anymore", "resolved_id": "song:8812",
                      "resolved_value": "We Don't Talk Anymore", "score": 0.98, "candidates": 2}],
    },
    "response": {"status": "success", "text": "Playing We Don't Talk Anymore", "action": "music_play"},
    "latency_ms": 640.5,
    "feedback": {"barge_in": False, "explicit": None},
}


def make_turn(**overrides: Any) -> dict[str, Any]:
    """A valid turn; keyword arguments replace top-level fields (None removes one)."""
    turn = copy.deepcopy(BASE_TURN)
    for key, value in overrides.items():
        if value is None:
            turn.pop(key, None)
        else:
            turn[key] = value
    return turn


def session(session_id: str, n: int, start_minute: int = 0, **overrides: Any) -> list[dict[str, Any]]:
    return [
        make_turn(session_id=session_id, turn_index=i, timestamp=f"2026-03-02T08:{start_minute + i:02d}:00Z",
                  **overrides)
        for i in range(n)
    ]


def write_jsonl(path: Path, records: list[Any]) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for r in records:
            fh.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "test.duckdb") as st:
        yield st


def raw_ids(st: Store, *raw: str) -> dict[str, str]:
    """pseudonym -> raw id for the raw ids a test wrote (the store holds only keyed pseudonyms)."""
    ids = st.pseudonyms()
    return {ids.of(r): r for r in raw}


def count(st: Store, table: str = "turns") -> int:
    return st.reader().execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def quarantined(st: Store) -> list[dict[str, Any]]:
    from selflearn.store.importer import default_quarantine_path

    path = default_quarantine_path(st.path)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


WORLD_DATA = Path(__file__).parent / "data" / "world"


@pytest.fixture(scope="session")
def world_dir(tmp_path_factory) -> Path:
    """A small world (tests/data/world: 400 SLURP sentences), built once per test run."""
    from selflearn.world.experiments import ensure_world

    d = tmp_path_factory.mktemp("world")
    ensure_world(d, sentences=[WORLD_DATA / "sentences.jsonl"], asr_corpus=[WORLD_DATA / "asr.jsonl"], nlu_epochs=4)
    return d


@pytest.fixture(scope="session")
def world(world_dir):
    from selflearn.world.build import World

    return World.load(world_dir)


@pytest.fixture(scope="session")
def online_model(world_dir, world, tmp_path_factory) -> dict:
    """Logs of the small world, a mined table and an online model trained on them (small settings)."""
    from selflearn.online import OnlineConfig, train_online
    from selflearn.rewrites.mining import mine
    from selflearn.store.importer import import_files
    from selflearn.world.experiments import simulate_to
    from selflearn.world.simulate import SimConfig

    d = tmp_path_factory.mktemp("online")
    simulate_to(d / "sim", world_dir, world, SimConfig(users=150, days=7, seed=11))
    with Store(d / "s.duckdb") as st:
        import_files(st, [d / "sim" / "logs.jsonl"])
        mine(st, d / "rewrites.parquet")
        stats = train_online(st, d / "model", table=d / "rewrites.parquet",
                             config=OnlineConfig(max_pairs=256, examples=600, batch_size=32, min_precision=0.8))
    return {"dir": d, "model": d / "model", "table": d / "rewrites.parquet", "stats": stats, "logs": d / "sim" / "logs.jsonl"}


@pytest.fixture(scope="session")
def fpi_runs(world_dir, world, tmp_path_factory):
    """Two runs of the small world (other users, other seeds): one to train on, one held out."""
    from selflearn.fpi import read_failure_labels, store_turns
    from selflearn.fpi.isolation import labelled
    from selflearn.store.importer import import_files
    from selflearn.world.experiments import simulate_to
    from selflearn.world.simulate import SimConfig

    d = tmp_path_factory.mktemp("fpi")
    out = {}
    for name, users, seed in (("train", 150, 21), ("eval", 60, 22)):
        simulate_to(d / name, world_dir, world, SimConfig(users=users, days=7, seed=seed))
        with Store(d / f"{name}.duckdb") as st:
            import_files(st, [d / name / "logs.jsonl"])
            turns = store_turns(st)
            ids = st.pseudonyms()
        labels = d / name / "truth" / "turns.parquet"
        out[name] = (*labelled(turns, read_failure_labels(labels, ids)), d / f"{name}.duckdb", labels)
    out["dir"] = d
    return out


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(base: str, proc) -> None:
    """Wait (up to a minute) until a server started as ``proc`` answers ``base``/healthz; fail with its output."""
    import time

    import httpx

    for _ in range(300):
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    pytest.fail("the server did not start: " + (proc.stdout.read1().decode(errors="replace") if proc.stdout else ""))


@pytest.fixture(scope="session")
def api_keys(tmp_path_factory) -> dict:
    """A key file with three keys (the assistant's backend: rewrite + ingest; an operator: admin; a
    rewrite-only caller), their secrets and ready Authorization headers."""
    from selflearn.service.keys import KeyRing, create_key

    path = tmp_path_factory.mktemp("keys") / "keys.txt"
    out: dict = {"file": path}
    for name, scopes in (("backend", "rewrite,ingest"), ("ops", "admin"), ("reader", "rewrite")):
        secret, _ = create_key(path, name, scopes)
        out[name] = secret
        out[f"{name}_headers"] = {"authorization": f"Bearer {secret}"}
    out["ring"] = KeyRing.load(path, env="")
    return out


@pytest.fixture
def anyio_backend() -> str:
    """The service runs on uvicorn's asyncio loop (its owner thread is bridged with asyncio)."""
    return "asyncio"


# -- hostile input: every text field of every input carries markup that would run if not escaped ----
XSS = "<img src=x onerror=\"document.title='XSS'\"><script>document.title='XSS'</script>"


def hostile_turns() -> list[dict[str, Any]]:
    """Two sessions whose every free-text field (ids included) is an XSS payload; the first turn of
    each is a defect (barge-in / negative feedback), and one says a rewrite was served."""
    out = []
    for s in range(2):
        sid = f"s{s}{XSS}"
        for i in range(3):
            t = make_turn(session_id=sid, turn_index=i, timestamp=f"2026-03-0{2 + s}T08:{i:02d}:00Z", user_id=f"u{XSS}",
                          device_id=f"d{XSS}", device={"type": f"speaker{XSS}", "has_screen": False, "location": XSS},
                          utterance={"text": f"play {XSS}", "asr_confidence": 0.5, "rewrite": f"play the {XSS}"},
                          nlu={"domain": f"music{XSS}", "intent": f"music_play{XSS}", "slots": [{"name": f"song{XSS}", "value": XSS}]},
                          response={"status": "failure" if i == 0 else "success", "text": f"Playing {XSS}", "action": XSS},
                          feedback={"barge_in": i == 0, "explicit": "negative" if i == 0 else None, "comment": XSS})
            out.append(t)
    return out


def chromium_driver(window: str = "1280,1000"):
    """Headless Chromium through Debian's chromium-driver (None when either is missing)."""
    import shutil

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", f"--window-size={window}"):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=opts)


def serve(online_model_dir: Path, keys_file: Path, *extra: str, env: dict | None = None):
    """`selflearn online serve` as a real process on a free loopback port: (process, base URL)."""
    import subprocess
    import sys

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "selflearn.cli.main", "online", "serve", "--model", str(online_model_dir), "--port", str(port),
                             "--api-keys", str(keys_file), *extra], env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    wait_until_up(base, proc)
    return proc, base
