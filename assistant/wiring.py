"""Wiring: settings -> models, stores and the stages' services. Owns start-up, without Gradio.

Every entry point (the web app, each CLI command, the benchmarks, the tests) builds what it
needs here, so a setting means the same thing everywhere: `load_model` picks the chat model's
backend and `load_judge` the judge's, `stage configs` turn settings into the stages'
configuration dataclasses, and `create_services` assembles what `autodidact serve` runs before
any page exists (assistant/web/app.py adds the page on top).
"""

from __future__ import annotations

import logging
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from assistant.chat import ChatService
from assistant.llm.base import ChatModel, ModelError
from assistant.llm.weights import open_gguf, resolve_gguf
from assistant.settings import Settings
from feedback.grading.calibrate import Calibrator
from feedback.grading.calibration import CalibrationConfig
from feedback.grading.config import GraderConfig, ReferenceConfig
from feedback.grading.grader import Grader
from feedback.grading.references import ReferenceFinder
from feedback.grading.worker import GradingWorker
from feedback.knowledge.config import KnowledgeConfig
from feedback.knowledge.library import Library
from feedback.pool.config import CuratorConfig, RetrievalConfig
from feedback.pool.curator import Curator
from feedback.pool.rules import PoolRules
from feedback.refresh.config import RefreshConfig
from feedback.refresh.job import RefreshJobConfig, RefreshLauncher
from feedback.refresh.train import TrainConfig
from feedback.synthesis.config import SynthesisConfig
from store.adapters import AdapterRegistry
from store.calibrations import CalibrationStore
from store.conversations import ConversationStore
from store.db import open_database
from store.grading import GradingStore
from store.knowledge import KnowledgeStore
from store.pool import PoolStore

log = logging.getLogger(__name__)


def load_model(settings: Settings) -> ChatModel:
    """The chat model the settings ask for: an OpenAI-compatible server, or a local GGUF."""
    if settings.openai_base_url:
        from assistant.llm.openai_compat import OpenAIChatModel

        return OpenAIChatModel(
            base_url=settings.openai_base_url,
            model=settings.openai_model,
            api_key=settings.openai_api_key,
            context_window=settings.context_window,
        )
    return open_gguf(settings.model, settings.context_window, settings.threads)


def local_model(settings: Settings) -> tuple[Path, ChatModel]:
    """The local GGUF the refresh fine-tunes, and an engine on it; refuses a remote server."""
    if settings.openai_base_url:
        raise ValueError("a refresh fine-tunes a local GGUF model; unset --openai-base-url")
    path = resolve_gguf(settings.model)
    return path, open_gguf(path, settings.context_window, settings.threads)


def grader_config(settings: Settings) -> GraderConfig:
    return GraderConfig(
        weights=settings.grade_weights,
        threshold=settings.flag_threshold,
        consistency_samples=settings.consistency_samples,
        max_tokens=min(settings.max_tokens, GraderConfig.max_tokens),
        system_prompt=settings.system_prompt,
        max_attempts=settings.grading_max_attempts,
        judge_history_chars=settings.judge_history_chars,
    )


def calibration_config(settings: Settings) -> CalibrationConfig:
    return CalibrationConfig(
        min_ratings=settings.calibration_min_ratings,
        every=settings.calibration_every,
        margin=settings.calibration_margin,
    )


def build_calibrator(settings: Settings, engine) -> Calibrator:
    """The calibration runner over the settings' database: it refits to the thumbs against the
    settings' weights and threshold (feedback/grading/calibrate.py runs it)."""
    return Calibrator(
        CalibrationStore(engine),
        settings.grade_weights,
        settings.flag_threshold,
        calibration_config(settings),
    )


def grading_model(settings: Settings, model: ChatModel) -> ChatModel:
    """What the background grader runs on: with `grading_own_context`, a second llama.cpp
    context on the served GGUF (its own cache, on the chat engine's thread: the two take
    turns), so the chat's cached prompt survives a grade and its next first token comes
    sooner; else the chat's own model (and always for a model served from elsewhere)."""
    if not (settings.grading_own_context and hasattr(model, "sibling")):
        return model
    return model.sibling()


def base_judge(settings: Settings, model: ChatModel) -> ChatModel | None:
    """With `grading_judge_base` and no judge set, a context of the served GGUF that the
    AdapterWatcher never hands an adapter: an adapter that learnt a wrong name must not be
    the one that decides whether its answers hold up. None: `model` judges."""
    if settings.judge_model or settings.judge_openai_base_url or not settings.grading_judge_base:
        return None
    if not (getattr(model, "supports_adapters", False) and hasattr(model, "sibling")):
        return None
    return model.sibling()


def build_worker(settings: Settings, engine, model: ChatModel, curator: Curator, **hooks):
    """The grading worker as the app and the CLI run it: the settings' judge (or the base
    weights', `base_judge`), references (corrections, approvals, passages) and the adopted
    calibration."""
    return GradingWorker(
        build_grader(settings, model, base_judge(settings, model)),
        GradingStore(engine),
        references=build_references(settings, engine, curator),
        calibrations=CalibrationStore(engine),
        **hooks,
    )


def curator_config(settings: Settings) -> CuratorConfig:
    return CuratorConfig(
        rules=PoolRules(
            user_weight=settings.pool_user_weight,
            train_threshold=settings.pool_train_threshold,
            min_agreement=settings.pool_min_agreement,
        ),
        dedup_similarity=settings.pool_dedup_similarity,
        supersede_similarity=settings.pool_supersede_similarity,
        max_user_share=settings.pool_max_user_share,
        pii_region=settings.pii_region,
        retrieval=RetrievalConfig(
            enabled=settings.retrieval,
            examples=settings.retrieval_examples,
            max_tokens=settings.retrieval_max_tokens,
            min_similarity=settings.retrieval_min_similarity,
            taught_similarity=settings.retrieval_taught_similarity,
            min_keywords=settings.retrieval_min_keywords,
            agree_similarity=settings.retrieval_agree_similarity,
            agree_keywords=settings.retrieval_agree_keywords,
            taught_in=settings.retrieval_taught_in,
            share_approved=settings.retrieval_share_approved,
            restate=settings.retrieval_restate,
            restate_similarity=settings.retrieval_restate_similarity,
        ),
    )


def refresh_config(settings: Settings) -> RefreshConfig:
    """The refresh's rules and bounds, as the settings give them."""
    return RefreshConfig(
        min_new=settings.refresh_min_new,
        min_pairs=settings.refresh_min_pairs,
        human_share=settings.refresh_human_share,
        anchor_file=settings.refresh_anchor_file,
        diversity_tolerance=settings.refresh_diversity_tolerance,
        max_answer_repeats=settings.refresh_max_answer_repeats,
        model_answers_per_question=settings.refresh_model_answers_per_question,
        eval_prompts=settings.refresh_eval_prompts,
        loss_tolerance=settings.refresh_loss_tolerance,
        taught_tolerance=settings.refresh_taught_tolerance,
        gate_alpha=settings.refresh_gate_alpha,
        judge_early_stop=settings.refresh_judge_early_stop,
        answer_diversity_tolerance=settings.refresh_answer_diversity_tolerance,
        known_tolerance=settings.refresh_known_tolerance,
        lessons_per_parent=settings.refresh_lessons_per_parent,
        rehearsal=settings.refresh_rehearsal,
        base_loss_tolerance=settings.refresh_base_loss_tolerance,
        train=TrainConfig(
            max_steps=settings.refresh_max_steps,
            max_seconds=settings.refresh_max_seconds,
            max_memory_mb=settings.refresh_max_memory_mb,
            epochs=settings.refresh_epochs,
            learning_rate=settings.refresh_learning_rate,
            rank=settings.refresh_rank,
            kl_weight=settings.refresh_kl_weight,
            kl_spare_new=settings.refresh_kl_spare_new,
            dpo_steps=settings.refresh_dpo_steps,
        ),
    )


def load_judge(settings: Settings) -> ChatModel | None:
    """The judge the settings ask for: a model on an OpenAI-compatible server, another local
    GGUF, or None (the chat model grades itself)."""
    if settings.judge_openai_base_url:
        from assistant.llm.openai_compat import OpenAIChatModel

        return OpenAIChatModel(
            base_url=settings.judge_openai_base_url,
            model=settings.judge_openai_model,
            api_key=settings.judge_openai_api_key,
            context_window=settings.context_window,
        )
    if settings.judge_model:
        return open_gguf(settings.judge_model, settings.context_window, settings.threads)
    return None


def build_grader(
    settings: Settings, model: ChatModel, judge_model: ChatModel | None = None
) -> Grader:
    """The grader: log-probabilities from `model`, the one that answered (its own
    uncertainty), judged by `judge_model`, the settings' judge (`load_judge`), or `model`."""
    judge_model = judge_model or load_judge(settings)
    return Grader(judge_model or model, model, grader_config(settings))


def build_curator(settings: Settings, engine, embedder=None) -> Curator:
    """The training pool's curator: pool rows, the Chroma index and the offline embedder."""
    from assistant.llm.embedder import Embedder
    from store.vectors import VectorIndex

    index = VectorIndex.open(settings.home_dir / "chroma", settings.chroma_url)
    config = curator_config(settings)
    return Curator(PoolStore(engine), index, embedder or Embedder(threads=1), config)


def knowledge_config(settings: Settings) -> KnowledgeConfig:
    return KnowledgeConfig(
        enabled=settings.knowledge,
        passages=settings.knowledge_passages,
        min_similarity=settings.knowledge_min_similarity,
        max_tokens=settings.knowledge_max_tokens,
        chunk_chars=settings.knowledge_chunk_chars,
        chunk_overlap=settings.knowledge_chunk_overlap,
        max_file_mb=settings.knowledge_max_file_mb,
        isolated=settings.knowledge_isolated,
        parse_memory_mb=settings.knowledge_parse_memory_mb,
        parse_timeout_s=settings.knowledge_parse_timeout_s,
    )


def build_library(settings: Settings, engine, embedder=None, chroma=None) -> Library:
    """The knowledge documents: rows in the database, passages in their own Chroma collection
    (on `chroma`, a client already open, when given)."""
    from assistant.llm.embedder import Embedder
    from store.vectors import KnowledgeIndex

    index = (
        KnowledgeIndex(chroma)
        if chroma is not None
        else KnowledgeIndex.open(settings.home_dir / "chroma", settings.chroma_url)
    )
    embed = embedder or Embedder(threads=1)
    return Library(KnowledgeStore(engine), index, embed, knowledge_config(settings))


def build_references(settings: Settings, engine, curator: Curator) -> ReferenceFinder:
    """What answers are graded against: similar corrections and approvals in the pool, and
    the passages each answer was given."""
    config = ReferenceConfig(
        corrections=settings.reference_corrections,
        min_similarity=settings.reference_min_similarity,
        shared=settings.retrieval_share_approved,
    )
    owner = ConversationStore(engine).exchange_owner
    return ReferenceFinder(
        curator.pool, curator.index, KnowledgeStore(engine), curator.embed, config, owner
    )


def build_refresher(settings: Settings, progress=None, embedder=None):
    """One refresh on the local model the settings name; the settings' judge (else the base
    model) compares the candidate's answers with the current model's."""
    from assistant.llm.embedder import Embedder
    from feedback.refresh.pipeline import Refresher

    path, llama = local_model(settings)
    engine = open_database(settings.effective_database_url)
    judge = load_judge(settings)
    embedder = embedder or Embedder()
    return Refresher(
        engine,
        settings.home_dir,
        path,
        llama,
        judge,
        refresh_config(settings),
        system_prompt=settings.system_prompt,
        progress=progress,
        embedder=embedder,
        # The rehearsal's answers come from the served adapter; the judge stays on the base.
        synthesizer=build_synthesizer(
            settings, engine, llama, judge or base_judge(settings, llama), embedder
        )
        if settings.synthesis
        else None,
    )


def build_launcher(settings: Settings, engine) -> RefreshLauncher:
    """The app's refresh launcher (the Models tab's "Refresh now"): the child gets these
    settings, at the priority and thread cap they give."""
    config = RefreshJobConfig(nice=settings.refresh_nice, threads=settings.refresh_threads)
    return RefreshLauncher(settings, engine, config)


def synthesis_config(settings: Settings) -> SynthesisConfig:
    return SynthesisConfig(
        enabled=settings.synthesis,
        questions=settings.synthesis_questions,
        answers=settings.synthesis_answers,
        neighbours=settings.synthesis_neighbours,
        temperature=settings.synthesis_temperature,
        max_tokens=settings.synthesis_max_tokens,
        min_similarity=settings.synthesis_min_similarity,
        min_agreement=settings.synthesis_min_agreement,
        seed=settings.synthesis_seed,
    )


def build_synthesizer(settings: Settings, engine, model: ChatModel, judge, embedder):
    """The synthesis stage: `model` (the base weights, never an adapter: a damaged adapter
    must not write the next one's lessons) writes, the product's grader grades."""
    from feedback.synthesis.memo import Memo
    from feedback.synthesis.stage import Synthesizer
    from store.lessons import LessonStore

    return Synthesizer(
        PoolStore(engine),
        LessonStore(engine),
        model,
        build_grader(settings, model, judge),
        embedder,
        synthesis_config(settings),
        Memo(settings.home_dir / "cache" / "rehearsal-memo.json"),
    )


class AdapterWatcher:
    """Serves the adapter `adapters/active.json` names, swapping it in between generations.

    Checked before each answer (one stat call); a refresh promoting an adapter, or a rollback,
    takes effect at the next answer without a restart. A file llama.cpp refuses leaves the
    current adapter serving, with the error logged.
    """

    def __init__(self, model: ChatModel, home: Path, also: list[ChatModel] = ()):
        self.model = model
        # Models that must serve the same adapter (the grader's own context), set with it.
        self.also = [m for m in also if m is not model]
        self.registry = AdapterRegistry(home / "adapters")
        self.stamp = None
        self.error: str | None = None
        # Answers through /v1 start side by side: one swap at a time, and none starts its
        # generation before a swap it saw coming is done.
        self._lock = threading.Lock()

    def sync(self) -> None:
        if not self.model.supports_adapters:
            return  # an OpenAI-compatible server serves what it serves
        with self._lock:
            self._sync()

    def _sync(self) -> None:
        stamp = self.registry.stamp()
        if stamp == self.stamp:
            return
        self.stamp = stamp
        active = self.registry.active()
        want = active.adapter_id if active else None
        if all(m.adapter_id == want for m in [self.model, *self.also]):
            return
        try:
            for model in [self.model, *self.also]:
                model.set_adapter(active.path if active else None, adapter_id=want)
            self.error = None
        except (ModelError, OSError) as exc:
            self.error = str(exc)
            self.stamp = None  # try again before the next answer
            log.error("keeping adapter %s: %s", self.model.adapter_id, exc)


@dataclass
class Services:
    """Everything `autodidact serve` runs, wired together; the page is built over it."""

    settings: Settings
    store: ConversationStore
    model: ChatModel
    chat: ChatService
    grading: GradingStore
    worker: GradingWorker
    curator: Curator
    watcher: AdapterWatcher
    library: Library
    owns_model: bool = True  # False: the caller passed the model in and closes it

    def close(self) -> None:
        self.worker.stop()
        grader = self.worker.grader
        for built in {id(m): m for m in (grader.judge_model, grader.answer_model)}.values():
            if built is not self.model:  # built here (the judge, the grader's own context)
                built.close()
        if self.owns_model:
            self.model.close()


def chat_service(settings: Settings, engine, model: ChatModel | None, embedder=None):
    """The chat service over the settings' database; `model` None for commands that only
    rate, correct or delete (they need no model)."""
    curator = build_curator(settings, engine, embedder)
    library = build_library(settings, engine, curator.embed, curator.index.chroma)
    return ChatService(ConversationStore(engine), model, settings, curator, library)


def private_home(settings: Settings) -> Path:
    """The home folder, created private to its owner (mode 700): every conversation is in it.
    One that other users could read or enter is made private, with a warning saying so."""
    home = settings.home_dir
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = stat.S_IMODE(home.stat().st_mode)
    if mode & 0o077:
        home.chmod(0o700)
        log.warning(
            "%s was open to other users (mode %03o); made it private to its owner (700)", home, mode
        )
    return home


def create_services(settings: Settings, model: ChatModel | None = None, embedder=None) -> Services:
    """Database, model, chat service, curator and background grader, started as configured."""
    private_home(settings)
    engine = open_database(settings.effective_database_url)
    store = ConversationStore(engine)
    store.recover_interrupted()
    owns_model = model is None
    model = model or load_model(settings)
    curator = build_curator(settings, engine, embedder)
    library = build_library(settings, engine, curator.embed, curator.index.chroma)
    try:
        library.repair()  # vectors a crash left without rows
    except Exception:
        log.exception("could not check the knowledge index")
    chat = ChatService(store, model, settings, curator, library)
    grader_model = grading_model(settings, model)
    watcher = AdapterWatcher(model, settings.home_dir, also=[grader_model])
    watcher.sync()
    chat.before_generation.append(watcher.sync)
    worker = build_worker(
        settings,
        engine,
        grader_model,
        curator,
        chat_idle=chat.idle,
        on_graded=chat.curate,
        quiet_for=chat.quiet_for,
    )
    grading = worker.grading
    calibrator = build_calibrator(settings, engine)
    chat.on_rated.append(calibrator.maybe)
    chat.on_generation_start.append(worker.preempt)
    chat.on_answer_stored.append(lambda _exchange_id: worker.wake())
    if settings.grading:
        worker.start()
    # The memory's word index and word lists, built before the first question rather than by it.
    threading.Thread(target=curator.warm, daemon=True, name="memory-warm").start()
    return Services(
        settings, store, model, chat, grading, worker, curator, watcher, library, owns_model
    )
