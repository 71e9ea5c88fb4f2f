"""The vector indexes: ChromaDB collections of the pool's `train` exchanges and of knowledge passages.

Owns talking to Chroma. Two collections share one id per exchange: `pool_exchanges` holds the
embedding of question and answer together (near-duplicate detection, pool diversity) and
`pool_prompts` the question alone (retrieving past examples for a new question). The collections
mirror exactly the pool entries whose status is `train`; the SQL table (store/pool.py) is the
record, so the index can always be rebuilt from it. Embeddings are always passed in; Chroma's
default embedding function, which downloads a model, is never used.

Persistent under `AUTODIDACT_HOME/chroma` by default; `AUTODIDACT_CHROMA_URL` points at a Chroma
server instead (http://host:port), for a pool too big for one process.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

COLLECTIONS = ("pool_exchanges", "pool_prompts")
BATCH = 1000  # ids per Chroma call: it caps one call's batch


@dataclass(frozen=True)
class Neighbour:
    exchange_id: int
    similarity: float  # cosine, 1 = identical


def client(path: Path | None = None, url: str | None = None):
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if url:
        parsed = urlparse(url)
        return chromadb.HttpClient(
            host=parsed.hostname or "localhost",
            port=parsed.port or (443 if parsed.scheme == "https" else 8000),
            ssl=parsed.scheme == "https",
            settings=settings,
        )
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=settings)


def nearest(collection, vectors: np.ndarray, k: int, where: dict | None = None):
    """Per query vector, the `k` nearest ids in `collection` with their cosine similarity."""
    count = collection.count()
    if count == 0 or len(vectors) == 0 or k <= 0:
        return [[] for _ in range(len(vectors))]
    found = collection.query(
        query_embeddings=vectors, n_results=min(k, count), include=["distances"], where=where
    )
    return [
        [Neighbour(int(i), 1.0 - d) for i, d in zip(ids, dists, strict=True)]
        for ids, dists in zip(found["ids"], found["distances"], strict=True)
    ]


class VectorIndex:
    def __init__(self, chroma):
        self.chroma = chroma
        self.exchanges, self.prompts = (
            chroma.get_or_create_collection(
                name,
                embedding_function=None,
                configuration={"hnsw": {"space": "cosine"}},
            )
            for name in COLLECTIONS
        )

    @classmethod
    def open(cls, path: Path | None = None, url: str | None = None) -> VectorIndex:
        return cls(client(path, url))

    def count(self) -> int:
        return self.exchanges.count()

    def add(
        self,
        ids: list[int],
        exchange_vectors: np.ndarray,
        prompt_vectors: np.ndarray,
        metadatas: list[dict],
    ) -> None:
        if not ids:
            return
        keys = [str(i) for i in ids]
        self.exchanges.upsert(ids=keys, embeddings=exchange_vectors, metadatas=metadatas)
        self.prompts.upsert(ids=keys, embeddings=prompt_vectors, metadatas=metadatas)

    def remove(self, ids: list[int]) -> None:
        if not ids:
            return
        keys = [str(i) for i in ids]
        self.exchanges.delete(ids=keys)
        self.prompts.delete(ids=keys)

    def nearest_exchanges(self, vectors: np.ndarray, k: int = 1) -> list[list[Neighbour]]:
        """Per query vector, the most similar pool exchanges (question and answer)."""
        return nearest(self.exchanges, vectors, k)

    def nearest_prompts(
        self, vector: np.ndarray, k: int, sources: tuple[str, ...] = ()
    ) -> list[Neighbour]:
        """The pool exchanges whose questions are most like this one (of these sources only,
        when given: `human_written`, `human_approved`, `model_only`)."""
        where = {"source": {"$in": list(sources)}} if sources else None
        return nearest(self.prompts, vector[None, :], k, where)[0]

    def sample(self, limit: int) -> np.ndarray:
        """Up to `limit` exchange embeddings, for the spread of the pool."""
        got = self.exchanges.get(limit=limit, include=["embeddings"])
        vectors = got["embeddings"]
        return np.asarray(vectors, dtype=np.float32) if len(vectors) else np.zeros((0, 384))

    def ids(self) -> set[int]:
        return {int(i) for i in self.exchanges.get(include=[])["ids"]}


class KnowledgeIndex:
    """The knowledge documents' passages: one vector per `document_chunks` row, keyed by its id.

    A collection of its own (`knowledge_chunks`), separate from the pool's: documents are
    evidence, never training examples. The SQL rows (store/knowledge.py) are the record; a
    vector without a row is ignored by the caller and dropped by `keep_only`.
    """

    NAME = "knowledge_chunks"

    def __init__(self, chroma):
        self.chroma = chroma
        self.chunks = chroma.get_or_create_collection(
            self.NAME, embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
        )

    @classmethod
    def open(cls, path: Path | None = None, url: str | None = None) -> KnowledgeIndex:
        return cls(client(path, url))

    def count(self) -> int:
        return self.chunks.count()

    def add(self, ids: list[int], vectors: np.ndarray, document_id: int, user_id: int) -> None:
        # Chroma caps one call's batch; a long document goes in slices.
        meta = {"document_id": document_id, "user_id": user_id}
        for start in range(0, len(ids), BATCH):
            part = ids[start : start + BATCH]
            self.chunks.upsert(
                ids=[str(i) for i in part],
                embeddings=vectors[start : start + BATCH],
                metadatas=[meta] * len(part),
            )

    def remove(self, ids: list[int]) -> None:
        for start in range(0, len(ids), BATCH):
            self.chunks.delete(ids=[str(i) for i in ids[start : start + BATCH]])

    def nearest(self, vector: np.ndarray, k: int, user_id: int | None = None) -> list[Neighbour]:
        """The passages most like `vector` (of one user's documents, when given), most similar
        first (`exchange_id` is the chunk id)."""
        where = {"user_id": user_id} if user_id is not None else None
        return nearest(self.chunks, vector[None, :], k, where)[0]

    def ids(self) -> set[int]:
        return {int(i) for i in self.chunks.get(include=[])["ids"]}

    def has_all(self, ids: list[int]) -> bool:
        """Whether every one of these passages has its vector."""
        found = 0
        for start in range(0, len(ids), BATCH):
            keys = [str(i) for i in ids[start : start + BATCH]]
            found += len(self.chunks.get(ids=keys, include=[])["ids"])
        return found == len(ids)

    def keep_only(self, ids: set[int]) -> int:
        """Drop vectors whose rows are gone (a crash between the two writes); returns how many."""
        stale = sorted(self.ids() - ids)
        self.remove(stale)
        return len(stale)
