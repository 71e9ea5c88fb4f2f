"""The base model's seeded texts for the refresh's rehearsal, kept between refreshes.

Owns one thing: remembering what the model without an adapter wrote for a prompt at a fixed
seed (a taught answer's neighbour question, the answer to it, a general rehearsal answer when no
adapter is served), so the next refresh does not pay for it again. Such a text is a function of
the model file, the llama.cpp build and threads (the engine's `fingerprint`), the prompt and the
sampling: the same inputs give the same text, so keeping it changes no result, only the time. It
does not keep grades (a grade reads the user's documents and corrections, which change), nor
anything an adapter wrote (an adapter's identity is not in the fingerprint), nor unseeded
samples. The lessons themselves are stored in the database (store/lessons.py), not here.

Kept as one JSON file in the home's cache folder, written whole through a temporary file and a
rename: a killed refresh loses only what it had not saved, an unreadable file is started afresh,
and deleting it costs the next refresh the writing.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from assistant.llm.base import Delta

VERSION = 1  # bump when what a text depends on changes in a way the key does not show
LIMIT = 4096  # texts kept; the oldest go first


class Memo:
    """Seeded base-model texts by what they depend on; `over(model)` is the model with it."""

    def __init__(self, path: Path | None, limit: int = LIMIT):
        self.path, self.limit = path, limit
        self.hits = self.misses = 0
        self._texts: dict[str, str] | None = None
        self._dirty = False
        self._lock = threading.Lock()

    def key(self, model, messages: list[dict], sampling: dict, json_schema=None) -> str | None:
        """What the text depends on, hashed; None when it may not be kept: an adapter set, an
        engine without a fingerprint, or sampling without a seed that is not greedy.

        >>> class Base: adapter_id, fingerprint = None, "gguf"
        >>> len(Memo(None).key(Base(), [{"role": "user", "content": "hi"}], {"seed": 1}))
        64
        >>> Memo(None).key(Base(), [], {"temperature": 0.7}) is None
        True
        >>> class Tuned(Base): adapter_id = "refresh-3"
        >>> Memo(None).key(Tuned(), [], {"seed": 1}) is None
        True
        """
        if getattr(model, "adapter_id", "unknown") is not None:
            return None
        fingerprint = getattr(model, "fingerprint", None)
        seeded = "seed" in sampling or sampling.get("temperature", 1.0) == 0
        if not isinstance(fingerprint, str) or not seeded:
            return None
        parts = [VERSION, fingerprint, messages, sampling, json_schema]
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()

    def _load(self) -> dict[str, str]:
        if self._texts is None:
            try:
                kept = json.loads(self.path.read_text(encoding="utf-8")) if self.path else {}
            except (OSError, ValueError):
                kept = {}
            ok = isinstance(kept, dict)
            self._texts = {k: v for k, v in kept.items() if isinstance(v, str)} if ok else {}
        return self._texts

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._load().get(key)

    def put(self, key: str, text: str) -> None:
        with self._lock:
            texts = self._load()
            texts.pop(key, None)
            texts[key] = text
            while len(texts) > self.limit:
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
                part = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
                part.write_text(json.dumps(self._texts), encoding="utf-8")
                part.replace(self.path)
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
        if key is not None and (text := self._memo.get(key)) is not None:
            self._memo.hits += 1
            yield Delta(text=text, finish_reason="stop")
            return
        pieces, finished = [], False
        extra = {"json_schema": json_schema} if json_schema is not None else {}
        for delta in self._model.stream(messages, sampling, cancel, **extra):
            pieces.append(delta.text)
            finished = finished or delta.finish_reason not in (None, "stopped")
            yield delta
        stopped = cancel is not None and cancel.is_set()
        if key is not None and finished and not stopped:  # a cut-off text is not the text
            self._memo.misses += 1
            self._memo.put(key, "".join(pieces))
