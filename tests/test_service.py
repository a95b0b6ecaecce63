"""The rewrite service: in process (httpx ASGITransport), fuzzed against its own OpenAPI spec
(schemathesis), and a real uvicorn server on a loopback port called over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import free_port, wait_until_up
import schemathesis
from hypothesis import HealthCheck, settings
from typer.testing import CliRunner

from selflearn.cli.main import app as cli
from selflearn.online import OnlineRewriter
from selflearn.service import create_app
from selflearn.rewriters import HttpRewriter, load_rewriter


@pytest.fixture(scope="module")
def api(online_model, api_keys, tmp_path_factory):
    return create_app(online_model["model"], keys=api_keys["ring"], store=tmp_path_factory.mktemp("prefs") / "prefs.duckdb")


@pytest.fixture
async def client(api, api_keys):
    """The assistant's backend: a key with the rewrite and ingest scopes."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://test", headers=api_keys["backend_headers"]) as c:
        yield c


@pytest.fixture
async def admin(api, api_keys):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://test", headers=api_keys["ops_headers"]) as c:
        yield c


def _table_row(online_model) -> dict:
    import pyarrow.parquet as pq

    return pq.read_table(online_model["table"]).to_pylist()[0]


@pytest.mark.anyio
async def test_rewrite_serves_the_table_first(client, online_model):
    row = _table_row(online_model)
    r = await client.post("/v1/rewrite", json={"utterance": row["utterance"], "user_id": "u00001", "device": {"type": "speaker"}})
    assert r.status_code == 200
    assert r.json() == {"rewrite": row["rewrite"], "source": "table", "score": None}


@pytest.mark.anyio
async def test_rewrite_answers_unknown_users_from_the_global_layer(client):
    r = await client.post("/v1/rewrite", json={"utterance": "play some music", "user_id": "someone-new", "context": {"hour": 7}})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"rewrite", "source", "score"} and body["source"] in (None, "global")


BAD = [
    ({"utterance": "", "user_id": "u"}, "utterance=''"),
    ({"utterance": "   ", "user_id": "u"}, "utterance='   '"),
    ({"utterance": "x" * 10_000, "user_id": "u"}, "10000 characters"),
    ({"user_id": "u"}, "utterance: is required"),
    ({"utterance": "play jazz"}, "user_id: is required"),
    ({"utterance": 42, "user_id": "u"}, "utterance=42"),
    ({"utterance": "play jazz", "user_id": "u", "device": "speaker"}, "device="),
    ({"utterance": "play jazz", "user_id": "u", "context": {"hour": 25}}, "context.hour=25"),
    ({"utterance": "play jazz", "user_id": "u", "context": {"asr_confidence": 1.5}}, "context.asr_confidence=1.5"),
    ({"utterance": "play jazz", "user_id": "u", "colour": "red"}, "colour="),
    ([1, 2], "body="),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("body", "names"), BAD)
async def test_bad_requests_get_a_clear_4xx(client, body, names):
    r = await client.post("/v1/rewrite", json=body)
    assert r.status_code == 422, r.text
    assert names in r.json()["error"] and "fix:" in r.json()["error"]


@pytest.mark.anyio
async def test_malformed_json_is_a_4xx(client):
    r = await client.post("/v1/rewrite", content=b'{"utterance": "play', headers={"content-type": "application/json"})
    assert r.status_code == 422 and "not valid JSON" in r.json()["error"]


@pytest.mark.anyio
async def test_turns_feed_the_personal_layer_and_users_can_be_forgotten(client, admin):
    turn = {"schema_version": 1, "session_id": "svc-s1", "turn_index": 0, "timestamp": "2026-05-01T10:00:00Z", "user_id": "svc-user",
            "device_id": "d1", "device": {"type": "speaker", "has_screen": False},
            "utterance": {"text": "play my rainy day mix"}, "response": {"status": "success"}}
    r = await client.post("/v1/turns", json=turn)
    assert r.status_code == 200 and r.json()["observed"] >= 1
    r = await client.post("/v1/turns", json={**turn, "session_id": "svc-s2", "timestamp": "2026-05-01T12:00:00Z", "utterance": {"text": "stop"}})
    assert (await client.get("/v1/users/svc-user/history")).status_code == 403  # the backend's key may not read a user's history
    hist = (await admin.get("/v1/users/svc-user/history")).json()
    assert [x["text"] for x in hist["requests"]] == ["play my rainy day mix"] and hist["requests"][0]["successes"] == 1
    assert (await client.post("/v1/turns", json={**turn, "timestamp": "yesterday"})).status_code == 422
    assert (await client.delete("/v1/users/svc-user")).status_code == 403
    assert (await admin.delete("/v1/users/svc-user")).json() == {"user_id": "svc-user", "forgotten": True}
    r = await admin.get("/v1/users/svc-user/history")
    assert r.status_code == 404 and "svc-user" in r.json()["error"]
    assert (await admin.delete("/v1/users/svc-user")).status_code == 404


@pytest.mark.anyio
async def test_health_metrics_and_openapi(client, admin):
    await client.post("/v1/rewrite", json={"utterance": "what time is it", "user_id": "u"})
    health = (await client.get("/healthz")).json()
    assert health == {"status": "ok", "version": health["version"], "layers": ["table", "global", "personal"]}
    status = (await admin.get("/v1/status")).json()
    assert status["global_candidates"] > 0 and status["queued"] == 0
    assert status["privacy"]["pseudonym_key"].startswith("hmac-sha256:") and status["privacy"]["dp"] is None  # trained without DP
    assert (await client.get("/metrics")).status_code == 403
    metrics = (await admin.get("/metrics")).text
    assert "selflearn_rewrite_requests_total" in metrics and "selflearn_rewrite_seconds_bucket" in metrics
    spec = (await client.get("/openapi.json")).json()
    assert {"/v1/rewrite", "/v1/turns", "/healthz", "/metrics"} <= set(spec["paths"])


# -- fuzzing against the service's own OpenAPI spec ----------------------------------------------
def test_fuzz_never_a_server_error(online_model, api_keys, tmp_path):
    """Schemathesis generates valid (positive) and invalid (negative) requests for every
    operation of /openapi.json; none may get a 5xx. (Its own app: each call runs the app's lifespan,
    whose end closes the store.)"""
    from hypothesis import given
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    api = create_app(online_model["model"], keys=api_keys["ring"], store=tmp_path / "fuzz.duckdb")
    schema = schemathesis.openapi.from_asgi("/openapi.json", api)
    seen: dict[tuple[str, str], set[int]] = {}
    for result in schema.get_all_operations():
        op = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(op.as_strategy(generation_mode=mode))
            @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True)
            def check(case):
                response = case.call(headers={**api_keys["backend_headers"], "authorization": api_keys["backend_headers"]["authorization"]})
                seen.setdefault((op.label, mode.value), set()).add(response.status_code)
                assert response.status_code < 500, (case.method, case.path, case.body, response.text)

            try:
                check()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # an operation without inputs has no invalid request
    assert seen[("POST /v1/rewrite", "positive")] == {200}
    # negative cases also drop or garble the credentials (401); a garbled header beside a valid body can pass (200)
    assert 422 in seen[("POST /v1/rewrite", "negative")] and seen[("POST /v1/rewrite", "negative")] <= {200, 400, 401, 422}


# -- preferences and teaching --------------------------------------------------------------------
@pytest.mark.anyio
async def test_teaching_over_http_and_preferences_used_on_the_next_request(client, admin):
    user = "teach-u1"
    r = await client.post("/v1/rewrite", json={"utterance": "play the game", "user_id": user})
    assert r.status_code == 200 and r.json()["source"] != "preferences"
    r = await client.post("/v1/teach", json={"user_id": user, "utterance": "what time is it"})
    assert r.json() == {"handled": False, "reply": None, "stored": [], "active": False}
    r = await client.post("/v1/teach", json={"user_id": user, "utterance": "learn my preferences"})
    assert r.json()["active"] and "team" in r.json()["reply"]
    r = await client.post("/v1/teach", json={"user_id": user, "utterance": "the golden state warriors"})
    assert r.json()["stored"][0]["value"] == "golden state warriors"
    r = await client.post("/v1/teach", json={"user_id": user, "utterance": "stop"})
    assert not r.json()["active"]
    r = await client.post("/v1/rewrite", json={"utterance": "play the game", "user_id": user})
    assert r.json()["rewrite"] == "play the golden state warriors game" and r.json()["source"] == "preferences"
    r = await client.put(f"/v1/users/{user}/preferences/cuisine", json={"value": "Italian"})
    assert r.status_code == 200 and r.json()["value"] == "italian"
    r = await client.put(f"/v1/users/{user}/preferences/shoe_size", json={"value": "9"})
    assert r.status_code == 400 and "must be one of" in r.json()["error"]
    r = await admin.get(f"/v1/users/{user}/preferences")
    assert {p["kind"] for p in r.json()["preferences"]} == {"sports_team", "cuisine"}
    r = await admin.delete(f"/v1/users/{user}/preferences", params={"kind": "cuisine"})
    assert r.json()["deleted"] == 1
    r = await admin.delete(f"/v1/users/{user}")
    assert r.status_code == 200
    r = await admin.get(f"/v1/users/{user}/preferences")
    assert r.json()["preferences"] == []
    r = await admin.delete(f"/v1/users/{user}/preferences")
    assert r.status_code == 404


# -- a real server ---------------------------------------------------------------------------
def test_real_server_over_loopback_and_the_world_hook(online_model, api_keys, tmp_path):
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SELFLEARN_API_KEY": api_keys["reader"]}
    proc = subprocess.Popen([sys.executable, "-m", "selflearn.cli.main", "online", "serve", "--model", str(online_model["model"]), "--port", str(port),
                             "--api-keys", str(api_keys["file"])],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base, proc)
        row = _table_row(online_model)
        os.environ["SELFLEARN_API_KEY"] = api_keys["reader"]  # the world's hook reads the key from the environment
        try:
            hook = load_rewriter(base + "/v1/rewrite")
        finally:
            del os.environ["SELFLEARN_API_KEY"]
        assert isinstance(hook, HttpRewriter)
        assert hook.rewrite(row["utterance"], user_id="u", device={"type": "speaker", "has_screen": False}, context={"hour": 8}) == row["rewrite"]
        local = OnlineRewriter.load(online_model["model"])
        texts = [json.loads(x)["utterance"]["text"] for x in online_model["logs"].read_text().splitlines()[:200:10]]
        for t in texts:  # the service answers what the library answers
            assert hook.rewrite(t, user_id="nobody", device={}, context={}) == local.rewrite(t, user_id="nobody", device={}, context={})
        assert hook.errors == 0
        assert httpx.post(base + "/v1/rewrite", content=b"nope", headers={"content-type": "application/json", **api_keys["reader_headers"]}).status_code == 422
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_cli_serve_rejects_a_missing_model(tmp_path, api_keys):
    r = CliRunner().invoke(cli, ["online", "serve", "--model", str(tmp_path / "none"), "--api-keys", str(api_keys["file"])])
    assert r.exit_code == 2 and "config.json" in r.output


def test_cli_serve_needs_api_keys(online_model, monkeypatch):
    monkeypatch.delenv("SELFLEARN_API_KEYS", raising=False)
    r = CliRunner().invoke(cli, ["online", "serve", "--model", str(online_model["model"])])
    assert r.exit_code == 2 and "needs at least one" in r.output and "selflearn keys create" in r.output


def test_cli_train_online_rejects_an_empty_store(tmp_path):
    r = CliRunner().invoke(cli, ["online", "train", "--store", str(tmp_path / "s.duckdb"), "--out", str(tmp_path / "m")])
    assert r.exit_code == 2 and "has no turns" in r.output


def test_cli_train_online_writes_a_model(online_model, tmp_path):
    store = online_model["dir"] / "s.duckdb"
    r = CliRunner().invoke(cli, ["online", "train", "--store", str(store), "--out", str(tmp_path / "m"), "--max-pairs", "64",
                                 "--examples", "200", "--min-precision", "0.8", "--json"])
    assert r.exit_code == 0, r.output
    stats = json.loads(r.output)
    assert Path(tmp_path / "m" / "config.json").is_file() and stats["global_candidates"] > 0


def test_cli_train_online_rejects_an_unknown_calibration(tmp_path):
    r = CliRunner().invoke(cli, ["online", "train", "--store", str(tmp_path / "s.duckdb"), "--calibrate", "vibes"])
    assert r.exit_code == 2 and "calibrate='vibes'" in r.output
    r = CliRunner().invoke(cli, ["online", "train", "--store", str(tmp_path / "s.duckdb"), "--dp-epsilon", "8", "--dp-texts-per-user", "0"])
    assert r.exit_code == 2 and "dp_texts_per_user=0" in r.output and "use e.g. 10" in r.output
    r = CliRunner().invoke(cli, ["online", "train", "--store", str(tmp_path / "s.duckdb"), "--retry-window", "-3"])
    assert r.exit_code == 2 and "retry_window=-3.0" in r.output and "learn it from the logs" in r.output


@pytest.mark.anyio
async def test_forgetting_through_the_service_rewrites_the_files_at_once(online_model, api_keys, tmp_path):
    """DELETE /v1/users/{id}: the personal layer on disk no longer holds the user (not at shutdown: now);
    requests name users by their own ids, the files only by keyed pseudonyms."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(online_model["model"], model)
    rw = OnlineRewriter.load(model)
    app = create_app(model, keys=api_keys["ring"], persist=True, rewriter=rw)
    unique = "play the qwertyuiop polka for grandma"
    turn = {"schema_version": 1, "session_id": "fm-1", "turn_index": 0, "timestamp": "2026-05-01T10:00:00Z", "user_id": "forget-me",
            "device_id": "d1", "device": {"type": "speaker", "has_screen": False}, "utterance": {"text": unique}, "response": {"status": "success"}}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=api_keys["backend_headers"]) as c, \
            httpx.AsyncClient(transport=transport, base_url="http://test", headers=api_keys["ops_headers"]) as a:
        assert (await c.post("/v1/turns", json=turn)).status_code == 200
        assert (await c.post("/v1/turns", json={**turn, "session_id": "fm-2", "timestamp": "2026-05-01T12:00:00Z", "utterance": {"text": "stop"}})).status_code == 200
        assert (await a.get("/v1/users/forget-me/history")).status_code == 200
        rw.personal.save(model / "personal")  # as an earlier shutdown would have: the user is on disk now
        before = _parquet_text(model / "personal")  # (Parquet compresses: read the tables, not the bytes)
        assert "qwertyuiop" in before and rw.ids.of("forget-me") in before and "forget-me" not in before
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as anonymous:
            assert (await anonymous.delete("/v1/users/forget-me")).status_code == 401
        assert (await a.delete("/v1/users/forget-me")).json()["forgotten"]
    after = _parquet_text(model / "personal")
    assert "qwertyuiop" not in after and rw.ids.of("forget-me") not in after


def _parquet_text(directory) -> str:
    import pyarrow.parquet as pq

    return repr([pq.read_table(str(p)).to_pylist() for p in sorted(directory.glob("*.parquet"))])
