"""Grading cost: seconds of model time per graded exchange for each signal, what looking up the
references costs, and what a running grading backlog does to the chat, with a knowledge base and
a training pool in place.

  1. Per signal: grade TruthfulQA answers with every signal on (judge, token log-probabilities,
     grounding against the best answer as a reference, self-consistency with N resamples) and
     print the mean seconds each took per exchange.
  2. The app as users run it, in this process: a training pool of `--pool` synthetic exchanges
     (bench/pool.py's, curated, so corrections and approvals exist to be found) and a knowledge
     base of `--documents` passages (bench/documents.py: the 500 HaluEval passages, then
     TruthfulQA's correct answers as FAQ paragraphs, then HaluEval re-split; one file each,
     through `app.library.add_bytes`). Every message is embedded and searched in both.
  3. Chat under a backlog: the same chats (greedy, same prompts, a pause between them as a
     person would take) measured twice in one run, with the grader off and with the grader
     working through a backlog in the background, so each chat arrives while a grade is under
     way. The chats mix HaluEval and TruthfulQA questions whose answers are in the knowledge
     base with open requests no passage answers; the table says how many answers were given
     passages and how many got the passage that holds their answer. Prints decode tokens/s and
     time to first token (from `ChatService.send`, so the knowledge search and the longer
     prompt are inside it) for both, and the ratios (target: throughput >= 0.9).
  4. Reference lookup per graded exchange: `ReferenceFinder.for_exchange` (the similar
     corrections and approvals in the pool: an embedding, a Chroma query, the pool rows; then
     the passages the answer was given, from SQL), timed on every exchange of the run after
     the grader stopped, with what it found.

    .venv/bin/python -m bench.grading_cost [--items 10] [--samples 3] [--chats 6]
                                           [--documents 1000] [--pool 1000]

Writes bench/results/grading_cost.json. A small check of the whole path:
`--items 1 --samples 1 --chats 2 --documents 50 --pool 100 --pause 1`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from bench.harness import (
    DATA,
    RESULTS,
    new_home,
    read_jsonl,
    seed_pool,
    start_app,
    table,
    write_result,
)

BACKLOG = 12  # answers waiting to be graded when the grader starts
# The app's settings: greedy, and the grader started by hand (off, then through a backlog).
APP = {"grading": False, "temperature": 0.0, "seed": 1, "max_tokens": 96, "stream_interval_ms": 0}


def per_signal_seconds(engine, items: int, samples: int) -> dict[str, float]:
    from tqdm import tqdm

    from feedback.grading.grader import Grader, GraderConfig

    grader = Grader(engine, config=GraderConfig(consistency_samples=samples, max_tokens=64))
    rows = read_jsonl(DATA / "truthfulqa" / "dev.jsonl")[:items]
    seconds: dict[str, list[float]] = {}
    for r in tqdm(rows, desc="per-signal cost"):
        for answer in (r["best_answer"], r["incorrect_answers"][0]):
            result = grader.grade(r["question"], answer, reference=r["best_answer"])
            for k, v in result.seconds.items():
                seconds.setdefault(k, []).append(v)
    return {k: statistics.mean(v) for k, v in seconds.items()}


def chat_round(app, prompts, pause: float) -> list[dict]:
    """One answer per prompt, each after `pause` seconds; per answer: decode tokens/s (after the
    first token), ms from `send` to the first token, and the passages it was given."""
    out = []
    for q in prompts:
        time.sleep(pause)  # a person reading and typing: the grader gets to work meanwhile
        start = time.perf_counter()
        first = last = None
        text, reply = "", None
        for reply in app.chat.send(None, q.text):
            if reply.text != text:
                last = time.perf_counter()
                first = first or last
                text = reply.text
        n = len(app.model.llm.tokenize(text.encode(), add_bos=False))
        out.append(
            {
                "kind": q.kind,
                "exchange_id": reply.exchange_id,
                "tokens": n,
                "tokens_per_s": (n - 1) / (last - first) if first and last > first else None,
                "first_token_ms": (first - start) * 1000 if first else None,
                "passages": len(reply.sources),
                "answer_passage_given": q.passage is not None
                and any(s.text == q.passage for s in reply.sources),
                "examples": len(reply.examples),
            }
        )
    return out


def medians(chats: list[dict]) -> tuple[float, float]:
    rates = [c["tokens_per_s"] for c in chats if c["tokens_per_s"] is not None]
    firsts = [c["first_token_ms"] for c in chats if c["first_token_ms"] is not None]
    return (
        statistics.median(rates) if rates else float("nan"),
        statistics.median(firsts) if firsts else float("nan"),
    )


def reference_lookups(app, exchange_ids: list[int]) -> dict:
    """`for_exchange` on each exchange, as the grading worker calls it before grading."""
    import numpy as np

    finder = app.worker.references
    contexts = [(i, app.grading.exchange_context(i)[0]) for i in exchange_ids]
    finder.for_exchange(*contexts[0])  # warm-up
    ms, kinds = [], {}
    for exchange_id, question in contexts:
        start = time.perf_counter()
        refs = finder.for_exchange(exchange_id, question)
        ms.append((time.perf_counter() - start) * 1000)
        for ref in refs:
            kinds[ref.kind] = kinds.get(ref.kind, 0) + 1
    return {
        "exchanges": len(ms),
        "median_ms": round(statistics.median(ms), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "mean_ms": round(statistics.mean(ms), 2),
        "found": kinds,  # references by kind over all exchanges
        "pool_vectors": finder.index.count() if finder.index is not None else 0,
    }


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    # per-signal cost
    parser.add_argument(
        "--items", type=int, default=10, help="TruthfulQA questions (2 answers each)"
    )
    parser.add_argument("--samples", type=int, default=3, help="self-consistency resamples")
    # the app
    parser.add_argument(
        "--documents", type=int, default=1000, help="passages in the app's knowledge base"
    )
    parser.add_argument(
        "--pool", type=int, default=1000, help="synthetic exchanges in the app's training pool"
    )
    # chat rounds
    parser.add_argument("--chats", type=int, default=6, help="answers per round (off, on)")
    parser.add_argument("--pause", type=float, default=3.0, help="seconds between chats")
    return parser.parse_args()


def main() -> int:
    args = arguments()

    from tqdm import tqdm

    from assistant.llm.llama import LlamaEngine
    from assistant.llm.weights import embedded_model_path
    from assistant.settings import Settings
    from bench.documents import fill

    home = new_home()
    print(
        f"home {home}; {args.documents:,} passages, pool of {args.pool:,}, "
        f"{args.chats} chats per round, {args.pause} s apart",
        flush=True,
    )
    threads = Settings(home=home, **APP).threads
    engine = LlamaEngine(embedded_model_path(), context_window=4096, threads=threads)
    costs = per_signal_seconds(engine, args.items, args.samples)

    t = time.perf_counter()
    pool = seed_pool(home, args.pool) if args.pool else {"exchanges": 0}
    print(f"pool seeded in {time.perf_counter() - t:.0f} s: {pool}", flush=True)
    with start_app(home, APP, serve=False, model=engine) as app:
        with tqdm(total=args.documents, desc="knowledge base", unit="passage") as bar:
            documents = fill(app.library, app.chat.user.id, args.documents, progress=bar.update)
        print(f"knowledge base filled: {documents}", flush=True)
        chats = under_backlog(app, args)

    off_rate, off_first = medians(chats["off"])
    on_rate, on_first = medians(chats["on"])
    result = {
        "settings": vars(args),
        "seconds": costs,
        "reference_lookup": chats.pop("lookups"),
        "documents": documents,
        "pool": pool,
        "off": [off_rate, off_first],
        "on": [on_rate, on_first],
        "throughput_ratio": on_rate / off_rate,
        "first_token_delta_ms": on_first - off_first,
        "graded_during_on_round": chats.pop("graded"),
        "chats": chats,
    }
    show(result, args)
    write_result(result, RESULTS / "grading_cost.json")
    return 0


def under_backlog(app, args) -> dict:
    """A backlog of answers to grade, a round of chats with the grader off, the same round with
    it working through the backlog; then the reference lookups on every exchange of the run."""
    from bench.documents import questions

    prompts = questions()
    chat_prompts = prompts[: args.chats]
    backlog = [list(app.chat.send(None, q.text))[-1] for q in prompts[-BACKLOG:]]
    off = chat_round(app, chat_prompts, args.pause)
    app.worker.start()
    on = chat_round(app, chat_prompts, args.pause)
    graded = app.grading.counts().get("done", 0)
    app.worker.stop()
    exchange_ids = [r.exchange_id for r in backlog] + [c["exchange_id"] for c in off + on]
    lookups = reference_lookups(app, exchange_ids)
    return {"off": off, "on": on, "graded": graded, "lookups": lookups}


def show(r: dict, args) -> None:
    costs, lookups = r["seconds"], r["reference_lookup"]
    print("\nseconds of model time per graded exchange, by signal:")
    for k, v in costs.items():
        note = f" ({args.samples} resamples)" if k == "consistency" else ""
        print(f"  {k:<18} {v:8.3f} s{note}")
    print(f"  {'total':<18} {sum(costs.values()):8.3f} s")
    print(
        f"  {'reference lookup':<18} {lookups['median_ms'] / 1000:8.3f} s"
        f"  (median of {lookups['exchanges']} exchanges, p95 {lookups['p95_ms']:.1f} ms; "
        f"pool index of {lookups['pool_vectors']:,}; found {lookups['found'] or 'none'})"
    )
    docs = r["documents"]
    rows = []
    for name, chats, (rate, first) in (
        ("grading off", r["chats"]["off"], r["off"]),
        ("grading a backlog", r["chats"]["on"], r["on"]),
    ):
        given = sum(c["passages"] > 0 for c in chats)
        askable = sum(c["kind"] != "open" for c in chats)
        hit = sum(c["answer_passage_given"] for c in chats)
        rows.append(
            [name, f"{rate:.1f}", f"{first:.1f}", f"{given}/{len(chats)}", f"{hit}/{askable}"]
        )
    table(
        f"chat with {docs['chunks']:,} passages in {docs['documents']:,} files "
        f"and a pool of {r['pool']['exchanges']:,} exchanges",
        ["chat", "tokens/s", "first token ms", "given passages", "answer passage"],
        rows,
    )
    print(
        f"throughput ratio backlog/off: {r['throughput_ratio']:.3f} (target >= 0.9); "
        f"first token {r['first_token_delta_ms']:+.1f} ms; "
        f"{r['graded_during_on_round']} graded during the backlog round"
    )
    print(
        "(given passages: answers whose prompt held passages; answer passage: questions "
        "answered in the corpus whose own passage was among them)"
    )


if __name__ == "__main__":
    sys.exit(main())
