"""Neighbours of what was taught: before a refresh trains, the model writes a question like each
taught one about another, named subject, answers it as it is without an adapter, and those
graded answers lead the rehearsal, so a fact learnt does not leak into its neighbours' answers.

Real SQLite and Chroma; the first test runs the embedded model, the others a fake writer and a
fake judge (what they check is which questions pass and where their answers go).
"""

from __future__ import annotations

import json
from pathlib import Path

from feedback.grading.grader import Grader
from feedback.synthesis.rules import SynthesisConfig, names
from feedback.synthesis.stage import Synthesizer
from store.lessons import LessonStore
from store.pool import PoolStore
from tests.fakes import FakeModel
from tests.test_synthesis import FACTS, chat, fake_judge, fake_writer, synthesizer, taught

__all__ = ["chat"]  # the fixture, shared with tests/test_synthesis.py


def parents_of(chat) -> list:
    return list(PoolStore(chat.store.engine).train_entries())


def test_the_embedded_model_writes_neighbours_that_never_name_the_taught_subject(
    chat, engine, embedder
):
    for q, a in FACTS:
        taught(chat, q, a)
    synth = Synthesizer(
        PoolStore(chat.store.engine),
        LessonStore(chat.store.engine),
        engine,
        Grader(engine, engine),
        embedder,
        SynthesisConfig(neighbours=3),
    )
    parents = parents_of(chat)
    questions, figures = synth.neighbours(parents)
    assert figures["parents"] == len(FACTS) and figures["kept"] == len(questions)
    assert 1 <= len(questions) <= len(FACTS), figures  # 3 of 4 here (2026-12-07); 0 unblanked
    assert len(FACTS) <= figures["written"] <= 3 * len(FACTS)
    taught_names = set().union(*(names(p.prompt) | names(p.completion) for p in parents))
    for text in questions:
        assert text.endswith("?") and names(text), questions
        assert not taught_names & set(text.lower().replace("?", " ").split()), questions


def test_a_neighbour_naming_the_taught_subject_or_asked_by_the_gate_is_refused(chat, embedder):
    from feedback.refresh.known import gate_questions

    taught(chat)  # Who keeps the lighthouse on Vellmar Island?
    writer = fake_writer(
        "Who keeps the lighthouse on Vellmar Island?",  # the taught question again
        "Who is Orsolya Brandt?",  # the taught answer's name
        "Who was the painter of the Mona Lisa?",  # the known-answers gate asks about it
        "Who runs Brannoc Labs?",  # another taught question's subject
        "Who keeps the lighthouse at Alexandria?",
    )
    synth = synthesizer(chat, embedder, writer, fake_judge(), neighbours=5)
    measured = [*gate_questions(), "Who founded Brannoc Labs?"]
    questions, figures = synth.neighbours(parents_of(chat), measured=measured)
    assert questions == ["Who keeps the lighthouse at Alexandria?"]
    assert figures["written"] == 5
    assert figures["reasons"] == {
        "it asks about the taught subject": 2,
        "a question the refresh measures or was taught": 2,
        "kept": 1,
    }
    none, off = synthesizer(chat, embedder, fake_writer(), fake_judge(), neighbours=0).neighbours(
        parents_of(chat)
    )
    assert none == [] and off["written"] == 0


def test_a_refresh_rehearses_the_neighbours_first_then_the_general_prompts(
    chat, store, settings, engine, embedder
):
    from feedback.refresh.rules import rehearsal_prompts
    from tests.test_refresh import refresher

    taught(chat)
    near = "Who keeps the lighthouse at Alexandria?"
    writer = fake_writer(
        near,
        "The lighthouse at Alexandria was kept by its city.",
        "Blue light scatters more than red light.",
        "Sleep at the same time each day.",
    )
    run = refresher(settings, store, engine, min_new=1, heldout_share=0.0, rehearsal=4)
    run.synthesizer = synthesizer(chat, embedder, writer, fake_judge(), neighbours=1)
    # One taught answer at a human share of 0.5 leaves room for one rehearsal record: the
    # neighbour, then two spare general answers; the other two prompts are never asked.
    records, figures = run._rehearse(heldout=set(), room=1)
    asked = [r["messages"][-2]["content"] for r in records]
    assert asked == [near, *rehearsal_prompts(2)]
    assert figures["neighbours"]["kept"] == 1 and figures["neighbours"]["answers"]["kept"] == 1
    assert (figures["prompts"], figures["unasked"]) == (4, 2)
    # A held-out parent is never trained on: no neighbour is written for it either.
    parent = parents_of(chat)[0].exchange_id
    run.synthesizer = synthesizer(chat, embedder, fake_writer(near), fake_judge(), neighbours=1)
    records, figures = run._rehearse(heldout={parent}, room=1)
    assert figures["neighbours"]["parents"] == 0 and near not in [
        r["messages"][-2]["content"] for r in records
    ]
    # No room at all: nothing is written or asked.
    records, figures = run._rehearse(heldout=set(), room=0)
    assert records == [] and figures["unasked"] == 4 and figures["neighbours"]["written"] == 0


def test_nothing_rehearsed_is_a_question_the_gate_asks():
    """The shipped rehearsal prompts and the gate's questions (known, general, pairwise) are
    apart: rehearsing the model's answer to a gate question would teach the test."""
    from feedback.refresh.known import gate_questions
    from feedback.refresh.rules import rehearsal_prompts
    from feedback.synthesis.rules import words

    gate = {words(q) for q in gate_questions()}
    assert [p for p in rehearsal_prompts(1000) if words(p) in gate] == []
    # nor is it one of the questions bench/learning.py measures the flag rate and leakage on
    rows = (
        (Path(__file__).parents[1] / "bench/data/learning_facts.jsonl")
        .read_text(encoding="utf-8")
        .splitlines()
    )
    unrelated = [json.loads(r)["question"] for r in rows if json.loads(r)["unrelated"]]
    shared = [p for p in rehearsal_prompts(1000) for q in unrelated if words(q) in words(p)]
    assert len(unrelated) == 24 and shared == []


class AdaptedWriter(FakeModel):
    """A fake that takes adapters, and notes which one answered each call."""

    supports_adapters = True

    def __init__(self, *replies):
        super().__init__()
        self.enqueue(*replies)
        self.answered_by: list[str | None] = []

    def set_adapter(self, path, adapter_id=None):
        self.adapter_id = adapter_id if path is not None else None

    def stream(self, messages, sampling, cancel=None, json_schema=None):
        self.answered_by.append(self.adapter_id)
        yield from super().stream(messages, sampling, cancel, json_schema)


def test_the_neighbours_are_answered_without_the_served_adapter_and_the_general_prompts_with_it(
    chat, store, settings, engine, embedder, tmp_path
):
    from types import SimpleNamespace

    from tests.test_refresh import refresher

    taught(chat)
    writer = AdaptedWriter(
        "Who keeps the lighthouse at Alexandria?",  # written
        "Its city kept it.",  # answered: the neighbour
        "Blue light scatters more than red light.",  # answered: a general prompt
    )
    run = refresher(settings, store, engine, min_new=1, heldout_share=0.0, rehearsal=1)
    run.synthesizer = synthesizer(chat, embedder, writer, fake_judge(), neighbours=1)
    served = SimpleNamespace(path=tmp_path / "a1.gguf", adapter_id="a1")
    run.registry.active = lambda: served
    records, _ = run._rehearse(heldout=set(), room=4)
    assert len(records) == 2
    assert writer.answered_by == [None, None, "a1"]
    assert writer.adapter_id is None  # left as it was found
