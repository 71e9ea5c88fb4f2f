"""`autodidact knowledge add | list | remove` as a user runs them: real SQLite, real Chroma and
the real embedder, in-process through `main` and as a subprocess where exit codes, tracebacks
and Ctrl-C are the point."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from assistant.cli import main
from assistant.cli.knowledge import human_size
from store.vectors import KnowledgeIndex
from tests.conftest import ROOT

GOOD = "\n\n".join(
    f"Paragraph {i}. Canberra is the capital of Australia; it was chosen in 1908 as a "
    "compromise between Sydney and Melbourne. " * 4
    for i in range(4)
)


def knowledge(*args, env=None, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "assistant.cli", "knowledge", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main(["knowledge", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def folder(tmp_path):
    """A good Markdown file, an empty .txt and a binary file renamed .txt, one a folder down."""
    docs = tmp_path / "docs"
    (docs / "more").mkdir(parents=True)
    (docs / "canberra.md").write_text("# Canberra\n\n" + GOOD, encoding="utf-8")
    (docs / "empty.txt").write_bytes(b"")
    (docs / "more" / "program.txt").write_bytes(bytes(range(256)) * 40)
    return docs


def test_adding_a_folder_adds_the_good_file_and_gives_each_refused_one_a_line(folder):
    done = knowledge("add", folder)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line for line in lines if line.startswith("canberra.md: added, ")] != []
    assert [line for line in lines if line.startswith("empty.txt: ")] == [
        "empty.txt: the file is empty"
    ]
    assert len([line for line in lines if line.startswith("program.txt: ")]) == 1
    assert lines[-1].startswith("1 added, 0 replaced, 0 unchanged, 2 refused; ")


def test_adding_the_same_folder_again_leaves_every_file_unchanged(capsys, folder):
    cli(capsys, "add", folder)
    code, out, _ = cli(capsys, "add", folder)
    assert code == 1  # the two bad files are still refused
    assert "canberra.md: unchanged, already added" in out.splitlines()
    assert out.splitlines()[-1].startswith("0 added, 0 replaced, 1 unchanged, 2 refused; 0 new")


def test_adding_only_good_files_exits_0(capsys, folder):
    code, out, _ = cli(capsys, "add", folder / "canberra.md")
    assert code == 0
    assert out.splitlines()[-1].startswith("1 added, 0 replaced, 0 unchanged, 0 refused; ")


def test_list_shows_each_document_with_its_passages_and_json_for_programs(capsys, folder):
    assert cli(capsys, "list")[1] == (
        "No documents yet: add some with `autodidact knowledge add PATH`.\n"
    )
    assert json.loads(cli(capsys, "list", "--json")[1]) == []
    cli(capsys, "add", folder)
    code, out, _ = cli(capsys, "list", "--json")
    (doc,) = json.loads(out)
    assert code == 0
    assert (doc["name"], doc["kind"], doc["size_bytes"]) == (
        "canberra.md",
        "md",
        (folder / "canberra.md").stat().st_size,
    )
    assert doc["passages"] > 1
    code, out, _ = cli(capsys, "list")
    header, row = out.splitlines()
    assert header.split() == ["id", "name", "kind", "size", "passages", "added", "updated"]
    size = human_size(doc["size_bytes"])
    assert " ".join(row.split()[:6]) == f"{doc['id']} canberra.md md {size} {doc['passages']}"


def test_removing_a_document_drops_its_rows_and_its_vectors(capsys, folder, home):
    cli(capsys, "add", folder)
    (doc,) = json.loads(cli(capsys, "list", "--json")[1])
    assert KnowledgeIndex.open(home / "chroma").count() == doc["passages"]
    code, out, _ = cli(capsys, "remove", doc["id"])
    assert code == 0
    assert (
        out == f"Removed document {doc['id']} “canberra.md” and its {doc['passages']} passage(s).\n"
    )
    assert json.loads(cli(capsys, "list", "--json")[1]) == []
    assert KnowledgeIndex.open(home / "chroma").count() == 0


def test_removing_an_unknown_id_is_one_line_and_exit_1():
    done = knowledge("remove", 42)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == "autodidact: there is no document 42\n"


def test_a_path_that_does_not_exist_is_one_line_naming_it(tmp_path):
    missing = tmp_path / "nowhere" / "notes.md"
    done = knowledge("add", missing)
    assert done.returncode == 1
    assert done.stdout.splitlines()[0] == f"{missing}: no such file or folder"
    assert done.stdout.splitlines()[1].startswith("0 added, 0 replaced, 0 unchanged, 1 refused")
    assert done.stderr == ""


def test_settings_flags_work_before_and_after_the_action(capsys, folder, tmp_path):
    other = tmp_path / "other"
    code, _, _ = cli(capsys, "add", folder / "canberra.md", "--home", other)
    assert code == 0
    assert len(json.loads(cli(capsys, "--home", other, "list", "--json")[1])) == 1
    assert len(json.loads(cli(capsys, "list", "--json", "--home", other)[1])) == 1
    assert json.loads(cli(capsys, "list", "--json")[1]) == []  # AUTODIDACT_HOME is untouched


def test_ctrl_c_mid_folder_keeps_whole_files_and_the_same_command_resumes(tmp_path, home):
    docs = tmp_path / "many"
    docs.mkdir()
    for i in range(30):
        (docs / f"note{i:02}.md").write_text(f"Note {i}.\n\n" + GOOD, encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "assistant.cli", "knowledge", "add", str(docs)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    first = proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert first.startswith("note00.md: added, ")
    assert proc.returncode == 130 and "Traceback" not in err
    done = (first + out).count(": added, ")
    assert 0 < done < 30
    assert f"Stopped after {done} of 30 file(s)" in out
    again = knowledge("add", docs)
    assert again.returncode == 0
    assert again.stdout.splitlines()[-1].startswith(
        f"{30 - done} added, 0 replaced, {done} unchanged"
    )
    documents = json.loads(knowledge("list", "--json").stdout)
    assert len(documents) == 30
    assert KnowledgeIndex.open(home / "chroma").count() == sum(d["passages"] for d in documents)


def test_knowledge_commands_never_import_gradio_or_torch(folder):
    probe = (
        "import sys\n"
        "from assistant.cli import main\n"
        f"assert main(['knowledge', 'add', {str(folder / 'canberra.md')!r}]) == 0\n"
        "assert main(['knowledge', 'list']) == 0\n"
        "assert main(['knowledge', 'remove', '1']) == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('gradio', 'torch')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
