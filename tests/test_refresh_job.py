"""A refresh started from the app (feedback/refresh/job.py): the child gets the app's settings,
a lower priority and a thread cap, its progress reads back, one runs at a time, and a cancel
stops its whole process group and leaves everything as it was.

The launcher's own behaviour is tested with a stand-in child (a few lines of Python, below) so
those tests take a second; one test starts a real `autodidact refresh` on a small home and
cancels it mid-training."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from assistant.settings import Settings
from feedback.refresh.job import (
    THREAD_VARIABLES,
    JobState,
    ProgressFile,
    RefreshJobConfig,
    RefreshLauncher,
    child_env,
    read_progress,
)
from feedback.refresh.pipeline import refresh_lock
from store.adapters import AdapterRegistry
from store.runs import RunStore
from tests.test_refresh_kill import base_cache, zero_adapter  # noqa: F401 (a fixture)

# The stand-in for `autodidact refresh`: what it does is its first argument; the launcher
# appends --progress-file PATH (and --force) as it does to the real command.
STAND_IN = """
import json, os, signal, subprocess, sys, time
from pathlib import Path
from feedback.refresh.job import ProgressFile

mode, args = sys.argv[1], sys.argv[2:]
home = Path(os.environ["AUTODIDACT_HOME"])
progress = ProgressFile(args[args.index("--progress-file") + 1])
if mode == "report":
    report = {"nice": os.nice(0), "pid": os.getpid(), "pgid": os.getpgid(0), "sid": os.getsid(0),
              "env": dict(os.environ), "args": args}
    (home / "report.json").write_text(json.dumps(report))
elif mode == "steps":
    for step in ("select", "guard"):
        progress(step, 0.0, step + "...")
    progress("train", 0.5, "step 1/2, loss 2.0")
    while not (home / "go").exists():
        time.sleep(0.05)
elif mode == "stubborn":  # ignores SIGTERM, and has a child of its own in its group
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    (home / "grandchild").write_text(str(child.pid))
    progress("train", 0.1, "step 1/10")
    time.sleep(120)
elif mode == "busy":
    print("autodidact: a refresh is already running (pid 4242)", file=sys.stderr)
    sys.exit(1)
"""


@pytest.fixture
def stand_in(tmp_path) -> Path:
    path = tmp_path / "stand_in.py"
    path.write_text(STAND_IN)
    return path


@pytest.fixture
def launch(settings, store, stand_in):
    """A launcher whose child is the stand-in in the given mode; every child is stopped after."""
    made = []

    def make(mode: str, **config) -> RefreshLauncher:
        command = [sys.executable, str(stand_in), mode]
        launcher = RefreshLauncher(settings, store.engine, RefreshJobConfig(**config), command)
        made.append(launcher)
        return launcher

    yield make
    for launcher in made:
        launcher.grace_s = 0.5
        launcher.stop()


def wait_for(predicate, timeout: float = 30.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting")


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie nobody reaped yet does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_the_child_reads_the_apps_settings_even_those_given_as_flags(settings, monkeypatch):
    settings.max_tokens = 33  # as if from `serve --max-tokens 33`, against the environment
    settings.grade_weights = {"judge": 2.0, "consistency": 1.0}
    settings.allowed_hosts = ["chat.example.org"]
    settings.refresh_max_steps = 7
    monkeypatch.setenv("AUTODIDACT_MAX_TOKENS", "99")
    monkeypatch.setenv("AUTODIDACT_JUDGE_MODEL", "/elsewhere/judge.gguf")  # unset in the app
    env = child_env(settings, RefreshJobConfig(threads=3))
    for key in [k for k in os.environ if k.startswith("AUTODIDACT_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("AUTODIDACT_"):
            monkeypatch.setenv(key, value)
    assert Settings().model_dump() == {**settings.model_dump(), "threads": 3}
    assert all(env[name] == "3" for name in THREAD_VARIABLES)


def test_the_child_runs_niced_capped_in_its_own_process_group(launch, settings):
    launcher = launch("report", nice=7, threads=1)
    launcher.start("rita", force=True)
    wait_for(lambda: launcher.state().returncode is not None)
    report = read_progress(settings.home_dir / "report.json")
    assert report["nice"] == min(19, os.nice(0) + 7)
    assert report["pgid"] == report["pid"] != os.getpgid(0)  # a cancel reaches only its group
    # The app's session, so the app's autogroup: in a session of its own, Linux's autogroup
    # scheduling shares the CPU between the sessions evenly and the nice value counts for nothing
    # (the chat then ran at 1/40 of its idle speed beside a refresh).
    assert report["sid"] == os.getsid(0)
    env = report["env"]
    assert env["AUTODIDACT_HOME"] == str(settings.home_dir)
    assert env["AUTODIDACT_THREADS"] == env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "1"
    assert report["args"] == ["--progress-file", str(launcher.progress_path), "--force"]
    state = launcher.state()
    assert not state.running and state.returncode == 0 and state.started_by == "rita"


def test_progress_reads_back_while_it_runs_and_one_refresh_runs_at_a_time(launch, settings):
    launcher = launch("steps")
    launcher.start("rita")
    state = wait_for(lambda: (s := launcher.state()).progress.get("step") == "train" and s)
    assert state.running and state.progress["fraction"] == 0.5
    assert state.progress["steps"] == {"select": 0.0, "guard": 0.0, "train": 0.5}
    assert state.progress["message"] == "step 1/2, loss 2.0"
    with pytest.raises(RuntimeError, match="started by rita is still running"):
        launcher.start("adam")
    (settings.home_dir / "go").touch()
    assert wait_for(lambda: launcher.state().returncode == 0 or None) is True
    assert not launcher.state().running


def test_a_refresh_running_from_a_shell_keeps_the_button_from_starting_another(launch, settings):
    launcher = launch("report")
    with refresh_lock(settings.home_dir):  # as `autodidact refresh` from cron holds it
        with pytest.raises(RuntimeError, match="a refresh is already running"):
            launcher.start("rita")
    assert launcher.job is None
    launcher.start("rita")  # once it is gone


def test_a_child_that_ends_without_a_run_says_why(launch):
    launcher = launch("busy")
    launcher.start("rita")
    state = wait_for(lambda: (s := launcher.state()).returncode is not None and s)
    assert state.returncode == 1 and state.run is None
    assert "a refresh is already running (pid 4242)" in state.log_tail


def test_cancel_stops_the_whole_group_and_leaves_everything_as_it_was(launch, settings, store):
    """The stand-in ignores SIGTERM, so the cancel has to SIGKILL it after the grace period;
    its own child goes too. The run it had made is cancelled, its candidate removed, and the
    pointer it had moved (a cancel during `promote`) is back on the adapter served before."""
    registry = AdapterRegistry(settings.home_dir / "adapters")
    for adapter in ("adapter-earlier", "adapter-new"):
        registry.file(adapter).parent.mkdir(parents=True)
        registry.file(adapter).write_bytes(b"GGUF")
    registry.activate("adapter-earlier")
    runs = RunStore(store.engine)
    launcher = launch("stubborn")
    launcher.grace_s = 0.5
    launcher.start("rita")
    wait_for(lambda: launcher.state().progress.get("step") == "train")
    run = runs.start(adapter_id="adapter-new", base_model="m", parent_adapter_id="adapter-earlier")
    runs.update(run.id, step="promote")
    registry.activate("adapter-new")
    grandchild = int((settings.home_dir / "grandchild").read_text())

    began = time.monotonic()
    said = launcher.cancel("rita")
    assert time.monotonic() - began < 5
    assert said == "Cancelled by rita at step promote; the served adapter is unchanged."
    assert not alive(launcher.job.proc.pid) and not alive(grandchild)
    [after] = runs.runs()
    assert (after.status, after.step, after.reason) == ("cancelled", "promote", "cancelled by rita")
    assert after.finished_at is not None
    assert registry.active().adapter_id == "adapter-earlier"
    assert not registry.folder("adapter-new").exists() and registry.exists("adapter-earlier")
    assert launcher.cancel("rita") == "No refresh is running."
    launcher.start("rita")  # the lock went with the process


def test_the_progress_file_is_replaced_whole(tmp_path):
    path = tmp_path / "progress.json"
    progress = ProgressFile(path, every_s=0)
    for i in range(50):
        progress("train", i / 50, f"step {i}/50")
        assert read_progress(path)["message"] == f"step {i}/50"
    progress.finish(SimpleNamespace(id=3, status="rejected", step="evaluate", reason="a; b"))
    final = read_progress(path)
    assert (final["run"], final["status"], final["reason"]) == (3, "rejected", "a; b")
    assert [p.name for p in tmp_path.iterdir()] == ["progress.json"]  # no temporary left


def test_the_tab_shows_steps_and_reasons_in_plain_words():
    from assistant.web.models_tab import job_view

    running = JobState(
        running=True,
        started_by="rita",
        seconds=75,
        progress={"step": "train", "fraction": 0.25, "message": "step 1/4, loss 2.1"},
    )
    text = job_view(running)
    assert "started by rita 1 min 15 s ago" in text
    assert (
        "- ✓ select\n- ✓ synthesize\n- ✓ guard\n- ▶ **train** 25%: step 1/4, loss 2.1\n- ○ export"
        in text
    )
    rejected = SimpleNamespace(
        id=1,
        adapter_id="adapter-x",
        status="rejected",
        step="evaluate",
        reason="held-out loss rose 4.0% (limit 2.0%); the judge preferred the current model",
    )
    text = job_view(JobState(started_by="rita", returncode=0, run=rejected))
    assert "did worse than the model being served" in text
    assert text.endswith(
        "\n\n- held-out loss rose 4.0% (limit 2.0%)\n- the judge preferred the current model"
    )


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_real_refresh_cancelled_mid_training_changes_nothing_and_another_can_start(
    settings,
    store,
    fake_model,
    curator,
    embedded_path,
    base_cache,  # noqa: F811 (the fixture)
):
    from assistant.chat import ChatService

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
    settings.refresh_min_new, settings.refresh_max_steps = 1, 40
    # On one thread, 12 parents' lessons and 32 rehearsal answers would take minutes before
    # training starts: this test is about cancelling training (tests/test_synthesis.py has those).
    settings.synthesis, settings.refresh_rehearsal = False, 0

    launcher = RefreshLauncher(settings, store.engine, RefreshJobConfig(nice=10, threads=1))
    launcher.start("adam")
    training = wait_for(
        lambda: (
            (s := launcher.state()).progress.get("step") == "train"
            and s.progress["fraction"] > 0
            and s
        ),
        timeout=400,
        every=0.2,
    )
    assert training.running, launcher._log_tail(20)
    pid = launcher.job.proc.pid
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert b"OMP_NUM_THREADS=1" in environ and b"AUTODIDACT_THREADS=1" in environ
    assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, os.nice(0) + 10)
    [run] = RunStore(store.engine).runs()
    candidate = registry.folder(run.adapter_id)

    said = launcher.cancel("adam")
    assert said == "Cancelled by adam at step train; the served adapter is unchanged."
    assert not alive(pid)
    with sqlite3.connect(settings.home_dir / "autodidact.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = db.execute("SELECT status, step, reason FROM refresh_runs").fetchall()
    assert rows == [("cancelled", "train", "cancelled by adam")]
    assert registry.active().adapter_id == "adapter-earlier"
    assert hashlib.sha256(registry.file("adapter-earlier").read_bytes()).hexdigest() == before
    assert not candidate.exists()

    launcher.start("adam", dry_run=True)  # the lock went with the killed process
    done = wait_for(lambda: (s := launcher.state()).returncode is not None and s, timeout=300)
    assert done.returncode == 0, done.log_tail
    assert done.run.status == "dry_run" and done.progress["status"] == "dry_run"
