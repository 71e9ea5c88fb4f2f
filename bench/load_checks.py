"""What a load run (bench/load.py) is checked against, after the chats: the accounts and turns it
records, every exchange stored in its sender's conversation with the text the sender got (nothing
lost), and no account's secret reaching another through the API or an answer (no leaks).

Owns those checks only; starting the app, driving the chats and showing the table are
bench/load.py's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Account:
    name: str
    id: int
    token: str
    tag: str  # in every message this account sends; nobody else may ever see it

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class TurnResult:
    account: str
    turn: int
    message: str
    conversation: str = ""
    answer: str = ""
    ok: bool = False
    reason: str = ""  # why it was refused or failed
    latency_s: float | None = None  # submit to the final result
    queue_wait_s: float | None = None  # submit to process_starts
    first_output_s: float | None = None  # submit to the first answer text


STORED = """
SELECT e.id, e.status, e.latency_ms, c.id, c.user_id, u.content, a.content
FROM exchanges e
JOIN conversations c ON c.id = e.conversation_id
JOIN messages u ON u.id = e.user_message_id
LEFT JOIN messages a ON a.id = e.assistant_message_id
"""


def stored_exchanges(app) -> list[dict]:
    from sqlalchemy import text

    keys = ("exchange_id", "status", "latency_ms", "conversation_id", "owner", "user", "answer")
    with app.store.engine.connect() as db:
        return [dict(zip(keys, row, strict=True)) for row in db.execute(text(STORED))]


def check_stored(accounts: list[Account], results: list[TurnResult], rows: list[dict]) -> dict:
    """Sent against stored, per account: lost, answers that differ, misplaced exchanges."""
    by_name = {a.name: a for a in accounts}
    owners = {a.tag: a.id for a in accounts}
    misplaced = [
        r["exchange_id"]
        for r in rows
        for tag, owner in owners.items()
        if tag in r["user"] and r["owner"] != owner
    ]
    lost, differing, refused_but_stored = [], [], []
    for result in results:
        owner = by_name[result.account].id
        mine = [r for r in rows if r["user"] == result.message and r["owner"] == owner]
        done = [r for r in mine if r["status"] == "completed"]
        if result.ok and not done:
            lost.append(f"{result.account} turn {result.turn}")
        elif result.ok and all(r["answer"] != result.answer for r in done):
            differing.append(f"{result.account} turn {result.turn}")
        if not result.ok and mine:
            refused_but_stored.append(f"{result.account} turn {result.turn}")
    return {
        "stored": sum(r["status"] == "completed" for r in rows),
        "stored_by_status": count_by([r["status"] for r in rows]),
        "lost": lost,
        "answer_differs_from_stored": differing,
        "refused_but_stored": refused_but_stored,
        "misplaced": misplaced,
    }


def count_by(values) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def foreign_tags(account: Account, accounts: list[Account], text: str) -> list[str]:
    return [a.tag for a in accounts if a is not account and a.tag in text]


def api_events(app, account: Account) -> dict[str, int]:
    """The fn index of each public API endpoint, from the served config."""
    import httpx

    config = httpx.get(app.url + "config", headers=account.headers, timeout=60).json()
    return {d["api_name"]: d["id"] for d in config["dependencies"] if d.get("api_name")}


def probe_account(app, account, accounts, conversations: dict[int, int], events) -> dict:
    """/conversations, then /history of every conversation id, as `account` over raw HTTP.
    Its own histories must come back holding its own secret: the check that the search for
    secrets sees what the server returns."""
    from tests.raw_gradio import join

    found = {"calls": 1, "leaks": [], "foreign_reads": [], "own_unseen": [], "list_wrong": 0}
    listed = join(app.url, events["conversations"], [], headers=account.headers)
    found["leaks"] += [
        ("/conversations", t) for t in foreign_tags(account, accounts, listed.text())
    ]
    mine = {cid for cid, owner in conversations.items() if owner == account.id}
    ids = {c["id"] for out in listed.outputs[-1:] for c in (out[0] if out else [])}
    found["list_wrong"] = int(not listed.success or ids != mine)
    for cid, owner in sorted(conversations.items()):
        outcome = join(app.url, events["history"], [str(cid)], headers=account.headers)
        found["calls"] += 1
        leaked = foreign_tags(account, accounts, outcome.text())
        found["leaks"] += [(f"/history {cid}", t) for t in leaked]
        if owner != account.id and outcome.success:
            found["foreign_reads"].append(cid)
        if owner == account.id and not (outcome.success and account.tag in outcome.text()):
            found["own_unseen"].append(cid)
    return found


def probe_leaks(app, accounts: list[Account], log: Path) -> dict:
    """Every account probes every conversation at once; the totals over all accounts. The
    server prints a traceback for each refused read (hundreds, all expected): into `log`."""
    from concurrent.futures import ThreadPoolExecutor
    from contextlib import redirect_stderr

    from sqlalchemy import text

    with app.store.engine.connect() as db:
        conversations = dict(db.execute(text("SELECT id, user_id FROM conversations")).all())
    events = api_events(app, accounts[0])
    with (
        log.open("w") as errors,
        redirect_stderr(errors),
        ThreadPoolExecutor(len(accounts)) as pool,
    ):
        found = list(
            pool.map(lambda a: probe_account(app, a, accounts, conversations, events), accounts)
        )
    return {
        "conversations": len(conversations),
        "calls": sum(f["calls"] for f in found),
        "leaks": [leak for f in found for leak in f["leaks"]],
        "foreign_reads": sum(len(f["foreign_reads"]) for f in found),
        "own_unseen": sum(len(f["own_unseen"]) for f in found),
        "conversation_lists_wrong": sum(f["list_wrong"] for f in found),
        "server_stderr": str(log),
    }
