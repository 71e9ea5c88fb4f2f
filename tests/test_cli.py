"""`autodidact serve` / `python app.py` as a user starts them: settings printed, readable errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tests.conftest import ROOT, free_port, wait_until_serving


def run_cli(*args, env=None, timeout=60):
    return subprocess.run(
        [sys.executable, str(ROOT / "app.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_a_missing_model_stops_start_up_with_one_line_naming_the_file(tmp_path):
    done = run_cli("--model", str(tmp_path / "missing.gguf"), "--port", str(free_port()))
    assert done.returncode == 1
    assert done.stderr == f"autodidact: model file not found: {tmp_path / 'missing.gguf'}\n"
    assert "Traceback" not in done.stdout + done.stderr


def test_a_file_that_is_not_gguf_is_named_in_one_line(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model")
    done = run_cli("--model", str(notes))
    assert done.returncode == 1
    assert done.stderr == f"autodidact: not a GGUF model file: {notes}\n"


def test_the_model_can_come_from_the_environment(tmp_path):
    done = run_cli(env={"AUTODIDACT_MODEL": str(tmp_path / "env.gguf")})
    assert done.stderr == f"autodidact: model file not found: {tmp_path / 'env.gguf'}\n"
    assert "model              = " + str(tmp_path / "env.gguf") + "  [env]" in done.stdout


def test_invalid_settings_are_reported_without_a_traceback():
    done = run_cli("--port", "not-a-port")
    assert done.returncode == 2
    assert done.stderr.startswith("autodidact: invalid settings:") and "port" in done.stderr
    assert "Traceback" not in done.stderr


def start_serve(port: int) -> subprocess.Popen:
    """`python app.py --port PORT`, its output and errors in one text pipe."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # A shell without job control starts background jobs with Ctrl-C ignored, and children
        # inherit that: the server gets Ctrl-C as a person's terminal would send it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def test_serve_prints_its_settings_and_answers_on_the_chosen_port(home):
    port = free_port()
    proc = start_serve(port)
    try:
        assert wait_until_serving(f"http://127.0.0.1:{port}/", proc) == 200
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert f"  port               = {port}  [flag]" in out
    assert f"  home               = {home}  [env]" in out
    assert "Model: SmolLM2-135M-Instruct.Q4_1.gguf (4096 tokens of context)" in out
    assert (home / "autodidact.db").exists()


def test_killing_the_app_mid_answer_keeps_the_message_and_marks_the_answer_interrupted(home):
    import signal

    from gradio_client import Client
    from sqlalchemy import text

    from store.conversations import ConversationStore
    from store.db import open_database

    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "app.py"),
            "--port",
            str(port),
            "--max-tokens",
            "2000",
            "--temperature",
            "1.0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/", proc)
        Client(f"http://127.0.0.1:{port}/", verbose=False).submit(
            "Write a very long story about a dragon.", "", api_name="/chat"
        )
        url = f"sqlite:///{home / 'autodidact.db'}"
        store = ConversationStore(open_database(url))
        deadline = time.time() + 60
        while not ((t := store.turns(1)) and t[0].status == "generating"):
            assert time.time() < deadline
            time.sleep(0.05)
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    store = ConversationStore(open_database(url))
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
    assert store.recover_interrupted() == 1  # what the next start-up does
    [turn] = store.turns(1)
    assert turn.user == "Write a very long story about a dragon."
    assert turn.status == "failed"
    assert (
        store.exchange(turn.exchange_id).error == "interrupted: the app stopped during generation"
    )


def test_a_commands_own_errors_are_one_line_and_a_bug_keeps_its_traceback(monkeypatch, capsys):
    import pytest

    import assistant.cli as cli
    from assistant.cli.command import Command

    def refused(args, settings):
        raise ValueError("no such adapter 'x'")

    def buggy(args, settings):
        raise KeyError("score")

    monkeypatch.setattr(
        cli,
        "COMMANDS",
        [Command("refused", "", refused, errors=(ValueError,)), Command("buggy", "", buggy)],
    )
    assert cli.main(["refused"]) == 1
    assert capsys.readouterr().err == "autodidact: no such adapter 'x'\n"
    with pytest.raises(KeyError):
        cli.main(["buggy"])


def test_ctrl_c_stops_serve_cleanly(home):
    """Ctrl-C ends `serve` with exit 0 and no traceback: the grader and the engine's thread are
    stopped, not left to finish or to fail jobs while the interpreter exits."""
    import signal
    import threading

    port = free_port()
    proc = start_serve(port)
    lines: list[str] = []
    # Drained from the start: a child blocked on a full pipe could not act on the Ctrl-C.
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        assert wait_until_serving(f"http://127.0.0.1:{port}/", proc) == 200
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)  # faulthandler: every thread's stack, for the report
            time.sleep(2)
            raise AssertionError(
                "serve did not stop within 90 s:\n" + "".join(lines)[-6000:]
            ) from None
    finally:
        proc.kill()
        reader.join(5)
    out = "".join(lines)
    assert proc.returncode == 0, out[-2000:]
    assert "Traceback" not in out


def test_a_command_takes_the_flags_of_the_settings_it_uses_and_every_variable(
    monkeypatch, capsys, tmp_path
):
    import pytest

    import assistant.cli as cli
    from assistant.cli.command import Command

    seen = {}

    def show(args, settings):
        seen.update(home=settings.home_dir, port=settings.port)
        return 0

    monkeypatch.setattr(cli, "COMMANDS", [Command("show", "", show, uses=("storage",))])
    monkeypatch.setenv("AUTODIDACT_PORT", "9123")  # not its flag, still its setting
    assert cli.main(["show", "--home", str(tmp_path)]) == 0
    assert seen == {"home": tmp_path, "port": 9123}
    with pytest.raises(SystemExit) as refused:
        cli.main(["show", "--port", "1"])
    assert refused.value.code == 2
    assert "unrecognized arguments: --port 1" in capsys.readouterr().err


def test_each_command_offers_only_its_settings_flags():
    from assistant.cli import build_parser

    helps = {
        name: parser.format_help()
        for action in build_parser()._subparsers._group_actions
        for name, parser in action.choices.items()
    }
    assert "--port" in helps["serve"] and "--refresh-max-steps" in helps["serve"]
    assert "--refresh-max-steps" in helps["refresh"] and "--port" not in helps["refresh"]
    assert "--synthesis-questions" in helps["pool"] and "--max-tokens" in helps["pool"]
    assert "--home" in helps["adapters"] and "--model" not in helps["adapters"]
