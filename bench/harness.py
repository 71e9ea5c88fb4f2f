"""What the benchmarks share: the offline environment, the commit and command a figure names,
result files and tables. New benchmarks take these from here (bench/memory_lookup.py,
bench/memory.py); the older scripts still carry their own copies, to be moved over.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "ANONYMIZED_TELEMETRY": "False",
}


def offline() -> None:
    """Nothing a benchmark runs may reach a hub or phone home."""
    for key, value in OFFLINE.items():
        os.environ.setdefault(key, value)


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
    return shlex.join([".venv/bin/python", *sys.argv])


def write_result(result: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    result.setdefault("when", datetime.now().isoformat(timespec="seconds"))
    out.write_text(json.dumps(result, indent=1, default=str))
    print(f"written: {out}")


def table(title: str, columns: list[str], rows: list[list]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for column in columns:
        t.add_column(column)
    for row in rows:
        t.add_row(*(str(c) for c in row))
    Console(width=140).print(t)
