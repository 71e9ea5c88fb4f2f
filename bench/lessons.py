"""Lessons: do the weights learn taught facts better from the model's own graded lessons?

A component benchmark of the refresh's data (issue 25), at the product's default settings:
facts from bench/data/learning_facts.jsonl are taught as a user does (a question, then a
correction of the model's answer, through the chat service: real SQLite, real Chroma). Then:
  - synthesis: the embedded model writes lessons from each correction and the product's grader
    grades them against it (feedback/synthesis, the refresh's step, defaults);
  - rehearsal, as a refresh does it: the base model answers a neighbour of each fact (a
    question of the same kind about another subject the model wrote, `synthesis_neighbours`
    tries) and `--rehearsal` of the shipped general prompts, graded; those not flagged, the
    neighbours first (at most one per correction in all, the human-share cap), are the
    third arm's;
  - arms, each one LoRA trained by the product's trainer (feedback/refresh/train.py) at the
    default TrainConfig from a fresh base: `corrections` (the corrections alone, as the pool
    gives them), `+ lessons` (and up to `refresh_lessons_per_parent` kept lessons each) and
    `+ lessons + rehearsal`;
  - each adapter exported to GGUF and served by llama.cpp (the product's path), retrieval off:
    the facts' reworded questions, each in a new conversation, greedy; recalled when every
    keyword of the fact is in the answer (bench/learning_checks.py `recall`);
  - general loss: the mean NLL of the 64 general answers the refresh gate uses, against the
    base model's (the same yardstick the gate reads);
  - known answers lost: of the gate's known questions the base model answers right
    (feedback/refresh/known.py), how many the adapter gets wrong (the gate counts it net of those gained);
  - taught names in them: known questions whose answer now holds a taught fact's name that
    the base model's answer did not (the leak bench/learning.py counts on its own questions).
It is not bench/learning.py: no app, no gate, no second refresh, no flag rate.

    .venv/bin/python -m bench.lessons [--facts 16] [--skip 0] [--threads N] [--out FILE]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from bench.harness import RESULTS, command_line, commit, new_home, table, write_result
from bench.learning_checks import read_rows, recall


def arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--facts", type=int, default=16, help="facts taught (N, from --skip on)")
    p.add_argument(
        "--skip",
        type=int,
        default=0,
        help="facts passed over first: another set of N to check on (with a fresh home)",
    )
    p.add_argument("--threads", type=int, default=None, help="llama.cpp and torch threads")
    p.add_argument("--max-tokens", type=int, default=48, help="longest probe answer")
    p.add_argument("--rehearsal", type=int, default=32, help="rehearsal prompts answered")
    p.add_argument("--epochs", type=float, default=None, help="default: the product's")
    p.add_argument("--learning-rate", type=float, default=None, help="default: the product's")
    p.add_argument("--max-steps", type=int, default=None, help="default: the product's")
    p.add_argument(
        "--home", type=Path, help="an earlier run's home: its facts and lessons are reused"
    )
    p.add_argument(
        "--arms", nargs="*", default=list(ARMS), choices=list(ARMS),
        help="which of the three mixes to train (all by default)",
    )  # fmt: skip
    p.add_argument(
        "--variant", action="append", default=[], type=variant, metavar="NAME:KEY=VALUE,...",
        help="one more arm: lessons + rehearsal with these training settings changed (rank, "
        "alpha, learning_rate, epochs, max_steps, kl_weight, kl_spare_new (1/0), targets as a+b, rehearsal: the most "
        "rehearsal answers, as a multiple of the corrections; neighbours: tries at a "
        "neighbour per fact, 0 for none; dpo: 1 for DPO on the corrections' preference pairs "
        "after SFT, as a refresh runs it, at dpo_steps and dpo_learning_rate); repeatable",
    )  # fmt: skip
    p.add_argument("--out", type=Path, default=RESULTS / "lessons.json")
    return p.parse_args()


ARMS = ("corrections", "+ lessons", "+ lessons + rehearsal")
KNOBS = {"rank": int, "alpha": float, "learning_rate": float, "epochs": float,
         "max_steps": int, "kl_weight": float, "kl_spare_new": lambda v: ["0", "1"].index(v) == 1, "targets": lambda v: v.split("+"), "rehearsal": float,
         "neighbours": int, "dpo": lambda v: ["0", "1"].index(v) == 1,
         "dpo_steps": int, "dpo_learning_rate": float}  # fmt: skip


def variant(text: str) -> tuple[str, dict]:
    """`--variant` parsed: (name, {setting: value}).

    >>> variant("mlp:learning_rate=1e-3,targets=up_proj+down_proj")
    ('mlp', {'learning_rate': 0.001, 'targets': ['up_proj', 'down_proj']})
    >>> variant("spare:kl_spare_new=1")
    ('spare', {'kl_spare_new': True})
    """
    name, _, rest = text.partition(":")
    pairs = [kv.split("=", 1) for kv in rest.split(",") if kv]
    unknown = [k for k, _ in pairs if k not in KNOBS]
    if unknown or not name or name in ARMS or name == "base":
        raise argparse.ArgumentTypeError(
            f"bad variant {text!r}: name it other than an arm; known keys are {list(KNOBS)}"
        )
    return name, {k: KNOBS[k](v) for k, v in pairs}


def rehearsal_answers(synth, home: Path, n: int, system: str) -> tuple[list[dict], dict]:
    """The base model's graded answers to `n` shipped general prompts, kept in the home so
    a rerun with `--home` does not answer them again (an answer kept from before 2026-12-07
    to a prompt the gate asks is dropped: those prompts were replaced)."""
    from feedback.refresh.known import gate_questions
    from feedback.refresh.rules import rehearsal_prompts
    from feedback.synthesis.rules import words

    records, figures = saved_answers(
        synth, home / f"rehearsal-{n}.json", lambda: rehearsal_prompts(n), system
    )
    gate = {words(q) for q in gate_questions()}
    kept = [r for r in records if words(r["messages"][-2]["content"]) not in gate]
    return kept, figures | {"dropped_as_gate_questions": len(records) - len(kept)}


def neighbour_answers(synth, home: Path, tries: int, parents, system: str):
    """The base model's graded answers to the facts' neighbours, as a refresh rehearses them
    (feedback/refresh/pipeline.py `_rehearse`), kept in the home like the general ones."""
    from feedback.refresh.known import gate_questions

    if not tries:
        return [], {"tries": 0}
    synth.config = replace(synth.config, neighbours=tries)
    written = {}

    def questions() -> list[str]:
        taught = [e.prompt for e in parents]
        found, written["questions"] = synth.neighbours(parents, measured=gate_questions() + taught)
        return found

    records, answered = saved_answers(synth, home / f"neighbours-{tries}.json", questions, system)
    return records, answered | written


def saved_answers(synth, saved: Path, prompts, system: str) -> tuple[list[dict], dict]:
    import json

    from feedback.refresh.pipeline import REHEARSAL_SAMPLING

    if saved.exists():
        data = json.loads(saved.read_text())
        return data["records"], data["figures"] | {"reused": True}
    records, figures = synth.rehearse(prompts(), system, REHEARSAL_SAMPLING)
    saved.write_text(json.dumps({"records": records, "figures": figures}))
    return records, figures


def leaks(known: dict, facts: list[dict]) -> list[dict]:
    """The known questions whose answer now holds a taught name its base answer did not
    (bench/learning_checks.py `leaked`), each with the names."""
    from bench.learning_checks import leaked, names_of

    taught = set().union(*(names_of(f) for f in facts))
    found = [(a, leaked(taught, a["candidate"], a["base"])) for a in known["answers"]]
    return [{"question": a["question"], "answer": a["candidate"][:200], "names": n}
            for a, n in found if n]  # fmt: skip


def teach(settings, facts: list[dict]) -> None:
    """Each fact asked, answered by a stand-in and corrected by the user: the pool's parents."""
    from assistant.wiring import chat_service
    from store.db import open_database
    from tests.fakes import FakeModel

    model = FakeModel()
    chat = chat_service(settings, open_database(settings.effective_database_url), model)
    for fact in facts:
        model.enqueue("I am not sure.")
        *_, final = chat.send(None, fact["question"])
        chat.correct(final.exchange_id, fact["answer"])


def probe(llama, facts: list[dict], system: str, max_tokens: int) -> tuple[float, list[dict]]:
    rows = []
    for fact in facts:
        for question in fact["paraphrases"]:
            messages = [
                {"role": "system", "content": system},
                {"role": "user", "content": question},
            ]
            sampling = {"temperature": 0.0, "max_tokens": max_tokens, "seed": 0}
            answer = "".join(d.text for d in llama.stream(messages, sampling))
            rows.append({"id": fact["id"], "question": question, "answer": answer,
                         "recalled": recall(fact["keywords"], answer)})  # fmt: skip
    return round(sum(r["recalled"] for r in rows) / len(rows), 4), rows


def train_arm(
    settings, path: Path, records: list[dict], folder: Path, train, pairs=()
) -> tuple[Path, dict, float]:
    """A LoRA on `records` at `train` (a TrainConfig), then DPO on `pairs` as a refresh runs
    it (`train_dpo`, its `dpo_*` settings) when any are given, exported; (GGUF adapter, info,
    general loss)."""
    from feedback.refresh.gguf_export import export_peft
    from feedback.refresh.rules import general_records
    from feedback.refresh.train import completion_loss, load_base, train_dpo, train_lora

    base, tokenizer = load_base(path, settings.home_dir / "cache" / "base")
    info = train_lora(base, tokenizer, records, folder / "peft", train)
    model = info.pop("model")
    if pairs:
        dpo = train_dpo(model, tokenizer, list(pairs), folder / "peft", train, train.max_seconds)
        model = dpo.pop("model")
        info["dpo"] = dpo
    head = [{"role": "system", "content": settings.system_prompt}]
    general = [{"messages": head + r["messages"]} for r in general_records()]
    loss = completion_loss(model, tokenizer, general)
    cfg = model.base_model.model.config
    adapter = export_peft(
        folder / "peft", folder / "adapter.gguf", path, cfg.num_hidden_layers,
        cfg.num_attention_heads, cfg.num_key_value_heads,
    )  # fmt: skip
    return adapter, info, loss


def base_loss(settings, path: Path) -> float:
    from feedback.refresh.rules import general_records
    from feedback.refresh.train import completion_loss, load_base

    base, tokenizer = load_base(path, settings.home_dir / "cache" / "base")
    head = [{"role": "system", "content": settings.system_prompt}]
    return completion_loss(
        base, tokenizer, [{"messages": head + r["messages"]} for r in general_records()]
    )


def arms_of(args, settings, synth, home: Path, parents: dict, taught, train, out: dict):
    """(name, records, TrainConfig) of each arm asked for; `taught`: the corrections and
    their lessons. Rehearsal as a refresh does it: the neighbours first, the general answers
    after, capped like model-only data (at most as many as the corrections by default)."""
    answered, out["rehearsal"] = rehearsal_answers(
        synth, home, args.rehearsal, settings.system_prompt
    )
    near = {}

    def rehearsed(tries: int, cap: int) -> list[dict]:
        if tries not in near:
            near[tries], out.setdefault("neighbours", {})[tries] = neighbour_answers(
                synth, home, tries, list(parents.values()), settings.system_prompt
            )
        return (near[tries] + answered)[:cap]

    tries, n = settings.synthesis_neighbours, len(parents)
    mixes = {
        "corrections": taught[:n],
        "+ lessons": taught,
        "+ lessons + rehearsal": taught + rehearsed(tries, n),
    }
    arms = [(name, mixes[name], train, False) for name in args.arms]
    for name, knobs in args.variant:
        cap = round(knobs.pop("rehearsal", 1.0) * n)
        near_tries = knobs.pop("neighbours", tries)
        dpo = knobs.pop("dpo", False)
        if dpo:  # off by default since 2026-12-07: the steps it ran before, unless given
            knobs.setdefault("dpo_steps", train.dpo_steps or 20)
        records = rehearsed(near_tries, cap)
        arms.append((name, taught + records, replace(train, **knobs), dpo))
        out.setdefault("variants", {})[name] = knobs | {"rehearsal": len(records),
                                                        "neighbours": near_tries, "dpo": dpo}  # fmt: skip
    return arms


def measure(args) -> dict:
    from assistant.llm.embedder import Embedder
    from assistant.settings import Settings
    from assistant.wiring import build_synthesizer, local_model, refresh_config
    from feedback.pool.records import lesson_record, preference_pairs, sft_record
    from feedback.refresh.rules import per_parent
    from store.db import open_database
    from store.lessons import LessonStore
    from store.pool import PoolStore

    home = args.home or new_home("autodidact-lessons-")
    flags = {"home": home} | ({"threads": args.threads} if args.threads else {})
    overrides = {"epochs": args.epochs, "learning_rate": args.learning_rate,
                 "max_steps": args.max_steps}  # fmt: skip
    flags |= {f"refresh_{k}": v for k, v in overrides.items() if v is not None}
    settings = Settings(**flags)
    facts = read_rows()[0][args.skip : args.skip + args.facts]
    if args.home is None:
        teach(settings, facts)
    path, llama = local_model(settings)
    engine = open_database(settings.effective_database_url)
    synth = build_synthesizer(settings, engine, llama, None, Embedder())
    report = synth.run(lambda n, total, msg: print(f"  synthesis {n}/{total} {msg}"))
    parents = {e.exchange_id: e for e in PoolStore(engine).train_entries()}
    corrections = [sft_record(e, settings.system_prompt) for e in parents.values()]
    kept = per_parent(LessonStore(engine).kept(), parents, settings.refresh_lessons_per_parent)
    lessons = [lesson_record(x, p, settings.system_prompt) for x, p in kept]
    train = refresh_config(settings).train
    out = {"commit": commit(), "command": command_line(), "facts": len(facts),
           "train": {k: getattr(train, k) for k in ("rank", "learning_rate", "epochs", "max_steps", "kl_weight", "kl_spare_new")},
           "skip": args.skip,
           "synthesis": report.to_json(), "lessons_in_mix": len(lessons), "arms": {}}  # fmt: skip
    from feedback.refresh.known import known_figures

    floor, rows = probe(llama, facts, settings.system_prompt, args.max_tokens)
    out["known_base_right"] = known_figures(llama, None)["base_right"]
    out["arms"]["base"] = {
        "recall": floor,
        "known_lost": 0,
        "general_loss": base_loss(settings, path),
        "answers": rows,
    }
    arms = arms_of(args, settings, synth, home, parents, corrections + lessons, train, out)
    pairs = [record for record, _, _ in preference_pairs(PoolStore(engine), settings.system_prompt)]
    for name, records, config, dpo in arms:
        t = time.monotonic()
        folder = home / name.replace("+ ", "").replace(" ", "-")
        adapter, info, loss = train_arm(
            settings, path, records, folder, config, pairs if dpo else ()
        )
        llama.set_adapter(adapter, name)
        recalled, rows = probe(llama, facts, settings.system_prompt, args.max_tokens)
        llama.set_adapter(None)
        known = known_figures(llama, adapter, keep_answers=True)
        out["arms"][name] = {"recall": recalled, "general_loss": loss, "records": len(records),
                             "known_lost": len(known["lost"]), "known": known,
                             "leaks": leaks(known, facts),
                             "steps": info["steps"], "train_seconds": info["seconds"],
                             "dpo": info.get("dpo"),
                             "seconds": round(time.monotonic() - t, 1), "answers": rows}  # fmt: skip
    return out


def main() -> int:
    args = arguments()
    result = measure(args)
    base = result["arms"]["base"]["general_loss"]
    rows = [
        [name, a.get("records", "-"), a.get("steps", "-"), f"{a['recall']:.1%}",
         f"{a['general_loss']:.3f} ({(a['general_loss'] / base - 1):+.1%})",
         f"{a['known_lost']} lost, {a.get('known', {}).get('gained', 0)} gained of "
         f"{result['known_base_right']}", len(a.get("leaks", [])) if "leaks" in a else "-"]
        for name, a in result["arms"].items()
    ]  # fmt: skip
    syn = result["synthesis"]
    title = (f"{result['facts']} facts at {result['commit']}, training {result['train']}; "
             f"lessons: {syn['kept']} kept of "
             f"{syn['written']} written (pass rate {syn['pass_rate']}) in {syn['seconds']} s")  # fmt: skip
    head = ["arm", "records", "steps", "weights-only recall", "general loss (vs base)",
            "known answers", "taught names in them"]  # fmt: skip
    table(title, head, rows)
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
