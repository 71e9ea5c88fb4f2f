"""From a knowledge file to clean text passages, or one line saying why not.

Owns reading the supported kinds (plain text and Markdown in any common encoding, PDF, HTML,
Word .docx), normalising their text, splitting it into passages that remember their PDF page,
and walking folders for files to add. A file is parsed whole or refused whole with a
`DocumentError`: one line naming the file and what the user can do, never a traceback. Does not
own storing, embedding or retrieving passages (feedback/knowledge/library.py and store/ do).

This is the one module that imports pypdf, inscriptis, docx and charset_normalizer; each is
imported inside the function that needs it, so importing this module stays cheap.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import re
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path

SUPPORTED: dict[str, str] = {
    ".txt": "txt",
    ".md": "md",
    ".markdown": "md",
    ".pdf": "pdf",
    ".html": "html",
    ".htm": "html",
    ".docx": "docx",
}
MB = 1024 * 1024  # knowledge_max_file_mb counts in these
MAX_NAME = 200
# A .docx is a zip: refuse one that unpacks to more than this many times the size limit
# before python-docx holds it all in memory (Word's XML compresses about 10:1, images not at all).
MAX_UNZIP_RATIO = 50
# Its XML parts are what python-docx parses into a tree of about ten times their size: a 188 KB
# file of empty paragraphs unpacked to 100 MB of XML and took 3 GB. No real document's text
# needs more than this (about 5,000 pages).
MAX_DOCX_XML = 32 * MB
# Text is refused past this many times the file's size (at least 2 MB of it): a 46 KB PDF whose
# pages share one compressed stream gave 4.5 MB. Word's XML compresses about 10:1.
MAX_TEXT_FACTOR = 10
# A decoded text with more than this share of control or replacement characters is binary.
MAX_JUNK_SHARE = 0.1

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]")
_LINE_BREAKS = re.compile(r"\r\n?|[\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
_BLANK_RUNS = re.compile(r"\n[ \t]*(?:\n[ \t]*)+\n")


class DocumentError(ValueError):
    """One line a user can act on, naming the file."""


@dataclass(frozen=True)
class Parsed:
    name: str  # display name (see display_name)
    kind: str  # txt, md, pdf, html, docx
    sha256: str  # hex sha256 of the raw bytes
    size_bytes: int
    pages: tuple[tuple[int | None, str], ...]  # (1-based page number for PDFs else None, text)


@dataclass(frozen=True)
class Passage:
    seq: int
    text: str
    page: int | None


def display_name(name: str) -> str:
    """The file's name as shown: the last path part, without control, zero-width or bidi
    characters (nor terminal colour codes), whitespace collapsed, at most 200 characters
    (a long name keeps its suffix).

    >>> display_name("../../etc/notes.txt")
    'notes.txt'
    >>> display_name("C:\\\\Users\\\\me\\\\a b.md")
    'a b.md'
    >>> display_name("\\x1b[31mred\\x00 \\t  file.txt")
    'red file.txt'
    >>> display_name("evil\\u202etxt.exe")
    'eviltxt.exe'
    >>> len(display_name("x" * 300 + ".pdf")), display_name("x" * 300 + ".pdf")[-4:]
    (200, '.pdf')
    >>> display_name("\\x00\\x1b[31m")
    Traceback (most recent call last):
    ...
    feedback.knowledge.parse.DocumentError: '\\x00\\x1b[31m': the file name has no printable characters; rename the file
    """
    base = re.split(r"[/\\]", name)[-1]
    base = unicodedata.normalize("NFC", _ANSI.sub("", base))
    kept = "".join(" " if ch.isspace() else ch for ch in base if not _invisible(ch))
    shown = " ".join(kept.split())
    if shown in ("", ".", ".."):
        raise DocumentError(
            f"{ascii(name[:60])}: the file name has no printable characters; rename the file"
        )
    if len(shown) > MAX_NAME:
        suffix = Path(shown).suffix if len(Path(shown).suffix) <= 16 else ""
        shown = shown[: MAX_NAME - len(suffix)].rstrip() + suffix
    return shown


def _invisible(ch: str) -> bool:
    # Cc: control characters; Cf: format characters (zero-width, bidi overrides, soft hyphen).
    # Whitespace controls (tab, newline) become spaces in the caller instead.
    return unicodedata.category(ch) in ("Cc", "Cf") and not ch.isspace()


def kind_of(name: str) -> str:
    """The kind of a supported file, from its suffix (any case).

    >>> kind_of("Notes.MD"), kind_of("page.htm")
    ('md', 'html')
    >>> kind_of("photo.png")
    Traceback (most recent call last):
    ...
    feedback.knowledge.parse.DocumentError: photo.png: .png files are not supported; add .txt, .md, .markdown, .pdf, .html, .htm or .docx files
    """
    suffix = Path(name).suffix.lower()
    if suffix in SUPPORTED:
        return SUPPORTED[suffix]
    what = f"{suffix} files are" if suffix else "files without a suffix are"
    raise DocumentError(f"{name}: {what} not supported; add {_supported_list()} files")


def _supported_list() -> str:
    names = list(SUPPORTED)
    return ", ".join(names[:-1]) + " or " + names[-1]


def human_size(n: float) -> str:
    """A file size for lists and tables.

    >>> human_size(512), human_size(2048), human_size(5 * 1024**2 + 1)
    ('512 B', '2.0 KB', '5.0 MB')
    """
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def megabytes(n: int) -> str:
    """A size in MB for messages: whole MB from 100 up, else up to two decimals (four below
    0.1 MB, where only a test's tiny limit would be).

    >>> megabytes(25 * MB), megabytes(int(10.25 * MB)), megabytes(64 * 1024 * MB), megabytes(5000)
    ('25 MB', '10.25 MB', '65536 MB', '0.0048 MB')
    """
    value = n / MB
    digits = 0 if value >= 100 else 2 if value >= 0.1 else 4
    text = f"{value:.{digits}f}"
    return (text.rstrip("0").rstrip(".") if "." in text else text) + " MB"


def _check_size(name: str, size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise DocumentError(
            f"{name}: the file is {megabytes(size)}, over the {megabytes(max_bytes)} limit "
            "(the setting knowledge_max_file_mb); split it or raise the limit"
        )
    if size == 0:
        raise DocumentError(f"{name}: the file is empty")


def parse_bytes(name: str, data: bytes, max_bytes: int) -> Parsed:
    """Parse an uploaded file's bytes; `name` says its kind (by suffix) and is shown cleaned."""
    shown = display_name(name)
    kind = kind_of(shown)
    _check_size(shown, len(data), max_bytes)
    readers = {"txt": _read_text, "md": _read_text, "pdf": _read_pdf}
    readers |= {"html": _read_html, "docx": _read_docx}
    raw = readers[kind](shown, data, max_bytes)
    pages = tuple((page, text) for page, text in ((p, clean_text(t)) for p, t in raw) if text)
    if not pages:
        raise DocumentError(f"{shown}: the file has no text")
    chars = sum(len(text) for _, text in pages)
    if chars > max(MAX_TEXT_FACTOR * len(data), 2 * MB):
        raise DocumentError(
            f"{shown}: its {megabytes(len(data))} expand to {chars / MB:.0f} MB of text, too much "
            "to read safely; save it again or split it"
        )
    digest = hashlib.sha256(data).hexdigest()
    return Parsed(name=shown, kind=kind, sha256=digest, size_bytes=len(data), pages=pages)


def read_file(path: Path, max_bytes: int) -> bytes:
    """A file's bytes, its size checked before a byte of it is read."""
    path = Path(path)
    shown = display_name(path.name)
    kind_of(shown)
    try:
        info = path.stat()
        if not path.is_file():
            raise DocumentError(f"{shown}: not a regular file")
        _check_size(shown, info.st_size, max_bytes)
        with path.open("rb") as f:
            return f.read(max_bytes + 1)  # the file may have grown since stat
    except OSError as exc:
        why = (exc.strerror or str(exc)).lower()
        raise DocumentError(f"{shown}: could not read the file ({why})") from None


def parse_file(path: Path, max_bytes: int) -> Parsed:
    """Parse a file on disk; its size is checked before a byte of it is read."""
    return parse_bytes(Path(path).name, read_file(path, max_bytes), max_bytes)


def clean_text(text: str) -> str:
    """Text as passages keep it: NFC, newlines as \\n, no control characters but tab and
    newline, no trailing spaces, at most one blank line in a row, no blank edges.

    >>> clean_text("\\ufeffcafe\\u0301\\r\\nline\\x00 two  \\r\\r\\n\\n\\n\\x07end\\n")
    'café\\nline two\\n\\nend'
    """
    text = unicodedata.normalize("NFC", _LINE_BREAKS.sub("\n", text))
    text = "".join(ch for ch in text if ch in "\t\n" or not _junk(ch))
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANK_RUNS.sub("\n\n", text).strip()


def _junk(ch: str) -> bool:
    # Controls (C0, DEL, C1), the BOM / zero-width no-break space, and the replacement mark.
    return unicodedata.category(ch) == "Cc" or ch in "\ufeff\ufffd"


def _read_text(name: str, data: bytes, max_bytes: int) -> list[tuple[int | None, str]]:
    return [(None, decode_text(name, data))]


def decode_text(name: str, data: bytes) -> str:
    """A text file's bytes as text: UTF-8 (with or without BOM), UTF-16/32 with a BOM, else
    whatever legacy encoding charset_normalizer finds. Binary data is refused.

    >>> decode_text("a.txt", "naïve".encode("utf-8-sig"))
    'naïve'
    >>> decode_text("a.txt", "café – “quoted”".encode("cp1252"))
    'café – “quoted”'
    >>> decode_text("a.png.txt", b"\\x89PNG\\r\\n\\x1a\\n\\x00\\x00\\x00\\rIHDR")
    Traceback (most recent call last):
    ...
    feedback.knowledge.parse.DocumentError: a.png.txt: the file is not text (binary data?); add a text file
    """
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                return _text_or_refuse(name, data.decode(codec))
            except UnicodeDecodeError:
                break
    try:
        return _text_or_refuse(name, data.decode("utf-8"))
    except UnicodeDecodeError:
        pass
    # Legacy encodings never put a NUL in text; binary files nearly always have one.
    if b"\x00" in data:
        raise _not_text(name)
    return _text_or_refuse(name, _legacy_decode(name, data))


_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16: its BOM starts the same way
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _legacy_decode(name: str, data: bytes) -> str:
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    # On short Western text charset_normalizer often names a DOS, Mac or Central European code
    # page (cp775, mac_latin2, cp1250) whose letters differ: when it finds no language, or a
    # Western one, and the bytes read as cp1252 give plausible Western text, that wins, as the
    # commonest legacy encoding by far (and the one browsers read latin-1 files as).
    language = best.language.rstrip("—") if best else "Unknown"
    if language in _WESTERN:
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError:
            text = None
        if text is not None and looks_western(text):
            return text
    if best is None:
        raise _not_text(name)
    return str(best)


_WESTERN = {"Unknown", "English", "German", "French", "Dutch", "Italian", "Spanish"}
_WESTERN |= {"Portuguese", "Swedish", "Norwegian", "Danish", "Finnish", "Indonesian"}
# Typography and symbols Western text uses beside its accented letters.
_WESTERN_MARKS = set("‘’‚“”„–—…•†‡‰‹›€£¥¢§©®™°±«»·¡¿½¼¾×÷µ\u00a0")


def looks_western(text: str) -> bool:
    """Whether text is plausible in a Western European language: its non-ASCII characters are
    Latin letters or common typography, and a minority of its letters.

    >>> looks_western("Le café était naïve – “quoted” déjà vu, €5.")
    True
    >>> looks_western("Ïðèâåò, ìèð")  # Russian in cp1251, read as cp1252
    False
    >>> looks_western("Za¿ó³æ gêœl¹ jaŸñ")  # Polish in cp1250, read as cp1252
    False
    """
    letters = [ch for ch in text if ch.isalpha()]
    if sum(not ch.isascii() for ch in letters) > 0.4 * len(letters):
        return False
    latin = (ch.isascii() or (ch.isalpha() and ord(ch) < 0x180) for ch in text)
    return all(ok or ch in _WESTERN_MARKS for ok, ch in zip(latin, text, strict=True))


def _text_or_refuse(name: str, text: str) -> str:
    junk = sum(1 for ch in text if ch not in "\t\n\r\f" and _junk(ch))
    if junk > MAX_JUNK_SHARE * max(len(text), 1):
        raise _not_text(name)
    return text


def _not_text(name: str) -> DocumentError:
    return DocumentError(f"{name}: the file is not text (binary data?); add a text file")


def _read_pdf(name: str, data: bytes, max_bytes: int) -> list[tuple[int | None, str]]:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError

    encrypted = DocumentError(
        f"{name}: the PDF is encrypted; remove its password (save an unencrypted copy) "
        "and add it again"
    )
    # pypdf parses untrusted bytes: a damaged file can fail with almost any exception type,
    # not only pypdf's own, so every failure inside this block means "damaged".
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise encrypted
        pages = [(n, page.extract_text() or "") for n, page in enumerate(reader.pages, start=1)]
    except DocumentError:
        raise
    except (DependencyError, FileNotDecryptedError):
        raise encrypted from None
    except Exception:
        raise DocumentError(
            f"{name}: the PDF is damaged or incomplete and cannot be read; "
            "save or download it again"
        ) from None
    if not any(text.strip() for _, text in pages):
        raise DocumentError(
            f"{name}: the PDF has no text layer (a scanned document?); "
            "run text recognition (OCR) on it and add it again"
        )
    return pages


def _read_html(name: str, data: bytes, max_bytes: int) -> list[tuple[int | None, str]]:
    from inscriptis import get_text

    # inscriptis renders the page as a browser's text view would: scripts and styles are not
    # shown, blocks and table cells are laid out on their own lines.
    return [(None, get_text(decode_text(name, data)))]


def _read_docx(name: str, data: bytes, max_bytes: int) -> list[tuple[int | None, str]]:
    import docx

    damaged = DocumentError(
        f"{name}: not a valid Word .docx file (damaged, or an old .doc renamed?); "
        "save it again as .docx"
    )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
            xml = sum(i.file_size for i in archive.infolist() if i.filename.endswith(".xml"))
    except (zipfile.BadZipFile, OSError, ValueError):
        raise damaged from None
    if unpacked > MAX_UNZIP_RATIO * max_bytes or xml > MAX_DOCX_XML:
        raise DocumentError(
            f"{name}: the .docx unpacks to {megabytes(unpacked)}, too much to read safely; "
            "save it again as .docx or split it"
        )
    # Same as for PDFs: a damaged package can fail with any exception type inside python-docx.
    try:
        document = docx.Document(io.BytesIO(data))
        lines = list(_docx_lines(document))
    except Exception:
        raise damaged from None
    return [(None, "\n\n".join(lines))]


def _docx_lines(container):
    """The paragraphs and table rows of a document (or a table cell), in reading order; a
    row's cells are joined with " | ", a cell merged across columns counted once."""
    from docx.table import Table

    for block in container.iter_inner_content():
        if not isinstance(block, Table):
            yield block.text
            continue
        for row in block.rows:
            cells, previous = [], None
            # A cell merged across columns comes back once per column, on the same XML cell.
            for cell in row.cells:
                if cell._tc is not previous:
                    cells.append(" ".join(" ".join(_docx_lines(cell)).split()))
                previous = cell._tc
            if any(cells):
                yield " | ".join(cells)


def split(parsed: Parsed, chunk_chars: int = 800, overlap: int = 120) -> list[Passage]:
    """The parsed text as passages of at most `chunk_chars` characters, neighbours sharing up
    to `overlap`; each remembers its page, a passage never spans two pages."""
    from langchain_text_splitters import Language, RecursiveCharacterTextSplitter

    if parsed.kind == "md":
        splitter = RecursiveCharacterTextSplitter.from_language(
            Language.MARKDOWN, chunk_size=chunk_chars, chunk_overlap=overlap
        )
    else:
        splitter = RecursiveCharacterTextSplitter(chunk_size=chunk_chars, chunk_overlap=overlap)
    passages: list[Passage] = []
    for page, text in parsed.pages:
        for chunk in splitter.split_text(text):
            if chunk.strip():
                passages.append(Passage(seq=len(passages), text=chunk, page=page))
    return passages
