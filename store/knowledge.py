"""Knowledge documents in SQL: the files a user gave, their passages, and which passages each
answer was given.

Owns the rows only: a document and all its chunks are written in one transaction (so a crash
never leaves half a document), replaced in one, and removed in one together with every record
of an answer having used them. Parsing and splitting files is feedback/knowledge's; the chunks'
vectors are store/vectors.py's (`KnowledgeIndex`), which follows these rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, func
from sqlmodel import select

from store.base import Repository, chunks
from store.db import checkpoint
from store.tables import Document, DocumentChunk, ExchangeSource, utcnow


@dataclass(frozen=True)
class Source:
    """A passage an answer was given, numbered as the prompt showed it."""

    number: int
    chunk_id: int
    document_id: int
    document: str  # the document's display name
    page: int | None
    text: str
    similarity: float


class KnowledgeStore(Repository):
    def documents(self, user_id: int | None = None) -> list[Document]:
        """Every document (of one user, when given), newest first."""
        with self.session() as s:
            query = select(Document).order_by(Document.updated_at.desc(), Document.id.desc())
            if user_id is not None:
                query = query.where(Document.user_id == user_id)
            return list(s.exec(query))

    def document(self, document_id: int) -> Document | None:
        with self.session() as s:
            return s.get(Document, document_id)

    def find(self, user_id: int, name: str) -> Document | None:
        """The user's document of this name (names are the identity a user sees)."""
        with self.session() as s:
            return s.exec(
                select(Document).where(Document.user_id == user_id, Document.name == name)
            ).first()

    def with_content(self, user_id: int, sha256: str) -> Document | None:
        """The user's document with exactly these bytes, if any."""
        with self.session() as s:
            return s.exec(
                select(Document).where(Document.user_id == user_id, Document.sha256 == sha256)
            ).first()

    def add(self, document: Document, passages: list[tuple[str, int | None]]) -> list[int]:
        """Store a new document and its passages (text, page) in one transaction; returns the
        chunk ids in order (`document.id` is set)."""
        with self.session() as s:
            document.chunks = len(passages)
            s.add(document)
            s.flush()
            ids = self._insert(s, document.id, passages)
            s.commit()
            return ids

    def add_chunks(self, document_id: int, passages: list[tuple[str, int | None]]) -> list[int]:
        """A new version's passages, beside the old ones until `finish_replace`."""
        with self.session() as s:
            if s.get(Document, document_id) is None:
                raise LookupError(f"document {document_id} no longer exists")
            ids = self._insert(s, document_id, passages)
            s.commit()
            return ids

    def finish_replace(self, document: Document, old_ids: list[int]) -> None:
        """The new version stands: the old passages go (with every answer's record of them)
        and the document's name, kind, hash, size and count are the new file's."""
        with self.session() as s:
            row = s.get(Document, document.id)
            self._drop(s, old_ids)
            for key in ("name", "kind", "sha256", "size_bytes", "chunks"):
                setattr(row, key, getattr(document, key))
            row.updated_at = utcnow()
            s.add(row)
            s.commit()

    def drop_chunks(self, ids: list[int]) -> None:
        with self.session() as s:
            self._drop(s, ids)
            s.commit()

    @staticmethod
    def _insert(s, document_id: int, passages) -> list[int]:
        rows = [
            DocumentChunk(document_id=document_id, seq=i, text=text, page=page)
            for i, (text, page) in enumerate(passages)
        ]
        s.add_all(rows)
        s.flush()
        return [r.id for r in rows]

    def chunk_texts(self, document_id: int) -> list[tuple[int, str]]:
        with self.session() as s:
            return list(
                s.exec(
                    select(DocumentChunk.id, DocumentChunk.text)
                    .where(DocumentChunk.document_id == document_id)
                    .order_by(DocumentChunk.seq)
                )
            )

    def chunk_ids(self, document_id: int) -> list[int]:
        with self.session() as s:
            return list(
                s.exec(select(DocumentChunk.id).where(DocumentChunk.document_id == document_id))
            )

    def remove(self, document_id: int) -> list[int]:
        """Delete a document, its chunks and every answer's record of using them; returns the
        chunk ids that went (their vectors are the caller's to drop)."""
        with self.session() as s:
            if s.get(Document, document_id) is None:
                raise LookupError(f"document {document_id} does not exist")
            ids = list(
                s.exec(select(DocumentChunk.id).where(DocumentChunk.document_id == document_id))
            )
            self._drop(s, ids)
            s.exec(delete(Document).where(Document.id == document_id))
            s.commit()
        checkpoint(self.engine)  # the write-ahead log still holds the passages' text
        return ids

    @staticmethod
    def _drop(s, ids: list[int]) -> None:
        for part in chunks(list(ids)):
            s.exec(delete(ExchangeSource).where(ExchangeSource.chunk_id.in_(part)))
            s.exec(delete(DocumentChunk).where(DocumentChunk.id.in_(part)))

    def passages(self, chunk_ids: list[int]) -> dict[int, tuple[DocumentChunk, Document]]:
        """Chunks by id with their documents; ids that no longer exist are left out."""
        out = {}
        with self.session() as s:
            for part in chunks(list(chunk_ids)):
                rows = s.exec(
                    select(DocumentChunk, Document)
                    .join(Document, Document.id == DocumentChunk.document_id)
                    .where(DocumentChunk.id.in_(part))
                )
                out |= {c.id: (c, d) for c, d in rows}
        return out

    def all_chunk_ids(self) -> set[int]:
        with self.session() as s:
            return set(s.exec(select(DocumentChunk.id)))

    def sources(self, exchange_ids: list[int]) -> dict[int, list[Source]]:
        """The passages each exchange was given, in prompt order (removed ones are gone)."""
        out: dict[int, list[Source]] = {i: [] for i in exchange_ids}
        with self.session() as s:
            for part in chunks(list(exchange_ids)):
                rows = s.exec(
                    select(ExchangeSource, DocumentChunk, Document)
                    .join(DocumentChunk, DocumentChunk.id == ExchangeSource.chunk_id)
                    .join(Document, Document.id == DocumentChunk.document_id)
                    .where(ExchangeSource.exchange_id.in_(part))
                    .order_by(ExchangeSource.exchange_id, ExchangeSource.number)
                )
                for src, chunk, doc in rows:
                    out[src.exchange_id].append(
                        Source(
                            src.number,
                            chunk.id,
                            doc.id,
                            doc.name,
                            chunk.page,
                            chunk.text,
                            src.similarity,
                        )
                    )
        return out

    def totals(self) -> tuple[int, int]:
        """(documents, chunks) in the knowledge base."""
        with self.session() as s:
            return (
                s.exec(select(func.count()).select_from(Document)).one(),
                s.exec(select(func.count()).select_from(DocumentChunk)).one(),
            )
