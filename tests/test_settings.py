"""Settings come from AUTODIDACT_* env vars, CLI flags override them, and start-up prints them."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
from pydantic import ValidationError

from assistant.settings import SETTING_GROUPS, Settings, add_flags, from_args, setting_names
from tests.conftest import ROOT


def parse(argv):
    parser = argparse.ArgumentParser()
    add_flags(parser)
    return parser.parse_args(argv)


def test_flags_override_env_and_env_overrides_defaults(monkeypatch):
    monkeypatch.setenv("AUTODIDACT_PORT", "9000")
    monkeypatch.setenv("AUTODIDACT_TEMPERATURE", "0.2")
    settings, flags = from_args(parse(["--port", "9100"]))
    assert (settings.port, settings.temperature, settings.host) == (9100, 0.2, "127.0.0.1")
    assert flags == {"port"}


def test_state_lives_under_the_home_setting(home):
    settings = Settings()
    assert settings.home_dir == home
    assert settings.effective_database_url == f"sqlite:///{home / 'autodidact.db'}"


def test_describe_names_each_value_and_its_source(monkeypatch):
    monkeypatch.setenv("AUTODIDACT_MAX_TOKENS", "99")
    text = Settings(port=1234).describe({"port"})
    assert "port               = 1234  [flag]" in text
    assert "max_tokens         = 99  [env]" in text
    assert "model              = (embedded SmolLM2-135M-Instruct)  [default]" in text


def test_grade_weights_come_from_a_flag_as_json(monkeypatch):
    settings, given = from_args(parse(["--grade-weights", '{"judge": 2.0, "grounding": 1.0}']))
    assert settings.grade_weights == {"judge": 2.0, "grounding": 1.0}
    assert given == {"grade_weights"}


def test_the_stages_defaults_are_the_settings_defaults():
    """Written once, in the stage's configuration dataclass; the setting reads it."""
    from feedback.pool.rules import PoolRules
    from feedback.refresh.train import TrainConfig

    fields = Settings.model_fields
    assert fields["pool_user_weight"].default == PoolRules().user_weight
    assert fields["refresh_max_steps"].default == TrainConfig().max_steps
    assert fields["refresh_max_steps"].description == "most training steps per refresh"


def test_every_synthesis_setting_reaches_the_stage():
    """A field added to SynthesisConfig and forgotten by Settings or the wiring is refused."""
    from dataclasses import fields

    from assistant.wiring import synthesis_config
    from feedback.synthesis.config import SynthesisConfig

    names = {f.name: "synthesis" if f.name == "enabled" else f"synthesis_{f.name}"
             for f in fields(SynthesisConfig)}  # fmt: skip
    changed = {}
    for field in names:
        default = getattr(SynthesisConfig(), field)
        changed[field] = not default if isinstance(default, bool) else default + 1
        changed[field] = changed[field] / 4 if isinstance(default, float) else changed[field]
    config = synthesis_config(Settings(**{names[f]: v for f, v in changed.items()}))
    assert {f: getattr(config, f) for f in names} == changed


def test_every_setting_is_in_one_group_and_a_misspelt_one_is_refused():
    counts = {name: 0 for name in Settings.model_fields}
    for group in SETTING_GROUPS:
        for name in setting_names((group,)):
            counts[name] += 1
    assert {name: n for name, n in counts.items() if n != 1} == {}
    assert setting_names(None) == list(Settings.model_fields)
    with pytest.raises(ValueError, match="no setting is named refresh_max_stepz"):
        setting_names(("home", "refresh_max_stepz"))


def test_reading_the_settings_loads_no_heavy_library():
    """The stages' defaults come from their light config modules: no LangChain, vector store,
    model runtime or web framework is imported to read one (a fresh interpreter, so nothing
    another test loaded counts)."""
    heavy = ("langchain", "langchain_core", "chromadb", "torch", "transformers", "gradio")
    heavy += ("llama_cpp", "onnxruntime", "numpy", "sqlalchemy")
    probe = (
        "import sys, assistant.settings\n"
        "assistant.settings.Settings()\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[1:])))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *heavy], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_one_judge_at_a_time_and_the_judges_key_is_never_printed():
    with pytest.raises(ValidationError, match="not both"):
        from_args(parse(["--judge-model", "j.gguf", "--judge-openai-base-url", "http://x/v1"]))
    text = Settings(judge_openai_base_url="http://x/v1", judge_openai_api_key="secret").describe()
    assert "judge_openai_api_key = ***" in text and "secret" not in text
    assert "(judge)            = default at http://x/v1" in text
    assert "(judge)            = the chat model grades itself" in Settings().describe()
