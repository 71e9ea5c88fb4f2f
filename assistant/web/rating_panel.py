"""The panel under the chat that opens after a thumbs down: reasons, a comment, a better answer.

Owns those few components and their events. The thumbs themselves are the Chatbot's own
feedback buttons (wired in assistant/web/chat_tab.py, which calls `opened` after each click); what a
rating or correction does to the training pool is the curator's business.
"""

from __future__ import annotations

import gradio as gr

from assistant.chat import ChatRefused, ChatService
from assistant.web.common import PRIVATE
from store.conversations import RATING_REASONS, NotFound


class RatingPanel:
    def __init__(self, chat: ChatService, guard):
        self.chat, self.guard = chat, guard
        self.rated = gr.State(None)
        with gr.Column(visible=False, variant="panel", elem_id="rating-panel") as self.panel:
            self.title = gr.Markdown("**What was wrong with this answer?** (optional)")
            self.reasons = gr.CheckboxGroup(
                list(RATING_REASONS), show_label=False, elem_id="rating-reasons"
            )
            self.comment = gr.Textbox(
                placeholder="A comment (optional)",
                show_label=False,
                max_lines=3,
                elem_id="rating-comment",
            )
            with gr.Row():
                self.send = gr.Button("Send feedback", size="sm", elem_id="send-feedback")
                self.write = gr.Button("✎ Write a better answer", size="sm", elem_id="write-better")
                self.close = gr.Button("Close", size="sm", elem_id="close-feedback")
            with gr.Column(visible=False) as self.editor_box:
                self.editor = gr.Textbox(
                    label="Your answer (stored beside the original; used for training)",
                    lines=6,
                    max_lines=20,
                    elem_id="better-answer",
                )
                self.save = gr.Button(
                    "Save my answer", variant="primary", size="sm", elem_id="save-correction"
                )
        self.status = gr.Markdown(elem_id="rating-status")

        self.send.click(
            self.on_send, [self.rated, self.reasons, self.comment], [self.status], **PRIVATE
        )
        self.write.click(self.on_write, [self.rated], [self.editor_box, self.editor], **PRIVATE)
        self.save.click(
            self.on_save, [self.rated, self.editor], [self.status, self.editor_box], **PRIVATE
        )
        self.close.click(lambda: gr.update(visible=False), None, [self.panel], **PRIVATE)

    @property
    def outputs(self):
        """What `opened` updates, in order."""
        return [self.rated, self.panel, self.reasons, self.comment, self.editor_box, self.status]

    def opened(self, exchange_id: int | None, value: int):
        """After a thumbs click: open the panel for a thumbs down, close it otherwise."""
        down = value < 0
        return (
            exchange_id,
            gr.update(visible=down),
            gr.update(value=[]),
            gr.update(value=""),
            gr.update(visible=False),
            "",
        )

    def on_send(self, exchange_id, reasons, comment, request: gr.Request):
        account = self.guard.account(request)
        if exchange_id is None:
            return gr.skip()
        try:
            self.chat.rate(int(exchange_id), -1, reasons or [], comment or None, account)
        except (ValueError, TypeError, NotFound) as exc:
            gr.Warning(str(exc))
            return gr.skip()
        said = ", ".join(reasons) if reasons else "no reason"
        return f"Thanks: thumbs down ({said}) stored for this answer."

    def on_write(self, exchange_id, request: gr.Request):
        account = self.guard.account(request)
        if exchange_id is None:
            return gr.skip(), gr.skip()
        try:
            self.chat.check_exchange(int(exchange_id), account)
            answer = self.chat.store.answer(int(exchange_id)) or ""
        except (NotFound, TypeError, ValueError):
            gr.Warning("That answer no longer exists.")
            return gr.skip(), gr.skip()
        correction = self.chat.store.correction(int(exchange_id))
        return gr.update(visible=True), (correction.content if correction else answer)

    def on_save(self, exchange_id, text, request: gr.Request):
        account = self.guard.account(request)
        if exchange_id is None:
            return gr.skip(), gr.skip()
        try:
            self.chat.correct(int(exchange_id), text, account)
        except (ChatRefused, NotFound, TypeError, ValueError) as exc:
            gr.Warning(str(exc))
            return gr.skip(), gr.skip()
        return (
            "Your answer is stored beside the original and joins the training pool.",
            gr.update(visible=False),
        )
