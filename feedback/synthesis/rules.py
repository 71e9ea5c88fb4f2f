"""The synthesis stage's rules, as small pure functions, and its configuration.

Owns what a written lesson must be before it is graded (a question that still names what the
parent asked about, an answer that keeps every name and number of the parent's and adds none),
what makes it a duplicate, and the verdict after the grade; and what a taught question's
neighbour must be (another named subject, none of the parent's). Writing lessons is
feedback/synthesis/writer.py's; running the stage, feedback/synthesis/stage.py's.
"""

from __future__ import annotations

import re

from feedback.pool.english import ENGLISH
from feedback.pool.memory import names
from feedback.synthesis.config import SynthesisConfig  # noqa: F401  (re-exported)
from store.lessons import parent_key  # noqa: F401  (re-exported: the stage's rule)

KINDS = ("question", "answer")  # a reworded question with the parent's answer; a restated answer
_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
_WORD = re.compile(r"[a-z0-9]+")
_LABEL = re.compile(r"^\s*(question|answer|q|a)\s*[:.]", re.IGNORECASE | re.MULTILINE)


def words(text: str) -> str:
    """A text as the duplicate check compares it: its words, lower-cased.

    >>> words("Who  designed the Tower?") == words("who designed the tower")
    True
    """
    return " ".join(_WORD.findall(text.lower()))


def numbers(text: str) -> set[str]:
    """
    >>> sorted(numbers("Built in 1931, 2,340 m tall, opens 9:30."))
    ['1931', '2,340', '9:30']
    """
    return set(_NUMBER.findall(text))


def vocabulary(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def not_one_question(text: str, parent_q: str) -> str | None:
    """Why a written text is not one question (None: it is), next to the question it came from.

    >>> not_one_question("Question: Who? Answer: Ida.", "Who?"), not_one_question("Ida.", "Who?")
    ('not one question', 'not a question')
    """
    if "\n" in text or _LABEL.search(text) or len(text) > 2 * len(parent_q) + 60:
        return "not one question"
    return None if text.endswith("?") else "not a question"


def question_problem(candidate: str, parent_q: str, parent_a: str) -> str | None:
    """Why a reworded question cannot be a lesson (None: it may be graded).

    >>> q, a = "Who designed the Harlow Tower?", "Imelda Varga designed it in 1931."
    >>> question_problem("Which architect created the Harlow Tower?", q, a)
    >>> question_problem("Who designed the Harlow Tower?", q, a)
    'the same words as the question it rewords'
    >>> question_problem("Who designed the Corvin Bridge?", q, a)
    'it leaves out harlow, tower'
    >>> question_problem("The Harlow Tower is tall.", q, a)
    'not a question'
    """
    text = candidate.strip()
    if problem := not_one_question(text, parent_q):
        return problem
    if words(text) == words(parent_q):
        return "the same words as the question it rewords"
    missing = sorted(names(parent_q) - vocabulary(text))
    return f"it leaves out {', '.join(missing)}" if missing else added(text, parent_q, parent_a)


def neighbour_problem(candidate: str, parent_q: str, parent_a: str) -> str | None:
    """Why a written question cannot be a taught question's neighbour (None: it may be
    answered): a neighbour asks the same kind of thing about another, named subject, so it
    must name something and nothing the parent names (a name typed in lower case included).

    >>> q, a = "Who taught the painter Cressida Vollmaine?", "The master Albrecht Nuttingale."
    >>> neighbour_problem("Who taught the painter Pablo Picasso?", q, a)
    >>> neighbour_problem("Who trained Cressida Vollmaine?", q, a)
    'it asks about cressida, vollmaine, the taught subject'
    >>> neighbour_problem("Was Nuttingale a painter?", q, a)
    'it asks about nuttingale, the taught subject'
    >>> neighbour_problem("Who inspired her?", q, a)
    'it names no subject of its own'
    >>> neighbour_problem("Picasso painted Guernica.", q, a)
    'not a question'
    >>> neighbour_problem("Who built the lighthouse on Vellmar Island?",
    ...     "who keeps the lighthouse on vellmar island?", "orsolya brandt keeps it")
    'it asks about vellmar, the taught subject'
    """
    text = candidate.strip()
    if problem := not_one_question(text, parent_q):
        return problem
    if words(text) == words(parent_q):
        return "it asks about the taught subject: the same words"
    shared = sorted(subjects([parent_q, parent_a]) & vocabulary(text))
    if shared:
        return f"it asks about {', '.join(shared)}, the taught subject"
    return None if names(text) else "it names no subject of its own"


def subjects(texts: list[str]) -> set[str]:
    """The names the texts mention, lower-cased, a name typed in lower case included (a word
    English does not know), one- and two-letter ones left out.

    >>> sorted(subjects(["who keeps the lighthouse on vellmar island?", "It is Ida Fenn."]))
    ['fenn', 'ida', 'vellmar']
    """
    found = set().union(*(names(t, ENGLISH) for t in texts)) if texts else set()
    return {n for n in found if len(n) > 2}


def measured_index(measured: list[str]) -> tuple[set[str], set[str]]:
    """What `measured_problem` compares with, read once: the questions' words and names."""
    return {words(q) for q in measured}, subjects(measured)


def measured_problem(text: str, index: tuple[set[str], set[str]]) -> str | None:
    """Why a neighbour cannot be trained on because a yardstick or another taught question
    asks it (None: none does): it has the words of one of the measured questions or names
    what one of them names (`index`: `measured_index` of them). Rehearsing the model's answer
    to a gate's question would teach the test; to another taught question, the answer its
    correction replaced.

    >>> gate = measured_index(["Who painted the Mona Lisa?", "How many minutes are in three hours?"])
    >>> measured_problem("Who was the painter of the Mona Lisa?", gate)
    'a question the refresh measures or was taught asks about lisa, mona'
    >>> measured_problem("how many minutes are in three hours", gate)
    'a question the refresh measures or was taught asks it'
    >>> measured_problem("Who painted the Sistine Chapel ceiling?", gate)
    """
    asked, named = index
    if words(text) in asked:
        return "a question the refresh measures or was taught asks it"
    shared = sorted(subjects([text]) & named)
    return (
        f"a question the refresh measures or was taught asks about {', '.join(shared)}"
        if shared
        else None
    )


def answer_problem(candidate: str, parent_q: str, parent_a: str) -> str | None:
    """Why a restated answer cannot be a lesson (None: it may be graded).

    >>> q, a = "How tall is Mount Odell?", "Mount Odell is 2,340 metres tall."
    >>> answer_problem("The height of Mount Odell is 2,340 metres.", q, a)
    >>> answer_problem("Mount Odell is 2,400 metres tall.", q, a)
    'it leaves out 2,340'
    >>> answer_problem("Mount Odell, near Brask, is 2,340 metres tall.", q, a)
    'it brings in brask'
    >>> answer_problem("Question: How tall? Answer: 2,340 metres", q, a)
    'not one answer'
    """
    text = candidate.strip()
    if not text or _LABEL.search(text) or len(text) > 3 * len(parent_a) + 80:
        return "not one answer"
    if words(text) == words(parent_a):
        return "the same words as the answer it restates"
    missing = sorted(numbers(parent_a) - numbers(text)) or sorted(
        names(parent_a) - vocabulary(text)
    )
    return f"it leaves out {', '.join(missing)}" if missing else added(text, parent_q, parent_a)


def added(text: str, parent_q: str, parent_a: str) -> str | None:
    """A name or number the lesson brings in that its parent never said (None: none).

    >>> added("Did Ida Fenn found it in 1990?", "Who founded Brannoc Labs?", "Ida Fenn.")
    'it brings in 1990'
    """
    parent = f"{parent_q} {parent_a}"
    extra = sorted(names(text) - vocabulary(parent)) or sorted(numbers(text) - numbers(parent))
    return f"it brings in {', '.join(extra)}" if extra else None


def graded_verdict(
    flagged: bool, agreement: float | None, similarity: float | None, c: SynthesisConfig
) -> str | None:
    """Why a graded lesson is rejected (None: kept): the grade flagged it, its answer does not
    agree with the parent's, or its question asks something else.

    >>> c = SynthesisConfig()
    >>> graded_verdict(False, 0.9, 0.8, c), graded_verdict(True, 0.9, 0.8, c)[:24]
    (None, 'the grade flagged it: it')
    >>> graded_verdict(False, 0.3, None, c)
    "its answer agrees 0.30 with the parent's, below 0.6"
    >>> graded_verdict(False, None, 0.5, c)
    "its question is 0.50 like the parent's, below 0.7"
    """
    if flagged:
        return "the grade flagged it: it reads as a likely hallucination"
    if agreement is not None and agreement < c.min_agreement:
        return f"its answer agrees {agreement:.2f} with the parent's, below {c.min_agreement}"
    if similarity is not None and similarity < c.min_similarity:
        return f"its question is {similarity:.2f} like the parent's, below {c.min_similarity}"
    return None


def reason_group(reason: str) -> str:
    """A rejection's reason without the words it names, for counting.

    >>> reason_group("it leaves out harlow, tower"), reason_group("not a question")
    ('it leaves out a name or number', 'not a question')
    >>> reason_group("its answer agrees 0.30 with the parent's, below 0.6")
    "its answer disagrees with the parent's"
    """
    for prefix, group in (
        ("it leaves out", "it leaves out a name or number"),
        ("it brings in", "it brings in a name or number"),
        ("its answer agrees", "its answer disagrees with the parent's"),
        ("its question is", "its question asks something else"),
        ("the grade flagged", "the grade flagged it"),
        ("it asks about", "it asks about the taught subject"),
        ("a question the refresh measures", "a question the refresh measures or was taught"),
    ):
        if reason.startswith(prefix):
            return group
    return reason
