"""Who may reach the server and what each role may do: the pure rules, no web framework.

Owns the access settings (`AccessConfig`), which hosts and origins the server answers, the
Content-Security-Policy, and the table of what each role may do. Enforcement is the web layer's
(assistant/web/gate.py checks every request; each event checks its role and, through the chat
service, that the data is the caller's). Accounts themselves are store/accounts.py's.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from assistant.options import option

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")

# What each role may do beyond using the chat with its own data. A role may do what the
# roles before it in store.accounts.ROLES may.
NEEDS = {
    "chat": "user",  # own conversations, ratings, corrections, documents
    "dashboard": "user",  # the figures (counts and rates; no one's text)
    "models": "user",  # which adapter serves, and the refresh runs' figures
    "review": "reviewer",  # the review queue: everyone's flagged answers, and decisions
    "switch": "reviewer",  # serve another adapter, roll back
    "refresh": "reviewer",  # start a refresh from the Models tab, or cancel it
}

# Images only from the app itself (no remote fetch, so an answer cannot make the browser phone
# out); scripts and styles inline because Gradio's page needs them; no framing by other sites.
CSP = "; ".join(
    (
        "default-src 'self'",
        "img-src 'self' data: blob:",
        "media-src 'self' data: blob:",
        "font-src 'self' data:",
        "style-src 'self' 'unsafe-inline'",
        "script-src 'self' 'unsafe-inline' 'unsafe-eval'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'self'",
        "form-action 'self'",
    )
)


@dataclass
class AccessConfig:
    """Sharing the server; `Settings`: the same names."""

    allowed_hosts: list[str] = dataclasses.field(
        default_factory=list,
        metadata={
            "help": "host names the server answers besides loopback (the names people type in "
            "the browser); a request for any other Host is refused"
        },
    )
    session_hours: float = option(168.0, "how long a browser login lasts")
    rate_limit_messages: int = option(
        20, "most messages one account may send per rate_limit_window_s (0: no limit)"
    )
    rate_limit_window_s: float = option(60.0, "the window of the message rate limit, seconds")
    login_attempts: int = option(
        10, "failed logins allowed per name and per address within 5 minutes"
    )
    queue_max: int = option(64, "most requests waiting in the queue; more are refused")
    queue_per_account: int = option(
        2, "most messages one account may have waiting for or getting an answer; more are refused"
    )
    queue_events_per_account: int = option(
        16, "most requests of any kind one account may have in the queue; more are refused"
    )
    upload_ttl_s: float = option(
        900.0, "uploaded files not added within this many seconds are deleted"
    )
    upload_files_per_account: int = option(
        20, "most uploaded files one account may have waiting to be added"
    )
    upload_mb_per_account: float = option(
        200.0, "most megabytes one account may have uploaded and waiting to be added"
    )
    upload_total_mb: float = option(
        2048.0, "most megabytes of uploads waiting on the server, all accounts together"
    )
    trusted_proxies: list[str] = dataclasses.field(
        default_factory=list,
        metadata={
            "help": "addresses of the TLS proxy in front of the server (e.g. 127.0.0.1); "
            "their X-Forwarded-For and X-Forwarded-Proto are believed, so the real client "
            "address is limited and the login cookie is marked Secure"
        },
    )


class Unguarded(RuntimeError):
    """Serving beyond this machine with nobody able to log in: refused at start-up."""


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server on this machine.

    >>> [is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "192.168.1.4")]
    [True, True, True, False, False]
    """
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name in a Host header or an origin URL, without port or brackets, lowercased.

    >>> [host_name(h) for h in ("LocalHost:7860", "[::1]:80", "http://evil.example:8080", "")]
    ['localhost', '::1', 'evil.example', '']
    """
    header = (header or "").strip()
    if "://" in header:
        return (urlsplit(header).hostname or "").lower()
    if header.startswith("["):
        return header[1 : header.find("]")].lower() if "]" in header else ""
    return header.rsplit(":", 1)[0].lower() if header.count(":") == 1 else header.lower()


# Gradio serves `/gradio_api/file=<URL>` by fetching the URL, and an HTML page fetched that way
# would run on our origin; `proxy=` fetches too. Nothing in the app needs either.
_FETCHING_ROUTES = re.compile(r"^/(?:gradio_api/)?(?:proxy=|file=\s*[a-z][a-z0-9+.-]*:)", re.I)
FORWARDING = ("forwarded", "x-forwarded-for", "x-forwarded-host", "x-real-ip", "via")


def fetches_elsewhere(path: str) -> bool:
    """Whether a request path would make the server fetch from another host.

    >>> [fetches_elsewhere(p) for p in ("/gradio_api/file=https://e.vil/a.png",
    ...     "/gradio_api/file=HTTP://x", "/file= http://x", "/gradio_api/proxy=x",
    ...     "/gradio_api/file=/tmp/gradio/ab/c.txt", "/gradio_api/info")]
    [True, True, True, True, False, False]
    """
    return bool(_FETCHING_ROUTES.match(path))


def same_origin(origin: str, host: str) -> bool:
    """Whether a browser's Origin is this server as addressed by the Host header: same name,
    and the same port where the Host names one.

    >>> same_origin("http://localhost:7860", "localhost:7860")
    True
    >>> same_origin("http://localhost:3000", "localhost:7860"), same_origin("null", "localhost")
    (False, False)
    >>> same_origin("https://chat.example.org", "chat.example.org")
    True
    """
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    if parts.hostname.lower() != host_name(host):
        return False
    port = host.rsplit(":", 1)[1] if ":" in host and not host.endswith("]") else None
    if port is None:
        return True
    try:
        theirs = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False
    return str(theirs) == port


def cross_site_write(headers, method: str, path: str) -> bool:
    """A request another site's page made (the browser says so in Sec-Fetch-Site), other than
    following a link to the page itself or the login page.

    >>> cross_site_write({"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate"}, "GET", "/")
    False
    >>> cross_site_write({"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate"}, "GET",
    ...     "/gradio_api/file=x")
    True
    >>> cross_site_write({"sec-fetch-site": "same-origin"}, "POST", "/gradio_api/queue/join")
    False
    """
    site = headers.get("sec-fetch-site", "")
    if site not in ("cross-site", "same-site"):
        return False
    link = method == "GET" and headers.get("sec-fetch-mode") == "navigate"
    return not (link and path in ("/", "/login"))


def allowed_hosts(bind: str, extra: list[str]) -> frozenset[str]:
    """The Host names the server answers: loopback, the address it binds (unless a wildcard),
    and the configured names.

    >>> sorted(allowed_hosts("0.0.0.0", ["chat.example.org"]))
    ['127.0.0.1', '::1', 'chat.example.org', 'localhost']
    """
    names = {*LOOPBACK_NAMES, *(h.lower() for h in extra)}
    if bind not in ("0.0.0.0", "::", ""):
        names.add(bind.lower())
    return frozenset(names)
