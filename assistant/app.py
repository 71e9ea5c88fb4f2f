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
from feedback.grader import Grader, GraderConfig
from feedback.worker import GradingWorker
from store.db import open_database
from store.grading import GradingStore
from store.repo import Store


@dataclass
class App:
    settings: Settings
    store: Store
    model: ChatModel
    chat: ChatService
    grading: GradingStore
    worker: GradingWorker
    demo: gr.Blocks

    def close(self) -> None:
        self.worker.stop()
        self.demo.close()


def build_grader(
    settings: Settings, model: ChatModel, judge_model: ChatModel | None = None
) -> Grader:
    config = GraderConfig(
        weights=settings.grade_weights,
        threshold=settings.flag_threshold,
        consistency_samples=settings.consistency_samples,
        max_tokens=min(settings.max_tokens, 256),
        system_prompt=settings.system_prompt,
    )
    if judge_model is None and settings.judge_model:
        from assistant.engine import LlamaEngine
        from assistant.model import check_gguf

        judge_model = LlamaEngine(
            check_gguf(settings.judge_model),
            context_window=settings.context_window,
            threads=settings.threads,
        )
    return Grader(judge_model or model, model, config)


def create_app(settings: Settings, model: ChatModel | None = None) -> App:
    settings.home_dir.mkdir(parents=True, exist_ok=True)
    engine = open_database(settings.effective_database_url)
    store = Store(engine)
    store.recover_interrupted()
    model = model or load_model(settings)
    chat = ChatService(store, model, settings)
    grading = GradingStore(engine)
    worker = GradingWorker(
        build_grader(settings, model),
        grading,
        chat.idle,
        settings.grading_max_attempts,
        quiet_for=chat.quiet_for,
    )
    chat.on_generation_start.append(worker.preempt)
    chat.on_answer_stored.append(lambda _exchange_id: worker.wake())
    if settings.grading:
        worker.start()
    return App(settings, store, model, chat, grading, worker, build_ui(chat, grading))


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
