"""The memory through the chat: taught once, is a fact recalled for reworded questions?

bench/learning.py's retrieval phase on its own, for each way of showing what was taught
(`--taught-in message turns system`), each in a new home: the app as `autodidact serve` runs it, one
account through gradio_client, grading on, the app's sampling with a fixed seed. For each:
  0. the unrelated questions before any teaching (each answer's baseline, and the flag rate
     without memory);
  1. every fact of bench/data/learning_facts.jsonl asked and corrected (/correct), both sets;
  2. every fact's 3 rewordings, each in a new conversation, deleted once read: recall (every
     keyword of the fact in the answer, bench/learning_checks.py), also in the model's own
     words (without a taught answer the chat restated under it, `retrieval_restate`), and
     whether the fact's own correction was what the memory drew on first (`retrieved`);
  3. the unrelated questions again: leakage (a taught name in an answer that its baseline did
     not have) and the flag rate once grading settled.
With `--adapter` the app serves that LoRA throughout (issue 24's "with an adapter serving").
Recall is split by fact: even positions in the file are the development half (where the
thresholds were looked at), odd the test half.

    .venv/bin/python -m bench.memory [--taught-in message turns system] [--facts 48] [--unrelated 24]
        [--max-tokens 96] [--seed 0] [--threads N] [--adapter GGUF] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.harness import RESULTS, command_line, commit, new_home, progress, table, write_result
from bench.learning import Session, paraphrases, teach, unrelated_questions
from bench.learning_checks import read_rows


def arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--taught-in", nargs="+", default=["message", "turns", "system"])
    p.add_argument("--facts", type=int, default=48)
    p.add_argument("--unrelated", type=int, default=24)
    p.add_argument("--max-tokens", type=int, default=96)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument(
        "--adapter", type=Path, help="a GGUF LoRA (bench/lessons.py exports them) the app serves"
    )
    p.add_argument("--settle", type=float, default=600.0)
    p.add_argument("--out", type=Path, default=RESULTS / "memory.json")
    args = p.parse_args()
    if args.adapter and not args.adapter.is_file():
        p.error(f"--adapter {args.adapter}: no such file (bench/lessons.py leaves one per arm)")
    args.keep_probes = False
    return args


def one(args, taught_in: str) -> dict:
    facts, unrelated = read_rows()
    facts, unrelated = facts[: args.facts], unrelated[: args.unrelated]
    args.settings = {"retrieval_taught_in": taught_in}
    session = Session(home := new_home(prefix="autodidact-memory-"), args)
    if args.adapter:
        serve(home, args.adapter)
    session.start(retrieval=True)
    try:
        with progress() as bar:
            before = unrelated_questions(session, unrelated, "before", bar, [], {})
            baseline = {r["id"]: r["answer"] for r in before}
            taught = teach(session, facts, "teach", bar)
            asked = paraphrases(session, facts, "memory", bar)
            after = unrelated_questions(session, unrelated, "after", bar, facts, baseline)
    finally:
        session.stop()
    first = {f["id"]: taught[f["id"]].get("exchange_id") for f in facts}
    half = {f["id"]: ("dev" if i % 2 == 0 else "test") for i, f in enumerate(facts)}
    for row in asked:
        retrieved = row.get("retrieved") or []
        row["drew_on_it_first"] = bool(retrieved) and retrieved[0] == first[row["fact"]]
        row["half"] = half[row["fact"]]
    return {"taught_in": taught_in, "paraphrases": asked, "before": before, "after": after}


def serve(home: Path, adapter: Path) -> None:
    """Have the app in `home` serve `adapter`, as a promoted refresh would."""
    import shutil

    from store.adapters import AdapterRegistry

    registry = AdapterRegistry(home / "adapters")
    registry.folder("bench").mkdir(parents=True)
    shutil.copyfile(adapter, registry.file("bench"))
    registry.activate("bench")


def rate(rows: list[dict], key: str) -> float:
    return sum(bool(r.get(key)) for r in rows) / max(len(rows), 1)


def summary(run: dict) -> list:
    asked = run["paraphrases"]
    return [
        run["taught_in"],
        f"{rate(asked, 'recall_all'):.1%}",
        f"{rate(asked, 'recall_model'):.1%}",
        f"{rate(asked, 'restated'):.1%}",
        f"{rate([r for r in asked if r['half'] == 'dev'], 'recall_all'):.1%}",
        f"{rate([r for r in asked if r['half'] == 'test'], 'recall_all'):.1%}",
        f"{rate(asked, 'drew_on_it_first'):.1%}",
        f"{rate(run['after'], 'leaked'):.1%}",
        f"{rate(run['before'], 'flagged'):.1%} → {rate(run['after'], 'flagged'):.1%}",
    ]


def main() -> int:
    args = arguments()
    started = commit()
    runs = [one(args, taught_in) for taught_in in args.taught_in]
    rows = [summary(run) for run in runs]
    table(
        f"memory through the chat: {args.facts} facts x 3 rewordings, commit {started}",
        ["taught in", "recall", "model's words alone", "restated", "dev", "test", "drew on it first", "leakage",
         "flag rate before → after"],
        rows,
    )  # fmt: skip
    result = {"commit": started, "command": command_line(), "rows": rows, "runs": runs}
    result["settings"] = {k: v for k, v in vars(args).items() if k != "out"}
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
