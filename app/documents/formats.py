"""Text out of a document's bytes, per format. Runs inside the extraction child process
(:mod:`bastion.app.documents.sandbox`): in memory only, never on the parent's data.

Each reader returns a :class:`ParsedDocument`: pages of blocks (headings and paragraphs).
PDF pages are the file's physical pages (1-based). DOCX and ODT are split where the word
processor last laid out a page (``w:lastRenderedPageBreak``, ``text:soft-page-break``) or,
failing that, at hard page breaks; other formats are one unpaged "page" (plain text: split at
form feeds, as ``pdftotext`` writes them).

Every failure a user's file can cause is a :class:`FormatError` with one line that names no
content.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import BaseModel, Field

MAX_PAGES = 5_000
MAX_ZIP_ENTRIES = 5_000
MAX_ZIP_UNCOMPRESSED = 200 * 1024 * 1024
MAX_ZIP_RATIO = 100
MAX_DEPTH = 200
NO_TEXT_LAYER = "no text layer: scanned pages are not read"


class FormatError(Exception):
    """The file cannot be read as the format it claims; one line for the user."""


class Block(BaseModel):
    """A heading (``level`` 1-6) or a paragraph (``level`` 0)."""

    text: str
    level: int = Field(0, ge=0, le=6)


class ParsedPage(BaseModel):
    number: int = Field(ge=1)
    blocks: list[Block] = Field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n\n".join(b.text for b in self.blocks)


class ParsedDocument(BaseModel):
    """What extraction hands back to the parent (as JSON over a pipe)."""

    kind: str
    """``pdf``, ``docx``, ``odt``, ``text``, ``markdown``, ``html``, ``eml``."""
    paged: bool
    """Whether page numbers are the document's own (PDF, laid-out DOCX/ODT)."""
    pages: list[ParsedPage]
    empty_pages: int = 0
    """PDF pages without any text (scanned pages inside a text PDF)."""


KINDS: dict[str, str] = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".odt": "odt",
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".eml": "eml",
}


def kind_for(name: str) -> str:
    """The format a file name claims.

    Raises:
        FormatError: an extension Bastion does not read.
    """
    suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    kind = KINDS.get(suffix)
    if kind is None:
        raise FormatError(
            f"unsupported format {suffix or '(no extension)'}: "
            "PDF, DOCX, ODT, TXT, MD, HTML and EML are read"
        )
    return kind


def _clean(text: str) -> str:
    """Control characters out (terminal safety starts here), spaces folded per line."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = "".join(c if c.isprintable() or c in "\n\t" else " " for c in text)
    lines = [" ".join(line.split()) for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _paragraphs(text: str) -> list[Block]:
    """Blocks from text whose paragraphs are separated by blank lines."""
    return [Block(text=p) for p in (_clean(p) for p in re.split(r"\n\s*\n", text)) if p]


def _looks_like(kind: str, data: bytes) -> str | None:
    """What ``data`` looks like when it does not match ``kind``, else None."""
    head = data[:8]
    if head.startswith(b"%PDF-"):
        actual = "pdf"
    elif head.startswith(b"PK\x03\x04"):
        actual = "zip"
    elif head[:4] in (b"\x89PNG", b"GIF8") or head[:3] == b"\xff\xd8\xff":
        actual = "image"
    elif head.startswith(b"\xd0\xcf\x11\xe0"):
        actual = "an old Office (OLE) file"
    elif b"\x00" in data[:4096] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        actual = "binary"
    else:
        actual = "text"
    expected = {"pdf": "pdf", "docx": "zip", "odt": "zip"}.get(kind, "text")
    if actual == expected:
        return None
    return {"zip": "a ZIP archive", "pdf": "a PDF", "text": "text"}.get(actual, actual)


def parse(kind: str, data: bytes) -> ParsedDocument:
    """Read ``data`` as ``kind``.

    Raises:
        FormatError: empty, mismatched, damaged, encrypted or too large.
    """
    if not data:
        raise FormatError("empty file (0 bytes)")
    other = _looks_like(kind, data)
    if other is not None:
        raise FormatError(f"not a {kind.upper()} file: the content is {other}")
    readers: dict[str, Callable[[bytes], ParsedDocument]] = {
        "pdf": read_pdf,
        "docx": read_docx,
        "odt": read_odt,
        "text": read_text,
        "markdown": read_markdown,
        "html": read_html,
        "eml": read_eml,
    }
    doc = readers[kind](data)
    if not any(p.blocks for p in doc.pages):
        raise FormatError("no text found in the file")
    return doc


# -- PDF --------------------------------------------------------------------------------------


def read_pdf(data: bytes) -> ParsedDocument:
    """Physical pages of a PDF's text layer, with the outline's titles as headings."""
    import pypdfium2 as pdfium

    if b"%%EOF" not in data[-2048:]:
        raise FormatError("truncated PDF: the file ends before its end marker (%%EOF)")
    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        text = str(exc).lower()
        if "password" in text:
            raise FormatError("encrypted PDF: it needs a password; save it unprotected") from None
        if "security" in text:
            raise FormatError("encrypted PDF with an unsupported protection") from None
        raise FormatError("damaged PDF: it could not be opened") from None
    try:
        count = len(pdf)
        if count > MAX_PAGES:
            raise FormatError(f"too many pages ({count}; at most {MAX_PAGES})")
        headings: dict[int, list[tuple[int, str]]] = {}
        try:
            for item in pdf.get_toc(max_depth=6):
                dest = item.get_dest()
                index = dest.get_index() if dest is not None else None
                if index is not None and 0 <= index < count:
                    title = _clean(item.get_title() or "")
                    if title:
                        headings.setdefault(index, []).append((min(item.level + 1, 6), title))
        except Exception:  # a broken outline never stops the text
            headings = {}
        pages: list[ParsedPage] = []
        empty = 0
        for index in range(count):
            page = pdf[index]
            try:
                textpage = page.get_textpage()
                try:
                    raw = textpage.get_text_range()
                finally:
                    textpage.close()
            finally:
                page.close()
            blocks = [Block(text=t, level=lv) for lv, t in headings.get(index, [])]
            body = _pdf_blocks(raw)
            if not body:
                empty += 1
            pages.append(ParsedPage(number=index + 1, blocks=blocks + body if body else []))
    finally:
        pdf.close()
    if empty == count:
        raise FormatError(NO_TEXT_LAYER)
    return ParsedDocument(kind="pdf", paged=True, pages=pages, empty_pages=empty)


def _pdf_blocks(raw: str) -> list[Block]:
    """Paragraphs of a PDF page: lines joined, hyphenated line ends mended."""
    text = raw.replace("\r\n", "\n").replace("\r", "\n").replace("\x02", "-")
    out: list[Block] = []
    for para in re.split(r"\n\s*\n", text):
        lines = [line.strip() for line in para.split("\n") if line.strip()]
        joined = ""
        for line in lines:
            if joined.endswith("-") and line[:1].islower():
                joined = joined[:-1] + line
            else:
                joined = f"{joined} {line}" if joined else line
        cleaned = _clean(joined)
        if cleaned:
            out.append(Block(text=cleaned))
    return out


# -- zip-based (DOCX, ODT) ---------------------------------------------------------------------


def _open_zip(data: bytes, what: str) -> zipfile.ZipFile:
    """A ZIP archive checked against bombs before anything is decompressed."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, EOFError):
        raise FormatError(f"damaged {what}: not a readable ZIP archive") from None
    infos = archive.infolist()
    if len(infos) > MAX_ZIP_ENTRIES:
        raise FormatError(f"refused {what}: {len(infos)} parts in the archive (a ZIP bomb?)")
    total = sum(i.file_size for i in infos)
    packed = max(sum(i.compress_size for i in infos), 1)
    if total > MAX_ZIP_UNCOMPRESSED or (
        total > 10 * 1024 * 1024 and total / packed > MAX_ZIP_RATIO
    ):
        raise FormatError(
            f"refused {what}: it would unpack to {total // (1024 * 1024)} MB (a ZIP bomb?)"
        )
    return archive


def read_docx(data: bytes) -> ParsedDocument:
    """Paragraphs and tables in order; ``Heading N``/``Title`` styles are headings."""
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    archive = _open_zip(data, "DOCX")
    if "word/document.xml" not in archive.namelist():
        raise FormatError("not a DOCX file: the archive has no word/document.xml")
    try:
        document = docx.Document(io.BytesIO(data))
    except Exception:
        raise FormatError("damaged DOCX: it could not be read") from None
    body = document.element.body
    rendered = bool(body.xpath(".//w:lastRenderedPageBreak"))
    pages: list[list[Block]] = [[]]

    def breaks(p: Any) -> int:
        if rendered:
            return len(p.xpath(".//w:lastRenderedPageBreak"))
        return len(p.xpath(".//w:br[@w:type='page']"))

    for item in document.iter_inner_content():
        if isinstance(item, Paragraph):
            n = breaks(item._p)
            text = _clean(item.text)
            before = n > 0 and _break_first(item._p, rendered)
            if before:
                pages.extend([] for _ in range(n))
            if text:
                style = (item.style.name if item.style is not None else "") or ""
                level = _heading_level(style)
                pages[-1].append(Block(text=text, level=level))
            if n and not before:
                pages.extend([] for _ in range(n))
        elif isinstance(item, Table):
            for row in _table_rows(item):
                pages[-1].append(Block(text=row))
    paged = len(pages) > 1
    return ParsedDocument(
        kind="docx",
        paged=paged,
        pages=[ParsedPage(number=i + 1, blocks=b) for i, b in enumerate(pages)],
    )


def _break_first(p: Any, rendered: bool) -> bool:
    """Whether a paragraph's page break comes before its text (Word puts the rendered break
    in the run where the new page starts)."""
    for el in p.iter():
        tag = str(el.tag).rsplit("}", 1)[-1]
        if tag == "t" and (el.text or "").strip():
            return False
        if rendered and tag == "lastRenderedPageBreak":
            return True
        if (
            not rendered
            and tag == "br"
            and any(k.endswith("}type") and v == "page" for k, v in el.attrib.items())
        ):
            return True
    return False


def _heading_level(style: str) -> int:
    if style == "Title":
        return 1
    m = re.fullmatch(r"Heading (\d)", style)
    return min(int(m.group(1)), 6) if m else 0


def _table_rows(table: Any, depth: int = 0) -> Iterator[str]:
    for row in table.rows:
        cells: list[str] = []
        for cell in row.cells:
            text = _clean(cell.text)
            if text and (not cells or cells[-1] != text):  # merged cells repeat
                cells.append(text)
        if cells:
            yield " | ".join(cells)


_ODF_TEXT = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
_ODF_TABLE = "urn:oasis:names:tc:opendocument:xmlns:table:1.0"


def read_odt(data: bytes) -> ParsedDocument:
    """Headings (``text:h``), paragraphs, lists and tables; pages at LibreOffice's soft page
    breaks (or hard breaks when it wrote none)."""
    from odf import opendocument, teletype

    archive = _open_zip(data, "ODT")
    try:
        mimetype = archive.read("mimetype").strip()
    except KeyError:
        mimetype = b""
    if mimetype != b"application/vnd.oasis.opendocument.text":
        raise FormatError("not an ODT file: the archive is not an OpenDocument text")
    try:
        document = opendocument.load(io.BytesIO(data))
    except Exception:
        raise FormatError("damaged ODT: it could not be read") from None
    pages: list[list[Block]] = [[]]

    def walk(node: Any, depth: int) -> None:
        if depth > MAX_DEPTH:
            return
        for child in node.childNodes:
            if child.nodeType != child.ELEMENT_NODE:
                continue
            ns, tag = child.qname
            if ns == _ODF_TEXT and tag == "soft-page-break":
                pages.append([])
            elif ns == _ODF_TEXT and tag in ("h", "p"):
                if any(
                    g.qname == (_ODF_TEXT, "soft-page-break")
                    for g in child.childNodes
                    if g.nodeType == g.ELEMENT_NODE
                ):
                    pages.append([])
                text = _clean(teletype.extractText(child))
                if text:
                    level = 0
                    if tag == "h":
                        raw = child.getAttrNS(_ODF_TEXT, "outline-level")
                        level = min(int(raw), 6) if raw and str(raw).isdigit() else 1
                    pages[-1].append(Block(text=text, level=max(level, 0)))
            elif ns == _ODF_TABLE and tag == "table-row":
                cells = [_clean(teletype.extractText(c)) for c in child.childNodes]
                row = " | ".join(c for c in cells if c)
                if row:
                    pages[-1].append(Block(text=row))
            else:
                walk(child, depth + 1)

    walk(document.text, 0)
    pages = [p for i, p in enumerate(pages) if p or i < len(pages) - 1]
    return ParsedDocument(
        kind="odt",
        paged=len(pages) > 1,
        pages=[ParsedPage(number=i + 1, blocks=b) for i, b in enumerate(pages or [[]])],
    )


# -- text formats ---------------------------------------------------------------------------


def decode_text(data: bytes) -> str:
    """Text bytes as str: UTF-8 (with or without BOM), UTF-16 with a BOM, else Latin-1 when
    the bytes hold no control characters.

    Raises:
        FormatError: binary content.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise FormatError("damaged UTF-16 text") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    if re.search(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f]", data):
        raise FormatError("not a text file: the content is binary")
    return data.decode("cp1252", errors="replace")


def read_text(data: bytes) -> ParsedDocument:
    """Plain text; form feeds separate pages."""
    text = decode_text(data)
    parts = text.split("\f")
    if len(parts) > MAX_PAGES:
        raise FormatError(f"too many pages ({len(parts)}; at most {MAX_PAGES})")
    paged = len(parts) > 1
    return ParsedDocument(
        kind="text",
        paged=paged,
        pages=[ParsedPage(number=i + 1, blocks=_paragraphs(p)) for i, p in enumerate(parts)],
    )


_ATX = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


def read_markdown(data: bytes) -> ParsedDocument:
    """Markdown: ATX (``#``) and setext (``===``/``---``) headings; the rest as paragraphs."""
    lines = decode_text(data).replace("\r\n", "\n").split("\n")
    blocks: list[Block] = []
    para: list[str] = []
    fence = False

    def flush() -> None:
        if para:
            blocks.extend(_paragraphs("\n".join(para)))
            para.clear()

    for i, line in enumerate(lines):
        if line.strip().startswith(("```", "~~~")):
            fence = not fence
            continue
        if not fence:
            m = _ATX.match(line)
            if m:
                flush()
                blocks.append(Block(text=_clean(m.group(2)) or "#", level=len(m.group(1))))
                continue
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            if line.strip() and not para and re.fullmatch(r"\s*(=+|-+)\s*", nxt or "x"):
                blocks.append(Block(text=_clean(line), level=1 if "=" in nxt else 2))
                continue
            if re.fullmatch(r"\s*(=+|-+)\s*", line) and blocks and blocks[-1].level:
                continue
        if not line.strip():
            flush()
        else:
            para.append(line)
    flush()
    return ParsedDocument(kind="markdown", paged=False, pages=[ParsedPage(number=1, blocks=blocks)])


_SKIP_TAGS = frozenset(
    {"script", "style", "noscript", "template", "head", "svg", "math", "iframe", "object"}
)
_BLOCK_TAGS = frozenset(
    [
        "p",
        "div",
        "li",
        "ul",
        "ol",
        "pre",
        "blockquote",
        "table",
        "tr",
        "td",
        "th",
        "dt",
        "dd",
        "dl",
        "section",
        "article",
        "aside",
        "header",
        "footer",
        "nav",
        "main",
        "figure",
        "figcaption",
        "address",
        "br",
        "hr",
        "form",
        "fieldset",
        "caption",
        "details",
        "summary",
    ]
)


def html_blocks(html: str) -> list[Block]:
    """Headings and paragraphs of an HTML page (scripts, styles and the head left out)."""
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(html)
    root = tree.body
    if root is None:
        return []
    blocks: list[Block] = []
    line: list[str] = []

    def flush() -> None:
        text = _clean("".join(line))
        if text:
            blocks.append(Block(text=text))
        line.clear()

    def walk(node: Any, depth: int) -> None:
        child = node.child
        while child is not None:
            tag = child.tag or ""
            if child.is_text_node:
                line.append(child.text_content or "")
            elif tag in _SKIP_TAGS or tag.startswith("-") or depth > MAX_DEPTH:
                pass
            elif re.fullmatch(r"h[1-6]", tag):
                flush()
                text = _clean(child.text(deep=True, separator=" "))
                if text:
                    blocks.append(Block(text=text, level=int(tag[1])))
            elif tag in _BLOCK_TAGS:
                flush()
                walk(child, depth + 1)
                if tag in ("td", "th"):
                    line.append(" | ")
                else:
                    flush()
            else:
                walk(child, depth + 1)
            child = child.next

    walk(root, 0)
    flush()
    return blocks


def read_html(data: bytes) -> ParsedDocument:
    """An HTML page's visible text with its headings."""
    head = data[:2048].lower()
    m = re.search(rb"charset=[\"']?([a-z0-9_-]+)", head)
    text: str | None = None
    if m:
        try:
            text = data.decode(m.group(1).decode("ascii"))
        except (LookupError, UnicodeDecodeError):
            text = None
    blocks = html_blocks(text if text is not None else decode_text(data))
    return ParsedDocument(kind="html", paged=False, pages=[ParsedPage(number=1, blocks=blocks)])


def read_eml(data: bytes) -> ParsedDocument:
    """An e-mail: the subject as heading, sender/recipients/date, then its text parts
    (``text/plain``; ``text/html`` only where a part has no plain alternative).
    Attachments are not read."""
    import email
    from email import policy
    from email.message import EmailMessage

    try:
        msg = email.message_from_bytes(data, policy=policy.default)
    except Exception:
        raise FormatError("damaged e-mail: it could not be read") from None
    if not isinstance(msg, EmailMessage) or not (
        msg.keys() and ":" in data[:4096].decode("latin-1")
    ):
        raise FormatError("not an e-mail: no headers")
    if not any(k.lower() in ("from", "to", "subject", "date", "message-id") for k in msg):
        raise FormatError("not an e-mail: no From, To, Subject or Date header")
    blocks: list[Block] = []

    def header(name: str) -> str:
        try:
            return _clean(str(msg.get(name, "") or ""))
        except Exception:
            return ""

    subject = header("Subject")
    if subject:
        blocks.append(Block(text=subject, level=1))
    meta = [f"{n}: {header(n)}" for n in ("From", "To", "Cc", "Date") if header(n)]
    if meta:
        blocks.append(Block(text="\n".join(meta)))
    bodies: list[EmailMessage] = []
    for kind in (("plain",), ("html",)):
        try:
            part = msg.get_body(preferencelist=kind)
        except Exception:
            part = None
        if part is not None:
            # get_body() is typed as returning a Message; with the default (EmailMessage)
            # policy used to parse, it is an EmailMessage.
            bodies.append(part)  # type: ignore[arg-type]
            break
    # Further text parts (not attachments) besides the main body.
    for part in msg.walk():
        if part.is_multipart() or part in bodies:
            continue
        if (
            part.get_content_type() == "text/plain"
            and part.get_content_disposition() != "attachment"
        ):
            bodies.append(part)
    for part in bodies:
        try:
            content = part.get_content()
        except Exception:
            payload = part.get_payload(decode=True)
            content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
        if not isinstance(content, str):
            continue
        if part.get_content_subtype() == "html":
            blocks.extend(html_blocks(content))
        else:
            blocks.extend(_paragraphs(content))
    return ParsedDocument(kind="eml", paged=False, pages=[ParsedPage(number=1, blocks=blocks)])
