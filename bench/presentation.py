"""Presentation: given the right taught answer, which place in the prompt makes the model use it?

The model's half of the memory, apart from the lookup (bench/memory_lookup.py measures that, and
bench/memory.py both together through the app). For every fact of bench/data/learning_facts.jsonl
the fact's own correction is handed to the product's prompt builder (assistant/prompt.py) as the
one taught example the lookup would find, under each `retrieval_taught_in` asked for (and
`none`: no example, the floor); the embedded model, through the product's llama.cpp engine,
answers each of the fact's 3 rewordings with the app's sampling and a fixed seed. Recalled: every
keyword of the fact in the answer (bench/learning_checks.py `recall`). Even facts are the
development half, odd the test half, as in bench/memory.py.

    .venv/bin/python -m bench.presentation [--taught-in none turns system message] [--facts 48]
        [--max-tokens 96] [--seed 0] [--repeat-penalty P ...] [--threads N] [--out FILE]

`--repeat-penalty` with several values runs every mode at each (default: the app's).
"""

from __future__ import annotations

import argparse
from datetime import datetime
from itertools import product
from pathlib import Path

from bench.harness import RESULTS, command_line, commit, progress, table, write_result
from bench.learning_checks import read_rows, recall

MODES = ("none", "turns", "system", "message")


def arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--taught-in", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--facts", type=int, default=48)
    p.add_argument("--max-tokens", type=int, default=96)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat-penalty", type=float, nargs="+", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=RESULTS / "presentation.json")
    return p.parse_args()


def example_of(number: int, fact: dict):
    """The fact's correction as the curator hands it to the prompt builder."""
    from feedback.pool.curator import Example

    when = datetime(2026, 11, 12)
    return Example(number, number, fact["question"], fact["answer"], 1.0, taught=True,
                   taught_at=when, matched="both")  # fmt: skip


def measure(args) -> dict:
    from assistant.llm.weights import open_gguf, resolve_gguf
    from assistant.prompt import PromptBuilder
    from assistant.settings import Settings

    settings = Settings(seed=args.seed, max_tokens=args.max_tokens)
    model = open_gguf(resolve_gguf(None), settings.context_window, args.threads)
    facts = read_rows()[0][: args.facts]
    penalties = args.repeat_penalty or [settings.repeat_penalty]
    rows = []
    with progress() as bar:
        total = len(facts) * 3 * len(args.taught_in) * len(penalties)
        task = bar.add_task("answers", total=total)
        for number, fact in enumerate(facts):
            for question, mode, penalty in product(fact["paraphrases"], args.taught_in, penalties):
                settings.repeat_penalty = penalty
                settings.retrieval_taught_in = "turns" if mode == "none" else mode
                examples = [] if mode == "none" else [example_of(number, fact)]
                prompt = PromptBuilder(model, settings).build([], question, examples)
                text = "".join(d.text for d in model.stream(prompt.messages, settings.sampling()))
                rows.append({"mode": mode, "repeat_penalty": penalty, "fact": fact["id"], "question": question,
                                 "answer": text, "recalled": recall(fact["keywords"], text),
                                 "half": "dev" if number % 2 == 0 else "test"})  # fmt: skip
                bar.advance(task)
    return {"commit": commit(), "command": command_line(), "facts": len(facts), "rows": rows}


def rate(rows: list[dict]) -> str:
    return f"{sum(r['recalled'] for r in rows) / len(rows):.1%}" if rows else "-"


def main() -> int:
    args = arguments()
    result = measure(args)
    lines = []
    for mode, penalty in product(
        args.taught_in, sorted({r["repeat_penalty"] for r in result["rows"]})
    ):
        mine = [r for r in result["rows"] if r["mode"] == mode and r["repeat_penalty"] == penalty]
        halves = [rate([r for r in mine if r["half"] == h]) for h in ("dev", "test")]
        lines.append([mode, penalty, len(mine), rate(mine), *halves])
    result["table"] = lines
    title = f"{result['facts']} facts at {result['commit']}: the right taught answer, placed"
    head = ["taught answer shown", "repeat penalty", "questions", "recall", "dev half", "test half"]
    table(title, head, lines)
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
