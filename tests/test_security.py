"""Who may call the service and with what: API keys and scopes on every operation, JSON-only bodies,
no CORS unless configured, size limits, admission control with deadlines; the key file; the CLI's
output of hostile log text."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time

import httpx
import pytest
from typer.testing import CliRunner

from selflearn.errors import InvalidInputError, OverloadedError
from selflearn.service import create_app
from selflearn.service.app import ServiceSettings
from selflearn.service.keys import KeyRing, create_key, key_digest, revoke_key
from selflearn.service.owner import Owner

TURN = {"schema_version": 1, "session_id": "sec-s1", "turn_index": 0, "timestamp": "2026-05-01T10:00:00Z", "user_id": "sec-user",
        "device_id": "d1", "device": {"type": "speaker", "has_screen": False}, "utterance": {"text": "play jazz"}, "response": {"status": "success"}}
SCOPE_OF = {("POST", "/v1/rewrite"): "rewrite", ("POST", "/v1/turns"): "ingest", ("POST", "/v1/teach"): "ingest",
            ("PUT", "/v1/users/{user_id}/preferences/{kind}"): "ingest", ("GET", "/v1/users/{user_id}/preferences"): "admin",
            ("DELETE", "/v1/users/{user_id}/preferences"): "admin", ("GET", "/v1/users/{user_id}/history"): "admin",
            ("DELETE", "/v1/users/{user_id}"): "admin", ("GET", "/v1/status"): "admin", ("GET", "/metrics"): "admin"}


@pytest.fixture(scope="module")
def api(online_model, api_keys, tmp_path_factory):
    return create_app(online_model["model"], keys=api_keys["ring"], store=tmp_path_factory.mktemp("sec") / "prefs.duckdb")


@pytest.fixture
async def anon(api):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://test") as c:
        yield c


def _operations(api) -> list[tuple[str, str]]:
    spec = api.openapi()
    return [(m.upper(), p) for p, ops in spec["paths"].items() for m in ops if m in ("get", "post", "put", "delete")]


def _concrete(path: str) -> str:
    return path.replace("{user_id}", "sec-user").replace("{kind}", "cuisine")


def _body(method: str, path: str) -> dict | None:
    if method not in ("POST", "PUT"):
        return None
    return {"/v1/rewrite": {"utterance": "play jazz", "user_id": "u"}, "/v1/turns": TURN, "/v1/teach": {"user_id": "u", "utterance": "hi"}}.get(
        path, {"value": "thai"})


@pytest.mark.anyio
async def test_every_operation_has_a_scope_and_refuses_anonymous_and_wrong_scope_callers(api, anon, api_keys):
    ops = _operations(api)
    public = {("GET", "/healthz")}
    assert set(ops) - public == set(SCOPE_OF), "an operation without a declared scope"
    holders = {"rewrite": "reader", "ingest": "backend", "admin": "ops"}
    for method, path in ops:
        if (method, path) in public:
            continue
        url, body = _concrete(path), _body(method, path)
        r = await anon.request(method, url, json=body)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", (method, path)
        assert "needs an API key" in r.json()["error"] and "fix:" in r.json()["error"]
        r = await anon.request(method, url, json=body, headers={"authorization": "Bearer sl_not-a-key"})
        assert r.status_code == 401, (method, path)
        scope = SCOPE_OF[(method, path)]
        wrong = {"rewrite": "ops", "ingest": "reader", "admin": "backend"}[scope]  # keys with every scope but this one
        r = await anon.request(method, url, json=body, headers=api_keys[f"{wrong}_headers"])
        assert r.status_code == 403 and f"needs the {scope!r} scope" in r.json()["error"], (method, path, wrong)
        r = await anon.request(method, url, json=body, headers=api_keys[f"{holders[scope]}_headers"])
        assert r.status_code in (200, 404), (method, path, r.text)  # 404: that user has nothing here
    assert (await anon.get("/healthz")).json()["status"] == "ok"
    spec = api.openapi()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"  # /docs offers "Authorize"


@pytest.mark.anyio
async def test_bodies_must_be_json_and_no_cors_by_default(anon, api_keys):
    h = api_keys["backend_headers"]
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""):
        r = await anon.post("/v1/turns", content=json.dumps(TURN), headers={**h, "content-type": ctype})
        assert r.status_code == 415 and "application/json" in r.json()["error"], ctype
    r = await anon.post("/v1/turns", content=json.dumps(TURN), headers={**h, "content-type": "application/json; charset=utf-8"})
    assert r.status_code == 200
    r = await anon.options("/v1/rewrite", headers={"origin": "https://evil.example", "access-control-request-method": "POST",
                                                    "access-control-request-headers": "authorization,content-type"})
    assert "access-control-allow-origin" not in r.headers
    r = await anon.post("/v1/rewrite", json={"utterance": "hi", "user_id": "u"}, headers={**h, "origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


@pytest.mark.anyio
async def test_cors_only_for_configured_origins(online_model, api_keys):
    app = create_app(online_model["model"], keys=api_keys["ring"], settings=ServiceSettings(cors_origins=("https://app.example.com",)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        pre = {"access-control-request-method": "POST", "access-control-request-headers": "authorization,content-type"}
        r = await c.options("/v1/rewrite", headers={"origin": "https://app.example.com", **pre})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example.com"
        r = await c.options("/v1/rewrite", headers={"origin": "https://evil.example", **pre})
        assert r.headers.get("access-control-allow-origin") != "https://evil.example"
    with pytest.raises(InvalidInputError, match="scheme://host"):
        ServiceSettings(cors_origins=("app.example.com/",)).check()


@pytest.mark.anyio
async def test_size_limits_per_request_and_per_field(anon, api_keys):
    h = api_keys["backend_headers"]
    big = {**TURN, "utterance": {"text": "x" * 100_000}}
    r = await anon.post("/v1/turns", json=big, headers=h)
    assert r.status_code == 413 and "65,536 bytes" in r.json()["error"]

    async def chunks():  # no content-length: the body streams in and is cut off at the limit
        for _ in range(100):
            yield b"x" * 1024

    r = await anon.post("/v1/turns", content=chunks(), headers={**h, "content-type": "application/json"})
    assert r.status_code == 413
    long_field = {**TURN, "utterance": {"text": "play " + "y" * 3000}}
    r = await anon.post("/v1/turns", json=long_field, headers=h)
    assert r.status_code == 413 and "utterance.text (3,005 characters)" in r.json()["error"] and "at most 2,000" in r.json()["error"]
    many = {**TURN, "nlu": {"domain": "m", "intent": "i", "slots": [{"name": "s", "value": "v"}] * 60}}
    r = await anon.post("/v1/turns", json=many, headers=h)
    assert r.status_code == 413 and "nlu.slots (60 items)" in r.json()["error"]
    r = await anon.post("/v1/rewrite", json={"utterance": "x" * 10_000, "user_id": "u"}, headers=h)
    assert r.status_code == 422 and "10000 characters" in r.json()["error"]
    r = await anon.post("/v1/rewrite", json={"utterance": "   ", "user_id": "u"}, headers=h)
    assert "'\\S'" in r.json()["error"]  # the rule is quoted as it is (not lower-cased to \s)


def test_the_owner_sheds_what_it_cannot_start_in_time():
    async def scenario():
        owner = Owner(max_queue=100)
        owner.job_s = 0.02
        slow = [asyncio.ensure_future(owner.run(time.sleep, 0.02, deadline_s=1.0)) for _ in range(5)]
        await asyncio.sleep(0)
        with pytest.raises(OverloadedError) as shed:  # 6 jobs x 20 ms > 50 ms: refused at once
            await owner.run(lambda: 1, deadline_s=0.05)
        assert shed.value.retry_after_s >= 1 and "at capacity" in str(shed.value)
        await asyncio.gather(*slow)
        assert await owner.run(lambda: 2, deadline_s=0.05) == 2  # the queue drained: admitted again
        owner.job_s = 0.0001  # a wrong estimate: admitted, then the deadline passes while it waits
        blocker = asyncio.ensure_future(owner.run(time.sleep, 0.2, deadline_s=1.0))
        await asyncio.sleep(0.01)
        ran = []
        with pytest.raises(OverloadedError, match="past its deadline"):
            await owner.run(lambda: ran.append(1), deadline_s=0.05)
        await blocker
        await asyncio.sleep(0.05)
        assert ran == [] and owner.expired == 1 and owner.shed == 1 and owner.waiting == 0  # the late job never ran
        owner.close()

    asyncio.run(scenario())


@pytest.mark.anyio
async def test_overload_is_a_fast_503_with_retry_after(online_model, api_keys):
    app = create_app(online_model["model"], keys=api_keys["ring"], settings=ServiceSettings(deadline_ms=30))
    owner = app.state.owner
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", headers=api_keys["backend_headers"]) as c:
        owner.job_s = 0.05  # as if each rewrite took 50 ms: none fits a 30 ms deadline
        r = await c.post("/v1/rewrite", json={"utterance": "play jazz", "user_id": "u"})
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and "at capacity" in r.json()["error"]
        owner.job_s = 0.001
        r = await c.post("/v1/rewrite", json={"utterance": "play jazz", "user_id": "u"}, headers={"x-deadline-ms": "soon"})
        assert r.status_code == 400 and "x-deadline-ms" in r.json()["error"]
        r = await c.post("/v1/rewrite", json={"utterance": "play jazz", "user_id": "u"}, headers={"x-deadline-ms": "20"})
        assert r.status_code == 200


# -- the key file ------------------------------------------------------------------------------------
def test_keys_are_kept_as_digests_with_scopes(tmp_path, monkeypatch):
    path = tmp_path / "keys.txt"
    secret, entry = create_key(path, "backend", ["rewrite", "ingest"])
    assert secret.startswith("sl_") and len(secret) > 40 and secret not in path.read_text()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_text() == f"backend rewrite,ingest {key_digest(secret)}\n"
    ring = KeyRing.load(path, env="")
    assert ring.authenticate(secret).name == "backend" and ring.authenticate(secret + "x") is None and ring.authenticate("é✓") is None
    with pytest.raises(InvalidInputError, match="already a key"):
        create_key(path, "backend", "rewrite")
    with pytest.raises(InvalidInputError, match="rewrite, ingest, admin"):
        create_key(path, "other", "everything")
    monkeypatch.setenv("SELFLEARN_API_KEYS", f"ops admin {key_digest('sl_ops-secret')}; # a comment")
    both = KeyRing.load(path)
    assert {k.name for k in both.keys} == {"backend", "ops"} and both.authenticate("sl_ops-secret").scopes == {"admin"}
    assert revoke_key(path, "backend") and not revoke_key(path, "backend")
    assert KeyRing.load(path, env="").authenticate(secret) is None


@pytest.mark.parametrize(("text", "says"), [
    ("backend rewrite", "three fields"),
    ("backend rewrite sl_plainkeyplainkey", "the digest, not the key"),
    ("back end! rewrite sha256:" + "0" * 64, "three fields"),
    ("b@d/name rewrite sha256:" + "0" * 64, "letters, digits"),
    ("backend root sha256:" + "0" * 64, "comma-separated list"),
    (f"a rewrite sha256:{'0' * 64}\na admin sha256:{'1' * 64}", "its own name"),
])
def test_a_bad_key_file_is_refused_with_the_entry_and_the_fix(tmp_path, text, says):
    path = tmp_path / "keys.txt"
    path.write_text(text)
    with pytest.raises(InvalidInputError, match=says) as exc:
        KeyRing.load(path, env="")
    assert "fix:" in str(exc.value)


def test_cli_keys_create_list_revoke(tmp_path):
    from selflearn.cli.main import app as cli

    path = tmp_path / "k.txt"
    r = CliRunner().invoke(cli, ["keys", "create", "backend", "--scope", "rewrite", "--scope", "ingest", "--file", str(path)])
    assert r.exit_code == 0, r.output
    secret = r.stdout.strip().splitlines()[-1]
    assert KeyRing.load(path, env="").authenticate(secret).name == "backend"
    r = CliRunner().invoke(cli, ["keys", "list", "--file", str(path)])
    assert any("backend" in line and "ingest,rewrite" in line for line in r.stdout.splitlines()) and secret not in r.stdout
    assert CliRunner().invoke(cli, ["keys", "revoke", "backend", "--file", str(path)]).exit_code == 0
    r = CliRunner().invoke(cli, ["keys", "revoke", "backend", "--file", str(path)])
    assert r.exit_code == 2 and "is not a key" in r.output


# -- the CLI prints data as text ----------------------------------------------------------------------
def test_cli_prints_hostile_log_text_as_text(tmp_path):
    from conftest import make_turn, write_jsonl

    from selflearn.cli.main import app as cli

    evil = ["[/bold]", "[red]red[/red]", "\x1b[2J\x1b[31mclear", "\x1b]8;;http://evil.example\x07link\x1b]8;;\x07", "bell\x07\x9b31m"]
    turns = [make_turn(session_id=f"s{i}", nlu={"domain": "music", "intent": text, "slots": []}, device={"type": text, "has_screen": False})
             for i, text in enumerate(evil)]
    logs = write_jsonl(tmp_path / "evil.jsonl", turns)
    store = tmp_path / "s.duckdb"
    assert CliRunner().invoke(cli, ["store", "import", str(logs), "--store", str(store)]).exit_code == 0
    r = CliRunner().invoke(cli, ["store", "stats", "--store", str(store)], terminal_width=200)
    assert r.exit_code == 0, r.output  # a markup-like intent does not crash it
    assert "[/bold]" in r.stdout and "[red]red[/red]" in r.stdout  # shown as written
    assert not any(ch in r.stdout for ch in "\x1b\x07\x9b")  # no raw control characters reach the terminal
    assert "\\x1b[2J" in r.stdout and "\\x07" in r.stdout
