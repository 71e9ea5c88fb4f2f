"""The gate in front of every request: host check, login, tokens, security headers, roles.

Owns who a request comes from and whether it may reach the app at all. `Guard` identifies the
caller (an API token, a browser session cookie, or, on loopback with no accounts, the single
local user) and checks an event's role; `GateMiddleware` is the pure ASGI layer that refuses a
foreign Host or Origin, serves the login page, sends the unidentified to it (or a 401), and adds
the Content-Security-Policy to every response. Gradio is told who the caller is through its
`auth_dependency`, so `gr.Request.username` is the account name in every event.

What the data belongs to is checked by the chat service (assistant/chat.py); the rules are
assistant/access.py's and the accounts store/accounts.py's.
"""

from __future__ import annotations

import html
import ipaddress
import json
import time
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

import anyio
import gradio as gr
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from assistant.access import (
    CSP,
    FORWARDING,
    LOOPBACK_NAMES,
    NEEDS,
    allowed_hosts,
    cross_site_write,
    fetches_elsewhere,
    host_name,
    is_loopback,
    same_origin,
)
from assistant.limits import Backoff, RateLimiter
from assistant.settings import Settings
from store.accounts import TOKEN_PREFIX, Account, AccountStore
from store.tables import User

COOKIE = "autodidact_session"
LOCAL = "(local)"  # the loopback user's name for Gradio; no account can be called this
PUBLIC = ("/assets/", "/static/", "/svelte/", "/favicon.ico", "/theme.css", "/robots.txt")
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    # same-origin, not no-referrer: with no-referrer the browser sends `Origin: null` on the
    # login form, which the origin check must refuse (sandboxed frames send it too).
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
}


LOGINS = anyio.CapacityLimiter(2)  # password checks at once; more wait their turn


def network(client: str) -> str:
    """Whom a failed login is counted against: the address, or its /64 for IPv6 (one machine
    commonly holds a whole /64).

    >>> network("192.0.2.7"), network("2001:db8::1"), network("2001:db8::2"), network("?")
    ('192.0.2.7', '2001:db8::/64', '2001:db8::/64', '?')
    """
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return client
    if address.version == 6:
        return str(ipaddress.ip_network(f"{client}/64", strict=False))
    return client


class Guard:
    """Identifies callers and checks roles; one per app."""

    def __init__(self, accounts: AccountStore, local_user: User, settings: Settings):
        self.accounts, self.settings = accounts, settings
        self.local = Account(local_user.id, local_user.name, "admin")
        self.loopback = is_loopback(settings.host)
        self.hosts = allowed_hosts(settings.host, settings.allowed_hosts)
        # Per account name and address: backoff, so a guesser slows down its own tries at
        # that name. Per name from anywhere: backoff again, ten times looser, against guessing
        # from many addresses; a guesser at one address cannot keep the owner out. Per
        # address: ten times looser (a proxy or a NAT puts many people behind one address),
        # against trying many names.
        self.failures = Backoff(settings.login_attempts, cap=300, forget_s=900)
        self.name_failures = Backoff(settings.login_attempts * 10, cap=300, forget_s=900)
        self.address_failures = RateLimiter(settings.login_attempts * 10, 300)
        self._mode: tuple[float, bool] = (0.0, False)

    def open_to_local(self) -> bool:
        """No accounts and bound to loopback: the single local user, no login (cached 2 s)."""
        at, has = self._mode
        if time.monotonic() - at > 2:
            has = self.accounts.has_accounts()
            self._mode = (time.monotonic(), has)
        return self.loopback and not has

    def identify(
        self, headers: Headers, client: str = "127.0.0.1", http_version: str = "1.1"
    ) -> Account | None:
        """The caller: a token header, else the session cookie, else the local user if open
        and the request comes straight from this machine (not through a proxy, which would
        let the whole network in as the local user). A proxy is seen by its forwarding
        headers, by a Host that is not a loopback name, or by HTTP/1.0, which nginx's plain
        `proxy_pass` speaks and no browser does; a proxy that hides all three is not seen,
        which is why the docs say: behind any proxy, create accounts first."""
        secret = headers.get("x-autodidact-token", "")
        auth = headers.get("authorization", "")
        if not secret and auth[:7].lower() == "bearer ":
            secret = auth[7:].strip()
        if not secret:
            cookie = SimpleCookie()
            try:
                cookie.load(headers.get("cookie", ""))
            except Exception:  # a malformed cookie header identifies nobody
                cookie = SimpleCookie()
            secret = cookie[COOKIE].value if COOKIE in cookie else ""
        if secret and len(secret) < 200:
            found = self.accounts.holder(secret)
            if found is not None:
                return found
        direct = (
            is_loopback(client)
            and not any(h in headers for h in FORWARDING)
            and host_name(headers.get("host", "")) in LOOPBACK_NAMES
            and http_version not in ("1.0", "0.9")
        )
        return self.local if direct and self.open_to_local() else None

    def username(self, request) -> str | None:
        """Gradio's `auth_dependency`: the account name, or None (Gradio answers 401)."""
        account = request.scope.get("state", {}).get("account")
        if account is None:
            return None
        return LOCAL if account == self.local and self.open_to_local() else account.name

    def event_username(self, scope) -> str:
        """The name Gradio's queue files the identified caller's events under."""
        account = scope.get("state", {}).get("account")
        return LOCAL if account == self.local else account.name

    def account(self, request: gr.Request | None, area: str = "chat") -> Account:
        """The caller of an event, checked for `area`'s role (assistant/access.py NEEDS);
        raises a gr.Error the page shows otherwise."""
        name = getattr(request, "username", None)
        if name == LOCAL and self.open_to_local():
            return self.local
        account = self.accounts.account(name) if name and name != LOCAL else None
        if account is None:
            raise gr.Error("Log in first: this server needs an account.")
        if not account.at_least(NEEDS[area]):
            raise gr.Error(
                f"Only a {NEEDS[area]} or an admin may use {area}; you are a {account.role}."
            )
        return account

    def login(self, name: str, password: str, client: str) -> Account | None | float:
        """The account, None for a wrong name or password, or seconds to wait when this name
        failed too often lately (backing off), or this address far too often."""
        address, name_key = network(client), name.strip().lower()
        key = (name_key, address)
        wait = max(
            self.failures.retry_after(key),
            self.name_failures.retry_after(name_key),
            self.address_failures.retry_after(address),
        )
        if wait > 0:
            return wait
        account = self.accounts.verify(name, password)
        if account is None:
            self.failures.failed(key)
            self.name_failures.failed(name_key)
            self.address_failures.wait(address)
        else:
            self.failures.clear(key)
        return account


class GateMiddleware:
    """Pure ASGI (streams pass through untouched): host, origin, identity, headers."""

    def __init__(self, app, guard: Guard):
        self.app, self.guard = app, guard

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        refusal = self.refusal(scope, headers)
        if refusal is not None:
            return await self.respond(refusal, scope, receive, send)
        client = (scope.get("client") or ("", 0))[0]
        account = self.guard.identify(headers, client, scope.get("http_version", "1.1"))
        scope.setdefault("state", {})["account"] = account
        path = scope.get("path", "/")
        if path.rstrip("/") in ("/login", "/logout") and scope["type"] == "http":
            page = await self.login_page(scope, receive, headers, path)
            return await self.respond(page, scope, receive, send)
        if account is None and not path.startswith(PUBLIC):
            return await self.respond(self.unidentified(scope, headers), scope, receive, send)
        return await self.app(scope, receive, self.with_headers(send))

    def refusal(self, scope, headers: Headers) -> Response | None:
        path = scope.get("path", "/")
        if fetches_elsewhere(path):
            return PlainTextResponse("This server fetches nothing from other hosts.", 404)
        host = host_name(headers.get("host", ""))
        if host not in self.guard.hosts:
            return PlainTextResponse(
                f"This server does not answer for the host {host[:100]!r}. If that is its real "
                "name, add it to allowed_hosts.",
                status_code=421,
            )
        origin = headers.get("origin")
        foreign = origin is not None and not same_origin(origin, headers.get("host", ""))
        if foreign or cross_site_write(headers, scope.get("method", "GET"), path):
            return PlainTextResponse("Requests from other sites are refused.", status_code=403)
        return None

    def unidentified(self, scope, headers: Headers) -> Response:
        wants_page = scope["method"] == "GET" and "text/html" in headers.get("accept", "")
        if wants_page:
            return RedirectResponse("/login", status_code=303)
        if scope.get("path", "").startswith("/v1/"):  # OpenAI clients read their error shape
            from assistant.web.openai_api import openai_error

            return openai_error(
                401,
                "Send the account's API token as `Authorization: Bearer` "
                "(autodidact user token NAME).",
                code="invalid_api_key",
            )
        return Response(
            json.dumps({"detail": "Log in first: send an API token (autodidact user token)."}),
            status_code=401,
            media_type="application/json",
        )

    async def login_page(self, scope, receive, headers: Headers, path: str) -> Response:
        if path.rstrip("/") == "/logout":
            cookie = SimpleCookie()
            try:
                cookie.load(headers.get("cookie", ""))
            except Exception:
                cookie = SimpleCookie()
            if COOKIE in cookie:
                self.guard.accounts.end_session(cookie[COOKIE].value)
            response = RedirectResponse("/login", status_code=303)
            response.delete_cookie(COOKIE, path="/")
            return response
        if scope["method"] != "POST":
            if self.guard.open_to_local():
                return RedirectResponse("/", status_code=303)
            return HTMLResponse(login_html())
        form = await read_form(receive)
        name, password = form.get("username", ""), form.get("password", "")
        client = (scope.get("client") or ("?", 0))[0]
        # Argon2 takes tens of milliseconds: off the event loop, so logins stall no stream.
        result = await anyio.to_thread.run_sync(
            self.guard.login, name[:200], password[:1024], client, limiter=LOGINS
        )
        if isinstance(result, float):
            return HTMLResponse(
                login_html(f"Too many failed logins. Try again in {result:.0f} s."), 429
            )
        if result is None:
            return HTMLResponse(login_html("Wrong user name or password."), 401)
        secret = self.guard.accounts.create_session(
            result, headers.get("user-agent", "browser"), self.guard.settings.session_hours
        )
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            COOKIE,
            secret,
            max_age=int(self.guard.settings.session_hours * 3600),
            httponly=True,
            samesite="strict",
            secure=scope.get("scheme") == "https",
            path="/",
        )
        return response

    def with_headers(self, send):
        async def sending(message):
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                for key, value in HEADERS.items():
                    out[key] = value
                if "access-control-allow-origin" in out:
                    del out["access-control-allow-origin"]
            await send(message)

        return sending

    async def respond(self, response: Response, scope, receive, send) -> None:
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        await response(scope, receive, self.with_headers(send))


async def read_form(receive, limit: int = 16_384) -> dict[str, str]:
    """The url-encoded form of a request body (at most `limit` bytes read)."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > limit or not message.get("more_body"):
            break
    try:
        fields = parse_qs(body[:limit].decode("utf-8", "replace"), max_num_fields=10)
    except ValueError:  # more fields than a login form has
        return {}
    return {key: values[0] for key, values in fields.items()}


def login_html(error: str = "") -> str:
    """The login page: a plain form, no script, nothing fetched from elsewhere."""
    note = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Log in · Autodidact</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{{font-family:system-ui,sans-serif;background:#f6f6f7;display:flex;justify-content:center;
margin-top:12vh}} form{{background:#fff;padding:2em;border-radius:8px;min-width:18em;
box-shadow:0 1px 4px #0002}} label{{display:block;margin:.8em 0 .2em}} input{{width:100%;
padding:.5em;box-sizing:border-box}} button{{margin-top:1.2em;width:100%;padding:.6em}}
.error{{color:#b00020}}
</style></head><body>
<form method="post" action="/login"><h1>Autodidact</h1>{note}
<label for="username">User name</label>
<input id="username" name="username" autocomplete="username" required autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Log in</button>
<p><small>No account? Ask the person who runs this server
(<code>autodidact user add NAME</code>).</small></p>
</form></body></html>"""


__all__ = ["COOKIE", "LOCAL", "TOKEN_PREFIX", "Guard", "GateMiddleware", "login_html"]
