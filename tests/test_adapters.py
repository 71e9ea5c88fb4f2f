"""Which adapter is served: the atomic pointer, rollback and listing from the CLI, the Models
tab's rows, and the app swapping adapters between answers (real model, real GGUF adapters)."""

from __future__ import annotations

import pytest

from assistant.cli import main
from assistant.web.models_tab import row, trends
from store.runs import RunStore


def test_rollback_serves_the_adapter_before_then_the_base_model(promoted, capsys):
    assert main(["rollback"]) == 0
    assert promoted.active().adapter_id == "adapter-a"
    assert main(["rollback"]) == 0
    assert promoted.active() is None
    assert capsys.readouterr().out.splitlines()[-1] == (
        "Serving the base model (no adapter) from the next answer on."
    )
    assert main(["rollback", "adapter-b"]) == 0
    assert promoted.active().adapter_id == "adapter-b"
    assert main(["rollback", "adapter-zzz"]) == 1
    assert "no adapter 'adapter-zzz'" in capsys.readouterr().err


def test_adapters_lists_runs_with_their_metrics(promoted, capsys):
    assert main(["adapters"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "Active: adapter-b"
    assert "* Refresh 2 (adapter-b): promoted at step select." in out
    assert "export check: 99.0% next-token agreement" in out


def test_models_tab_rows_and_trends(promoted, store):
    runs = RunStore(store.engine).runs()
    assert row(runs[1], "adapter-b")[:4] == [2, "adapter-b (active)", "promoted", "select"]
    assert row(runs[1], "adapter-b")[7] == "1.0 / 2.1"
    assert row(runs[1], "adapter-b")[8] == "1.0 / 1.0"  # taught loss
    assert row(runs[1], "adapter-b")[9] == "0 / 0 / 64 (p 1.0)"  # the judge's verdicts
    assert row(runs[1], "adapter-b")[11] == "0.6 / 0.6 / 0.7"
    t = trends(runs)
    assert t[t.metric == "heldout_loss"]["value"].tolist() == [2.0, 1.0]


def test_the_app_swaps_adapters_between_answers(promoted, settings, engine, embedder):
    from assistant.web.app import create_app

    app = create_app(settings, model=engine, embedder=embedder)
    try:
        *_, first = app.chat.send(None, "Hello")
        assert app.store.exchange(first.exchange_id).adapter_id == "adapter-b"
        promoted.activate(None)
        *_, second = app.chat.send(None, "Hello again")
        assert app.store.exchange(second.exchange_id).adapter_id is None
        assert engine.adapter_id is None
    finally:
        app.close()
        engine.set_adapter(None)


def test_a_broken_adapter_file_keeps_the_current_one_serving(promoted, settings, engine, embedder):
    from assistant.web.app import create_app

    app = create_app(settings, model=engine, embedder=embedder)
    try:
        promoted.file("adapter-a").write_bytes(b"GGUF but not really")
        promoted.activate("adapter-a")
        *_, reply = app.chat.send(None, "Hello")
        assert reply.status == "completed"
        assert app.store.exchange(reply.exchange_id).adapter_id == "adapter-b"
    finally:
        app.close()
        engine.set_adapter(None)


def test_the_grader_has_its_own_context_serving_the_same_adapter_and_judges_on_the_base(
    promoted, settings, engine, embedder
):
    from assistant.wiring import create_services

    settings.grading = False
    services = create_services(settings, model=engine, embedder=embedder)
    grader = services.worker.grader.answer_model
    judge = services.worker.grader.judge_model
    try:
        assert grader is not engine and grader.path == engine.path  # the chat's cache is its own
        assert judge not in (grader, engine) and judge.path == engine.path
        assert engine.adapter_id == grader.adapter_id == "adapter-b"
        promoted.activate("adapter-a")  # a rollback or promotion reaches both at the next answer
        services.watcher.sync()
        assert engine.adapter_id == grader.adapter_id == "adapter-a"
        assert judge.adapter_id is None  # no adapter judges its own answers
    finally:
        services.close()
        engine.set_adapter(None)
    for closed in (grader, judge):  # closed with the services; the chat model is not
        with pytest.raises(InterruptedError):
            list(closed.stream([{"role": "user", "content": "hi"}], {"max_tokens": 2}))
    settings.grading_own_context, settings.grading_judge_base = False, False
    services = create_services(settings, model=engine, embedder=embedder)
    try:
        assert services.worker.grader.answer_model is engine
        assert services.worker.grader.judge_model is engine
    finally:
        services.close()


def test_a_refresh_grades_its_rehearsal_with_a_judge_on_the_base_weights(
    promoted, settings, embedder
):
    """The served adapter answers the rehearsal prompts; it must not also be their judge."""
    from assistant.wiring import build_refresher

    synth = build_refresher(settings, embedder=embedder).synthesizer
    judge = synth.grader.judge_model
    try:
        assert synth.grader.answer_model is synth.model and judge.path == synth.model.path
        active = promoted.active()
        synth.model.set_adapter(active.path, active.adapter_id)  # as the refresh rehearses
        assert synth.model.adapter_id == "adapter-b" and judge.adapter_id is None
    finally:
        judge.close()
        synth.model.close()
