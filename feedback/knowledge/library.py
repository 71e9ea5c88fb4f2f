"""The knowledge library: adding, replacing, listing, removing and searching the user's documents.

Owns the path from a file to searchable passages and back out: parse and split it
(feedback/knowledge/parse.py), embed the passages with the project's embedder, write the rows
(store/knowledge.py) and then the vectors (store/vectors.py `KnowledgeIndex`). The content hash
makes adding the same bytes again a no-op; a file whose name is known but whose bytes changed
replaces its passages. Any failure leaves the library as it was before that file. Putting the
passages into a prompt is the chat's (assistant/chat.py); grading against them is
feedback/grading's.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from feedback.knowledge.config import KnowledgeConfig
from feedback.knowledge.files import find_files
from feedback.knowledge.parse import (
    DocumentError,
    Parsed,
    parse_bytes,
    read_file,
    split,
)
from feedback.knowledge.sandbox import parse_isolated
from store.knowledge import KnowledgeStore
from store.tables import Document
from store.vectors import KnowledgeIndex

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Added:
    """What adding one file did: `added`, `replaced`, `unchanged`, `reindexed` (its vectors had
    been lost) or `refused` (with why)."""

    name: str
    status: str
    document_id: int | None = None
    chunks: int = 0
    message: str = ""

    def line(self) -> str:
        """One line for the CLI and the Knowledge tab.

        >>> Added("a.pdf", "added", 3, 12).line()
        'a.pdf: added, 12 passages'
        >>> Added("b.txt", "refused", message="b.txt: the file is empty").line()
        'b.txt: the file is empty'
        """
        if self.status == "refused":
            return self.message
        passages = f"{self.chunks} passage{'' if self.chunks == 1 else 's'}"
        detail = passages if self.status != "unchanged" else self.message
        return f"{self.name}: {self.status}" + (f", {detail}" if detail else "")


@dataclass(frozen=True)
class Hit:
    """A passage found for a question."""

    chunk_id: int
    document_id: int
    document: str
    page: int | None
    text: str
    similarity: float


class Library:
    def __init__(
        self,
        store: KnowledgeStore,
        index: KnowledgeIndex,
        embed: Callable[[list[str]], np.ndarray],
        config: KnowledgeConfig = KnowledgeConfig(),
    ):
        self.store = store
        self.index = index
        self.embed = embed
        self.config = config
        self._lock = threading.Lock()

    @property
    def max_bytes(self) -> int:
        return int(self.config.max_file_mb * 1024 * 1024)

    # adding
    def add_file(self, path: Path, user_id: int) -> Added:
        name = Path(path).name
        return self._guarded(
            name, lambda: self.parse(name, read_file(path, self.max_bytes)), user_id
        )

    def add_bytes(self, name: str, data: bytes, user_id: int) -> Added:
        return self._guarded(name, lambda: self.parse(name, data), user_id)

    def parse(self, name: str, data: bytes) -> Parsed:
        """The file's text; by default read in a child process (feedback/knowledge/sandbox.py),
        so a bad file costs a refusal, never the server's memory."""
        if not self.config.isolated:
            return parse_bytes(name, data, self.max_bytes)
        memory, timeout = self.config.parse_memory_mb, self.config.parse_timeout_s
        return parse_isolated(name, data, self.max_bytes, memory, timeout)

    def _guarded(self, name: str, parse: Callable[[], Parsed], user_id: int) -> Added:
        """One file: its result, or `refused` with one line why; never an exception. Parsing
        holds no lock: one person's slow file does not hold up another's."""
        try:
            parsed = parse()
            with self._lock:  # one file at a time: two adds of one name would race
                return self._add(parsed, user_id)
        except DocumentError as exc:
            return Added(name, "refused", message=str(exc))
        except Exception as exc:  # the embedder, the database, the index: say so, add nothing
            log.exception("adding %s failed", name)
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return Added(name, "refused", message=f"{name}: could not be added ({why})")

    def add_paths(
        self,
        paths: list[Path],
        user_id: int,
        progress: Callable[[int, int, Added], None] | None = None,
    ) -> list[Added]:
        """Add files and whole folders. Each file stands alone: one that is refused does not
        stop the rest, and running the same command again resumes (finished files are
        unchanged). `progress(done, total, result)` after each file."""
        files, skipped = find_files([Path(p) for p in paths])
        out = [Added(p.name, "refused", message=f"{p.name}: {why}") for p, why in skipped]
        for n, path in enumerate(files, 1):
            result = self.add_file(path, user_id)
            out.append(result)
            if progress:
                progress(n, len(files), result)
        return out

    def _add(self, parsed: Parsed, user_id: int) -> Added:
        same_name = self.store.find(user_id, parsed.name)
        if same_name is not None and same_name.sha256 == parsed.sha256:
            if self.index.has_all(self.store.chunk_ids(same_name.id)):
                return Added(
                    parsed.name, "unchanged", same_name.id, same_name.chunks, "already added"
                )
            return self._reindex(same_name)
        if same_name is None:
            doc = self.store.with_content(user_id, parsed.sha256)
            if doc is not None:
                return Added(
                    parsed.name, "unchanged", doc.id, doc.chunks, f"same content as {doc.name}"
                )
        passages = split(parsed, self.config.chunk_chars, self.config.chunk_overlap)
        if not passages:
            raise DocumentError(f"{parsed.name}: no text to add")
        vectors = np.asarray(self.embed([p.text for p in passages]))  # before any write
        rows = [(p.text, p.page) for p in passages]
        document = Document(
            user_id=user_id,
            name=parsed.name,
            kind=parsed.kind,
            sha256=parsed.sha256,
            size_bytes=parsed.size_bytes,
            chunks=len(passages),
        )
        if same_name is None:
            ids = self.store.add(document, rows)
            self._index(parsed.name, ids, vectors, document.id, user_id, drop=document.id)
            return Added(parsed.name, "added", document.id, len(ids))
        # A new version: its passages go in beside the old ones, and the old ones leave only
        # once the new are indexed, so a failure leaves the old version whole.
        old_ids = self.store.chunk_ids(same_name.id)
        ids = self.store.add_chunks(same_name.id, rows)
        self._index(parsed.name, ids, vectors, same_name.id, user_id, drop=None)
        document.id = same_name.id
        self.store.finish_replace(document, old_ids)
        self.index.remove(old_ids)
        return Added(parsed.name, "replaced", same_name.id, len(ids))

    def _index(self, name, ids, vectors, document_id, user_id, drop: int | None) -> None:
        """Vectors for rows just written; on failure the rows go again (the whole document
        when `drop` names a new one) and nothing is left half-added."""
        try:
            self.index.add(ids, vectors, document_id, user_id)
        except Exception as exc:
            self.index.remove(ids)
            if drop is not None:
                self.store.remove(drop)
            else:
                self.store.drop_chunks(ids)
            raise DocumentError(
                f"{name}: could not be indexed ({exc}); nothing was changed, add it again"
            ) from exc

    def _reindex(self, document: Document) -> Added:
        """Vectors lost in a crash between the two writes: embed the stored passages again,
        keeping their ids (and every answer's record of them)."""
        chunk_ids, texts = zip(*self.store.chunk_texts(document.id), strict=True)
        vectors = np.asarray(self.embed(list(texts)))
        self._index(document.name, list(chunk_ids), vectors, document.id, document.user_id, None)
        return Added(document.name, "reindexed", document.id, len(chunk_ids))

    # the rest
    def remove(self, document_id: int, user_id: int | None = None) -> Document:
        """Remove a document with all its passages, from SQL and from the index; with
        `user_id`, only that user's (another user's document reads as missing)."""
        doc = self.store.document(document_id)
        if doc is None or (user_id is not None and doc.user_id != user_id):
            raise LookupError(f"there is no document {document_id}")
        ids = self.store.remove(document_id)
        self.index.forget(ids)  # with every copy Chroma keeps of them on disk
        return doc

    def documents(self, user_id: int | None = None) -> list[Document]:
        return self.store.documents(user_id)

    def search(
        self,
        question: str,
        k: int | None = None,
        min_similarity: float | None = None,
        user_id: int | None = None,
    ) -> list[Hit]:
        """The passages most like `question` above the similarity threshold, best first; of
        one user's documents when `user_id` is given."""
        k = self.config.passages if k is None else k
        floor = self.config.min_similarity if min_similarity is None else min_similarity
        if k <= 0 or not question.strip() or self.index.count() == 0:
            return []
        # The embedder reads 256 tokens at most: the start of a huge message is what it sees.
        near = self.index.nearest(self.embed([question[:4000]])[0], k, user_id)
        near = [n for n in near if n.similarity >= floor]
        rows = self.store.passages([n.exchange_id for n in near])
        return [
            Hit(n.exchange_id, doc.id, doc.name, chunk.page, chunk.text, round(n.similarity, 4))
            for n in near
            if (row := rows.get(n.exchange_id)) is not None
            for chunk, doc in [row]
        ]

    def repair(self) -> int:
        """Drop vectors left behind by a crash between the two writes; returns how many."""
        return self.index.keep_only(self.store.all_chunk_ids())
