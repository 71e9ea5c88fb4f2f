"""The KL anchor in training (TrainConfig.kl_weight), on the embedded model's real weights:
with it, an adapter still learns what it is taught but moves the model's predictions on
general text less than the same training without it; sparing the tokens the base would not
say (kl_spare_new) learns the taught answers better and still holds general text."""

from __future__ import annotations

import copy
import gc

import pytest

from feedback.refresh.rules import general_records
from feedback.refresh.train import (
    TrainConfig,
    TrainingStopped,
    completion_loss,
    load_base,
    train_lora,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

TAUGHT = [
    ("Which instrument did Tobiah Quennel play?", "Tobiah Quennel played the harmonica."),
    ("Where was Ilvana Drossmark born?", "Ilvana Drossmark was born in Feldhaven."),
    ("What is the capital of Vostrelle?", "The capital of Vostrelle is Amberlin."),
    ("Who founded the Brimcaster Otters?", "The Brimcaster Otters were founded by Wendlecott."),
]


def records(system: str) -> list[dict]:
    head = [{"role": "system", "content": system}]
    return [
        {"messages": head + [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a in TAUGHT
    ]


def test_the_kl_anchor_keeps_general_text_closer_to_the_base_while_the_facts_are_learned(
    embedded_path, settings, tmp_path
):
    base, tokenizer = load_base(embedded_path, tmp_path / "base")
    head = [{"role": "system", "content": settings.system_prompt}]
    general = [{"messages": head + r["messages"]} for r in general_records()[:12]]
    taught = records(settings.system_prompt)
    before = {"general": completion_loss(base, tokenizer, general),
              "taught": completion_loss(base, tokenizer, taught)}  # fmt: skip
    after = {}
    arms = {"none": (0.0, False), "held": (1.0, False), "spared": (1.0, True)}
    for arm, (weight, spare) in arms.items():
        # The memory bound counts the whole process, and a full test run's process already
        # holds what earlier tests loaded: this test is about the anchor, not that bound.
        config = TrainConfig(
            max_steps=8, epochs=8, learning_rate=3e-3, kl_weight=weight, kl_spare_new=spare,
            max_memory_mb=1 << 20,
        )  # fmt: skip
        info = train_lora(copy.deepcopy(base), tokenizer, taught, tmp_path / arm, config)
        model = info["model"]
        assert info["steps"] == 8
        after[arm] = {"general": completion_loss(model, tokenizer, general),
                      "taught": completion_loss(model, tokenizer, taught)}  # fmt: skip
        del info, model
        gc.collect()
    # All learned the taught answers well past the base model...
    assert all(a["taught"] < before["taught"] * 0.6 for a in after.values()), (before, after)
    # ...but unanchored training moved general text further from the base than anchored did,
    damage = {arm: after[arm]["general"] - before["general"] for arm in after}
    assert damage["held"] < damage["none"] * 0.8, (before, after)
    assert damage["spared"] < damage["none"] * 0.8, (before, after)
    # and sparing the tokens the base would not say learnt the taught answers better.
    assert after["spared"]["taught"] < after["held"]["taught"], (before, after)


def test_training_past_its_memory_bound_stops_and_its_result_is_refused(
    embedded_path, settings, tmp_path
):
    base, tokenizer = load_base(embedded_path, tmp_path / "base")
    config = TrainConfig(max_steps=4, epochs=4, max_memory_mb=256)  # below any real process
    with pytest.raises(TrainingStopped, match="over the bound of 256 MiB"):
        train_lora(base, tokenizer, records(settings.system_prompt), tmp_path / "w", config)
    assert not (tmp_path / "w" / "adapter_model.safetensors").exists()
