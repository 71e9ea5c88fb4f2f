"""Regrade: which part of a flag-rate rise is the answers, and which the grader?

Before b530bb4 the app graded answers after a refresh with a grader on the served weights: the
judge and the log-probabilities both came from the adapter; since, the judge runs on the base
weights (`grading_judge_base`) and the log-probabilities on the adapter. A flag rate
that rises on unrelated questions after a refresh (bench/learning.py, phase 2) is either answers
that got worse or a grader that moved with the weights. This grades one learning run's answers
to the unrelated questions again, the same answers each time:
  - `after`, the adapter's answers, three ways: as the app graded them before b530bb4 (judge
    and log-probabilities on the adapter); the judge on the base weights and the log-probabilities
    on the adapter (the model that answered: the app now); judge and log-probabilities on the
    base weights;
  - `before`, the base model's answers before any teaching, with the base grader (the app's
    own grade then, again: how far a regrade moves on its own).
No references (nobody taught anything about these questions); the settings' grader config.

    .venv/bin/python -m bench.regrade --result bench/results/learning-spare.json \
        [--phase "refresh 1 weights"] [--threads 2] [--out bench/results/regrade.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.harness import RESULTS, command_line, commit, table, write_result


def arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--result", type=Path, required=True, help="a bench/learning.py result")
    p.add_argument("--phase", default="refresh 1 weights", help="the answers' phase, after")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=RESULTS / "regrade.json")
    return p.parse_args()


def answers(result: dict, phase: str) -> tuple[list[dict], str | None]:
    """The unrelated questions' answers of `phase`, and the adapter that gave them."""
    rows = [r for r in result["answers"] if r["kind"] == "unrelated" and r["phase"] == phase]
    return rows, next((r["adapter_id"] for r in rows if r["adapter_id"]), None)


def flag_rate(grader, rows: list[dict]) -> tuple[float, list[bool]]:
    flags = [grader.grade(r["question"], r["answer"]).flagged for r in rows]
    return round(sum(flags) / max(1, len(flags)), 4), flags


def measure(args) -> dict:
    from assistant.llm.weights import open_gguf
    from assistant.settings import Settings
    from assistant.wiring import grader_config, local_model
    from feedback.grading.grader import Grader

    result = json.loads(args.result.read_text())
    after, adapter_id = answers(result, args.phase)
    before, _ = answers(result, "before")
    if not after or adapter_id is None:
        raise SystemExit(f"no unrelated answers from an adapter in phase {args.phase!r}")
    adapter = Path(result["home"]) / "adapters" / adapter_id / "adapter.gguf"
    settings = Settings(**({"threads": args.threads} if args.threads else {}))
    path, base = local_model(settings)
    adapted = open_gguf(path, settings.context_window, settings.threads)
    adapted.set_adapter(adapter, adapter_id)
    config = grader_config(settings)
    graders = {
        "judge and log-probabilities on the adapter (the app before b530bb4)": Grader(
            adapted, adapted, config
        ),
        "judge on the base, log-probabilities on the adapter (the app now)": Grader(
            base, adapted, config
        ),
        "judge and log-probabilities on the base": Grader(base, base, config),
    }
    out = {"commit": commit(), "command": command_line(), "result": str(args.result),
           "result_commit": result.get("commit"), "adapter": adapter_id, "rates": {}}  # fmt: skip
    for name, grader in graders.items():
        out["rates"][f"after: {name}"] = flag_rate(grader, after)
    out["rates"]["before: judge and log-probabilities on the base"] = flag_rate(
        graders["judge and log-probabilities on the base"], before
    )
    out["questions"] = [r["question"] for r in after]
    return out


def main() -> int:
    args = arguments()
    out = measure(args)
    rows = [[name, f"{rate:.1%}", sum(flags)] for name, (rate, flags) in out["rates"].items()]
    title = f"{len(out['questions'])} unrelated questions of {out['result']} at {out['commit']}"
    table(title, ["answers: grader", "flag rate", "flagged"], rows)
    write_result(out, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
