"""Reading documents: formats, physical page numbers on real PDFs nobody here wrote, and
hostile files, all through the sandboxed child process."""

from __future__ import annotations

import gzip
import io
import re
import socket
import subprocess
import zipfile
from collections import Counter
from email.message import EmailMessage
from pathlib import Path

import pypdfium2 as pdfium
import pytest

from bastion.app.documents import formats, sandbox
from bastion.app.documents.chunking import chunk_pages
from bastion.app.documents.formats import NO_TEXT_LAYER, FormatError

# Real PDFs from Debian documentation packages (installed by `make dev`): pdfTeX, dvipdfmx,
# groff + Ghostscript, Apache FOP.
REAL_PDFS = {
    "bashref.pdf": Path("/usr/share/doc/bash/bashref.pdf"),
    "gmpl.pdf": Path("/usr/share/doc/glpk-doc/gmpl.pdf"),
    "bash.pdf": Path("/usr/share/doc/bash/bash.pdf"),
    "README.pdf": Path("/usr/share/doc/xorg-docs/README.pdf.gz"),
}
BASHREF_HTML = Path("/usr/share/doc/bash/bashref.html")


def real_pdf(name: str) -> bytes:
    path = REAL_PDFS[name]
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def words(text: str) -> Counter[str]:
    return Counter(re.findall(r"[^\W\d_]{3,}", text.casefold()))


def similarity(a: str, b: str) -> float:
    wa, wb = words(a), words(b)
    return sum((wa & wb).values()) / max(sum(wa.values()), sum(wb.values()), 1)


def pdftotext_page(data: bytes, page: int) -> str:
    """poppler's text of one page (the reference), read from stdin: nothing on disk."""
    out = subprocess.run(
        ["pdftotext", "-f", str(page), "-l", str(page), "-", "-"],
        input=data,
        capture_output=True,
        check=True,
    )
    return out.stdout.decode("utf-8", "replace")


@pytest.mark.parametrize("name", sorted(REAL_PDFS))
def test_real_pdf_pages_match_pdftotext_page_by_page(name: str) -> None:
    """Page N of our text is poppler's page N (not N-1 or N+1), on PDFs from four makers."""
    data = real_pdf(name)
    doc = sandbox.extract("pdf", data)
    assert doc.kind == "pdf" and doc.paged
    assert len(doc.pages) == len(pdfium.PdfDocument(data))
    assert [p.number for p in doc.pages] == list(range(1, len(doc.pages) + 1))
    checked = 0
    for n in sorted({1, 2, 3, len(doc.pages) // 2, len(doc.pages) - 1, len(doc.pages)} - {0}):
        ours = doc.pages[n - 1].text
        ref = pdftotext_page(data, n)
        if sum(words(ref).values()) < 40:
            continue  # a near-empty page (title, blank) proves nothing
        same = similarity(ours, ref)
        assert same > 0.85, (name, n, same)
        for other in (n - 1, n + 1):
            if 1 <= other <= len(doc.pages):
                assert similarity(ours, pdftotext_page(data, other)) < same - 0.2
        checked += 1
    assert checked >= 2


def test_pdf_outline_titles_become_headings_of_chunks() -> None:
    """The PDF's outline gives the chunks their headings."""
    doc = sandbox.extract("pdf", real_pdf("gmpl.pdf"))
    chunks = chunk_pages(doc.pages)
    assert any("Expressions" in c.heading for c in chunks)
    assert all(len(c.text) <= 600 for c in chunks)
    # every chunk's text is on its page
    page_text = {p.number: p.text for p in doc.pages}
    for c in chunks[::25]:
        assert c.text.split("\n")[0][:40] in page_text[c.page]


def scanned_pdf(source: bytes, pages: int = 2) -> bytes:
    """A PDF whose pages are only images of another PDF's pages (no text layer)."""
    src = pdfium.PdfDocument(source)
    out = pdfium.PdfDocument.new()
    for i in range(pages):
        bitmap = src[i].render(scale=0.5)
        width, height = bitmap.width, bitmap.height
        image = pdfium.PdfImage.new(out)
        image.set_bitmap(bitmap)
        image.set_matrix(pdfium.PdfMatrix().scale(width, height))
        page = out.new_page(width, height)
        page.insert_obj(image)
        page.gen_content()
    buf = io.BytesIO()
    out.save(buf)
    return buf.getvalue()


def test_scanned_pdf_is_one_line_not_an_empty_document() -> None:
    """A PDF of page images is refused with the one line the issue asks for."""
    data = scanned_pdf(real_pdf("README.pdf"))
    assert len(pdfium.PdfDocument(data)) == 2
    with pytest.raises(FormatError) as exc:
        sandbox.extract("pdf", data)
    assert str(exc.value) == NO_TEXT_LAYER


def test_truncated_encrypted_empty_and_mismatched_files() -> None:
    """Each hostile or broken file gives one line naming the problem."""
    import pypdf

    data = real_pdf("gmpl.pdf")
    cases: dict[str, tuple[str, bytes]] = {
        "truncated": ("pdf", data[: len(data) // 2]),
        "empty": ("pdf", b""),
        "png as pdf": ("pdf", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100),
        "pdf as docx": ("docx", data),
        "text as odt": ("odt", b"just some text"),
        "binary as txt": ("text", b"\x00\x01\x02\x03binary\x00"),
    }
    writer = pypdf.PdfWriter(clone_from=io.BytesIO(real_pdf("README.pdf")))
    writer.encrypt("secret", algorithm="AES-256")
    buf = io.BytesIO()
    writer.write(buf)
    cases["encrypted"] = ("pdf", buf.getvalue())
    expected = {
        "truncated": "truncated PDF",
        "empty": "empty file",
        "png as pdf": "not a PDF file: the content is image",
        "pdf as docx": "not a DOCX file: the content is a PDF",
        "text as odt": "not a ODT file: the content is text",
        "binary as txt": "not a TEXT file: the content is binary",
        "encrypted": "encrypted PDF",
    }
    for label, (kind, blob) in cases.items():
        with pytest.raises(FormatError) as exc:
            sandbox.extract(kind, blob)
        message = str(exc.value)
        assert "\n" not in message and message.startswith(expected[label]), (label, message)


def zip_bomb(size: int) -> bytes:
    """A DOCX-looking archive whose document.xml unpacks to ``size`` bytes of spaces."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        with z.open("word/document.xml", "w") as f:
            block = b" " * (1 << 20)
            for _ in range(size >> 20):
                f.write(block)
    return buf.getvalue()


def test_zip_bomb_posing_as_docx_is_refused_before_unpacking() -> None:
    """A 300 MB bomb in a small file is refused from its directory, in one line."""
    bomb = zip_bomb(300 << 20)
    assert len(bomb) < 2 << 20
    with pytest.raises(FormatError, match=r"^refused DOCX: it would unpack to 300 MB"):
        sandbox.extract("docx", bomb)


def test_memory_limit_stops_a_bomb_the_size_check_misses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the size check off, the child's memory limit still stops the bomb."""
    monkeypatch.setattr(formats, "MAX_ZIP_UNCOMPRESSED", 1 << 40)
    monkeypatch.setattr(formats, "MAX_ZIP_RATIO", 1 << 40)
    limits = sandbox.Limits(memory=160 << 20)
    with pytest.raises(FormatError, match=r"memory|damaged DOCX"):
        sandbox.extract("docx", zip_bomb(400 << 20), limits)


def test_output_and_cpu_limits() -> None:
    """Text larger than the output limit is refused; a reader over its CPU time is stopped."""
    with pytest.raises(FormatError, match="output limit"):
        sandbox.extract("pdf", real_pdf("bashref.pdf"), sandbox.Limits(output=20_000))
    with pytest.raises(FormatError, match=r"CPU|longer than"):
        sandbox.extract("pdf", real_pdf("bashref.pdf"), sandbox.Limits(cpu_s=1, wall_s=0.3))


def test_child_cannot_write_files_or_reach_the_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside the child, any file write fails (RLIMIT_FSIZE 0) and sockets are refused."""
    target = tmp_path / "leak.txt"

    def leaky(kind: str, data: bytes) -> formats.ParsedDocument:
        try:
            with open(target, "wb") as f:
                f.write(data)
        except OSError:
            pass
        sock = socket.socket()
        try:
            sock.connect(("192.0.2.1", 9))
        finally:
            sock.close()
        raise AssertionError("not reached")

    monkeypatch.setattr(sandbox, "parse", leaky)
    with pytest.raises(FormatError, match="OfflineError"):
        sandbox.extract("text", b"CanaryLeakZq19 secret text")
    assert not target.exists() or target.read_bytes() == b""


def test_docx_headings_tables_and_page_breaks(tmp_path: Path) -> None:
    """Word headings become headings, tables rows, hard page breaks pages."""
    import docx

    d = docx.Document()
    d.add_heading("Terms of Service", level=1)
    d.add_paragraph("The tenant pays 950 EUR on the first day of each month.")
    table = d.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "Deposit"
    table.cell(0, 1).text = "2 months"
    d.add_page_break()
    d.add_heading("Termination", level=2)
    d.add_paragraph("Either party may end the lease with three months notice.")
    buf = io.BytesIO()
    d.save(buf)
    doc = sandbox.extract("docx", buf.getvalue())
    assert doc.paged and len(doc.pages) == 2
    assert [b.level for b in doc.pages[0].blocks][:1] == [1]
    assert "Deposit | 2 months" in doc.pages[0].text
    assert "three months notice" in doc.pages[1].text
    chunks = chunk_pages(doc.pages)
    assert (chunks[-1].page, chunks[-1].heading) == (2, "Terms of Service › Termination")


def test_odt_headings_and_soft_page_breaks() -> None:
    """ODT headings keep their level; LibreOffice's soft page breaks make pages."""
    from odf.opendocument import OpenDocumentText
    from odf.text import H, P, SoftPageBreak

    d = OpenDocumentText()
    d.text.addElement(H(outlinelevel=1, text="Discharge letter"))
    d.text.addElement(P(text="Amoxicillin 500 mg three times daily for 7 days."))
    d.text.addElement(SoftPageBreak())
    d.text.addElement(H(outlinelevel=2, text="Follow-up"))
    d.text.addElement(P(text="Cardiology clinic in 6 weeks."))
    buf = io.BytesIO()
    d.write(buf)
    doc = sandbox.extract("odt", buf.getvalue())
    assert doc.paged and len(doc.pages) == 2
    assert doc.pages[0].blocks[0].level == 1 and "500 mg" in doc.pages[0].text
    assert doc.pages[1].blocks[0].text == "Follow-up" and doc.pages[1].blocks[0].level == 2


def test_html_real_manual_and_scripts_left_out() -> None:
    """The bash manual's HTML keeps its headings; scripts and styles are never text."""
    doc = sandbox.extract("html", BASHREF_HTML.read_bytes())
    headings = [b.text for b in doc.pages[0].blocks if b.level]
    assert "Bash Reference Manual" in headings and len(headings) > 100
    evil = b"<html><head><style>p{}</style></head><body><h2>Hi</h2><p>a <b>b</b> c</p>" + (
        b"<script>alert('x')</script><p>end</p></body></html>"
    )
    doc = sandbox.extract("html", evil)
    assert [(b.text, b.level) for b in doc.pages[0].blocks] == [
        ("Hi", 2),
        ("a b c", 0),
        ("end", 0),
    ]


def test_eml_text_parts_not_attachments() -> None:
    """An e-mail gives its subject, headers and text parts; attachments are not read."""
    msg = EmailMessage()
    msg["From"] = "Dr Who <who@example.org>"
    msg["To"] = "clinic@example.org"
    msg["Subject"] = "Results of 3 May"
    msg.set_content("Potassium is 4.1 mmol/L, within range.")
    msg.add_alternative("<p>Potassium is <b>4.1 mmol/L</b>, within range.</p>", subtype="html")
    msg.add_attachment(b"AttachmentSecretXy", maintype="application", subtype="octet-stream")
    doc = sandbox.extract("eml", msg.as_bytes())
    text = doc.pages[0].text
    assert doc.pages[0].blocks[0].text == "Results of 3 May"
    assert "From: Dr Who <who@example.org>" in text
    assert text.count("Potassium is 4.1 mmol/L") == 1  # the plain part, not both
    assert "AttachmentSecretXy" not in text


def test_markdown_and_text() -> None:
    """Markdown headings (ATX and setext) and form-feed pages of plain text."""
    md = b"Title\n=====\n\nIntro text.\n\n## Part two\n\n```\n# not a heading\n```\nBody.\n"
    doc = sandbox.extract("markdown", md)
    assert [(b.text, b.level) for b in doc.pages[0].blocks if b.level] == [
        ("Title", 1),
        ("Part two", 2),
    ]
    text = sandbox.extract("text", "Page one.\fPage two é.".encode())
    assert text.paged and [p.text for p in text.pages] == ["Page one.", "Page two é."]
    assert formats.kind_for("Report.PDF") == "pdf"
    with pytest.raises(FormatError, match=r"unsupported format \.exe"):
        formats.kind_for("setup.exe")
