"""The refresh's subcommands: `refresh`, `adapters`, `rollback`.

Owns their arguments, the progress display and the summaries they print. The pipeline itself is
feedback/refresh/pipeline.py; which adapter is active is store/adapters.py's pointer, which the
running app picks up before its next answer.
"""

from __future__ import annotations

import re
import time

from assistant.cli.command import Command


def refresh_arguments(p) -> None:
    p.add_argument("--dry-run", action="store_true", help="select and check the data, no training")
    p.add_argument("--force", action="store_true", help="train even with few new examples")
    p.add_argument("--every", metavar="INTERVAL", help="repeat forever, e.g. 24h, 90m (no cron)")
    p.add_argument(
        "--progress-file",
        metavar="PATH",
        help="also write each step's progress, and the outcome, to this JSON file (replaced "
        "atomically; the app's Models tab polls it)",
    )


def rollback_arguments(p) -> None:
    p.add_argument("adapter", nargs="?", help="adapter id, or `base` for no adapter")


def interval_seconds(text: str) -> float:
    """'24h' -> 86400.0; accepts s, m, h, d.

    >>> interval_seconds("24h"), interval_seconds("90m"), interval_seconds("1d")
    (86400.0, 5400.0, 86400.0)
    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text or "")
    if not m:
        raise ValueError(f"not an interval: {text!r} (use e.g. 30m, 24h, 7d)")
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def rehearsal_line(data: dict) -> str | None:
    """The summary's line on what the refresh rehearsed (None: it did not).

    >>> print(rehearsal_line({"rehearsal": 5, "rehearsal_capped": 1, "synthesis": {"rehearsal": {
    ...     "prompts": 32, "unasked": 28, "kept": 3, "flagged": 1, "neighbours": {"written": 6,
    ...     "kept": 4, "answers": {"kept": 3, "flagged": 1}}}}}))
      rehearsal: 5 in the mix, 1 capped; neighbours of taught answers: 4 kept of 6 written, 3 answers passed the grade; general prompts: 3 passed of 4 asked
    """
    reh = (data.get("synthesis") or {}).get("rehearsal")
    if not reh:
        return None
    near = reh.get("neighbours", {})
    why = f" ({near['skipped']})" if near.get("skipped") else ""
    return (
        f"  rehearsal: {data.get('rehearsal', 0)} in the mix, {data.get('rehearsal_capped', 0)} "
        f"capped; neighbours of taught answers: {near.get('kept', 0)} kept of "
        f"{near.get('written', 0)} written, {near.get('answers', {}).get('kept', 0)} answers "
        f"passed the grade{why}; general prompts: {reh.get('kept', 0)} passed of "
        f"{reh.get('prompts', 0) - reh.get('unasked', 0)} asked"
    )


def summary(run) -> str:
    lines = [f"Refresh {run.id} ({run.adapter_id}): {run.status} at step {run.step}."]
    if run.reason:
        lines.append(f"  why: {run.reason}")
    d = run.data or {}
    if d:
        lines.append(
            f"  mix: {d.get('mix', 0)} examples ({d.get('new', 0)} new; human share "
            f"{d.get('human_share', 0):.0%}; {d.get('model_only_capped', 0)} model-only capped, "
            f"{d.get('model_only_repeats', 0)} of them as repeats); "
            f"distinct-2 {d.get('distinct_2')}, embedding spread {d.get('embedding_spread')}; "
            f"held out {d.get('heldout', 0)}"
        )
    if syn := d.get("synthesis"):
        rate = f"{syn['pass_rate']:.0%}" if syn.get("pass_rate") is not None else "n/a"
        lines.append(
            f"  lessons: {syn['kept']} kept of {syn['written']} written for {syn['done']} taught "
            f"answer(s) (pass rate {rate}) in {syn['seconds']} s; {d.get('synthetic', 0)} in "
            f"the mix from {d.get('synthetic_parents', 0)} taught answer(s)"
        )
    if line := rehearsal_line(d):
        lines.append(line)
    m = run.metrics or {}
    if "train" in m:
        t = m["train"]
        lines.append(
            f"  train: {t['steps']} steps, {t['tokens']} tokens, {t['tokens_per_second']} tokens/s, "
            f"loss {t['loss']}, peak {t['peak_memory_mb']} MiB on {t['device']}"
        )
        if "dpo" in t:
            p = t["dpo"]
            lines.append(
                f"  DPO: {p['steps']} steps on {p['pairs']} preference pairs, reward margin "
                f"{p['first_margin']} -> {p['last_margin']}"
            )
    if "verify" in m:
        v = m["verify"]
        exact = f" ({v['exact']:.1%} exactly)" if "exact" in v else ""
        lines.append(f"  export check: {v['agreement']:.1%} next-token agreement{exact}")
    if "evaluate" in m:
        c, p = m["evaluate"]["candidate"], m["evaluate"]["current"]
        lines.append(
            f"  candidate vs current: held-out loss {c['heldout_loss']} vs {p['heldout_loss']}; "
            f"taught-answer loss {c.get('taught_loss')} vs {p.get('taught_loss')}; "
            f"general-answer loss {c.get('general_loss')} vs {p.get('general_loss')}; "
            f"answer distinct-2 {c['answer_distinct_2']} vs {p['answer_distinct_2']}"
        )
        for note in m["evaluate"].get("unmeasured", []):
            lines.append(f"  not measured: {note}")
        if pw := c.get("pairwise"):
            lines.append(
                f"  judged pairwise by {m['evaluate'].get('judge')}: better on {pw['wins']}, "
                f"worse on {pw['losses']}, tied on {pw['ties']} of {pw['prompts']} prompts "
                f"(sign test p = {pw['p_worse']} that it is worse)"
            )
        if b := m["evaluate"].get("base"):
            spread = f", spread {b['answer_spread']}" if "answer_spread" in b else ""
            lines.append(f"  base model: answer distinct-2 {b['answer_distinct_2']}{spread}")
    if took := m.get("seconds"):
        steps = ", ".join(f"{step} {seconds:.0f} s" for step, seconds in took.items())
        lines.append(f"  time: {steps} ({sum(took.values()) / 60:.1f} minutes in all)")
    return "\n".join(lines)


class StepBars:
    """One rich progress bar per pipeline step; with a progress file, written there too."""

    def __init__(self, bar, file=None):
        self.bar, self.tasks, self.file = bar, {}, file

    def __call__(self, step: str, done: float, message: str) -> None:
        if step not in self.tasks:
            self.tasks[step] = self.bar.add_task(step, total=1.0)
        self.bar.update(self.tasks[step], completed=done, description=f"{step}: {message}")
        if self.file is not None:
            self.file(step, done, message)


def refresh(args, settings) -> int:
    from rich.progress import Progress

    from assistant.llm.embedder import Embedder
    from assistant.wiring import build_refresher
    from feedback.refresh.job import ProgressFile

    every = interval_seconds(args.every) if args.every else None
    while True:
        file = ProgressFile(args.progress_file) if args.progress_file else None
        with Progress() as bar:
            # The embedder on the settings' threads too: a refresh started from the app runs
            # with `threads` capped (feedback/refresh/job.py), and ONNX Runtime would take
            # every core otherwise.
            embedder = Embedder(threads=settings.threads)
            refresher = build_refresher(settings, StepBars(bar, file), embedder=embedder)
            try:
                result = refresher.run(dry_run=args.dry_run, force=args.force)
            finally:
                refresher.llama.close()  # `--every` builds a fresh engine for each run
        if file is not None:
            file.finish(result)
        print(summary(result), flush=True)
        if every is None:
            return 0 if result.status in ("promoted", "dry_run", "refused", "rejected") else 1
        print(f"Next refresh in {args.every}.", flush=True)
        time.sleep(every)


def adapters(args, settings) -> int:
    from feedback.refresh.pipeline import RefreshBusy, refresh_lock
    from store.adapters import AdapterRegistry
    from store.db import open_database
    from store.runs import RunStore

    store = RunStore(open_database(settings.effective_database_url))
    try:
        with refresh_lock(settings.home_dir):  # no refresh runs: a `running` one is dead
            store.recover_interrupted()
    except RefreshBusy:
        pass
    runs = store.runs()
    active = AdapterRegistry(settings.home_dir / "adapters").active()
    print(f"Active: {active.adapter_id if active else 'base model (no adapter)'}")
    for r in runs:
        mark = "*" if active and r.adapter_id == active.adapter_id else " "
        print(f"{mark} " + summary(r))
    if not runs:
        print("No refresh has run yet: `autodidact refresh`.")
    return 0


def rollback(args, settings) -> int:
    from store.adapters import AdapterRegistry
    from store.db import open_database
    from store.runs import RunStore

    registry = AdapterRegistry(settings.home_dir / "adapters")
    runs = RunStore(open_database(settings.effective_database_url))
    active = registry.active()
    target = args.adapter
    if target is None:
        promoted = [r.adapter_id for r in runs.runs() if r.status == "promoted"]
        if active and active.adapter_id in promoted:
            earlier = promoted[: promoted.index(active.adapter_id)]
        else:
            earlier = promoted[:-1]
        target = earlier[-1] if earlier else "base"
    if target == "base":
        registry.activate(None)
        print("Serving the base model (no adapter) from the next answer on.")
        return 0
    if runs.run(target) is None and not registry.exists(target):
        raise ValueError(f"no adapter {target!r}; `autodidact adapters` lists them")
    registry.activate(target)
    print(f"Serving adapter {target} from the next answer on.")
    return 0


# Where the runs and adapters are; a refresh also uses the local model, the judge and the
# grader (its synthesis step grades the lessons), and its own guards, gates and bounds.
STATE = ("home", "database_url")
REFRESH = (*STATE, "model", "max_tokens", "system_prompt", "grading", "synthesis", "refresh")

COMMANDS = [
    Command(
        "refresh",
        "fine-tune on the pool; promote only if nothing regresses",
        refresh,
        refresh_arguments,
        errors=(ValueError,),  # a bad --every, a broken anchor file, a remote model
        uses=REFRESH,
    ),
    Command(
        "adapters",
        "list refresh runs, their metrics, and the active one",
        adapters,
        uses=STATE,
    ),
    Command(
        "rollback",
        "serve an earlier adapter (default: the one before)",
        rollback,
        rollback_arguments,
        errors=(ValueError,),  # an unknown adapter
        uses=STATE,
    ),
]
