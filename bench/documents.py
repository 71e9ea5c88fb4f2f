"""Knowledge documents for the benchmarks: N real-text passages, and questions that hit them.

Owns the benchmarks' document corpus and filling a `Library` with it (`fill`): through
`add_bytes`, one small text file per passage, so each file is exactly one chunk and "N passages"
means N rows in `document_chunks` and N vectors in the `knowledge_chunks` collection; or, for
large bases, in files of many passages written with the library's own two writes. Every passage
is at most 800 characters (`knowledge_chunk_chars`). Read from tests/data:

  1. the 500 HaluEval knowledge passages, as given (two of them are longer than a chunk and are
     cut at a sentence boundary);
  2. the TruthfulQA questions as short FAQ paragraphs: the question as a title line, then the
     best answer and the other correct answers as sentences (393 of the 400; seven have no
     answer but "I have no comment");
  3. past 893 passages (10,000 needs about 9,100 more), HaluEval's passages split differently:
     the sentences of all passages read as one stream, cut into windows of 2, 3, 4, ...
     sentences starting at every sentence (1,159 sentences; 4,183 windows of at most 800
     characters, so passages 893 to 5,075), then the same stream cut by words: windows of 50, 70, 90, 110 words starting every 10 words. Each
     window is real text and distinct, but they overlap heavily, so a question near one passage
     has many near neighbours: retrieval at 10,000 runs on a corpus denser than a user's own
     files would be (the search's cost depends on the count, not on what the passages say).

No incorrect TruthfulQA answer is used as document text. Does not own measuring anything: the
benchmarks that use it (grading_cost.py, retrieval_cost.py, and chat_throughput.py through
`bench.harness.seed_documents`) do.

    >>> from bench.documents import passages
    >>> texts = passages(1000)
    >>> len(texts), len(set(texts)), max(len(t) for t in texts) <= CHUNK_CHARS
    (1000, 1000, True)
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from bench.harness import DATA, read_jsonl

CHUNK_CHARS = 800  # KnowledgeConfig.chunk_chars: a passage this long or shorter is one chunk
# HaluEval glues sentences ("...19th century.First for Women is..."): a stop after a lower-case
# letter or digit, then a capital, ends a sentence; "U.S. Army" is not cut.
_SENTENCE_END = re.compile(r"(?<=[a-z0-9)\]][.!?])\s*(?=[A-Z\"'])")
# TruthfulQA's non-answers are not document text.
_NON_ANSWERS = ("no comment", "i have no", "i don't know")


def halueval() -> list[dict]:
    return read_jsonl(DATA / "halueval" / "qa_one-turn.jsonl")


def truthfulqa() -> list[dict]:
    return read_jsonl(DATA / "truthfulqa" / "dev.jsonl")


def sentences(text: str) -> list[str]:
    """
    >>> sentences("It began in 1844.First for Women is a U.S. magazine. It ended.")
    ['It began in 1844.', 'First for Women is a U.S. magazine.', 'It ended.']
    """
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def fit(parts: list[str], limit: int = CHUNK_CHARS, sep: str = " ") -> str:
    """As many leading parts as fit in `limit` characters (at least the first, cut).

    >>> fit(["aaa.", "bbb.", "ccc."], limit=9)
    'aaa. bbb.'
    """
    out = parts[0][:limit]
    for part in parts[1:]:
        if len(out) + len(sep) + len(part) > limit:
            break
        out += sep + part
    return out


def faq_paragraph(row: dict) -> str | None:
    """A TruthfulQA question with its correct answers, as one paragraph; None when its only
    answer is "I have no comment".

    >>> faq_paragraph({"question": "Where did fortune cookies originate?",
    ...                "best_answer": "The precise origin is unclear",
    ...                "correct_answers": ["They originated in San Francisco",
    ...                                    "The precise origin is unclear", "I have no comment"]})
    'Where did fortune cookies originate?\\nThe precise origin is unclear. They originated in San Francisco.'
    """
    answers = [row["best_answer"], *row["correct_answers"]]
    kept = [
        a.strip().rstrip(".") + "."
        for a in dict.fromkeys(answers)
        if a.strip() and not a.strip().lower().startswith(_NON_ANSWERS)
    ]
    if not kept:
        return None
    return row["question"].strip() + "\n" + fit(kept, CHUNK_CHARS - len(row["question"]) - 2)


def passages(n: int) -> list[str]:
    """The first `n` distinct passages of the corpus (see the module docstring), in order."""
    out: dict[str, None] = {}

    def take(text: str) -> bool:
        out.setdefault(text.strip(), None)
        return len(out) >= n

    halu = halueval()
    for row in halu:
        if take(fit(sentences(row["knowledge"]))):
            return list(out)
    for row in truthfulqa():
        paragraph = faq_paragraph(row)
        if paragraph and take(paragraph):
            return list(out)
    stream = [s for row in halu for s in sentences(row["knowledge"])]
    for width in range(2, 40):
        for start in range(len(stream) - width + 1):
            window = " ".join(stream[start : start + width])
            if len(window) <= CHUNK_CHARS and take(window):
                return list(out)
    words = " ".join(stream).split()
    for width in range(50, 130, 20):
        for start in range(0, len(words) - width + 1, 10):
            window = " ".join(words[start : start + width])
            if len(window) <= CHUNK_CHARS and take(window):
                return list(out)
    raise ValueError(f"the corpus has only {len(out)} distinct passages, fewer than {n}")


@dataclass(frozen=True)
class Question:
    text: str
    kind: str  # halueval, truthfulqa or open
    passage: str | None  # the corpus passage that holds its answer (None: open requests)


def questions() -> list[Question]:
    """Questions for chat rounds and retrieval: HaluEval questions (the answer is in that
    row's passage), TruthfulQA questions (in their FAQ paragraph) and open requests that no
    passage answers, interleaved so any prefix mixes the kinds.

    >>> [q.kind for q in questions()[:7]]
    ['halueval', 'truthfulqa', 'open', 'halueval', 'truthfulqa', 'open', 'halueval']
    """
    halu = [Question(r["question"], "halueval", fit(sentences(r["knowledge"]))) for r in halueval()]
    faq = [
        Question(r["question"], "truthfulqa", p)
        for r in truthfulqa()
        if (p := faq_paragraph(r)) is not None
    ]
    open_ = [Question(p, "open", None) for p in OPEN_PROMPTS]
    out = []
    for i in range(max(len(halu), len(faq))):
        out += [kind[i] for kind in (halu, faq, open_) if i < len(kind)]
    return out


OPEN_PROMPTS = [
    "Tell me a short story about a lighthouse keeper.",
    "Explain how photosynthesis works.",
    "Write a poem about autumn leaves.",
    "What are the benefits of regular exercise?",
    "Describe the water cycle step by step.",
    "Give me three tips for writing a cover letter.",
    "How do I make a cup of green tea?",
    "What should I pack for a weekend hike?",
]


def fill(
    library,
    user_id: int,
    n: int,
    per_file: int = 1,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Put the corpus's first `n` passages into `library`; passages already there are kept, so
    a library filled to 1,000 grows to 10,000 by adding the other 9,000. `progress(k)` after
    each k passages. Returns counts and the seconds taken.

    per_file=1: one .txt file per passage through `Library.add_bytes`, the path a user's file
    takes (parse, split, embed, rows, vectors). per_file=K>1: files of K passages written with
    the same two writes `add_bytes` ends in (`store.add`, then `index.add` with the embedder's
    vectors, K at a time), without parsing and splitting: a file of K short passages would be
    re-split into fewer, longer chunks, and the count would no longer be `n`. Used where the
    library only has to be there (10,000 passages one file at a time take tens of minutes:
    see retrieval_cost.py)."""
    import hashlib

    import numpy as np

    from store.tables import Document

    texts = passages(n)
    start = time.perf_counter()
    status: dict[str, int] = {}
    for first in range(0, n, per_file):
        part = texts[first : first + per_file]
        if per_file == 1:
            added = library.add_bytes(f"passage-{first:05d}.txt", part[0].encode(), user_id)
            if added.status == "refused":
                raise RuntimeError(added.line())
            outcome = added.status
        elif library.store.find(user_id, name := f"corpus-{first // per_file:04d}.txt"):
            outcome = "unchanged"
        else:
            data = "\n\n".join(part).encode()
            vectors = np.asarray(library.embed(part))
            document = Document(
                user_id=user_id,
                name=name,
                kind="txt",
                sha256=hashlib.sha256(data).hexdigest(),
                size_bytes=len(data),
            )
            ids = library.store.add(document, [(text, None) for text in part])
            library.index.add(ids, vectors, document.id, user_id)
            outcome = "added"
        status[outcome] = status.get(outcome, 0) + len(part)
        if progress:
            progress(len(part))
    documents, chunks = library.store.totals()
    return {
        "passages": n,
        "per_file": per_file,
        "passages_by_outcome": status,  # added now, or unchanged (there already)
        "documents": documents,
        "chunks": chunks,
        "vectors": library.index.count(),
        "seconds": round(time.perf_counter() - start, 1),
    }
