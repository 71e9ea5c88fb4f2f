"""Judging a candidate adapter against the current model, before anything is promoted.

Owns which prompts a refresh compares on (held-out questions, the questions users taught by
correcting an answer, with their corrections as references, and a fixed general regression set),
the models' answers to them with llama.cpp serving the adapters exactly as the app will, the
pairwise verdicts of one fixed judge on those answers (feedback/refresh/pairwise.py; the
candidate never judges itself), and the diversity of sampled answers (distinct-2, embedding
spread), also for the base model. Held-out and taught-answer losses and the export check's
PyTorch half are torch work, in feedback/refresh/train.py. Which figures count as a regression
is feedback/refresh/rules.py's rule.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from feedback.pool.diversity import distinct_n, embedding_spread
from feedback.refresh.pairwise import judge_pairs, relevance_pairs

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
    "How many minutes are in three hours?",
    "What is the boiling point of water at sea level in Celsius?",
    "Write a short thank-you note to a neighbour who watered my plants.",
    "What is the difference between weather and climate?",
    "Name three primary colours.",
    "How do I convert 5 kilometres to miles, roughly?",
    "Suggest a name for a small bakery.",
    "Why do we have seasons on Earth?",
    "What does a thermometer measure?",
    "Give me a simple recipe for scrambled eggs.",
    "What is the largest planet in our solar system?",
    "Write one sentence using the word 'reluctant'.",
    "What is a prime number? Give an example.",
    "How can I make my passwords safer?",
    "Explain what a noun is to a child.",
    "What is 15 percent of 200?",
    "List four animals that live in the ocean.",
    "What should I pack for a day hike?",
    "Who painted the Mona Lisa?",
    "Explain the rule of three in writing.",
    "Write a two-line poem about autumn leaves.",
    "What does DNA stand for?",
    "How many sides does a hexagon have?",
    "Give two reasons to drink enough water.",
    "What is the opposite of 'generous'?",
    "How does a rainbow form?",
    "Write a polite email subject line asking for a meeting.",
    "What is the freezing point of water in Fahrenheit?",
    "Name a famous composer of classical music.",
    "What is the main job of the heart?",
    "Explain what a budget is in one sentence.",
    "Tell me a fun fact about octopuses.",
    "What is the square root of 81?",
    "Give three ideas for a rainy-day activity with kids.",
    "What language is spoken in Brazil?",
    "How do plants get water from the soil?",
    "Rewrite this more formally: 'gonna be late, sorry'.",
    "What is the chemical symbol for gold?",
    "Why is exercise good for the brain?",
    "Describe the colour blue to someone in three words.",
    "What year did the first person walk on the Moon?",
    "Give a tip for remembering names.",
    "What is the plural of 'mouse'?",
    "Explain what gravity does in one sentence.",
    "How many continents are there?",
    "Suggest a healthy snack for the afternoon.",
    "What is the speed of light, roughly?",
    "Write a riddle about a clock.",
    "What is the past tense of 'run'?",
    "How do I politely decline an invitation?",
    "What causes thunder?",
    "Name two things that are magnetic.",
    "What is 100 divided by 4?",
    "Give me a one-sentence summary of what a library is for.",
    "Why do cats purr?",
    "What is a good way to start learning a new language?",
]


def gate_prompts(
    held: list[str], taught: list[tuple[str, str]], n: int
) -> tuple[list[str], list[str]]:
    """The gate's prompts and their references ("" for none), at most `n`: held-out questions
    first (up to half), then taught questions with the answer the user wrote (up to a quarter,
    more when there are fewer held-out ones), then the regression set, never a prompt twice.

    >>> prompts, refs = gate_prompts(["h1", "h2", "h3"], [("t1", "a1"), ("t2", "a2")], 4)
    >>> prompts, refs
    (['h1', 'h2', 't1', 'What is the capital of France?'], ['', '', 'a1', ''])
    >>> gate_prompts([], [("t1", "a1"), ("t2", "a2"), ("t3", "a3")], 4)[0]
    ['t1', 't2', 't3', 'What is the capital of France?']
    >>> len(gate_prompts([], [], 64)[0]), len(gate_prompts(["x"] * 100, [], 64)[0])
    (64, 64)
    """
    chosen: dict[str, str] = {}
    for prompt in held[: n // 2]:
        chosen.setdefault(prompt, "")
    room = n // 4 + max(0, n // 2 - len(chosen))  # a quarter, plus what held-out left
    for prompt, reference in taught[:room]:
        chosen.setdefault(prompt, reference)
    for prompt in REGRESSION_PROMPTS:
        if len(chosen) >= n:
            break
        chosen.setdefault(prompt, "")
    prompts = list(chosen)[:n]
    return prompts, [chosen[p] for p in prompts]


SAMPLING = {"temperature": 0.8, "top_p": 0.95, "max_tokens": 64}
GREEDY = {"temperature": 0.0, "max_tokens": 64, "repeat_penalty": 1.1, "seed": 0}
DIVERSITY_PROMPTS = 32  # sampled answers per model for the diversity figures


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
    engine, prompts: list[str], adapter: Path | None, adapter_id: str, tick=None, embed=None
) -> dict:
    """Greedy answers, and sampled answers for diversity, from the adapter at `adapter`."""
    engine.set_adapter(adapter, adapter_id=adapter_id)
    answers = []
    try:
        for prompt in prompts:
            messages = [{"role": "user", "content": prompt}]
            answers.append("".join(d.text for d in engine.stream(messages, GREEDY)))
            if tick:
                tick()
        _, diversity = sampled_figures(engine, prompts[:DIVERSITY_PROMPTS], embed)
    finally:
        engine.set_adapter(None)
    return {"answers": answers, **diversity}


def base_figures(engine, prompts: list[str], embed=None) -> dict:
    """The base model's answer diversity on the same prompts: the fixed point every candidate's
    diversity is also held to, so a drift too slow for one refresh to show cannot ratchet."""
    engine.set_adapter(None)
    return sampled_figures(engine, prompts[:DIVERSITY_PROMPTS], embed)[1]


def compare(
    engine,
    judge,
    prompts: list[str],
    candidate: Path,
    current: Path | None,
    current_id: str | None,
    references: list[str] | None = None,
    tick: Callable[[], None] | None = None,
    embed: Callable | None = None,
    stop_alpha: float | None = None,
) -> tuple[dict, dict, dict]:
    """(candidate, current, base) figures on the same prompts. `judge` (None: the base model
    on `engine`) compares each pair of answers in both orders (`stop_alpha`: see `pairwise.
    judge_pairs`); its figures (`pairwise.sign_test`'s and `win_rate`) go with the
    candidate's, and so does the paired relevance of answers to their questions when `embed`
    is given. The base's diversity is the current's when no adapter is active, else
    measured."""
    cur = answer_figures(engine, prompts, current, current_id or "base", tick, embed)
    cand = answer_figures(engine, prompts, candidate, "candidate", tick, embed)
    engine.set_adapter(None)  # a judge on `engine` is the base model, whatever was served
    cand["pairwise"] = judge_pairs(
        judge or engine, prompts, cand["answers"], cur["answers"], references, tick, stop_alpha
    )
    cand["win_rate"] = cand["pairwise"]["win_rate"]
    if embed is not None:
        cand["relevance"] = relevance_pairs(embed, prompts, cand["answers"], cur["answers"])
    diversity = ("answer_distinct_2", "answer_spread")
    base = (
        {k: cur[k] for k in diversity if k in cur}
        if current is None
        else base_figures(engine, prompts, embed)
    )
    return cand, cur, base
