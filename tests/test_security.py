"""The server as an outsider meets it: raw HTTP as anonymous, user, reviewer and admin.

Every event is taken from the served app's own config (never a hand-picked list), so an event
added later is covered the day it is added. The app is the real one: the embedded model, SQLite
and Chroma under a temporary home, served by uvicorn behind the gate.
"""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import gradio as gr
import httpx
import pytest
from sqlmodel import select

from store.accounts import AccountStore
from store.db import open_database
from store.tables import Correction, Rating, Review
from tests.conftest import PASSWORD
from tests.raw_gradio import join

ROOT = Path(__file__).resolve().parent.parent
MARKER = "QUOKKA-7781"  # in Ana's private conversation; must never reach anyone else


def config(app, who="adam") -> dict:
    return httpx.get(app.url + "config", headers=app.tokens[who]).json()


def events(cfg) -> list[dict]:
    return cfg["dependencies"]


def components(cfg) -> dict[int, dict]:
    return {c["id"]: c for c in cfg["components"]}


def api_names(cfg) -> dict[int, str]:
    return {d["id"]: d["api_name"] for d in events(cfg) if d.get("api_visibility") == "public"}


def under_tab(cfg, label: str) -> set[int]:
    """The ids of a tab's item and of every component inside it, from the page layout."""
    comps = components(cfg)

    def walk(node, inside):
        here = inside or (
            comps.get(node["id"], {}).get("type") == "tabitem"
            and comps[node["id"]].get("props", {}).get("label") == label
        )
        found = {node["id"]} if here else set()
        for child in node.get("children", []):
            found |= walk(child, here)
        return found

    return walk(cfg["layout"], False)


def ana_with_a_secret(app) -> tuple[int, int]:
    """Ana's conversation (with the marker) and its exchange, through the API as Ana."""
    from gradio_client import Client

    ana = Client(app.url, headers=app.tokens["ana"], verbose=False)
    _, conv = ana.predict(f"My locker code is {MARKER}.", "", api_name="/chat")
    [turn] = app.store.turns(int(conv))
    return int(conv), turn.exchange_id


def payload(cfg, dep, victim: int, params: list[str]) -> list:
    """A value per input, aimed at the victim: ids where an id goes, text where text goes."""
    comps, values = components(cfg), []
    for position, input_id in enumerate(dep["inputs"]):
        kind = comps[input_id]["type"]
        name = params[position] if position < len(params) else ""
        if kind == "api":
            if "id" in name:
                values.append(victim)
            elif name == "value":
                values.append(-1)
            elif name == "reasons":
                values.append(["wrong facts"])
            else:
                values.append("bob was here")
        elif kind in ("radio", "dropdown", "number"):
            values.append(victim)
        elif kind == "checkboxgroup":
            values.append(["other"])
        elif kind == "textbox":
            values.append("bob was here")
        else:  # state (the server keeps it), file, chatbot...
            values.append(None)
    return values


EVENT_DATA = {
    "like": {"index": 1, "value": "x", "liked": False},
    "select": {"index": [0, 0], "value": "x"},
}


def attack(app, cfg, who: str, victim_ids: list[int]) -> dict[int, list]:
    """Every event, twice in one session per victim id (the first pass may have put the victim's
    conversation into the session's state), as `who`. Returns the outcomes per event."""
    info = httpx.get(app.url + "gradio_api/info", headers=app.tokens[who]).json()
    params = {
        name.lstrip("/"): [p["parameter_name"] for p in spec["parameters"]]
        for name, spec in info["named_endpoints"].items()
    }
    names, outcomes = api_names(cfg), {}
    for victim in victim_ids:
        session = f"{who}-{victim}"
        for _ in range(2):
            for dep in events(cfg):
                trigger = (dep["targets"] or [[None, None]])[0]
                outcome = join(
                    app.url,
                    dep["id"],
                    payload(cfg, dep, victim, params.get(names.get(dep["id"], ""), [])),
                    headers=app.tokens[who],
                    session=session,
                    event_data=EVENT_DATA.get(trigger[1]),
                    trigger_id=trigger[0],
                )
                outcomes.setdefault(dep["id"], []).append(outcome)
    return outcomes


def test_anonymous_callers_reach_no_event_and_no_data(shared):
    cfg = config(shared)
    assert len(events(cfg)) > 30
    for dep in events(cfg):
        assert join(shared.url, dep["id"], [None] * len(dep["inputs"])).status == 401, dep
    for path in ("config", "gradio_api/info", "gradio_api/upload", "gradio_api/call/history"):
        assert httpx.get(shared.url + path).status_code == 401, path
    page = httpx.get(shared.url, headers={"accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"] == "/login"
    forged = {"Authorization": "Bearer adt_" + "x" * 43, "Cookie": "autodidact_session=abc"}
    assert httpx.get(shared.url + "config", headers=forged).status_code == 401


def test_every_event_that_touches_data_asks_the_server_who_is_calling(shared):
    """Statically: each event function takes the gr.Request it checks; only pure page
    toggles (no inputs, no parameters) do without."""
    for fn in shared.demo.fns.values():
        signature = inspect.signature(fn.fn)
        takes_request = any(
            p.annotation in (gr.Request, "gr.Request") for p in signature.parameters.values()
        )
        if not takes_request:
            assert not fn.inputs and not signature.parameters, fn.name


def test_a_user_cannot_read_or_change_another_users_data_through_any_event(shared):
    conv, exchange = ana_with_a_secret(shared)
    title = shared.store.conversation(conv).title
    outcomes = attack(shared, config(shared, "bob"), "bob", [conv, exchange])
    leaked = [i for i, found in outcomes.items() for o in found if MARKER in o.text()]
    assert leaked == [], f"events {leaked} showed Bob Ana's conversation"
    # Ana's conversation is as she left it: there, same title, one answered turn, and nobody
    # else's rating or correction on it.
    assert shared.store.conversation(conv).title == title
    [turn] = shared.store.turns(conv)
    assert MARKER in turn.user and turn.status == "completed"
    with shared.store.session() as s:
        for table in (Rating, Correction):
            assert not s.exec(select(table).where(table.exchange_id == exchange)).all()
    bob = shared.chat.conversations(AccountStore(shared.store.engine).account("bob"))
    assert conv not in [c.id for c in bob]
    # The API answers Bob as if Ana's conversation did not exist.
    names = api_names(config(shared, "bob"))
    history = [i for i, n in names.items() if n == "history"][0]
    assert "does not exist" in outcomes[history][0].error


def test_review_and_adapter_events_refuse_users_and_record_the_account(shared):
    cfg = config(shared)
    review = under_tab(cfg, "Review")
    models = under_tab(cfg, "Models")
    comps = components(cfg)
    guarded = [
        dep["id"]
        for dep in events(cfg)
        for target, _ in dep["targets"]
        if target in review or (target in models and comps[target]["type"] == "button")
    ]
    # open/refresh/pick/confirm/dismiss/correct; serve adapter/base; refresh now/cancel
    assert len(guarded) >= 8
    conv, exchange = ana_with_a_secret(shared)
    outcomes = attack(shared, cfg, "bob", [exchange])
    for fn in guarded:
        # refused by the role check, or before it by Gradio's own input validation
        assert not any(o.success for o in outcomes[fn]), (fn, outcomes[fn][0])
        refusals = [o.error for o in outcomes[fn]]
        assert all("Only a reviewer" in e or "not in the list of choices" in e for e in refusals)
    assert sum("Only a reviewer" in o.error for fn in guarded for o in outcomes[fn]) >= 10
    assert not (shared.settings.home_dir / "adapters" / "active.json").exists()
    assert shared.store.count(Review) == 0
    assert not (shared.settings.home_dir / "refresh-job.log").exists()  # no refresh started
    # A reviewer gets through, and the decision is recorded as the account, not a typed name.
    rita = attack(shared, cfg, "rita", [exchange])
    for fn in guarded:
        assert not any("Only a reviewer" in o.error for o in rita[fn]), fn
    assert (shared.settings.home_dir / "adapters" / "active.json").exists()  # serve base


def test_only_reviewers_start_or_cancel_a_refresh_from_the_page(shared):
    cfg = config(shared)
    ids = {c["props"].get("elem_id"): c["id"] for c in cfg["components"] if "props" in c}

    def clicked(elem_id):
        return next(d["id"] for d in events(cfg) if [ids[elem_id], "click"] in d["targets"])

    start, cancel = clicked("refresh-now"), clicked("refresh-cancel")
    for fn, data in ((start, [True]), (cancel, [])):
        refused = join(shared.url, fn, data, headers=shared.tokens["ana"])
        assert not refused.success
        assert "Only a reviewer or an admin may use refresh; you are a user." in refused.error
    assert not (shared.settings.home_dir / "refresh-job.log").exists()  # nothing started
    started = join(shared.url, start, [False], headers=shared.tokens["rita"])
    assert started.success and "Refresh started by rita" in started.text()
    assert "Only a reviewer" in join(shared.url, cancel, [], headers=shared.tokens["ana"]).error
    stopped = join(shared.url, cancel, [], headers=shared.tokens["adam"])
    assert stopped.success and "Cancelled by adam" in stopped.text()


def test_foreign_hosts_and_origins_are_refused_and_nothing_is_reflected(shared):
    port = shared.settings.port
    token = shared.tokens["ana"]
    evil = httpx.get(shared.url + "config", headers={**token, "Host": f"evil.example:{port}"})
    assert evil.status_code == 421 and "allowed_hosts" in evil.text
    assert "access-control-allow-origin" not in evil.headers
    cross = httpx.get(shared.url + "config", headers={**token, "Origin": "http://evil.example"})
    assert cross.status_code == 403
    assert "access-control-allow-origin" not in cross.headers
    preflight = httpx.options(
        shared.url + "gradio_api/queue/join",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 403
    assert "access-control-allow-origin" not in preflight.headers
    same = httpx.get(shared.url + "config", headers={**token, "Origin": f"http://127.0.0.1:{port}"})
    assert same.status_code == 200
    assert "access-control-allow-origin" not in same.headers
    csp = same.headers["content-security-policy"]
    assert "img-src 'self' data: blob:" in csp and "frame-ancestors 'none'" in csp


def test_login_page_sessions_logout_and_failed_login_limit(shared):
    shared.guard.failures.free = 2
    with httpx.Client(base_url=shared.url) as browser:
        assert "<form" in browser.get("/login").text
        wrong = browser.post("/login", data={"username": "ana", "password": "nope"})
        assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text
        ok = browser.post("/login", data={"username": "ana", "password": PASSWORD})
        assert ok.status_code == 303 and "autodidact_session" in ok.headers["set-cookie"]
        assert "httponly" in ok.headers["set-cookie"].lower()
        assert browser.get("/config").status_code == 200
        browser.get("/logout")
        assert browser.get("/config").status_code == 401
    with httpx.Client(base_url=shared.url) as guesser:
        for _ in range(5):
            guesser.post("/login", data={"username": "bob", "password": "guess"})
        blocked = guesser.post("/login", data={"username": "bob", "password": PASSWORD})
        assert blocked.status_code == 429 and "Too many failed logins" in blocked.text


def test_a_removed_account_loses_its_tokens_and_sessions(shared):
    AccountStore(shared.store.engine).remove("bob")
    assert httpx.get(shared.url + "config", headers=shared.tokens["bob"]).status_code == 401


def test_uploads_over_the_size_limit_are_refused_with_a_clear_message(shared):
    limit = int(shared.settings.knowledge_max_file_mb * 1024 * 1024)
    files = {"files": ("big.txt", b"a" * (limit + 1024), "text/plain")}
    big = httpx.post(shared.url + "gradio_api/upload", files=files, headers=shared.tokens["ana"])
    assert big.status_code == 413 and "File size exceeded maximum allowed size" in big.text
    files = {"files": ("small.txt", b"hello", "text/plain")}
    small = httpx.post(shared.url + "gradio_api/upload", files=files, headers=shared.tokens["ana"])
    assert small.status_code == 200


def test_messages_beyond_the_rate_limit_are_refused_with_the_wait(shared):
    """Refused at the door (a 429 with the wait, before the queue), for this account only."""
    from gradio_client import Client

    shared.chat.limiter.limit = 2
    ana = Client(shared.url, headers=shared.tokens["ana"], verbose=False)
    for i in range(2):
        ana.predict(f"hello {i}", "", api_name="/chat")
    with pytest.raises(httpx.HTTPStatusError) as refused:
        ana.predict("one more", "", api_name="/chat")
    assert refused.value.response.status_code == 429
    assert re.search(r"too fast.*Try again in", refused.value.response.json()["detail"])
    # per user: Bob is not held back by Ana
    Client(shared.url, headers=shared.tokens["bob"], verbose=False).predict(
        "hi", "", api_name="/chat"
    )


def test_a_host_other_than_loopback_needs_accounts_to_start(settings, engine, embedder):
    from assistant.web.app import create_app, launch

    settings.host = "0.0.0.0"
    app = create_app(settings, model=engine, embedder=embedder)
    try:
        with pytest.raises(RuntimeError, match="without accounts"):
            launch(app, block=False)
    finally:
        app.close()


def test_allowed_hosts_lets_a_real_name_in(settings, engine, embedder):
    from assistant.web.app import create_app, launch
    from tests.conftest import free_port

    settings.port, settings.allowed_hosts = free_port(), ["chat.example.org"]
    app = create_app(settings, model=engine, embedder=embedder)
    launch(app, block=False)
    try:
        named = httpx.get(app.url + "config", headers={"Host": "chat.example.org"})
        # answered, but not as the local user: a name other than loopback means a proxy
        # brought it, and the network is not the local user (docs/sharing.md)
        assert named.status_code == 401
        AccountStore(app.store.engine).add("ana", PASSWORD, "user")
        token = {"Authorization": f"Bearer {AccountStore(app.store.engine).create_token('ana')}"}
        named = httpx.get(app.url + "config", headers={"Host": "chat.example.org", **token})
        assert named.status_code == 200
        other = httpx.get(app.url + "config", headers={"Host": "chat.example.net"})
        assert other.status_code == 421
    finally:
        app.close()


def autodidact(*args, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "assistant.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def test_the_user_command_manages_accounts_and_serve_off_loopback_needs_one(tmp_path):
    home = ["--home", str(tmp_path / "h")]
    refused = autodidact("serve", "--host", "0.0.0.0", "--port", "0", *home)
    assert refused.returncode == 1
    assert "refusing to serve on 0.0.0.0 without accounts" in refused.stderr
    assert "Traceback" not in refused.stderr
    add = ("user", "add", "ana", "--role", "reviewer", "--password-stdin", *home)
    added = autodidact(*add, stdin=f"{PASSWORD}\n")
    assert added.returncode == 0 and "Added ana (reviewer)" in added.stdout
    token = autodidact("user", "token", "ana", *home)
    assert token.returncode == 0 and token.stdout.startswith("adt_")
    listed = autodidact("user", "list", *home).stdout
    assert "ana" in listed and "reviewer" in listed and "password" in listed
    bad = autodidact("user", "add", "../etc", "--password-stdin", *home, stdin="x" * 9)
    assert bad.returncode == 1 and "a user name is" in bad.stderr
    assert autodidact("user", "remove", "ana", *home).returncode == 0
    accounts = AccountStore(open_database(f"sqlite:///{tmp_path / 'h' / 'autodidact.db'}"))
    assert accounts.holder(token.stdout.strip()) is None
    assert not accounts.has_accounts()


def test_requests_beyond_the_queue_maximum_are_refused_with_a_clear_message(shared):
    """One answer generating and `queue_max` waiting: the next join gets a 503 saying so."""
    import threading

    shared.settings.max_tokens = 200
    shared.demo._queue.max_size = 2  # what queue_max sets at launch
    shared.door.per_account = 10  # one account fills the queue here (tests/test_routes.py: not)
    chat = next(d["id"] for d in events(config(shared)) if d.get("api_name") == "chat")
    outcomes, threads = [], []
    for i in range(6):
        args = (shared.url, chat, [f"Write a long poem number {i}.", ""], shared.tokens["ana"])
        threads.append(threading.Thread(target=lambda a=args: outcomes.append(join(*a))))
        threads[-1].start()
        time.sleep(0.1)
    for thread in threads:
        thread.join(300)
    full = [o for o in outcomes if o.status == 503]
    assert full and all("Queue is full" in o.error for o in full)
    assert sum(o.success for o in outcomes) >= 2


def test_the_server_never_fetches_a_url_for_a_caller(shared):
    """Gradio's `file=<URL>` would fetch the URL and serve it on our origin (a page there could
    run script as the caller): refused, as is `proxy=`."""
    with tracker_server() as (remote, hits):
        for path in (
            f"gradio_api/file={remote}/a.png",
            f"file={remote}/a.png",
            "gradio_api/proxy=x",
        ):
            answer = httpx.get(shared.url + path, headers=shared.tokens["ana"])
            assert answer.status_code == 404, path
        assert hits == []


def test_requests_made_by_other_sites_pages_are_refused(shared):
    token, port = shared.tokens["ana"], shared.settings.port
    other_port = httpx.get(
        shared.url + "config", headers={**token, "Origin": f"http://localhost:{port + 1}"}
    )
    assert other_port.status_code == 403
    for site in ("cross-site", "same-site"):
        fetch = {**token, "Sec-Fetch-Site": site, "Sec-Fetch-Mode": "no-cors"}
        assert httpx.post(shared.url + "gradio_api/queue/join", headers=fetch).status_code == 403
    link = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "accept": "text/html"}
    assert httpx.get(shared.url, headers=link).status_code == 303  # a link to the app: login


def test_without_accounts_only_direct_loopback_requests_are_the_local_user(running_app):
    assert httpx.get(running_app.url + "config").status_code == 200
    for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP", "Via"):
        proxied = httpx.get(running_app.url + "config", headers={header: "203.0.113.9"})
        assert proxied.status_code == 401, header


@contextmanager
def tracker_server():
    from tests.test_browser_access import tracker

    with tracker() as found:
        yield found
