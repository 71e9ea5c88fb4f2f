"""Judging a candidate adapter against the current model, before anything is promoted.

Owns the figures a refresh compares on evaluation prompts (held-out questions plus a fixed
regression set): the judge-rated win rate, the hallucination flag rate and the diversity of
sampled answers (distinct-2, embedding spread), the last also for the base model, all with
llama.cpp serving the adapters exactly as the app will. Held-out loss and the export check's
PyTorch half are torch work, in feedback/refresh/train.py. Which figures count as a
regression is feedback/refresh/rules.py's rule.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from feedback.pool.diversity import distinct_n, embedding_spread

# Asked of every candidate, whatever the pool holds: general skills a refresh must not lose.
REGRESSION_PROMPTS = [
    "What is the capital of France?",
    "Explain in two sentences why the sky is blue.",
    "Write a haiku about the sea.",
    "What is 12 times 7?",
    "Give three tips for sleeping better.",
    "Translate 'good morning' into Spanish.",
    "Who wrote Romeo and Juliet?",
    "Summarise what photosynthesis does.",
]


SAMPLING = {"temperature": 0.8, "top_p": 0.95, "max_tokens": 64}


def sampled_figures(engine, prompts: list[str], embed=None) -> tuple[list[str], dict]:
    """Sampled answers (seeded per prompt, so two models meet the same dice) and their
    diversity: distinct-2, and the embedding spread when `embed` (texts to unit vectors) is
    given. The engine serves whatever adapter its caller set."""
    texts = []
    for i, prompt in enumerate(prompts):
        messages = [{"role": "user", "content": prompt}]
        texts.append(
            "".join(d.text for d in engine.stream(messages, {**SAMPLING, "seed": 1000 + i}))
        )
    figures = {"answer_distinct_2": distinct_n(texts, 2)}
    if embed is not None and texts:
        figures["answer_spread"] = embedding_spread(embed(texts))
    return texts, figures


def answer_figures(
    engine, grader, prompts: list[str], adapter: Path | None, adapter_id: str, tick=None, embed=None
) -> dict:
    """Greedy answers with their self-grades, and sampled answers for diversity."""
    engine.set_adapter(adapter, adapter_id=adapter_id)
    greedy = {"temperature": 0.0, "max_tokens": 96, "repeat_penalty": 1.1, "seed": 0}
    answers, scores, flags = [], [], []
    try:
        for prompt in prompts:
            messages = [{"role": "user", "content": prompt}]
            answer = "".join(d.text for d in engine.stream(messages, greedy))
            result = grader.grade(prompt, answer)
            answers.append(answer)
            scores.append(result.signals.judge or 5.5)
            flags.append(result.flagged)
            if tick:
                tick()
        _, diversity = sampled_figures(engine, prompts, embed)
    finally:
        engine.set_adapter(None)
    return {
        "answers": answers,
        "judge": scores,
        "flag_rate": round(sum(flags) / len(flags), 4) if flags else 0.0,
        **diversity,
    }


def base_figures(engine, prompts: list[str], embed=None) -> dict:
    """The base model's answer diversity on the same prompts: the fixed point every candidate's
    diversity is also held to, so a drift too slow for one refresh to show cannot ratchet."""
    engine.set_adapter(None)
    return sampled_figures(engine, prompts, embed)[1]


def win_rate(candidate: list[float], current: list[float]) -> float:
    """Share of prompts where the judge scored the candidate higher; ties count half.

    >>> win_rate([8, 5, 3], [6, 5, 4])
    0.5
    """
    if not candidate:
        return 0.5
    points = sum(
        1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(candidate, current, strict=True)
    )
    return round(points / len(candidate), 4)


def compare(
    engine,
    grader,
    prompts: list[str],
    candidate: Path,
    current: Path | None,
    current_id: str | None,
    tick: Callable[[], None] | None = None,
    embed: Callable | None = None,
) -> tuple[dict, dict, dict]:
    """(candidate, current, base) figures on the same prompts, judged by the same grader; the
    base's are the current's when no adapter is active, else its sampled diversity alone."""
    cur = answer_figures(engine, grader, prompts, current, current_id or "base", tick, embed)
    cand = answer_figures(engine, grader, prompts, candidate, "candidate", tick, embed)
    cand["win_rate"] = win_rate(cand["judge"], cur["judge"])
    diversity = ("answer_distinct_2", "answer_spread")
    base = (
        {k: cur[k] for k in diversity if k in cur}
        if current is None
        else base_figures(engine, prompts, embed)
    )
    return cand, cur, base
