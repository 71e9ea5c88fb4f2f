"""Grading cost: seconds of model time per graded exchange for each signal, and what a running
grading backlog does to the chat.

  1. Per signal: grade TruthfulQA answers with every signal on (judge, token log-probabilities,
     grounding against the best answer as a reference, self-consistency with N resamples) and
     print the mean seconds each took per exchange.
  2. Chat under a backlog: the same chats (greedy, same prompts, a pause between them as a person
     would take) measured twice in one run, with the grader off and with the grader working through
     a backlog in the background, so each chat arrives while a grade is under way. Prints decode
     tokens/s and time to first token for both, and the ratios (target: throughput >= 0.9).

    .venv/bin/python bench/grading_cost.py [--items 10] [--samples 3] [--chats 6]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
PROMPTS = [
    "Tell me a short story about a lighthouse keeper.",
    "Explain how photosynthesis works.",
    "Write a poem about autumn leaves.",
]


def per_signal_seconds(engine, items: int, samples: int) -> dict[str, float]:
    from tqdm import tqdm

    from feedback.grading.grader import Grader, GraderConfig

    grader = Grader(engine, config=GraderConfig(consistency_samples=samples, max_tokens=64))
    rows = [json.loads(line) for line in (DATA / "truthfulqa" / "dev.jsonl").open()][:items]
    seconds: dict[str, list[float]] = {}
    for r in tqdm(rows, desc="per-signal cost"):
        for answer in (r["best_answer"], r["incorrect_answers"][0]):
            result = grader.grade(r["question"], answer, reference=r["best_answer"])
            for k, v in result.seconds.items():
                seconds.setdefault(k, []).append(v)
    return {k: statistics.mean(v) for k, v in seconds.items()}


def chat_round(app, chats: int, pause: float) -> tuple[float, float]:
    rates, firsts = [], []
    for i in range(chats):
        time.sleep(pause)  # a person reading and typing: the grader gets to work meanwhile
        start = time.perf_counter()
        first = last = None
        text = ""
        for reply in app.chat.send(None, PROMPTS[i % len(PROMPTS)]):
            if reply.text != text:
                last = time.perf_counter()
                first = first or last
                text = reply.text
        n = len(app.model.llm.tokenize(text.encode(), add_bos=False))
        rates.append((n - 1) / (last - first))
        firsts.append((first - start) * 1000)
    return statistics.median(rates), statistics.median(firsts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--items", type=int, default=10, help="TruthfulQA questions (2 answers each)"
    )
    parser.add_argument("--samples", type=int, default=3, help="self-consistency resamples")
    parser.add_argument("--chats", type=int, default=6)
    parser.add_argument("--pause", type=float, default=3.0, help="seconds between chats")
    args = parser.parse_args()

    from assistant.llm.llama import LlamaEngine
    from assistant.llm.weights import embedded_model_path
    from assistant.settings import Settings
    from assistant.web.app import create_app

    settings = Settings(
        home=Path(tempfile.mkdtemp(prefix="autodidact-bench-")),
        grading=False,
        temperature=0.0,
        seed=1,
        max_tokens=96,
        stream_interval_ms=0,
    )
    engine = LlamaEngine(embedded_model_path(), context_window=4096, threads=settings.threads)
    costs = per_signal_seconds(engine, args.items, args.samples)

    app = create_app(settings, model=engine)
    for i in range(12):  # the backlog the grader will chew on
        list(app.chat.send(None, f"Question {i}: {PROMPTS[i % len(PROMPTS)]}"))
    off_rate, off_first = chat_round(app, args.chats, args.pause)
    app.worker.start()
    on_rate, on_first = chat_round(app, args.chats, args.pause)
    graded = app.grading.counts().get("done", 0)
    app.worker.stop()

    print("seconds of model time per graded exchange, by signal:")
    for k, v in costs.items():
        note = f" ({args.samples} resamples)" if k == "consistency" else ""
        print(f"  {k:<12} {v:6.2f} s{note}")
    print(f"  {'total':<12} {sum(costs.values()):6.2f} s")
    print(f"{'chat':<22} {'tokens/s':>9} {'first token ms':>15}")
    print(f"{'grading off':<22} {off_rate:>9.1f} {off_first:>15.1f}")
    print(
        f"{'grading a backlog':<22} {on_rate:>9.1f} {on_first:>15.1f}   ({graded} graded meanwhile)"
    )
    print(
        f"throughput ratio backlog/off: {on_rate / off_rate:.3f} (target >= 0.9); "
        f"first token {on_first - off_first:+.1f} ms"
    )
    out = ROOT / "bench" / "results" / "grading_cost.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {"seconds": costs, "off": [off_rate, off_first], "on": [on_rate, on_first]}, indent=1
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
