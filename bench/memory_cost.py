"""The memory's cost before the first token: one lookup of what people taught, at 10,000
taught answers (issue 24's target: at most 30 ms median).

How: a new home with a pool seeded by bench.synthetic (`--exchanges`, default 40,000, a few
thousand of them taught: a thumbs up or a correction, the rest near repeats the curator drops)
and `--corrections` more (default 10,000): invented facts from bench/make_facts.py, each asked,
answered wrongly and corrected by its user; all curated and indexed by the product's curator
(Chroma on disk, BM25 over the taught answers). Then the chat's own call,
`Curator.examples` with the default settings, for `--questions` questions (the learning facts'
rewordings and TruthfulQA questions) as user 1:
  - warm: the word index already built (every lookup after the first since the pool changed);
    median and p95 of `--repeats` passes;
  - after a change: the first lookup after a changed taught answer, once the curator has
    rebuilt the BM25 index as it does when it saves (`Curator.sync_words`, timed on its own:
    the save pays it); median of `--changes` changes.

    .venv/bin/python -m bench.memory_cost [--exchanges 40000] [--corrections 10000]
        [--questions 50] [--repeats 3]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

from bench.harness import (
    DATA,
    RESULTS,
    ROOT,
    command_line,
    commit,
    new_home,
    read_jsonl,
    seed_pool,
    table,
    write_result,
)
from bench.synthetic import invented

TARGET_MS = 30.0


def arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--exchanges", type=int, default=40_000)
    p.add_argument("--corrections", type=int, default=10_000)
    p.add_argument("--questions", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--changes", type=int, default=5)
    p.add_argument("--home", type=Path, help="an earlier run's home: its seeded pool is reused")
    p.add_argument("--out", type=Path, default=RESULTS / "memory_cost.json")
    return p.parse_args()


def questions(n: int) -> list[str]:
    facts = read_jsonl(ROOT / "bench" / "data" / "learning_facts.jsonl")
    asked = [p for f in facts for p in f.get("paraphrases", [])]
    asked += [r["question"] for r in read_jsonl(DATA / "truthfulqa" / "dev.jsonl")]
    return asked[:: max(1, len(asked) // n)][:n]


def ms(seconds: list[float]) -> dict:
    s = sorted(seconds)
    return {
        "median_ms": round(statistics.median(s) * 1000, 2),
        "p95_ms": round(s[max(0, math.ceil(0.95 * len(s)) - 1)] * 1000, 2),
        "n": len(s),
    }


def measure(args) -> dict:
    from assistant.settings import Settings
    from assistant.wiring import build_curator
    from feedback.pool.curator import HUMAN_SOURCES
    from store.db import open_database
    from store.pool import PoolStore
    from store.tables import PoolEntry

    home = args.home or new_home("autodidact-memory-cost-")
    t = time.monotonic()
    seeded = (
        {"reused": str(home)}
        if args.home
        else seed_pool(home, args.exchanges, invented(args.corrections))
    )
    seeded["seconds"] = round(time.monotonic() - t, 1)
    settings = Settings(home=home)
    engine = open_database(settings.effective_database_url)
    curator = build_curator(settings, engine)
    taught = len(PoolStore(engine).taught_texts(HUMAN_SOURCES))
    asked = questions(args.questions)
    k, floor = settings.retrieval_examples, settings.retrieval_min_similarity

    def lookup(q: str) -> float:
        t = time.perf_counter()
        curator.examples(q, k, floor, user_id=1)
        return time.perf_counter() - t

    lookup(asked[0])  # builds the word index once
    warm = [lookup(q) for _ in range(args.repeats) for q in asked]
    changed, rebuilt = [], []
    pool = PoolStore(engine)
    for i in range(args.changes):
        entry = next(e for e in pool.train_entries() if e.source in HUMAN_SOURCES)
        pool.save([PoolEntry(**{**entry.model_dump(), "completion": f"{entry.completion} ({i})"})])
        t = time.perf_counter()
        curator.sync_words()  # what the curator does as it saves a change
        rebuilt.append(time.perf_counter() - t)
        changed.append(lookup(asked[i % len(asked)]))
    return {
        "commit": commit(),
        "command": command_line(),
        "pool": seeded,
        "taught": taught,
        "warm": ms(warm),
        "after_a_change": ms(changed),
        "rebuild_on_save": ms(rebuilt),
        "target_ms": TARGET_MS,
    }


def main() -> int:
    args = arguments()
    r = measure(args)
    rows = [
        ["warm (word index built)", r["warm"]["median_ms"], r["warm"]["p95_ms"], r["warm"]["n"]],
        ["first after a change", r["after_a_change"]["median_ms"],
         r["after_a_change"]["p95_ms"], r["after_a_change"]["n"]],
        ["BM25 rebuild, paid by the save", r["rebuild_on_save"]["median_ms"],
         r["rebuild_on_save"]["p95_ms"], r["rebuild_on_save"]["n"]],
    ]  # fmt: skip
    title = f"memory lookup at {r['taught']} taught answers ({r['commit']}); target median <= {TARGET_MS} ms"
    table(title, ["lookup", "median ms", "p95 ms", "n"], rows)
    write_result(r, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
