"""The pool from the command line: rate, correct, delete, export, with TRL's own format checks
on the exported files (datasets.load_dataset, then the model's chat template through TRL)."""

from __future__ import annotations

import json

import pytest

from assistant.chat import ChatService
from assistant.cli import main
from store.pool import PoolStore
from tests.fakes import ask


@pytest.fixture
def chat(store, settings, fake_model, curator):
    return ChatService(store, fake_model, settings, curator)


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def conversations(chat):
    """Three conversations as a user leaves them, before any feedback."""
    a = ask(chat, "What is the capital of Australia?", "Sydney is the capital.")
    b = ask(chat, "Who wrote Pride and Prejudice?", "Jane Austen wrote it.")
    follow = ask(chat, "When was it published?", "In 1813.", b.conversation_id)
    c = ask(chat, "Give me a fun fact about octopuses.", "They have three hearts.")
    chat.model.enqueue("Octopuses have blue blood.")
    *_, regen = chat.regenerate(c.conversation_id)
    return {"a": a, "b": b, "follow": follow, "c": c, "regen": regen}


def test_rating_correcting_and_deleting_from_the_cli(capsys, conversations, store):
    a, b = conversations["a"], conversations["b"]
    code, out, _ = cli(
        capsys, "rate", str(a.exchange_id), "down", "--reason", "wrong facts", "--comment", "no"
    )
    assert code == 0
    assert out == (
        f"Exchange {a.exchange_id}: thumbs down.\n"
        "Training pool: flagged (thumbs down (wrong facts)).\n"
    )
    code, out, _ = cli(
        capsys, "correct", str(a.exchange_id), "--text", "Canberra is the capital of Australia."
    )
    assert (code, out.splitlines()[-1]) == (0, "Training pool: train (a person wrote this answer).")
    code, out, _ = cli(capsys, "rate", str(b.exchange_id), "up")
    assert out.splitlines()[-1] == "Training pool: train (thumbs up)."
    code, out, _ = cli(capsys, "pool")
    assert out.splitlines()[:3] == [
        "status     source           exchanges",
        "train      human_approved           1",
        "train      human_written            1",
    ]
    code, out, _ = cli(capsys, "delete", str(b.conversation_id), "--yes")
    assert out == (
        f"Deleted conversation {b.conversation_id}: 4 messages, 2 exchanges. 1 left the "
        "training pool (1 were training examples); none will be in any future training set.\n"
    )
    assert PoolStore(store.engine).entry(b.exchange_id) is None


def test_cli_errors_are_one_readable_line(capsys, conversations):
    code, _, err = cli(capsys, "rate", "9999", "up")
    assert (code, err) == (1, "autodidact: exchange 9999 does not exist\n")
    code, _, err = cli(capsys, "correct", "1", "--text", "  ")
    assert (code, err) == (
        1,
        "autodidact: Write the better answer first: a correction cannot be empty.\n",
    )
    code, _, err = cli(capsys, "rate", "1", "up", "--comment", "nice")
    assert (code, err) == (1, "autodidact: reasons and comments go with a thumbs down\n")
    code, _, err = cli(capsys, "correct", "1", "--file", "/nonexistent/answer.txt")
    assert (code, err) == (1, "autodidact: /nonexistent/answer.txt: No such file or directory\n")
    code, _, err = cli(capsys, "export", "--format", "sft", "--out", "/proc/sft.jsonl")
    assert code == 1 and err.startswith("autodidact: /proc/") and "Traceback" not in err


def test_export_writes_trl_formats_that_load_and_pass_trl_checks(
    capsys, conversations, chat, tmp_path, embedded_path
):
    from datasets import load_dataset
    from transformers import AutoTokenizer
    from trl.data_utils import is_conversational, maybe_apply_chat_template

    a, follow, c, regen = (conversations[k] for k in ("a", "follow", "c", "regen"))
    chat.rate(a.exchange_id, -1, ["wrong facts"])
    chat.correct(a.exchange_id, "Canberra is the capital of Australia.")
    chat.rate(follow.exchange_id, 1)
    chat.rate(regen.exchange_id, 1)  # preferred over the answer it replaced
    files = {}
    for fmt in ("sft", "dpo", "kto"):
        files[fmt] = tmp_path / f"{fmt}.jsonl"
        code, out, _ = cli(capsys, "export", "--format", fmt, "--out", str(files[fmt]))
        assert code == 0
        files[fmt + "_summary"] = out.splitlines()[-1]
    assert files["sft_summary"] == (
        f"Wrote 3 sft record(s) to {files['sft']}: 2 human_approved, 1 human_written."
    )
    assert files["dpo_summary"] == (
        f"Wrote 2 dpo record(s) to {files['dpo']}: 1 correction, 1 preferred regeneration."
    )
    assert files["kto_summary"] == (
        f"Wrote 3 kto record(s) to {files['kto']}: 2 thumbs up, 1 thumbs down."
    )
    system = {"role": "system", "content": "You are a helpful assistant."}
    sft = [json.loads(line) for line in files["sft"].open()]
    assert sft[1] == {
        "messages": [
            system,
            {"role": "user", "content": "Who wrote Pride and Prejudice?"},
            {"role": "assistant", "content": "Jane Austen wrote it."},
            {"role": "user", "content": "When was it published?"},
            {"role": "assistant", "content": "In 1813."},
        ]
    }
    dpo = [json.loads(line) for line in files["dpo"].open()]
    assert dpo[0] == {
        "prompt": [system, {"role": "user", "content": "What is the capital of Australia?"}],
        "chosen": [{"role": "assistant", "content": "Canberra is the capital of Australia."}],
        "rejected": [{"role": "assistant", "content": "Sydney is the capital."}],
    }
    assert dpo[1]["chosen"][0]["content"] == "Octopuses have blue blood."
    assert dpo[1]["rejected"][0]["content"] == "They have three hearts."
    kto = [json.loads(line) for line in files["kto"].open()]
    assert [(r["completion"][0]["content"], r["label"]) for r in kto] == [
        ("Sydney is the capital.", False),
        ("In 1813.", True),
        ("Octopuses have blue blood.", True),
    ]
    tokenizer = AutoTokenizer.from_pretrained(
        str(embedded_path.parent), gguf_file=embedded_path.name
    )
    for fmt, keys in (
        ("sft", {"messages"}),
        ("dpo", {"prompt", "chosen", "rejected"}),
        ("kto", {"prompt", "completion", "label"}),
    ):
        data = load_dataset("json", data_files=str(files[fmt]), split="train")
        assert set(data.column_names) == keys
        for example in data:
            assert is_conversational(example)
            rendered = maybe_apply_chat_template(example, tokenizer)
            assert all(isinstance(v, str | bool) for v in rendered.values())
        if fmt == "dpo":
            assert rendered["chosen"] == "Octopuses have blue blood.<|im_end|>\n"


def test_a_deleted_conversation_is_never_exported(capsys, conversations, chat, tmp_path):
    b = conversations["b"]
    chat.rate(b.exchange_id, 1)
    chat.delete(b.conversation_id)
    out = tmp_path / "sft.jsonl"
    cli(capsys, "export", "--format", "sft", "--out", str(out))
    assert "Pride and Prejudice" not in out.read_text()


def test_naughty_strings_come_back_from_the_export_byte_for_byte(capsys, chat, settings, tmp_path):
    """Every string of the Big List of Naughty Strings, as question and as answer, rated up and
    exported: what comes back is the string itself (or its PII-masked form, where the masker
    found something)."""
    from assistant.chat import ChatRefused
    from feedback.pool.pii import mask
    from tests.conftest import DATA

    settings.retrieval = False
    # Keep every string, however alike: the embedder is uncased, so "True" and "TRUE" are one.
    chat.curator.config = chat.curator.config.__class__(dedup_similarity=1.01)
    strings = json.loads((DATA / "blns" / "blns.json").read_text())
    sent = []
    for s in strings:
        chat.model.enqueue(s)
        try:
            *_, final = chat.send(None, s)
        except ChatRefused:  # empty and whitespace-only messages are refused, as they should
            assert not s.strip()
            chat.model.replies.pop()
            continue
        if not chat.store.answer(final.exchange_id).strip():
            continue  # a blank answer is not stored for training
        chat.rate(final.exchange_id, 1)
        sent.append(s)
    out = tmp_path / "sft.jsonl"
    assert cli(capsys, "export", "--format", "sft", "--out", str(out))[0] == 0
    got = [json.loads(line)["messages"] for line in out.read_bytes().decode("utf-8").splitlines()]
    expected = [mask(s)[0] for s in sent]
    assert [m[1]["content"] for m in got] == expected
    assert [m[2]["content"] for m in got] == expected
    assert len(sent) > 480
