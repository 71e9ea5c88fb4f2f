"""Lessons the model writes from what people taught: graded against the parent's words, stored
with provenance, withdrawn when the parent goes, never parents themselves, and mixed into a
refresh only beside their parent, capped.

Real SQLite and Chroma; the first test runs the embedded model and the product's grader on it,
the others a fake writer and a fake judge (what they check is the bookkeeping).
"""

from __future__ import annotations

import json

import pytest

from assistant.chat import ChatService
from feedback.grading.grader import GRADER_VERSION, Grader
from feedback.refresh.rules import RefreshConfig, build_mix
from feedback.synthesis.rules import SynthesisConfig
from feedback.synthesis.stage import Synthesizer
from store.grading import GradingStore
from store.lessons import LessonStore
from store.pool import PoolStore
from tests.fakes import FakeModel, ask

QUESTION = "Who keeps the lighthouse on Vellmar Island?"
ANSWER = "The lighthouse on Vellmar Island is kept by Orsolya Brandt."
GOOD_QUESTION = "Which person is the keeper of the lighthouse on Vellmar Island?"
GOOD_ANSWER = "Orsolya Brandt keeps the lighthouse on Vellmar Island."
VERDICT = json.dumps({"reason": "It says what the reference says.", "score": 9})


@pytest.fixture
def chat(store, settings, fake_model, curator):
    settings.pool_max_user_share = 1.0
    return ChatService(store, fake_model, settings, curator)


def taught(chat, question=QUESTION, answer=ANSWER) -> int:
    final = ask(chat, question, "I am not sure.")
    chat.correct(final.exchange_id, answer)
    return final.exchange_id


def synthesizer(chat, embedder, writer: FakeModel, judge: FakeModel, **config) -> Synthesizer:
    engine = chat.store.engine
    return Synthesizer(
        PoolStore(engine),
        LessonStore(engine),
        writer,
        Grader(judge, writer),
        embedder,
        SynthesisConfig(**{"questions": 3, "answers": 2, **config}),
    )


def fake_writer(*texts) -> FakeModel:
    writer = FakeModel()
    writer.enqueue(*texts)
    return writer


def fake_judge(n: int = 10) -> FakeModel:
    judge = FakeModel()
    judge.enqueue(*[VERDICT] * n)
    return judge


def test_the_embedded_model_writes_lessons_graded_against_the_parent(
    chat, store, engine, embedder, settings
):
    parent = taught(chat)
    synth = Synthesizer(
        PoolStore(store.engine),
        LessonStore(store.engine),
        engine,
        Grader(engine, engine),
        embedder,
        SynthesisConfig(questions=4, answers=2),
    )
    report = synth.run()
    lessons = LessonStore(store.engine).of(parent)
    assert report.written == len(lessons) == 6 and report.done == 1
    graded = [x for x in lessons if x.grader_version]
    assert graded, [(x.prompt, x.completion, x.reason) for x in lessons]
    for x in graded:  # the product's grader, against the parent's answer
        assert x.grader_version == GRADER_VERSION and x.score is not None
        assert x.agreement is not None
    for x in lessons:  # provenance on every one, kept or not
        assert (x.parent_exchange_id, x.model_id, x.user_id) == (parent, engine.model_id, 1)
        assert x.status in ("kept", "rejected", "duplicate") and (x.reason or x.status == "kept")
    for x in (x for x in lessons if x.status == "kept"):
        assert "vellmar" in x.prompt.lower() and "brandt" in x.completion.lower()
    assert report.kept == sum(x.status == "kept" for x in lessons)


def test_each_candidate_is_checked_then_graded_and_only_passing_ones_are_kept(
    chat, store, embedder
):
    parent = taught(chat)
    writer = fake_writer(
        GOOD_QUESTION,
        QUESTION,  # the parent's own words
        "Who keeps the lighthouse on Corvin Island?",  # another subject
        GOOD_ANSWER,
        "The lighthouse on Vellmar Island is kept by Orsolya Brandt since 1990.",  # a number it made up
    )
    report = synthesizer(chat, embedder, writer, fake_judge()).run()
    by_text = {(x.prompt, x.completion): x for x in LessonStore(store.engine).of(parent)}
    assert by_text[(GOOD_QUESTION, ANSWER)].status == "kept"
    assert by_text[(QUESTION, GOOD_ANSWER)].status == "kept"
    assert by_text[(GOOD_QUESTION, ANSWER)].similarity > 0.7
    assert by_text[(QUESTION, ANSWER)].reason == "the same words as the question it rewords"
    assert (
        "leaves out vellmar"
        in by_text[("Who keeps the lighthouse on Corvin Island?", ANSWER)].reason
    )
    made_up = by_text[
        (QUESTION, "The lighthouse on Vellmar Island is kept by Orsolya Brandt since 1990.")
    ]
    assert (made_up.status, made_up.reason) == ("rejected", "it brings in 1990")
    assert (report.written, report.graded, report.kept) == (5, 2, 2)
    assert report.pass_rate == 0.4
    assert LessonStore(store.engine).rejected()[0].status == "rejected"


def test_an_answer_the_grade_flags_or_that_disagrees_is_rejected(chat, store, embedder):
    parent = taught(chat)
    judge = FakeModel()
    judge.enqueue(json.dumps({"reason": "Wrong.", "score": 1}))
    writer = fake_writer("Orsolya Brandt keeps it, on Vellmar Island, as the lighthouse keeper.")
    synthesizer(chat, embedder, writer, judge, questions=0, answers=1, min_agreement=0.99).run()
    (lesson,) = LessonStore(store.engine).of(parent)
    assert lesson.status == "rejected" and lesson.judge_score == 1
    assert lesson.reason.startswith(("the grade flagged it", "its answer agrees"))


def test_deleting_the_parent_deletes_its_lessons(chat, store, embedder):
    parent = taught(chat)
    synthesizer(
        chat, embedder, fake_writer(GOOD_QUESTION), fake_judge(), questions=1, answers=0
    ).run()
    assert LessonStore(store.engine).kept()
    chat.delete(store.exchange(parent).conversation_id)
    assert LessonStore(store.engine).of(parent) == []
    assert LessonStore(store.engine).kept() == []


def test_a_reviewer_rejecting_an_approved_parent_withdraws_its_lessons(chat, store, embedder):
    final = ask(chat, QUESTION, ANSWER)
    chat.rate(final.exchange_id, 1)  # approved: a parent
    synth = synthesizer(
        chat, embedder, fake_writer(GOOD_QUESTION), fake_judge(), questions=1, answers=0
    )
    synth.run()
    assert [x.status for x in LessonStore(store.engine).of(final.exchange_id)] == ["kept"]
    GradingStore(store.engine).review(final.exchange_id, "confirm", "rita")
    chat.curate(final.exchange_id)
    report = synth.run()
    (lesson,) = LessonStore(store.engine).of(final.exchange_id)
    assert report.withdrawn == 1 and lesson.status == "withdrawn"
    assert "left the training pool" in lesson.reason


def test_a_parent_corrected_again_gets_new_lessons_and_the_old_ones_are_withdrawn(
    chat, store, embedder
):
    parent = taught(chat)
    synthesizer(
        chat, embedder, fake_writer(GOOD_QUESTION), fake_judge(), questions=1, answers=0
    ).run()
    chat.correct(parent, "The lighthouse on Vellmar Island is kept by Ida Fenn.")
    again = "Who is the keeper of the lighthouse on Vellmar Island?"
    synthesizer(chat, embedder, fake_writer(again), fake_judge(), questions=1, answers=0).run()
    lessons = LessonStore(store.engine).of(parent)
    assert [(x.prompt, x.status) for x in lessons] == [
        (GOOD_QUESTION, "withdrawn"),
        (again, "kept"),
    ]
    assert lessons[1].completion.endswith("Ida Fenn.")


def test_lessons_are_never_parents_and_model_answers_never_are(chat, store, embedder):
    parent = taught(chat)
    final = ask(chat, "What is the capital of France?", "Paris.")  # model-only: not a parent
    synth = synthesizer(
        chat, embedder, fake_writer(GOOD_QUESTION), fake_judge(), questions=1, answers=0
    )
    synth.run()
    assert set(synth.parents()) == {parent} and final.exchange_id not in synth.parents()
    writer = FakeModel()
    report = synthesizer(chat, embedder, writer, fake_judge()).run()
    assert (report.todo, report.written, writer.history) == (0, 0, [])


def test_the_mix_takes_lessons_only_beside_their_parent_capped_and_outside_the_human_share(
    chat, store, embedder
):
    first, second = taught(chat), taught(chat, "Who founded Brannoc Labs?", "Ida Fenn did.")
    questions = [GOOD_QUESTION, "Who is the keeper of the lighthouse on Vellmar Island?"]
    writer = fake_writer(
        *questions, "Which person started Brannoc Labs?", "Who set up Brannoc Labs?"
    )
    synthesizer(chat, embedder, writer, fake_judge(), questions=2, answers=0).run()
    entries = list(PoolStore(store.engine).train_entries())
    lessons = LessonStore(store.engine).kept()
    assert len(lessons) == 4
    mix = build_mix(
        entries,
        set(),
        set(),
        [],
        None,
        None,
        RefreshConfig(lessons_per_parent=1),
        forced=True,
        lessons=lessons,
    )
    assert (mix.counts["synthetic"], mix.counts["synthetic_parents"], mix.counts["mix"]) == (
        2,
        2,
        4,
    )
    assert mix.counts["human_share"] == 1.0  # counted without the lessons
    assert mix.exchange_ids == [first, second]  # lessons are not exchanges
    # A held-out parent's lessons stay out with it.
    held = build_mix(
        entries, {second}, set(), [], None, None, RefreshConfig(), forced=True, lessons=lessons
    )
    assert (held.counts["synthetic"], held.counts["mix"]) == (2, 3)
    asked = [r["messages"][-2]["content"] for r in held.records]
    assert "Which person started Brannoc Labs?" not in asked and GOOD_QUESTION in asked


def test_a_dry_run_counts_and_writes_nothing(chat, store, embedder):
    taught(chat)
    writer = FakeModel()
    report = synthesizer(chat, embedder, writer, fake_judge()).run(dry_run=True)
    assert (report.parents, report.todo, report.written) == (1, 1, 0)
    assert writer.history == [] and LessonStore(store.engine).counts() == {}


def test_pool_synthesize_from_the_cli_writes_graded_lessons_and_the_pool_counts_them(
    chat, store, capsys
):
    from assistant.cli import main

    parent = taught(chat)
    assert main(["pool", "synthesize", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "1 would get lessons" in out and f"exchange {parent}" in out
    assert LessonStore(store.engine).counts() == {}
    flags = ["--synthesis-questions", "2", "--synthesis-answers", "1", "--max-tokens", "64"]
    assert main(["pool", "synthesize", *flags]) == 0
    out = capsys.readouterr().out
    assert "written for 1 taught answer(s)" in out and "pass rate" in out
    assert "synthetic" in out  # `autodidact pool` shows the lessons beside the pool
    assert len(LessonStore(store.engine).of(parent)) == 3


def test_the_review_tab_lists_rejected_lessons_and_superseded_corrections(chat, store, embedder):
    from assistant.web.review_tab import kept_out

    parent = taught(chat)
    writer = fake_writer("Who keeps the lighthouse on Corvin Island?")
    synthesizer(chat, embedder, writer, fake_judge(), questions=1, answers=0).run()
    newer = taught(chat, "Who is the keeper of the Vellmar Island lighthouse?", GOOD_ANSWER)
    pool = PoolStore(store.engine)
    rows = kept_out(pool.superseded(), LessonStore(store.engine).rejected())
    assert [(r[0], r[1]) for r in rows] == [
        (parent, "superseded correction"),
        (parent, "rejected lesson (question)"),
    ]
    assert str(newer) in rows[0][5] and "leaves out vellmar" in rows[1][5]


def test_rehearsal_keeps_the_answers_the_grade_passes_and_the_mix_caps_them(chat, store, embedder):
    from feedback.refresh.rules import rehearsal_prompts

    taught(chat)
    writer = fake_writer("", "Blue light scatters more in the air than red light does.")
    judge = FakeModel()
    judge.enqueue(VERDICT)
    synth = synthesizer(chat, embedder, writer, judge)
    records, figures = synth.rehearse(rehearsal_prompts(2), "Be brief.", {"temperature": 0.0})
    assert (figures["prompts"], figures["kept"], figures["flagged"]) == (2, 1, 1)
    assert [m["role"] for m in records[0]["messages"]] == ["system", "user", "assistant"]
    entries = list(PoolStore(store.engine).train_entries())
    many = records * 5
    mix = build_mix(
        entries, set(), set(), [], None, None, RefreshConfig(), forced=True, rehearsal=many
    )
    # One human answer at a human share of 0.5 leaves room for one model-written record.
    assert (mix.counts["rehearsal"], mix.counts["rehearsal_capped"], mix.counts["mix"]) == (1, 4, 2)
    assert mix.counts["human_share"] == 0.5


def test_the_sft_export_holds_kept_lessons_with_their_provenance(chat, store, embedder, tmp_path):
    from feedback.pool.records import export

    parent = taught(chat)
    synthesizer(
        chat, embedder, fake_writer(GOOD_QUESTION), fake_judge(), questions=1, answers=0
    ).run()
    out = tmp_path / "sft.jsonl"
    counts = export(PoolStore(store.engine), "sft", out, system="Be brief.")
    assert counts == {"human_written": 1, "synthetic": 1}
    lesson = [json.loads(line) for line in out.read_text().splitlines()][1]
    assert lesson["messages"][-2:] == [
        {"role": "user", "content": GOOD_QUESTION},
        {"role": "assistant", "content": ANSWER},
    ]
    assert lesson["provenance"]["parent_exchange_id"] == parent
    assert lesson["provenance"]["source"] == "synthetic" and lesson["provenance"]["model_id"]
    chat.delete(store.exchange(parent).conversation_id)
    assert export(PoolStore(store.engine), "sft", out) == {}


def test_lessons_never_cost_a_refresh_its_diversity_guard(chat, store, embedder):
    taught(chat)
    questions = [GOOD_QUESTION, "Who is the keeper of the lighthouse on Vellmar Island?"]
    synthesizer(chat, embedder, fake_writer(*questions), fake_judge(), questions=2, answers=0).run()
    entries = list(PoolStore(store.engine).train_entries())
    lessons = LessonStore(store.engine).kept()
    alone = build_mix(entries, set(), set(), [], None, None, RefreshConfig(), forced=True)
    # Reworded questions repeat the parent's answer by design: the mix's diversity is measured
    # on its own records, so the last promoted run's figure (no lessons then) still holds.
    mixed = build_mix(
        entries, set(), set(), [], alone.counts, None, RefreshConfig(), forced=True, lessons=lessons
    )
    assert mixed.refused is None and mixed.counts["synthetic"] == 2
    assert mixed.counts["distinct_2"] == alone.counts["distinct_2"]


def test_lessons_of_a_parent_corrected_again_are_out_of_the_export_before_any_rerun(
    chat, store, embedder, tmp_path
):
    from feedback.pool.records import export

    parent = taught(chat)
    synthesizer(
        chat, embedder, fake_writer(GOOD_QUESTION), fake_judge(), questions=1, answers=0
    ).run()
    chat.correct(parent, "The lighthouse on Vellmar Island is kept by Ida Fenn.")
    counts = export(PoolStore(store.engine), "sft", tmp_path / "sft.jsonl")
    assert counts == {"human_written": 1}  # the old lesson teaches the old answer


def test_lessons_finished_after_their_conversation_was_deleted_are_not_stored(chat, store):
    from store.tables import Lesson

    parent = taught(chat)
    chat.delete(store.exchange(parent).conversation_id)
    late = Lesson(parent_exchange_id=parent, parent_key="k", user_id=1, kind="question",
                  status="kept", reason="", prompt="q?", completion="a", model_id="m")  # fmt: skip
    assert LessonStore(store.engine).add([late]) == 0
    assert LessonStore(store.engine).of(parent) == []


FACTS = [
    ("Who founded Brannoc Labs?", "Ida Fenn founded Brannoc Labs."),
    ("Where is the Quillmere Observatory?", "The Quillmere Observatory is in Vostrey."),
    ("What colour is the sand on Gallowmere Beach?", "The sand on Gallowmere Beach is violet."),
    ("Who keeps the lighthouse on Vellmar Island?", ANSWER),
]


def test_a_refresh_writes_lessons_rehearses_and_trains_on_both(
    chat, store, settings, engine, embedder
):
    from tests.test_refresh import refresher

    parents = [taught(chat, q, a) for q, a in FACTS]
    rewordings = [f"Can you tell me: {q[0].lower()}{q[1:]}" for q, _ in FACTS]
    rehearsed = ["Blue light scatters more than red light.", "Sleep at the same time each day."]
    refused = [q for q, _ in FACTS]  # each neighbour names its parent's subject
    writer = fake_writer(*rewordings, *refused, *rehearsed)
    # tests/test_neighbours.py has the neighbours; here each parent's one try is refused
    synth = synthesizer(chat, embedder, writer, fake_judge(), questions=1, answers=0, neighbours=1)
    run = refresher(settings, store, engine, min_new=1, heldout_share=0.0, rehearsal=2)
    run.synthesizer = synth
    done = run.run()
    assert done.status in ("promoted", "rejected"), done.reason
    data = done.data
    assert (
        data["synthesis"]["done"] == len(FACTS) and data["synthetic"] == data["synthesis"]["kept"]
    )
    assert data["synthetic"] >= 1 and data["synthetic_parents"] == data["synthetic"]
    assert data["synthesis"]["rehearsal"]["prompts"] == 2 and data["rehearsal"] >= 1
    near = data["synthesis"]["rehearsal"]["neighbours"]
    assert (near["written"], near["kept"]) == (len(FACTS), 0)
    # rehearsal answers are model-written: they count against the human share, lessons do not
    assert data["human_share"] == round(len(FACTS) / (len(FACTS) + data["rehearsal"]), 4)
    assert data["mix"] == len(FACTS) + data["synthetic"] + data["rehearsal"]
    assert set(done.metrics["seconds"]) >= {"select", "synthesize", "guard", "train"}
    assert "general_loss" in done.metrics["evaluate"]["candidate"]
    assert all(x.parent_exchange_id in parents for x in LessonStore(store.engine).kept())
