"""The Chat tab and the conversation sidebar: what a person types into and reads.

Owns their components, their events and how a conversation is rendered (answers with their
grade badge, notices under the chat). Every decision (what is valid, what is stored, how the
prompt is built) belongs to the chat service; this module renders its `Reply` snapshots.
"""

from __future__ import annotations

import html
from collections.abc import Iterator

import gradio as gr

from assistant.chat import ChatRefused, ChatService, Reply, title_from
from assistant.web.common import MODEL, PRIVATE, no_remote_images
from assistant.web.gate import Guard
from assistant.web.rating_panel import RatingPanel
from store.conversations import NOT_SAVED, NotFound, Turn
from store.grading import GradingStore
from store.knowledge import Source
from store.tables import Grade

STATUS_NOTES = {
    "stopped": "Generation stopped. The partial answer is saved.",
    "failed": "The model failed while answering: {error}. What it wrote so far is saved.",
}
# A failed store, not a failed model: the answer is on screen only.
UNSAVED_NOTE = "{error}. It stays on screen until you leave: copy it if you want to keep it."
FEEDBACK = {1: "Like", -1: "Dislike", 0: None}


def badge(grade: Grade | None) -> str:
    """The small mark under a graded answer; the reason shows on hover.

    >>> badge(None)
    ''
    >>> g = Grade(exchange_id=1, grader_version="v", judge_model_id="m", judge_score=8, score=0.8, flagged=False, reason="fine")
    >>> badge(g)
    '\\n\\n<span class="grade" title="fine">self-grade 8/10</span>'
    >>> badge(g.model_copy(update={"flagged": True, "judge_score": 2, "reason": 'says "Berlin"'}))
    '\\n\\n<span class="grade flagged" title="says &quot;Berlin&quot;">⚠ possible hallucination · self-grade 2/10</span>'
    """
    if grade is None:
        return ""
    label = (
        f"self-grade {grade.judge_score}/10" if grade.judge_score else f"score {grade.score:.2f}"
    )
    if grade.flagged:
        label = f"⚠ possible hallucination · {label}"
    css = "grade flagged" if grade.flagged else "grade"
    return f'\n\n<span class="{css}" title="{html.escape(grade.reason)}">{label}</span>'


def sources_html(sources: list[Source]) -> str:
    """The passages an answer was given, under it: file and passage, each expandable.

    >>> print(sources_html([Source(1, 7, 2, "a<b>.pdf", 3, "Ada was born in 1815.", 0.81)]))
    <BLANKLINE>
    <BLANKLINE>
    <details class="sources"><summary>Sources: [1] a&lt;b&gt;.pdf p. 3</summary>
    <details class="source"><summary>[1] a&lt;b&gt;.pdf, page 3 · similarity 0.81</summary>
    <blockquote>Ada was born in 1815.</blockquote></details>
    </details>
    >>> sources_html([])
    ''
    """
    if not sources:
        return ""

    def where(s: Source, sep: str) -> str:
        page = f"{sep}{s.page}" if s.page else ""
        return html.escape(s.document) + page

    summary = ", ".join(f"[{s.number}] {where(s, ' p. ')}" for s in sources)
    items = "".join(
        f'\n<details class="source"><summary>[{s.number}] {where(s, ", page ")} · '
        f"similarity {s.similarity:.2f}</summary>\n"
        f"<blockquote>{html.escape(' '.join(s.text.split()))}</blockquote></details>"
        for s in sources
    )
    return f'\n\n<details class="sources"><summary>Sources: {summary}</summary>{items}\n</details>'


def render(
    turns: list[Turn],
    grades: dict[int, Grade] | None = None,
    sources: dict[int, list[Source]] | None = None,
) -> tuple[list[dict], list[int | None]]:
    """Chatbot messages for the turns, and the exchange id behind each message (None for users).

    >>> render([Turn(1, "hi", 7, "hello", "completed"), Turn(3, "again", None, None, None)])
    ([{'role': 'user', 'content': 'hi'}, {'role': 'assistant', 'content': 'hello'}, {'role': 'user', 'content': 'again'}], [None, 7, None])
    """
    grades, sources = grades or {}, sources or {}
    messages, ids = [], []
    for turn in turns:
        messages.append({"role": "user", "content": no_remote_images(turn.user)})
        ids.append(None)
        if turn.exchange_id is not None:
            text = (
                no_remote_images(turn.assistant or "")
                + sources_html(sources.get(turn.exchange_id, []))
                + badge(grades.get(turn.exchange_id))
            )
            messages.append({"role": "assistant", "content": text})
            ids.append(turn.exchange_id)
    return messages, ids


def rating_value(liked) -> int:
    """Gradio's like payload as a stored rating: +1, -1, or 0 when a click is taken back.

    >>> [rating_value(v) for v in (True, False, "Like", "Dislike", None, "")]
    [1, -1, 1, -1, 0, 0]
    """
    if liked is True or liked == "Like":
        return 1
    if liked is False or liked == "Dislike":
        return -1
    return 0


def _title(e) -> str:
    return f"#{e.exchange_id} “{title_from(e.prompt, 60)}”"


def _drawn(e) -> str:
    if e.shared:  # another user's exchange: neither its id nor its question is theirs to see
        return f"a reviewed answer from another user (similarity {e.similarity:.2f})"
    if e.taught:
        when = f" of {e.taught_at:%-d %b %Y}" if e.taught_at else ""
        return f"what you taught{when}: {_title(e)} → “{title_from(e.completion, 80)}”"
    return f"{_title(e)} (similarity {e.similarity:.2f})"


def examples_note(reply: Reply) -> str:
    """Which past exchanges the answer drew on, for the notice under the chat.

    >>> from datetime import datetime
    >>> from feedback.pool.curator import Example
    >>> examples_note(Reply(1, 2, examples=(Example(7, 3, "What is 2+2?", "4", 0.91),)))
    'Drew on 1 past answer from the training pool: #7 “What is 2+2?” (similarity 0.91)'
    >>> examples_note(Reply(1, 2, examples=(Example(7, 3, "Secret?", "4", 0.9, shared=True),)))
    'Drew on 1 past answer from the training pool: a reviewed answer from another user (similarity 0.90)'
    >>> taught = Example(9, 4, "Capital of Zorvath?", "Quelmi.", 0.7, taught=True,
    ...     taught_at=datetime(2026, 11, 12))
    >>> examples_note(Reply(1, 2, examples=(taught,)))
    'Drew on 1 past answer from the training pool: what you taught of 12 Nov 2026: #9 “Capital of Zorvath?” → “Quelmi.”'
    """
    if not reply.examples:
        return ""
    shown = "; ".join(_drawn(e) for e in reply.examples)
    n = len(reply.examples)
    return f"Drew on {n} past answer{'s' if n > 1 else ''} from the training pool: {shown}"


def note_for(reply: Reply) -> str:
    notes = list(reply.notices)
    if reply.examples:
        notes.append(examples_note(reply))
    if reply.status in STATUS_NOTES:
        error = reply.error or ""
        if error.startswith(NOT_SAVED):
            notes.append(UNSAVED_NOTE.format(error=error[:1].upper() + error[1:]))
        else:
            notes.append(STATUS_NOTES[reply.status].format(error=reply.error))
    return no_remote_images("\n\n".join(f"ℹ️ {n}" for n in notes))


class Sidebar:
    """The conversation list, its title box and the rename / delete buttons."""

    def __init__(self):
        with gr.Sidebar(label="Conversations", open=True):
            gr.Markdown("### Autodidact")
            self.new_btn = gr.Button("+ New chat", elem_id="new-chat")
            self.conversations = gr.Radio(
                choices=[], label="Conversations", elem_id="conversations", interactive=True
            )
            self.title = gr.Textbox(label="Title", elem_id="title", max_lines=1)
            with gr.Row():
                self.rename_btn = gr.Button("Rename", size="sm", elem_id="rename")
                self.delete_btn = gr.Button("Delete", size="sm", variant="stop", elem_id="delete")
            with gr.Row(visible=False) as self.confirm_row:
                self.confirm_btn = gr.Button(
                    "Yes, delete", size="sm", variant="stop", elem_id="confirm-delete"
                )
                self.cancel_btn = gr.Button("Keep", size="sm", elem_id="cancel-delete")


class ChatTab:
    """The chat itself: built inside a `gr.Tab`, wired to the sidebar by `wire`."""

    def __init__(self, chat: ChatService, grading: GradingStore, guard: Guard):
        self.chat, self.grading, self.guard = chat, grading, guard
        self.conversation = gr.State(None)
        self.exchange_ids = gr.State([])
        self.graded = gr.State([])
        self.chatbot = gr.Chatbot(
            elem_id="chatbot",
            height="70vh",
            label="Chat",
            feedback_options=("Like", "Dislike"),
            buttons=["copy"],
            placeholder="Ask anything. Your chats stay on this machine.",
        )
        self.notice = gr.Markdown(elem_id="notice")
        with gr.Row():
            self.box = gr.Textbox(
                placeholder="Message Autodidact (Enter to send, Shift+Enter for a new line)",
                show_label=False,
                scale=8,
                lines=1,
                max_lines=8,
                elem_id="message",
                autofocus=True,
            )
            self.send_btn = gr.Button("Send", variant="primary", scale=1, elem_id="send")
        with gr.Row():
            self.stop_btn = gr.Button("■ Stop", size="sm", elem_id="stop")
            self.regen_btn = gr.Button("↻ Regenerate", size="sm", elem_id="regenerate")
        self.panel = RatingPanel(chat, guard)

    # rendering
    def who(self, request: gr.Request):
        """The caller's account; a gr.Error (shown on the page) if there is none."""
        return self.guard.account(request, "chat")

    def shown(self, turns: list[Turn], grades: dict[int, Grade] | None = None):
        ids = [t.exchange_id for t in turns if t.exchange_id is not None]
        if grades is None:
            grades = self.grading.grades(ids) if ids else {}
        return render(turns, grades, self.chat.sources(ids))

    def list_update(self, selected, account):
        choices = [(c.title, c.id) for c in self.chat.conversations(account)]
        return gr.update(choices=choices, value=selected)

    def on_load(self, request: gr.Request):
        return self.list_update(None, self.who(request))

    def feedback(self, ids: list[int | None]) -> list[str | None]:
        """The thumbs the user already gave, one entry per assistant message."""
        return [FEEDBACK[self.chat.store.current_rating(i)] for i in ids if i is not None]

    def stream_reply(self, stream: Iterator[Reply], before: list[Turn], message: str, account):
        """UI updates while a reply streams, for the chat outputs; `before` is the history above
        the new turn. The conversation list and title are refreshed once, at the end."""
        base, base_ids = self.shown(before)
        reply = None
        for reply in stream:
            messages = base + [
                {"role": "user", "content": no_remote_images(message)},
                {
                    "role": "assistant",
                    "content": no_remote_images(reply.text) + sources_html(reply.sources),
                },
            ]
            ids = base_ids + [None, reply.exchange_id]
            yield messages, reply.conversation_id, ids, note_for(reply), gr.skip(), gr.skip()
        if reply is not None:
            conv = self.chat.store.conversation(reply.conversation_id)
            yield (
                gr.skip(),
                gr.skip(),
                gr.skip(),
                gr.skip(),
                self.list_update(conv.id, account),
                conv.title,
            )

    # events
    def on_send(self, message, conversation_id, request: gr.Request):
        account = self.who(request)
        try:
            before = self.chat.turns(conversation_id, account) if conversation_id else []
            stream = self.chat.send(conversation_id, message, account)
        except (ChatRefused, NotFound) as exc:
            gr.Warning(str(exc))
            yield gr.skip(), gr.skip(), gr.skip(), str(exc), gr.skip(), gr.skip(), gr.skip()
            return
        first = True
        for update in self.stream_reply(stream, before, message, account):
            # Clear the box once the message is safely stored, not before.
            yield *update, ("" if first else gr.skip())
            first = False

    def on_regenerate(self, conversation_id, request: gr.Request):
        account = self.who(request)
        if not conversation_id:
            gr.Warning("There is no answer to regenerate yet.")
            return
        try:
            turns = self.chat.turns(conversation_id, account)
            stream = self.chat.regenerate(conversation_id, account)
        except (ChatRefused, NotFound) as exc:
            gr.Warning(str(exc))
            return
        yield from self.stream_reply(stream, turns[:-1], turns[-1].user, account)

    def on_open(self, conversation_id, request: gr.Request):
        account = self.who(request)
        if conversation_id is None:
            return [], None, [], "", ""
        try:
            conv = self.chat.conversation(int(conversation_id), account)
        except (NotFound, TypeError, ValueError):
            gr.Warning("That conversation no longer exists.")
            return [], None, [], "", ""
        messages, ids = self.shown(self.chat.turns(conv.id, account))
        view = gr.update(value=messages, feedback_value=self.feedback(ids))
        return view, conv.id, ids, "", conv.title

    def on_rename(self, conversation_id, title, request: gr.Request):
        account = self.who(request)
        if not conversation_id:
            gr.Warning("Open a conversation to rename it.")
            return gr.skip()
        try:
            self.chat.rename(conversation_id, title, account)
        except (ChatRefused, NotFound) as exc:
            gr.Warning(str(exc))
            return gr.skip()
        return self.list_update(conversation_id, account)

    def on_delete(self, conversation_id, request: gr.Request):
        account = self.who(request)
        if not conversation_id:
            gr.Warning("Open a conversation to delete it.")
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        try:
            counts = self.chat.delete(conversation_id, account)
        except NotFound as exc:
            gr.Warning(str(exc))
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        gr.Info(
            f"Deleted the conversation and its {counts['messages']} messages. "
            f"{counts['pool_entries']} exchange(s) left the training pool "
            f"({counts['training_examples']} were training examples); none of them will be "
            "in any future training set."
        )
        return [], None, [], "", "", self.list_update(None, account)

    def on_like(self, conversation_id, exchange_ids, data: gr.LikeData, request: gr.Request):
        account = self.who(request)
        index = data.index if isinstance(data.index, int) else (data.index or [None])[0]
        exchange_ids = exchange_ids or []
        ok = isinstance(index, int) and 0 <= index < len(exchange_ids)
        exchange_id = exchange_ids[index] if ok else None
        if exchange_id is None:
            gr.Warning("Only finished answers can be rated.")
            return [gr.skip()] * len(self.panel.outputs)
        value = rating_value(data.liked)
        try:
            self.chat.rate(exchange_id, value, account=account)
        except (NotFound, ValueError) as exc:
            gr.Warning(str(exc))
            return [gr.skip()] * len(self.panel.outputs)
        return self.panel.opened(exchange_id, value)

    def on_tick(self, conversation_id, graded, request: gr.Request):
        """Badges appear a few seconds after an answer: re-render only when a new grade exists."""
        account = self.who(request)
        if not conversation_id or self.chat.is_generating(conversation_id):
            return gr.skip(), gr.skip()
        try:
            turns = self.chat.turns(conversation_id, account)
        except NotFound:
            return gr.skip(), gr.skip()
        ids = [t.exchange_id for t in turns if t.exchange_id is not None]
        grades = self.grading.grades(ids) if ids else {}
        now = sorted(grades)
        if now == (graded or []):
            return gr.skip(), gr.skip()
        messages, ids = self.shown(turns, grades)
        return gr.update(value=messages, feedback_value=self.feedback(ids)), now

    def on_new(self, request: gr.Request):
        self.who(request)
        return [], None, [], "", "", gr.update(value=None)

    def on_stop(self, conversation_id, request: gr.Request):
        account = self.who(request)
        if conversation_id:
            try:
                self.chat.stop(conversation_id, account)
            except NotFound:
                pass  # nothing of theirs to stop

    def wire(self, side: Sidebar) -> None:
        """Every event of the chat and the sidebar; all private (not part of the API)."""
        state = [self.conversation, self.exchange_ids]
        outputs = [self.chatbot, *state, self.notice, side.conversations, side.title]
        cleared = [self.chatbot, *state, self.notice, side.title, side.conversations]
        for trigger in (self.box.submit, self.send_btn.click):
            trigger(
                self.on_send,
                [self.box, self.conversation],
                [*outputs, self.box],
                **PRIVATE,
                **MODEL,
            )
        self.regen_btn.click(self.on_regenerate, [self.conversation], outputs, **PRIVATE, **MODEL)
        self.stop_btn.click(self.on_stop, [self.conversation], None, queue=False, **PRIVATE)
        side.conversations.input(
            self.on_open,
            [side.conversations],
            [self.chatbot, *state, self.notice, side.title],
            **PRIVATE,
        )
        for trigger in (side.new_btn.click, self.chatbot.clear):
            trigger(self.on_new, None, cleared, **PRIVATE)
        side.rename_btn.click(
            self.on_rename, [self.conversation, side.title], [side.conversations], **PRIVATE
        )
        show, hide = (lambda: gr.update(visible=True)), (lambda: gr.update(visible=False))
        side.delete_btn.click(show, None, [side.confirm_row], **PRIVATE)
        side.cancel_btn.click(hide, None, [side.confirm_row], **PRIVATE)
        side.confirm_btn.click(self.on_delete, [self.conversation], cleared, **PRIVATE).then(
            hide, None, [side.confirm_row], **PRIVATE
        )
        self.chatbot.like(self.on_like, state, self.panel.outputs, **PRIVATE)
        gr.Timer(2.0).tick(
            self.on_tick,
            [self.conversation, self.graded],
            [self.chatbot, self.graded],
            show_progress="hidden",
            **PRIVATE,
        )
