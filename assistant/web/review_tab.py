"""The Review tab: flagged exchanges, newest first, and a reviewer's decision on each.

Owns that tab's layout and events. A reviewer confirms a flag (it is a hallucination), dismisses
it (the answer is fine) or writes the correct answer; each decision is stored with who made it and
when (store/grading.py). What a decision does to the training pool is feedback/pool/rules.py's job.
Every event needs the reviewer role, checked on the server; the reviewer recorded is the account
that made the decision, never a name typed into the page.
"""

from __future__ import annotations

import gradio as gr

from assistant.web.common import PRIVATE, no_remote_images
from assistant.web.gate import Guard
from store.grading import Flagged, GradingStore
from store.lessons import LessonStore
from store.pool import PoolStore
from store.tables import Lesson, PoolEntry

COLUMNS = [
    "exchange",
    "flagged at",
    "question",
    "answer",
    "self-grade",
    "mean log-prob",
    "min log-prob",
    "consistency",
    "grounding",
    "score",
    "reason",
    "decision",
]


def _fmt(x, digits=2):
    return "" if x is None else round(x, digits)


def table(rows: list[Flagged]) -> list[list]:
    return [
        [
            r.exchange_id,
            r.grade.created_at.strftime("%Y-%m-%d %H:%M"),
            r.question[:300],
            r.answer[:500],
            r.grade.judge_score,
            _fmt(r.grade.mean_logprob),
            _fmt(r.grade.min_logprob),
            _fmt(r.grade.consistency),
            _fmt(r.grade.grounding),
            _fmt(r.grade.score),
            r.grade.reason,
            r.decision or "",
        ]
        for r in rows
    ]


KEPT_OUT = ["exchange", "what", "question", "answer", "score", "why"]


def kept_out(superseded: list[PoolEntry], lessons: list[Lesson]) -> list[list]:
    """Corrections a newer one replaced, and lessons the synthesis filter turned away (each
    named by its parent exchange), for a person to see what the filters caught."""
    rows = [
        [e.exchange_id, "superseded correction", e.prompt[:300], e.completion[:500], "", e.reason]
        for e in superseded
    ]
    rows += [
        [
            x.parent_exchange_id,
            f"rejected lesson ({x.kind})",
            x.prompt[:300],
            x.completion[:500],
            _fmt(x.score),
            x.reason,
        ]
        for x in lessons
    ]
    return rows


WIDTHS = ["70px", "130px", "220px", "300px", "80px", "80px", "80px", "90px", "90px", "70px"]
WIDTHS += ["280px", "90px"]


class ReviewTab:
    """The Review tab's contents; `on_decision(exchange_id)` runs after each stored decision
    (the app re-curates the exchange's pool entry there)."""

    def __init__(self, grading: GradingStore, guard: Guard, on_decision=None):
        self.grading, self.guard = grading, guard
        self.pool, self.lessons = PoolStore(grading.engine), LessonStore(grading.engine)
        self.on_decision = on_decision
        self.ids = gr.State([])
        self.selected = gr.State(None)
        with gr.Row():
            self.refresh = gr.Button("Refresh", size="sm", elem_id="review-refresh")
        self.flagged = gr.Dataframe(
            headers=COLUMNS,
            column_widths=WIDTHS,
            interactive=False,
            wrap=True,
            elem_id="flagged",
            label="Flagged exchanges (newest first)",
        )
        self.detail = gr.Markdown(elem_id="review-detail")
        self.correction = gr.Textbox(label="Correct answer", lines=4, elem_id="correction")
        with gr.Row():
            self.confirm = gr.Button(
                "Confirm: it is a hallucination", variant="stop", elem_id="review-confirm"
            )
            self.dismiss = gr.Button("Dismiss: the answer is fine", elem_id="review-dismiss")
            self.correct = gr.Button(
                "Save correct answer", variant="primary", elem_id="review-correct"
            )
        self.status = gr.Markdown(elem_id="review-status")
        with gr.Accordion("Kept out of training", open=False, elem_id="kept-out"):
            self.kept_out = gr.Dataframe(
                headers=KEPT_OUT,
                column_widths=["70px", "150px", "220px", "300px", "60px", "280px"],
                interactive=False,
                wrap=True,
                label="Corrections replaced by newer ones, and lessons the model wrote that "
                "failed their grade (newest first)",
            )
        self._wire()

    def _wire(self) -> None:
        self.refresh.click(self.load, None, [self.flagged, self.ids], **PRIVATE)
        self.refresh.click(self.load_kept_out, None, [self.kept_out], **PRIVATE)
        self.flagged.select(
            self.pick, [self.ids], [self.selected, self.detail, self.correction], **PRIVATE
        )
        buttons = ((self.confirm, "confirm"), (self.dismiss, "dismiss"), (self.correct, "correct"))
        for button, decision in buttons:
            button.click(
                self.decider(decision),
                [self.selected, self.correction],
                [self.flagged, self.ids, self.status],
                **PRIVATE,
            )

    def load(self, request: gr.Request):
        self.guard.account(request, "review")
        return self.listing()

    def load_kept_out(self, request: gr.Request):
        self.guard.account(request, "review")
        return gr.update(value=kept_out(self.pool.superseded(), self.lessons.rejected()))

    def listing(self):
        rows = self.grading.flagged()
        return gr.update(value=table(rows)), [r.exchange_id for r in rows]

    def pick(self, ids, evt: gr.SelectData, request: gr.Request):
        self.guard.account(request, "review")
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        if not ids or not isinstance(row, int) or not 0 <= row < len(ids):
            return None, "", ""
        exchange_id = ids[row]
        question, answer = self.grading.exchange_text(exchange_id)
        grade = self.grading.grade(exchange_id)
        detail = (
            f"**Exchange {exchange_id}** · score {grade.score:.2f} · {grade.reason}\n\n"
            f"**Question**\n\n{question}\n\n**Answer**\n\n{answer}"
        )
        detail = no_remote_images(detail)
        return exchange_id, detail, answer

    def decider(self, decision: str):
        def handler(exchange_id, correction, request: gr.Request):
            reviewer = self.guard.account(request, "review").name
            return self.decide(decision, exchange_id, reviewer, correction)

        return handler

    def decide(self, decision: str, exchange_id, reviewer: str, correction):
        if not exchange_id:
            gr.Warning("Select a flagged exchange in the table first.")
            return gr.skip(), gr.skip(), gr.skip()
        try:
            self.grading.review(int(exchange_id), decision, reviewer, correction)
        except (ValueError, LookupError, TypeError) as exc:
            gr.Warning(str(exc))
            return gr.skip(), gr.skip(), gr.skip()
        if self.on_decision is not None:
            self.on_decision(int(exchange_id))
        gr.Info(f"Exchange {exchange_id}: {decision} stored by {reviewer}.")
        rows, ids = self.listing()
        said = f"Last decision: **{decision}** on exchange {exchange_id} by {reviewer}."
        return rows, ids, said
