"""What each llama.cpp context the app holds costs in memory.

The app serving the local GGUF holds up to three contexts on one model file: the chat's, the
background grader's (`grading_own_context`: its own cache, so a grade does not evict the chat's
cached prompt) and the judge's on the base weights (`grading_judge_base`: an adapter never
judges its own answers). Each is opened as the app opens it (assistant/wiring.py), answers a
long prompt and scores a long answer (so its buffers are allocated), and the process's memory
is read from /proc/self/smaps_rollup after each: resident, proportional (a page shared between mappings
counted once) and anonymous (the context's own: KV cache, compute and output buffers, what
it reads from the file at load). Each context maps the weights from the file again: resident
memory counts them once per context, the page cache holds them once.

    .venv/bin/python -m bench.contexts [--threads 2] [--out bench/results/contexts.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.harness import RESULTS, command_line, commit, table, write_result

FIELDS = {"Rss": "resident", "Pss": "proportional", "Anonymous": "anonymous"}


def memory_mib() -> dict[str, float]:
    """The process's resident, proportional and anonymous memory in MiB."""
    out = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in FIELDS:
            out[FIELDS[key]] = round(int(rest.split()[0]) / 1024, 1)
    return out


# A long message (about 700 tokens) and a long answer: each context's buffers are touched as a
# busy app touches them (a long prompt processed in batches; the grader's log-probabilities
# ask for the logits at every answer position, a buffer llama.cpp grows and keeps).
LONG = " ".join(["The lighthouse keeper counted the ships that passed the island each night."] * 50)
ANSWER = " ".join(["She wrote each ship's name in a blue notebook by the lamp."] * 20)


def used(model) -> None:
    """A long prompt answered in a few tokens, then the log-probabilities of a long answer
    (the grader's signal): llama.cpp allocates a context's buffers as it first runs them."""
    messages = [{"role": "user", "content": LONG}]
    for _ in model.stream(messages, {"max_tokens": 8, "temperature": 0.0}):
        pass
    model.token_logprobs(messages, ANSWER)


def measure(threads: int | None) -> dict:
    """Memory after each context the app would open with these settings (threads None: the
    settings' default), each opened as assistant/wiring.py opens it and used."""
    import assistant.llm.llama  # noqa: F401 - llama.cpp loaded before the first reading
    from assistant.settings import Settings
    from assistant.wiring import base_judge, grading_model, local_model

    settings = Settings(**({"threads": threads} if threads else {}))
    rows = [{"context": "none (the process, llama.cpp loaded)", **memory_mib()}]
    _, chat = local_model(settings)
    used(chat)
    rows.append({"context": "+ the chat's", **memory_mib()})
    grading = grading_model(settings, chat)
    if grading is not chat:
        used(grading)
        rows.append({"context": "+ the grader's (grading_own_context)", **memory_mib()})
    judge = base_judge(settings, chat)
    if judge is not None:
        used(judge)
        rows.append({"context": "+ the judge's on the base (grading_judge_base)", **memory_mib()})
    for before, after in zip(rows, rows[1:], strict=False):
        after["added"] = {k: round(after[k] - before[k], 1) for k in FIELDS.values()}
    return {
        "commit": commit(),
        "command": command_line(),
        "model": chat.model_id,
        "context_window": settings.context_window,
        "rows": rows,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=RESULTS / "contexts.json")
    args = p.parse_args()
    out = measure(args.threads)
    rows = [
        [r["context"], *(r[k] for k in FIELDS.values()), r.get("added", {}).get("anonymous")]
        for r in out["rows"]
    ]
    title = f"{out['model']}, context window {out['context_window']}, at {out['commit']} (MiB)"
    table(title, ["contexts held", *FIELDS.values(), "anonymous added"], rows)
    write_result(out, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
