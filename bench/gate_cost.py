"""What the gate's pairwise judge costs, and what stopping a judge that picks by position saves.

The refresh's evaluate step asks its judge (the base model, unless `judge_model` names another)
both orders of each of its `eval_prompts` pairs (64 by default). The embedded 135M judge picks
answer A whatever the answers say, so every pair ties and none counts; with `judge_early_stop`
(on by default) it is asked no more once the pairs left could not plausibly reject the
candidate (feedback/refresh/pairwise.py `judge_pairs` and `can_stop`).

Both ways judge the same pairs in the same run, in the order stopped early, every pair, stopped
early: the
first TruthfulQA questions of tests/data (the gate's kind of question), each with its best answer
as the current model's and its first incorrect answer as the candidate's, so the candidate is
worse on every prompt and a judge that reads the answers should reject it. Reported per way:
the judge calls, the seconds, the sign-test figures and whether the gate would reject (the
refresh's rule, `regressions`, at the default `gate_alpha`); and how many times faster the
early stop is.

    .venv/bin/python -m bench.gate_cost [--prompts 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.harness import DATA, RESULTS, command_line, commit, read_jsonl, table, write_result


class CountingJudge:
    """The engine as the judge, counting its calls."""

    def __init__(self, engine):
        self.engine, self.calls = engine, 0
        self.model_id = engine.model_id

    def stream(self, messages, sampling, cancel=None, json_schema=None):
        self.calls += 1
        return self.engine.stream(messages, sampling, cancel, json_schema=json_schema)


def judged(engine, rows: list[dict], stop: bool) -> dict:
    """One way of judging every row's pair: its calls, seconds, figures and the gate's reading."""
    from feedback.refresh.gates import regressions
    from feedback.refresh.pairwise import judge_pairs
    from feedback.refresh.rules import RefreshConfig

    judge = CountingJudge(engine)
    start = time.perf_counter()
    figures = judge_pairs(
        judge,
        [r["question"] for r in rows],
        [r["incorrect_answers"][0] for r in rows],
        [r["best_answer"] for r in rows],
        stop_alpha=RefreshConfig().gate_alpha if stop else None,
    )
    seconds = time.perf_counter() - start
    reasons = regressions({"pairwise": figures}, {}, RefreshConfig())
    figures.pop("outcomes")
    return {
        "early_stop": stop,
        "calls": judge.calls,
        "seconds": round(seconds, 1),
        **figures,
        "rejects": bool(reasons),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=64, help="pairs judged (the default gate's)")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads")
    parser.add_argument("--out", type=Path, default=RESULTS / "gate-cost.json")
    args = parser.parse_args()

    from assistant.llm.llama import LlamaEngine
    from assistant.llm.weights import embedded_model_path

    engine = LlamaEngine(embedded_model_path(), context_window=2048, threads=args.threads)
    rows = read_jsonl(DATA / "truthfulqa" / "dev.jsonl")[: args.prompts]
    runs = []
    for stop in (True, False, True):
        runs.append(judged(engine, rows, stop))
        print(runs[-1], flush=True)
    full = runs[1]
    stopped = (runs[0]["seconds"] + runs[2]["seconds"]) / 2
    table(
        f"The gate's judge on {len(rows)} pairs (commit {commit()})",
        [
            "way",
            "calls",
            "seconds",
            "wins / losses / ties",
            "judged",
            "not asked",
            "first choice",
            "p worse",
            "rejects",
        ],
        [
            [
                "early stop" if r["early_stop"] else "every pair",
                r["calls"],
                r["seconds"],
                f"{r['wins']} / {r['losses']} / {r['ties']}",
                r["judged"],
                r["unasked"],
                r["first_choice"],
                r["p_worse"],
                r["rejects"],
            ]
            for r in runs
        ],
    )
    speedup = round(full["seconds"] / stopped, 2) if stopped else None
    print(
        f"early stop: {speedup}x faster than judging every pair; "
        f"{full['seconds'] - stopped:.0f} s saved per refresh at this size"
    )
    write_result(
        {"commit": commit(), "command": command_line(), "runs": runs, "speedup": speedup},
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
