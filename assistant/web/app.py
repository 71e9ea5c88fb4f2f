"""The web app over the wired services: `create_app` (what tests use), `launch` and `serve`.

Owns start-up of the page: the services come from assistant/wiring.py, the page from
assistant/web/page.py. `launch` serves it with uvicorn behind the gate (assistant/web/gate.py):
FastAPI on the outside with the gate as its outermost middleware, Gradio mounted inside, so no
request reaches Gradio without the host check and an identity. `serve` adds printing the
settings and closing everything when it stops. Start-up errors become one line in
assistant/cli/.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import uvicorn
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from assistant.access import Unguarded
from assistant.llm.base import ChatModel
from assistant.settings import Settings
from assistant.web.door import Door, DoorMiddleware
from assistant.web.gate import GateMiddleware, Guard
from assistant.web.openai_api import OpenAIApi
from assistant.web.page import build_page
from assistant.web.uploads import Sweeper, Uploads
from assistant.wiring import Services, create_services
from store.accounts import AccountStore

# System fonts: the default theme would fetch its fonts from Google, and an offline assistant
# must not phone out (the Content-Security-Policy would block it anyway).
THEME = gr.themes.Default(
    font=["ui-sans-serif", "system-ui", "sans-serif"],
    font_mono=["ui-monospace", "SFMono-Regular", "monospace"],
)


@dataclass
class App:
    services: Services
    demo: gr.Blocks

    guard: Guard
    uploads: Uploads
    url: str | None = None  # set once launched without blocking (tests, benchmarks)
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None
    sweeper: Sweeper | None = None
    door: Door | None = None  # set by server_app
    asgi: FastAPI | None = None

    # The services' parts, as callers reach them: app.chat, app.store, ...
    settings = property(lambda self: self.services.settings)
    store = property(lambda self: self.services.store)
    model = property(lambda self: self.services.model)
    chat = property(lambda self: self.services.chat)
    grading = property(lambda self: self.services.grading)
    worker = property(lambda self: self.services.worker)
    curator = property(lambda self: self.services.curator)
    library = property(lambda self: self.services.library)

    def close(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            self.thread.join(10)
        if self.sweeper is not None:
            self.sweeper.stopped.set()
        self.services.close()
        self.demo.close()


def create_app(settings: Settings, model: ChatModel | None = None, embedder=None) -> App:
    services = create_services(settings, model, embedder)
    # Uploads land in the private home, not a shared /tmp; each file is removed once the
    # knowledge library has read it, or after upload_ttl_s. Gradio reads this when the page
    # is built.
    # Its real path: uploads are named as Gradio writes them, and only exact paths are accepted.
    folder = Path(os.path.realpath(settings.home_dir / "uploads"))
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    uploads = Uploads(
        folder,
        ttl_s=settings.upload_ttl_s,
        per_account_files=settings.upload_files_per_account,
        per_account_mb=settings.upload_mb_per_account,
        total_mb=settings.upload_total_mb,
    )
    guard = Guard(AccountStore(services.store.engine), services.chat.user, settings)
    page = build_page(services.chat, services.grading, guard, uploads)
    return App(services, page, guard, uploads)


def refuse_unguarded(app: App) -> None:
    """Off loopback, nobody may be let in without an account: raise a one-line reason."""
    if not app.guard.loopback and not app.guard.accounts.has_accounts():
        raise Unguarded(
            f"refusing to serve on {app.settings.host} without accounts: anyone who can reach "
            "it would read and change everything. Add one first: autodidact user add NAME "
            "--role admin (or serve on 127.0.0.1)."
        )


def server_app(app: App) -> FastAPI:
    """The ASGI app: the gate outermost, no cross-origin reads, the page mounted under it."""
    api = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    # A CORSMiddleware of our own that allows no origin: Gradio then adds none of its own, so
    # no response ever tells a browser another site may read it.
    api.add_middleware(CORSMiddleware, allow_origins=[])
    # api_open=False: a queued event called straight on /run is refused (it would skip the queue)
    app.demo.queue(default_concurrency_limit=1, max_size=app.settings.queue_max, api_open=False)
    door = Door(
        app.demo,
        app.uploads,
        app.chat.limiter,
        app.settings.queue_per_account,
        app.settings.queue_events_per_account,
    )
    api.add_middleware(DoorMiddleware, door=door, username=app.guard.event_username)
    api.add_middleware(GateMiddleware, guard=app.guard)
    # The OpenAI-compatible API, before the page's mount so its routes are matched first.
    api.include_router(OpenAIApi(app.chat, door, app.guard.event_username).router())
    mounted = gr.mount_gradio_app(
        api,
        app.demo,
        path="",
        auth_dependency=app.guard.username,
        server_name=app.settings.host,
        server_port=app.settings.port,
        footer_links=["api"],
        show_error=True,
        max_file_size=f"{app.settings.knowledge_max_file_mb:g}mb",
        theme=THEME,
        # Nothing that serves beyond the page: no run history (it can reach a hub), no
        # monitoring page, no MCP server, no Node server.
        run_history=False,
        enable_monitoring=False,
        mcp_server=False,
        ssr_mode=False,
    )
    door.install_fair_queue()
    app.door, app.asgi = door, mounted
    return mounted


def launch(app: App, block: bool = True, quiet: bool | None = None) -> str:
    """Serve the app; with `block` False, return once it answers (tests, benchmarks)."""
    refuse_unguarded(app)
    config = uvicorn.Config(
        server_app(app),
        host=app.settings.host,
        port=app.settings.port,
        log_level="warning",
        timeout_graceful_shutdown=2,
        # The client address is the socket's, so no header can fake loopback; only the proxies
        # named in trusted_proxies may say who the client is and that it came over https.
        proxy_headers=bool(app.settings.trusted_proxies),
        forwarded_allow_ips=",".join(app.settings.trusted_proxies) or None,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True, name="web-server")
    thread.start()
    app.uploads.sweep()  # what an earlier run left
    app.sweeper = Sweeper(app.uploads, min(60.0, app.settings.upload_ttl_s / 4))
    app.sweeper.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the web server could not start on port {app.settings.port}")
        time.sleep(0.05)
    host = app.settings.host if ":" not in app.settings.host else f"[{app.settings.host}]"
    app.url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '[::]') else host}:{config.port}/"
    app.server, app.thread = server, thread
    if not (not block if quiet is None else quiet):
        print(f"Serving on {app.url}", flush=True)
    if block:
        thread.join()
    return app.url


def serve(settings: Settings, flags: set[str] = frozenset()) -> int:
    """Print the settings, start everything and serve until stopped. A missing model, an
    unusable home folder or a non-loopback host without accounts raises; the CLI turns that
    into one line (assistant/cli/__init__.py)."""
    print("Autodidact settings:\n" + settings.describe(flags), flush=True)
    app = create_app(settings)
    print(f"Model: {app.model.model_id} ({app.model.context_window} tokens of context)", flush=True)
    # `kill -USR1 PID` prints every thread's stack: for a server that will not stop.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        launch(app, block=False, quiet=False)
        mode = "no login (loopback, no accounts)" if app.guard.open_to_local() else "accounts"
        print(f"Access: {mode}. Ctrl-C stops.", flush=True)
        while app.thread.is_alive():
            app.thread.join(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        app.close()  # the grader gives the model up mid-decode, then the engine stops
    return 0
