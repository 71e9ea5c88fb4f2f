"""SQLModel tables: the schema of everything Autodidact keeps about its conversations.

Owns the table definitions only. Creating and upgrading the schema is the migrations' job
(store/migrations), and reading and writing rows is the repositories' (store/base.py and one
module per aggregate: conversations, grading, pool, runs). Table names are plural
because `user` is a reserved word in PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class User(SQLModel, table=True):
    __tablename__ = "users"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    password_hash: str | None = None  # argon2id; None: no login (the loopback local user)
    role: str = Field(default="user", sa_column_kwargs={"server_default": "user"})
    disabled_at: datetime | None = None  # `user remove`: no login, no tokens, data kept


class ApiToken(SQLModel, table=True):
    """A program's credential: only a hash of the secret is kept."""

    __tablename__ = "api_tokens"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    secret_hash: str = Field(unique=True, index=True)
    name: str
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None
    last_used_at: datetime | None = None


class LoginSession(SQLModel, table=True):
    """A browser's login, kept server-side so logging out (or removing the user) ends it."""

    __tablename__ = "login_sessions"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    secret_hash: str = Field(unique=True, index=True)
    name: str  # the browser's user agent, for the list of sessions
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None
    last_used_at: datetime | None = None


class Conversation(SQLModel, table=True):
    __tablename__ = "conversations"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    title: str
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow, index=True)


class Message(SQLModel, table=True):
    __tablename__ = "messages"
    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="conversations.id", index=True)
    role: str  # "user" or "assistant"
    content: str
    created_at: datetime = Field(default_factory=utcnow)


class Exchange(SQLModel, table=True):
    """One user turn and the assistant's answer to it, with how the answer was made.

    A regenerated answer is a new exchange on the same user message, pointing at the one it
    replaced; the conversation shows the newest. `status` is `generating` while the model runs,
    then `completed`, `stopped` (by the user) or `failed` (model error or the process died).
    """

    __tablename__ = "exchanges"
    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="conversations.id", index=True)
    user_message_id: int = Field(foreign_key="messages.id", index=True)
    assistant_message_id: int | None = Field(default=None, foreign_key="messages.id")
    regenerated_from_id: int | None = Field(default=None, foreign_key="exchanges.id")
    status: str = Field(default="generating", index=True)
    error: str | None = None
    finish_reason: str | None = None  # the model's: "stop", "length" (hit max_tokens), ...
    model_id: str
    adapter_id: str | None = None
    sampling: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    history_dropped: int = 0  # older messages left out of the prompt to fit the context
    first_token_ms: float | None = None
    latency_ms: float | None = None
    created_at: datetime = Field(default_factory=utcnow, index=True)
    finished_at: datetime | None = None
    # Pool exchanges shown to the model as examples in this answer's prompt (retrieval).
    retrieved: list[int] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, server_default="[]")
    )


class Rating(SQLModel, table=True):
    """One click on thumbs up (+1) or down (-1), or taking a rating back (0). The newest counts.

    A thumbs down may carry reasons (chips such as "wrong facts") and a comment.
    """

    __tablename__ = "ratings"
    id: int | None = Field(default=None, primary_key=True)
    exchange_id: int = Field(foreign_key="exchanges.id", index=True)
    user_id: int = Field(foreign_key="users.id")
    value: int
    reasons: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, server_default="[]")
    )
    comment: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Correction(SQLModel, table=True):
    """A better answer a user wrote for an exchange; stored beside the original, never over it."""

    __tablename__ = "corrections"
    id: int | None = Field(default=None, primary_key=True)
    exchange_id: int = Field(foreign_key="exchanges.id", index=True)
    user_id: int = Field(foreign_key="users.id")
    content: str
    created_at: datetime = Field(default_factory=utcnow)


class Grade(SQLModel, table=True):
    """The self-grade of one exchange: every signal stored on its own, then the combined score.

    A signal that was not measured (self-consistency is off by default) is NULL, not zero.
    """

    __tablename__ = "grades"
    id: int | None = Field(default=None, primary_key=True)
    exchange_id: int = Field(foreign_key="exchanges.id", index=True)
    grader_version: str
    judge_model_id: str
    judge_score: int | None = None  # 1-10 from the LLM judge
    judge_reason: str | None = None
    # How much a reference (knowledge passage, approved answer) raises the answer's mean token
    # log-probability: supported answers gain, invented ones do not. NULL without a reference.
    grounding: float | None = None
    mean_logprob: float | None = None
    min_logprob: float | None = None
    consistency: float | None = None  # 0-1 agreement with resampled answers
    # 0-1 agreement of the answer with the reference's text (1 = says the same); NULL without one
    agreement: float | None = None
    # Where the reference came from, for the badge's hover: {"kind": "correction"|"approved"|
    # "documents", "exchange_id", "at", "excerpt", "chunks": [ids]}; NULL without one.
    reference: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    calibration_id: int | None = None  # the fitted weights used; NULL: the configured ones
    injection: bool = False  # the answer or question tried to steer the judge
    score: float  # combined, 0-1
    flagged: bool = Field(default=False, index=True)
    reason: str  # why flagged (or why not), for the badge and the Review tab
    seconds: dict[str, float] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, index=True)


class Calibration(SQLModel, table=True):
    """One fit of the grading signals' weights to the user's thumbs (a version per row).

    `adopted` rows are used by the grader, the newest first; a fit that did not beat the weights
    in use on held-out thumbs is kept too, so the dashboard can show that it was tried.
    """

    __tablename__ = "calibrations"
    id: int | None = Field(default=None, primary_key=True)
    ratings: int  # exchanges with both a grade and a thumbs that the fit saw
    auroc_before: float | None = None  # the weights in use, cross-validated on the same folds
    auroc_after: float | None = None  # the fitted weights
    weights: dict[str, float] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    threshold: float
    adopted: bool = Field(default=False, index=True)
    reason: str
    created_at: datetime = Field(default_factory=utcnow, index=True)


class Document(SQLModel, table=True):
    """A file the user gave as knowledge: answers are grounded in its chunks and graded against
    them. `sha256` is of the file's bytes: adding the same bytes again changes nothing."""

    __tablename__ = "documents"
    __table_args__ = {"sqlite_autoincrement": True}
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    name: str = Field(index=True)  # the file name as shown (control characters removed)
    kind: str  # txt, md, pdf, html, docx
    sha256: str = Field(index=True)
    size_bytes: int
    chunks: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class DocumentChunk(SQLModel, table=True):
    """One passage of a document, as retrieved into a prompt (its vector is in Chroma)."""

    __tablename__ = "document_chunks"
    # Ids are never reused: a vector left behind by a crash can never point at another text.
    __table_args__ = {"sqlite_autoincrement": True}
    id: int | None = Field(default=None, primary_key=True)
    document_id: int = Field(foreign_key="documents.id", index=True)
    seq: int  # order within the document
    text: str
    page: int | None = None  # PDFs: the page it starts on (1-based)


class ExchangeSource(SQLModel, table=True):
    """A document chunk put into an exchange's prompt, numbered as the answer may cite it."""

    __tablename__ = "exchange_sources"
    id: int | None = Field(default=None, primary_key=True)
    exchange_id: int = Field(foreign_key="exchanges.id", index=True)
    chunk_id: int = Field(foreign_key="document_chunks.id", index=True)
    number: int  # [1], [2], ... in the prompt
    similarity: float


class GradingJob(SQLModel, table=True):
    """One exchange waiting to be graded. Lives in the database so a restart loses no work."""

    __tablename__ = "grading_jobs"
    id: int | None = Field(default=None, primary_key=True)
    exchange_id: int = Field(foreign_key="exchanges.id", unique=True, index=True)
    status: str = Field(default="pending", index=True)  # pending, running, done, failed
    attempts: int = 0
    last_error: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Review(SQLModel, table=True):
    """A person's decision on a flagged exchange: confirm (a hallucination), dismiss, or correct."""

    __tablename__ = "reviews"
    id: int | None = Field(default=None, primary_key=True)
    exchange_id: int = Field(foreign_key="exchanges.id", index=True)
    decision: str  # confirm, dismiss, correct
    correction: str | None = None
    reviewer: str
    created_at: datetime = Field(default_factory=utcnow)


class PoolEntry(SQLModel, table=True):
    """An exchange as the training pool sees it: its verdict, provenance and PII-masked text.

    `status`: `train` (eligible), `flagged` (likely hallucination), `neutral`, or, for answers
    that would be eligible but are kept out, `duplicate` (of `duplicate_of`) and `capped` (its
    user already holds the maximum share of the pool). `source`: `human_written` (a
    correction), `human_approved` (thumbs up) or `model_only` (self-graded). `completion` is the
    answer to train on (the correction when there is one); `original` the model's answer then.
    All text here is PII-masked; the conversation tables keep what was really said.
    """

    __tablename__ = "pool_entries"
    id: int | None = Field(default=None, primary_key=True)
    exchange_id: int = Field(foreign_key="exchanges.id", unique=True, index=True)
    conversation_id: int
    user_id: int = Field(index=True)
    status: str = Field(index=True)
    source: str = Field(index=True)
    score: float
    reason: str
    rating: int = 0
    grade_score: float | None = None
    # The turns before this one (masked), as {"role", "content"} dicts, so a follow-up question
    # such as "and why?" is trained on with what it follows.
    context: list[dict] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    prompt: str
    completion: str
    original: str | None = None
    pii_masked: int = 0
    duplicate_of: int | None = None
    model_id: str
    adapter_id: str | None = None
    grader_version: str | None = None
    exchange_at: datetime = Field(index=True)
    updated_at: datetime = Field(default_factory=utcnow)


class Forgotten(SQLModel, table=True):
    """A deleted conversation's exchange ids, kept so no future training set can include them."""

    __tablename__ = "forgotten"
    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(index=True)
    exchange_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class RefreshRun(SQLModel, table=True):
    """One `autodidact refresh`: what it trained on, how far it got, and what it measured.

    `status`: running, refused (a guard said no, before training), rejected (trained, but the
    candidate regressed; kept on disk), promoted, failed (an error; `reason` says which), or
    interrupted (the process died; found on the next start). `step` is the last step begun.
    """

    __tablename__ = "refresh_runs"
    id: int | None = Field(default=None, primary_key=True)
    adapter_id: str = Field(unique=True, index=True)
    base_model: str
    parent_adapter_id: str | None = None  # active when the run started
    status: str = Field(default="running", index=True)
    step: str = "select"
    reason: str | None = None
    dry_run: bool = False
    forced: bool = False
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    metrics: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class TrainedOn(SQLModel, table=True):
    """An exchange in a run's training mix (the mix accumulates across runs)."""

    __tablename__ = "trained_on"
    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="refresh_runs.id", index=True)
    exchange_id: int = Field(index=True)


class Heldout(SQLModel, table=True):
    """An exchange in the fixed evaluation split: never trained on, once chosen."""

    __tablename__ = "heldout"
    id: int | None = Field(default=None, primary_key=True)
    exchange_id: int = Field(unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow)


class Lesson(SQLModel, table=True):
    """A training example the model wrote from something a person taught (its parent: a
    human-written or human-approved pool entry), graded against the parent's words.

    `kind`: `question` (the parent's answer to the model's rewording of its question) or
    `answer` (the model's restatement of the parent's answer to its question). `status`: `kept`
    (passed the grade; trained on while the parent stands), `rejected` (the grade or a check
    failed; `reason` says which), `duplicate` (of a kept sibling or the parent) or `withdrawn`
    (its parent changed, left the pool or was deleted). `parent_key` is a hash of the parent's
    question and answer when the lesson was written: a corrected parent gets new lessons. The
    pool shows kept lessons as source `synthetic`; they are never parents themselves.
    """

    __tablename__ = "lessons"
    id: int | None = Field(default=None, primary_key=True)
    parent_exchange_id: int = Field(index=True)
    parent_key: str
    user_id: int = Field(index=True)  # the parent's owner
    kind: str
    status: str = Field(index=True)
    reason: str
    prompt: str  # PII-masked, as the parent's
    completion: str
    score: float | None = None  # the grader's combined score
    agreement: float | None = None  # with the parent's answer
    grounding: float | None = None
    judge_score: int | None = None
    similarity: float | None = None  # of the lesson's question to the parent's
    model_id: str  # the model that wrote it
    adapter_id: str | None = None
    grader_version: str | None = None
    created_at: datetime = Field(default_factory=utcnow, index=True)
