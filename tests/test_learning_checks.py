"""The learning benchmark's scoring (bench/learning_checks.py) on the real data file: a fact's own
correction recalls it and no paraphrase does, the leak-detecting names are found in the fact and
in no unrelated question, and the module's doctests hold. Pure functions: no model."""

from __future__ import annotations

import doctest

from bench import learning_checks
from bench.learning_checks import contains, leaked, names_of, read_rows, recall

FACTS, UNRELATED = read_rows()


def test_the_doctests_hold():
    result = doctest.testmod(learning_checks, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_each_correction_recalls_its_fact_and_no_question_or_paraphrase_does():
    for fact in FACTS:
        assert recall(fact["keywords"], fact["answer"]), fact["id"]
        for text in [fact["question"], *fact["paraphrases"]]:
            assert not recall(fact["keywords"], text, "any"), (fact["id"], text)


def test_a_correction_recalls_no_other_fact():
    for fact in FACTS:
        for other in FACTS:
            if other is not fact:
                assert not recall(other["keywords"], fact["answer"], "any"), (fact["id"], other)


def test_names_hold_the_keywords_and_the_invented_name_and_appear_in_no_unrelated_question():
    for fact in FACTS:
        names = names_of(fact)
        assert set(fact["keywords"]) < names, fact["id"]
        assert all(contains(name, fact["answer"]) for name in names), fact["id"]
        for row in UNRELATED:
            assert not leaked(names, row["question"], ""), (fact["id"], row["id"])
