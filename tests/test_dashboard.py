"""The review dashboard in `selflearn online serve --store`: in process (httpx ASGITransport), and the real
pages in headless Chromium against a real server on a loopback port — including a CSRF attack from
another port of the same host and hostile log text in every field."""

from __future__ import annotations

import asyncio
import http.server
import os
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from conftest import XSS, chromium_driver, hostile_turns, serve, write_jsonl

from selflearn.errors import InvalidInputError
from selflearn.service import create_app
from selflearn.service.security import COOKIE

ORIGIN = {"origin": "http://test"}


def _row(online_model) -> dict:
    import pyarrow.parquet as pq

    return pq.read_table(online_model["table"]).to_pylist()[0]


@pytest.fixture
def store_copy(online_model, tmp_path):
    dst = tmp_path / "dash.duckdb"
    shutil.copy(online_model["dir"] / "s.duckdb", dst)
    return dst


async def _client(app, **headers):
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", headers=headers)


async def _login(c, key: str) -> str:
    """Log in with an API key; the CSRF token of the session (from a page's form)."""
    r = await c.post("/dashboard/login", data={"token": key, "next": "/dashboard/users"}, headers=ORIGIN)
    assert r.status_code == 303, r.text
    c.cookies.set(COOKIE, r.cookies[COOKIE], path="/dashboard")
    page = (await c.get("/dashboard/users")).text
    return re.search(r'name=csrf value="([^"]+)"', page).group(1)


async def _ready(c, path="/dashboard", headers=None) -> httpx.Response:
    """A page once the background summary is computed."""
    for _ in range(200):
        r = await c.get(path, headers=headers)
        if "Computing" not in r.text:
            return r
        await asyncio.sleep(0.05)
    raise AssertionError("the summary was never computed")


@pytest.mark.anyio
async def test_every_page_needs_an_admin_login(online_model, store_copy, api_keys):
    app = create_app(online_model["model"], keys=api_keys["ring"], store=store_copy)
    async with await _client(app) as c:
        for path in ("/dashboard", "/dashboard/rewrites", "/dashboard/users/u1", "/dashboard/sessions/x", "/dashboard/sessions?q=a"):
            r = await c.get(path)
            assert r.status_code == 303 and r.headers["location"].startswith("/dashboard/login"), path  # users' words: admins only
        for path, data in (("/dashboard/rewrites/review", {"utterance": "a", "rewrite": "b", "decision": "blocked"}),
                           ("/dashboard/users/u1/forget", {}), ("/dashboard/refresh", {})):
            assert (await c.post(path, data=data, headers=ORIGIN)).status_code == 401, path
        r = await c.post("/dashboard/login", data={"token": api_keys["backend"]}, headers=ORIGIN)
        assert r.status_code == 403 and COOKIE not in r.cookies  # a key without the admin scope cannot log in
        r = await c.post("/dashboard/login", data={"token": api_keys["ops"]})
        assert r.status_code == 403 and COOKIE not in r.cookies  # a login form must come from this origin (no Origin, no Referer)
        r = await c.post("/dashboard/login", data={"token": api_keys["ops"], "next": "//evil.example/x"}, headers=ORIGIN)
        assert r.status_code == 303 and r.headers["location"] == "/dashboard"  # never redirected off the dashboard
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict") and "Path=/dashboard" in cookie and "Max-Age=28800" in cookie
        assert api_keys["ops"] not in cookie  # a signed session, not the key or a hash of it


@pytest.mark.anyio
async def test_blocking_needs_the_csrf_token_and_the_same_origin(online_model, store_copy, api_keys):
    row = _row(online_model)
    pair = {"utterance": row["utterance"], "rewrite": row["rewrite"]}
    app = create_app(online_model["model"], keys=api_keys["ring"], store=store_copy)
    served = lambda c: c.post("/v1/rewrite", json={"utterance": row["utterance"], "user_id": "u1"}, headers=api_keys["backend_headers"])  # noqa: E731
    async with await _client(app) as c:
        csrf = await _login(c, api_keys["ops"])
        home = await _ready(c)
        assert home.status_code == 200 and "Most frequent defects" in home.text and "ops" in home.text
        assert row["rewrite"] in (await c.get("/dashboard/rewrites")).text
        ev = await c.get("/dashboard/rewrites/evidence", params=pair)
        assert ev.status_code == 200 and "Evidence" in ev.text and "not reviewed" in ev.text
        block = {**pair, "decision": "blocked"}
        assert (await c.post("/dashboard/rewrites/review", data=block, headers=ORIGIN)).status_code == 403  # no token
        assert (await c.post("/dashboard/rewrites/review", data={**block, "csrf": "guess"}, headers=ORIGIN)).status_code == 403
        other = {"origin": "http://test:8001"}  # another port of the same host: same site, other origin
        assert (await c.post("/dashboard/rewrites/review", data={**block, "csrf": csrf}, headers=other)).status_code == 403
        assert (await c.post("/dashboard/rewrites/review", data={**block, "csrf": csrf})).status_code == 403  # neither Origin nor Referer
        assert (await served(c)).json()["rewrite"] == row["rewrite"]  # none of those blocked it
        r = await c.post("/dashboard/rewrites/review", data={**block, "csrf": csrf}, headers={"referer": "http://test/dashboard/rewrites"})
        assert r.status_code == 303
        assert (await served(c)).json()["rewrite"] != row["rewrite"]  # never served again
        assert "blocked" in (await c.get("/dashboard/rewrites/evidence", params=pair)).text
    again = create_app(online_model["model"], keys=api_keys["ring"], store=store_copy)  # a restart: the block is kept in the store
    async with await _client(again) as c:
        assert (await served(c)).json()["rewrite"] != row["rewrite"]
        assert (await c.get("/dashboard/rewrites")).status_code == 303  # the old session's cookie is gone with the client; and the secret is new
        r = await c.post("/dashboard/rewrites/review", data={**pair, "decision": "undo"}, headers=api_keys["ops_headers"])  # an admin key: no cookie, no CSRF
        assert r.status_code == 303
        assert (await served(c)).json()["rewrite"] == row["rewrite"]
        r = await c.post("/dashboard/rewrites/review", data={**pair, "decision": "blocked"}, headers=api_keys["backend_headers"])
        assert r.status_code == 403  # a key without the admin scope


@pytest.mark.anyio
async def test_a_session_expires_and_ends_with_its_key(online_model, store_copy, api_keys, tmp_path):
    from selflearn.service.app import ServiceSettings
    from selflearn.service.keys import KeyRing, create_key, revoke_key

    keys = tmp_path / "keys.txt"
    secret, _ = create_key(keys, "temp-admin", "admin")
    app = create_app(online_model["model"], keys=KeyRing.load(keys, env=""), store=store_copy, settings=ServiceSettings(session_secret="s" * 32))
    async with await _client(app) as c:
        await _login(c, secret)
        assert (await c.get("/dashboard/users")).status_code == 200
        revoke_key(keys, "temp-admin")
        os.utime(keys, (0, 12345))  # a changed file is re-read (at most once a second)
        await asyncio.sleep(1.1)
        assert (await c.get("/dashboard/users")).status_code == 303  # the revoked key's session is over
    from itsdangerous import URLSafeTimedSerializer

    expired = URLSafeTimedSerializer("s" * 32, salt="selflearn-dashboard-session")
    create_key(keys, "again", "admin")
    app = create_app(online_model["model"], keys=KeyRing.load(keys, env=""), store=store_copy,
                     settings=ServiceSettings(session_secret="s" * 32, session_hours=0.01))
    async with await _client(app) as c:
        import time as _t

        real = _t.time
        _t.time = lambda: real() - 3600  # issued an hour ago: past its 36 s
        try:
            token = expired.dumps({"k": "again", "c": "x"})
        finally:
            _t.time = real
        c.cookies.set(COOKIE, token, path="/dashboard")
        assert (await c.get("/dashboard/users")).status_code == 303


@pytest.mark.anyio
async def test_non_ascii_credentials_are_refused_not_a_server_error(online_model, store_copy, api_keys):
    app = create_app(online_model["model"], keys=api_keys["ring"], store=store_copy)
    async with await _client(app) as c:
        r = await c.post("/v1/rewrite", json={"utterance": "hi", "user_id": "u"}, headers={"authorization": "Bearer kéy-ünïcode".encode("utf-8")})
        assert r.status_code == 401
        r = await c.get("/dashboard/users", headers={"cookie": f"{COOKIE}=sëssion".encode("utf-8")})
        assert r.status_code == 303
        r = await c.post("/dashboard/login", data={"token": "tökén-ñ-✓"}, headers=ORIGIN)
        assert r.status_code == 403
        r = await c.post("/dashboard/refresh", data={"csrf": "✓"}, headers={"authorization": "Bearer ✓".encode("utf-8"), **ORIGIN})
        assert r.status_code == 401


@pytest.mark.anyio
async def test_an_admin_deletes_a_users_preferences(online_model, store_copy, api_keys):
    app = create_app(online_model["model"], keys=api_keys["ring"], store=store_copy)
    ops = api_keys["ops_headers"]
    async with await _client(app) as c:
        await c.put("/v1/users/u7/preferences/cuisine", json={"value": "thai"}, headers=api_keys["backend_headers"])
        await c.put("/v1/users/u7/preferences/sports_team", json={"value": "warriors"}, headers=api_keys["backend_headers"])
        assert (await c.post("/dashboard/users/u7/forget", data={"kind": "cuisine", "key": ""}, headers=ops)).status_code == 303
        kinds = {p["kind"] for p in (await c.get("/v1/users/u7/preferences", headers=ops)).json()["preferences"]}
        assert kinds == {"sports_team"}
        assert (await c.post("/dashboard/users/u7/forget", data={}, headers=ops)).status_code == 303
        assert (await c.get("/v1/users/u7/preferences", headers=ops)).json()["preferences"] == []
        page = (await c.get("/dashboard/users/<script>x", headers=ops)).text
        assert "<script>x" not in page and "&lt;script&gt;x" in page  # what is shown is escaped


@pytest.mark.anyio
async def test_recomputing_the_summary_never_holds_up_rewrites(online_model, store_copy, api_keys, monkeypatch):
    """The summary runs on the dashboard's reader thread: while it takes a second, rewrites are answered."""
    import time

    from selflearn.report import data

    real = data.store_summary

    def slow(*a, **k):
        time.sleep(1.0)
        return real(*a, **k)

    monkeypatch.setattr(data, "store_summary", slow)
    app = create_app(online_model["model"], keys=api_keys["ring"], store=store_copy)
    async with await _client(app) as c:
        assert "Computing" in (await c.get("/dashboard", headers=api_keys["ops_headers"])).text  # started in the background
        t0 = time.perf_counter()
        for _ in range(5):
            r = await c.post("/v1/rewrite", json={"utterance": "play some jazz", "user_id": "u1"}, headers=api_keys["backend_headers"])
            assert r.status_code == 200
        assert time.perf_counter() - t0 < 0.8  # five rewrites while the summary still computes
        r = await c.post("/dashboard/refresh", headers={**api_keys["ops_headers"], **ORIGIN})
        assert "being recomputed" in r.text  # one at a time
        assert "Most frequent defects" in (await _ready(c, headers=api_keys["ops_headers"])).text
        r = await c.post("/dashboard/refresh", headers={**api_keys["ops_headers"], **ORIGIN})
        assert "at most every 30 s" in r.text  # rate-limited


# -- the real pages in headless Chromium -----------------------------------------------------------
needs_chromium = pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("chromedriver")),
                                    reason="needs Debian chromium and chromium-driver (.ci/run installs them)")


def _shows(browser, text: str) -> bool:
    """The page after a click or a submit has loaded and says ``text``."""
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(browser, 30).until(lambda b: b.execute_script("return document.readyState") == "complete" and text in b.page_source)
    except Exception as exc:
        raise AssertionError(f"the page does not say {text!r}: {browser.current_url}\n{browser.page_source[:3000]}") from exc
    return True


def _shots(tmp_path) -> Path:
    shots = Path(os.environ.get("SELFLEARN_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    return shots


def _browser_login(browser, base: str, key: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(base + "/dashboard")
    assert _shows(browser, "admin API key")  # not logged in: the login page
    browser.find_element(By.NAME, "token").send_keys(key)
    browser.find_element(By.CSS_SELECTOR, "main form button").click()
    assert _shows(browser, "log out")


@needs_chromium
def test_blocking_a_rewrite_in_the_browser(online_model, store_copy, api_keys, tmp_path):
    from selenium.webdriver.common.by import By

    row = _row(online_model)
    shots = _shots(tmp_path)
    proc, base = serve(online_model["model"], api_keys["file"], "--store", str(store_copy))
    browser = chromium_driver()
    backend = api_keys["backend_headers"]
    try:
        browser.get(base + "/dashboard/login")
        assert _shows(browser, "admin API key")
        browser.save_screenshot(str(shots / "0-login.png"))
        _browser_login(browser, base, api_keys["ops"])
        assert _shows(browser, "Most frequent defects")
        browser.save_screenshot(str(shots / "1-defects.png"))
        browser.find_elements(By.LINK_TEXT, "sessions")[0].click()
        assert _shows(browser, "Sessions with")
        browser.find_elements(By.CSS_SELECTOR, "main td a")[0].click()
        assert _shows(browser, "user said")
        browser.save_screenshot(str(shots / "1b-session.png"))
        browser.find_element(By.LINK_TEXT, "Rewrites").click()
        assert _shows(browser, row["rewrite"])
        browser.save_screenshot(str(shots / "2-rewrites.png"))
        browser.get(base + "/dashboard/rewrites?" + str(httpx.QueryParams({"q": row["utterance"]})))
        browser.find_element(By.LINK_TEXT, "evidence").click()
        assert _shows(browser, "Evidence")
        browser.save_screenshot(str(shots / "4-evidence.png"))
        browser.find_element(By.CSS_SELECTOR, "button.block").click()
        assert _shows(browser, "Review: blocked by ops")
        browser.save_screenshot(str(shots / "5-blocked.png"))
        served = httpx.post(base + "/v1/rewrite", json={"utterance": row["utterance"], "user_id": "u00001"}, headers=backend).json()
        assert served["rewrite"] != row["rewrite"]  # the service no longer serves it
        httpx.put(base + "/v1/users/u00042/preferences/sports_team", json={"value": "golden state warriors"}, headers=backend)
        browser.find_element(By.LINK_TEXT, "Users").click()
        assert _shows(browser, "user id")
        browser.find_element(By.NAME, "user_id").send_keys("u00042")
        browser.find_element(By.CSS_SELECTOR, "main form button").click()
        assert _shows(browser, "golden state warriors")
        browser.save_screenshot(str(shots / "6-user.png"))
        browser.find_elements(By.CSS_SELECTOR, "main button.block")[-1].click()  # forget everything
        assert _shows(browser, "Nothing is remembered")
        browser.find_element(By.CSS_SELECTOR, "header button").click()  # log out
        assert _shows(browser, "admin API key")
        browser.get(base + "/dashboard/users/u00042")
        assert _shows(browser, "admin API key")  # logged out: the pages are closed again
    finally:
        browser.quit()
        proc.terminate()
        proc.wait(timeout=20)


class _Attacker(http.server.BaseHTTPRequestHandler):
    page = b""

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.end_headers()
        self.wfile.write(self.page)

    def log_message(self, *args):
        pass


@needs_chromium
def test_a_cross_site_form_and_a_forged_turn_are_refused_in_the_browser(online_model, store_copy, api_keys, tmp_path):
    """The attacks that worked before: a page on another port of the same host auto-submits a form
    that blocks a rewrite while the operator is logged in, and posts a forged turn with a no-cors
    fetch. Both must fail in a real browser."""
    row = _row(online_model)
    proc, base = serve(online_model["model"], api_keys["file"], "--store", str(store_copy))
    evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Attacker)
    _Attacker.page = f"""<!doctype html><body><form id=f method=post action="{base}/dashboard/rewrites/review">
<input name=utterance value="{row['utterance']}"><input name=rewrite value="{row['rewrite']}"><input name=decision value=blocked></form>
<script>
fetch("{base}/v1/turns", {{method: "POST", mode: "no-cors", headers: {{"content-type": "text/plain"}},
  body: JSON.stringify({{schema_version: 1, session_id: "evil", turn_index: 0, timestamp: "2026-05-01T10:00:00Z", user_id: "victim",
                        device_id: "d", device: {{type: "speaker", has_screen: false}}, utterance: {{text: "play jazz by evil corp advert"}},
                        response: {{status: "success"}}}})}}).finally(() => {{ document.title = "sent"; document.getElementById("f").submit(); }});
</script></body>""".encode()
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    browser = chromium_driver()
    try:
        _browser_login(browser, base, api_keys["ops"])
        browser.get(f"http://127.0.0.1:{evil.server_port}/")
        assert _shows(browser, "Not allowed")  # the dashboard refused the cross-site form (no CSRF token, foreign origin)
        served = httpx.post(base + "/v1/rewrite", json={"utterance": row["utterance"], "user_id": "u00001"}, headers=api_keys["backend_headers"])
        assert served.json()["rewrite"] == row["rewrite"]  # not blocked
        history = httpx.get(base + "/v1/users/victim/history", headers=api_keys["ops_headers"])
        assert history.status_code == 404  # the forged turn never reached the personal layer
    finally:
        browser.quit()
        evil.shutdown()
        proc.terminate()
        proc.wait(timeout=20)


@needs_chromium
def test_hostile_log_text_is_shown_not_run_in_the_browser(online_model, api_keys, tmp_path):
    """Every field of the logs and of the rewrite table carries markup; every page shows it as text."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from selflearn.store.importer import import_files
    from selflearn.store.store import Store

    with Store(tmp_path / "hostile.duckdb") as st:
        report = import_files(st, [write_jsonl(tmp_path / "h.jsonl", hostile_turns())])
        assert report.imported == 6
        from selflearn.teach import Preferences

        Preferences(st).put(f"u{XSS}", "cuisine", f"thai {XSS}")
    model = tmp_path / "model"
    shutil.copytree(online_model["model"], model)
    pq.write_table(pa.table({"utterance": [f"play {XSS}"], "rewrite": [f"play the {XSS}"], "probability": [0.9], "support": [3]}),
                   model / "rewrites.parquet")
    proc, base = serve(model, api_keys["file"], "--store", str(tmp_path / "hostile.duckdb"))
    browser = chromium_driver()
    shots = _shots(tmp_path)
    sid = f"s0{XSS}"
    try:
        _browser_login(browser, base, api_keys["ops"])
        pages = ["/dashboard", "/dashboard/rewrites", "/dashboard/sessions?" + str(httpx.QueryParams({"q": f"play {XSS}"})),
                 "/dashboard/sessions/" + quote(sid, safe=""),
                 "/dashboard/rewrites/evidence?" + str(httpx.QueryParams({"utterance": f"play {XSS}", "rewrite": f"play the {XSS}"})),
                 "/dashboard/users/" + quote(f"u{XSS}", safe="")]
        for n, path in enumerate(pages):
            browser.get(base + path)
            _shows(browser, "selflearn")
            for _ in range(60):  # the summary page reloads itself until it is computed
                if "Computing" not in browser.page_source:
                    break
                browser.get(base + path)
            browser.save_screenshot(str(shots / f"hostile-{n}.png"))
            assert browser.title != "XSS", path
            assert "onerror=" in browser.find_element("css selector", "main").text, path  # the markup is shown, as text
    finally:
        browser.quit()
        proc.terminate()
        proc.wait(timeout=20)


def test_reviews_are_kept_in_the_store(store, tmp_path):
    from conftest import session

    from selflearn.rewrites.reviews import Reviews, rewrite_chains
    from selflearn.store.importer import import_files

    rv = Reviews(store)
    r = rv.decide(" Play  The Beetles", "play the beatles", "blocked", reviewer="ops")
    assert (r.utterance, r.rewrite, r.decision, r.reviewer) == ("play the beetles", "play the beatles", "blocked", "ops")
    assert rv.blocked() == {("play the beetles", "play the beatles")}
    rv.decide("play the beetles", "play the beatles", "approved")  # a later decision replaces the earlier one
    assert rv.blocked() == set() and [x.decision for x in rv.list()] == ["approved"]
    assert rv.undo("play the beetles", "play the beatles") and rv.get("play the beetles", "play the beatles") is None
    with pytest.raises(InvalidInputError, match="must be one of"):
        rv.decide("a", "b", "maybe")
    with pytest.raises(InvalidInputError, match="non-empty string"):
        rv.decide("", "b", "blocked")
    turns = session("s1", 3)
    turns[0]["utterance"] = {"text": "play the beetles", "asr_confidence": 0.5}
    turns[2]["utterance"] = {"text": "play the beatles", "asr_confidence": 0.9}
    import_files(store, [write_jsonl(tmp_path / "l.jsonl", turns)])
    assert [c.session_id for c in rewrite_chains(store, "play the beetles", "play the beatles")] == [store.pseudonyms().of("s1")]
    assert rewrite_chains(store, "play the beatles", "play the beetles") == []  # the other way round is no evidence
