"""Chat speed while a refresh trains beside it: `bench/chat_throughput.py --during-refresh`.

In one run, on one home whose pool is seeded (so the refresh really trains): the app answers
the same prompts idle, then while a refresh runs as the Models tab starts it (the same launcher,
feedback/refresh/job.py: its own process, `refresh_nice` and `refresh_threads`, here with
`--force` so a fresh pool need not reach `refresh_min_new`). The refresh phase starts once the
child has reached a step that computes (train, export, verify or evaluate), not while it is
still importing; each answer records the step the refresh was in. Once the answers are in, the
refresh is cancelled (the run is kept as `cancelled`).

Prints and saves, for both phases, decode tokens/s and time to first token as the client sees
them and as the app timed them, and the ratios during/idle (1.0: the refresh costs the chat
nothing). `--refresh-nice` and `--refresh-threads` override the settings, to measure the
trade-off between a refresh's speed and the chat's.

Owns this phase order and its figures only; the prompts, timing the answers and counting their
tokens are bench/chat_runs.py's, starting the app and seeding its pool bench/harness.py's.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from bench.chat_runs import app_answers, app_settings, own_timings, summarize
from bench.harness import RESULTS, new_home, seed_pool, start_app, table

COMPUTING = ("train", "export", "verify", "evaluate", "promote")


def launcher(home: Path, args):
    """The Models tab's launcher on the bench's home, with the nice/threads asked for."""
    from assistant.settings import Settings
    from feedback.refresh.job import RefreshJobConfig, RefreshLauncher
    from store.db import open_database

    settings = Settings(home=home)
    config = RefreshJobConfig(
        nice=settings.refresh_nice if args.refresh_nice is None else args.refresh_nice,
        threads=settings.refresh_threads if args.refresh_threads is None else args.refresh_threads,
    )
    return RefreshLauncher(settings, open_database(settings.effective_database_url), config)


def wait_until_computing(job, timeout_s: float = 900) -> float:
    """Seconds until the refresh child reached a step that computes; raises if it ended first."""
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        state = job.state()
        if not state.running:
            raise RuntimeError(f"the refresh ended before training: {state.run or state.log_tail}")
        if state.progress.get("step") in COMPUTING:
            return time.monotonic() - began
        time.sleep(0.5)
    raise RuntimeError(f"the refresh did not reach training within {timeout_s:.0f} s")


def answers(url: str, args, job=None) -> tuple[list, list]:
    """rounds x prompts answers through the app (after one warm-up when idle), with the
    refresh's step at each answer's end ('-' when none runs)."""
    steps = []

    def step() -> None:
        state = job.state() if job else None
        steps.append(state.progress.get("step", "start") if state and state.running else "-")

    return app_answers(url, args, warm_up=job is None, after_each=step), steps


def last_exchange(home: Path) -> int:
    with sqlite3.connect(home / "autodidact.db") as db:
        return db.execute("SELECT coalesce(max(id), 0) FROM exchanges").fetchone()[0]


def app_timings(home: Path, after: int, until: int) -> dict:
    """The app's own timings of the answers with ids in (after, until]: first token and decode."""
    with sqlite3.connect(home / "autodidact.db") as db:
        rows = db.execute(
            "SELECT first_token_ms, latency_ms, completion_tokens FROM exchanges "
            "WHERE id > ? AND id <= ? AND first_token_ms IS NOT NULL",
            (after, until),
        ).fetchall()
    return own_timings(rows)


def measure_during_refresh(args) -> dict:
    """Idle answers, then answers while the refresh computes, on one seeded home."""
    from llama_cpp import Llama

    from assistant.llm.weights import embedded_model_path

    model = embedded_model_path()
    home = new_home()
    pool = seed_pool(home, args.pool)
    if not pool.get("train"):
        raise SystemExit(f"the seeded pool has no training examples ({pool}); raise --pool")
    print(f"pool seeded: {pool}", flush=True)
    tokenizer = Llama(str(model), vocab_only=True, verbose=False)
    with start_app(home, app_settings(args), child=True) as app:
        job = launcher(home, args)
        try:
            start = last_exchange(home)
            idle, _ = answers(app.url, args)
            middle = last_exchange(home)
            job.start("bench", force=True)
            ready_s = wait_until_computing(job)
            print(
                f"the refresh is computing after {ready_s:.0f} s; answering beside it", flush=True
            )
            during, steps = answers(app.url, args, job)
            end = last_exchange(home)
            said = job.cancel("bench") if job.running() else "it had ended"
        finally:
            job.stop()
    first, second = summarize(tokenizer, idle), summarize(tokenizer, during)
    inside_idle, inside_during = (
        app_timings(home, start + 1, middle),
        app_timings(home, middle, end),
    )
    return figures(args, job, pool, ready_s, steps, said, first, second, inside_idle, inside_during)


def figures(args, job, pool, ready_s, steps, said, idle, during, app_idle, app_during) -> dict:
    def ratio(a, b):
        return round(a / b, 3) if b else None

    return {
        "threads": args.threads,
        "max_tokens": args.max_tokens,
        "pause_s": args.pause,
        "grading": args.grading,
        "pool": pool,
        "refresh": {
            "nice": job.config.nice,
            "threads": job.config.threads,
            "seconds_to_computing": round(ready_s, 1),
            "step_after_each_answer": steps,
            "answers_with_refresh_running": sum(s != "-" for s in steps),
            "ended": said,
        },
        "idle": {k: round(v, 1) for k, v in idle.items()},
        "during": {k: round(v, 1) for k, v in during.items()},
        "app_idle": app_idle,
        "app_during": app_during,
        "decode_ratio_during_over_idle": ratio(during["decode"], idle["decode"]),
        "whole_answer_ratio_during_over_idle": ratio(during["whole"], idle["whole"]),
        "first_token_ratio_during_over_idle": ratio(during["first_ms"], idle["first_ms"]),
        "app_decode_ratio_during_over_idle": ratio(
            app_during["decode_tokens_per_s"], app_idle["decode_tokens_per_s"]
        ),
        "app_first_token_ratio_during_over_idle": ratio(
            app_during["first_token_ms"], app_idle["first_token_ms"]
        ),
    }


def show(r: dict) -> None:
    f = r["refresh"]
    print(
        f"refresh: nice {f['nice']}, {f['threads']} thread(s); running for "
        f"{f['answers_with_refresh_running']}/{len(f['step_after_each_answer'])} answers "
        f"(steps {sorted(set(f['step_after_each_answer']))}); {f['ended']}"
    )
    rows = []
    for name, key, app in (
        ("idle", "idle", "app_idle"),
        ("during refresh", "during", "app_during"),
    ):
        c, a = r[key], r[app]
        rows.append([f"{name}, client", *(f"{c[k]:.1f}" for k in ("decode", "whole", "first_ms"))])
        rows.append(
            [
                f"{name}, app timings",
                f"{a['decode_tokens_per_s']:.1f}",
                None,
                f"{a['first_token_ms']:.1f}",
            ]
        )
    table(None, ["phase", "decode tok/s", "whole tok/s", "first token ms"], rows)
    print(
        f"during/idle: decode {r['decode_ratio_during_over_idle']} (app's own "
        f"{r['app_decode_ratio_during_over_idle']}), whole answer "
        f"{r['whole_answer_ratio_during_over_idle']}, first token "
        f"{r['first_token_ratio_during_over_idle']} (app's own "
        f"{r['app_first_token_ratio_during_over_idle']}; above 1 is slower)"
    )


def result_path(r: dict, args) -> Path:
    name = "chat_throughput-during-refresh"
    if args.refresh_nice is not None or args.refresh_threads is not None:
        name += f"-nice{r['refresh']['nice']}-threads{r['refresh']['threads']}"
    return RESULTS / f"{name}.json"
