"""The Dashboard tab: the learning loop on one page, as plots.

Owns the layout of the figures feedback/dashboard.py computes: exchanges per day, the self-grade
distribution, the flag rate over time, the pool by source, the share of human data, the pool's
diversity, how often the self-grade agrees with the user's thumbs, and the table of the grader's
calibrations to those thumbs. Computing happens when the tab opens or Refresh is clicked, never
on a timer, so a big database costs nothing while chatting.
"""

from __future__ import annotations

import gradio as gr

from assistant.web.common import PRIVATE
from feedback.dashboard import compute

HEIGHT = 260


def headline(totals: dict) -> str:
    """The line of totals above the plots.

    >>> headline({"exchanges": 3, "graded": 2, "flagged": 0.5, "statuses": {"train": 1},
    ...           "agreement": None, "rated": 0, "diversity_sample": 1})
    '**3** exchanges · **2** graded, **50%** flagged · pool: **1** train, **0** flagged, **0** neutral, **0** duplicate, **0** capped · judge-user agreement: no rated and graded answers yet'
    """
    st = totals["statuses"]
    pool = ", ".join(
        f"**{st.get(k, 0)}** {k}" for k in ("train", "flagged", "neutral", "duplicate", "capped")
    )
    flagged = f"**{totals['flagged']:.0%}** flagged" if totals["flagged"] is not None else "none"
    agree = (
        f"**{totals['agreement']:.0%}** of {totals['rated']} rated answers"
        if totals["agreement"] is not None
        else "no rated and graded answers yet"
    )
    return (
        f"**{totals['exchanges']}** exchanges · **{totals['graded']}** graded, {flagged} · "
        f"pool: {pool} · judge-user agreement: {agree}"
    )


def line(y: str, title: str, elem_id: str, share: bool = False, **kw) -> gr.LinePlot:
    """A plot over days; `share` fixes the y axis to 0-1."""
    y_lim = [0, 1] if share else None
    return gr.LinePlot(x="day", y=y, title=title, y_lim=y_lim, height=HEIGHT, elem_id=elem_id, **kw)


def plots() -> list:
    """The tab's components, in the order `load` fills them."""
    summary = gr.Markdown(elem_id="dashboard-summary")
    with gr.Row():
        per_day = gr.BarPlot(
            x="day", y="exchanges", title="Exchanges per day", height=HEIGHT, elem_id="plot-per-day"
        )
        scores = gr.BarPlot(
            x="score",
            y="answers",
            title="Self-grade distribution (bins of 0.1)",
            sort="x",
            height=HEIGHT,
            elem_id="plot-scores",
        )
        flags = line("flag rate", "Flag rate (likely hallucinations)", "plot-flags", share=True)
    with gr.Row():
        pool = line("examples", "Training pool by source", "plot-pool", color="source")
        human = line(
            "share", "Share of human data in the pool", "plot-human", share=True, color="kind"
        )
    with gr.Row():
        diversity = gr.BarPlot(
            x="measure",
            y="value",
            title="Pool diversity (falls as it collapses)",
            y_lim=[0, 1],
            height=HEIGHT,
            elem_id="plot-diversity",
        )
        agreement = line(
            "agreement", "Self-grade agrees with the user's thumbs", "plot-agreement", share=True
        )
    gr.Markdown("**Grader calibrations** (weights fitted to your thumbs; AUROC on held-out thumbs)")
    calibrations = gr.Dataframe(interactive=False, wrap=True, elem_id="calibrations")
    return [summary, per_day, scores, flags, pool, human, diversity, agreement, calibrations]


def build_dashboard(engine, guard, index=None):
    """The tab's components; returns the function that refreshes them and its outputs."""
    outputs = plots()
    refresh = gr.Button("Refresh", size="sm", elem_id="dashboard-refresh")

    def load(request: gr.Request, progress=gr.Progress()):  # noqa: B008 (Gradio injects it)
        guard.account(request, "dashboard")
        progress(0, desc="Computing the dashboard")
        d = compute(engine, index)
        return (
            headline(d.totals),
            d.exchanges_per_day,
            d.score_histogram,
            d.flag_rate,
            d.pool_by_source,
            d.human_share,
            d.diversity,
            d.agreement,
            d.calibrations,
        )

    refresh.click(load, None, outputs, **PRIVATE)
    return load, outputs
