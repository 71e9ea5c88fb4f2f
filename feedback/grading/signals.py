"""Uncertainty signals from the model itself: token log-probabilities and self-consistency.

Owns measuring and summarising these signals as pure numbers; how they are weighed is
feedback/grading/scoring.py's job. Self-consistency follows SelfCheckGPT: resample the question at a higher
temperature and see how much the answer agrees with the samples.
"""

from __future__ import annotations

import re
import threading
from collections import Counter

from assistant.llm.base import ChatModel


def logprob_stats(logprobs: list[float]) -> tuple[float | None, float | None]:
    """Mean and minimum token log-probability (None, None for no tokens).

    >>> logprob_stats([-0.5, -1.5, -0.1])
    (-0.7, -1.5)
    >>> logprob_stats([])
    (None, None)
    """
    if not logprobs:
        return None, None
    return round(sum(logprobs) / len(logprobs), 6), min(logprobs)


def words(text: str) -> list[str]:
    """Lower-cased word tokens, for lexical agreement.

    >>> words("Paris, the capital of France!")
    ['paris', 'the', 'capital', 'of', 'france']
    """
    return re.findall(r"\w+", text.lower())


def token_f1(a: str, b: str) -> float:
    """Word-overlap F1 between two answers (SQuAD's answer-agreement measure).

    >>> token_f1("The capital is Paris", "Paris is the capital")
    1.0
    >>> token_f1("Paris", "Lyon")
    0.0
    >>> round(token_f1("It is Paris", "Paris"), 2)
    0.5
    """
    wa, wb = Counter(words(a)), Counter(words(b))
    common = sum((wa & wb).values())
    if not common:
        return 0.0
    precision, recall = common / sum(wa.values()), common / sum(wb.values())
    return 2 * precision * recall / (precision + recall)


def consistency(answer: str, samples: list[str]) -> float | None:
    """Mean agreement of `answer` with resampled answers (None without samples).

    >>> consistency("Paris", ["Paris", "It is Paris"])
    0.75
    """
    if not samples:
        return None
    return sum(token_f1(answer, s) for s in samples) / len(samples)


def resample(
    model: ChatModel,
    messages: list[dict],
    n: int,
    temperature: float,
    max_tokens: int,
    cancel: threading.Event | None = None,
) -> list[str]:
    out = []
    for i in range(n):
        sampling = {
            "temperature": temperature,
            "top_p": 0.95,
            "repeat_penalty": 1.1,
            "max_tokens": max_tokens,
            "seed": 1000 + i,
        }
        out.append("".join(d.text for d in model.stream(messages, sampling, cancel)))
        if cancel is not None and cancel.is_set():
            raise InterruptedError("resampling was interrupted")
    return out


# Words that flip a claim: they count as content, and a reference and an answer that differ in
# them agree at most half, so "seeds are harmful" does not agree with "seeds are not harmful".
NEGATIONS = frozenset({"not", "no", "never", "none", "nothing", "cannot", "nor"})
# Words that carry no claim: left out when asking whether an answer says what a reference says.
_FILLER = frozenset(
    "a an the and or but of to in on at by for with from as is are was were be been being it its "
    "this that these those there here he she they them his her their you your we our i me my "
    "do does did so if then than also just not no yes very can could will would should may "
    "might must has have had what which who whom whose when where why how about into over "
    "under up down out more most some any all each other such only own same too s".split()
)
STOPWORDS = _FILLER - NEGATIONS


def content_words(text: str) -> set[str]:
    """The words of `text` that carry its claims: no stopwords, plural -s folded.

    >>> sorted(content_words("The seeds pass through your digestive system."))
    ['digestive', 'pas', 'seed', 'system', 'through']
    >>> content_words("It is what it is")
    set()
    >>> sorted(content_words("It is not harmful"))
    ['harmful', 'not']
    """
    out = set()
    for w in words(text):
        if w in STOPWORDS:
            continue
        out.add(w[:-1] if len(w) > 3 and w.endswith("s") else w)
    return out


def support(answer: str, reference: str) -> float | None:
    """How much of what the answer says is in the reference: the share of its content words
    the reference contains (1 = all of it, 0 = none). None when the answer has no content word.

    >>> support("Paris is the capital of France.", "The capital of France is Paris.")
    1.0
    >>> support("Lyon is the capital of France.", "The capital of France is Paris.")
    0.667
    >>> support("You grow watermelons in your stomach.",
    ...         "The watermelon seeds pass through your digestive system.")
    0.333
    >>> support("Watermelon seeds are harmful.", "Watermelon seeds are not harmful.")
    0.5
    >>> support("Watermelon seeds are not harmful.", "Watermelon seeds are harmful.")
    0.375
    >>> support("It is.", "Paris") is None
    True
    """
    said, known = content_words(answer), content_words(reference)
    if not said:
        return None
    share = len(said & known) / len(said)
    if (said & NEGATIONS) != (known & NEGATIONS):
        share /= 2
    return round(share, 3)
