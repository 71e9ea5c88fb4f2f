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
def settings(home, database_url, chroma_url) -> Settings:
    home.mkdir(parents=True, exist_ok=True)
    # Background grading is off unless a test is about it: it would compete for the model.
    # database_url and chroma_url are None (SQLite and Chroma under home) unless a module runs
    # on the real servers (the block at the end of this file).
    return Settings(
        home=home,
        max_tokens=64,
        temperature=0.0,
        seed=7,
        grading=False,
        database_url=database_url,
        chroma_url=chroma_url,
        # Tests send messages as fast as the machine answers; the limit itself is tested in
        # tests/test_security.py with its default.
        rate_limit_messages=0,
        # The training memory bound counts the whole process, and a test run's process holds
        # what earlier tests loaded; tests/test_train_anchor.py tests the bound itself.
        refresh_max_memory_mb=1 << 20,
    )


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
                        "taught_loss": 1.0,
                        "win_rate": 0.5,
                        "pairwise": {
                            "prompts": 64,
                            "wins": 0,
                            "losses": 0,
                            "ties": 64,
                            "p_worse": 1.0,
                        },
                        "answer_distinct_2": 0.6,
                    },
                    "current": {"heldout_loss": 2.1, "taught_loss": 1.0, "answer_distinct_2": 0.6},
                    "base": {"answer_distinct_2": 0.7},
                },
            },
        )
    registry.activate("adapter-b")
    return registry


# --- Real servers (issue 13): PostgreSQL and a Chroma server, for the modules that ask -------
# A module runs its tests on both databases by overriding `backend` with
#     @pytest.fixture(params=BACKENDS)
#     def backend(request): return request.param
# or on the STORES pairs, deriving `backend` and `vectors` from one `stores` parameter (see
# tests/test_pool.py). Everything built on `settings` (store, curator, create_services, a CLI
# subprocess through the environment) then uses that database and that index. Each server
# starts once per session, and only when a test needs it; every test gets a database and
# collections of its own.

BACKENDS = ("sqlite", "postgresql")
# Each server beside the default of the other: the two are independent layers, so the fourth
# pair (both servers) would mostly repeat these; tests/test_pool.py runs it once, end to end.
STORES = (("sqlite", "disk"), ("postgresql", "disk"), ("sqlite", "server"))


@pytest.fixture
def backend() -> str:
    """Which database `settings` points at: SQLite in the test's home unless a module overrides."""
    return "sqlite"


@pytest.fixture
def vectors() -> str:
    """Where the Chroma collections live: on disk in the test's home unless a module overrides."""
    return "disk"


@pytest.fixture(scope="session")
def postgres_server():
    """Debian's PostgreSQL on loopback in a temporary data directory (tests/postgres.py);
    skipped, naming the package, where it is not installed."""
    from tests.postgres import PostgresServer, Unavailable

    try:
        server = PostgresServer(free_port())
    except Unavailable as missing:
        pytest.skip(str(missing))
    try:
        yield server.start()  # installed but failing to start is an error, not a skip
    finally:
        server.stop()


@pytest.fixture
def database_url(request, backend, home, monkeypatch) -> str | None:
    """None for SQLite (the settings' default file), else a new empty PostgreSQL database,
    also in the environment for the CLI subprocesses a test starts; dropped afterwards."""
    if backend == "sqlite":
        yield None
        return
    server = request.getfixturevalue("postgres_server")
    url = server.create_database()
    monkeypatch.setenv("AUTODIDACT_DATABASE_URL", url)
    yield url
    server.drop_database(url)


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory):
    """A real Chroma server (the `chroma run` that ships with chromadb) on a free port."""
    import shutil
    import subprocess
    import sys
    import time

    from store.vectors import client

    exe = Path(sys.executable).with_name("chroma")
    exe = exe if exe.exists() else Path(shutil.which("chroma") or "chroma")
    port = free_port()
    path = tmp_path_factory.mktemp("chroma-server")
    proc = subprocess.Popen(
        [str(exe), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            client(url=url).heartbeat()
            break
        except Exception:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise AssertionError("the Chroma server did not start") from None
            time.sleep(0.3)
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def chroma_url(request, vectors, home, monkeypatch) -> str | None:
    """None for Chroma on disk, else the session's server, emptied of every collection first
    (and in the environment for CLI subprocesses, once `home` has cleared it)."""
    if vectors == "disk":
        return None
    url = request.getfixturevalue("chroma_server")
    from store.vectors import client

    server = client(url=url)
    for collection in server.list_collections():
        server.delete_collection(collection.name)
    monkeypatch.setenv("AUTODIDACT_CHROMA_URL", url)
    return url


PASSWORD = "correct horse battery"
ROLES = {"ana": "user", "bob": "user", "rita": "reviewer", "adam": "admin"}


@pytest.fixture
def shared(settings, engine, embedder):
    """The app with four accounts, each with an API token, served on loopback."""
    from assistant.web.app import create_app, launch
    from store.accounts import AccountStore

    settings.port = free_port()
    settings.max_tokens = 8
    app = create_app(settings, model=engine, embedder=embedder)
    accounts = AccountStore(app.store.engine)
    tokens = {}
    for name, role in ROLES.items():
        accounts.add(name, PASSWORD, role)
        tokens[name] = {"Authorization": f"Bearer {accounts.create_token(name)}"}
    launch(app, block=False)
    app.tokens = tokens
    yield app
    app.close()
