"""The OpenAI-compatible path against a real server: llama-cpp-python's own, on loopback."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import pytest

from assistant.chat import ChatService
from assistant.llm.base import ModelError
from assistant.llm.llama import LlamaEngine
from assistant.llm.openai_compat import OpenAIChatModel
from assistant.settings import add_flags, from_args
from assistant.web.app import create_app
from assistant.wiring import build_grader, create_services
from feedback.grading.worker import GradingWorker
from store.grading import GradingStore
from tests.conftest import free_port, wait_until_serving

QUESTION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of Japan?"},  # same on every CPU build
]


@pytest.fixture(scope="module")
def server(embedded_path, tmp_path_factory):
    port = free_port()
    # A file, not a pipe: llama.cpp logs a lot, and a full pipe would block the server.
    log = open(tmp_path_factory.mktemp("server") / "server.log", "w+")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(embedded_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
            "--n_threads",
            "2",
            "--model_alias",
            "smollm2",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(f"{url}/v1/models", proc)
    except AssertionError:
        proc.kill()
        log.seek(0)
        raise AssertionError(f"llama_cpp.server did not start: {log.read()[-2000:]}") from None
    yield f"{url}/v1"
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def test_streams_from_the_server(server):
    model = OpenAIChatModel(server, model="smollm2", context_window=2048)
    deltas = list(model.stream(QUESTION, {"temperature": 0.0, "max_tokens": 24, "seed": 1}))
    text = "".join(d.text for d in deltas)
    assert len([d for d in deltas if d.text]) > 3
    assert "Tokyo" in text
    assert deltas[-1].finish_reason in ("stop", "length")


def test_counts_tokens_with_the_servers_tokenizer(server, engine):
    model = OpenAIChatModel(server, model="smollm2")
    text = "The quick brown fox jumps over the lazy dog. " * 5
    assert model._count_text(text) == len(
        engine.llm.tokenize(text.encode(), add_bos=False, special=False)
    )


def test_the_app_chats_through_the_server_and_stores_the_exchange(server, settings):
    settings.openai_base_url = server
    settings.openai_model = "smollm2"
    app = create_app(settings)
    replies = list(app.chat.send(None, "What is the capital of France?"))
    final = replies[-1]
    assert final.status == "completed" and final.text
    [turn] = app.store.turns(final.conversation_id)
    assert turn.assistant == final.text
    assert app.store.exchange(final.exchange_id).model_id == f"smollm2@{server}"


def test_an_unreachable_server_fails_the_answer_with_a_clear_error(settings):
    settings.openai_base_url = f"http://127.0.0.1:{free_port()}/v1"
    app = create_app(settings)
    final = list(app.chat.send(None, "hello"))[-1]
    assert final.status == "failed"
    assert final.error == f"ModelError: cannot reach the model server at {settings.openai_base_url}"
    assert app.store.turns(final.conversation_id)[0].status == "failed"


def test_scoring_answers_needs_a_local_model(server):
    with pytest.raises(ModelError, match="need a local GGUF model"):
        OpenAIChatModel(server).token_logprobs(QUESTION, "Tokyo")


def test_a_remote_judge_grades_a_real_exchange_with_the_answering_models_logprobs(
    server, settings, store, engine
):
    settings.judge_openai_base_url = server
    settings.judge_openai_model = "smollm2"
    reply = list(ChatService(store, engine, settings).send(None, "What is the capital of France?"))
    exchange_id = reply[-1].exchange_id
    grader = build_grader(settings, engine)
    assert isinstance(grader.judge_model, OpenAIChatModel) and grader.answer_model is engine
    grading = GradingStore(store.engine)
    try:
        assert GradingWorker(grader, grading).run_once()
    finally:
        grader.judge_model.close()
    assert grading.job(exchange_id).status == "done"
    grade = grading.grade(exchange_id)
    assert grade.judge_model_id == f"smollm2@{server}"
    assert grade.judge_score is not None, grade.judge_reason
    assert 1 <= grade.judge_score <= 10
    assert grade.mean_logprob < 0  # scored by the local model that wrote the answer


def test_the_judge_flag_builds_a_remote_judge_while_the_chat_model_stays_local(
    server, home, embedder
):
    parser = argparse.ArgumentParser()
    add_flags(parser)
    argv = ["--judge-openai-base-url", server, "--judge-openai-model", "smollm2"]
    settings, flags = from_args(parser.parse_args([*argv, "--grading", "false"]))
    assert f"(judge)            = smollm2 at {server}" in settings.describe(flags)
    services = create_services(settings, embedder=embedder)
    judge = services.worker.grader.judge_model
    try:
        assert isinstance(services.model, LlamaEngine) and settings.openai_base_url is None
        answer = services.worker.grader.answer_model  # the served GGUF, its own context
        assert isinstance(answer, LlamaEngine) and answer.path == services.model.path
        assert isinstance(judge, OpenAIChatModel) and judge.model_id == f"smollm2@{server}"
    finally:
        services.close()
    assert judge.client.is_closed()


def test_a_judge_server_that_is_down_fails_the_job_readably_and_the_chat_goes_on(
    settings, engine, embedder
):
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    settings.judge_openai_base_url = url
    settings.grading = True
    settings.grading_max_attempts = 2
    app = create_app(settings, model=engine, embedder=embedder)
    try:
        first = list(app.chat.send(None, "What is the capital of France?"))[-1]
        deadline = time.time() + 120
        while (job := app.grading.job(first.exchange_id)).status != "failed":
            assert time.time() < deadline, app.grading.counts()
            time.sleep(0.2)
        assert job.attempts == 2
        assert job.last_error == f"ModelError: cannot reach the model server at {url}"
        assert app.grading.grade(first.exchange_id) is None
        second = list(app.chat.send(None, "Name a primary colour."))[-1]
        assert second.status == "completed"
        assert app.worker._thread.is_alive()
    finally:
        app.close()
