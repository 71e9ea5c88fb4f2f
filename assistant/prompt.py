"""The prompt: system message (with numbered document passages), retrieved examples, as much
recent history as fits, and the new message, built with LangChain and counted in tokens.

Owns what goes into the model's context and in what order, within the context window and each
part's token budget. It does not choose the passages or the examples (the knowledge library and
the curator do) nor run the model (assistant/chat.py does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, trim_messages
from langchain_core.messages.utils import convert_to_openai_messages
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder

from assistant.llm.base import ChatModel, Messages
from assistant.settings import Settings
from feedback.pool.memory import taught_block, taught_message
from store.conversations import Turn
from store.knowledge import Source
from store.restated import model_words

if TYPE_CHECKING:
    from feedback.knowledge.library import Hit
    from feedback.pool.curator import Example

PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", "{system}"),
        MessagesPlaceholder("examples"),
        MessagesPlaceholder("history"),
        ("human", "{message}"),
    ]
)
SOURCES_INTRO = (
    "Passages from the user's documents follow. Use them when they answer the question and "
    "cite them by number, like [1]."
)


def passages_block(sources: list[Source]) -> str:
    """The numbered passages as the system prompt shows them.

    >>> print(passages_block([Source(1, 7, 2, "a.pdf", 3, "Ada was born in 1815.", 0.8)]))
    Passages from the user's documents follow. Use them when they answer the question and cite them by number, like [1].
    <BLANKLINE>
    [1] a.pdf, page 3:
    Ada was born in 1815.
    """
    parts = [SOURCES_INTRO]
    for s in sources:
        where = f"{s.document}, page {s.page}" if s.page else s.document
        parts.append(f"[{s.number}] {where}:\n{s.text.strip()}")
    return "\n\n".join(parts)


class ChatRefused(ValueError):
    """The message was not accepted; nothing was stored. The text is shown to the user."""


class TooLong(ChatRefused):
    """The message alone does not fit the context beside room for the answer: its token
    counts, for callers that report them (the OpenAI-compatible API's 400)."""

    def __init__(self, text: str, tokens: int, context_window: int, answer_tokens: int):
        super().__init__(text)
        self.tokens, self.context_window, self.answer_tokens = tokens, context_window, answer_tokens


@dataclass
class Prompt:
    messages: Messages
    tokens: int
    dropped: int
    examples: tuple[Example, ...] = ()
    sources: tuple[Source, ...] = ()
    message: str = ""  # the user's message, as typed


class PromptBuilder:
    """Builds prompts for one model under the current settings."""

    def __init__(self, model: ChatModel, settings: Settings):
        self.model = model
        self.settings = settings

    def build(
        self,
        history: list[Turn],
        message: str,
        examples: list[Example] = (),
        passages: list[Hit] = (),
        answer_tokens: int | None = None,
    ) -> Prompt:
        """System prompt (with numbered document passages) + retrieved examples + as much
        recent history as fits + the message, leaving `answer_tokens` (default: the
        `max_tokens` setting) for the answer.

        Passages take at most `knowledge_max_tokens`, examples (past exchanges from the training
        pool: what people taught where `retrieval_taught_in` puts it, others as earlier turns)
        at most `retrieval_max_tokens`; neither crowds out the message itself. Raises ChatRefused if the new message alone does not fit beside room
        for an answer.
        """
        reserved = self.settings.max_tokens if answer_tokens is None else answer_tokens
        budget = self.model.context_window - reserved
        past: list[BaseMessage] = []
        for turn in history:
            past.append(HumanMessage(turn.user))
            if turn.assistant:  # what the model said, never a correction restated under it
                past.append(AIMessage(model_words(turn.assistant)))
        system = self.settings.system_prompt
        alone = self._render(system, [], [], message)
        needed = self.model.count_tokens(alone)
        if needed > budget:
            raise TooLong(
                f"That message is too long for the model: it takes {needed:,} tokens, and the "
                f"context window holds {self.model.context_window:,} including "
                f"{reserved:,} kept for the answer. Shorten it.",
                needed,
                self.model.context_window,
                reserved,
            )
        sources = self._fit_passages(system, passages, budget - needed)
        if sources:
            system = f"{system}\n\n{passages_block(sources)}"
            alone = self._render(system, [], [], message)
            needed = self.model.count_tokens(alone)
        room = min(self.settings.retrieval_max_tokens, budget - needed)
        typed = message
        if self.settings.retrieval_taught_in == "message":
            taught, message, spent = self._fit_taught_message(message, examples, room)
        else:
            taught, system, spent = self._fit_taught(system, examples, room)
        if taught:
            needed = self.model.count_tokens(self._render(system, [], [], message))
            room -= spent
        shown, turns = self._fit_turns(examples, taught, room)
        used = [*taught, *turns]
        alone = self._render(system, [], [], message)
        if shown:
            needed = self.model.count_tokens(self._render(system, shown, [], message))
        if not past:
            messages = self._render(system, shown, [], message) if shown else alone
            return Prompt(messages, needed, 0, tuple(used), tuple(sources), typed)
        kept = trim_messages(
            past,
            max_tokens=budget - needed,
            token_counter=self._history_tokens,
            strategy="last",
            start_on="human",
            allow_partial=False,
        )
        messages = self._render(system, shown, kept, message)
        dropped = len(past) - len(kept)
        tokens = self.model.count_tokens(messages)
        return Prompt(messages, tokens, dropped, tuple(used), tuple(sources), typed)

    def _fit_turns(
        self, examples: list[Example], placed: list[Example], room: int
    ) -> tuple[list[BaseMessage], list[Example]]:
        """The examples not `placed` already, as earlier turns, best first, within `room`
        tokens: the messages and the examples they show."""
        shown: list[BaseMessage] = []
        used: list[Example] = []
        for example in examples:
            # A taught answer goes where `retrieval_taught_in` says or not at all: one that did
            # not fit there is not shown another way.
            if example in placed or (
                example.taught and self.settings.retrieval_taught_in != "turns"
            ):
                continue
            pair = [HumanMessage(example.prompt), AIMessage(example.completion)]
            if self._history_tokens(shown + pair) > room:
                break
            shown += pair
            used.append(example)
        return shown, used

    def _fit_taught(
        self, system: str, examples: list[Example], room: int
    ) -> tuple[list[Example], str, int]:
        """What people taught, as a block in the system message (`retrieval_taught_in`
        "system"), newest first, within `room` tokens: the examples placed, the system message
        with the block, the tokens it took."""
        if self.settings.retrieval_taught_in != "system" or room <= 0:
            return [], system, 0
        taught = [e for e in examples if e.taught]
        taught.sort(key=lambda e: e.taught_at.timestamp() if e.taught_at else 0.0, reverse=True)

        def block(chosen: list[Example]) -> str:
            items = [(e.taught_at, e.prompt, e.completion) for e in chosen]
            return f"{system}\n\n{taught_block(items)}"

        return self._fit_items("system", system, taught, block, room)

    def _fit_taught_message(
        self, message: str, examples: list[Example], room: int
    ) -> tuple[list[Example], str, int]:
        """What people taught, in front of the user's message as facts to answer from
        (`retrieval_taught_in` "message"), best match first, within `room` tokens: the examples
        placed, the message as the model sees it, the tokens it took."""
        if room <= 0:
            return [], message, 0
        taught = [e for e in examples if e.taught]
        return self._fit_items(
            "user",
            message,
            taught,
            lambda chosen: taught_message([(e.prompt, e.completion) for e in chosen], message),
            room,
        )

    def _fit_items(self, role: str, text: str, items: list, render, room: int):
        """As many of `items` as `render(items so far)` fits in `room` more tokens than `text`
        alone, as a `role` message: (items placed, the rendered text, the tokens it added)."""
        base = self.model.count_tokens([{"role": role, "content": text}])
        placed, out, spent = [], text, 0
        for item in items:
            candidate = render([*placed, item])
            cost = self.model.count_tokens([{"role": role, "content": candidate}]) - base
            if cost > room:
                break
            placed.append(item)
            out, spent = candidate, cost
        return placed, out, spent

    def _fit_passages(self, system: str, passages: list[Hit], room: int) -> list[Source]:
        """The best passages whose block fits in `knowledge_max_tokens` (and `room`)."""
        room = min(self.settings.knowledge_max_tokens, room)
        if not passages or room <= 0:
            return []
        base = self.model.count_tokens([{"role": "system", "content": system}])
        sources: list[Source] = []
        for hit in passages:
            candidate = Source(
                len(sources) + 1,
                hit.chunk_id,
                hit.document_id,
                hit.document,
                hit.page,
                hit.text,
                hit.similarity,
            )
            block = f"{system}\n\n{passages_block([*sources, candidate])}"
            if self.model.count_tokens([{"role": "system", "content": block}]) - base > room:
                break
            sources.append(candidate)
        return sources

    @staticmethod
    def _render(system: str, examples: list, history: list, message: str) -> Messages:
        value = PROMPT.invoke(
            {"system": system, "examples": examples, "history": history, "message": message}
        )
        return convert_to_openai_messages(value.to_messages())

    def _history_tokens(self, msgs: list[BaseMessage]) -> int:
        if not msgs:
            return 0
        # Counted through the chat template, so the per-message markup is included.
        return self.model.count_tokens(convert_to_openai_messages(msgs))
