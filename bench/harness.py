"""What the benchmarks share, so that each benchmark file holds only its measurement.

  - where things are: the repository (`ROOT`), the data every benchmark reads (`DATA`, in the
    repository under tests/data with their licences, so any clone runs them) and the results
    (`RESULTS`);
  - the offline environment: importing this module sets it, so nothing a benchmark runs may
    reach a hub or phone home;
  - the commit and command a figure names (`commit`, `command_line`), result files
    (`write_result`) and tables (`table`), progress bars (`progress`);
  - data and homes: `read_jsonl`, `new_home`, a home with a seeded training pool (`seed_pool`)
    or knowledge base (`seed_documents`);
  - the app: `start_app`, in this process or as a child process, served on a free port or not,
    and `settle` (wait for the grading backlog).

The benchmarks run as modules from the repository root, `.venv/bin/python -m bench.<name>`
(`make bench` runs bench.chat_throughput), so `bench` and the code they measure come from the
same checkout with no path edits.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
RESULTS = ROOT / "bench" / "results"
OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "ANONYMIZED_TELEMETRY": "False",
}


def offline() -> None:
    """Nothing a benchmark runs may reach a hub or phone home (set on import, before any
    benchmark imports a library that reads it)."""
    for key, value in OFFLINE.items():
        os.environ.setdefault(key, value)


offline()


def commit() -> str:
    """The commit the figures are measured at (read when the run starts), dirty if so."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


def command_line() -> str:
    """The command that ran, as it is typed: `.venv/bin/python -m bench.<name> [flags]`."""
    import __main__

    spec = getattr(__main__, "__spec__", None)
    script = ["-m", spec.name] if spec is not None else sys.argv[:1]
    return shlex.join([".venv/bin/python", *script, *sys.argv[1:]])


def write_result(result: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    result.setdefault("when", datetime.now().isoformat(timespec="seconds"))
    out.write_text(json.dumps(result, indent=1, default=str))
    print(f"written: {out}")


def table(title: str | None, columns: list[str], rows: list[list], width: int = 140) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for column in columns:
        t.add_column(column)
    for row in rows:
        t.add_row(*("-" if c is None else str(c) for c in row))
    Console(width=width).print(t)


def progress():
    """A progress display with a bar, done/total and the time elapsed per task."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def new_home(prefix: str = "autodidact-bench-") -> Path:
    """A new, empty app home in the temporary folder."""
    return Path(tempfile.mkdtemp(prefix=prefix))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed_pool(home: Path, n: int, taught: list[tuple[str, str]] = ()) -> dict:
    """A home whose training pool holds `n` curated exchanges (bench/synthetic.py's data), and
    one corrected exchange per `taught` (question, answer)."""
    from assistant.settings import Settings
    from assistant.wiring import build_curator
    from bench.synthetic import synthesize
    from store.db import open_database

    settings = Settings(home=home)
    engine = open_database(settings.effective_database_url)
    synthesize(engine, n, taught=taught)
    curator = build_curator(settings, engine)
    curator.rebuild()
    counts = curator.pool.counts()
    engine.dispose()
    return {
        "exchanges": n,
        "train": sum(v for (status, _), v in counts.items() if status == "train"),
        "indexed": curator.index.count(),
    }


def seed_documents(home: Path, n: int) -> dict:
    """A knowledge base of `n` passages in the home (bench/documents.py's corpus), for the user
    the server answers as."""
    from tqdm import tqdm

    from assistant.settings import Settings
    from assistant.wiring import build_library
    from bench.documents import fill
    from store.conversations import ConversationStore
    from store.db import open_database

    settings = Settings(home=home)
    engine = open_database(settings.effective_database_url)
    library = build_library(settings, engine)
    user_id = ConversationStore(engine).user(settings.user).id
    with tqdm(total=n, desc="knowledge base", unit="passage") as bar:
        filled = fill(library, user_id, n, progress=bar.update)
    engine.dispose()
    return filled


@dataclass
class ChildApp:
    """The app in a child process: where it answers, and the process."""

    url: str
    process: subprocess.Popen


@contextmanager
def start_app(
    home: Path,
    settings: dict | None = None,
    *,
    child: bool = False,
    serve: bool = True,
    model=None,
) -> Iterator:
    """The app over `home`, `settings` (Settings fields) over the defaults, closed on exit.

    In this process (the default): `create_app` and, with `serve`, `launch` on a free loopback
    port, as `autodidact serve` runs it; yields the app (`.url`, `.chat`, `.grading`, ...).
    `model` replaces the model it would load. With `child`: `app.py` in a child process, the
    settings passed as AUTODIDACT_* variables, so the app has its own interpreter; yields a
    `ChildApp` once it answers (at most 2 minutes)."""
    if child:
        with _child_app(home, settings or {}) as app:
            yield app
        return
    from assistant.settings import Settings
    from assistant.web.app import create_app, launch

    port = {"port": free_port()} if serve else {}
    app = create_app(Settings(home=home, **port, **(settings or {})), model=model)
    try:
        if serve:
            launch(app, block=False, quiet=True)
        yield app
    finally:
        # gradio_client's heartbeat streams outlive `Client.close()`; uvicorn cancels them at
        # shutdown and logs a traceback for each, which says nothing about the run.
        import logging

        logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
        app.close()


@contextmanager
def _child_app(home: Path, settings: dict) -> Iterator[ChildApp]:
    port = free_port()
    env = {**os.environ, "AUTODIDACT_HOME": str(home)}
    for name, value in settings.items():
        env[f"AUTODIDACT_{name.upper()}"] = (
            str(value).lower() if isinstance(value, bool) else str(value)
        )
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            process.kill()
            raise RuntimeError("the app did not start within 2 minutes")
        yield ChildApp(url, process)
    finally:
        process.terminate()
        process.wait(timeout=60)


def settle(app, seconds: float) -> float:
    """Wait until no grading job is pending or running, at most `seconds`; the time waited."""
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        counts = app.grading.counts()
        if not counts.get("pending") and not counts.get("running"):
            break
        time.sleep(1.0)
    return time.perf_counter() - start
