"""The refresh's guards on the training mix, as pure functions over pool entries: what is
selected, what is capped, and each refusal with its reason (no torch, no model)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from feedback.refresh.rules import RefreshConfig, build_mix, read_anchor
from store.tables import PoolEntry


def entry(i, source="human_approved", completion=None):
    return PoolEntry(
        exchange_id=i,
        conversation_id=i,
        user_id=1,
        status="train",
        source=source,
        score=1.0,
        reason="r",
        prompt=f"Question {i}?",
        completion=completion or f"Answer {i} with some words of its own, number {i}.",
        model_id="m",
        exchange_at=datetime.now(UTC),
    )


def test_the_mix_accumulates_and_keeps_held_out_exchanges_out():
    entries = [entry(i) for i in range(1, 31)]
    mix = build_mix(entries, {3, 4}, {1, 2, 5}, [], None, "sys", RefreshConfig(min_new=5))
    assert mix.refused is None
    assert mix.exchange_ids == [i for i in range(1, 31) if i not in (3, 4)]
    assert mix.counts["new"] == 25 and mix.counts["trained_before"] == 3
    assert mix.records[0]["messages"] == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "Question 1?"},
        {"role": "assistant", "content": "Answer 1 with some words of its own, number 1."},
    ]


def test_model_only_examples_are_capped_to_keep_the_human_share():
    entries = [entry(i) for i in range(1, 11)] + [entry(i, "model_only") for i in range(11, 41)]
    mix = build_mix(entries, set(), set(), [], None, None, RefreshConfig(min_new=1))
    assert (mix.counts["model_only"], mix.counts["model_only_capped"]) == (10, 20)
    assert mix.counts["human_share"] == 0.5


def test_an_anchor_file_counts_as_human_data(tmp_path):
    anchor = tmp_path / "anchor.jsonl"
    anchor.write_text(
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello there."}]}\n'
        * 10
    )
    records = read_anchor(anchor)
    entries = [entry(i, "model_only") for i in range(1, 31)]
    mix = build_mix(entries, set(), set(), records, None, None, RefreshConfig(min_new=1))
    assert (mix.counts["anchor"], mix.counts["model_only"]) == (10, 10)
    assert mix.records[-1] == records[-1]


def test_a_broken_anchor_file_is_named_with_its_line(tmp_path):
    anchor = tmp_path / "anchor.jsonl"
    anchor.write_text('{"messages": [{"role": "user", "content": "hi"}]}\nnot json\n')
    with pytest.raises(ValueError, match=r"anchor.jsonl, line 1: not a"):
        read_anchor(anchor)


def test_too_few_new_examples_is_refused_unless_forced():
    entries = [entry(i) for i in range(1, 6)]
    mix = build_mix(entries, set(), {1, 2}, [], None, None, RefreshConfig(min_new=20))
    assert mix.refused == (
        "only 3 new training example(s) since the last promoted adapter; at least 20 are "
        "needed (rate or correct more answers, or use --force)"
    )
    forced = build_mix(entries, set(), {1, 2}, [], None, None, RefreshConfig(min_new=20), True)
    assert forced.refused is None


def test_a_diversity_drop_is_refused_as_a_collapse_risk():
    same = "The answer is always the very same sentence."
    entries = [entry(i, completion=same) for i in range(1, 31)]
    mix = build_mix(entries, set(), set(), [], {"distinct_2": 0.9}, None, RefreshConfig(min_new=1))
    assert mix.counts["distinct_2"] == 0.0333  # 7 distinct bigrams of 210
    assert mix.refused == (
        "the mix is less diverse than the last promoted run's: distinct-2 fell from 0.900 to "
        "0.033 (96%, more than 10%); training on it risks collapse"
    )


def test_a_mix_whose_answers_crowd_into_one_meaning_is_refused_by_embedding_spread(embedder):
    topics = ["apples", "rivers", "planets", "music", "taxes", "birds", "chess", "bread"]
    varied = [entry(i, completion=f"Here is a fact about {t}.") for i, t in enumerate(topics, 1)]
    first = build_mix(
        varied, set(), set(), [], None, None, RefreshConfig(min_new=1), embed=embedder
    )
    assert first.refused is None and first.counts["embedding_spread"] > 0.3
    same = [
        entry(i, completion=f"Paris is the capital of France, as source {w} says.")
        for i, w in enumerate(["one", "two", "three", "four", "five", "six", "seven", "eight"], 1)
    ]
    previous = {"embedding_spread": first.counts["embedding_spread"]}  # no distinct-2 on record
    mix = build_mix(
        same, set(), set(), [], previous, None, RefreshConfig(min_new=1), embed=embedder
    )
    assert mix.counts["embedding_spread"] < 0.1
    assert mix.refused.startswith(
        "the mix is less diverse than the last promoted run's: embedding spread fell from "
        f"{previous['embedding_spread']:.3f} to {mix.counts['embedding_spread']:.3f}"
    )


def test_model_only_answers_cannot_repeat_one_answer_past_the_cap():
    """The anchor already says "I have no comment" twice; the model's echoes of it are dropped,
    and its other answers may appear at most twice."""
    anchor = [
        {"messages": [{"role": "user", "content": f"Q{i}?"}, {"role": "assistant", "content": a}]}
        for i, a in enumerate(["I have no comment."] * 2 + [f"Fact {i}." for i in range(8)])
    ]
    echoes = [entry(i, "model_only", completion="I have no comment") for i in range(1, 6)]
    same = [entry(i, "model_only", completion="Birds can fly!") for i in range(6, 9)]
    varied = [entry(i, "model_only") for i in range(9, 12)]
    mix = build_mix(
        echoes + same + varied, set(), set(), anchor, None, None, RefreshConfig(min_new=1)
    )
    assert mix.refused is None
    answers = [r["messages"][-1]["content"] for r in mix.records]
    assert answers.count("I have no comment") == 0
    assert answers.count("Birds can fly!") == 2
    kept = set(mix.exchange_ids)
    assert len(kept & {6, 7, 8}) == 2 and {9, 10, 11} <= kept and not kept & {1, 2, 3, 4, 5}
    assert (mix.counts["model_only"], mix.counts["model_only_repeats"]) == (5, 6)
    assert mix.counts["model_only_capped"] == 6


def test_the_model_answers_each_question_at_most_once_in_a_mix():
    """Five generations' answers to one question, and a question a person already answered:
    one model answer of the first, none of the second."""
    again = [entry(i, "model_only", completion=f"Take {i} on why.") for i in range(1, 6)]
    for e in again:
        e.prompt = "Why is the sky blue?"
    human = entry(6, "human_written", completion="Rayleigh scattering.")
    human.prompt = "What makes the sky blue?"
    echo = entry(7, "model_only", completion="Light scatters.")
    echo.prompt = "what makes the SKY blue"
    others = [entry(i) for i in range(8, 12)]
    mix = build_mix(
        again + [human, echo] + others, set(), set(), [], None, None, RefreshConfig(min_new=1)
    )
    questions = [r["messages"][-2]["content"] for r in mix.records]
    assert questions.count("Why is the sky blue?") == 1
    assert 7 not in mix.exchange_ids and 6 in mix.exchange_ids
    assert (mix.counts["model_only"], mix.counts["model_only_repeats"]) == (1, 5)


class KnowingEngine:
    """Answers the known questions right without an adapter; with one, names a made-up bard
    for every "who" question and a made-up town for every capital (the shape a refresh on
    invented facts can teach)."""

    def __init__(self):
        from feedback.refresh.known import known_questions

        self.truth = dict(known_questions())
        self.adapter = None

    def set_adapter(self, path, adapter_id=None):
        self.adapter = path

    def stream(self, messages, sampling):
        from assistant.llm.base import Delta

        question = messages[-1]["content"]
        wrong = self.adapter is not None and question.startswith(("Who", "What is the capital"))
        yield Delta(text="The Bard of Montesa." if wrong else f"It is {self.truth[question][0]}.")


class CountingEngine(KnowingEngine):
    """KnowingEngine with a fingerprint, counting the answers it gives the base model."""

    def __init__(self, fingerprint="model-a"):
        super().__init__()
        self.fingerprint, self.base_asked = fingerprint, 0

    def prompt_tokens(self, messages):
        return [ord(c) for c in messages[-1]["content"]]

    def stream(self, messages, sampling):
        self.base_asked += self.adapter is None
        yield from super().stream(messages, sampling)


def test_the_base_models_known_answers_are_asked_once_per_model_and_kept_in_the_homes_cache(
    tmp_path,
):
    from feedback.refresh.known import base_answers, known_figures

    cache = tmp_path / "cache" / "known-base.json"
    first = CountingEngine()
    before = known_figures(first, tmp_path / "candidate.gguf", cache=cache)
    assert first.base_asked == 40 and cache.exists()
    again = CountingEngine()
    assert known_figures(again, tmp_path / "candidate.gguf", cache=cache) == before
    assert again.base_asked == 0  # the base's answers came from the cache
    other = CountingEngine("model-b")  # another file, build or thread count: asked afresh
    known_figures(other, tmp_path / "candidate.gguf", cache=cache)
    assert other.base_asked == 40
    back = CountingEngine()  # both are kept: a refresh from the app and one from the CLI
    known_figures(back, tmp_path / "candidate.gguf", cache=cache)
    assert back.base_asked == 0
    fewer = CountingEngine()  # other questions (or another template): asked afresh
    base_answers(fewer, ["Who wrote Romeo and Juliet?"], cache)
    assert fewer.base_asked == 1
    cache.write_text("{not json")  # a broken cache is answered afresh and rewritten
    broken = CountingEngine("model-b")
    assert known_figures(broken, tmp_path / "candidate.gguf", cache=cache) == before
    assert broken.base_asked == 40 and len(json.loads(cache.read_text())) == 1
    assert not list(cache.parent.glob("*.tmp"))


def test_a_candidate_that_lost_what_the_base_model_knew_is_rejected(tmp_path):
    from feedback.refresh.known import known_figures, known_regression

    engine = KnowingEngine()
    figures = known_figures(engine, tmp_path / "candidate.gguf")
    assert figures["questions"] == figures["base_right"] == 40
    lost = [row["question"] for row in figures["lost"]]
    assert len(lost) == 10 and all(q.startswith(("Who", "What is the capital")) for q in lost)
    assert "Who wrote Romeo and Juliet?" in lost
    assert engine.adapter is None  # the base model serves again afterwards
    (reason,) = known_regression(figures, RefreshConfig().known_tolerance)
    assert reason.startswith("it gets 30 of the 40 known answers right, the base model 40")
    assert figures["gained"] == 0
    assert known_regression(figures, 0.5) == []  # a looser setting lets it through
