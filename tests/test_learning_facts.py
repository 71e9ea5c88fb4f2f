"""The invented facts for the learning benchmark (bench/data/learning_facts.jsonl) keep their rules:
enough facts and unrelated questions, key words that only a real recall can produce (in the answer,
never in the taught question or a paraphrase), three paraphrases that are truly reworded and still
name the subject, and subjects distinct enough that a taught name leaking elsewhere is detectable.
Pure file checks: no model."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FACTS = ROOT / "bench" / "data" / "learning_facts.jsonl"

FIELDS = {"id", "topic", "question", "answer", "keywords", "paraphrases", "unrelated"}
TOPICS = {"person", "place", "product", "organisation", "event"}
# Capitalised tokens that are ordinary words (question words, titles, generic parts of names such
# as "Lake" or "Festival"), so never the invented part of a subject's name.
GENERIC = {
    "A", "An", "The", "I", "In", "For", "If", "My", "What", "Who", "Whom", "Whose", "When",
    "Where", "Which", "Why", "How", "Name", "Describe", "Planning", "Writing", "Someone", "Fans",
    "Government", "Dr", "Sister", "Mount", "Lake", "Sea", "Desert", "Beach", "Port", "Quay",
    "Isles", "Peninsula", "Tunnel", "Observatory", "College", "Prize", "Pulse", "Keep", "Otters",
    "Weavers", "Guild", "Institute", "Choir", "Rowing", "Society", "Bank", "Lancers",
    "Foundation", "Ferries", "Great", "Flood", "Cup", "Battle", "Ford", "Lantern", "Festival",
    "Treaty", "Mill", "Music", "Winter", "Games", "Pie", "Contest",
}  # fmt: skip
STOPWORDS = {"the", "and", "was", "for", "with", "from", "that", "this", "are", "its"}
NAME = re.compile(r"\b[A-Z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)*")
WORD = re.compile(r"[a-z0-9]+")


@cache
def _rows() -> tuple[dict, ...]:
    lines = FACTS.read_text(encoding="utf-8").splitlines()
    return tuple(json.loads(line) for line in lines if line.strip())


def _facts() -> list[dict]:
    return [row for row in _rows() if not row["unrelated"]]


def _unrelated() -> list[dict]:
    return [row for row in _rows() if row["unrelated"]]


def _words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def _jaccard(a: str, b: str) -> float:
    x, y = set(_words(a)), set(_words(b))
    return len(x & y) / len(x | y)


def _names(text: str) -> set[str]:
    return set(NAME.findall(text)) - GENERIC


def _subject(fact: dict) -> set[str]:
    """The invented name tokens a fact is about: named in both the taught question and the answer."""
    return _names(fact["question"]) & _names(fact["answer"])


def test_the_set_has_at_least_40_facts_and_20_unrelated_questions():
    assert len(_facts()) >= 40
    assert len(_unrelated()) >= 20


def test_every_line_has_the_documented_fields_and_a_unique_id():
    ids = [row["id"] for row in _rows()]
    assert len(ids) == len(set(ids))
    for row in _rows():
        assert set(row) == FIELDS, row["id"]
        assert isinstance(row["unrelated"], bool)
        assert isinstance(row["keywords"], list) and isinstance(row["paraphrases"], list)
        assert row["question"].strip()
    for fact in _facts():
        assert re.fullmatch(r"f\d{2}", fact["id"]), fact["id"]
        assert fact["topic"] in TOPICS, fact["id"]
    for row in _unrelated():
        assert re.fullmatch(r"u\d{2}", row["id"]), row["id"]
        assert row["topic"] == "general"
        assert row["answer"] == "" and row["keywords"] == [] and row["paraphrases"] == []


def test_answers_are_short_corrections_that_name_the_subject():
    for fact in _facts():
        assert 0 < len(fact["answer"]) <= 200, fact["id"]
        assert _subject(fact), f"{fact['id']}: question and answer share no invented name"


def test_keywords_appear_in_the_answer_and_never_in_a_question_or_paraphrase():
    for fact in _facts():
        keywords = fact["keywords"]
        assert 1 <= len(keywords) <= 3, fact["id"]
        for keyword in keywords:
            key = keyword.lower()
            assert len(key) >= 3 and key not in STOPWORDS, (fact["id"], keyword)
            assert key in fact["answer"].lower(), (fact["id"], keyword)
            assert key not in fact["question"].lower(), (fact["id"], keyword)
            for paraphrase in fact["paraphrases"]:
                assert key not in paraphrase.lower(), (fact["id"], keyword, paraphrase)


def test_each_fact_has_three_paraphrases_worded_differently_from_the_question_and_each_other():
    for fact in _facts():
        paraphrases = fact["paraphrases"]
        assert len(paraphrases) == 3, fact["id"]
        texts = [fact["question"], *paraphrases]
        normalised = {" ".join(_words(text)) for text in texts}
        assert len(normalised) == 4, f"{fact['id']}: a paraphrase repeats another wording"
        for paraphrase in paraphrases:
            assert _jaccard(paraphrase, fact["question"]) < 0.7, (fact["id"], paraphrase)
        for i, first in enumerate(paraphrases):
            for second in paraphrases[i + 1 :]:
                assert _jaccard(first, second) < 0.7, (fact["id"], first, second)


def test_every_paraphrase_names_the_subject_so_it_is_answerable():
    for fact in _facts():
        subject = _subject(fact)
        for paraphrase in fact["paraphrases"]:
            assert _names(paraphrase) & subject, (fact["id"], paraphrase)


def test_subjects_and_keywords_are_distinct_across_facts():
    facts = _facts()
    seen: dict[str, str] = {}
    for fact in facts:
        for token in _subject(fact):
            assert token not in seen, (
                f"{token} is the subject of {seen.get(token)} and {fact['id']}"
            )
            seen[token] = fact["id"]
    for fact in facts:
        for other in facts:
            if other is fact:
                continue
            text = " ".join([other["question"], other["answer"], *other["paraphrases"]]).lower()
            for keyword in fact["keywords"]:
                assert keyword.lower() not in text, (fact["id"], keyword, other["id"])
            for token in _subject(fact):
                assert not re.search(rf"\b{re.escape(token.lower())}\b", text), (
                    fact["id"],
                    token,
                    other["id"],
                )


def test_unrelated_questions_mention_no_taught_name_or_keyword():
    taught = set()
    for fact in _facts():
        taught |= {token.lower() for token in _subject(fact)}
        taught |= {keyword.lower() for keyword in fact["keywords"]}
    for row in _unrelated():
        question = row["question"].lower()
        words = set(_words(question))
        for term in taught:
            assert term not in words and term not in question, (row["id"], term)
