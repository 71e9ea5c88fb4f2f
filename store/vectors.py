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

    def _nearest(self, collection, vectors: np.ndarray, k: int) -> list[list[Neighbour]]:
        count = collection.count()
        if count == 0 or len(vectors) == 0:
            return [[] for _ in range(len(vectors))]
        found = collection.query(
            query_embeddings=vectors, n_results=min(k, count), include=["distances"]
        )
        return [
            [Neighbour(int(i), 1.0 - d) for i, d in zip(ids, dists, strict=True)]
            for ids, dists in zip(found["ids"], found["distances"], strict=True)
        ]

    def nearest_exchanges(self, vectors: np.ndarray, k: int = 1) -> list[list[Neighbour]]:
        """Per query vector, the most similar pool exchanges (question and answer)."""
        return self._nearest(self.exchanges, vectors, k)

    def nearest_prompts(self, vector: np.ndarray, k: int) -> list[Neighbour]:
        """The pool exchanges whose questions are most like this one."""
        return self._nearest(self.prompts, vector[None, :], k)[0]

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

    def add(self, ids: list[int], vectors: np.ndarray, document_id: int) -> None:
        # Chroma caps one call's batch; a long document goes in slices.
        step = 1000
        for start in range(0, len(ids), step):
            part = ids[start : start + step]
            self.chunks.upsert(
                ids=[str(i) for i in part],
                embeddings=vectors[start : start + step],
                metadatas=[{"document_id": document_id}] * len(part),
            )

    def remove(self, ids: list[int]) -> None:
        for start in range(0, len(ids), 1000):
            self.chunks.delete(ids=[str(i) for i in ids[start : start + 1000]])

    def nearest(self, vector: np.ndarray, k: int) -> list[Neighbour]:
        """The passages most like `vector`, most similar first (`exchange_id` is the chunk id)."""
        count = self.chunks.count()
        if count == 0 or k <= 0:
            return []
        found = self.chunks.query(
            query_embeddings=vector[None, :], n_results=min(k, count), include=["distances"]
        )
        return [
            Neighbour(int(i), 1.0 - d)
            for i, d in zip(found["ids"][0], found["distances"][0], strict=True)
        ]

    def ids(self) -> set[int]:
        return {int(i) for i in self.chunks.get(include=[])["ids"]}

    def has_all(self, ids: list[int]) -> bool:
        """Whether every one of these passages has its vector."""
        found = 0
        for start in range(0, len(ids), 1000):
            keys = [str(i) for i in ids[start : start + 1000]]
            found += len(self.chunks.get(ids=keys, include=[])["ids"])
        return found == len(ids)

    def keep_only(self, ids: set[int]) -> int:
        """Drop vectors whose rows are gone (a crash between the two writes); returns how many."""
        stale = sorted(self.ids() - ids)
        self.remove(stale)
        return len(stale)
