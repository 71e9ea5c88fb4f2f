"""Killing `autodidact refresh` (kill -9) at the start of each step: the database stays
consistent, the run is on record with the step it died in, and the active adapter is intact."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from assistant.chat import ChatService
from feedback.refresh.rules import STEPS
from store.adapters import AdapterRegistry
from tests.conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


@pytest.fixture(scope="session")
def base_cache(tmp_path_factory):
    """One dequantized base model for every killed process (the first one makes it)."""
    return tmp_path_factory.mktemp("base-cache")


def zero_adapter(path, embedded_path):
    """A valid GGUF adapter that changes nothing (B = 0), to stand for an earlier promotion."""
    from feedback.refresh.gguf_export import write_adapter

    state = {}
    for i in range(30):  # SmolLM2-135M: 30 layers, width 576, 9 heads, 3 kv heads
        key = f"base_model.model.model.layers.{i}.self_attn.q_proj"
        state[key + ".lora_A.weight"] = np.ones((1, 576), np.float32)
        state[key + ".lora_B.weight"] = np.zeros((576, 1), np.float32)
    write_adapter(state, path, "llama", 30, 9, 3, 1.0, embedded_path.name)


@pytest.mark.parametrize("step", STEPS)
def test_kill_at_each_step_leaves_everything_consistent(
    step, settings, store, fake_model, curator, embedded_path, base_cache
):
    chat = ChatService(store, fake_model, settings, curator)
    for i in range(12):
        fake_model.enqueue(f"Answer number {i}: it depends on {i} things.")
        *_, final = chat.send(None, f"Question number {i} about topic {i * 7}?")
        chat.rate(final.exchange_id, 1)
    registry = AdapterRegistry(settings.home_dir / "adapters")
    zero_adapter(registry.file("adapter-earlier"), embedded_path)
    registry.activate("adapter-earlier")
    before = hashlib.sha256(registry.file("adapter-earlier").read_bytes()).hexdigest()
    (settings.home_dir / "cache").mkdir()
    (settings.home_dir / "cache" / "base").symlink_to(base_cache)

    env = {
        **os.environ,
        "AUTODIDACT_HOME": str(settings.home_dir),
        "AUTODIDACT_REFRESH_MIN_NEW": "1",
        "AUTODIDACT_REFRESH_MAX_STEPS": "2",
        "AUTODIDACT_REFRESH_EVAL_PROMPTS": "1",
        # Open gates: the run must reach `promote` whatever two training steps made.
        "AUTODIDACT_REFRESH_WIN_RATE_FLOOR": "0",
        "AUTODIDACT_REFRESH_LOSS_TOLERANCE": "100",
        "AUTODIDACT_REFRESH_FLAG_TOLERANCE": "1",
        "AUTODIDACT_REFRESH_ANSWER_DIVERSITY_TOLERANCE": "1",
        "AUTODIDACT_THREADS": "2",
        # The kill comes as each step is on record, before its work: writing lessons and
        # rehearsal answers would only make every run slower (tests/test_synthesis.py has them).
        "AUTODIDACT_SYNTHESIS": "false",
        "AUTODIDACT_REFRESH_REHEARSAL": "0",
        "AUTODIDACT_REFRESH_BASE_LOSS_TOLERANCE": "100",
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.kill_refresh", step],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == -9, done.stdout[-1500:] + done.stderr[-1500:]

    db = settings.home_dir / "autodidact.db"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        [(status, at)] = conn.execute("SELECT status, step FROM refresh_runs").fetchall()
    assert (status, at) == ("running", step)
    assert registry.active().adapter_id == "adapter-earlier"
    assert hashlib.sha256(registry.file("adapter-earlier").read_bytes()).hexdigest() == before

    # The next look at the runs finds the dead one and says so.
    listed = subprocess.run(
        [sys.executable, "-m", "assistant.cli", "adapters"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert listed.returncode == 0, listed.stderr
    assert f"interrupted at step {step}" in listed.stdout
    assert "Active: adapter-earlier" in listed.stdout
