"""The Gradio app: the chat page a person uses and the HTTP API programs use.

Owns layout and event wiring only. Every decision (what is valid, what is stored, how the prompt
is built) belongs to the chat service; this module renders its `Reply` snapshots. The stable API
(assistant/api.py) is added to the same Blocks; the UI's own events are private so the API page
lists only what programs may rely on.
"""

from __future__ import annotations

import html
from collections.abc import Iterator

import gradio as gr

from assistant.api import add_api
from assistant.chat import ChatRefused, ChatService, Reply, title_from
from assistant.dashboard import build_dashboard
from assistant.models_tab import build_models_tab
from assistant.rating_panel import RatingPanel
from assistant.review import build_review
from store.grading import GradingStore
from store.models import Grade
from store.repo import NotFound, Turn

STATUS_NOTES = {
    "stopped": "Generation stopped. The partial answer is saved.",
    "failed": "The model failed while answering: {error}. What it wrote so far is saved.",
}
PRIVATE = {"api_visibility": "private"}
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


def render(
    turns: list[Turn], grades: dict[int, Grade] | None = None
) -> tuple[list[dict], list[int | None]]:
    """Chatbot messages for the turns, and the exchange id behind each message (None for users).

    >>> render([Turn(1, "hi", 7, "hello", "completed"), Turn(3, "again", None, None, None)])
    ([{'role': 'user', 'content': 'hi'}, {'role': 'assistant', 'content': 'hello'}, {'role': 'user', 'content': 'again'}], [None, 7, None])
    """
    grades = grades or {}
    messages, ids = [], []
    for turn in turns:
        messages.append({"role": "user", "content": turn.user})
        ids.append(None)
        if turn.exchange_id is not None:
            text = (turn.assistant or "") + badge(grades.get(turn.exchange_id))
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


def examples_note(reply: Reply) -> str:
    """Which past exchanges the answer drew on, for the notice under the chat.

    >>> from feedback.curator import Example
    >>> examples_note(Reply(1, 2, examples=(Example(7, 3, "What is 2+2?", "4", 0.91),)))
    'Drew on 1 past answer from the training pool: #7 “What is 2+2?” (similarity 0.91)'
    """
    if not reply.examples:
        return ""
    shown = "; ".join(
        f"#{e.exchange_id} “{title_from(e.prompt, 60)}” (similarity {e.similarity:.2f})"
        for e in reply.examples
    )
    n = len(reply.examples)
    return f"Drew on {n} past answer{'s' if n > 1 else ''} from the training pool: {shown}"


def note_for(reply: Reply) -> str:
    notes = list(reply.notices)
    if reply.examples:
        notes.append(examples_note(reply))
    if reply.status in STATUS_NOTES:
        notes.append(STATUS_NOTES[reply.status].format(error=reply.error))
    return "\n\n".join(f"ℹ️ {n}" for n in notes)


def build_ui(chat: ChatService, grading: GradingStore) -> gr.Blocks:
    def shown(turns: list[Turn]):
        ids = [t.exchange_id for t in turns if t.exchange_id is not None]
        return render(turns, grading.grades(ids) if ids else {})

    def conversation_choices():
        return [(c.title, c.id) for c in chat.conversations()]

    def list_update(selected):
        return gr.update(choices=conversation_choices(), value=selected)

    def stream_reply(stream: Iterator[Reply], before: list[Turn], message: str):
        """UI updates while a reply streams, for `outputs` below; `before` is the history above
        the new turn. The conversation list and title are refreshed once, at the end."""
        base, base_ids = shown(before)
        reply = None
        for reply in stream:
            messages = base + [
                {"role": "user", "content": message},
                {"role": "assistant", "content": reply.text},
            ]
            ids = base_ids + [None, reply.exchange_id]
            yield messages, reply.conversation_id, ids, note_for(reply), gr.skip(), gr.skip()
        if reply is not None:
            conv = chat.store.conversation(reply.conversation_id)
            yield (gr.skip(), gr.skip(), gr.skip(), gr.skip(), list_update(conv.id), conv.title)

    def on_send(message, conversation_id):
        try:
            before = chat.turns(conversation_id) if conversation_id else []
            stream = chat.send(conversation_id, message)
        except (ChatRefused, NotFound) as exc:
            gr.Warning(str(exc))
            yield gr.skip(), gr.skip(), gr.skip(), str(exc), gr.skip(), gr.skip(), gr.skip()
            return
        first = True
        for update in stream_reply(stream, before, message):
            # Clear the box once the message is safely stored, not before.
            yield *update, ("" if first else gr.skip())
            first = False

    def on_regenerate(conversation_id):
        if not conversation_id:
            gr.Warning("There is no answer to regenerate yet.")
            return
        try:
            turns = chat.turns(conversation_id)
            stream = chat.regenerate(conversation_id)
        except (ChatRefused, NotFound) as exc:
            gr.Warning(str(exc))
            return
        yield from stream_reply(stream, turns[:-1], turns[-1].user)

    def on_open(conversation_id):
        if conversation_id is None:
            return [], None, [], "", ""
        try:
            conv = chat.store.conversation(conversation_id)
        except NotFound:
            gr.Warning("That conversation no longer exists.")
            return [], None, [], "", ""
        messages, ids = shown(chat.turns(conversation_id))
        # Show the thumbs the user already gave, one entry per assistant message.
        feedback = [FEEDBACK[chat.store.current_rating(i)] for i in ids if i is not None]
        view = gr.update(value=messages, feedback_value=feedback)
        return view, conversation_id, ids, "", conv.title

    def on_new():
        return [], None, [], "", "", gr.update(value=None)

    def on_rename(conversation_id, title):
        if not conversation_id:
            gr.Warning("Open a conversation to rename it.")
            return gr.skip()
        try:
            chat.rename(conversation_id, title)
        except (ChatRefused, NotFound) as exc:
            gr.Warning(str(exc))
            return gr.skip()
        return list_update(conversation_id)

    def on_delete(conversation_id):
        if not conversation_id:
            gr.Warning("Open a conversation to delete it.")
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        counts = chat.delete(conversation_id)
        gr.Info(
            f"Deleted the conversation and its {counts['messages']} messages. "
            f"{counts['pool_entries']} exchange(s) left the training pool "
            f"({counts['training_examples']} were training examples); none of them will be "
            "in any future training set."
        )
        return [], None, [], "", "", list_update(None)

    def on_like(conversation_id, exchange_ids, data: gr.LikeData):
        index = data.index if isinstance(data.index, int) else data.index[0]
        exchange_id = exchange_ids[index] if 0 <= index < len(exchange_ids) else None
        if exchange_id is None:
            gr.Warning("Only finished answers can be rated.")
            return [gr.skip()] * len(panel.outputs)
        value = rating_value(data.liked)
        chat.rate(exchange_id, value)
        return panel.opened(exchange_id, value)

    def on_tick(conversation_id, graded):
        """Badges appear a few seconds after an answer: re-render only when a new grade exists."""
        if not conversation_id or chat.is_generating(conversation_id):
            return gr.skip(), gr.skip()
        try:
            turns = chat.turns(conversation_id)
        except NotFound:
            return gr.skip(), gr.skip()
        ids = [t.exchange_id for t in turns if t.exchange_id is not None]
        grades = grading.grades(ids) if ids else {}
        now = sorted(grades)
        if now == (graded or []):
            return gr.skip(), gr.skip()
        messages, ids = render(turns, grades)
        feedback = [FEEDBACK[chat.store.current_rating(i)] for i in ids if i is not None]
        return gr.update(value=messages, feedback_value=feedback), now

    def on_stop(conversation_id):
        if conversation_id:
            chat.stop(conversation_id)

    with gr.Blocks(title="Autodidact") as demo:
        conversation = gr.State(None)
        exchange_ids = gr.State([])
        with gr.Sidebar(label="Conversations", open=True):
            gr.Markdown("### Autodidact")
            new_btn = gr.Button("+ New chat", elem_id="new-chat")
            conversations = gr.Radio(
                choices=[], label="Conversations", elem_id="conversations", interactive=True
            )
            title = gr.Textbox(label="Title", elem_id="title", max_lines=1)
            with gr.Row():
                rename_btn = gr.Button("Rename", size="sm", elem_id="rename")
                delete_btn = gr.Button("Delete", size="sm", variant="stop", elem_id="delete")
            with gr.Row(visible=False) as confirm_row:
                confirm_btn = gr.Button(
                    "Yes, delete", size="sm", variant="stop", elem_id="confirm-delete"
                )
                cancel_btn = gr.Button("Keep", size="sm", elem_id="cancel-delete")
        with gr.Tab("Chat", id="chat"):
            chatbot = gr.Chatbot(
                elem_id="chatbot",
                height="70vh",
                label="Chat",
                feedback_options=("Like", "Dislike"),
                buttons=["copy"],
                placeholder="Ask anything. Your chats stay on this machine.",
            )
            notice = gr.Markdown(elem_id="notice")
            with gr.Row():
                box = gr.Textbox(
                    placeholder="Message Autodidact (Enter to send, Shift+Enter for a new line)",
                    show_label=False,
                    scale=8,
                    lines=1,
                    max_lines=8,
                    elem_id="message",
                    autofocus=True,
                )
                send_btn = gr.Button("Send", variant="primary", scale=1, elem_id="send")
            with gr.Row():
                stop_btn = gr.Button("■ Stop", size="sm", elem_id="stop")
                regen_btn = gr.Button("↻ Regenerate", size="sm", elem_id="regenerate")
            panel = RatingPanel(chat)

        with gr.Tab("Review", id="review") as review_tab:
            load_review, flagged_table, flagged_ids = build_review(
                grading, chat.settings.user, on_decision=chat.curate
            )
        review_tab.select(load_review, None, [flagged_table, flagged_ids], **PRIVATE)

        with gr.Tab("Dashboard", id="dashboard") as dashboard_tab:
            index = chat.curator.index if chat.curator else None
            load_dashboard, dashboard_outputs = build_dashboard(chat.store.engine, index)
        dashboard_tab.select(load_dashboard, None, dashboard_outputs, **PRIVATE)

        with gr.Tab("Models", id="models") as models_tab:
            load_models, models_outputs = build_models_tab(
                chat.store.engine, chat.settings.home_dir
            )
        models_tab.select(load_models, None, models_outputs, **PRIVATE)

        outputs = [chatbot, conversation, exchange_ids, notice, conversations, title]
        for trigger in (box.submit, send_btn.click):
            trigger(on_send, [box, conversation], [*outputs, box], **PRIVATE)
        regen_btn.click(on_regenerate, [conversation], outputs, **PRIVATE)
        stop_btn.click(on_stop, [conversation], None, queue=False, **PRIVATE)
        conversations.input(
            on_open,
            [conversations],
            [chatbot, conversation, exchange_ids, notice, title],
            **PRIVATE,
        )
        for trigger in (new_btn.click, chatbot.clear):
            trigger(
                on_new,
                None,
                [chatbot, conversation, exchange_ids, notice, title, conversations],
                **PRIVATE,
            )
        rename_btn.click(on_rename, [conversation, title], [conversations], **PRIVATE)
        delete_btn.click(lambda: gr.update(visible=True), None, [confirm_row], **PRIVATE)
        cancel_btn.click(lambda: gr.update(visible=False), None, [confirm_row], **PRIVATE)
        confirm_btn.click(
            on_delete,
            [conversation],
            [chatbot, conversation, exchange_ids, notice, title, conversations],
            **PRIVATE,
        ).then(lambda: gr.update(visible=False), None, [confirm_row], **PRIVATE)
        chatbot.like(on_like, [conversation, exchange_ids], panel.outputs, **PRIVATE)
        graded = gr.State([])
        gr.Timer(2.0).tick(
            on_tick, [conversation, graded], [chatbot, graded], show_progress="hidden", **PRIVATE
        )
        demo.load(lambda: list_update(None), None, [conversations], **PRIVATE)

        add_api(chat)
    return demo
