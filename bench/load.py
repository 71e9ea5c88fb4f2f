"""Load: many accounts chatting at once through the real server, with background grading on.

What it measures, and how:
  - The app as `autodidact serve` runs it, in this process: `create_app` over a temporary home
    (the embedded model, SQLite, Chroma), served by uvicorn behind the gate with `launch`, the
    grader running (unless --no-grading). Rate limits and the queue size are the defaults unless a flag changes them.
  - `--accounts` accounts (role user), each with an API token, each driven by its own thread
    through gradio_client (`Authorization: Bearer ...`), all released at once. Each sends
    `--turns` messages to /chat, one after the other, a new conversation every
    `--per-conversation` turns. Every message carries its sender's secret (`SECRET<hex>-<turn>`,
    a random tag per account) so anything of theirs that reaches someone else can be found.
  - Per turn, from the client: latency (submit to the final result), queue wait (submit to the
    server's "process_starts", i.e. the job left Gradio's queue and the chat began) and first
    output (submit to the first streamed answer text). The two last come from the timestamps
    gradio_client puts on each status update as it reads them; it reads its message stream
    every 50 ms, so they are exact to about 50 ms. Also, from the database, the server's own
    time per answer (`exchanges.latency_ms`: model start to the answer stored).
  - Nothing lost: every message the server answered must be stored as a completed exchange in
    a conversation of its sender, with the answer the client received. Refused messages (rate
    limit, queue full, ...) are counted with their reason, not as lost.
  - Nothing leaked (target 0): an exchange carrying one account's secret in another account's
    conversation is misplaced; every account then calls /conversations and /history on every
    conversation id that exists, others' included, over raw HTTP (tests/raw_gradio.py), and
    any secret of another account in what comes back (data, errors, logs) is a leak, as is any
    history of another's conversation returned at all. The answers each account received must
    hold no other account's secret either (the model could only have it through retrieval).
  - Grading: jobs done while the chats ran, and after waiting up to `--settle` seconds for the
    backlog (the checks run after that wait, so whatever grading and curation did is in).

    .venv/bin/python -m bench.load [--accounts 16] [--turns 10] [--max-tokens 64]
                                   [--per-conversation 5] [--settle 60] [--no-grading]
                                   [--rate-limit-messages N] [--queue-max N] [--out FILE]
    .venv/bin/python -m bench.load --accounts 2 --turns 2 --max-tokens 16 --out /tmp/load.json
    .venv/bin/python -m bench.load --accounts 15 --flood 40   # one more account floods the chat

With `--flood N`, one more account keeps N joins to the chat event in flight over raw HTTP for the
whole chat phase (each refused join is tried again at once), and the figures of the others are
read beside their own run without the flood, made first in the same command: the target is the
others' p95 queue wait within 1.5x of that baseline.

Prints a table and writes bench/results/load-<timestamp>.json (or `--out`), with the commit
and the command line. The full run takes the machine: run it alone.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import threading
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from bench.harness import (
    RESULTS,
    command_line,
    commit,
    new_home,
    progress,
    settle,
    start_app,
    table,
    write_result,
)
from bench.load_checks import (
    Account,
    TurnResult,
    check_stored,
    count_by,
    foreign_tags,
    probe_leaks,
    stored_exchanges,
)

PASSWORD = "load bench password"
# Subjects for the messages, so answers differ and retrieval has something to match on.
TOPICS = [
    "my garden",
    "a trip to Lisbon",
    "learning the cello",
    "my bicycle",
    "baking bread",
    "a chess opening",
    "my cat",
    "the tax return",
]


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    # the load
    parser.add_argument("--accounts", type=int, default=16, help="accounts chatting at once")
    parser.add_argument("--turns", type=int, default=10, help="messages each account sends")
    parser.add_argument(
        "--per-conversation", type=int, default=5, help="turns before a new conversation"
    )
    # the app
    parser.add_argument("--max-tokens", type=int, default=64, help="longest answer, in tokens")
    parser.add_argument(
        "--grading",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="background grading (--no-grading: off, to see what it costs)",
    )
    parser.add_argument(
        "--rate-limit-messages", type=int, default=None, help="per account (default: the app's)"
    )
    parser.add_argument("--queue-max", type=int, default=None, help="default: the app's")
    parser.add_argument(
        "--flood",
        type=int,
        default=0,
        help="joins one more account keeps in flight; the run without it goes first",
    )
    # after the chats
    parser.add_argument(
        "--settle", type=float, default=60.0, help="seconds to wait for the grading backlog"
    )
    parser.add_argument("--out", type=Path, default=None, help="result file (JSON)")
    return parser.parse_args()


def app_settings(args) -> dict:
    """The app's settings: grading and max tokens as asked, the limits the app's unless set."""
    limits = {"rate_limit_messages": args.rate_limit_messages, "queue_max": args.queue_max}
    return {
        "grading": args.grading,
        "max_tokens": args.max_tokens,
        **{name: value for name, value in limits.items() if value is not None},
    }


def make_accounts(app, n: int, prefix: str = "load") -> list[Account]:
    from store.accounts import AccountStore

    store = AccountStore(app.store.engine)
    accounts = []
    for i in range(n):
        name = f"{prefix}{i:02d}"
        account = store.add(name, PASSWORD, "user")
        tag = f"SECRET{secrets.token_hex(4).upper()}"
        accounts.append(Account(name, account.id, store.create_token(name, "bench"), tag))
    return accounts


def message_for(account: Account, turn: int) -> str:
    topic = TOPICS[(account.id + turn) % len(TOPICS)]
    return f"Keep this code private: {account.tag}-{turn}. Tell me one short thing about {topic}."


def refusal(exc: BaseException) -> str:
    """Why a turn got no answer, in a few words a table can show."""
    text = str(exc)
    if "too fast" in text:
        return "rate limit"
    if "queue is full" in text.lower():
        return "queue full"
    return f"{type(exc).__name__}: {text[:120]}"


def status_times(job) -> tuple[datetime | None, datetime | None]:
    """When gradio_client read the job's process_starts and its first streamed output. The
    updates are the ones `Job.__aiter__` yields; the job is done, so none is still coming."""
    started = first = None
    updates = job.communicator.updates
    while not updates.empty():
        update = updates.get_nowait()
        code = getattr(getattr(update, "code", None), "value", None)
        if code == "PROCESSING" and started is None:
            started = update.time
        if code == "ITERATING" and first is None:
            first = update.time  # read with the first output
    return started, first


def send_turn(client, result: TurnResult, timeout: float = 600) -> TurnResult:
    """One message through /chat; fills in the answer, the timings or the refusal."""
    submitted, start = datetime.now(), time.perf_counter()
    job = client.submit(result.message, result.conversation, api_name="/chat")
    try:
        answer, conversation = job.result(timeout=timeout)
        result.ok, result.answer, result.conversation = True, answer, str(conversation)
    except Exception as exc:  # refused or failed: the reason is the figure
        result.reason = refusal(exc)
    result.latency_s = time.perf_counter() - start
    started, first = status_times(job)
    if started is not None:
        result.queue_wait_s = (started - submitted).total_seconds()
    if first is not None and result.ok:
        result.first_output_s = (first - submitted).total_seconds()
    return result


def run_account(url: str, account: Account, args, ready: threading.Barrier, advance) -> list:
    """One account's turns, one after the other, from the moment every account is ready."""
    from gradio_client import Client

    client = Client(url, headers=account.headers, verbose=False)
    ready.wait(timeout=600)
    results, conversation = [], ""
    try:
        for turn in range(args.turns):
            if turn % args.per_conversation == 0:
                conversation = ""
            result = TurnResult(account.name, turn, message_for(account, turn), conversation)
            send_turn(client, result)
            if result.ok:
                conversation = result.conversation
            results.append(result)
            advance()
    finally:
        client.close()  # stops its heartbeat thread
    return results


def chat_phase(app, accounts: list[Account], args) -> tuple[list[TurnResult], float]:
    """Every account's thread at once, with a progress bar; the results and the wall time."""
    from concurrent.futures import ThreadPoolExecutor

    ready = threading.Barrier(len(accounts) + 1)
    with progress() as bar, ThreadPoolExecutor(len(accounts)) as pool:
        task = bar.add_task("turns", total=len(accounts) * args.turns)

        def advance():
            bar.advance(task)

        futures = [
            pool.submit(run_account, app.url, account, args, ready, advance) for account in accounts
        ]
        ready.wait(timeout=600)  # every client connected: the clock starts when they all may send
        start = time.perf_counter()
        results = [r for future in futures for r in future.result()]
        wall = time.perf_counter() - start
    return results, wall


def percentiles(values: list[float | None]) -> dict[str, float | None]:
    import numpy as np

    values = [v for v in values if v is not None]
    if not values:
        return {"p50": None, "p95": None, "max": None}
    return {
        "p50": round(float(np.percentile(values, 50)), 3),
        "p95": round(float(np.percentile(values, 95)), 3),
        "max": round(float(max(values)), 3),
    }


def flood(app, account: Account, threads: int, stop: threading.Event) -> dict:
    """`threads` joins to the chat event kept in flight by one account until `stop`."""
    import httpx

    from tests.raw_gradio import join

    config = httpx.get(app.url + "config", headers=account.headers).json()
    chat = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "chat")
    counts: dict[str, int] = {}
    lock = threading.Lock()

    def loop(n: int) -> None:
        while not stop.is_set():
            outcome = join(app.url, chat, [f"Flood {n}: write a long poem.", ""], account.headers)
            key = "answered" if outcome.success else f"refused {outcome.status}"
            with lock:
                counts[key] = counts.get(key, 0) + 1
            if not outcome.success:
                stop.wait(0.05)

    workers = [threading.Thread(target=loop, args=(n,), daemon=True) for n in range(threads)]
    for worker in workers:
        worker.start()
    return counts


def measure(args) -> dict:
    """Start the app, run the chats, wait for grading, check storage and leaks."""
    home = new_home(prefix="autodidact-load-")
    stop = threading.Event()
    with start_app(home, app_settings(args)) as app:
        accounts = make_accounts(app, args.accounts)
        print(f"app at {app.url}, home {home}; {len(accounts)} accounts ready", flush=True)
        flooder = make_accounts(app, 1, prefix="flooder")[0] if args.flood else None
        flooded = flood(app, flooder, args.flood, stop) if flooder else {}
        results, wall = chat_phase(app, accounts, args)
        stop.set()
        graded_during = app.grading.counts()
        print(f"chats done in {wall:.1f} s; grading jobs {graded_during}", flush=True)
        waited = settle(app, args.settle) if args.grading else 0.0
        graded_after = app.grading.counts()
        rows = stored_exchanges(app)
        stored = check_stored(accounts, results, rows)
        probe = probe_leaks(app, accounts, home / "probe-stderr.log")
    by_name = {a.name: a for a in accounts}
    answer_leaks = [
        (r.account, r.turn, tag)
        for r in results
        for tag in foreign_tags(by_name[r.account], accounts, r.answer)
    ]
    ours = [r["latency_ms"] / 1000 for r in rows if r["latency_ms"] is not None]
    return {
        "commit": commit(),
        "command": command_line(),
        "when": datetime.now().isoformat(timespec="seconds"),
        "home": str(home),
        "settings": {**vars(args), "out": str(args.out) if args.out else None},
        "rate_limit_messages": app.settings.rate_limit_messages,
        "rate_limit_window_s": app.settings.rate_limit_window_s,
        "queue_max": app.settings.queue_max,
        "sent": len(results),
        "answered": sum(r.ok for r in results),
        "refused": count_by([r.reason for r in results if not r.ok]),
        **stored,
        "leaks_api": probe,
        "leaks_answers": answer_leaks,
        "latency_s": percentiles([r.latency_s for r in results if r.ok]),
        "queue_wait_s": percentiles([r.queue_wait_s for r in results]),
        "first_output_s": percentiles([r.first_output_s for r in results]),
        "server_answer_s": percentiles(ours),
        "wall_s": round(wall, 1),
        "flood": flooded,
        "grading_end_of_chats": graded_during,
        "grading_after_settle": graded_after,
        "settle_waited_s": round(waited, 1),
        "turns": [asdict(r) for r in results],
    }


def show(r: dict) -> None:
    def spread(p: dict) -> str:
        if p["p50"] is None:
            return "-"
        return f"{p['p50']:.2f} / {p['p95']:.2f} / {p['max']:.2f}"

    probe, s = r["leaks_api"], r["settings"]
    grading = "grading on" if s["grading"] else "grading off: jobs only queued"
    settled = f"waited {r['settle_waited_s']} s (at most {s['settle']:g})"
    leaks = len(probe["leaks"]) + len(r["leaks_answers"]) + len(r["misplaced"])
    rows = [
        ("sent / answered", f"{r['sent']} / {r['answered']}", ""),
        ("refused or failed", ", ".join(f"{k}: {v}" for k, v in r["refused"].items()) or "0", ""),
        ("stored (completed)", f"{r['stored']}  {r['stored_by_status']}", "= answered"),
        ("lost", str(len(r["lost"])), "0"),
        ("answer differs from stored", str(len(r["answer_differs_from_stored"])), "0"),
        ("misplaced exchanges", str(len(r["misplaced"])), "0"),
        (
            "leaks via API",
            f"{len(probe['leaks'])} in {probe['calls']} calls over "
            f"{probe['conversations']} conversations",
            "0",
        ),
        ("others' histories returned", str(probe["foreign_reads"]), "0"),
        (
            "own lists wrong / own secret unseen",
            f"{probe['conversation_lists_wrong']} / {probe['own_unseen']}",
            "0 / 0",
        ),
        ("leaks in answers", str(len(r["leaks_answers"])), "0"),
        ("all leaks", str(leaks), "0"),
        ("latency s p50/p95/max", spread(r["latency_s"]), "submit to result"),
        ("queue wait s p50/p95/max", spread(r["queue_wait_s"]), "submit to process_starts"),
        ("first output s p50/p95/max", spread(r["first_output_s"]), "submit to first text"),
        ("server answer s p50/p95/max", spread(r["server_answer_s"]), "model start to stored"),
        ("wall time s", f"{r['wall_s']:.1f}", ""),
        ("grading jobs, end of chats", str(r["grading_end_of_chats"]), grading),
        ("grading jobs, after settle", str(r["grading_after_settle"]), settled),
    ]
    title = f"load: {s['accounts']} accounts x {s['turns']} turns, commit {r['commit']}"
    table(title, ["figure", "value", "target"], rows, width=120)
    print(f"command: {r['command']}")


def main() -> int:
    args = arguments()
    if args.flood:
        baseline = measure(argparse.Namespace(**{**vars(args), "flood": 0}))
        show(baseline)
        result = measure(args)
        result["baseline"] = {k: v for k, v in baseline.items() if k != "turns"}
        ratio = result["queue_wait_s"]["p95"] / max(baseline["queue_wait_s"]["p95"], 1e-9)
        result["p95_wait_ratio_flood_to_baseline"] = round(ratio, 3)
        print(f"others' p95 queue wait with the flood / without: {ratio:.2f} (target <= 1.5)")
    else:
        result = measure(args)
    show(result)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    write_result(result, args.out or RESULTS / f"load-{stamp}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
