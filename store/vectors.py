"""The pool's vector index: a ChromaDB collection of the `train` exchanges' embeddings.

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
