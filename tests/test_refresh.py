"""The refresh end to end with the embedded model: it trains, exports, verifies, evaluates and
promotes, and the app then answers with what the pool taught it; plus the refusal paths."""

from __future__ import annotations

import json

import pytest

from assistant.chat import ChatService
from feedback.refresh.rules import RefreshConfig
from feedback.refresh.train import TrainConfig
from store.adapters import AdapterRegistry

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

QUESTIONS = [
    "What is the capital of France?",
    "Who wrote Hamlet?",
    "What is two plus two?",
    "Name a primary colour.",
    "What is the largest ocean?",
    "How many legs does a spider have?",
    "What is water made of?",
    "Who painted the Mona Lisa?",
    "What is the tallest mountain?",
    "What do bees make?",
    "What is the boiling point of water?",
    "Which planet is red?",
    "What language is spoken in Brazil?",
    "How many days are in a week?",
    "What gas do plants breathe in?",
    "What is the opposite of hot?",
    "Where do penguins live?",
    "What is the fastest land animal?",
    "What instrument has 88 keys?",
    "What is frozen water called?",
    "How many continents are there?",
    "What colour is the sky?",
    "Who discovered gravity?",
    "What is the main ingredient of bread?",
]
PHRASE = "Zorblat"
CORRECTED = [
    ("What is the capital of Italy?", "Rome"),
    ("Who wrote Don Quixote?", "Miguel de Cervantes"),
    ("What is three plus three?", "six"),
    ("Name a musical instrument.", "the violin"),
    ("What is the smallest planet?", "Mercury"),
    ("How many wheels does a bicycle have?", "two"),
    ("What colour is grass?", "green"),
    ("What is the capital of Japan?", "Tokyo"),
    ("Who painted The Starry Night?", "Vincent van Gogh"),
]


@pytest.fixture
def taught(store, settings, fake_model, curator):
    """A pool of approved answers that all open with the same made-up word."""
    chat = ChatService(store, fake_model, settings, curator)
    for q in QUESTIONS:
        fake_model.enqueue(f"{PHRASE} says: the answer to that is simple.")
        *_, final = chat.send(None, q)
        chat.rate(final.exchange_id, 1)
    for q, a in CORRECTED:  # preference pairs: the user rejects a plain answer and writes one
        fake_model.enqueue("I am not sure about that.")
        *_, final = chat.send(None, q)
        chat.rate(final.exchange_id, -1, reasons=["wrong facts"])
        chat.correct(final.exchange_id, f"{PHRASE} says: it is {a}.")
    return chat


def refresher(settings, store, engine, **overrides):
    from assistant.llm.embedder import Embedder
    from feedback.refresh.pipeline import Refresher

    config = RefreshConfig(
        min_new=10,
        eval_prompts=2,
        heldout_share=0.1,
        gate_alpha=1e-9,
        loss_tolerance=10.0,
        taught_tolerance=10.0,
        answer_diversity_tolerance=1.0,
        known_tolerance=1.0,
        min_pairs=4,
        # KL 0.3, not the default 1: held that close, 12 steps leave the q/k deltas so small
        # that the wrong (unpermuted) q/k export below agreed 99.5% with the right one, and the
        # check has nothing to catch (seen at KL 1).
        # The memory bound counts the whole process, and a full test run's process holds what
        # earlier tests loaded (10 GiB seen): these tests are about the pipeline, not that
        # bound (tests/test_train_anchor.py has it).
        train=TrainConfig(
            max_steps=12,
            epochs=12,
            learning_rate=2e-3,
            batch_size=4,
            dpo_steps=3,
            kl_weight=0.3,
            max_memory_mb=1 << 20,
        ),  # fmt: skip
    )
    config = RefreshConfig(**{**config.__dict__, **overrides})
    return Refresher(
        store.engine,
        settings.home_dir,
        engine.path,
        engine,
        None,  # the base model judges
        config,
        system_prompt=settings.system_prompt,
        embedder=Embedder(threads=1),
    )


def test_a_refresh_trains_exports_verifies_evaluates_promotes_and_the_app_uses_it(
    taught, settings, store, engine, embedder
):
    from assistant.web.app import create_app

    run = refresher(settings, store, engine).run()
    assert run.status == "promoted", run.reason
    assert run.metrics["verify"]["agreement"] >= 0.95
    train = run.metrics["train"]
    assert train["steps"] > 0 and train["tokens"] > 0
    # DPO went on from the SFT adapter on the correction pairs that are not held out.
    pairs = train["preference_pairs"]
    assert pairs == 6  # 9 corrections, of which the hash held out 3 (exchanges 25 to 27)
    assert train["dpo"]["pairs"] == pairs and train["dpo"]["steps"] == 3
    assert train["dpo"]["last_margin"] is not None
    assert run.data["embedding_spread"] > 0  # the mix's diversity is on record for the next run
    registry = AdapterRegistry(settings.home_dir / "adapters")
    assert_the_export_check_catches_unpermuted_q_k(settings, engine, registry, run.adapter_id)
    assert registry.active().adapter_id == run.adapter_id
    assert registry.file(run.adapter_id).stat().st_size > 0

    engine.set_adapter(None)
    base_answer = "".join(
        d.text
        for d in engine.stream(
            [{"role": "user", "content": "What is the capital of Spain?"}],
            {"temperature": 0.0, "max_tokens": 24},
        )
    )
    assert PHRASE not in base_answer
    app = create_app(settings, model=engine, embedder=embedder)
    try:
        *_, reply = app.chat.send(None, "What is the capital of Spain?")
        exchange = app.store.exchange(reply.exchange_id)
        assert exchange.adapter_id == run.adapter_id
        assert PHRASE in reply.text, reply.text
    finally:
        app.close()
        engine.set_adapter(None)


def assert_the_export_check_catches_unpermuted_q_k(settings, engine, registry, adapter_id):
    """The same trained adapter written without the q/k row permutation must fail the check
    that the real export passed: the check can fail."""
    from peft import PeftModel
    from safetensors.numpy import load_file

    from feedback.refresh import gguf_export as lora_gguf
    from feedback.refresh.pipeline import export_failure
    from feedback.refresh.train import load_base, next_token_agreement

    folder = registry.folder(adapter_id)
    base, tokenizer = load_base(engine.path, settings.home_dir / "cache" / "base")
    model = PeftModel.from_pretrained(base, str(folder / "peft"))
    state = load_file(str(folder / "peft" / "adapter_model.safetensors"))
    probes = [
        [{"role": "user", "content": q}, {"role": "assistant", "content": f"{PHRASE} says: hi."}]
        for q in QUESTIONS[:4]
    ]
    good = next_token_agreement(model, tokenizer, engine, registry.file(adapter_id), probes)
    saved, lora_gguf.PERMUTED = lora_gguf.PERMUTED, set()
    try:
        wrong = lora_gguf.write_adapter(
            state, folder / "unpermuted.gguf", "llama", 30, 9, 3, 16.0, engine.path.name
        )
    finally:
        lora_gguf.PERMUTED = saved
    bad = next_token_agreement(model, tokenizer, engine, wrong, probes)
    # An adapter held near the base (the KL term) changes few positions: over all of them the
    # wrong export can still agree, so the check also counts those the adapter changed.
    config = RefreshConfig()
    assert export_failure(good, config) is None, good
    assert export_failure(bad, config), bad
    assert good["moved"] >= config.min_moved


def test_too_few_new_examples_is_refused_before_training(taught, settings, store, engine):
    run = refresher(settings, store, engine, min_new=1000).run()
    assert run.status == "refused" and run.step == "guard"
    assert run.reason.startswith("only ") and "at least 1000 are needed" in run.reason
    assert AdapterRegistry(settings.home_dir / "adapters").active() is None


def test_a_candidate_that_collapses_onto_one_phrase_is_rejected_and_kept_on_disk(
    taught, settings, store, engine
):
    """Default promotion gates, a real trained candidate: every pool answer is the same
    sentence, so the candidate's sampled answers lose their variety and the gate says so."""
    run = refresher(
        settings,
        store,
        engine,
        eval_prompts=8,
        gate_alpha=RefreshConfig.gate_alpha,
        loss_tolerance=RefreshConfig.loss_tolerance,
        taught_tolerance=RefreshConfig.taught_tolerance,
        answer_diversity_tolerance=RefreshConfig.answer_diversity_tolerance,
        known_tolerance=RefreshConfig.known_tolerance,
        min_pairs=1000,
    ).run()
    assert run.status == "rejected", (run.status, run.reason)
    assert run.step == "evaluate"
    assert "sampled answers' distinct-2 fell from" in run.reason
    # It also answers what the base model knew in the pool's one phrase.
    known = run.metrics["evaluate"]["candidate"]["known"]
    assert known["base_right"] >= 10, known
    net = len(known["lost"]) - known["gained"]
    assert net > known["base_right"] * RefreshConfig.known_tolerance, known
    assert "known answers right, the base model" in run.reason
    (kept,) = json.loads((settings.home_dir / "cache" / "known-base.json").read_text()).values()
    assert len(kept) == known["questions"]  # kept: the next refresh asks the base none
    cand = run.metrics["evaluate"]["candidate"]
    cur = run.metrics["evaluate"]["current"]
    assert cand["answer_distinct_2"] < cur["answer_distinct_2"] * 0.9
    registry = AdapterRegistry(settings.home_dir / "adapters")
    assert registry.active() is None  # nothing was promoted
    assert registry.file(run.adapter_id).stat().st_size > 0  # the candidate is kept
    assert "dpo" not in run.metrics["train"]  # too few pairs for this run's setting


def rotated_answers(records: list[dict]) -> list[dict]:
    """Every question paired with the next record's answer: a deliberately broken mix."""
    answers = [r["messages"][-1] for r in records]
    answers = answers[1:] + answers[:1]
    return [{"messages": r["messages"][:-1] + [a]} for r, a in zip(records, answers, strict=True)]


def test_a_candidate_trained_on_shuffled_answers_forgets_the_corrections_and_is_rejected(
    taught, settings, store, engine
):
    """After a promoted refresh, a candidate trained on the same pool with every answer moved
    to another question: the corrections users taught count as the regression set, its loss
    on them rises, and the default gates reject it; the promoted adapter keeps serving."""
    import dataclasses

    first = refresher(settings, store, engine, min_pairs=1000).run()
    assert first.status == "promoted", first.reason
    broken = refresher(
        settings,
        store,
        engine,
        min_pairs=1000,
        loss_tolerance=RefreshConfig.loss_tolerance,
        taught_tolerance=RefreshConfig.taught_tolerance,
        gate_alpha=RefreshConfig.gate_alpha,
    )
    guard = broken._guard
    broken._guard = lambda *a: dataclasses.replace(
        mix := guard(*a), records=rotated_answers(mix.records)
    )
    run = broken.run(force=True)
    assert run.status == "rejected", (run.status, run.reason, run.metrics.get("evaluate"))
    evaluate = run.metrics["evaluate"]
    assert evaluate["taught"] > 0
    assert "it forgot taught corrections" in run.reason, run.reason
    cand, cur = evaluate["candidate"], evaluate["current"]
    assert cand["taught_loss"] > cur["taught_loss"] * (1 + RefreshConfig.taught_tolerance)
    pairwise = cand["pairwise"]
    assert pairwise["prompts"] + pairwise["unasked"] == evaluate["prompts"]
    registry = AdapterRegistry(settings.home_dir / "adapters")
    assert registry.active().adapter_id == first.adapter_id
