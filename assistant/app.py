"""Wiring: settings -> database, model, chat service, UI. Owns start-up and nothing else.

`create_app` is what tests use to get the same app `autodidact serve` runs; `serve` adds printing
the settings, friendly start-up errors and launching the web server.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import gradio as gr

from assistant.chat import ChatService
from assistant.model import ChatModel, ModelError, load_model
from assistant.settings import Settings
from assistant.ui import build_ui
from store.db import open_database
from store.repo import Store


@dataclass
class App:
    settings: Settings
    store: Store
    model: ChatModel
    chat: ChatService
    demo: gr.Blocks


def create_app(settings: Settings, model: ChatModel | None = None) -> App:
    settings.home_dir.mkdir(parents=True, exist_ok=True)
    store = Store(open_database(settings.effective_database_url))
    store.recover_interrupted()
    model = model or load_model(settings)
    chat = ChatService(store, model, settings)
    return App(settings, store, model, chat, build_ui(chat))


def launch(app: App, block: bool = True):
    app.demo.queue(default_concurrency_limit=1)
    return app.demo.launch(
        server_name=app.settings.host,
        server_port=app.settings.port,
        prevent_thread_lock=not block,
        show_error=True,
        quiet=not block,
        footer_links=["api"],
    )


def serve(settings: Settings, flags: set[str] = frozenset()) -> int:
    print("Autodidact settings:\n" + settings.describe(flags), flush=True)
    try:
        app = create_app(settings)
    except ModelError as exc:
        print(f"autodidact: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"autodidact: cannot use {settings.home_dir}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"Model: {app.model.model_id} ({app.model.context_window} tokens of context)", flush=True)
    launch(app)
    return 0
