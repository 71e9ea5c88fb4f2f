"""The Models tab: every refresh run, its metrics side by side and across runs, and the buttons
that promote or roll back an adapter.

Owns the tab's layout and events. Switching writes the pointer in store/adapters.py; the chat
picks the adapter up before its next answer (assistant/wiring.py's AdapterWatcher).
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

from assistant.web.common import PRIVATE
from store.adapters import AdapterRegistry
from store.runs import RunStore

COLUMNS = [
    "run",
    "adapter",
    "status",
    "step",
    "examples",
    "human share",
    "train loss",
    "held-out loss (cand / cur)",
    "win rate",
    "flag rate (cand / cur)",
    "answer distinct-2 (cand / cur / base)",
    "export agreement",
    "why",
]


def row(run, active_id: str | None) -> list:
    d, m = run.data or {}, run.metrics or {}
    ev = m.get("evaluate", {})
    cand, cur, base = ev.get("candidate", {}), ev.get("current", {}), ev.get("base")

    def pair(key):
        if key not in cand:
            return ""
        return f"{cand[key]} / {cur.get(key)}"

    def trio(key):  # runs from before the base was measured have no third figure
        return pair(key) + (f" / {base.get(key)}" if base and key in cand else "")

    name = run.adapter_id + (" (active)" if run.adapter_id == active_id else "")
    return [
        run.id,
        name,
        run.status,
        run.step,
        d.get("mix", ""),
        d.get("human_share", ""),
        m.get("train", {}).get("loss", ""),
        pair("heldout_loss"),
        cand.get("win_rate", ""),
        pair("flag_rate"),
        trio("answer_distinct_2"),
        m.get("verify", {}).get("agreement", ""),
        run.reason or "",
    ]


def trends(runs) -> pd.DataFrame:
    """Metrics per evaluated run, long form for one line per metric."""
    points = []
    for r in runs:
        ev = (r.metrics or {}).get("evaluate")
        if not ev:
            continue
        c = ev["candidate"]
        for metric in (
            "heldout_loss",
            "win_rate",
            "flag_rate",
            "answer_distinct_2",
            "answer_spread",
        ):
            if c.get(metric) is not None:
                points.append({"run": r.id, "metric": metric, "value": c[metric]})
    return pd.DataFrame(points, columns=["run", "metric", "value"])


def build_models_tab(engine, home, guard):
    registry = AdapterRegistry(home / "adapters")
    runs = RunStore(engine)
    active_md = gr.Markdown(elem_id="active-adapter")
    table = gr.Dataframe(headers=COLUMNS, interactive=False, wrap=True, elem_id="runs")
    plot = gr.LinePlot(
        x="run",
        y="value",
        color="metric",
        title="Candidate metrics across refreshes",
        height=260,
        elem_id="plot-runs",
    )
    with gr.Row():
        choice = gr.Dropdown(label="Adapter", choices=[], elem_id="adapter-choice")
        serve = gr.Button("Serve this adapter", variant="primary", elem_id="serve-adapter")
        base = gr.Button("Serve the base model", elem_id="serve-base")
    status = gr.Markdown(elem_id="models-status")

    def load(request: gr.Request):
        guard.account(request, "models")
        return listing()

    def listing():
        all_runs = runs.runs()
        active = registry.active()
        active_id = active.adapter_id if active else None
        on_disk = [r.adapter_id for r in all_runs if registry.exists(r.adapter_id)]
        return (
            f"Serving: **{active_id or 'the base model (no adapter)'}**",
            [row(r, active_id) for r in reversed(all_runs)],
            trends(all_runs),
            gr.update(choices=on_disk, value=active_id if active_id in on_disk else None),
        )

    def switch(adapter_id, request: gr.Request):
        """Serve `adapter_id` (None: the base model); reviewers and admins only."""
        guard.account(request, "switch")
        known = {r.adapter_id for r in runs.runs() if r.adapter_id}
        if adapter_id is not None and adapter_id not in known:  # never a path someone typed
            return (*listing(), "Choose an adapter from the list.")
        try:
            registry.activate(adapter_id)
        except (FileNotFoundError, ValueError) as exc:
            gr.Warning(str(exc))
            return (*listing(), gr.skip())
        said = adapter_id or "the base model"
        return (*listing(), f"Switched to {said}; the chat uses it from its next answer.")

    def serve_chosen(adapter_id, request: gr.Request):
        if not adapter_id:
            guard.account(request, "switch")
            return (*listing(), "Choose an adapter first.")
        return switch(adapter_id, request)

    def serve_base(request: gr.Request):
        return switch(None, request)

    outputs = [active_md, table, plot, choice]
    serve.click(serve_chosen, [choice], [*outputs, status], **PRIVATE)
    base.click(serve_base, None, [*outputs, status], **PRIVATE)
    return load, outputs
