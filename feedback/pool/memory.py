"""The memory's rules: how a question finds what people taught, as small pure functions.

Owns fusing the two searches over the pool (meaning: the prompt vectors in Chroma; words: BM25
over the taught entries, feedback/pool/keywords.py) into one ranked list with reciprocal rank
fusion, each hit admitted by its own search's threshold, and how a taught answer reads in the
system message. Which entries may be shown to whom, and the searches themselves, are the
curator's (feedback/pool/curator.py); where the block goes in the prompt is assistant/prompt.py's.
"""

from __future__ import annotations

import re
from collections.abc import Container
from dataclasses import dataclass
from datetime import datetime

from store.restated import RESTATED

RRF_K = 60  # the constant of reciprocal rank fusion (Cormack et al., 2009)
# A capitalised word that does not open a sentence: a name ("Zorvath", "Lisbon", "Ida Fenn").
_NAME = re.compile(r"(?<![.?!:;\n]\s)(?<!^)(?<!\[)\b[A-Z][A-Za-z0-9-]*")
_NOT_NAMES = {"I", "I'm", "OK", "A"}


def names(text: str, known: Container[str] = frozenset()) -> set[str]:
    """The names a text mentions, lowercased: capitalised words that do not open a sentence
    (a possessive 's dropped) and, given the words a language knows (feedback/pool/english.py),
    any word of four letters or more it does not know (a name typed in lower case). A masked
    placeholder ("[EMAIL]") is not a name.

    >>> sorted(names("For a quiz: when was Zorvath's port, Quelmi Bay, built? I forget."))
    ['bay', 'quelmi', 'zorvath']
    >>> names("what is the capital of france?"), names("who founded zorvath?", {"who", "founded"})
    (set(), {'zorvath'})
    >>> names("My email is [EMAIL]; how do I reach [PERSON]?")  # what PII masking left
    set()
    """
    found = {m.group(0).lower() for m in _NAME.finditer(text) if m.group(0) not in _NOT_NAMES}
    found = {n[:-2] if n.endswith("'s") else n for n in found}
    if known:
        words = re.findall(r"[a-z]+", text.lower())
        found |= {w for w in words if len(w) >= 4 and w not in known}
    return found


def names_agree(question: str, taught: str, known: Container[str] = frozenset()) -> bool:
    """Whether every name the question mentions is in the taught question and answer: a
    question about another subject, worded like a taught one, finds nothing.

    >>> names_agree("Who founded Brannoc Labs?", "Who started Brannoc Labs? Ida Fenn did.")
    True
    >>> names_agree("Who founded Kelvash Labs?", "Who started Brannoc Labs? Ida Fenn did.")
    False
    >>> names_agree("who founded kelvash labs?", "Who started Brannoc Labs?", {"who", "founded"})
    False
    """
    words = set(re.findall(r"[a-z0-9-]+", taught.lower())) | set(
        re.findall(r"[a-z]+", taught.lower())
    )
    return names(question, known) <= words


def names_subject(
    question: str, taught_question: str, taught_answer: str, known: Container[str] = frozenset()
) -> bool:
    """Whether a question may draw on a taught answer: when the taught question and its answer
    name a subject (names both of them hold), the question must name it too (any one of its
    names). A question that names nothing is about something general, and an answer about a
    named subject is not its answer however alike the wording.

    >>> taught = ("How tall is Mount Cairnvaddoch?", "Mount Cairnvaddoch is 4217 metres high.")
    >>> names_subject("What is the tallest mountain in the world?", *taught)
    False
    >>> names_subject("how high is cairnvaddoch?", *taught, known={"how", "high"})
    True
    >>> names_subject("How can I reset my wifi router?", "How do I reset my router?", "Hold reset.")
    True
    >>> names_subject("who runs apple?", "Who runs Apple?", "Apple is run by Tim Cook.", {"who"})
    True
    >>> names_subject("How do I reset my router?", "My code is QUOKKA-7781, how do I reset my router?", "Ok.")
    True
    """
    subject = names(taught_question, known) & names(taught_answer, known)
    # Any of its words, not only the question's names: "who runs apple?" names Apple in
    # lower case, a word English knows.
    return not subject or bool(set(re.findall(r"[a-z0-9-]+", question.lower())) & subject)


@dataclass(frozen=True)
class Found:
    """One pool entry a question found: by meaning (cosine similarity), by words (BM25), or
    both, and its fused score."""

    exchange_id: int
    fused: float
    similarity: float | None = None
    keywords: float | None = None

    @property
    def matched(self) -> str:
        if self.similarity is not None and self.keywords is not None:
            return "both"
        return "meaning" if self.similarity is not None else "words"


@dataclass(frozen=True)
class Thresholds:
    """When a found entry counts. Any example counts by meaning (`min_similarity`), as before
    the word search. A taught answer (a person wrote or approved it) must first name every
    name the question names (`names_agree`: a question about another subject worded the same
    way is the memory's worst mistake); then, if the question names something, a weak match of
    either search is enough (`agree_similarity`, `agree_keywords`), and if it names nothing, a
    strong one (`taught_similarity`, `min_keywords`). Chosen by bench/memory_lookup.py."""

    min_similarity: float = 0.6
    taught_similarity: float = 0.6
    min_keywords: float = 3.0
    agree_similarity: float = 0.3
    agree_keywords: float = 1.5

    def admits(self, found: Found, taught: bool = False, named: bool = False) -> bool:
        """`named`: the question names something, and the taught entry names it too.

        >>> t = Thresholds()
        >>> t.admits(Found(1, 0.0, similarity=0.65)), t.admits(Found(1, 0.0, similarity=0.5))
        (True, False)
        >>> t.admits(Found(1, 0.0, similarity=0.35), taught=True, named=True)
        True
        >>> t.admits(Found(1, 0.0, similarity=0.35), taught=True, named=False)
        False
        >>> t.admits(Found(1, 0.0, keywords=3.5), taught=True), t.admits(Found(1, 0.0), True)
        (True, False)
        """
        sim = found.similarity if found.similarity is not None else -1.0
        words = found.keywords if found.keywords is not None else -1.0
        if not taught:
            return sim >= self.min_similarity
        if named:
            return sim >= self.agree_similarity or words >= self.agree_keywords
        return sim >= self.taught_similarity or words >= self.min_keywords


def fuse(by_meaning: list[tuple[int, float]], by_words: list[tuple[int, float]]) -> list[Found]:
    """Both ranked lists fused by reciprocal rank, best first; `Thresholds.admits` then says
    which count.

    >>> [(f.exchange_id, f.matched) for f in fuse([(1, 0.81), (2, 0.55)], [(2, 9.0), (4, 1.0)])]
    [(2, 'both'), (1, 'meaning'), (4, 'words')]
    """
    scores: dict[int, dict] = {}
    for rank, (i, similarity) in enumerate(by_meaning, start=1):
        found = scores.setdefault(i, {"fused": 0.0})
        found["fused"] += 1.0 / (RRF_K + rank)
        found["similarity"] = similarity
    for rank, (i, score) in enumerate(by_words, start=1):
        found = scores.setdefault(i, {"fused": 0.0})
        found["fused"] += 1.0 / (RRF_K + rank)
        found["keywords"] = score
    kept = [Found(i, f["fused"], f.get("similarity"), f.get("keywords")) for i, f in scores.items()]
    return sorted(kept, key=lambda f: (-f.fused, f.exchange_id))


TAUGHT_INTRO = (
    "What you have been taught, newest first. These are facts a person gave you; they override "
    "anything else you believe. When the question is about one of them, answer with it."
)


def taught_block(items: list[tuple[datetime | None, str, str]]) -> str:
    """The system message's block of taught answers: (when, question, answer), newest first.

    >>> from datetime import datetime
    >>> print(taught_block([(datetime(2026, 11, 12), "Capital of Zorvath?", "Quelmi.")]))
    What you have been taught, newest first. These are facts a person gave you; they override anything else you believe. When the question is about one of them, answer with it.
    <BLANKLINE>
    - Taught on 12 Nov 2026. Question: Capital of Zorvath?
      Answer: Quelmi.
    """
    lines = [TAUGHT_INTRO, ""]
    for when, question, answer in items:
        date = f"Taught on {when:%-d %b %Y}. " if when else ""
        lines.append(f"- {date}Question: {question.strip()}\n  Answer: {answer.strip()}")
    return "\n".join(lines)


def taught_message(pairs: list[tuple[str, str]], message: str) -> str:
    """The user's message with what people taught, (question, answer) pairs, in front of it
    (`retrieval_taught_in` "message"): the layout the embedded 135M model followed best
    (docs/learning.md). The question stays with its answer, so a short correction ("Hold its
    reset button.") still says what it answers.

    >>> print(taught_message([("Capital of Zorvath?", "Quelmi.")], "Zorvath's capital?"))
    Question: Capital of Zorvath?
    Answer: Quelmi.
    <BLANKLINE>
    Using the answer above, answer: Zorvath's capital?
    >>> print(taught_message([("A?", "a."), ("B?", "b.")], "Q?"))
    Question: A?
    Answer: a.
    <BLANKLINE>
    Question: B?
    Answer: b.
    <BLANKLINE>
    Using the answers above, answer: Q?
    """
    taught = "\n\n".join(f"Question: {q.strip()}\nAnswer: {a.strip()}" for q, a in pairs)
    above = "answer above" if len(pairs) == 1 else "answers above"
    return f"{taught}\n\nUsing the {above}, answer: {message}"


_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")


def key_terms(
    question: str,
    answer: str,
    known: Container[str] = frozenset(),
    uncommon: Container[str] = frozenset(),
) -> set[str]:
    """What a taught answer says that the question asking for it does not: its names, its
    numbers and, given them (feedback/pool/english.py `UNCOMMON`), its uncommon words,
    lowercased, less the question's own words. What an answer must say to have used it.

    >>> q = "Where did Leontyne Sarrowby study?"
    >>> sorted(key_terms(q, "Leontyne Sarrowby studied at Grimsholt College."))
    ['college', 'grimsholt']
    >>> key_terms("How long do Norrow Pulse 3 headphones last?", "They last 41 hours.")
    {'41'}
    >>> key_terms("What did Oren play?", "Oren played the theorbo.", uncommon={"theorbo"})
    {'theorbo'}
    >>> key_terms("How do I reset my router?", "Hold its reset button for ten seconds.")
    set()
    """
    said = names(answer, known) | set(_NUMBER.findall(answer))
    said |= {w for w in re.findall(r"[a-z]+", answer.lower()) if len(w) >= 4 and w in uncommon}
    asked = set(re.findall(r"[a-z0-9]+", question.lower()))
    return {t for t in said if t not in asked}


def says_all(text: str, terms: set[str]) -> bool:
    """Whether `text` has every one of `terms` as a word (a possessive or a hyphen is fine).

    >>> says_all("She was born in Kestrelvik's old town, a 41-hour trip.", {"kestrelvik", "41"})
    True
    >>> says_all("She studied at Grimsholton.", {"grimsholt"})
    False
    >>> says_all("It is 4217 metres high.", {"4,217"}), says_all("At 10.30.", {"10:30"})
    (True, True)
    """
    low = text.lower()
    digits = {re.sub(r"\D", "", n) for n in _NUMBER.findall(low)}
    return all(
        re.sub(r"\D", "", t) in digits
        if t[0].isdigit()
        else re.search(rf"(?<![a-z0-9]){re.escape(t)}(?![a-z0-9])", low)
        for t in terms
    )


def restatement(
    answer: str,
    question: str,
    examples,
    known: Container[str] = frozenset(),
    uncommon: Container[str] = frozenset(),
    unnamed_similarity: float = 0.85,
) -> str:
    """What to add under an answer that left out what a person taught about its question ("" for
    nothing): the first taught example (`feedback.pool.curator.Example`, the memory's best
    match), said as taught, with its date and whose it was, when the answer does not say all of
    its `key_terms`. When the second taught example is about the same subject the question
    names (a sibling fact: the founder beside the head office), the lookup's ranking between
    the two is the weak point (bench/memory_chat.py), so both are said, the best match first,
    unless the answer used either; the second is left out when the first already says all it
    says (a liked answer repeating the correction). Only for a question that names something
    (the memory already checked the taught answers name it too) or, naming nothing, one this
    close in meaning (`unnamed_similarity`). A taught answer with no names, numbers or uncommon words
    cannot be checked and is left to the model.

    >>> from types import SimpleNamespace as E
    >>> from datetime import datetime
    >>> taught = E(prompt="Where did Leontyne Sarrowby study?", taught=True, shared=False,
    ...     completion="Leontyne Sarrowby studied at Grimsholt College.", similarity=0.7,
    ...     taught_at=datetime(2026, 11, 12))
    >>> restatement("The University of Edinburgh.", "Which college did Sarrowby attend?", [taught])
    '\\n\\nYou taught me this on 12 Nov 2026: Leontyne Sarrowby studied at Grimsholt College.'
    >>> restatement("She went to Grimsholt College.", "Which college did Sarrowby attend?", [taught])
    ''
    >>> restatement("Everest.", "What is the tallest mountain?", [taught])
    ''
    >>> again = E(prompt="Where did Sarrowby study?", taught=True, shared=False, similarity=0.6,
    ...     completion="Sarrowby studied at Grimsholt College, in the north.", taught_at=None)
    >>> restatement("Oxford.", "Which college did Sarrowby attend?", [taught, again]).count("taught")
    1
    >>> wide = E(prompt="Where did Sarrowby study?", taught=True, shared=False, similarity=0.7,
    ...     completion="Sarrowby studied at Grimsholt College in Vennick.", taught_at=None)
    >>> restatement("At Grimsholt.", "Which college did Sarrowby attend?", [wide, again])
    ''
    """
    taught = [e for e in examples if e.taught]
    if not taught:
        return ""
    first, asked = taught[0], names(question, known)
    close = bool(asked) or (first.similarity or 0.0) >= unnamed_similarity
    said = [key_terms(f"{question}\n{e.prompt}", e.completion, known, uncommon) for e in taught[:2]]
    if not said[0] or not close:
        return ""
    pair = [
        (e, terms)
        for e, terms in zip(taught[1:2], said[1:], strict=True)
        if asked & names(e.prompt, known) & names(first.prompt, known)
    ]
    if any(terms and says_all(answer, terms) for _, terms in [(first, said[0]), *pair]):
        return ""  # it used one of them
    shown = [first] + [e for e, terms in pair if not says_all(first.completion, terms)]
    return "".join("\n\n" + taught_line(e) for e in shown)


def taught_line(example) -> str:
    """How a taught answer reads under an answer: whose, and when.

    >>> from types import SimpleNamespace as E
    >>> print(taught_line(E(completion="Quelmi.", shared=True, taught_at=None)))
    Another user taught this, and a person vouched for it: Quelmi.
    """
    text = example.completion.strip()
    if example.shared:
        return f"{RESTATED[1]}, and a person vouched for it: {text}"
    when = f" on {example.taught_at:%-d %b %Y}" if example.taught_at else ""
    return f"{RESTATED[0]}{when}: {text}"
