"""Known answers: what the base model already knew, asked again of every candidate.

Owns the set (data/known.jsonl: general questions whose answers do not change, each with the
words a right answer contains), the greedy answers of the base model and of the candidate to
them, and the rule that rejects a candidate that gets fewer of them right than the base model,
by more than `known_tolerance` of the base's right answers. Training on invented facts can
teach a small model to answer everything in their shape ("The Bard of Montesa" wrote Romeo and Juliet) while every loss
stays flat and the judge ties: this is the gate that sees it. The other gates are
feedback/refresh/rules.py's; serving adapters to answer is the llama.cpp engine's. The base
model's answers are kept in AUTODIDACT_HOME/cache/known-base.json (`base_answers`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

KNOWN = Path(__file__).parent / "data" / "known.jsonl"
GREEDY = {"temperature": 0.0, "max_tokens": 48, "repeat_penalty": 1.1, "seed": 0}


def known_questions() -> list[tuple[str, list[str]]]:
    """(question, accepted words) for every line of data/known.jsonl.

    >>> rows = known_questions()
    >>> len(rows), rows[2]
    (40, ('Who wrote Romeo and Juliet?', ['Shakespeare']))
    """
    lines = KNOWN.read_text(encoding="utf-8").splitlines()
    return [(r["question"], r["accepted"]) for r in map(json.loads, filter(str.strip, lines))]


def right(answer: str, accepted: list[str]) -> bool:
    """Whether the answer holds one of the accepted words, whole, in any case.

    >>> right("It was William Shakespeare.", ["Shakespeare"]), right("The Bard of Montesa.", ["Shakespeare"])
    (True, False)
    >>> right("A hexagon has 6 sides.", ["six", "6"]), right("It has 16 sides.", ["six", "6"])
    (True, False)
    """
    return any(
        re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", answer, re.IGNORECASE)
        for word in accepted
    )


def answers(engine, questions: list[str], adapter: Path | None, adapter_id: str) -> list[str]:
    """Greedy answers to `questions` from the base model plus `adapter` (None: the base alone)."""
    engine.set_adapter(adapter, adapter_id=adapter_id)
    try:
        return [
            "".join(d.text for d in engine.stream([{"role": "user", "content": q}], GREEDY))
            for q in questions
        ]
    finally:
        engine.set_adapter(None)


def gate_questions() -> list[str]:
    """Every question a refresh's gate asks whatever the pool holds: the known ones, those of
    the general answers (feedback/refresh/rules.py `general_records`) and the pairwise
    regression prompts (feedback/refresh/evaluation.py). Nothing the refresh writes may train
    on them (feedback/synthesis/rules.py `measured_problem`).

    >>> q = gate_questions()
    >>> len(q) > 100, q[0]
    (True, 'What is the capital of France?')
    """
    from feedback.refresh.evaluation import REGRESSION_PROMPTS
    from feedback.refresh.rules import general_records

    general = [r["messages"][-2]["content"] for r in general_records()]
    return [q for q, _ in known_questions()] + general + list(REGRESSION_PROMPTS)


CACHE_VERSION = 1  # raise when how the engine answers changes in a way the key cannot see
CACHE_ENTRIES = 4  # model files, builds or thread counts kept at once (app and CLI differ)


def cache_key(engine, questions: list[str]) -> str | None:
    """What the base model's greedy answers to `questions` depend on: the engine's
    `fingerprint` (model file, build, threads), the prompts' token ids (template and
    tokenizer), the sampling and this module's version. None for an engine without one."""
    try:
        fingerprint = engine.fingerprint
        prompts = [engine.prompt_tokens([{"role": "user", "content": q}]) for q in questions]
    except (AttributeError, OSError):
        return None
    parts = [CACHE_VERSION, fingerprint, GREEDY, prompts]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def base_answers(engine, questions: list[str], cache: Path | None = None) -> list[str]:
    """The base model's greedy answers to `questions`, kept in the JSON file `cache` under
    `cache_key`: the same for every refresh on that model, so asked once (40 greedy answers:
    65 s on 2 cores beside a benchmark), and one fixed bar. A missing, unreadable or foreign
    entry is answered afresh; the newest `CACHE_ENTRIES` keys are kept. Deleting the file
    only costs the next refresh the asking."""
    key = cache_key(engine, questions) if cache is not None else None
    if key is None:
        return answers(engine, questions, None, "base")
    try:
        kept = json.loads(cache.read_text(encoding="utf-8"))
        kept = kept if isinstance(kept, dict) else {}
    except (OSError, ValueError):
        kept = {}
    if isinstance(got := kept.get(key), list) and len(got) == len(questions):
        return [str(a) for a in got]
    fresh = answers(engine, questions, None, "base")
    kept = {k: v for k, v in kept.items() if k != key}
    kept = dict(list(kept.items())[-(CACHE_ENTRIES - 1) :]) | {key: fresh}
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        part = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
        part.write_text(json.dumps(kept), encoding="utf-8")
        part.replace(cache)
    except OSError:  # a full disk costs the next refresh the asking, not this one
        pass
    return fresh


def known_figures(
    engine, adapter: Path | None, keep_answers: bool = False, cache: Path | None = None
) -> dict:
    """The base model's answers to every known question and the candidate's: which of those
    the base got right the candidate lost, and how many the base got wrong it gained (with
    `keep_answers`, every question with both answers too). The base's answers are kept in
    `cache` (`base_answers`)."""
    rows = known_questions()
    questions = [q for q, _ in rows]
    base = base_answers(engine, questions, cache)
    cand = answers(engine, questions, adapter, "candidate") if adapter else base
    lost, gained = [], 0
    for (q, ok), was, now in zip(rows, base, cand, strict=True):
        if right(was, ok) and not right(now, ok):
            lost.append({"question": q, "answer": now[:200]})
        gained += not right(was, ok) and right(now, ok)
    right_before = sum(right(text, ok) for (_, ok), text in zip(rows, base, strict=True))
    out = {"questions": len(rows), "base_right": right_before, "lost": lost, "gained": gained}
    if keep_answers:
        out["answers"] = [{"question": q, "base": was, "candidate": now}
                          for q, was, now in zip(questions, base, cand, strict=True)]  # fmt: skip
    return out


def known_regression(known: dict | None, tolerance: float) -> list[str]:
    """Why the candidate must not be promoted on the known answers (empty: it may be): it gets
    fewer of them right than the base model, by more than `tolerance` of the base's right ones.
    Net, not the losses alone: a small model's greedy answers to some questions are fragile, and
    any adapter flips a few of them each way (a learning run's candidate lost 5 of the base's 22
    and gained 7 of its 18 wrong ones).

    >>> lost = [{"question": "Who wrote Romeo and Juliet?", "answer": "The Bard of Montesa."}]
    >>> known_regression({"questions": 40, "base_right": 20, "lost": lost * 5, "gained": 4}, 0.1)
    []
    >>> for r in known_regression({"questions": 40, "base_right": 20, "lost": lost * 5, "gained": 1}, 0.1): print(r)
    it gets 16 of the 40 known answers right, the base model 20 (more than 10% fewer); it lost 5, e.g. "Who wrote Romeo and Juliet?" -> "The Bard of Montesa."
    >>> known_regression(None, 0.1), known_regression({"questions": 40, "base_right": 0, "lost": [], "gained": 0}, 0.1)
    ([], [])
    """
    if not known or not known["base_right"]:
        return []
    lost, of = len(known["lost"]), known["base_right"]
    now = of - lost + known.get("gained", 0)
    if of - now <= of * tolerance:
        return []
    first = known["lost"][0]
    return [
        f"it gets {now} of the {known['questions']} known answers right, the base model {of} "
        f'(more than {tolerance:.0%} fewer); it lost {lost}, e.g. "{first["question"]}" -> '
        f'"{first["answer"].strip()[:80]}"'
    ]


def known_unmeasured(known: dict | None) -> list[str]:
    """What the known answers could not measure, for the run's `unmeasured` list.

    >>> known_unmeasured({"questions": 40, "base_right": 0, "lost": [], "gained": 0})
    ['known answers: the base model got none right, so none could be lost']
    >>> known_unmeasured({"questions": 40, "base_right": 22, "lost": [], "gained": 0})
    []
    """
    if known is not None and known["base_right"] == 0:
        return ["known answers: the base model got none right, so none could be lost"]
    return []
