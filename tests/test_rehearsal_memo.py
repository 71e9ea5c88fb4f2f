"""The rehearsal memo: what the base model wrote at a fixed seed (a neighbour question, its
answer, a general answer with no adapter served) is kept in the home's cache, so the next
refresh does not write it again, and keeping it changes no result.

Fake models for the rules (what is kept, what is not, a broken file); the embedded model for
the claim the memo rests on: the same inputs give the text it kept.
"""

from __future__ import annotations

import threading

from assistant.llm.base import Delta
from feedback.synthesis.memo import Memo
from feedback.synthesis.rules import SynthesisConfig
from feedback.synthesis.writer import sample
from store.pool import PoolStore
from tests.fakes import FakeModel
from tests.test_synthesis import chat, fake_judge, fake_writer, synthesizer, taught

__all__ = ["chat"]  # the fixture, shared with tests/test_synthesis.py

ASK = [{"role": "user", "content": "Who keeps the lighthouse at Alexandria?"}]
SEEDED = {"temperature": 0.7, "seed": 3, "max_tokens": 32}


class BaseModel(FakeModel):
    """A fake with what the memo keys on: a fingerprint, and no adapter set."""

    fingerprint = '["base.gguf", 1, 2]'


class Halted(BaseModel):
    """Ends its answer as the real engine does when the generation was stopped."""

    def stream(self, messages, sampling, cancel=None, json_schema=None):
        yield Delta(text="half")
        yield Delta(finish_reason="stopped", completion_tokens=1)


def written(memo: Memo, model, messages=ASK, sampling=SEEDED, cancel=None) -> str:
    return "".join(d.text for d in memo.over(model).stream(messages, sampling, cancel))


def test_a_seeded_base_model_text_is_written_once_and_read_back_by_the_next_refresh(home):
    path = home / "cache" / "rehearsal-memo.json"
    model = BaseModel()
    model.enqueue("The city kept it.", "Something else entirely.")
    first = Memo(path)
    assert written(first, model) == "The city kept it."
    first.save()
    assert path.exists() and (first.hits, first.kept) == (0, 1)

    later = Memo(path)  # the next refresh, another process
    (delta,) = later.over(model).stream(ASK, SEEDED)
    assert (delta.text, delta.finish_reason, delta.completion_tokens) == (
        "The city kept it.",
        "stop",
        4,
    )
    later = Memo(path)
    assert written(later, model) == "The city kept it."
    assert (later.hits, len(model.history)) == (1, 1)  # the model was not asked again
    # Another prompt, seed or model file is another text, asked of the model.
    assert written(later, model, sampling={**SEEDED, "seed": 4}) == "Something else entirely."
    other = BaseModel()
    other.fingerprint = '["other.gguf", 1, 2]'
    other.enqueue("A third answer.")
    assert written(later, other) == "A third answer."


def test_what_an_adapter_wrote_an_unseeded_sample_or_a_cut_off_answer_is_not_kept(home):
    memo = Memo(home / "memo.json")
    tuned = BaseModel()
    tuned.adapter_id = "refresh-2"  # the served adapter: its identity is not in the key
    tuned.enqueue("tuned", "tuned again")
    assert written(memo, tuned) == "tuned" and written(memo, tuned) == "tuned again"

    base = BaseModel()
    base.enqueue("one draw", "another draw")
    unseeded = {"temperature": 0.7}
    assert written(memo, base, sampling=unseeded) == "one draw"
    assert written(memo, base, sampling=unseeded) == "another draw"

    stopped = threading.Event()
    stopped.set()
    base.enqueue("cut off here", "the whole answer")
    assert written(memo, base, cancel=stopped) == ""
    assert written(memo, base) == "the whole answer"  # the cut-off one was not kept
    broken = BaseModel()
    broken.enqueue(("half an", RuntimeError("the model died")), "whole")
    other_seed = {**SEEDED, "seed": 9}
    try:
        written(memo, broken, sampling=other_seed)
    except RuntimeError:
        pass
    assert written(memo, broken, sampling=other_seed) == "whole"
    assert memo.hits == 0 and memo.kept == 2
    # The real engine ends a generation its reader or a shutdown stopped with "stopped".
    halted = Halted()
    assert written(memo, halted, sampling={**SEEDED, "seed": 10}) == "half"
    assert memo.key(halted, ASK, {**SEEDED, "seed": 10}) is not None and memo.kept == 2
    # A random seed (-1) is a random draw, however it is spelt.
    assert memo.key(base, ASK, {"temperature": 0.7, "seed": -1}) is None


def test_a_broken_or_unwritable_memo_file_costs_only_the_writing(home):
    home.mkdir(parents=True, exist_ok=True)
    path = home / "memo.json"
    path.write_text("{not json")
    model = BaseModel()
    model.enqueue("fresh", "never asked")
    memo = Memo(path)
    assert written(memo, model) == "fresh"
    memo.save()
    assert Memo(path).get(memo.key(model, ASK, SEEDED)).text == "fresh"

    blocked = home / "a-file"
    blocked.write_text("not a folder")
    stuck = Memo(blocked / "cache" / "memo.json")  # its folder cannot be made
    assert written(stuck, model) == "never asked"
    stuck.save()  # no error: the next refresh writes it again
    assert not (blocked / "cache").exists()


def test_the_oldest_texts_go_first_past_the_limit(home):
    memo = Memo(home / "memo.json", limit=2)
    model = BaseModel()
    model.enqueue("a", "b", "c", "a again")
    for seed in (1, 2, 3):
        written(memo, model, sampling={**SEEDED, "seed": seed})
    assert written(memo, model, sampling={**SEEDED, "seed": 3}) == "c"  # kept
    assert written(memo, model, sampling={**SEEDED, "seed": 1}) == "a again"  # dropped, asked


def test_a_second_refresh_writes_no_neighbour_again_for_a_parent_it_has_seen(chat, embedder, home):
    taught(chat)
    near = "Who keeps the lighthouse at Alexandria?"
    path = home / "cache" / "rehearsal-memo.json"
    parents = list(PoolStore(chat.store.engine).train_entries())

    writer = fake_writer(near, "The city of Alexandria kept it.")
    writer.fingerprint = BaseModel.fingerprint
    synth = synthesizer(chat, embedder, writer, fake_judge(), neighbours=1)
    synth.memo = Memo(path)
    questions, figures = synth.neighbours(parents)
    records, answered = synth.rehearse(questions, "You are a helpful assistant.", SEEDED)
    assert questions == [near] and figures["remembered"] == 0 and answered["kept"] == 1

    writer = fake_writer("A different question?", "A different answer.")
    writer.fingerprint = BaseModel.fingerprint
    again = synthesizer(chat, embedder, writer, fake_judge(), neighbours=1)
    again.memo = Memo(path)
    questions, figures = again.neighbours(parents)
    second, answered = again.rehearse(questions, "You are a helpful assistant.", SEEDED)
    assert questions == [near] and figures["remembered"] == 1
    assert second == records and answered["remembered"] == 1
    assert writer.history == []  # neither the question nor its answer was written again
    # The grade is not kept: the judge read the answer again (it reads documents that change).
    assert answered["kept"] == 1


def test_the_embedded_model_writes_again_the_text_the_memo_kept(embedded_path, home):
    """The memo's premise on the real model: the same fingerprint, prompt and seed give the
    same text, so a kept text is the text a refresh would have written. Two engines, so no
    prompt cache is shared."""
    from assistant.llm.llama import LlamaEngine

    config = SynthesisConfig()
    messages = [{"role": "user", "content": "Write one question about a famous lighthouse."}]
    memo = Memo(home / "memo.json")
    first = LlamaEngine(embedded_path, context_window=2048, threads=2)
    try:
        kept = sample(memo.over(first), messages, 2, config)
    finally:
        first.close()
    assert memo.kept == 2 and all(kept), "each base-model sample at a seed is kept"
    memo.save()

    second = LlamaEngine(embedded_path, context_window=2048, threads=2)
    try:
        assert second.fingerprint == first.fingerprint
        again = sample(second, messages, 2, config)  # written afresh, no memo
        later = Memo(home / "memo.json")
        assert sample(later.over(second), messages, 2, config) == kept and later.hits == 2
    finally:
        second.close()
    assert again == kept


def test_the_gates_base_model_sample_is_read_back_by_the_next_refresh(embedded_path, home):
    """The evaluation's sampled answers of the model without an adapter (its diversity figures)
    go through the same memo: the next refresh reads back what a fresh engine would sample."""
    from assistant.llm.llama import LlamaEngine
    from feedback.refresh.evaluation import base_figures, sampled_figures

    prompts = ["Name three primary colours.", "Write a haiku about the sea."]
    figures = []
    for memo in (Memo(home / "memo.json"), None):  # with the memo, then afresh without it
        engine = LlamaEngine(embedded_path, context_window=2048, threads=2)
        try:
            figures.append(sampled_figures(memo.over(engine) if memo else engine, prompts))
            if memo:
                memo.save()
                later = Memo(home / "memo.json")
                assert base_figures(later.over(engine), prompts) == figures[0][1]
                assert (memo.kept, later.hits, later.kept) == (2, 2, 0)
        finally:
            engine.close()
    assert figures[0] == figures[1] and all(figures[0][0])
