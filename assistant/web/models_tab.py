"""The Models tab: every refresh run, its metrics side by side and across runs, the buttons
that promote or roll back an adapter, and a refresh started from the page.

Owns the tab's layout and events, and how a refresh's progress and outcome read in plain words.
Switching writes the pointer in store/adapters.py; the chat picks the adapter up before its
next answer (assistant/wiring.py's AdapterWatcher). "Refresh now" starts `autodidact refresh`
in a process of its own through feedback/refresh/job.py; a timer polls its progress file, so
no event waits on the refresh and the chat's events run beside it.
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

from assistant.web.common import PRIVATE, no_remote_images
from assistant.wiring import build_launcher
from feedback.refresh.job import JobState
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
    "taught loss (cand / cur)",
    "judge: better / worse / tied (p worse)",
    "relevance: better / worse / tied (p worse)",
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
        pair("taught_loss"),
        paired(cand.get("pairwise")),
        paired(cand.get("relevance")),
        trio("answer_distinct_2"),
        m.get("verify", {}).get("agreement", ""),
        run.reason or "",
    ]


def paired(figures: dict | None) -> str:
    """A paired comparison's counts and sign-test p-value, with the judge's position bias.

    >>> paired({"wins": 3, "losses": 20, "ties": 41, "p_worse": 0.0002, "first_choice": 1.0})
    '3 / 20 / 41 (p 0.0002; the judge chose the first answer 100% of the time)'
    >>> paired({"wins": 5, "losses": 4, "ties": 55, "p_worse": 0.5}), paired(None)
    ('5 / 4 / 55 (p 0.5)', '')
    >>> paired({"wins": 0, "losses": 0, "ties": 8, "p_worse": 1.0, "first_choice": 1.0,
    ...         "unasked": 56})
    '0 / 0 / 8 (p 1.0; the judge chose the first answer 100% of the time; 56 more not asked)'
    """
    if not figures:
        return ""
    text = f"{figures['wins']} / {figures['losses']} / {figures['ties']} (p {figures['p_worse']}"
    first = figures.get("first_choice")
    if first is not None and abs(first - 0.5) > 0.3:  # it reads positions, not answers
        text += f"; the judge chose the first answer {first:.0%} of the time"
    if figures.get("unasked"):
        text += f"; {figures['unasked']} more not asked"
    return text + ")"


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
            "taught_loss",
            "win_rate",
            "answer_distinct_2",
            "answer_spread",
        ):
            if c.get(metric) is not None:
                points.append({"run": r.id, "metric": metric, "value": c[metric]})
    return pd.DataFrame(points, columns=["run", "metric", "value"])


# What each ending means, in plain words; the reasons follow as a list.
OUTCOMES = {
    "promoted": "**Promoted**: no check regressed, so the chat answers with the new adapter "
    "from its next message.",
    "rejected": "**Rejected**: the new adapter was trained, but it did worse than the model "
    "being served on the checks below, so the chat keeps the current one (the candidate stays "
    "on disk).",
    "refused": "**Refused** before training: the data did not pass a guard, so nothing was "
    "trained and nothing changed.",
    "failed": "**Failed**: an error stopped the refresh; what the chat serves is unchanged.",
    "cancelled": "**Cancelled**: the refresh was stopped; what the chat serves is unchanged and "
    "the unfinished candidate was removed.",
    "interrupted": "**Interrupted**: the refresh process stopped (a crash or a kill); what the "
    "chat serves is unchanged.",
    "dry_run": "**Dry run**: the data was selected and checked; nothing was trained.",
}


def split_reasons(text: str) -> list[str]:
    """A rejection's reasons, which the pipeline joins with "; " (a "; " inside parentheses
    belongs to one reason).

    >>> split_reasons("loss rose 5%; drifted (similarity 0.2 against 0.5; p = 0.01)")
    ['loss rose 5%', 'drifted (similarity 0.2 against 0.5; p = 0.01)']
    """
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and text.startswith("; ", i):
            parts.append(text[start:i])
            start = i + 2
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def outcome(run) -> str:
    """How a finished run ended, in plain words, its reasons as a bulleted list.

    >>> from types import SimpleNamespace as Run
    >>> print(outcome(Run(status="rejected", step="evaluate", adapter_id="a-1",
    ...     reason="held-out loss rose 5%; win rate 0.30 below 0.45", metrics={})))
    Run a-1 (stopped at step evaluate). **Rejected**: the new adapter was trained, but it did worse than the model being served on the checks below, so the chat keeps the current one (the candidate stays on disk).
    <BLANKLINE>
    - held-out loss rose 5%
    - win rate 0.30 below 0.45
    """
    head = f"Run {run.adapter_id} (stopped at step {run.step}). "
    if run.status == "promoted":
        head = f"Run {run.adapter_id}. "
    text = head + OUTCOMES.get(run.status, f"**{run.status}**")
    # Only a rejection lists several reasons; any other ending has one, which may hold a "; ".
    reason = run.reason or ""
    reasons = split_reasons(reason) if run.status == "rejected" else [reason] * bool(reason)
    reasons = ((getattr(run, "metrics", None) or {}).get("reasons")) or reasons
    if reasons:
        text += "\n\n" + "\n".join(f"- {no_remote_images(r)}" for r in reasons)
    return text


def steps_view(progress: dict) -> str:
    """One line per pipeline step: done, under way (with its share and message), or to come."""
    from feedback.refresh.rules import STEPS

    current, lines = progress.get("step"), []
    reached = STEPS.index(current) if current in STEPS else -1
    for i, step in enumerate(STEPS):
        if i < reached:
            lines.append(f"- ✓ {step}")
        elif i == reached:
            share = progress.get("fraction") or 0.0
            lines.append(f"- ▶ **{step}** {share:.0%}: {progress.get('message', '')}")
        else:
            lines.append(f"- ○ {step}")
    return "\n".join(lines)


def job_view(state: JobState) -> str:
    """The refresh started from this page: its progress while it runs, then how it ended."""
    if state.started_by is None:
        return ""
    if state.running:
        minutes, seconds = divmod(int(state.seconds), 60)
        head = f"**Refresh running**, started by {state.started_by} {minutes} min {seconds} s ago."
        if not state.progress.get("step"):
            return head + " Loading the models…"
        return head + "\n\n" + steps_view(state.progress)
    if state.run is not None:
        return outcome(state.run)
    if state.cancelled_by:
        return f"Cancelled by {state.cancelled_by} before the refresh began; nothing changed."
    said = no_remote_images(state.log_tail.replace("`", "'")) or f"exit code {state.returncode}"
    return f"**The refresh did not start**:\n\n```\n{said}\n```"


def build_models_tab(engine, home, guard):
    """The tab's components and events; returns its load event and that event's outputs."""
    tab = ModelsTab(engine, home, guard)
    return tab.load, tab.load_outputs


class ModelsTab:
    def __init__(self, engine, home, guard):
        self.registry = AdapterRegistry(home / "adapters")
        self.runs = RunStore(engine)
        self.guard = guard
        self.launcher = build_launcher(guard.settings, engine)
        self.active_md = gr.Markdown(elem_id="active-adapter")
        self.table = gr.Dataframe(headers=COLUMNS, interactive=False, wrap=True, elem_id="runs")
        self.plot = gr.LinePlot(
            x="run",
            y="value",
            color="metric",
            title="Candidate metrics across refreshes",
            height=260,
            elem_id="plot-runs",
        )
        with gr.Row():
            self.choice = gr.Dropdown(label="Adapter", choices=[], elem_id="adapter-choice")
            serve = gr.Button("Serve this adapter", variant="primary", elem_id="serve-adapter")
            base = gr.Button("Serve the base model", elem_id="serve-base")
        self.status = gr.Markdown(elem_id="models-status")
        with gr.Row(visible=False) as self.refresh_row:  # shown to reviewers and admins
            force = gr.Checkbox(label="even with few new examples", elem_id="refresh-force")
            start = gr.Button("Refresh now", variant="primary", elem_id="refresh-now")
            cancel = gr.Button("Cancel the refresh", variant="stop", elem_id="refresh-cancel")
        self.progress = gr.Markdown(elem_id="refresh-progress")
        # Polls the progress file while a refresh runs: each tick is a short event of its own,
        # so nothing holds the queue for the refresh's duration and the chat answers beside it.
        self.timer = gr.Timer(2.0, active=False)
        seen = gr.State(None)  # the run and step last shown: the table is redrawn when it moves

        self.outputs = [self.active_md, self.table, self.plot, self.choice]
        self.load_outputs = [*self.outputs, self.progress, self.timer, self.refresh_row]
        after = [*self.outputs, self.status]
        serve.click(self.serve_chosen, [self.choice], after, **PRIVATE)
        base.click(self.serve_base, None, after, **PRIVATE)
        start.click(self.start_refresh, [force], [self.progress, self.timer], **PRIVATE)
        cancel.click(
            self.cancel_refresh, None, [*self.outputs, self.progress, self.timer], **PRIVATE
        )
        self.timer.tick(
            self.poll,
            [seen],
            [self.progress, self.timer, seen, *self.outputs],
            show_progress="hidden",
            **PRIVATE,
        )

    def load(self, request: gr.Request):
        account = self.guard.account(request, "models")
        state = self.launcher.state()
        return (
            *self.listing(),
            job_view(state),
            gr.Timer(active=state.running),
            gr.update(visible=account.at_least("reviewer")),
        )

    def listing(self):
        all_runs = self.runs.runs()
        active = self.registry.active()
        active_id = active.adapter_id if active else None
        on_disk = [r.adapter_id for r in all_runs if self.registry.exists(r.adapter_id)]
        return (
            f"Serving: **{active_id or 'the base model (no adapter)'}**",
            [row(r, active_id) for r in reversed(all_runs)],
            trends(all_runs),
            gr.update(choices=on_disk, value=active_id if active_id in on_disk else None),
        )

    def switch(self, adapter_id, request: gr.Request):
        """Serve `adapter_id` (None: the base model); reviewers and admins only."""
        self.guard.account(request, "switch")
        known = {r.adapter_id for r in self.runs.runs() if r.adapter_id}
        if adapter_id is not None and adapter_id not in known:  # never a path someone typed
            return (*self.listing(), "Choose an adapter from the list.")
        try:
            self.registry.activate(adapter_id)
        except (FileNotFoundError, ValueError) as exc:
            gr.Warning(str(exc))
            return (*self.listing(), gr.skip())
        said = adapter_id or "the base model"
        return (*self.listing(), f"Switched to {said}; the chat uses it from its next answer.")

    def serve_chosen(self, adapter_id, request: gr.Request):
        if not adapter_id:
            self.guard.account(request, "switch")
            return (*self.listing(), "Choose an adapter first.")
        return self.switch(adapter_id, request)

    def serve_base(self, request: gr.Request):
        return self.switch(None, request)

    def start_refresh(self, even_few, request: gr.Request):
        """Start `autodidact refresh` in its own process; reviewers and admins only."""
        account = self.guard.account(request, "refresh")
        try:
            said = self.launcher.start(account.name, force=bool(even_few))
        except RuntimeError as busy:
            return f"Not started: {busy}.", gr.skip()
        return said + " Loading the models…", gr.Timer(active=True)

    def cancel_refresh(self, request: gr.Request):
        """Stop the refresh and leave everything as it was; reviewers and admins only."""
        account = self.guard.account(request, "refresh")
        said = self.launcher.cancel(account.name)
        shown = job_view(self.launcher.state()) or said
        return (*self.listing(), shown, gr.Timer(active=False))

    def poll(self, shown, request: gr.Request):
        """Every 2 s while a refresh runs: its progress; the table when its run moves on."""
        self.guard.account(request, "models")
        state = self.launcher.state()
        run = state.run
        key = [run.id, run.status, run.step] if run is not None else None
        redraw = self.listing() if key != shown else [gr.skip()] * len(self.outputs)
        return (job_view(state), gr.Timer(active=state.running), key, *redraw)
