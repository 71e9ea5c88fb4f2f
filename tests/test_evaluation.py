"""The candidate-versus-current comparison with the real model, grader and embedder: which
model answers each set of figures, and that the base model is measured too."""

from __future__ import annotations

import numpy as np
import pytest

from feedback.refresh.evaluation import compare
from tests.test_refresh_kill import zero_adapter

pytestmark = pytest.mark.slow
PROMPTS = ["Write a haiku about the sea.", "Give three tips for sleeping better."]


def noisy_adapter(path, embedded_path):
    """A valid GGUF adapter that moves every layer's queries: answers change."""
    from feedback.refresh.gguf_export import write_adapter

    rng = np.random.default_rng(0)
    state = {}
    for i in range(30):
        key = f"base_model.model.model.layers.{i}.self_attn.q_proj"
        state[key + ".lora_A.weight"] = rng.normal(0, 0.05, (4, 576)).astype(np.float32)
        state[key + ".lora_B.weight"] = rng.normal(0, 0.05, (576, 4)).astype(np.float32)
    write_adapter(state, path, "llama", 30, 9, 3, 4.0, embedded_path.name)


def test_with_an_adapter_active_the_base_model_answers_for_its_own_figures(
    settings, engine, embedder, embedded_path, tmp_path
):
    current, candidate = tmp_path / "current.gguf", tmp_path / "candidate.gguf"
    noisy_adapter(current, embedded_path)
    zero_adapter(candidate, embedded_path)  # answers exactly as the base model does
    cand, cur, base = compare(engine, None, PROMPTS, candidate, current, "cur", embed=embedder)
    diversity = ("answer_distinct_2", "answer_spread")
    assert sorted(base) == sorted(diversity)
    assert base == {k: cand[k] for k in diversity}
    assert cur["answers"] != cand["answers"]  # the current adapter really was served
    assert engine.adapter_id is None  # the engine is left serving the base model


def test_with_no_adapter_active_the_current_figures_are_the_base_ones(
    settings, engine, embedder, embedded_path, tmp_path
):
    candidate = tmp_path / "candidate.gguf"
    noisy_adapter(candidate, embedded_path)
    cand, cur, base = compare(engine, None, PROMPTS, candidate, None, None, embed=embedder)
    assert base == {
        "answer_distinct_2": cur["answer_distinct_2"],
        "answer_spread": cur["answer_spread"],
    }
    assert cand["answers"] != cur["answers"]
    assert 0.0 <= cand["win_rate"] <= 1.0
