"""Every route the served app exposes, and the files, sessions and queue behind them, probed as
an outsider would: raw HTTP as anonymous, as another account, as a user and as a reviewer.

The routes are read from the ASGI app itself (FastAPI's and the mounted Gradio app's), never
listed by hand, so a route a Gradio upgrade adds is probed the day it appears. The server is the
real one: the embedded model, SQLite and Chroma under a temporary home, uvicorn on loopback.
"""

from __future__ import annotations

import io
import re
import threading
import time
import zipfile
import zlib

import httpx
import pytest
from starlette.routing import Mount

from assistant.web.door import is_open
from assistant.web.gate import PUBLIC
from feedback.knowledge.parse import DocumentError
from store.accounts import AccountStore
from tests.conftest import PASSWORD
from tests.raw_gradio import join
from tests.test_security import config, events

WHO = ("anonymous", "ana", "bob", "rita")


def routes(asgi, prefix: str = "") -> list[tuple[str, str]]:
    """(method, path template) of every route, mounts and included routers followed."""
    found = []
    for route in getattr(asgi, "routes", []):
        if isinstance(route, Mount):
            found += routes(route.app, prefix + route.path)
        elif hasattr(route, "original_router"):  # FastAPI's include_router
            found += routes(route.original_router, prefix + route.include_context.prefix)
        else:
            for method in sorted(getattr(route, "methods", None) or {"GET"}):
                found.append((method, prefix + route.path))
    return found


def concrete(template: str) -> str:
    """A path to call for a template: each parameter filled with a harmless value."""
    return re.sub(r"\{[^}]+\}", "x1", template)


def ana_id(app) -> int:
    return AccountStore(app.store.engine).account("ana").id


def call(app, who: str, method: str, path: str, **kwargs) -> httpx.Response:
    """The response's status and headers; the body is not read (some routes stream for ever)."""
    headers = {} if who == "anonymous" else app.tokens[who]
    url = app.url.rstrip("/") + path
    with httpx.stream(method, url, headers=headers, timeout=30, **kwargs) as response:
        if "text/event-stream" not in response.headers.get("content-type", ""):
            response.read()
        return response


def knowledge_add(cfg) -> int:
    upload = next(
        c["id"]
        for c in cfg["components"]
        if c.get("props", {}).get("elem_id") == "knowledge-upload"
    )
    return next(d["id"] for d in events(cfg) if [upload, "upload"] in d["targets"])


def file_data(path: str) -> dict:
    return {"path": path, "orig_name": "notes.txt", "meta": {"_type": "gradio.FileData"}}


def upload(app, who: str, name: str, data: bytes) -> httpx.Response:
    files = {"files": (name, data, "text/plain")}
    return httpx.post(app.url + "gradio_api/upload", files=files, headers=app.tokens[who])


def test_every_route_is_closed_or_answers_each_caller_as_it_should(shared):
    """Routes the app does not use answer 404 to everyone; the open ones refuse anonymous
    callers (but the page's assets and the login page), and none errors."""
    found = routes(shared.asgi)
    assert len(found) > 60  # Gradio's routes are there to be probed, not hidden
    closed = [(m, p) for m, p in found if not is_open(m, concrete(p))]
    assert len(closed) > 30
    for method, template in found:
        path = concrete(template)
        if "{" in template and "session_hash" in template:
            path = path.replace("x1", "s-" + method.lower())
        for who in WHO:
            answer = call(shared, who, method, path)
            assert answer.status_code < 500, (method, template, who, answer.status_code)
            if (method, template) in closed:
                assert answer.status_code in (401, 404), (method, template, who)
                assert answer.status_code == 404 or who == "anonymous", (method, template)
            elif who == "anonymous":
                assert answer.status_code in (303, 401, 404, 200), (method, template)
                if answer.status_code == 200:
                    assert path.rstrip("/") in ("/login", "") or path.startswith(PUBLIC), path
    for path in (
        "/gradio_api/deep_link",
        "/gradio_api/call/chat",
        "/gradio_api/queue/status",
        "/gradio_api/openapi.json",
        "/monitoring",
    ):
        for who in WHO[1:]:
            assert call(shared, who, "GET", path).status_code == 404, path
            assert call(shared, who, "POST", path, json={}).status_code == 404, path


def test_the_openai_routes_are_enumerated_and_answer_each_caller_in_their_shape(shared):
    """The /v1 routes are among the app's routes and open; anonymous callers get a 401 in
    OpenAI's error shape, every role is served, and /v1 paths the app does not serve are 404."""
    found = set(routes(shared.asgi))
    v1 = {("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("POST", "/v1/feedback")}
    assert v1 <= found and all(is_open(m, p) for m, p in v1)
    for method, path in sorted(v1):
        answer = call(shared, "anonymous", method, path, json={})
        assert answer.status_code == 401, path
        assert answer.json()["error"]["code"] == "invalid_api_key"
        for who in WHO[1:]:
            answer = call(shared, who, method, path, json={})
            assert answer.status_code == (200 if method == "GET" else 400), (path, who)
            if method == "POST":
                assert answer.json()["error"]["type"] == "invalid_request_error"
    for method, path in (("POST", "/v1/completions"), ("POST", "/v1/embeddings")):
        assert call(shared, "ana", method, path, json={}).status_code == 404


def test_a_user_cannot_make_the_server_read_its_own_files(shared):
    """The probe of issue 22: a FileData naming the database (or any server path) is refused
    at the door, nothing is copied into the upload folder, and no route serves it."""
    cfg = config(shared, "ana")
    add = knowledge_add(cfg)
    home = shared.settings.home_dir.resolve()
    uploads = home / "uploads"
    before = sorted(p for p in uploads.rglob("*") if p.is_file()) if uploads.exists() else []
    secret = home / "secret.md"
    secret.write_text("The launch code is ZEBRA-4471.")
    for target in (
        home / "autodidact.db",
        secret,
        "/etc/passwd",
        "http://127.0.0.1:9/x.md",
        f"{uploads}/../secret.md",
    ):
        outcome = join(shared.url, add, [[file_data(str(target))]], shared.tokens["ana"])
        assert outcome.status == 403 and "did not upload" in outcome.error, target
    after = sorted(p for p in uploads.rglob("*") if p.is_file()) if uploads.exists() else []
    assert after == before  # no copy was made
    for target in (home / "autodidact.db", secret):
        assert call(shared, "ana", "GET", f"/gradio_api/file={target}").status_code == 404
    assert call(shared, "ana", "GET", "/gradio_api/deep_link?session_hash=S").status_code == 404
    assert shared.library.documents(ana_id(shared)) == []


def test_uploads_are_their_senders_used_once_and_then_deleted(shared):
    sent = upload(shared, "ana", "notes.txt", b"Our office dog is called Biscuit.")
    assert sent.status_code == 200
    [path] = sent.json()
    assert call(shared, "ana", "GET", f"/gradio_api/file={path}").status_code == 200
    assert call(shared, "bob", "GET", f"/gradio_api/file={path}").status_code == 404
    add = knowledge_add(config(shared, "bob"))
    stolen = join(shared.url, add, [[file_data(path)]], shared.tokens["bob"])
    assert stolen.status == 403
    used = join(shared.url, add, [[file_data(path)]], shared.tokens["ana"])
    assert used.success and "added" in str(used.outputs[-1][0])
    left = [p for p in (shared.settings.home_dir / "uploads").rglob("*") if p.is_file()]
    assert left == [], [(p, p.stat().st_size, p.read_bytes()[:100]) for p in left]
    again = join(shared.url, add, [[file_data(path)]], shared.tokens["ana"])
    assert again.status == 403  # used once; the file is gone


def test_the_upload_store_is_bounded_and_swept(shared):
    uploads = shared.uploads
    uploads.per_account_files = 3
    for i in range(5):
        assert upload(shared, "ana", f"n{i}.txt", f"note {i}".encode()).status_code in (200, 429)
    files, _ = uploads.pending(ana_id(shared))
    assert files <= 3
    refused = upload(shared, "ana", "n9.txt", b"one too many")
    assert refused.status_code == 429 and "not added yet" in refused.json()["detail"]
    assert upload(shared, "bob", "b.txt", b"bob's own").status_code == 200  # per account
    # no Content-Length (chunked): its size cannot be checked before it is written
    chunked = httpx.post(
        shared.url + "gradio_api/upload",
        content=(part for part in [b"--x\r\n", b"a" * 10_000]),
        headers={**shared.tokens["bob"], "content-type": "multipart/form-data; boundary=x"},
    )
    assert chunked.status_code == 411
    uploads.ttl_s = 0.0
    time.sleep(0.05)
    uploads.sweep()
    assert not any(p.is_file() for p in (shared.settings.home_dir / "uploads").rglob("*"))
    assert uploads.pending(ana_id(shared)) == (0, 0)


def test_a_session_hash_belongs_to_the_account_that_first_used_it(shared):
    cfg = config(shared, "ana")
    chat = next(d["id"] for d in events(cfg) if d.get("api_name") == "chat")
    mine = join(shared.url, chat, ["hello", ""], shared.tokens["ana"], session="ana-tab-1")
    assert mine.success
    bob = shared.tokens["bob"]
    assert join(shared.url, chat, ["hi", ""], bob, session="ana-tab-1").status == 403
    for method, path, body in (
        ("GET", "/gradio_api/queue/data?session_hash=ana-tab-1", None),
        ("GET", "/gradio_api/heartbeat/ana-tab-1", None),
        (
            "POST",
            "/gradio_api/cancel",
            {"session_hash": "ana-tab-1", "fn_index": chat, "event_id": "x"},
        ),
    ):
        answer = httpx.request(method, shared.url.rstrip("/") + path, headers=bob, json=body)
        assert answer.status_code == 403, path
    assert call(shared, "bob", "GET", "/gradio_api/upload_progress?upload_id=u1").status_code != 403
    assert call(shared, "ana", "GET", "/gradio_api/upload_progress?upload_id=u1").status_code == 403


def flood(app, chat: int, count: int) -> tuple[dict, list[tuple[float, str]]]:
    """Ana sends `count` long messages at once; a second later Bob sends one. The outcomes,
    and (finish time, who) of every answered message."""
    outcomes, finished, threads = {}, [], []

    def send(who, i):
        prompt = f"Write a long poem about the sea, number {i}."
        outcome = join(app.url, chat, [prompt, ""], app.tokens[who])
        outcomes[(who, i)] = outcome
        if outcome.success:
            finished.append((time.monotonic(), who))

    for i in range(count):
        threads.append(threading.Thread(target=send, args=("ana", i)))
        threads[-1].start()
    time.sleep(1.0)
    threads.append(threading.Thread(target=send, args=("bob", 0)))
    threads[-1].start()
    for thread in threads:
        thread.join(300)
    return outcomes, sorted(finished)


def test_one_account_cannot_fill_the_queue(shared):
    """Ana floods the chat event: all but `queue_per_account` of hers are refused at the door
    with a 429 and Retry-After; Bob's message is taken."""
    shared.settings.max_tokens = 64
    chat = next(d["id"] for d in events(config(shared)) if d.get("api_name") == "chat")
    outcomes, _ = flood(shared, chat, 20)
    ana = [o for (who, _), o in outcomes.items() if who == "ana"]
    limit = shared.settings.queue_per_account
    assert sum(o.status == 429 for o in ana) == 20 - limit
    assert sum(o.success for o in ana) == limit
    assert all("waiting for an answer" in o.error for o in ana if o.status == 429)
    assert outcomes[("bob", 0)].success
    busy = httpx.post(
        shared.url + "gradio_api/queue/join",
        json={"data": ["x", ""], "fn_index": chat, "session_hash": "r1"},
        headers=shared.tokens["ana"],
    )
    assert busy.status_code == 200  # the flood is over: Ana may send again
    # around the queue (and so the door's count): Gradio refuses queued events on /run
    direct = {"data": ["x", ""], "fn_index": chat, "session_hash": "r2"}
    around = call(shared, "ana", "POST", "/gradio_api/run/chat", json=direct)
    assert around.status_code == 404


def test_another_accounts_burst_delays_a_message_by_at_most_one_answer(shared):
    """With five of Ana's messages waiting, Bob's is next after the one being answered (his
    first message goes before anyone's second), not sixth as first-come-first-served."""
    shared.settings.max_tokens = 160
    shared.door.per_account = 5
    chat = next(d["id"] for d in events(config(shared)) if d.get("api_name") == "chat")
    outcomes, finished = flood(shared, chat, 5)
    assert all(o.success for o in outcomes.values())
    order = [who for _, who in finished]
    assert order.index("bob") <= 2, order  # at most the running answer (and a tie) before him


def test_a_message_over_the_rate_limit_is_refused_at_the_door(shared):
    shared.chat.limiter.limit = 1
    chat = next(d["id"] for d in events(config(shared)) if d.get("api_name") == "chat")
    assert join(shared.url, chat, ["hello", ""], shared.tokens["ana"]).success
    refused = httpx.post(
        shared.url + "gradio_api/queue/join",
        json={"data": ["again", ""], "fn_index": chat, "session_hash": "rl"},
        headers=shared.tokens["ana"],
    )
    assert refused.status_code == 429 and "too fast" in refused.json()["detail"]
    assert int(refused.headers["retry-after"]) >= 1


def docx_bomb(mb: int = 100) -> bytes:
    """A small .docx whose document.xml unpacks to `mb` MB of empty paragraphs."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        head = '<?xml version="1.0"?><w:document xmlns:w="x"><w:body>'
        with z.open("word/document.xml", "w", force_zip64=True) as f:
            f.write(head.encode())
            chunk = b"<w:p/>" * (1024 * 1024 // 6)
            for _ in range(mb):
                f.write(chunk)
            f.write(b"</w:body></w:document>")
    return out.getvalue()


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024


def pdf_bomb(mb: int) -> bytes:
    """A one-page PDF whose compressed content stream inflates to `mb` MB of text."""
    pack = zlib.compressobj(9)
    chunk = b"BT /F1 12 Tf (aaaaaaaa) Tj ET\n" * (1024 * 1024 // 30)
    stream = b"".join(pack.compress(chunk) for _ in range(mb)) + pack.flush()
    objects = [
        b"<</Type/Catalog/Pages 2 0 R>>",
        b"<</Type/Pages/Kids[3 0 R]/Count 1>>",
        b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]/Contents 4 0 R"
        b"/Resources<</Font<</F1 5 0 R>>>>>>",
        b"<</Length %d/Filter/FlateDecode>>stream\n" % len(stream) + stream + b"\nendstream",
        b"<</Type/Font/Subtype/Type1/BaseFont/Helvetica>>",
    ]
    out, offsets = b"%PDF-1.4\n", []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<</Root 1 0 R/Size %d>>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return out


BOMBS = {
    "docx": lambda: docx_bomb(100),
    "pdf": lambda: pdf_bomb(300),
    "html": lambda: b"<div>" * 300_000 + b"deep" + b"</div>" * 300_000,
    "txt": lambda: b"x" * (19 * 1024 * 1024),
}


@pytest.mark.parametrize("kind", sorted(BOMBS))
def test_document_bombs_cost_a_refusal_not_the_servers_memory(shared, kind):
    """Each bomb is read in a child process capped at 512 MB: the server's own memory barely
    moves, and the compressed ones are refused with a reason."""
    data = BOMBS[kind]()
    assert len(data) < 20 * 1024 * 1024
    library = shared.library
    library.config = type(library.config)(**{**library.config.__dict__, "parse_memory_mb": 512})
    before = rss_mb()
    try:
        parsed, why = library.parse(f"bomb.{kind}", data), ""
    except DocumentError as exc:
        parsed, why = None, str(exc)
    grew = rss_mb() - before
    assert grew < 300, f"the server grew {grew:.0f} MB reading a {kind} bomb"
    if kind in ("docx", "pdf"):
        assert parsed is None and why.startswith(f"bomb.{kind}: "), why
    if kind == "docx":
        assert "unpacks to" in why
    # the library still works for everyone afterwards
    assert (
        library.add_bytes("ok.txt", b"A normal note about tea.", ana_id(shared)).status == "added"
    )


def test_a_stranger_failing_logins_slows_one_account_and_locks_out_no_one_else(shared):
    """Everyone behind one proxy or NAT shares an address: failures count per account (with
    backoff) and only far more of them per address."""
    with httpx.Client(base_url=shared.url) as stranger:
        for _ in range(shared.settings.login_attempts + 3):
            stranger.post("/login", data={"username": "adam", "password": "guess"})
        slowed = stranger.post("/login", data={"username": "adam", "password": PASSWORD})
        assert slowed.status_code == 429 and "Try again in" in slowed.text
    with httpx.Client(base_url=shared.url) as colleague:  # same address, another account
        ok = colleague.post("/login", data={"username": "ana", "password": PASSWORD})
        assert ok.status_code == 303
    wait = shared.guard.failures.retry_after(("adam", "127.0.0.1"))
    assert 0 < wait <= 8  # backoff, not a five-minute lock
    assert shared.guard.name_failures.retry_after("adam") == 0  # adam elsewhere: not held back


def test_behind_a_trusted_proxy_the_cookie_is_secure_and_the_client_is_the_real_one(
    settings, engine, embedder
):
    from assistant.web.app import create_app, launch
    from tests.conftest import free_port

    settings.port, settings.trusted_proxies = free_port(), ["127.0.0.1"]
    app = create_app(settings, model=engine, embedder=embedder)
    AccountStore(app.store.engine).add("ana", PASSWORD, "user")
    launch(app, block=False)
    try:
        proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"}
        with httpx.Client(base_url=app.url, headers=proxied) as browser:
            ok = browser.post("/login", data={"username": "ana", "password": PASSWORD})
            assert ok.status_code == 303 and "secure" in ok.headers["set-cookie"].lower()
            browser.post("/login", data={"username": "ana", "password": "wrong"})
        assert app.guard.address_failures.retry_after("198.51.100.7") == 0  # counted, not full
        assert len(app.guard.address_failures._events["198.51.100.7"]) == 1
    finally:
        app.close()


def raw_get(url: str, host: str, version: str = "1.1") -> int:
    """The status of a GET sent byte for byte (httpx cannot speak HTTP/1.0)."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as s:
        s.sendall(f"GET /config HTTP/{version}\r\nHost: {host}\r\n\r\n".encode())
        return int(s.recv(64).split()[1])


def test_without_accounts_a_proxy_that_adds_no_header_is_still_not_the_local_user(running_app):
    port = running_app.settings.port
    assert raw_get(running_app.url, f"127.0.0.1:{port}") == 200
    # nginx's plain proxy_pass speaks HTTP/1.0 to the app and adds no forwarding header
    assert raw_get(running_app.url, f"127.0.0.1:{port}", "1.0") == 401
    # a proxy that passes the browser's Host on: a name other than loopback
    running_app.guard.hosts = running_app.guard.hosts | {"chat.example.org"}
    assert raw_get(running_app.url, "chat.example.org") == 401


def test_an_event_named_any_way_but_by_its_number_is_refused(shared):
    """Gradio reads "3" or 3.0 as event 3; the door would not count it: refused."""
    chat = next(d["id"] for d in events(config(shared)) if d.get("api_name") == "chat")
    for fn_index in (str(chat), float(chat), f" {chat}", None):
        body = {"data": ["x", ""], "fn_index": fn_index, "session_hash": "s-fn"}
        answer = call(shared, "ana", "POST", "/gradio_api/queue/join", json=body)
        assert answer.status_code == 400, fn_index
    deep = b"[" * 100_000 + b"]" * 100_000
    nested = httpx.post(
        shared.url + "gradio_api/queue/join", content=deep, headers=shared.tokens["ana"]
    )
    assert nested.status_code == 400
    long = {"data": ["x", ""], "fn_index": chat, "session_hash": "s" * 5000}
    assert call(shared, "ana", "POST", "/gradio_api/queue/join", json=long).status_code == 403


def test_parallel_or_cut_off_uploads_cannot_outrun_the_bounds(shared):
    uploads = shared.uploads
    uploads.per_account_bytes = 1024 * 1024
    results = []

    def send(i):
        results.append(upload(shared, "ana", f"p{i}.txt", bytes([65 + i]) * 400_000).status_code)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results.count(200) <= 2 and results.count(429) >= 4
    assert uploads.pending(ana_id(shared))[1] <= 1024 * 1024
    # an upload cut off half-way keeps its reservation until it is swept
    import socket
    from urllib.parse import urlsplit

    bob = AccountStore(shared.store.engine).account("bob").id
    parts = urlsplit(shared.url)
    with socket.create_connection((parts.hostname, parts.port)) as s:
        head = (
            "POST /gradio_api/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: {shared.tokens['bob']['Authorization']}\r\n"
            "Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 900000\r\n\r\n"
            '--x\r\nContent-Disposition: form-data; name="files"; filename="a.txt"\r\n\r\n'
        )
        s.sendall(head.encode() + b"a" * 300_000)
        time.sleep(0.5)
    time.sleep(0.5)
    assert uploads.pending(bob)[1] >= 900_000


def test_a_user_cannot_cancel_another_sessions_event(shared):
    chat = next(d["id"] for d in events(config(shared)) if d.get("api_name") == "chat")
    shared.settings.max_tokens = 200
    body = {
        "data": ["Write a long poem about rivers.", ""],
        "fn_index": chat,
        "session_hash": "ana-c",
    }
    joined = call(shared, "ana", "POST", "/gradio_api/queue/join", json=body)
    event_id = httpx.post(
        shared.url + "gradio_api/queue/join",
        json={**body, "session_hash": "ana-c2"},
        headers=shared.tokens["ana"],
    ).json()["event_id"]
    assert joined.status_code == 200
    cancel = {"session_hash": "bob-c", "fn_index": chat, "event_id": event_id}
    assert call(shared, "bob", "POST", "/gradio_api/cancel", json=cancel).status_code == 403
