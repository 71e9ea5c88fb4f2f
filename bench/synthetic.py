"""Synthetic exchanges for the benchmarks' training pools (bench/pool.py, bench/refresh.py, and
`bench.harness.seed_pool` for the chat benchmarks): questions and answers drawn from HaluEval and
TruthfulQA (tests/data) with random variations; 15% are near-repeats of an earlier exchange; 5
users, one of them heavy; a third rated up, some down with reasons, some corrected, most
self-graded. Seeded: the same rows for the same `n` and seed. Measures nothing.
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from bench.harness import DATA, read_jsonl

FILLER = (
    "In short, it depends on the context. Many sources agree on this point. Note that details "
    "vary by region and era. This is a commonly asked question. Experts have written about it at "
    "length, and some disagree. A quick check of a reference book confirms it."
).split(". ")
PII = ["Reach me at ana.lima@example.org.", "My number is (415) 555-2671.", "Server 10.1.2.3."]


def sources() -> list[tuple[str, str, str]]:
    """(question, right answer, wrong answer): HaluEval's, then TruthfulQA's."""
    halueval = read_jsonl(DATA / "halueval" / "qa_one-turn.jsonl")
    truthfulqa = read_jsonl(DATA / "truthfulqa" / "dev.jsonl")
    return [(r["question"], r["right_answer"], r["hallucinated_answer"]) for r in halueval] + [
        (r["question"], r["best_answer"], r["incorrect_answers"][0]) for r in truthfulqa
    ]


def synthesize(engine, n: int, seed: int = 0, taught: list[tuple[str, str]] = ()) -> None:
    """n exchanges with their users, conversations, messages, ratings, corrections, grades;
    then one more exchange per `taught` (question, answer): answered wrongly and corrected
    with the answer by its user, as a person teaches a fact."""
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
    convs = n // 4 + 1
    for j, (q, a) in enumerate(taught):
        ex_id, user, at = n + j + 1, rng.randint(1, 5), datetime.now(UTC)
        rows["conv"].append({"id": convs + j + 1, "user_id": user, "title": f"t{j}"}
                            | {"created_at": at, "updated_at": at})  # fmt: skip
        _exchange_rows(rows, ex_id, convs + j + 1, q, "I am not sure.", at)
        rows["rating"].append(_rating(ex_id, user, -1, ["wrong facts"], at))
        rows["corr"].append({"exchange_id": ex_id, "user_id": user, "content": a, "created_at": at})
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


def invented(n: int) -> list[tuple[str, str]]:
    """`n` invented facts (question, answer), bench/make_facts.py's generator at a larger size."""
    from bench.make_facts import make

    facts, _ = make(n // 2 + 1, seed=11, repeat_years=True)  # 2 or 3 facts a subject
    return [(f["question"], f["answer"]) for f in facts[:n]]
