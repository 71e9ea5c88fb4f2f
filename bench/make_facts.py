"""Writes bench/data/memory_facts.jsonl: invented facts for the memory's lookup benchmark.

Each fact is about an invented subject (a company, a town, a person, a ship), with the question
a user asks, the answer they teach, four rewordings, and the keyword an answer must hold. Every
subject has two or three facts, so facts share their subject's name and keyword search alone
is fooled; every relation is asked about many subjects, so facts share their wording and
meaning alone is fooled too. Near misses are questions about subjects nobody taught, worded
like the taught ones: the memory must find nothing for them. Seeded: the same file every run.

    .venv/bin/python -m bench.make_facts [--subjects 140] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent / "data" / "memory_facts.jsonl"
ONSETS = "b d f g k l m n p r s t v z br dr gr kr tr st sk th sh".split()
VOWELS = "a e i o u ae ai ei ou".split()
CODAS = "n r l s th k m nd rn sk".split()


def word(rng: random.Random, syllables: int) -> str:
    parts = [rng.choice(ONSETS) + rng.choice(VOWELS) for _ in range(syllables)]
    return ("".join(parts) + rng.choice(CODAS)).capitalize()


# kind: (name pattern, relations); a relation: (question, rewordings, answer, keyword slot)
KINDS = {
    "company": ("{w} {suffix}", {
        "founder": ("Who founded {s}?", ["Which person started the company {s}?",
            "{s} was set up by whom?", "Tell me the name of the founder of {s}.",
            "I need to credit whoever created {s} in my report. Who was it?"],
            "{s} was founded by {person}.", "person"),
        "headquarters": ("Where is {s} headquartered?", ["In which city does {s} have its head office?",
            "Where are the main offices of {s}?", "What town is {s} based in?",
            "I am sending a letter to the head office of {s}. Which city should I address?"],
            "{s} is headquartered in {place}.", "place"),
        "product": ("What does {s} make?", ["What is the main product of {s}?",
            "Which product is {s} known for?", "What do the factories of {s} produce?",
            "My friend works at {s}. What do they manufacture there?"],
            "{s} makes {thing}.", "thing"),
    }),
    "town": ("{w}", {
        "river": ("Which river runs through the town of {s}?", ["What river flows through {s}?",
            "{s} lies on the banks of which river?", "Name the river that crosses the town of {s}.",
            "Planning a walk along the river in {s}: what is the river called?"],
            "The river {place} runs through {s}.", "place"),
        "dish": ("What dish is the town of {s} famous for?", ["Which local food is {s} known for?",
            "What should I eat when I visit {s}?", "Name the traditional dish of {s}.",
            "A travel guide says {s} has one famous dish. Which one?"],
            "{s} is famous for {thing}.", "thing"),
        "founded": ("When was the town of {s} founded?", ["In what year was {s} founded?",
            "How old is the town of {s}: when was it established?", "What year did {s} begin as a town?",
            "For a history quiz: the founding year of {s}?"],
            "{s} was founded in {year}.", "year"),
    }),
    "person": ("{first} {w}", {
        "instrument": ("Which instrument did the musician {s} play?", ["What did {s} play in concerts?",
            "{s} was known as a player of which instrument?", "Name the instrument of the musician {s}.",
            "I am writing a programme note on {s}. What instrument should I mention?"],
            "{s} played the {instrument}.", "instrument"),
        "birthplace": ("Where was {s} born?", ["In which town was {s} born?",
            "What is the birthplace of {s}?", "{s} came into the world in which town?",
            "For a biography of {s}: where were they born?"],
            "{s} was born in {place}.", "place"),
    }),
    "ship": ("the {w}", {
        "captain": ("Who captained the ship {s}?", ["Who was the captain of {s}?",
            "Which captain commanded {s}?", "Name the person in command of the ship {s}.",
            "A museum label about {s} needs its captain. Who?"],
            "{s} was captained by {person}.", "person"),
        "port": ("What was the home port of the ship {s}?", ["Which port did {s} sail from?",
            "Where was {s} based as a ship?", "Name the home harbour of {s}.",
            "I am drawing the route of {s}. Which port did it start from?"],
            "The home port of {s} was {place}.", "place"),
    }),
}  # fmt: skip
SUFFIXES = ["Works", "Labs", "Industries", "Foundry", "Mills"]
FIRST = ["Ida", "Oren", "Maren", "Tobiah", "Selka", "Aurel", "Vesna", "Casimir", "Liesl", "Anwen"]
INSTRUMENTS = ["theorbo", "hurdy-gurdy", "sackbut", "cimbalom", "dulcimer", "bandoneon",
               "serpent", "crumhorn", "nyckelharpa", "ophicleide", "kantele", "shawm"]  # fmt: skip


def fill(rng: random.Random, slot: str, used: set[str], repeat_years: bool = False) -> str:
    while True:
        value = {
            "person": lambda: f"{rng.choice(FIRST)} {word(rng, 2)}",
            "place": lambda: word(rng, 2),
            "thing": lambda: (
                f"{word(rng, 2).lower()} {rng.choice(['cakes', 'lamps', 'rope', 'tiles', 'stew'])}"
            ),
            "year": lambda: str(rng.randint(1100, 1890)),
            "instrument": lambda: rng.choice(INSTRUMENTS),
        }[slot]()
        # A dozen real instruments repeat; so do years in a large set (there are only 791).
        if slot == "instrument" or (slot == "year" and repeat_years) or value not in used:
            used.add(value)
            return value


def keyword(slot: str, value: str) -> str:
    """The word an answer must hold: a name's invented part, the invented half of a thing."""
    return value.split()[-1] if slot == "person" else value.split()[0]


def subject(rng: random.Random, kind: str, used: set[str]) -> str:
    pattern = KINDS[kind][0]
    while True:
        name = pattern.format(w=word(rng, 2), suffix=rng.choice(SUFFIXES), first=rng.choice(FIRST))
        if name not in used:
            used.add(name)
            return name


def make(subjects: int, seed: int, repeat_years: bool = False) -> tuple[list[dict], list[dict]]:
    """`subjects` invented subjects' facts and the near misses; `repeat_years` for sets larger
    than the 791 years a fact may name."""
    rng = random.Random(seed)
    used: set[str] = set()
    facts, near_misses = [], []
    for n in range(subjects):
        kind = rng.choice(list(KINDS))
        s = subject(rng, kind, used)
        relations = KINDS[kind][1]
        chosen = rng.sample(list(relations), k=min(len(relations), rng.choice([2, 3])))
        for relation in chosen:
            question, rewordings, answer, slot = relations[relation]
            value = fill(rng, slot, used, repeat_years)
            facts.append(
                {
                    "id": f"m{len(facts):03d}",
                    "subject": s,
                    "relation": relation,
                    "question": question.format(s=s),
                    "answer": answer.format(s=s, **{slot: value}),
                    "keyword": keyword(slot, value),
                    "paraphrases": [r.format(s=s) for r in rewordings],
                }
            )
        if n % 4 == 0:  # a subject nobody taught, asked about like a taught one
            other = subject(rng, kind, used)
            question = relations[rng.choice(list(relations))][1][0]
            near_misses.append(
                {"id": f"n{len(near_misses):03d}", "question": question.format(s=other)}
            )
    return facts, near_misses


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--subjects", type=int, default=140)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    facts, near = make(args.subjects, args.seed)
    with args.out.open("w") as f:
        for row in facts:
            f.write(json.dumps({"kind": "fact", **row}) + "\n")
        for row in near:
            f.write(json.dumps({"kind": "near_miss", **row}) + "\n")
    print(f"{len(facts)} facts, {len(near)} near misses: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
