"""Writing lessons: the prompts that ask the model to reword a question or restate an answer,
and to write a taught question's neighbours.

Owns the instructions and the worked examples shown to the model (invented facts, so no real
one leaks into a lesson; a neighbour's examples name well-known subjects, since a neighbour is
a question the model already answers), and sampling one candidate per call, each with its own
seed. It does not judge what comes back (feedback/synthesis/rules.py and the grader do).
"""

from __future__ import annotations

import re
import threading

from assistant.llm.base import ChatModel
from feedback.synthesis.rules import SynthesisConfig, subjects

REWORD = (
    "Rewrite the question in other words. Keep every name and number. "
    "Reply with the rewritten question only."
)
RESTATE = (
    "Restate the answer in other words. Keep every name, number and fact. "
    "Reply with the restated answer only."
)
NEIGHBOUR = (
    "Fill the blank with a well-known person, place or thing, and write the whole question. "
    "Reply with the question only."
)
# Worked examples: a 135M model copies a shown pattern far better than it follows a rule.
QUESTION_SHOTS = [
    ("Where was the painter Lucia Marr born?", "In which town was Lucia Marr, the painter, born?"),
    ("How tall is Mount Odell?", "What is the height of Mount Odell?"),
    ("When did the Corvin Bridge open?", "In what year was the Corvin Bridge opened?"),
    ("who runs the Pell St bakery", "Who is the owner of the bakery on Pell St?"),
]
# The taught question with its names blanked (`blanked`): a 135M model shown the names
# copies them back far more often than it replaces them.
NEIGHBOUR_SHOTS = [
    ("Where was the painter ___ born?", "Where was the painter Pablo Picasso born?"),
    ("How tall is Mount ___?", "How tall is Mount Everest?"),
    ("When did the ___ Bridge open?", "When did the Golden Gate Bridge open?"),
    ("who runs the ___ bakery", "Who runs the company Apple?"),
]
ANSWER_SHOTS = [
    (
        "Where was the painter Lucia Marr born?",
        "Lucia Marr was born in Aldgate.",
        "The painter Lucia Marr's birthplace is Aldgate.",
    ),
    (
        "How tall is Mount Odell?",
        "Mount Odell is 2,340 metres tall.",
        "The height of Mount Odell is 2,340 metres.",
    ),
    (
        "When did the Corvin Bridge open?",
        "The Corvin Bridge opened in 1887.",
        "In 1887 the Corvin Bridge was opened.",
    ),
]


def shown(instruction: str, shots: list[tuple[str, str]], question: str) -> list[dict]:
    """An instruction, its worked examples as earlier turns, then the question."""
    out = [{"role": "system", "content": instruction}]
    for before, after in shots:
        out += [{"role": "user", "content": before}, {"role": "assistant", "content": after}]
    return out + [{"role": "user", "content": question}]


def reword_messages(question: str) -> list[dict]:
    return shown(REWORD, QUESTION_SHOTS, question)


def neighbour_messages(question: str) -> list[dict]:
    """The prompt for a question like a taught one about another, well-known subject."""
    return shown(NEIGHBOUR, NEIGHBOUR_SHOTS, blanked(question))


def blanked(question: str) -> str:
    """A question with its names (feedback/synthesis/rules.py `subjects`) as one blank each.

    >>> blanked("Who taught the painter Cressida Vollmaine?")
    'Who taught the painter ___?'
    >>> blanked("how tall is mount cairnvaddoch?")
    'how tall is mount ___?'
    """
    names = subjects([question])
    words = re.split(r"(\W+)", question)
    out = ["___" if w.lower() in names else w for w in words]
    return re.sub(r"___(\s+___)+", "___", "".join(out))


def restate_messages(question: str, answer: str) -> list[dict]:
    out = [{"role": "system", "content": RESTATE}]
    for q, before, after in ANSWER_SHOTS:
        out += [
            {"role": "user", "content": f"Question: {q}\nAnswer: {before}"},
            {"role": "assistant", "content": after},
        ]
    return out + [{"role": "user", "content": f"Question: {question}\nAnswer: {answer}"}]


def sample(
    model: ChatModel,
    messages: list[dict],
    n: int,
    c: SynthesisConfig,
    cancel: threading.Event | None = None,
) -> list[str]:
    """`n` candidates, each its own call and seed, stripped; empty ones are dropped. A lesson
    is one line: generation stops at the first line break (a small model that goes on past
    its answer only adds what the checks would refuse)."""
    out = []
    for i in range(n):
        sampling = {
            "temperature": c.temperature,
            "top_p": 0.95,
            "max_tokens": c.max_tokens,
            "seed": c.seed + i,
            "stop": ["\n"],
        }
        text = "".join(d.text for d in model.stream(messages, sampling, cancel)).strip()
        if text:
            out.append(text)
    return out
