"""Parsing an untrusted document in a child process, with a memory and a time limit.

Owns running feedback/knowledge/parse.py's `parse_bytes` where a bad file can cost a refusal,
never the server: a fresh Python process whose address space is capped (RLIMIT_AS) and whose
run is timed out, so a decompression bomb, a parser that recurses or loops, or a crash inside a
C extension ends that process alone, and all its memory goes back to the system with it. The
parent only reads JSON back. What a file may contain, and the messages a user sees, stay
parse.py's.

Run as `python -m feedback.knowledge.sandbox MAX_BYTES MEMORY_MB`: the first line of standard
input is the file's name as JSON, the rest its bytes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from feedback.knowledge.parse import (
    MAX_TEXT_FACTOR,
    MB,
    DocumentError,
    Parsed,
    display_name,
    parse_bytes,
)

ROOT = Path(__file__).resolve().parents[2]


def parse_isolated(
    name: str, data: bytes, max_bytes: int, memory_mb: int = 1024, timeout_s: float = 60.0
) -> Parsed:
    """`parse_bytes` in a child process: the same result or DocumentError, and one more
    refusal: the file needed more than `memory_mb` or `timeout_s` to read."""
    shown = display_name(name)
    command = [sys.executable, "-m", __name__, str(max_bytes), str(memory_mb), str(timeout_s)]
    # Nothing of the server's environment (database URLs, API keys): what Python needs only.
    env = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "TMPDIR") if k in os.environ}
    env |= {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    try:
        done = subprocess.run(
            command,
            input=json.dumps(name).encode() + b"\n" + data,
            capture_output=True,
            timeout=timeout_s,
            env=env,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired:
        raise DocumentError(
            f"{shown}: took longer than {timeout_s:g} s to read, so it was stopped; "
            "split it or save it again in a simpler form"
        ) from None
    try:
        answer = json.loads(done.stdout)
    except ValueError:
        answer = None
    if len(done.stdout) > MAX_TEXT_FACTOR * max_bytes + 2 * MB:
        answer = None  # more than the child may send: it is not our child speaking
    if done.returncode != 0 or not isinstance(answer, dict):
        raise DocumentError(
            f"{shown}: could not be read within {memory_mb} MB of memory (it expands far beyond "
            "its size, or is damaged), so it was refused; split it or save it again"
        )
    if "error" in answer:
        raise DocumentError(answer["error"])
    pages = tuple((page, text) for page, text in answer["pages"])
    return Parsed(**{**answer, "pages": pages})


def _limit(memory_mb: int, timeout_s: float) -> None:
    """Address space, CPU seconds, and no file writes, for this process and what it starts."""
    import resource

    cap = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    cpu = int(timeout_s) + 5
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def main(argv: list[str]) -> int:
    max_bytes, memory_mb, timeout_s = int(argv[0]), int(argv[1]), float(argv[2])
    _limit(memory_mb, timeout_s)
    name = json.loads(sys.stdin.buffer.readline())
    data = sys.stdin.buffer.read(max_bytes + 1)
    try:
        parsed = parse_bytes(name, data, max_bytes)
    except DocumentError as exc:
        answer = {"error": str(exc)}
    except MemoryError:
        return 3
    else:
        answer = {**parsed.__dict__, "pages": [list(p) for p in parsed.pages]}
    sys.stdout.write(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
