"""Shared fixtures: a temporary AUTODIDACT_HOME for every test, settings, a store, the fake model
and the real embedded model (loaded once per session: it is small enough for every test run)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from assistant.settings import Settings
from store.conversations import ConversationStore
from store.db import open_database
from tests.fakes import FakeModel

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch) -> Path:
    for key in list(os.environ):
        if key.startswith("AUTODIDACT_"):
            monkeypatch.delenv(key)
    home = tmp_path / "home"
    monkeypatch.setenv("AUTODIDACT_HOME", str(home))
    return home


@pytest.fixture
def settings(home) -> Settings:
    home.mkdir(parents=True, exist_ok=True)
    # Background grading is off unless a test is about it: it would compete for the model.
    return Settings(home=home, max_tokens=64, temperature=0.0, seed=7, grading=False)


@pytest.fixture
def store(settings) -> ConversationStore:
    return ConversationStore(open_database(settings.effective_database_url))


@pytest.fixture
def fake_model() -> FakeModel:
    return FakeModel()


@pytest.fixture(scope="session")
def embedded_path() -> Path:
    from assistant.llm.weights import embedded_model_path

    return embedded_model_path()


@pytest.fixture(scope="session")
def engine(embedded_path):
    from assistant.llm.llama import LlamaEngine

    return LlamaEngine(embedded_path, context_window=2048, threads=2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def running_app(settings, engine, embedder):
    """The real app (real model, SQLite and Chroma under a temporary home) on a free port."""
    from assistant.web.app import create_app, launch

    settings.port = free_port()
    app = create_app(settings, model=engine, embedder=embedder)
    launch(app, block=False)
    app.url = f"http://127.0.0.1:{settings.port}/"
    yield app
    app.close()


@pytest.fixture
def client(running_app):
    from gradio_client import Client

    return Client(running_app.url, verbose=False)


def wait_until_serving(url: str, proc, timeout: float = 120.0) -> int:
    """Poll `url` until it answers; fail early, with what it said, if `proc` exits first."""
    import time
    import urllib.request

    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as page:
                return page.status
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(f"the server exited with {proc.returncode}") from None
            if time.time() > deadline:
                raise AssertionError(f"{url} did not answer within {timeout:.0f} s") from None
            time.sleep(0.5)


@pytest.fixture(scope="session")
def embedder():
    """The real offline embedding model (int8 MiniLM on onnxruntime); loads in under a second."""
    from assistant.llm.embedder import Embedder

    return Embedder(threads=1)


@pytest.fixture
def curator(settings, store, embedder):
    """The real curator: pool rows in the test's SQLite file, a Chroma collection on disk."""
    from assistant.wiring import build_curator

    return build_curator(settings, store.engine, embedder)


@pytest.fixture
def promoted(store, settings, embedded_path):
    """Two promoted runs with adapter files on disk, the second one active."""
    from store.adapters import AdapterRegistry
    from store.runs import RunStore
    from tests.test_refresh_kill import zero_adapter

    registry = AdapterRegistry(settings.home_dir / "adapters")
    runs = RunStore(store.engine)
    for n, adapter in enumerate(("adapter-a", "adapter-b"), 1):
        zero_adapter(registry.file(adapter), embedded_path)
        run = runs.start(adapter_id=adapter, base_model=embedded_path.name)
        runs.finish(
            run.id,
            "promoted",
            metrics={
                "train": {
                    "steps": 10,
                    "tokens": 1500,
                    "tokens_per_second": 150.0,
                    "loss": 0.5 / n,
                    "peak_memory_mb": 1200,
                    "device": "cpu",
                },
                "verify": {"agreement": 0.99},
                "evaluate": {
                    "candidate": {
                        "heldout_loss": 2.0 / n,
                        "win_rate": 0.5,
                        "flag_rate": 0.1,
                        "answer_distinct_2": 0.6,
                    },
                    "current": {"heldout_loss": 2.1, "flag_rate": 0.2, "answer_distinct_2": 0.6},
                    "base": {"answer_distinct_2": 0.7},
                },
            },
        )
    registry.activate("adapter-b")
    return registry
