"""Learning: does the assistant learn invented facts from a user's corrections, through its API?

How (issue 14): the app as `autodidact serve` runs it, in this process (`create_app` + `launch`,
as bench/load.py does) over a new home, grading on, one account with an API token driven through
gradio_client's /chat, /history and /correct; the app's sampling with a fixed `--seed`, answers of
at most `--max-tokens`, no rate limit. Every question goes to a new conversation. The data is
bench/data/learning_facts.jsonl: a paraphrase is recalled when every keyword of its fact is in the
answer as a whole word, any case (a plural ending allowed; "any": one keyword is).
  0. Before teaching: every fact's 3 paraphrases (the floor) and the unrelated questions (the
     flag rate, and each question's baseline answer for the leakage check).
  1. Teach set A (`--set-a`, 2/3 of the facts): ask the fact's question, /correct the answer
     with the fact's answer. Retrieval on: A's paraphrases (retrieval recall).
  2. Stop the app; `autodidact refresh` in a subprocess on the home, with the `--refresh-*`
     flags (again with `--force` if too few new examples). A candidate the gate rejects is
     activated by the bench (store/adapters.py, `--promote-anyway`, on by default) so that its
     weights are measured; the output says which adapter was measured and how. Start the app
     with retrieval off, so only the weights answer: A's paraphrases, the unrelated questions.
  3. Retrieval on, the refresh-1 weights serving: teach set B (the rest), B's paraphrases; a
     second refresh; retrieval off: A's and B's paraphrases, the unrelated questions.
A refresh holds 10% of new pool entries out of training for good, so "trained" recall counts
only the facts whose correction is in the measured run's mix (table trained_on).
Quality: (a) held-out loss, the mean NLL per token of `--loss-rows` TruthfulQA human best answers
(tests/data/truthfulqa/dev.jsonl, never trained on), base vs each measured adapter's PEFT weights
(feedback/refresh/train.py); (b) the app's own flag rate on the unrelated answers, read once the
grading settled; (c) leakage: unrelated answers holding a taught fact's name or keyword
(learning_checks.names_of) that the same question's baseline answer did not.
Probe conversations are deleted once read, as a user can (otherwise the model's own answers to
the very paraphrases would be retrieved and trained on), each one at once and only while the
grader is idle, then one conversation is kept (`Session.delete`, `Session.sentinel` say why);
`--keep-probes` keeps them all.

    .venv/bin/python -m bench.learning [--facts 48] [--unrelated 24] [--set-a 32]
        [--max-tokens 96] [--seed 0] [--threads N] [--loss-rows 100] [--refresh-epochs N]
        [--refresh-learning-rate N] [--refresh-max-steps N] [--refresh-rank N]
        [--refresh-kl-weight N] [--refresh-eval-prompts N] [--no-promote-anyway]
        [--keep-probes] [--out FILE]
    .venv/bin/python -m bench.learning --facts 3 --unrelated 3 --refresh-max-steps 4 \
        --refresh-eval-prompts 4 --loss-rows 20 --threads 1 --out /tmp/learning.json  # smoke

Prints a table and writes bench/results/learning.json (or `--out`): the commit, the command,
the settings, each refresh's record, the time per kind of work and every answer. The full run
takes the machine (run it alone); estimated at about 35 minutes on the 2-core development
machine from the smoke runs' unit times: about 650 answers at ~0.9 s, 560 deletes at ~0.3 s,
130 grades at ~3 s, two refreshes of 80-110 steps at ~1.5-2 s plus DPO and a 16-prompt gate
(~5-6 min each). The smoke run above took 4.7 minutes on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from contextlib import ExitStack, contextmanager
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
    write_result,
)
from bench.learning_checks import (
    leaked,
    names_of,
    read_rows,
    recall,
    show,
    split,
    table_row,
)
from bench.learning_weights import held_out_loss, refresh, serve_weights
from store.restated import model_words

PASSWORD = "learning bench password"
SENTINEL = "Thank you, that is all for now."


def arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--facts", type=int, default=48, help="facts used (the first N)")
    p.add_argument("--unrelated", type=int, default=24, help="unrelated questions (first N)")
    p.add_argument("--set-a", type=int, default=None, help="facts taught first (default 2/3)")
    p.add_argument("--max-tokens", type=int, default=96, help="longest answer, in tokens")
    p.add_argument("--seed", type=int, default=0, help="the app's sampling seed (-1: random)")
    p.add_argument("--threads", type=int, default=None, help="app and refresh (default: all)")
    p.add_argument("--settle", type=float, default=600.0, help="most seconds to wait for grades")
    p.add_argument("--loss-rows", type=int, default=100, help="TruthfulQA answers for the loss")
    # Passed through to `autodidact refresh` when given; unset, the refresh runs at the product's
    # defaults (the figures docs/learning.md reports are at the defaults unless a row says not).
    p.add_argument("--refresh-epochs", type=float, default=None, help="default: the product's")
    p.add_argument(
        "--refresh-learning-rate", type=float, default=None, help="default: the product's"
    )
    p.add_argument("--refresh-max-steps", type=int, default=None, help="default: the product's")
    p.add_argument("--refresh-rank", type=int, default=None, help="default: the product's")
    p.add_argument("--refresh-kl-weight", type=float, default=None, help="default: the product's")
    p.add_argument("--refresh-dpo-steps", type=int, default=None, help="default: the product's")
    # The gate's pairwise judging of 64 prompts (the product's default) takes most of a refresh.
    p.add_argument("--refresh-eval-prompts", type=int, default=None, help="default: the product's")
    p.add_argument(
        "--promote-anyway",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="serve a candidate the gate rejected, to measure its weights",
    )
    p.add_argument("--keep-probes", action="store_true", help="do not delete probe conversations")
    p.add_argument("--home", type=Path, default=None, help="default: a new temporary folder")
    p.add_argument("--out", type=Path, default=RESULTS / "learning.json")
    args = p.parse_args()
    args.facts = min(args.facts, 48)
    if args.set_a is None:
        args.set_a = max(1, round(args.facts * 2 / 3))
    if not 0 < args.set_a < args.facts:
        p.error("--set-a must leave at least one fact for set B")
    return args


class Session:
    """The app over one home, one account and its gradio_client; restarted between phases."""

    def __init__(self, home: Path, args):
        self.home, self.args = home, args
        self.app = self.client = self.account = self.token = None
        self.running = ExitStack()  # the app while it runs
        self.timings: dict[str, list] = {}  # what: [times, seconds], for the runtime estimate
        self.sentinels: list[dict] = []

    @contextmanager
    def timed(self, what: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            spent = self.timings.setdefault(what, [0, 0.0])
            spent[0], spent[1] = spent[0] + 1, round(spent[1] + time.perf_counter() - start, 1)

    def start(self, retrieval: bool) -> None:
        from gradio_client import Client

        from store.accounts import AccountStore

        settings = {
            "max_tokens": self.args.max_tokens,
            "seed": self.args.seed,
            "retrieval": retrieval,
            "rate_limit_messages": 0,
            **({"threads": self.args.threads} if self.args.threads else {}),
            **getattr(self.args, "settings", {}),  # bench/memory.py's presentation and thresholds
        }
        with self.timed("start app"):
            self.app = self.running.enter_context(start_app(self.home, settings))
        accounts = AccountStore(self.app.store.engine)
        if self.account is None:
            self.account = accounts.add("learner", PASSWORD, "user")
            self.token = accounts.create_token("learner", "bench")
        headers = {"Authorization": f"Bearer {self.token}"}
        self.client = Client(self.app.url, headers=headers, verbose=False)

    def stop(self) -> None:
        self.client.close()
        self.running.close()
        self.app = None

    def ask(self, question: str) -> dict:
        """One question in a new conversation: the answer, its exchange and how it was made."""
        from sqlalchemy import text

        row = {"question": question, "answer": "", "error": None}
        query = text("SELECT adapter_id, retrieved, finish_reason FROM exchanges WHERE id = :i")
        try:
            with self.timed("ask"):
                answer, conversation = self.client.predict(question, "", api_name="/chat")
                turns = self.client.predict(str(conversation), api_name="/history")
            row.update(answer=answer, conversation=int(conversation))
            row["exchange_id"] = turns[-1]["exchange_id"]
            with self.app.store.engine.connect() as db:
                adapter, retrieved, finish = db.execute(query, {"i": row["exchange_id"]}).one()
            retrieved = json.loads(retrieved) if isinstance(retrieved, str) else retrieved
            row.update(adapter_id=adapter, retrieved=retrieved, finish_reason=finish)
        except Exception as exc:  # a failed question is a figure, not the end of the run
            row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        return row

    def correct(self, exchange_id: int, answer: str) -> dict:
        return self.client.predict(exchange_id, answer, api_name="/correct")

    def settle(self) -> None:
        """Wait until no grading job is pending or running, at most `--settle` s."""
        with self.timed("settle"):
            if settle(self.app, self.args.settle) < self.args.settle:
                time.sleep(2.0)  # the last grade's pool update follows its job's end

    def grade(self, rows: list[dict]) -> None:
        grades = self.app.grading.grades([r["exchange_id"] for r in rows if r.get("exchange_id")])
        for r in rows:
            if (g := grades.get(r.get("exchange_id"))) is not None:
                r.update(flagged=bool(g.flagged), score=round(g.score, 3), judge=g.judge_score)

    def delete(self, rows: list[dict]) -> None:
        """Delete the probes' conversations (out of the pool, retrieval and training), once
        the grader is between jobs: a delete rewrites the Chroma collections, and one that
        overlaps the grader's reads or writes of them corrupts Chroma's SQLite file."""
        if self.args.keep_probes:
            return
        with self.timed("delete"):
            while self.app.grading.counts().get("running"):
                time.sleep(2.0)  # then the pool update that follows a grade is done too
            for r in rows:
                if r.get("conversation"):
                    self.app.chat.delete(r["conversation"], self.account)

    def sentinel(self) -> None:
        """A conversation that is kept, so the next one's ids are new: SQLite hands the
        highest id to the next row again once its row is deleted, and the refresh (and the
        export) skip every exchange id on record as deleted, so a correction that got a
        deleted probe's id would never be trained on."""
        if not self.args.keep_probes:
            self.sentinels.append({"kind": "sentinel", **self.ask(SENTINEL)})


def paraphrases(session: Session, facts: list[dict], phase: str, bar) -> list[dict]:
    """Each paraphrase in a new conversation, deleted as soon as it is read (before the
    grader, idle after the settle, takes it up), then one kept conversation."""
    rows = []
    session.settle()
    task = bar.add_task(f"{phase}: paraphrases", total=3 * len(facts))
    for fact in facts:
        for i, question in enumerate(fact["paraphrases"]):
            row = {"phase": phase, "kind": "paraphrase", "fact": fact["id"], "paraphrase": i}
            row.update(session.ask(question))
            session.delete([row])
            row["recall_all"] = recall(fact["keywords"], row["answer"], "all")
            row["recall_any"] = recall(fact["keywords"], row["answer"], "any")
            row["restated"] = model_words(row["answer"]) != row["answer"]
            row["recall_model"] = recall(fact["keywords"], model_words(row["answer"]), "all")
            rows.append(row)
            bar.advance(task)
    session.sentinel()
    return rows


def unrelated_questions(
    session: Session, questions: list[dict], phase: str, bar, taught: list[dict], baseline: dict
) -> list[dict]:
    """The unrelated questions, graded by the app (read once grading settled), checked for
    taught names, then deleted."""
    rows = []
    task = bar.add_task(f"{phase}: unrelated", total=len(questions))
    names = {n for fact in taught for n in names_of(fact)}
    for q in questions:
        row = {"phase": phase, "kind": "unrelated", "id": q["id"], **session.ask(q["question"])}
        row["leaked"] = leaked(names, row["answer"], baseline.get(q["id"], ""))
        rows.append(row)
        bar.advance(task)
    session.sentinel()
    session.settle()
    session.grade(rows)
    session.delete(rows)
    return rows


def teach(session: Session, facts: list[dict], phase: str, bar) -> dict[str, dict]:
    """Ask each fact's question, then correct the answer with the fact's: {fact id: row}."""
    taught = {}
    task = bar.add_task(f"{phase}: teach", total=len(facts))
    for fact in facts:
        row = {"phase": phase, "kind": "teach", "fact": fact["id"], **session.ask(fact["question"])}
        if row.get("exchange_id"):
            try:
                row["correction"] = session.correct(row["exchange_id"], fact["answer"])
            except Exception as exc:
                row["error"] = f"correct: {type(exc).__name__}: {str(exc)[:300]}"
        taught[fact["id"]] = row
        bar.advance(task)
    return taught


class Learning:
    """One run's facts, its app session and what it measured so far, phase by phase."""

    def __init__(self, args):
        facts, unrelated = read_rows()
        self.args, self.facts, self.unrelated = (
            args,
            facts[: args.facts],
            unrelated[: args.unrelated],
        )
        self.set_a, self.set_b = split(self.facts, args.set_a)
        for f in self.facts:
            f["set"] = "A" if f in self.set_a else "B"
        self.home = args.home or new_home(prefix="autodidact-learning-")
        self.session = Session(self.home, args)
        self.rows, self.table, self.runs, self.served, self.losses = [], [], [], {}, {}
        self.taught, self.baseline = {}, {}  # fact id: its teach row; question id: answer

    def loss_of(self, adapter: str | None) -> float:
        if adapter not in self.losses:
            with self.session.timed("held-out loss"):
                self.losses[adapter] = held_out_loss(self.home, adapter, self.args.loss_rows)
        return self.losses[adapter]

    def before(self, bar) -> None:
        """0: every fact's paraphrases (the floor) and the unrelated questions, retrieval on."""
        session = self.session
        session.start(retrieval=True)
        floor = paraphrases(session, self.facts, "before", bar)
        before = unrelated_questions(session, self.unrelated, "before", bar, [], {})
        self.baseline = {r["id"]: r["answer"] for r in before}
        self.rows += floor + before
        for part in (self.set_a, self.set_b):
            self.table.append(
                table_row("0 before", floor, part, None, "on", self.loss_of(None), before)
            )

    def teach_a(self, bar) -> None:
        """1: teach set A, then A's paraphrases with retrieval on; the app stops."""
        self.taught = teach(self.session, self.set_a, "teach A", bar)
        retrieved = paraphrases(self.session, self.set_a, "A retrieval", bar)
        self.rows += [*self.taught.values(), *retrieved]
        loss = self.loss_of(None)
        self.table.append(table_row("1 taught A", retrieved, self.set_a, None, "on", loss))
        self.session.stop()

    def teach_b(self, bar) -> None:
        """3: teach set B with retrieval on, the refresh-1 weights serving; B's paraphrases."""
        self.session.start(retrieval=True)
        taught_b = teach(self.session, self.set_b, "teach B", bar)
        self.taught.update(taught_b)
        retrieved = paraphrases(self.session, self.set_b, "B retrieval", bar)
        self.rows += [*taught_b.values(), *retrieved]
        weights = self.served[1]["adapter"]
        loss = self.loss_of(weights)
        self.table.append(table_row("3 taught B", retrieved, self.set_b, weights, "on", loss))
        self.session.stop()

    def refresh_and_probe(self, n: int, sets: list[list[dict]], bar) -> None:
        """2 and 4: refresh `n` with the app stopped, then with retrieval off (the weights
        alone) the paraphrases of `sets` and the unrelated questions."""
        session = self.session
        bar.console.print(f"refresh {n} (the app stopped) ...")
        with session.timed("refresh"):
            self.runs.append(run := refresh(self.home, self.args, n))
        weights, how = serve_weights(self.home, run, self.args)
        self.served[n] = {"adapter": weights, "how": how, "status": run["status"]}
        bar.console.print(f"refresh {n}: {run['status']}; weights measured: {weights}, {how}")
        mix = next((set(r["mix"]) for r in self.runs if r["adapter_id"] == weights), set())
        trained = {f for f, r in self.taught.items() if r.get("exchange_id") in mix}
        session.start(retrieval=False)
        phase = f"refresh {n} weights"
        probe = paraphrases(session, [f for s in sets for f in s], phase, bar)
        known = [f for f in self.facts if f["id"] in self.taught]
        unrel = unrelated_questions(session, self.unrelated, phase, bar, known, self.baseline)
        self.rows += probe + unrel
        session.stop()
        loss = self.loss_of(weights)
        for part in sets:
            label = f"{2 * n} after refresh {n}"
            self.table.append(table_row(label, probe, part, weights, "off", loss, unrel, trained))


def measure(args) -> dict:
    """Every phase in turn; after each, what was measured so far is written to `--out`
    (marked partial), so a run stopped part way keeps its figures."""
    run = Learning(args)
    started, code = time.perf_counter(), commit()  # the code that runs, not HEAD at the end
    print(f"home {run.home}; set A {len(run.set_a)} facts, set B {len(run.set_b)}", flush=True)
    run.loss_of(None)
    error = None
    phases = [
        run.before,
        run.teach_a,
        lambda bar: run.refresh_and_probe(1, [run.set_a], bar),
        run.teach_b,
        lambda bar: run.refresh_and_probe(2, [run.set_a, run.set_b], bar),
    ]
    try:
        with progress() as bar:
            for phase in phases:
                phase(bar)
                partial = outcome(run, args, code, started, None) | {"partial": True}
                write_result(partial, args.out)
    except Exception:  # keep what was measured, with the traceback
        error = traceback.format_exc()
        print(error, file=sys.stderr)
        if run.session.app is not None:
            run.session.stop()
    return outcome(run, args, code, started, error) | {"partial": False}


def outcome(run: Learning, args, code: str, started: float, error: str | None) -> dict:
    """What `run` measured so far, with how it was run: the result file's contents."""
    return {
        "commit": code,
        "command": command_line(),
        "when": datetime.now().isoformat(timespec="seconds"),
        "home": str(run.home),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "wall_s": round(time.perf_counter() - started, 1),
        "sets": {"A": [f["id"] for f in run.set_a], "B": [f["id"] for f in run.set_b]},
        "served": run.served,
        "heldout_loss": {str(k or "base"): v for k, v in run.losses.items()},
        "timings": {k: {"times": n, "seconds": t} for k, (n, t) in run.session.timings.items()},
        "table": run.table,
        "refreshes": run.runs,
        "answers": run.rows + run.session.sentinels,
        "error": error,
    }


def main() -> int:
    args = arguments()
    result = measure(args)
    show(result)
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
