"""Which words are English, for the memory's names check: wordfreq's word lists, offline (they
ship inside the `wordfreq` package).

Owns two questions: has this lower-case word ever been seen in English text, and is it rare
there? A word wordfreq
does not know (a Zipf frequency of 0) is, most often, a name typed in lower case ("zorvath"),
while an uncommon English word ("captioning", "itinerary", "wifi") is known and so is not taken
for a name. Which names a question must share with a taught answer is feedback/pool/memory.py's.
"""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=65536)
def known(word: str) -> bool:
    """
    >>> known("itinerary"), known("wifi"), known("zorvath")
    (True, True, False)
    """
    from wordfreq import zipf_frequency

    return zipf_frequency(word, "en") > 0


@functools.lru_cache(maxsize=65536)
def uncommon(word: str) -> bool:
    """A word English knows but seldom uses (a Zipf frequency below 4: fewer than ten in a
    million words): in a short answer, the word that carries it ("theorbo", "saffron").

    >>> uncommon("theorbo"), uncommon("saffron"), uncommon("played"), uncommon("zorvath")
    (True, True, False, False)
    """
    from wordfreq import zipf_frequency

    return 0 < zipf_frequency(word, "en") < 4.0


def load_english() -> None:
    """Load the English word list now (about 0.3 s and 60 MB), not at the first question."""
    known("the")


class EnglishWords:
    """`word in ENGLISH`: whether wordfreq knows the word in English."""

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and known(word)

    def __bool__(self) -> bool:
        return True


class UncommonWords:
    """`word in UNCOMMON`: whether the word is `uncommon`."""

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and uncommon(word)


ENGLISH = EnglishWords()
UNCOMMON = UncommonWords()
