"""Wiring: settings -> database, model, chat service, UI. Owns start-up and nothing else.

`create_app` is what tests use to get the same app `autodidact serve` runs; `serve` adds printing
the settings, friendly start-up errors and launching the web server.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

import gradio as gr

from assistant.chat import ChatService
from assistant.model import ChatModel, ModelError, load_model
from assistant.settings import Settings
from assistant.ui import build_ui
from feedback.curation import PoolRules
from feedback.curator import Curator, CuratorConfig
from feedback.grader import Grader, GraderConfig
from feedback.worker import GradingWorker
from store.db import open_database
from store.grading import GradingStore
from store.pool import PoolStore
from store.repo import Store

log = logging.getLogger(__name__)


@dataclass
class App:
    settings: Settings
    store: Store
    model: ChatModel
    chat: ChatService
    grading: GradingStore
    worker: GradingWorker
    curator: Curator
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


def build_curator(settings: Settings, engine, embedder=None) -> Curator:
    """The training pool's curator: pool rows, the Chroma index and the offline embedder."""
    from store.embedder import Embedder
    from store.vectors import VectorIndex

    index = VectorIndex.open(settings.home_dir / "chroma", settings.chroma_url)
    config = CuratorConfig(
        rules=PoolRules(
            user_weight=settings.pool_user_weight,
            train_threshold=settings.pool_train_threshold,
            min_agreement=settings.pool_min_agreement,
        ),
        dedup_similarity=settings.pool_dedup_similarity,
        max_user_share=settings.pool_max_user_share,
        pii_region=settings.pii_region,
    )
    return Curator(PoolStore(engine), index, embedder or Embedder(threads=1), config)


class AdapterWatcher:
    """Serves the adapter `adapters/active.json` names, swapping it in between generations.

    Checked before each answer (one stat call); a refresh promoting an adapter, or a rollback,
    takes effect at the next answer without a restart. A file llama.cpp refuses leaves the
    current adapter serving, with the error logged.
    """

    def __init__(self, model: ChatModel, home):
        from store.adapters import AdapterRegistry

        self.model = model
        self.registry = AdapterRegistry(home / "adapters")
        self.stamp = None
        self.error: str | None = None

    def sync(self) -> None:
        if not hasattr(self.model, "set_adapter"):
            return  # an OpenAI-compatible server serves what it serves
        stamp = self.registry.stamp()
        if stamp == self.stamp:
            return
        self.stamp = stamp
        active = self.registry.active()
        want = active.adapter_id if active else None
        if want == self.model.adapter_id:
            return
        try:
            self.model.set_adapter(active.path if active else None, adapter_id=want)
            self.error = None
        except (ModelError, OSError) as exc:
            self.error = str(exc)
            log.error("keeping adapter %s: %s", self.model.adapter_id, exc)


def create_app(settings: Settings, model: ChatModel | None = None, embedder=None) -> App:
    settings.home_dir.mkdir(parents=True, exist_ok=True)
    engine = open_database(settings.effective_database_url)
    store = Store(engine)
    store.recover_interrupted()
    model = model or load_model(settings)
    curator = build_curator(settings, engine, embedder)
    chat = ChatService(store, model, settings, curator)
    watcher = AdapterWatcher(model, settings.home_dir)
    watcher.sync()
    chat.before_generation.append(watcher.sync)
    grading = GradingStore(engine)
    worker = GradingWorker(
        build_grader(settings, model),
        grading,
        chat.idle,
        settings.grading_max_attempts,
        on_graded=chat.curate,
        quiet_for=chat.quiet_for,
    )
    chat.on_generation_start.append(worker.preempt)
    chat.on_answer_stored.append(lambda _exchange_id: worker.wake())
    if settings.grading:
        worker.start()
    demo = build_ui(chat, grading)
    return App(settings, store, model, chat, grading, worker, curator, demo)


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
