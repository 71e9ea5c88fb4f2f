"""The page: the sidebar and the tabs, assembled, with the stable API on the same Blocks.

Owns which tabs exist and in what order; each tab is its own module (chat_tab, knowledge_tab,
review_tab, dashboard_tab, models_tab) and the API is assistant/web/api.py. The UI's own events are private,
so the API page lists only what programs may rely on.
"""

from __future__ import annotations

import gradio as gr

from assistant.chat import ChatService
from assistant.web.api import add_api
from assistant.web.chat_tab import ChatTab, Sidebar
from assistant.web.common import PRIVATE
from assistant.web.dashboard_tab import build_dashboard
from assistant.web.gate import Guard
from assistant.web.knowledge_tab import KnowledgeTab
from assistant.web.models_tab import build_models_tab
from assistant.web.review_tab import ReviewTab
from assistant.web.uploads import Uploads
from store.grading import GradingStore


def build_page(
    chat: ChatService, grading: GradingStore, guard: Guard, uploads: Uploads | None = None
) -> gr.Blocks:
    """The page; every event it wires checks its caller through `guard`."""
    with gr.Blocks(title="Autodidact") as demo:
        side = Sidebar()
        with gr.Tab("Chat", id="chat"):
            tab = ChatTab(chat, grading, guard)
        if chat.library is not None:
            with gr.Tab("Knowledge", id="knowledge") as knowledge_tab:
                knowledge = KnowledgeTab(chat.library, guard, uploads)
            knowledge_tab.select(knowledge.load, None, knowledge.outputs, **PRIVATE)
        with gr.Tab("Review", id="review") as review_tab:
            review = ReviewTab(grading, guard, on_decision=chat.curate)
        review_tab.select(review.load, None, [review.flagged, review.ids], **PRIVATE)
        with gr.Tab("Dashboard", id="dashboard") as dashboard_tab:
            index = chat.curator.index if chat.curator else None
            load_dashboard, dashboard_outputs = build_dashboard(chat.store.engine, guard, index)
        dashboard_tab.select(load_dashboard, None, dashboard_outputs, **PRIVATE)
        with gr.Tab("Models", id="models") as models_tab:
            load_models, models_outputs = build_models_tab(
                chat.store.engine, chat.settings.home_dir, guard
            )
        models_tab.select(load_models, None, models_outputs, **PRIVATE)
        tab.wire(side)
        demo.load(tab.on_load, None, [side.conversations], **PRIVATE)
        add_api(chat, guard)
    return demo
