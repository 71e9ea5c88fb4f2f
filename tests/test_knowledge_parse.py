"""Knowledge files become clean passages or are refused whole with one line: real PDFs, HTML,
Word and text files are written in each test, in the encodings and damage users bring."""

from __future__ import annotations

import hashlib
import io
import os
import random
import subprocess
import sys

import pytest

from feedback.knowledge.files import find_files
from feedback.knowledge.parse import (
    MB,
    DocumentError,
    Parsed,
    display_name,
    parse_bytes,
    parse_file,
    split,
)
from tests.conftest import ROOT

LIMIT = 5 * MB


def pdf_bytes(pages: list[str]) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=11)
    for text in pages:
        pdf.add_page()
        if text:
            pdf.multi_cell(0, 6, text)
        else:  # a "scanned" page: drawing, no text layer
            pdf.rect(20, 20, 100, 150, style="F")
    return bytes(pdf.output())


def encrypted(data: bytes, user: str, owner: str | None = None) -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user, owner_password=owner)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def refusal(name: str, data: bytes, max_bytes: int = LIMIT) -> str:
    """The one line a file is refused with."""
    with pytest.raises(DocumentError) as caught:
        parse_bytes(name, data, max_bytes)
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def page_text(n: int) -> str:
    words = " ".join(f"page{n}word{i}" for i in range(120))
    return f"Page {n} of the report.\n\n{words}"


# --- PDF ---------------------------------------------------------------------------------------


def test_a_pdf_passage_keeps_the_page_it_came_from():
    parsed = parse_bytes("report.pdf", pdf_bytes([page_text(n) for n in (1, 2, 3)]), LIMIT)
    assert parsed.kind == "pdf" and [page for page, _ in parsed.pages] == [1, 2, 3]
    passages = split(parsed, chunk_chars=300, overlap=40)
    assert {p.page for p in passages} == {1, 2, 3}
    for passage in passages:
        assert f"page{passage.page}word" in passage.text
        assert all(f"page{n}word" not in passage.text for n in {1, 2, 3} - {passage.page})


def test_an_encrypted_pdf_is_refused_with_one_line():
    data = encrypted(pdf_bytes([page_text(1)]), user="secret")
    message = refusal("report.pdf", data)
    assert message == (
        "report.pdf: the PDF is encrypted; remove its password (save an unencrypted copy) "
        "and add it again"
    )


def test_a_pdf_locked_only_against_editing_is_read():
    # An owner password without a user password: any reader opens it, so do we.
    data = encrypted(pdf_bytes([page_text(1)]), user="", owner="owner")
    assert "page1word7" in parse_bytes("locked.pdf", data, LIMIT).pages[0][1]


@pytest.mark.parametrize("keep", [0.5, 0.95, 0.05])
def test_a_truncated_pdf_is_refused_without_a_traceback(keep):
    data = pdf_bytes([page_text(n) for n in (1, 2)])
    message = refusal("report.pdf", data[: int(len(data) * keep)])
    assert message.startswith("report.pdf: the PDF is damaged or incomplete")


def test_a_pdf_with_no_text_layer_is_refused_as_probably_scanned():
    message = refusal("scan.pdf", pdf_bytes(["", ""]))
    assert message.startswith("scan.pdf: the PDF has no text layer (a scanned document?)")
    assert "OCR" in message


def test_a_pdf_page_without_text_is_left_out_and_the_others_keep_their_numbers():
    parsed = parse_bytes("mixed.pdf", pdf_bytes([page_text(1), "", page_text(3)]), LIMIT)
    assert [page for page, _ in parsed.pages] == [1, 3]


def test_garbage_named_pdf_is_refused_as_damaged():
    assert "damaged" in refusal("x.pdf", b"this is not a pdf at all\n" * 20)


# --- HTML and Word -----------------------------------------------------------------------------


def test_html_is_rendered_to_text_without_its_scripts_and_styles():
    page = (
        "<!doctype html><html><head><title>T</title>"
        "<style>body { color: SECRETSTYLE; }</style>"
        "<script>var SECRETSCRIPT = 1;</script></head>"
        "<body><h1>Heading</h1><p>First <b>bold</b> para.</p>"
        "<ul><li>one</li><li>two</li></ul>"
        "<table><tr><td>cell A</td><td>cell B</td></tr></table>"
        "<script type='module'>alert('SECRETSCRIPT2')</script></body></html>"
    )
    parsed = parse_bytes("page.html", page.encode(), LIMIT)
    text = parsed.pages[0][1]
    assert parsed.kind == "html" and parsed.pages[0][0] is None
    assert "SECRET" not in text and "<" not in text
    for expected in ("Heading", "First bold para.", "one", "two", "cell A", "cell B"):
        assert expected in text
    assert text.index("Heading") < text.index("First") < text.index("cell A")


def docx_bytes() -> bytes:
    import docx

    document = docx.Document()
    document.add_heading("Quarterly notes", level=1)
    document.add_paragraph("The first paragraph, café.")
    table = document.add_table(rows=2, cols=3)
    table.cell(0, 0).text = "Name"
    table.cell(0, 1).merge(table.cell(0, 2)).text = "Merged value"
    table.cell(1, 0).text = "Alpha"
    table.cell(1, 1).text = "Beta"
    document.add_paragraph("After the table.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def test_a_docx_gives_its_paragraphs_and_table_cells_in_order():
    parsed = parse_bytes("notes.docx", docx_bytes(), LIMIT)
    text = parsed.pages[0][1]
    assert parsed.kind == "docx"
    assert "Name | Merged value" in text  # a merged cell once, not once per column
    assert "Alpha | Beta" in text
    order = ["Quarterly notes", "The first paragraph, café.", "Name", "After the table."]
    assert [text.index(s) for s in order] == sorted(text.index(s) for s in order)


@pytest.mark.parametrize(
    "data", [b"PK\x03\x04 broken zip", b"\xd0\xcf\x11\xe0 old .doc", docx_bytes()[:500]]
)
def test_a_corrupt_docx_is_refused(data):
    message = refusal("notes.docx", data)
    assert message.startswith("notes.docx: not a valid Word .docx file")


def test_a_zip_that_is_not_a_word_document_is_refused():
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("hello.txt", "not word")
    assert "not a valid Word .docx" in refusal("fake.docx", out.getvalue())


# --- Text files and encodings ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("café naïve – “quoted”\n", "cp1252"),
        ("Le café était naïve – “quoted” déjà vu, €5.\n", "cp1252"),
        ("Grüße aus Köln, schön\n", "latin-1"),
        ("日本語のテキストです。これはテストです。\n", "shift_jis"),
        ("Привет, мир! Это проверка кодировки.\n", "cp1251"),
        ("Zażółć gęślą jaźń, dzień dobry. Miłego dnia!\n", "cp1250"),
        ("Příliš žluťoučký kůň úpěl ďábelské ódy.\n", "cp1250"),
        ("¿Dónde está la estación? ¡Señor, gracias!\n", "cp1252"),
        ("Ærøskøbing og Åbenrå: smørrebrød, 5 °C.\n", "latin-1"),
        ("with a BOM: naïve ✓\n", "utf-8-sig"),
        ("UTF-16 from Notepad: naïve ✓\n", "utf-16"),
        ("plain utf-8: 日本語 ✓\n", "utf-8"),
    ],
)
def test_text_in_legacy_and_unicode_encodings_comes_out_right(text, encoding):
    parsed = parse_bytes("notes.txt", text.encode(encoding), LIMIT)
    assert parsed.pages == ((None, text.strip()),)


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10" + bytes(range(256)),
        random.Random(7).randbytes(4096),
        random.Random(8).randbytes(4096).replace(b"\x00", b"\x01"),
        b"\x00" * 1000,
        b"text" + b"\x00\x01\x02\x03" * 50,
    ],
    ids=["png", "random", "random-without-nul", "zeros", "mostly-controls"],
)
@pytest.mark.parametrize("name", ["image.txt", "image.md"])
def test_a_binary_file_renamed_as_text_is_refused(name, data):
    assert refusal(name, data) == f"{name}: the file is not text (binary data?); add a text file"


def test_text_is_normalised_for_passages():
    raw = "Cafe\u0301 au lait\r\nline\x00 one\x1b  \r\rnext\tcol\n\n\n \n\x07the end   \n\n"
    assert parse_bytes("a.txt", raw.encode(), LIMIT).pages == (
        (None, "Café au lait\nline one\n\nnext\tcol\n\nthe end"),
    )


@pytest.mark.parametrize("data", [b"", b"   \n\n\t \r\n", b"\xef\xbb\xbf"])
def test_an_empty_file_is_refused(data):
    assert refusal("empty.txt", data) in (
        "empty.txt: the file is empty",
        "empty.txt: the file has no text",
    )


def test_a_file_over_the_limit_is_refused_naming_the_size_and_the_setting():
    message = refusal("big.txt", b"x" * (3 * MB), max_bytes=2 * MB)
    assert message == (
        "big.txt: the file is 3 MB, over the 2 MB limit (the setting knowledge_max_file_mb); "
        "split it or raise the limit"
    )


def test_a_file_over_the_limit_is_refused_before_it_is_read(tmp_path):
    huge = tmp_path / "huge.txt"
    with huge.open("wb") as f:
        f.truncate(64 * 1024 * MB)  # sparse: reading it would take minutes and 64 GB of memory
    with pytest.raises(
        DocumentError, match=r"^huge.txt: the file is 65536 MB, over the 1 MB limit"
    ):
        parse_file(huge, max_bytes=MB)


def test_a_file_is_parsed_from_disk(tmp_path):
    path = tmp_path / "sub" / "notes.md"
    path.parent.mkdir()
    path.write_text("# Title\n\nSome *text*.\n", encoding="utf-8")
    parsed = parse_file(path, LIMIT)
    data = path.read_bytes()
    assert (parsed.name, parsed.kind, parsed.size_bytes) == ("notes.md", "md", len(data))
    assert parsed.sha256 == hashlib.sha256(data).hexdigest()
    assert parsed == parse_bytes("notes.md", path.read_bytes(), LIMIT)


def test_a_missing_or_unreadable_path_is_refused_with_one_line(tmp_path):
    with pytest.raises(DocumentError, match=r"^gone.txt: could not read the file \(no such file"):
        parse_file(tmp_path / "gone.txt", LIMIT)
    (tmp_path / "folder.txt").mkdir()
    with pytest.raises(DocumentError, match=r"^folder.txt: not a regular file$"):
        parse_file(tmp_path / "folder.txt", LIMIT)


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("../../secret/report.txt", "report.txt"),
        ("a\\b.txt", "b.txt"),
        ("C:\\Users\\me\\notes.txt", "notes.txt"),
        ("\x00\x1b[31mred.txt", "red.txt"),
        ("invoice\u202etxt.exe.txt", "invoicetxt.exe.txt"),
        ("zero\u200bwidth  \t name.txt", "zerowidth name.txt"),
        ("  spaced\n\nout .txt ", "spaced out .txt"),
    ],
)
def test_a_file_name_is_shown_without_folders_or_invisible_characters(name, shown):
    assert display_name(name) == shown
    assert parse_bytes(name, b"hello", LIMIT).name == shown


@pytest.mark.parametrize("name", ["\x00\x1b[31m", "../", "a/..", "\u202e\u200b", "\t\n"])
def test_a_name_with_nothing_printable_is_refused(name):
    message = refusal(name, b"hello")
    assert message.endswith("the file name has no printable characters; rename the file")


@pytest.mark.parametrize("name", ["photo.png", "archive.tar.gz", "README"])
def test_an_unsupported_file_is_refused_listing_what_is_supported(name):
    message = refusal(name, b"hello")
    assert message.startswith(f"{name}: ") and "not supported" in message
    assert ".pdf" in message and ".docx" in message


# --- Splitting ---------------------------------------------------------------------------------


def long_text() -> Parsed:
    sentences = [f"Sentence number {i} says something about topic {i % 7}." for i in range(200)]
    paragraphs = ["  ".join(sentences[i : i + 9]) for i in range(0, 200, 9)]
    text = "\n\n".join(paragraphs)
    return Parsed(name="t.txt", kind="txt", sha256="0", size_bytes=len(text), pages=((None, text),))


def test_passages_fit_the_size_and_overlap_in_order():
    passages = split(long_text(), chunk_chars=300, overlap=80)
    assert len(passages) > 10
    assert [p.seq for p in passages] == list(range(len(passages)))
    assert all(0 < len(p.text) <= 300 and p.page is None for p in passages)
    shared = sum(1 for a, b in zip(passages, passages[1:], strict=False) if b.text[:30] in a.text)
    assert shared >= len(passages) // 2  # neighbours share text, unless a paragraph ends
    joined = " ".join(p.text for p in passages)
    assert all(f"Sentence number {i} " in joined for i in range(200))


def test_splitting_is_deterministic():
    assert split(long_text(), 250, 50) == split(long_text(), 250, 50)


def test_markdown_is_split_at_headings_first():
    body = "word " * 50
    text = "\n\n".join(f"## Section {i}\n\n{body.strip()}" for i in range(6))
    parsed = Parsed(name="m.md", kind="md", sha256="0", size_bytes=1, pages=((None, text),))
    passages = split(parsed, chunk_chars=300, overlap=0)
    assert [p.text.splitlines()[0] for p in passages] == [f"## Section {i}" for i in range(6)]


def test_whitespace_only_passages_are_dropped():
    parsed = Parsed(
        name="w.txt", kind="txt", sha256="0", size_bytes=1, pages=((None, "a"), (2, " \n "))
    )
    assert split(parsed) == [split(parsed)[0]] and split(parsed)[0].text == "a"


# --- Finding files -----------------------------------------------------------------------------


def test_a_folder_is_walked_in_order_skipping_hidden_files_and_outside_links(tmp_path):
    root, outside = tmp_path / "docs", tmp_path / "outside"
    for rel in ["b.txt", "a.md", "sub/z.pdf", "sub/deeper/c.HTML", "sub/x.docx", "photo.png"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    for rel in [".hidden.txt", ".git/config.md", "sub/.cache/d.txt"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    outside.mkdir()
    (outside / "secret.txt").write_text("x")
    (root / "link-out.txt").symlink_to(outside / "secret.txt")
    (root / "dir-out").symlink_to(outside, target_is_directory=True)
    (root / "link-in.md").symlink_to(root / "a.md")  # inside: listed once, as a.md
    single = tmp_path / ".given-directly.txt"
    single.write_text("x")

    files, skipped = find_files([root, single, root / "a.md", tmp_path / "missing"])
    assert [f.relative_to(tmp_path).as_posix() for f in files] == [
        "docs/a.md",
        "docs/b.txt",
        "docs/sub/x.docx",
        "docs/sub/z.pdf",
        "docs/sub/deeper/c.HTML",
        ".given-directly.txt",
    ]
    assert {(p.relative_to(tmp_path).as_posix(), why) for p, why in skipped} == {
        ("docs/dir-out", "a linked folder, not followed"),
        ("docs/link-out.txt", "a link to outside the folder"),
        ("docs/photo.png", ".png files are not supported"),
        ("missing", "no such file or folder"),
    }
    assert find_files([root, single]) == find_files([root, single])


# --- Import cost -------------------------------------------------------------------------------


def test_importing_the_parser_loads_none_of_the_heavy_libraries():
    probe = (
        "import sys, feedback.knowledge.parse\n"
        "heavy = ('pypdf', 'inscriptis', 'docx', 'charset_normalizer', 'langchain_text_splitters')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
