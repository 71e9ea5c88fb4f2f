"""The door behind the gate: which routes exist, whose session a request speaks for, which
files it may name, and whether its event may join the queue.

Owns four checks that Gradio leaves to the app when it is mounted (assistant/web/gate.py has
already said who the caller is, and put the account in `scope["state"]`):
- **Routes.** Only the routes the page and the documented API use are open (`OPEN`); every other
  route Gradio or FastAPI adds answers 404 (tests/test_routes.py enumerates them from the app).
- **Sessions.** A Gradio session hash (and an upload id) belongs to the first account that used
  it; another account naming it is refused, on every route that takes one.
- **Files.** An upload is recorded for its account (assistant/web/uploads.py); an event may name
  only the caller's own unused uploads, and `/gradio_api/file=` serves only the caller's own.
- **The queue.** An account may have `queue_per_account` model requests waiting or running, and
  `queue_events_per_account` events of any kind; a model request is refused at the door while the
  account is over its message rate. Waiting events are served fairly: each account's next event
  before anyone's second (`fair_order`).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections import Counter, OrderedDict
from urllib.parse import parse_qs

from starlette.datastructures import Headers
from starlette.responses import Response

from assistant.web.common import MODEL as MODEL_EVENTS
from assistant.web.uploads import Uploads, file_refs

MODEL = MODEL_EVENTS["concurrency_id"]

# Every route that is open: (method, path pattern, what the app uses it for). Everything else
# the mounted app has answers 404; docs/routes.md is generated from this table.
OPEN = [
    ("GET", r"/(login|logout)?/?", "the page; the login form; logging out"),
    ("POST", r"/login/?", "logging in (the gate answers it; Gradio's own login is never reached)"),
    ("GET", r"/config/?", "the page's layout and events (the page and gradio_client read it)"),
    ("GET", r"/gradio_api/info/?", "the API's description (the API page, gradio_client)"),
    ("GET", r"/(gradio_api/)?theme\.css|/robots\.txt|/favicon\.ico", "the page's style and icons"),
    ("GET", r"/(assets|static|svelte)/.*", "the page's scripts, styles and fonts"),
    ("GET", r"/gradio_api/startup-events", "the page starts its load events"),
    ("GET", r"/gradio_api/queue/data", "an event's stream (session bound to its account)"),
    ("GET", r"/gradio_api/heartbeat/[^/]+", "the page is still open (session bound)"),
    ("GET", r"/gradio_api/upload_progress", "an upload's progress (upload id bound)"),
    ("GET", r"/gradio_api/file=.*", "the caller's own uploads, nothing else"),
    ("POST", r"/gradio_api/queue/join", "running an event (files, session and queue checked)"),
    ("POST", r"/gradio_api/cancel", "stopping an event (session bound)"),
    (
        "POST",
        r"/gradio_api/run/[^/]+",
        "the page's unqueued events, e.g. Stop (session bound; queued events are refused)",
    ),
    ("POST", r"/gradio_api/upload", "uploading documents (owned, bounded, swept)"),
    ("GET", r"/v1/models", "the OpenAI-compatible API: the served model and adapter"),
    (
        "POST",
        r"/v1/chat/completions",
        "the OpenAI-compatible API: a message, answered (streamed or not) outside Gradio's "
        "queue under the same per-account limits",
    ),
    ("POST", r"/v1/feedback", "the OpenAI-compatible API's extension: rate or correct an answer"),
]
_OPEN = [(method, re.compile(pattern)) for method, pattern, _ in OPEN]
BODY_LIMIT = 4 * 1024 * 1024  # a queue join carries one message; more is not ours


def is_open(method: str, path: str) -> bool:
    """Whether a route is one the app uses (HEAD as GET).

    >>> [is_open(m, p) for m, p in [("GET", "/"), ("GET", "/config"), ("POST", "/gradio_api/upload"),
    ...     ("GET", "/gradio_api/deep_link"), ("POST", "/gradio_api/call/chat"),
    ...     ("GET", "/gradio_api/run/predict"), ("GET", "/gradio_api/queue/status"),
    ...     ("HEAD", "/gradio_api/file=/x"), ("GET", "/monitoring"), ("POST", "/config")]]
    [True, True, True, False, False, False, False, True, False, False]
    """
    method = "GET" if method == "HEAD" else method
    return any(m == method and p.fullmatch(path) for m, p in _OPEN)


def fair_order(waiting: list, running: Counter, owner=lambda e: e.username) -> list:
    """Waiting events in fair order: by how many events their account has ahead of them
    (running or waiting), then by arrival. One account's burst never pushes another's first
    event back more than one place per account.

    >>> from types import SimpleNamespace as E
    >>> q = [E(username=u) for u in ["ana", "ana", "ana", "bob", "cy", "bob"]]
    >>> [e.username for e in fair_order(q, Counter({"ana": 1}))]
    ['bob', 'cy', 'ana', 'bob', 'ana', 'ana']
    """
    seen: Counter = Counter(running)
    keyed = []
    for arrival, event in enumerate(waiting):
        who = owner(event)
        keyed.append((seen[who], arrival, event))
        seen[who] += 1
    return [event for _, _, event in sorted(keyed, key=lambda k: k[:2])]


SESSION_KEY = re.compile(r"[A-Za-z0-9_-]{1,128}")


class Sessions:
    """Session hashes and upload ids, each bound to the first account that used it (bounded:
    the oldest are forgotten first; a key is at most 128 letters, digits, - or _)."""

    def __init__(self, limit: int = 100_000):
        self.limit = limit
        self._owner: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def bind(self, key: str, account_id: int) -> bool:
        """True when `key` is the account's (now or from before), False when another's or
        not a key at all."""
        if not isinstance(key, str) or not SESSION_KEY.fullmatch(key):
            return False
        with self._lock:
            owner = self._owner.setdefault(key, account_id)
            self._owner.move_to_end(key)
            while len(self._owner) > self.limit:
                self._owner.popitem(last=False)
        return owner == account_id


class Door:
    """The checks, with what they need: the queue, the uploads, the chat's rate limiter."""

    def __init__(self, demo, uploads: Uploads, limiter, per_account: int, events_per_account):
        self.demo, self.uploads, self.limiter = demo, uploads, limiter
        self.per_account, self.events_per_account = per_account, events_per_account
        self.sessions = Sessions()
        self._joining: dict[str, asyncio.Lock] = {}
        # Model requests served outside Gradio's queue (the OpenAI-compatible API), per account
        # name as the queue files events: they count against the same limits.
        self.outside: Counter = Counter()

    def joining(self, username: str) -> asyncio.Lock:
        return self._joining.setdefault(username, asyncio.Lock())

    # the queue
    def install_fair_queue(self) -> None:
        """Make Gradio's queue pick the fairest event: `get_events` runs under the queue's
        delete lock, so reordering there races with nothing."""
        queue = self.demo._queue
        original = queue.get_events

        def get_events():
            running = Counter(
                e.username for job in queue.active_jobs if job for e in job if e is not None
            )
            for event_queue in queue.event_queue_per_concurrency_id.values():
                if len(event_queue.queue) > 1:
                    event_queue.queue[:] = fair_order(event_queue.queue, running)
            return original()

        queue.get_events = get_events

    def unqueued(self, api_name: str, fn_index) -> bool:
        """Whether a direct call names an event that runs outside the queue (Stop). A queued
        event called directly would skip the queue, its limits and its order."""
        fns = self.demo.fns
        if api_name == "predict":
            fn = fns.get(fn_index) if type(fn_index) is int else None
        else:
            fn = next((f for f in fns.values() if f.api_name == api_name), None)
            if fn is not None and fn_index is not None and fns.get(fn_index) is not fn:
                fn = None  # Gradio could pick either; refuse the ambiguity
        return fn is not None and not fn.queue

    def owns_event(self, session: str, event_id) -> bool:
        """Whether the event a cancel names is this session's (or gone already)."""
        event = self.demo._queue.event_ids_to_events.get(event_id) if event_id else None
        return event is None or event.session_hash == session

    def held(self, username: str) -> tuple[int, int]:
        """(model events, events) the account has waiting or running."""
        queue, model, total = self.demo._queue, 0, 0
        jobs = [e for job in queue.active_jobs if job for e in job if e is not None]
        for event_queue in queue.event_queue_per_concurrency_id.values():
            jobs += list(event_queue.queue)
        for event in jobs:
            if event.username == username:
                total += 1
                model += event.concurrency_id == MODEL
        return model + self.outside[username], total + self.outside[username]

    def admit(self, account, username: str, fn_index) -> Response | None:
        # Exactly an int: Gradio would read "3" or 3.0 as event 3, and the count must see it.
        fn = self.demo.fns.get(fn_index) if type(fn_index) is int else None
        if fn is None:
            return refuse(400, "Name an event of this page by its number (fn_index).")
        model, total = self.held(username)
        if total >= self.events_per_account:
            return refuse(429, f"You have {total} requests waiting; wait for them to finish.", 5)
        if fn.concurrency_id != MODEL:
            return None
        return self.admit_message(account, model)

    def admit_outside(self, account, username: str) -> Response | None:
        """A model request served outside the queue (the OpenAI-compatible API), under the
        queue's rules: the account's limits, and `queue_max` for all such requests at once."""
        model, total = self.held(username)
        if total >= self.events_per_account:
            return refuse(429, f"You have {total} requests waiting; wait for them to finish.", 5)
        limit = self.demo._queue.max_size
        if limit and sum(self.outside.values()) >= limit:
            return refuse(429, "The server is busy: too many requests waiting. Try again.", 5)
        return self.admit_message(account, model)

    def admit_message(self, account, model: int) -> Response | None:
        """A message's admission, given the model requests the account has waiting or
        running: None, or the 429 (with Retry-After) that refuses it."""
        if model >= self.per_account:
            return refuse(
                429,
                f"You have {model} messages waiting for an answer; send the next when one is "
                "answered.",
                5,
            )
        wait = self.limiter.retry_after(account.id)
        if wait > 0:
            return refuse(
                429,
                f"You are sending messages too fast: at most {self.limiter.limit} per "
                f"{self.limiter.window:g} s. Try again in {wait:.0f} s.",
                wait,
            )
        return None


def refuse(status: int, detail: str, retry_after: float | None = None) -> Response:
    headers = {"retry-after": str(max(int(retry_after + 0.999), 1))} if retry_after else None
    return Response(
        json.dumps({"detail": detail, "error": detail}),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


class DoorMiddleware:
    """Pure ASGI, inside the gate: refuses, or passes the request on (its body replayed)."""

    def __init__(self, app, door: Door, username):
        self.app, self.door, self.username = app, door, username

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        method, path = scope.get("method", "GET"), scope.get("path", "/")
        if scope["type"] == "websocket" or not is_open(method, path):
            return await self.refused(refuse(404, "Not found."), scope, receive, send)
        account = scope.get("state", {}).get("account")
        if account is None:  # the gate let it through: a public asset or the login page
            return await self.app(scope, receive, send)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        for key in [*query.get("session_hash", []), *query.get("upload_id", [])]:
            if not self.door.sessions.bind(key, account.id):
                return await self.refused(forbidden(), scope, receive, send)
        if path.startswith("/gradio_api/heartbeat/"):
            if not self.door.sessions.bind(path.rsplit("/", 1)[1], account.id):
                return await self.refused(forbidden(), scope, receive, send)
        if path.startswith("/gradio_api/file="):
            # scope["path"] is already percent-decoded, as Gradio's route reads it
            if not self.door.uploads.may_read(account.id, path[len("/gradio_api/file=") :]):
                return await self.refused(refuse(404, "Not found."), scope, receive, send)
        if path == "/gradio_api/upload":
            return await self.upload(scope, receive, send, account)
        if method == "POST" and path.startswith(
            ("/gradio_api/queue/join", "/gradio_api/cancel", "/gradio_api/run/")
        ):
            return await self.event(scope, receive, send, account, path)
        return await self.app(scope, receive, send)

    async def event(self, scope, receive, send, account, path: str):
        body = await read_body(receive, BODY_LIMIT)
        if body is None:
            return await self.refused(
                refuse(413, "The request is too large."), scope, receive, send
            )
        try:
            payload = json.loads(body or b"{}")
        except (ValueError, RecursionError):
            payload = None
        if not isinstance(payload, dict):
            return await self.refused(refuse(400, "Send a JSON object."), scope, receive, send)
        session = payload.get("session_hash")
        if session is not None and not self.door.sessions.bind(session, account.id):
            return await self.refused(forbidden(), scope, receive, send)
        if path.endswith("/cancel") and not self.door.owns_event(session, payload.get("event_id")):
            return await self.refused(forbidden(), scope, receive, send)
        if path.startswith("/gradio_api/run/"):
            if not self.door.unqueued(path.rsplit("/", 1)[1], payload.get("fn_index")):
                return await self.refused(refuse(404, "Join the queue."), scope, receive, send)
        refs = file_refs(payload.get("data"))
        why = self.door.uploads.claim(account.id, refs) if refs else None
        if why is not None:
            return await self.refused(refuse(403, why), scope, receive, send)
        if not path.endswith("/join"):
            return await self.app(scope, replay(body, receive), send)
        username = self.username(scope)
        # One join of an account at a time, from the count to the queue's push (a few ms):
        # twenty joins at once would otherwise all be counted before any was queued.
        async with self.door.joining(username):
            refusal = self.door.admit(account, username, payload.get("fn_index"))
            if refusal is None:
                status = await self.passed(scope, replay(body, receive), send)
            else:
                await self.refused(refusal, scope, receive, send)
        if refusal is not None or status != 200:  # not queued: the files may be named again
            self.door.uploads.unclaim(account.id, refs)

    async def passed(self, scope, receive, send) -> int:
        """Pass the request on; the status it was answered with."""
        status = [0]

        async def watching(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        await self.app(scope, receive, watching)
        return status[0]

    async def upload(self, scope, receive, send, account):
        length = Headers(scope=scope).get("content-length", "")
        if not length.isdigit():
            return await self.refused(
                refuse(411, "Send the upload with a Content-Length."), scope, receive, send
            )
        reservation = self.door.uploads.admit(account.id, int(length))
        if isinstance(reservation, str):
            return await self.refused(refuse(429, reservation, 60), scope, receive, send)
        status, chunks, paths = [0], [], []

        async def capture(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, capped(receive, int(length)), capture)
            if status[0] == 200:
                found = json.loads(b"".join(chunks))
                paths = [p for p in found if isinstance(p, str)] if isinstance(found, list) else []
        except ValueError:
            pass
        finally:
            # Recorded files replace the reservation; an upload cut off or refused keeps it
            # until the sweep deletes what it left, so aborts cannot outrun the bounds.
            self.door.uploads.settle(reservation, account.id, paths)

    async def refused(self, response: Response, scope, receive, send):
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        await response(scope, receive, send)


def forbidden() -> Response:
    return refuse(403, "This session belongs to another account.")


async def read_body(receive, limit: int) -> bytes | None:
    """The whole request body, or None past `limit` bytes."""
    parts, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(parts)
        parts.append(message.get("body", b""))
        size += len(parts[-1])
        if size > limit:
            return None
        if not message.get("more_body"):
            return b"".join(parts)


def replay(body: bytes, receive):
    """A `receive` that gives the app the body already read, then waits as the real one."""
    sent = False

    async def receiving():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return receiving


def capped(receive, limit: int):
    """A `receive` that ends the request (as a disconnect) once more than `limit` bytes came:
    a Content-Length that lies buys nothing."""
    seen = 0

    async def receiving():
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            return {"type": "http.disconnect"}
        return message

    return receiving


__all__ = ["MODEL", "OPEN", "Door", "DoorMiddleware", "fair_order", "is_open"]
