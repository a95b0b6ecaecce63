"""The review dashboard in `selflearn serve --store`: in process (httpx ASGITransport), and the real
pages in headless Chromium against a real server on a loopback port."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import free_port, wait_until_up

from selflearn.errors import InvalidInputError
from selflearn.service import create_app

TOKEN = "test-admin-token-0123456789"


def _row(online_model) -> dict:
    import pyarrow.parquet as pq

    return pq.read_table(online_model["table"]).to_pylist()[0]


@pytest.fixture
def store_copy(online_model, tmp_path):
    dst = tmp_path / "dash.duckdb"
    shutil.copy(online_model["dir"] / "s.duckdb", dst)
    return dst


async def _client(app):
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.mark.anyio
async def test_pages_load_and_blocking_needs_the_admin_token(online_model, store_copy):
    row = _row(online_model)
    pair = {"utterance": row["utterance"], "rewrite": row["rewrite"]}
    app = create_app(online_model["model"], store=store_copy, admin_token=TOKEN)
    async with await _client(app) as c:
        home = await c.get("/dashboard")
        assert home.status_code == 200 and "Most frequent defects" in home.text
        rw = await c.get("/dashboard/rewrites")
        assert rw.status_code == 200 and row["rewrite"] in rw.text
        ev = await c.get("/dashboard/rewrites/evidence", params=pair)
        assert ev.status_code == 200 and "Evidence" in ev.text and "not reviewed" in ev.text
        r = await c.post("/dashboard/rewrites/review", data={**pair, "decision": "blocked"})
        assert r.status_code == 403 and "log in" in r.text  # no token: refused
        r = await c.post("/dashboard/login", data={"token": "wrong-token-wrong"})
        assert r.status_code == 403
        r = await c.post("/dashboard/login", data={"token": TOKEN, "next": "//evil.example/x"})
        assert r.status_code == 303 and r.headers["location"] == "/dashboard"  # never redirected off the dashboard
        c.cookies.set("selflearn_admin", r.cookies["selflearn_admin"], path="/dashboard")
        r = await c.post("/dashboard/rewrites/review", data={**pair, "decision": "blocked"})
        assert r.status_code == 303
        served = await c.post("/v1/rewrite", json={"utterance": row["utterance"], "user_id": "u1"})
        assert served.json()["rewrite"] != row["rewrite"]  # never served again
        assert "blocked" in (await c.get("/dashboard/rewrites/evidence", params=pair)).text
    again = create_app(online_model["model"], store=store_copy, admin_token=TOKEN)  # a restart: the block is kept in the store
    async with await _client(again) as c:
        assert (await c.post("/v1/rewrite", json={"utterance": row["utterance"], "user_id": "u1"})).json()["rewrite"] != row["rewrite"]
        r = await c.post("/dashboard/rewrites/review", data={**pair, "decision": "undo"}, headers={"authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 303
        assert (await c.post("/v1/rewrite", json={"utterance": row["utterance"], "user_id": "u1"})).json()["rewrite"] == row["rewrite"]


@pytest.mark.anyio
async def test_without_a_token_admin_actions_are_off(online_model, store_copy):
    app = create_app(online_model["model"], store=store_copy)
    async with await _client(app) as c:
        await c.put("/v1/users/u9/preferences/cuisine", json={"value": "thai"})
        page = await c.get("/dashboard/users/u9")
        assert page.status_code == 200 and "thai" in page.text
        r = await c.post("/dashboard/users/u9/forget", data={"kind": "cuisine", "key": ""})
        assert r.status_code == 403 and "Admin actions are off" in r.text
        assert (await c.get("/dashboard/login")).status_code == 403
        assert "thai" in (await c.get("/dashboard/users/u9")).text  # nothing deleted
        assert "read only" in (await c.get("/dashboard")).text


@pytest.mark.anyio
async def test_an_admin_deletes_a_users_preferences(online_model, store_copy):
    app = create_app(online_model["model"], store=store_copy, admin_token=TOKEN)
    auth = {"authorization": f"Bearer {TOKEN}"}
    async with await _client(app) as c:
        await c.put("/v1/users/u7/preferences/cuisine", json={"value": "thai"})
        await c.put("/v1/users/u7/preferences/sports_team", json={"value": "warriors"})
        assert (await c.post("/dashboard/users/u7/forget", data={"kind": "cuisine", "key": ""}, headers=auth)).status_code == 303
        kinds = {p["kind"] for p in (await c.get("/v1/users/u7/preferences")).json()["preferences"]}
        assert kinds == {"sports_team"}
        assert (await c.post("/dashboard/users/u7/forget", data={}, headers=auth)).status_code == 303
        assert (await c.get("/v1/users/u7/preferences")).json()["preferences"] == []
        assert "<script>" not in (await c.get("/dashboard/users/<script>")).text  # what is shown is escaped


def test_a_short_admin_token_is_refused(online_model, store_copy):
    with pytest.raises(InvalidInputError, match="at least 12 characters"):
        create_app(online_model["model"], store=store_copy, admin_token="short")


# -- the real pages in headless Chromium -----------------------------------------------------------
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian chromium and chromium-driver (.ci/run installs them)")
def test_blocking_a_rewrite_in_the_browser(online_model, store_copy, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    row = _row(online_model)
    shots = Path(os.environ.get("SELFLEARN_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "selflearn.cli.main", "serve", "--model", str(online_model["model"]), "--store", str(store_copy),
                             "--port", str(port)], env={**os.environ, "OMP_NUM_THREADS": "1", "SELFLEARN_ADMIN_TOKEN": TOKEN},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--window-size=1280,1000"):
        opts.add_argument(flag)
    browser = None

    def shows(text: str) -> bool:  # the page after a click or a submit has loaded and says ``text``
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(browser, 20).until(lambda b: b.execute_script("return document.readyState") == "complete" and text in b.page_source)
        return True

    try:
        wait_until_up(base, proc)
        browser = webdriver.Chrome(service=Service(DRIVER), options=opts)
        browser.get(base + "/dashboard")
        assert shows("Most frequent defects")
        browser.save_screenshot(str(shots / "1-defects.png"))
        browser.find_elements(By.LINK_TEXT, "sessions")[0].click()
        assert shows("Sessions with")
        browser.find_elements(By.CSS_SELECTOR, "main td a")[0].click()
        assert shows("user said")
        browser.save_screenshot(str(shots / "1b-session.png"))
        browser.find_element(By.LINK_TEXT, "Rewrites").click()
        assert shows(row["rewrite"])
        browser.save_screenshot(str(shots / "2-rewrites.png"))
        browser.find_element(By.LINK_TEXT, "admin log in").click()
        assert shows("Admin log in")
        browser.save_screenshot(str(shots / "3-login.png"))
        browser.find_element(By.NAME, "token").send_keys(TOKEN)
        browser.find_element(By.CSS_SELECTOR, "main form button").click()
        assert shows("log out")
        browser.get(base + "/dashboard/rewrites?" + httpx.QueryParams({"q": row["utterance"]}).__str__())
        browser.find_element(By.LINK_TEXT, "evidence").click()
        assert shows("Evidence")
        browser.save_screenshot(str(shots / "4-evidence.png"))
        browser.find_element(By.CSS_SELECTOR, "button.block").click()
        assert shows("tag blocked")
        browser.save_screenshot(str(shots / "5-blocked.png"))
        served = httpx.post(base + "/v1/rewrite", json={"utterance": row["utterance"], "user_id": "u00001"}).json()
        assert served["rewrite"] != row["rewrite"]  # the service no longer serves it
        httpx.put(base + "/v1/users/u00042/preferences/sports_team", json={"value": "golden state warriors"})
        browser.find_element(By.LINK_TEXT, "Users").click()
        assert shows("user id")
        browser.save_screenshot(str(shots / "6a-users.png"))
        browser.find_element(By.NAME, "user_id").send_keys("u00042")
        browser.find_element(By.CSS_SELECTOR, "main form button").click()
        assert shows("golden state warriors")
        browser.save_screenshot(str(shots / "6-user.png"))
        browser.find_elements(By.CSS_SELECTOR, "button.block")[-1].click()  # forget everything
        assert shows("Nothing is remembered")
        browser.save_screenshot(str(shots / "7-user-forgotten.png"))
    finally:
        if browser is not None:
            browser.quit()
        proc.terminate()
        proc.wait(timeout=20)


def test_reviews_are_kept_in_the_store(store, tmp_path):
    from conftest import session, write_jsonl

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
    assert rewrite_chains(store, "play the beetles", "play the beatles") == ["s1"]
    assert rewrite_chains(store, "play the beatles", "play the beetles") == []  # the other way round is no evidence
