"""The refresh's subcommands: `refresh`, `adapters`, `rollback`.

Owns their arguments, the progress display and the summaries they print. The pipeline itself is
feedback/refresher.py; which adapter is active is store/adapters.py's pointer, which the
running app picks up before its next answer.
"""

from __future__ import annotations

import re
import sys
import time

from assistant.settings import add_flags


def add_commands(sub) -> None:
    p = sub.add_parser("refresh", help="fine-tune on the pool; promote only if nothing regresses")
    p.add_argument("--dry-run", action="store_true", help="select and check the data, no training")
    p.add_argument("--force", action="store_true", help="train even with few new examples")
    p.add_argument("--every", metavar="INTERVAL", help="repeat forever, e.g. 24h, 90m (no cron)")
    add_flags(p)
    p = sub.add_parser("adapters", help="list refresh runs, their metrics, and the active one")
    add_flags(p)
    p = sub.add_parser("rollback", help="serve an earlier adapter (default: the one before)")
    p.add_argument("adapter", nargs="?", help="adapter id, or `base` for no adapter")
    add_flags(p)


def interval_seconds(text: str) -> float:
    """'24h' -> 86400.0; accepts s, m, h, d.

    >>> interval_seconds("24h"), interval_seconds("90m"), interval_seconds("1d")
    (86400.0, 5400.0, 86400.0)
    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text or "")
    if not m:
        raise ValueError(f"not an interval: {text!r} (use e.g. 30m, 24h, 7d)")
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def refresh_config(settings):
    """The refresh's rules and bounds, as the settings give them."""
    from feedback.refresh import RefreshConfig
    from feedback.train import TrainConfig

    return RefreshConfig(
        min_new=settings.refresh_min_new,
        min_pairs=settings.refresh_min_pairs,
        human_share=settings.refresh_human_share,
        anchor_file=settings.refresh_anchor_file,
        diversity_tolerance=settings.refresh_diversity_tolerance,
        max_answer_repeats=settings.refresh_max_answer_repeats,
        model_answers_per_question=settings.refresh_model_answers_per_question,
        eval_prompts=settings.refresh_eval_prompts,
        loss_tolerance=settings.refresh_loss_tolerance,
        win_rate_floor=settings.refresh_win_rate_floor,
        flag_tolerance=settings.refresh_flag_tolerance,
        answer_diversity_tolerance=settings.refresh_answer_diversity_tolerance,
        train=TrainConfig(
            max_steps=settings.refresh_max_steps,
            max_seconds=settings.refresh_max_seconds,
            max_memory_mb=settings.refresh_max_memory_mb,
        ),
    )


def refresher(settings, progress=None):
    from assistant.app import build_grader
    from assistant.engine import LlamaEngine
    from assistant.model import check_gguf, embedded_model_path
    from feedback.refresher import Refresher
    from store.db import open_database
    from store.embedder import Embedder

    if settings.openai_base_url:
        raise ValueError("a refresh fine-tunes a local GGUF model; unset --openai-base-url")
    path = check_gguf(settings.model) if settings.model else embedded_model_path()
    llama = LlamaEngine(path, context_window=settings.context_window, threads=settings.threads)
    return Refresher(
        open_database(settings.effective_database_url),
        settings.home_dir,
        path,
        llama,
        build_grader(settings, llama),
        refresh_config(settings),
        system_prompt=settings.system_prompt,
        progress=progress,
        embedder=Embedder(),
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
            f"win rate {c['win_rate']:.2f}; flag rate {c['flag_rate']:.2f} vs {p['flag_rate']:.2f}; "
            f"answer distinct-2 {c['answer_distinct_2']} vs {p['answer_distinct_2']}"
        )
        if b := m["evaluate"].get("base"):
            spread = f", spread {b['answer_spread']}" if "answer_spread" in b else ""
            lines.append(f"  base model: answer distinct-2 {b['answer_distinct_2']}{spread}")
    return "\n".join(lines)


def run(args, settings) -> int:
    from assistant.model import ModelError
    from feedback.refresher import RefreshBusy

    try:
        if args.command == "refresh":
            return refresh(args, settings)
        if args.command == "adapters":
            return adapters(settings)
        return rollback(args, settings)
    except (RefreshBusy, ModelError, ValueError, FileNotFoundError) as exc:
        print(f"autodidact: {exc}", file=sys.stderr)
        return 1


class StepBars:
    """One rich progress bar per pipeline step."""

    def __init__(self, bar):
        self.bar, self.tasks = bar, {}

    def __call__(self, step: str, done: float, message: str) -> None:
        if step not in self.tasks:
            self.tasks[step] = self.bar.add_task(step, total=1.0)
        self.bar.update(self.tasks[step], completed=done, description=f"{step}: {message}")


def refresh(args, settings) -> int:
    from rich.progress import Progress

    every = interval_seconds(args.every) if args.every else None
    while True:
        with Progress() as bar:
            result = refresher(settings, StepBars(bar)).run(dry_run=args.dry_run, force=args.force)
        print(summary(result), flush=True)
        if every is None:
            return 0 if result.status in ("promoted", "dry_run", "refused", "rejected") else 1
        print(f"Next refresh in {args.every}.", flush=True)
        time.sleep(every)


def adapters(settings) -> int:
    from feedback.refresher import RefreshBusy, refresh_lock
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
