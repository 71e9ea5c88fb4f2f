"""Training records from the pool, and exporting them as JSON Lines in the formats TRL takes.

Owns the shape of each record (`sft_record` is the one place a pool entry becomes a training
record); which exchanges are in the pool is the curator's decision.
  sft  {"messages": [...]}                                  every `train` entry (SFTTrainer)
  dpo  {"prompt": [...], "chosen": [...], "rejected": [...]} corrections (the person's answer
       over the model's) and preferred regenerations (DPOTrainer)
  kto  {"prompt": [...], "completion": [...], "label": bool} every thumbs up or down (KTOTrainer)
All three use TRL's conversational form (lists of {"role", "content"}), so the trainer applies
the model's own chat template. The system prompt is the one the app answers with. Text is the
pool's PII-masked copy; deleted conversations are never exported (their rows are gone, and the
`forgotten` tombstones are checked as well).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from store.lessons import LessonStore, written_from
from store.pool import PoolStore
from store.tables import PoolEntry

FORMATS = ("sft", "dpo", "kto")
# Characters JSON leaves raw that many line readers (Python's splitlines among them) take for a
# line break, which would cut a JSON Lines record in two.
LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def jsonl_line(record: dict) -> str:
    """One JSON Lines record: UTF-8 kept readable, no character a reader could split on.

    >>> jsonl_line({"a": "x" + chr(0x2028) + "y"}).encode()
    b'{"a": "x\\\\u2028y"}\\n'
    """
    return json.dumps(record, ensure_ascii=False).translate(LINE_BREAKS) + "\n"


def prompt_messages(e: PoolEntry, system: str | None) -> list[dict]:
    head = [{"role": "system", "content": system}] if system else []
    return head + list(e.context) + [{"role": "user", "content": e.prompt}]


def assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def sft_record(e: PoolEntry, system: str | None) -> dict:
    """A pool entry as a training record: the one place this conversion is written.

    >>> e = PoolEntry(exchange_id=1, conversation_id=1, user_id=1, status="train",
    ...     source="human_written", score=1.0, reason="", prompt="2+2?", completion="4",
    ...     context=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
    ...     model_id="m", exchange_at=None)
    >>> [m["content"] for m in sft_record(e, "Be brief.")["messages"]]
    ['Be brief.', 'hi', 'hello', '2+2?', '4']
    """
    return {"messages": prompt_messages(e, system) + assistant(e.completion)}


def lesson_record(lesson, parent: PoolEntry, system: str | None) -> dict:
    """A lesson (store.tables.Lesson) as a training record: its question and answer after
    the turns its parent followed.

    >>> from store.tables import Lesson
    >>> parent = PoolEntry(exchange_id=1, conversation_id=1, user_id=1, status="train",
    ...     source="human_written", score=1.0, reason="", prompt="2+2?", completion="4",
    ...     model_id="m", exchange_at=None)
    >>> lesson = Lesson(parent_exchange_id=1, parent_key="k", user_id=1, kind="question",
    ...     status="kept", reason="", prompt="What is two plus two?", completion="4", model_id="m")
    >>> [m["content"] for m in lesson_record(lesson, parent, None)["messages"]]
    ['What is two plus two?', '4']
    """
    head = [{"role": "system", "content": system}] if system else []
    question = [{"role": "user", "content": lesson.prompt}]
    return {"messages": head + list(parent.context) + question + assistant(lesson.completion)}


def lesson_records(lessons, parents: dict, system: str | None) -> Iterator[tuple[dict, str]]:
    """Kept lessons whose parent is in the export, each with its provenance: the parent
    exchange, the model that wrote it and its grade."""
    for lesson in lessons:
        parent = parents.get(lesson.parent_exchange_id)
        if parent is None or parent.source not in ("human_written", "human_approved"):
            continue
        if not written_from(lesson, parent):  # the parent was corrected again since
            continue
        record = lesson_record(lesson, parent, system)
        record["provenance"] = {
            "source": "synthetic",
            "kind": lesson.kind,
            "parent_exchange_id": lesson.parent_exchange_id,
            "model_id": lesson.model_id,
            "grade": lesson.score,
            "agreement": lesson.agreement,
        }
        yield record, "synthetic"


def preference_pairs(
    pool: PoolStore, system: str | None = None
) -> Iterator[tuple[dict, str, set[int]]]:
    """DPO pairs (conversational prompt/chosen/rejected) from corrections and preferred
    regenerations, with their source and the exchanges each came from; deleted ones are out."""
    forgotten = pool.forgotten_ids()
    for e in pool.train_entries():
        if e.original is not None and e.exchange_id not in forgotten:
            record = {
                "prompt": prompt_messages(e, system),
                "chosen": assistant(e.completion),
                "rejected": assistant(e.original),
            }
            yield record, "correction", {e.exchange_id}
    for chosen, rejected in pool.preferred_regenerations():
        ids = {chosen.exchange_id, rejected.exchange_id}
        if forgotten.isdisjoint(ids):
            record = {
                "prompt": prompt_messages(chosen, system),
                "chosen": assistant(chosen.completion),
                "rejected": assistant(rejected.original or rejected.completion),
            }
            yield record, "preferred regeneration", ids


def records(pool: PoolStore, fmt: str, system: str | None = None) -> Iterator[tuple[dict, str]]:
    """(record, source) pairs for the format; source is what the summary counts."""
    forgotten = pool.forgotten_ids()
    if fmt == "sft":
        parents = {}
        for e in pool.train_entries():
            if e.exchange_id not in forgotten:
                parents[e.exchange_id] = e
                yield sft_record(e, system), e.source
        yield from lesson_records(LessonStore(pool.engine).kept(), parents, system)
    elif fmt == "dpo":
        for record, source, _ in preference_pairs(pool, system):
            yield record, source
    elif fmt == "kto":
        for e in pool.rated_entries():
            if e.exchange_id not in forgotten:
                record = {
                    "prompt": prompt_messages(e, system),
                    # The thumbs judged the model's answer, not a later correction of it.
                    "completion": assistant(e.original or e.completion),
                    "label": e.rating > 0,
                }
                yield record, "thumbs up" if e.rating > 0 else "thumbs down"
    else:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def export(
    pool: PoolStore,
    fmt: str,
    out: Path,
    system: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> Counter:
    """Write the records to `out` (atomically: a temporary file renamed into place, so a crash
    or a full disk never leaves half a file under the real name). Returns counts by source."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    counts: Counter = Counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            for record, source in records(pool, fmt, system):
                f.write(jsonl_line(record))
                counts[source] += 1
                if progress:
                    progress(1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return counts
