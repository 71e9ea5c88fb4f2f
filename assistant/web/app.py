"""The web app over the wired services: `create_app` (what tests use), `launch` and `serve`.

Owns start-up of the page: the services come from assistant/wiring.py, the page from
assistant/web/page.py; `serve` adds printing the settings, launching the web server and
closing everything when it stops. Start-up errors become one line in assistant/cli/.
"""

from __future__ import annotations

import faulthandler
import signal
import threading
from dataclasses import dataclass

import gradio as gr

from assistant.llm.base import ChatModel
from assistant.settings import Settings
from assistant.web.page import build_page
from assistant.wiring import Services, create_services


@dataclass
class App:
    services: Services
    demo: gr.Blocks

    url: str | None = None  # set once launched without blocking (tests, benchmarks)

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
        self.services.close()
        self.demo.close()


def create_app(settings: Settings, model: ChatModel | None = None, embedder=None) -> App:
    services = create_services(settings, model, embedder)
    return App(services, build_page(services.chat, services.grading))


def launch(app: App, block: bool = True, quiet: bool | None = None):
    app.demo.queue(default_concurrency_limit=1)
    return app.demo.launch(
        server_name=app.settings.host,
        server_port=app.settings.port,
        prevent_thread_lock=not block,
        show_error=True,
        quiet=not block if quiet is None else quiet,
        footer_links=["api"],
    )


def serve(settings: Settings, flags: set[str] = frozenset()) -> int:
    """Print the settings, start everything and serve until stopped. A missing model or an
    unusable home folder raises; the CLI turns that into one line (assistant/cli/__init__.py)."""
    print("Autodidact settings:\n" + settings.describe(flags), flush=True)
    app = create_app(settings)
    print(f"Model: {app.model.model_id} ({app.model.context_window} tokens of context)", flush=True)
    # A Ctrl-C while Gradio is still starting (it checks its own server with a request) would
    # land inside that request; it is held until the server is up, then acted on.
    # `kill -USR1 PID` prints every thread's stack: for a server that will not stop.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    interrupted = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.set())
    try:
        launch(app, block=False, quiet=False)
        signal.signal(signal.SIGINT, previous)
        if not interrupted.is_set():
            app.demo.block_thread()  # returns on Ctrl-C, having closed the server
    finally:
        signal.signal(signal.SIGINT, previous)
        app.close()  # the grader gives the model up mid-decode, then the engine stops
    return 0
