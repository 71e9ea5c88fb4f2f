"""Which part of a stored answer the model wrote.

The chat may put a correction a person taught under an answer that left it out
(feedback/pool/memory.py `restatement`): the user sees, and the store keeps, both. Whatever
learns from or judges the model (the training pool, the grader, the history a later prompt
shows the model) reads only the model's own words, so the model is never trained or graded on
text it did not write, and never shown a restatement as something it said. This module owns
how a restatement opens and how it is cut off; nothing else.
"""

from __future__ import annotations

# How a restatement opens, after a blank line: the user's own correction, another user's.
RESTATED = ("You taught me this", "Another user taught this")


def model_words(answer: str) -> str:
    """`answer` without a restatement under it.

    >>> model_words("The University of Oxford.\\n\\nYou taught me this on 12 Nov 2026: Grimsholt.")
    'The University of Oxford.'
    >>> model_words("Quelmi.\\n\\nAnother user taught this, and a person vouched for it: Quelmi.")
    'Quelmi.'
    >>> model_words("You taught me this: a sentence the model wrote itself, kept.")
    'You taught me this: a sentence the model wrote itself, kept.'
    """
    for opening in RESTATED:
        answer = answer.split(f"\n\n{opening}")[0]
    return answer
