"""The base model's seeded texts for the refresh's rehearsal and gate, kept between refreshes.

Owns one thing: remembering what the model without an adapter wrote for a prompt at a fixed
seed or greedily (a taught answer's neighbour question, the answer to it, a general rehearsal
answer when no adapter is served, the gate's answers of the base model), so the next refresh
does not pay for it again. Such a text is a function of the model file, the llama.cpp build,
threads and fixed sampler settings (the engine's `fingerprint`), the prompt's tokens and the
sampling: the same inputs give the same text (up to what llama.cpp's reused prompt prefix can
move in a near tie, which varies from run to run without the memo too), so keeping it changes
no result, only the time. It does not keep grades or verdicts (a grade reads the user's
documents and corrections, which change), nor anything an adapter wrote (an adapter's identity
is not in the fingerprint), nor draws at a random seed. The lessons themselves are stored in
the database (store/lessons.py), not here.

Kept as one JSON file in the home's cache folder, the least recently used dropped past a limit,
written whole through a temporary file and a rename: a killed refresh loses only what it had
not saved, an unreadable file is started afresh, and deleting it costs the next refresh the
writing. One process writes it at a time (the refresh holds its lock).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from assistant.llm.base import Delta, Sampling

VERSION = 2  # bump when what a text depends on changes in a way the key does not show
LIMIT = 4096  # texts kept; the least recently used go first
FILLED = ("temperature", "top_p", "repeat_penalty", "max_tokens")  # engine defaults if unset


def _greedy(sampling: dict) -> bool:
    return Sampling.value(sampling, "temperature") <= 0


def _entry(value) -> bool:
    """A kept entry as `put` writes it: [text, finish reason, token count or None]."""
    return (
        isinstance(value, list)
        and len(value) == 3
        and isinstance(value[0], str)
        and isinstance(value[1], str)
        and (value[2] is None or isinstance(value[2], int))
    )


class Memo:
    """Seeded base-model texts by what they depend on; `over(model)` is the model with it."""

    def __init__(self, path: Path | None, limit: int = LIMIT):
        self.path, self.limit = path, limit
        self.hits = self.kept = 0  # texts read back, texts written and kept
        self._texts: dict[str, str] | None = None
        self._dirty = False
        self._lock = threading.Lock()

    def key(self, model, messages: list[dict], sampling: dict, json_schema=None) -> str | None:
        """What the text depends on, hashed: the engine's fingerprint, the prompt (its token ids
        where the engine gives them: template and tokenizer), the sampling as the engine fills
        it in, the schema. None when it may not be kept: an adapter set, an engine without a
        fingerprint, or a sampling that draws at random (no seed, or seed -1, above zero
        temperature).

        >>> class Base: adapter_id, fingerprint = None, "gguf"
        >>> len(Memo(None).key(Base(), [{"role": "user", "content": "hi"}], {"seed": 1}))
        64
        >>> Memo(None).key(Base(), [], {"temperature": 0.7}) is None
        True
        >>> Memo(None).key(Base(), [], {"temperature": 0.7, "seed": -1}) is None
        True
        >>> Memo(None).key(Base(), [], {"temperature": 0.0}) is None
        False
        >>> class Tuned(Base): adapter_id = "refresh-3"
        >>> Memo(None).key(Tuned(), [], {"seed": 1}) is None
        True
        """
        if getattr(model, "adapter_id", "unknown") is not None:
            return None
        fingerprint = getattr(model, "fingerprint", None)
        seed = sampling.get("seed")
        seeded = isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0
        if not isinstance(fingerprint, str) or not (seeded or _greedy(sampling)):
            return None
        filled = {k: Sampling.value(sampling, k) for k in FILLED} | sampling
        try:
            tokens = model.prompt_tokens(messages) if hasattr(model, "prompt_tokens") else None
        except (OSError, ValueError, RuntimeError):
            return None
        parts = [VERSION, fingerprint, messages, tokens, filled, json_schema]
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()

    def _load(self) -> dict[str, list]:
        if self._texts is None:
            try:
                kept = json.loads(self.path.read_text(encoding="utf-8")) if self.path else {}
            except (OSError, ValueError):
                kept = {}
            ok = isinstance(kept, dict)
            self._texts = {k: v for k, v in kept.items() if _entry(v)} if ok else {}
        return self._texts

    def get(self, key: str) -> Delta | None:
        """The kept text as the one Delta that ends a stream (its finish reason and token
        count as they were); a hit moves it to the end, so what every refresh reads stays."""
        with self._lock:
            texts = self._load()
            if (entry := texts.pop(key, None)) is None:
                return None
            texts[key] = entry
            self._dirty = True
            text, finish, tokens = entry
            return Delta(text=text, finish_reason=finish, completion_tokens=tokens)

    def put(self, key: str, text: str, finish: str, tokens: int | None = None) -> None:
        with self._lock:
            texts = self._load()
            texts.pop(key, None)
            texts[key] = [text, finish, tokens]
            while len(texts) > self.limit:  # the least recently used go first
                texts.pop(next(iter(texts)))
            self._dirty = True

    def save(self) -> None:
        """Write what is new; a full disk or a read-only home costs the next refresh the
        writing, not this one."""
        with self._lock:
            if not self._dirty or self.path is None or self._texts is None:
                return
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd, part = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(self._texts, f)
                os.replace(part, self.path)
                self._dirty = False
            except OSError:
                pass

    def over(self, model) -> MemoModel:
        return MemoModel(model, self)


class MemoModel:
    """`model`, but a seeded base-model text it wrote before comes from the memo. Anything
    else is the model's own (attributes, adapters, token counts)."""

    def __init__(self, model, memo: Memo):
        self._model, self._memo = model, memo

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    def stream(self, messages, sampling, cancel=None, json_schema=None) -> Iterator[Delta]:
        key = self._memo.key(self._model, messages, sampling, json_schema)
        if key is not None and (kept := self._memo.get(key)) is not None:
            self._memo.hits += 1
            yield kept
            return
        pieces, finish, tokens = [], None, None
        extra = {"json_schema": json_schema} if json_schema is not None else {}
        for delta in self._model.stream(messages, sampling, cancel, **extra):
            pieces.append(delta.text)
            finish = delta.finish_reason or finish
            tokens = delta.completion_tokens if delta.completion_tokens is not None else tokens
            yield delta
        stopped = finish in (None, "stopped") or (cancel is not None and cancel.is_set())
        if key is not None and not stopped:  # a cut-off text is not the text
            self._memo.kept += 1
            self._memo.put(key, "".join(pieces), finish, tokens)
