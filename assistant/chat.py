"""The chat service: turns a user's message into a stored, streamed answer.

Owns the conversation flow: validating input, building the prompt with LangChain (system prompt,
history trimmed to fit the context window, the new message), running the model in a background
thread, and storing every turn in the order that never loses one. It does not know about Gradio
(assistant/web/chat_tab.py renders what it yields) nor about llama.cpp (it talks to a `ChatModel`).

Generation runs in its own thread so that a browser that goes away, or a Stop click, can never
leave an answer unstored: the thread owns the exchange from start to finish.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from assistant.answers import Conversations
from assistant.limits import RateLimiter
from assistant.llm.base import ChatModel
from assistant.prompt import ChatRefused, Prompt, PromptBuilder
from assistant.settings import Settings
from store.accounts import Account
from store.conversations import ConversationStore, Turn
from store.knowledge import Source

if TYPE_CHECKING:
    from feedback.knowledge.library import Hit, Library
    from feedback.pool.curator import Curator, Example

log = logging.getLogger(__name__)


def _reason(exc: Exception) -> str:
    """The database driver's own words, without SQLAlchemy's statement dump."""
    from store.conversations import plain_reason

    return plain_reason(exc)


def title_from(message: str, limit: int = 48) -> str:
    """A conversation title from its first message: one line, at most `limit` characters.

    >>> title_from("  What is   the capital\\nof France?  ")
    'What is the capital of France?'
    >>> title_from("x" * 60, limit=10)
    'xxxxxxxxx…'
    >>> title_from("   ")
    'New chat'
    """
    words = " ".join(message.split())
    if not words:
        return "New chat"
    return words if len(words) <= limit else words[: limit - 1] + "…"


@dataclass(frozen=True)
class Reply:
    """A snapshot of an answer being generated, as the UI and the API show it."""

    conversation_id: int
    exchange_id: int
    text: str = ""
    status: str = "generating"  # then: completed, stopped, failed
    error: str | None = None
    history_dropped: int = 0
    notices: tuple[str, ...] = field(default_factory=tuple)
    examples: tuple[Example, ...] = field(default_factory=tuple)  # past exchanges shown
    sources: tuple[Source, ...] = field(default_factory=tuple)  # document passages given

    @property
    def done(self) -> bool:
        return self.status != "generating"


class TooFast(ChatRefused):
    """Over the message rate limit: `retry_after` seconds until the next may be sent."""

    def __init__(self, text: str, retry_after: float):
        super().__init__(text)
        self.retry_after = retry_after


class ChatService(Conversations):
    """The chat flow; what a user does with conversations and answers is `Conversations`'s."""

    def __init__(
        self,
        store: ConversationStore,
        model: ChatModel,
        settings: Settings,
        curator: Curator | None = None,
        library: Library | None = None,
    ):
        self.store = store
        self.model = model
        self.settings = settings
        self.curator = curator  # the training pool; None: ratings are stored, nothing curated
        self.library = library  # the knowledge documents; None: answers are not grounded
        # The user of in-process callers (the CLI, tests) that pass no account: trusted, and
        # the only user when the app runs on loopback without accounts. Web events always pass
        # the caller's account, and each method then checks that the data is theirs.
        self.user = store.user(settings.user)
        self.limiter = RateLimiter(settings.rate_limit_messages, settings.rate_limit_window_s)
        self._active: dict[int, threading.Event] = {}
        self._active_lock = threading.Lock()
        # Set while no answer is being generated: the background grader waits for it.
        self.idle = threading.Event()
        self.idle.set()
        self.last_activity = 0.0  # time.monotonic() of the last generation start or end
        self._generating = 0
        # Callables run before an answer's exchange is created: the adapter watcher swaps in a
        # newly promoted adapter there, so the exchange records the adapter that answers it.
        self.before_generation: list = []
        self.on_generation_start: list = []  # callables; the grader's preempt
        self.on_answer_stored: list = []  # callables taking the exchange id; the grader's wake
        self.on_rated: list = []  # callables taking the exchange id; the calibration's check

    def examples_for(
        self, message: str, conversation_id: int | None, account: Account | None = None
    ) -> list[Example]:
        """Past exchanges like the message: the user's own, and other users' only when a
        human approved them (masked), unless `retrieval_share_approved` is off."""
        if self.curator is None or not self.settings.retrieval:
            return []
        try:
            found = self.curator.examples(
                message,
                self.settings.retrieval_examples,
                self.settings.retrieval_min_similarity,
                exclude_conversation=conversation_id,
                user_id=self.user_id(account),
            )
        except Exception:  # retrieval is a help, never a reason to refuse a message
            log.exception("retrieval failed; answering without examples")
            return []
        return found

    def passages_for(self, message: str, account: Account | None = None) -> list[Hit]:
        """Knowledge passages like the message (best first), above the similarity threshold,
        from the asking user's own documents."""
        if self.library is None or not self.settings.knowledge:
            return []
        try:
            return self.library.search(message, user_id=self.user_id(account))
        except Exception:  # grounding is a help, never a reason to refuse a message
            log.exception("knowledge search failed; answering without documents")
            return []

    def sources(self, exchange_ids: list[int]) -> dict[int, list[Source]]:
        """The document passages each exchange was given (gone once a document is removed)."""
        if self.library is None or not exchange_ids:
            return {i: [] for i in exchange_ids}
        return self.library.store.sources(list(exchange_ids))

    # the prompt
    def validate(self, message: str) -> None:
        if not isinstance(message, str) or not message.strip():
            raise ChatRefused("Type a message first: an empty message cannot be sent.")
        if len(message) > self.settings.max_message_chars:
            raise ChatRefused(
                f"That message is {len(message):,} characters; the limit is "
                f"{self.settings.max_message_chars:,}. Shorten it or send it in parts."
            )

    def check_earlier(self, earlier) -> None:
        """Earlier turns a client brings are kept like messages: each within the message
        limit, all of them within four times it."""
        limit = self.settings.max_message_chars
        total = sum(len(user) + len(answer or "") for user, answer in earlier)
        if any(len(text or "") > limit for turn in earlier for text in turn) or total > 4 * limit:
            raise ChatRefused(
                f"The earlier turns are too long ({total:,} characters): each may be at most "
                f"{limit:,} characters, all of them {4 * limit:,}."
            )

    def build_prompt(
        self,
        history: list[Turn],
        message: str,
        examples: list[Example] = (),
        passages: list[Hit] = (),
        answer_tokens: int | None = None,
    ) -> Prompt:
        """The prompt for `message` after `history` (assistant/prompt.py); ChatRefused if the
        message alone does not fit."""
        builder = PromptBuilder(self.model, self.settings)
        return builder.build(history, message, examples, passages, answer_tokens)

    # generating
    def send(
        self,
        conversation_id: int | None,
        message: str,
        account: Account | None = None,
        sampling: dict | None = None,
        earlier: list[tuple[str, str]] = (),
    ) -> Iterator[Reply]:
        """Store `message` in the conversation (a new one if None) and stream the answer.

        `sampling` overrides the settings' sampling for this answer (the OpenAI-compatible
        API's temperature, max_tokens, stop...). `earlier`: for a new conversation, turns
        (user, answer) a client brings along; stored before the message as plain messages,
        never as exchanges of this server (store/conversations.py `start_conversation`)."""
        self.validate(message)
        if conversation_id and earlier:
            raise ValueError("earlier turns only start a new conversation")
        self.check_earlier(earlier)
        if conversation_id:
            self.check_conversation(conversation_id, account)
            self.store.conversation(conversation_id)  # raises NotFound for a bad id
        self._limit(account)
        self._announce()
        if conversation_id:
            history = self.store.turns(conversation_id)
        else:
            history = [Turn(0, user, None, answer, None) for user, answer in earlier]
        prompt = self.build_prompt(
            history,
            message,
            self.examples_for(message, conversation_id, account),
            self.passages_for(message, account),
            (sampling or {}).get("max_tokens"),
        )
        try:
            if conversation_id:
                user_msg = self.store.add_user_message(conversation_id, message)
            else:
                first = earlier[0][0] if earlier else message
                user_msg = self.store.start_conversation(
                    self.user_id(account), title_from(first), message, list(earlier)
                )
        except SQLAlchemyError as exc:
            raise ChatRefused(
                f"Your message could not be saved ({_reason(exc)}), so it was not sent to the "
                "model. Free some disk space and send it again."
            ) from exc
        return self._generate(user_msg.conversation_id, user_msg.id, prompt, None, sampling or {})

    def regenerate(
        self, conversation_id: int, account: Account | None = None, sampling: dict | None = None
    ) -> Iterator[Reply]:
        """A new answer to the conversation's last message; the old one is kept as superseded."""
        self.check_conversation(conversation_id, account)
        history = self.store.turns(conversation_id)
        if not history:
            raise ChatRefused("There is no answer to regenerate yet.")
        self._limit(account)
        self._announce()
        last = history[-1]
        examples = self.examples_for(last.user, conversation_id, account)
        passages = self.passages_for(last.user, account)
        answer_tokens = (sampling or {}).get("max_tokens")
        prompt = self.build_prompt(history[:-1], last.user, examples, passages, answer_tokens)
        return self._generate(
            conversation_id, last.user_message_id, prompt, last.exchange_id, sampling or {}
        )

    def _announce(self) -> None:
        """A message is on its way: background work gives the model (and the cores) up now,
        while the prompt is built and the message stored, not once generation starts. Marking
        activity keeps the grader from starting again in between (it waits for a quiet spell);
        generation start preempts it once more in any case."""
        with self._active_lock:
            self.last_activity = time.monotonic()
        for hook in self.on_generation_start:
            hook()

    def _limit(self, account: Account | None) -> None:
        """ChatRefused when the account sent more than `rate_limit_messages` messages within
        `rate_limit_window_s` (web callers only; in-process callers are not limited)."""
        if account is None:
            return
        wait = self.limiter.wait(account.id)
        if wait > 0:
            raise TooFast(
                f"You are sending messages too fast: at most {self.limiter.limit} per "
                f"{self.limiter.window:g} s. Try again in {wait:.0f} s.",
                wait,
            )

    def stop(self, conversation_id: int, account: Account | None = None) -> bool:
        self.check_conversation(conversation_id, account)
        with self._active_lock:
            cancel = self._active.get(conversation_id)
        if cancel:
            cancel.set()
        return cancel is not None

    def _generate(
        self, conversation_id, user_message_id, prompt: Prompt, regenerated_from, overrides=None
    ):
        for hook in self.before_generation:
            hook()
        sampling = {**self.settings.sampling(), **(overrides or {})}
        if sampling["seed"] < 0:
            # Drawn here rather than left to the sampler so every stored answer can be replayed.
            sampling["seed"] = random.randrange(2**31)
        exchange = self.store.start_exchange(
            conversation_id,
            user_message_id,
            model_id=self.model.model_id,
            adapter_id=self.model.adapter_id,
            sampling=sampling,
            regenerated_from_id=regenerated_from,
            history_dropped=prompt.dropped,
            prompt_tokens=prompt.tokens,
            retrieved=[e.exchange_id for e in prompt.examples],
            sources=[(src.chunk_id, src.number, src.similarity) for src in prompt.sources],
        )
        cancel = threading.Event()
        with self._active_lock:
            self._generating += 1
            self.idle.clear()
            self.last_activity = time.monotonic()
            previous = self._active.get(conversation_id)
            if previous:
                previous.set()
            self._active[conversation_id] = cancel
        notices = ()
        if prompt.dropped:
            notices = (
                f"{prompt.dropped} older message(s) were left out so the conversation fits the "
                f"model's {self.model.context_window:,}-token context.",
            )
        start = Reply(
            conversation_id,
            exchange.id,
            history_dropped=prompt.dropped,
            notices=notices,
            examples=prompt.examples,
            sources=prompt.sources,
        )
        for hook in self.on_generation_start:
            hook()
        events: queue.Queue = queue.Queue()
        worker = threading.Thread(
            target=self._run,
            args=(start, prompt, sampling, cancel, events),
            daemon=True,
            name="generate",
        )
        worker.start()
        return self._follow(start, cancel, events)

    def _follow(
        self, reply: Reply, cancel: threading.Event, events: queue.Queue
    ) -> Iterator[Reply]:
        """Snapshots of the reply as tokens arrive, at most one per `stream_interval_ms`.

        The first token goes out at once. After that, tokens that arrive within the interval
        share one update: every update costs the web server CPU that the model's threads need,
        and a person cannot tell 50 ms batches from single tokens.
        """
        interval = self.settings.stream_interval_ms / 1000
        yield reply
        last_yield = 0.0
        try:
            while True:
                pieces = [events.get()]
                deadline = last_yield + interval
                while not isinstance(pieces[-1], Reply):
                    wait = deadline - time.perf_counter()
                    try:
                        pieces.append(events.get(timeout=wait) if wait > 0 else events.get_nowait())
                    except queue.Empty:
                        break
                done = pieces.pop() if isinstance(pieces[-1], Reply) else None
                if pieces:
                    reply = replace(reply, text=reply.text + "".join(pieces))
                    yield reply
                    last_yield = time.perf_counter()
                if done is not None:
                    yield done
                    return
        finally:
            # The reader went away (browser closed, client disconnected): stop the model; the
            # worker still stores what was generated, marked stopped.
            cancel.set()

    def _run(self, reply: Reply, prompt: Prompt, sampling, cancel: threading.Event, events):
        start = time.perf_counter()
        first_token_ms = None
        parts: list[str] = []
        status, error, completion_tokens, finish_reason = "completed", None, None, None
        try:
            for delta in self.model.stream(prompt.messages, sampling, cancel):
                if delta.text:
                    if first_token_ms is None:
                        first_token_ms = (time.perf_counter() - start) * 1000
                    parts.append(delta.text)
                    events.put(delta.text)
                if delta.completion_tokens is not None:
                    completion_tokens = delta.completion_tokens
                finish_reason = delta.finish_reason or finish_reason
            if cancel.is_set():
                status = "stopped"
            # Not after a client's stop sequences (it shapes the text) or an answer cut off at
            # max_tokens (it may end inside a code block).
            elif not sampling.get("stop") and finish_reason != "length":
                extra = self._restatement("".join(parts), prompt)
                if extra:
                    parts.append(extra)
                    events.put(extra)
        except Exception as exc:  # the model failed: keep what came, say why
            status, error = "failed", f"{type(exc).__name__}: {exc}"
        text = "".join(parts)
        try:
            self.store.finish_exchange(
                reply.exchange_id,
                text,
                status,
                error=error,
                finish_reason=finish_reason,
                completion_tokens=completion_tokens,
                first_token_ms=first_token_ms,
                latency_ms=(time.perf_counter() - start) * 1000,
                enqueue_grading=status in ("completed", "stopped") and bool(text.strip()),
            )
        except Exception as exc:  # the store marked the exchange failed, if even that fit
            status, error = "failed", _reason(exc)  # "the answer could not be saved (...)"
        finally:
            with self._active_lock:
                if self._active.get(reply.conversation_id) is cancel:
                    del self._active[reply.conversation_id]
                self._generating -= 1
                self.last_activity = time.monotonic()
                if not self._generating:
                    self.idle.set()
            events.put(replace(reply, text=text, status=status, error=error))
            if status != "failed":
                for hook in self.on_answer_stored:
                    hook(reply.exchange_id)

    def _restatement(self, answer: str, prompt: Prompt) -> str:
        """The taught answer the answer ignored, to go under it (feedback/pool/memory.py
        `restatement`); "" when it used what it was taught, or nothing was taught."""
        if not (self.settings.retrieval_restate and prompt.examples and answer.strip()):
            return ""
        from feedback.pool.english import ENGLISH, UNCOMMON
        from feedback.pool.memory import restatement

        try:
            return restatement(
                answer,
                prompt.message,
                prompt.examples,
                ENGLISH,
                UNCOMMON,
                self.settings.retrieval_restate_similarity,
            )
        except Exception:  # a help, never a reason to lose an answer
            log.exception("checking the answer against what was taught failed")
            return ""

    def quiet_for(self) -> float:
        """Seconds since an answer was last being generated (0 while one is)."""
        if not self.idle.is_set():
            return 0.0
        return time.monotonic() - self.last_activity

    def is_generating(self, conversation_id: int) -> bool:
        with self._active_lock:
            return conversation_id in self._active
