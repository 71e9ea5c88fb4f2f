"""A refresh started from the app: `autodidact refresh` in a process of its own, at a lower
priority and on fewer threads, so the chat beside it keeps its speed.

Owns the launcher's settings (`RefreshJobConfig`), the child's command line and environment
(the app's own settings passed down as `AUTODIDACT_*` variables, so the child uses the same
home, database and model), the progress file the child writes and the app polls
(`ProgressFile`), and cancelling: SIGTERM to the child's process group, SIGKILL after a grace
period, then the run it left `running` marked `cancelled` and the adapter pointer as it was.

What it does not own: the refresh itself (feedback/refresh/pipeline.py, whose lock keeps one
refresh at a time across the app, the CLI and cron alike), the settings object (the launcher
takes the app's, passed in, and reads only its fields; assistant/wiring.py `build_launcher`
builds the launcher from it) and the page over this (assistant/web/models_tab.py). No web
framework here: the CLI writes the progress file with it. The child is the product's command
line run with this interpreter (`refresh_command`): named, never imported.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.options import option

PROGRESS_FILE = "refresh-progress.json"
LOG_FILE = "refresh-job.log"
CANCEL_GRACE_S = 10.0
# Every thread pool the child's libraries size from the environment: torch and OpenMP, MKL,
# OpenBLAS, numexpr, and the Rust tokenizers (rayon). llama.cpp takes AUTODIDACT_THREADS.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "RAYON_NUM_THREADS",
)


@dataclass
class RefreshJobConfig:
    """A refresh started from the Models tab; `Settings`: `refresh_nice`, `refresh_threads`."""

    nice: int = option(
        10, "how much lower the priority of a refresh started from the app is (0-19, as nice)"
    )
    threads: int = option(
        1,
        "CPU threads a refresh started from the app may use (torch, OpenMP, llama.cpp, the "
        "embedder); the other cores stay with the chat",
    )


def settings_env(settings) -> dict[str, str]:
    """Every setting as the `AUTODIDACT_*` variable that gives it (lists and dicts as JSON, as
    the settings read them), so a child process reads the same values; unset ones are left out.
    `settings` is the app's pydantic settings object (its fields, and `home_dir`).

    >>> from pathlib import Path
    >>> from pydantic import BaseModel
    >>> class Knobs(BaseModel):
    ...     home: Path
    ...     port: int = 9
    ...     grade_weights: dict = {"judge": 1.0}
    ...     database_url: str | None = None
    ...     home_dir = property(lambda self: self.home.expanduser())
    >>> env = settings_env(Knobs(home="/tmp/h"))
    >>> env["AUTODIDACT_HOME"], env["AUTODIDACT_PORT"], env["AUTODIDACT_GRADE_WEIGHTS"]
    ('/tmp/h', '9', '{"judge": 1.0}')
    >>> "AUTODIDACT_DATABASE_URL" in env
    False
    """
    env = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if name == "home":
            value = settings.home_dir
        text = json.dumps(value) if isinstance(value, dict | list) else str(value)
        env[f"AUTODIDACT_{name.upper()}"] = text
    return env


def child_env(settings, config: RefreshJobConfig, base: dict[str, str] | None = None) -> dict:
    """The child's environment: this process's, with the app's settings in place of any
    `AUTODIDACT_*` it had (a flag given to `serve` wins over the environment there too), and
    every thread pool capped at `config.threads`."""
    inherited = os.environ if base is None else base
    env = {k: v for k, v in inherited.items() if not k.startswith("AUTODIDACT_")}
    env.update(settings_env(settings))
    threads = str(config.threads)
    env["AUTODIDACT_THREADS"] = threads
    env.update(dict.fromkeys(THREAD_VARIABLES, threads))
    env["TOKENIZERS_PARALLELISM"] = "false"
    return env


def refresh_command() -> list[str]:
    """`autodidact refresh` with this interpreter (the app's virtual environment)."""
    return [sys.executable, "-m", "assistant.cli", "refresh"]


def niced(command: list[str], nice: int) -> tuple[list[str], bool]:
    """`command` under `nice -n N`, and whether it is: the priority is then set before the
    child runs a line (a preexec_fn is not safe in the app's threaded process). Without a
    `nice` program the launcher lowers the priority right after the start instead."""
    program = shutil.which("nice")
    if program and nice:
        return [program, "-n", str(nice), *command], True
    return command, not nice


class ProgressFile:
    """The refresh's progress as one small JSON file, replaced atomically on every write, so a
    reader never sees half of one. The pipeline's `progress(step, fraction, message)` callback
    writes it; `finish(run)` adds the outcome."""

    def __init__(self, path: Path, every_s: float = 0.5):
        self.path, self.every_s = Path(path), every_s
        self.state: dict[str, Any] = {"pid": os.getpid(), "steps": {}}
        self._written = 0.0

    def __call__(self, step: str, fraction: float, message: str) -> None:
        new_step = step != self.state.get("step")
        self.state.update(step=step, fraction=round(float(fraction), 4), message=message)
        self.state["steps"][step] = self.state["fraction"]
        if new_step or time.monotonic() - self._written >= self.every_s:
            self.write()

    def finish(self, run) -> None:
        self.state.update(run=run.id, status=run.status, step=run.step, reason=run.reason)
        self.write()

    def write(self) -> None:
        self.state["updated"] = time.time()
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.state))
        os.replace(tmp, self.path)
        self._written = time.monotonic()


def read_progress(path: Path) -> dict:
    """What the child last wrote; {} before its first step (or for a file it never wrote)."""
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


@dataclass
class JobState:
    """What the Models tab shows: a refresh running (with its progress) or how the last one
    started from this app ended."""

    running: bool = False
    started_by: str | None = None
    seconds: float = 0.0  # since it started
    progress: dict = field(default_factory=dict)
    run: Any = None  # the RefreshRun the child made, once it made one
    returncode: int | None = None
    cancelled_by: str | None = None
    log_tail: str = ""  # the child's last lines, for one that ended without a run


@dataclass
class Job:
    proc: subprocess.Popen
    started_by: str
    started_at: float
    before: int  # the highest run id when it started: the child's run comes after it
    cancelled_by: str | None = None
    settled: bool = False


class RefreshLauncher:
    """Starts, watches and cancels the app's refresh: one child at a time, for one home."""

    def __init__(self, settings, engine, config: RefreshJobConfig, command=None):
        from store.adapters import AdapterRegistry
        from store.runs import RunStore

        self.settings, self.config = settings, config
        self.home = settings.home_dir
        self.runs = RunStore(engine)
        self.registry = AdapterRegistry(self.home / "adapters")
        self.command = command or refresh_command()
        self.progress_path = self.home / PROGRESS_FILE
        self.log_path = self.home / LOG_FILE
        self.job: Job | None = None
        self.grace_s = CANCEL_GRACE_S
        # Start, cancel and the polls come from the web server's threads: one at a time.
        self.lock = threading.RLock()
        _LAUNCHERS.add(self)

    def running(self) -> bool:
        return self.job is not None and self.job.proc.poll() is None

    def start(self, who: str, force: bool = False, dry_run: bool = False) -> str:
        """Start a refresh as `who`; raises RuntimeError (with the reason) when one is running."""
        with self.lock:
            return self._start(who, force, dry_run)

    def _start(self, who: str, force: bool, dry_run: bool) -> str:
        from feedback.refresh.pipeline import RefreshBusy, refresh_lock

        if self.running():
            raise RuntimeError(f"a refresh started by {self.job.started_by} is still running")
        try:
            with refresh_lock(self.home):  # one from a shell or cron holds it: say so now
                pass
        except RefreshBusy as busy:
            raise RuntimeError(str(busy)) from None
        self.progress_path.unlink(missing_ok=True)
        flags = ["--progress-file", str(self.progress_path)]
        flags += ["--force"] * force + ["--dry-run"] * dry_run
        command, is_niced = niced([*self.command, *flags], self.config.nice)
        before = max((r.id for r in self.runs.runs()), default=0)
        log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            proc = subprocess.Popen(
                command,
                env=child_env(self.settings, self.config),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own process group, so a cancel reaches all of it, but in the app's
                # session: a new session is a new autogroup, which Linux's scheduler gives an
                # even share of the CPU whatever its nice value, and the chat crawled beside it.
                process_group=0,
            )
        finally:
            os.close(log)
        if not is_niced:
            os.setpriority(os.PRIO_PROCESS, proc.pid, self.config.nice)
        self.job = Job(proc, who, time.monotonic(), before)
        return f"Refresh started by {who} (process {proc.pid})."

    def state(self) -> JobState:
        with self.lock:
            return self._state()

    def _state(self) -> JobState:
        job = self.job
        if job is None:
            return JobState()
        code = job.proc.poll()
        if code is not None and not job.settled:
            self._settle(job)
        run = self._run_of(job)
        unexplained = code is not None and (code != 0 or run is None)
        return JobState(
            running=code is None,
            started_by=job.started_by,
            seconds=time.monotonic() - job.started_at,
            progress=read_progress(self.progress_path),
            run=run,
            returncode=code,
            cancelled_by=job.cancelled_by,
            log_tail=self._log_tail() if unexplained and job.cancelled_by is None else "",
        )

    def cancel(self, who: str) -> str:
        """Stop the running refresh (SIGTERM, then SIGKILL after the grace period) and leave
        everything as it was before it started; the run is on record as cancelled by `who`."""
        with self.lock:
            return self._cancel(who)

    def _cancel(self, who: str) -> str:
        job = self.job
        if job is None or job.proc.poll() is not None:
            return "No refresh is running."
        job.cancelled_by = who
        stop_group(job.proc, self.grace_s)
        self._settle(job)
        run = self._run_of(job)
        if run is None:
            return f"Cancelled by {who} before the refresh began; nothing changed."
        if run.status == "running":  # the lock never came free: another refresh holds it
            return f"Stopped by {who}; the next refresh marks the run interrupted."
        if run.status != "cancelled":  # it ended on its own just before the signal
            return f"The refresh had already ended: {run.status}."
        return f"Cancelled by {who} at step {run.step}; the served adapter is unchanged."

    def stop(self) -> None:
        """Cancel a refresh still running when the app stops (it belongs to the app)."""
        if self.running():
            self.cancel("the app stopping")

    def _run_of(self, job: Job):
        mine = [r for r in self.runs.runs() if r.id > job.before]
        return mine[0] if mine else None

    def _settle(self, job: Job, tries: int = 20) -> None:
        """The child is gone: a run it left `running` is over. Cancelled, it is marked so and its
        candidate removed, with the pointer back where it was; died on its own, interrupted.
        Done under the refresh lock, which the child's last process may hold a moment longer."""
        from feedback.refresh.pipeline import RefreshBusy, refresh_lock

        job.settled = True
        run = self._run_of(job)
        if run is None or run.status != "running":  # nothing left open: no lock to wait for
            return
        for _ in range(tries):
            try:
                with refresh_lock(self.home):
                    return self._mark(job)
            except RefreshBusy:  # still ours going, or another refresh (which recovers ours)
                time.sleep(0.25)

    def _mark(self, job: Job) -> None:
        run = self._run_of(job)
        if run is None or run.status != "running":
            return
        if job.cancelled_by is None:
            self.runs.recover_interrupted()
            return
        self.runs.finish(run.id, "cancelled", f"cancelled by {job.cancelled_by}")
        self._undo(run)

    def _undo(self, run) -> None:
        """A cancel at the very last step may have moved the pointer: put it back, and remove
        the candidate's files (a cancelled candidate is never served)."""
        active = self.registry.active()
        if active and active.adapter_id == run.adapter_id:
            parent = run.parent_adapter_id
            self.registry.activate(parent if parent and self.registry.exists(parent) else None)
        shutil.rmtree(self.registry.folder(run.adapter_id), ignore_errors=True)

    def _log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])


def stop_group(proc: subprocess.Popen, grace_s: float) -> int:
    """SIGTERM to `proc`'s process group, SIGKILL if it is still there after `grace_s`."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        code = proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        code = None
    try:  # what is left of the group: the child's own children, or the child itself
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    return proc.wait() if code is None else code


_LAUNCHERS: weakref.WeakSet[RefreshLauncher] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    """A refresh started from the app belongs to it: when the app's process exits, so does the
    refresh (marked cancelled), rather than training on unseen with no page to show it. A
    process killed outright runs no exit handler: its refresh goes on in its own session and
    ends as it would from a shell (promoted, rejected or refused), on record like any other."""
    for launcher in list(_LAUNCHERS):
        try:
            launcher.stop()
        except Exception:  # the database may already be gone; the next refresh recovers
            pass
