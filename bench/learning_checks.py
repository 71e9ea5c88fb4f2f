"""What a learning run (bench/learning.py) is scored by: the invented facts and unrelated
questions it reads (bench/data/learning_facts.jsonl), whether an answer recalls a fact (its
keywords, whole words), which names of a fact could leak into other answers, whether an
unrelated answer leaked one, the table's rows and how they are printed (`show`).

Pure functions but `show`, no model and no app;
`tests/test_learning_checks.py` runs the doctests and checks them against the whole data file.
Driving the app and the refreshes is bench/learning.py's.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

FACTS = Path(__file__).resolve().parent / "data" / "learning_facts.jsonl"

# Capitalised words that are ordinary words or generic parts of names ("Lake", "Festival"), so
# never the invented part of a subject's name. The same list as tests/test_learning_facts.py.
GENERIC = {
    "A", "An", "The", "I", "In", "For", "If", "My", "What", "Who", "Whom", "Whose", "When",
    "Where", "Which", "Why", "How", "Name", "Describe", "Planning", "Writing", "Someone", "Fans",
    "Government", "Dr", "Sister", "Mount", "Lake", "Sea", "Desert", "Beach", "Port", "Quay",
    "Isles", "Peninsula", "Tunnel", "Observatory", "College", "Prize", "Pulse", "Keep", "Otters",
    "Weavers", "Guild", "Institute", "Choir", "Rowing", "Society", "Bank", "Lancers",
    "Foundation", "Ferries", "Great", "Flood", "Cup", "Battle", "Ford", "Lantern", "Festival",
    "Treaty", "Mill", "Music", "Winter", "Games", "Pie", "Contest",
}  # fmt: skip
NAME = re.compile(r"\b[A-Z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)*")
COLUMNS = ("phase", "set", "weights", "retr.", "n", "recall all", "any", "trained only",
           "held-out loss (vs base)", "flag rate", "leakage")  # fmt: skip
TARGETS = (  # issues 24 and 25
    "retrieval recall >= 95%; weights recall after refresh 1 >= 60%, after refresh 2 on A "
    "at most 10 points below; held-out loss <= +5%; flag rate within 5 points of the base's; "
    "leakage <= 2%"
)


def read_rows(path: Path = FACTS) -> tuple[list[dict], list[dict]]:
    """(facts, unrelated questions), in file order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    return [r for r in rows if not r["unrelated"]], [r for r in rows if r["unrelated"]]


def split(facts: list[dict], set_a: int) -> tuple[list[dict], list[dict]]:
    """Set A (taught first) and set B (taught after the first refresh).

    >>> a, b = split([{"id": "f1"}, {"id": "f2"}, {"id": "f3"}], 2)
    >>> [f["id"] for f in a], [f["id"] for f in b]
    (['f1', 'f2'], ['f3'])
    """
    return facts[:set_a], facts[set_a:]


def term_pattern(term: str) -> re.Pattern:
    """A term as a whole word (or words), any case, also with a plural ending: "octopus" is in
    "octopuses", "lighthouse" in "lighthouses", but "churn" is not in "churning".

    >>> bool(term_pattern("octopus").search("It studies memory in Octopuses."))
    True
    >>> bool(term_pattern("churn").search("a churning sea"))
    False
    >>> bool(term_pattern("2.35").search("it holds 12.35 litres"))
    False
    >>> bool(term_pattern("41 hours").search("about 41\\nhours"))
    True
    """
    words = r"\s+".join(re.escape(w) for w in term.split())
    return re.compile(rf"(?<!\w){words}(?:s|es)?(?!\w)", re.IGNORECASE)


def contains(term: str, text: str) -> bool:
    return bool(term_pattern(term).search(text or ""))


def recall(keywords: list[str], answer: str, mode: str = "all") -> bool:
    """Whether `answer` recalls the fact: all of its keywords (mode "all", the benchmark's
    figure) or at least one ("any") appear as whole words, any case.

    >>> recall(["dumplings", "rhubarb"], "Smoked trout dumplings with a rhubarb glaze.")
    True
    >>> recall(["dumplings", "rhubarb"], "Trout dumplings."), recall(["dumplings", "rhubarb"], "Trout dumplings.", "any")
    (False, True)
    >>> recall(["Heron"], "They called him the Grey heron!")
    True
    """
    hits = [contains(k, answer) for k in keywords]
    return bool(hits) and (all(hits) if mode == "all" else any(hits))


def names_of(fact: dict) -> set[str]:
    """What of a fact could leak into other answers: the invented name words its question and
    its answer share (capitalised, generic parts like "Lake" left out), and its keywords.

    >>> sorted(names_of({"question": "What year did Dr. Ysolde Varnakis win the Pellimore Prize?",
    ...     "answer": "Dr. Ysolde Varnakis won the Pellimore Prize in 1987.", "keywords": ["1987"]}))
    ['1987', 'Pellimore', 'Varnakis', 'Ysolde']
    >>> sorted(names_of({"question": "What was the marathon runner Oskel Thandrup's nickname?",
    ...     "answer": "Oskel Thandrup was nicknamed the Grey Heron.", "keywords": ["Heron"]}))
    ['Heron', 'Oskel', 'Thandrup']
    """
    shared = set(NAME.findall(fact["question"])) & set(NAME.findall(fact["answer"]))
    return (shared - GENERIC) | set(fact["keywords"])


def leaked(names: set[str], answer: str, baseline: str) -> list[str]:
    """The taught names in an unrelated question's answer that its answer before any teaching
    (`baseline`) did not already have, whole words, any case.

    >>> leaked({"Varnakis", "1987"}, "In 1987 Varnakis said so.", "It was 1987.")
    ['Varnakis']
    >>> leaked({"goat"}, "Boil the egg for 8 minutes.", "")
    []
    """
    return sorted(n for n in names if contains(n, answer) and not contains(n, baseline))


def share(flags: list[bool]) -> float | None:
    """The share of True, None for no values.

    >>> share([True, False, False, True]), share([])
    (0.5, None)
    """
    return round(sum(flags) / len(flags), 4) if flags else None


def table_row(phase, answers, facts, weights, retrieval, loss, unrelated=(), trained=None) -> dict:
    """One row of the table: the recall of a phase's paraphrase `answers` on one set of
    `facts` (only those whose correction was trained, when `trained` names them), with the
    phase's quality figures: held-out loss, flag rate and leakage on its `unrelated` answers.

    >>> facts = [{"id": "f1", "set": "A"}, {"id": "f2", "set": "A"}]
    >>> answers = [{"fact": "f1", "recall_all": True, "recall_any": True},
    ...            {"fact": "f2", "recall_all": False, "recall_any": True},
    ...            {"fact": "f9", "recall_all": True, "recall_any": True}]
    >>> unrelated = [{"flagged": True, "leaked": []}, {"leaked": ["Varnakis"]}]
    >>> row = table_row("2 after refresh 1", answers, facts, "adapter-1", "off", 1.5, unrelated, {"f2"})
    >>> row["questions"], row["recall_all"], row["recall_any"], row["recall_trained"]
    (2, 0.5, 1.0, 0.0)
    >>> row["flag_rate"], row["graded"], row["leakage"]
    (1.0, 1, 0.5)
    """
    ids = {f["id"] for f in facts}
    mine = [a for a in answers if a["fact"] in ids]
    graded = [u["flagged"] for u in unrelated if "flagged" in u]
    return {
        "phase": phase,
        "set": "".join(sorted({f["set"] for f in facts})),
        "weights": weights,
        "retrieval": retrieval,
        "questions": len(mine),
        "recall_all": share([a["recall_all"] for a in mine]),
        "recall_any": share([a["recall_any"] for a in mine]),
        "trained_facts": None if trained is None else len(ids & set(trained)),
        "recall_trained": None
        if trained is None
        else share([a["recall_all"] for a in mine if a["fact"] in trained]),
        "heldout_loss": loss,
        "flag_rate": share(graded),
        "graded": len(graded),
        "leakage": share([bool(u["leaked"]) for u in unrelated]),
    }


def cells(row: dict, base_loss: float) -> list[str]:
    """A table row as the printed table shows it.

    >>> cells({"phase": "1", "set": "A", "weights": None, "retrieval": "on", "questions": 6,
    ...        "recall_all": 0.5, "recall_any": 0.75, "trained_facts": 2, "recall_trained": 1.0,
    ...        "heldout_loss": 2.02, "flag_rate": 0.25, "graded": 4, "leakage": 0.0}, 2.0)
    ['1', 'A', 'base', 'on', '6', '50%', '75%', '100% of 2 facts', '2.0200 (+1.0%)', '25% of 4', '0%']
    """

    def pct(v):
        return "-" if v is None else f"{v:.0%}"

    trained = row["recall_trained"]
    loss = row["heldout_loss"]
    return [
        row["phase"],
        row["set"],
        row["weights"] or "base",
        row["retrieval"],
        str(row["questions"]),
        pct(row["recall_all"]),
        pct(row["recall_any"]),
        "-" if trained is None else f"{pct(trained)} of {row['trained_facts']} facts",
        f"{loss:.4f} ({loss / base_loss - 1:+.1%})",
        "-" if row["flag_rate"] is None else f"{pct(row['flag_rate'])} of {row['graded']}",
        pct(row["leakage"]),
    ]


def loss_records(rows: list[dict], system: str) -> list[dict]:
    """TruthfulQA rows as chat records whose last message, the human best answer, is what the
    held-out loss scores (feedback/refresh/train.py `completion_loss`).

    >>> loss_records([{"question": "Q?", "best_answer": "A."}], "Be brief.")[0]["messages"][1:]
    [{'role': 'user', 'content': 'Q?'}, {'role': 'assistant', 'content': 'A.'}]
    """
    return [
        {
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": row["question"]},
                {"role": "assistant", "content": row["best_answer"]},
            ]
        }
        for row in rows
    ]


def show(r: dict) -> None:
    """Print a run's table (one row per phase and set), its refreshes, what was measured."""
    from bench.harness import table

    table(
        f"learning, commit {r['commit'][:7]}, {r['wall_s'] / 60:.1f} min",
        list(COLUMNS),
        [cells(row, r["heldout_loss"]["base"]) for row in r["table"]],
        width=170,
    )
    for run in r["refreshes"]:
        print(
            f"refresh run {run['run_id']}: {run['status']} at step {run['step']} "
            f"({len(run['attempts'])} attempt(s), {run['seconds']} s) {run['reason'] or ''}"
        )
    for n, s in r["served"].items():
        print(f"weights measured after refresh {n}: {s['adapter'] or 'base'}, {s['how']}")
    spent = ", ".join(f"{k} {v['seconds']:.0f} s/{v['times']}" for k, v in r["timings"].items())
    print(f"time: {spent}")
    print(f"targets: {TARGETS}")
    if r.get("error"):
        print(f"STOPPED EARLY, the rows above are what was measured: {r['error'].splitlines()[-1]}")
    print(f"command: {r['command']}")
