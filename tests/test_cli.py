"""`autodidact serve` / `python app.py` as a user starts them: settings printed, readable errors."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

from tests.conftest import ROOT, free_port


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


def test_serve_prints_its_settings_and_answers_on_the_chosen_port(home):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as page:
                    assert page.status == 200
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.5)
        else:
            raise AssertionError("the app did not start within 90 s")
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert f"  port               = {port}  [flag]" in out
    assert f"  home               = {home}  [env]" in out
    assert "Model: SmolLM2-135M-Instruct.Q4_1.gguf (4096 tokens of context)" in out
    assert (home / "autodidact.db").exists()
