"""Documents in the app: attaching one (file picker or pasted path), the attachments above
the composer, the library screen, and a cited page's text beside the answer.

Every store call and every file read runs in a thread worker that reports by a typed
message; nothing here blocks the UI thread or sets widget state from a thread.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message as TMessage
from textual.screen import ModalScreen, Screen
from textual.widgets import (
    Button,
    DataTable,
    DirectoryTree,
    Footer,
    Input,
    Label,
    OptionList,
    Static,
)
from textual.widgets.option_list import Option

from bastion.app.documents.formats import KINDS
from bastion.app.session import ChatSession
from bastion.storage.schema import DocumentPage, DocumentRecord, SourceRef


def _pages(doc: DocumentRecord) -> str:
    return f"{doc.pages} p." if doc.paged else "unpaged"


class AttachmentsBar(Static):
    """The documents the conversation is grounded on, shown above the composer."""

    DEFAULT_CSS = """
    AttachmentsBar { height: auto; max-height: 3; padding: 0 1; color: $text-muted; }
    """

    def show(self, documents: Iterable[DocumentRecord]) -> None:
        docs = list(documents)
        self.display = bool(docs)
        self.update(
            "📎 "
            + "  ·  ".join(f"{escape(d.title)} ({_pages(d)})" for d in docs)
            + "   [dim](F9 attach · F10 library)[/dim]"
            if docs
            else ""
        )


class _Documents(DirectoryTree):
    """A file picker showing folders and the formats Bastion reads (no hidden files)."""

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        for path in paths:
            if path.name.startswith("."):
                continue
            try:
                if path.is_dir() or path.suffix.lower() in KINDS:
                    yield path
            except OSError:
                continue


class AttachScreen(ModalScreen[str | None]):
    """Choose a file to attach: pick it in the tree or paste its path; returns the path."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    AttachScreen { align: center middle; }
    AttachScreen > Vertical { width: 90%; height: 80%; border: round $accent;
                              background: $surface; padding: 0 1; }
    AttachScreen DirectoryTree { height: 1fr; }
    AttachScreen #attach-error { color: $error; height: auto; }
    """

    def __init__(self, start: Path | None = None) -> None:
        super().__init__()
        self.start = start or Path.home()

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Attach a document (PDF, DOCX, ODT, TXT, MD, HTML, EML)")
            yield Input(placeholder="paste or type a path, then Enter", id="attach-path")
            yield _Documents(self.start, id="attach-tree")
            yield Label("", id="attach-error")
            with Horizontal(classes="buttons"):
                yield Button("Attach", id="attach-ok", variant="primary")
                yield Button("Cancel", id="attach-cancel")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(DirectoryTree.FileSelected)
    def _picked(self, event: DirectoryTree.FileSelected) -> None:
        self.dismiss(str(event.path))

    @on(Input.Submitted, "#attach-path")
    @on(Button.Pressed, "#attach-ok")
    def _typed(self) -> None:
        raw = self.query_one("#attach-path", Input).value.strip().strip("'\"")
        if not raw:
            self.query_one("#attach-error", Label).update("Type a path or pick a file.")
            return
        self.dismiss(str(Path(raw).expanduser()))

    @on(Button.Pressed, "#attach-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class PageScreen(ModalScreen[None]):
    """A cited page's text, beside the answer (the right half of the screen)."""

    BINDINGS = [Binding("escape", "close", "Close")]
    DEFAULT_CSS = """
    PageScreen { align: right top; background: $background 0%; }
    PageScreen > Vertical { width: 50%; height: 100%; border-left: thick $accent;
                            background: $surface; padding: 0 1; }
    PageScreen #page-text { height: 1fr; }
    """

    def __init__(self, heading: str, text: str, passage: str = "") -> None:
        super().__init__()
        self.heading = heading
        self.text = text
        self.passage = passage

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"[b]{escape(self.heading)}[/b]  [dim](Esc closes)[/dim]")
            with VerticalScroll(id="page-text"):
                yield Static(self._marked(), id="page-body")

    def _marked(self) -> str:
        """The page with the cited passage highlighted where it is found."""
        text = escape(self.text)
        first = " ".join(self.passage.split())[:60]
        flat = " ".join(self.text.split())
        if first and first in flat:
            return escape(flat).replace(escape(first), f"[reverse]{escape(first)}[/]", 1)
        return text

    def action_close(self) -> None:
        self.dismiss(None)


class SourcesScreen(ModalScreen[SourceRef | None]):
    """The sources of an answer; choosing one opens its page."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    SourcesScreen { align: center middle; }
    SourcesScreen > OptionList { width: 80%; height: auto; max-height: 70%;
                                 border: round $accent; }
    """

    def __init__(self, sources: list[SourceRef]) -> None:
        super().__init__()
        self.sources = [s for s in sources if s.document_id]

    def compose(self) -> ComposeResult:
        yield OptionList(
            *[Option(f"[{s.n}] {escape(s.label)}", id=str(i)) for i, s in enumerate(self.sources)]
        )

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.sources[int(event.option.id or 0)])

    def action_cancel(self) -> None:
        self.dismiss(None)


def open_source(screen: Screen[Any], session: ChatSession, source: SourceRef) -> None:
    """Open the page a source cites beside the answer (read in a worker)."""
    _PageLoader(session, source).load(screen)


class _PageLoader:
    """Reads one page off the UI thread, then pushes the page screen."""

    def __init__(self, session: ChatSession, source: SourceRef) -> None:
        self.session = session
        self.source = source

    def load(self, screen: Screen[Any]) -> None:
        app = screen.app
        source = self.source

        def read() -> None:
            try:
                pages: list[DocumentPage] = self.session.document_page(
                    source.document_id or "", source.page or 1
                )
            except Exception:
                app.call_from_thread(
                    app.notify, "That document is no longer in the library.", severity="warning"
                )
                return
            text = pages[0].text if pages else ""
            passage = (source.text or "").split(": ", 1)[-1]
            app.call_from_thread(app.push_screen, PageScreen(source.label, text, passage))

        app.run_worker(read, thread=True, group="doc-page", exit_on_error=False)


class LibraryScreen(Screen[None]):
    """Every document in the vault: attach to the conversation, add, view, remove."""

    BINDINGS = [
        Binding("escape", "close", "Back"),
        Binding("enter", "attach", "Attach", show=True),
        Binding("a", "add", "Add file"),
        Binding("v", "view", "View page 1"),
        Binding("delete,d", "remove", "Remove"),
    ]
    DEFAULT_CSS = """
    LibraryScreen DataTable { height: 1fr; }
    LibraryScreen #library-status { height: auto; padding: 0 1; color: $text-muted; }
    """

    class Listed(TMessage):
        def __init__(self, documents: list[DocumentRecord]) -> None:
            super().__init__()
            self.documents = documents

    class Failed(TMessage):
        def __init__(self, reason: str) -> None:
            super().__init__()
            self.reason = reason

    def __init__(self, session: ChatSession) -> None:
        super().__init__()
        self.session = session
        self.documents: list[DocumentRecord] = []

    def compose(self) -> ComposeResult:
        yield Label("[b]Library[/b]: your documents, inside the encrypted vault")
        yield DataTable(id="library", cursor_type="row", zebra_stripes=True)
        yield Label("", id="library-status")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("Title", "Pages", "Size", "Added", "Attached")
        table.focus()
        self.reload()

    @work(thread=True, group="library", exclusive=True, exit_on_error=False)
    def reload(self) -> None:
        try:
            self.post_message(self.Listed(self.session.library()))
        except Exception as exc:
            self.post_message(self.Failed(str(exc) or type(exc).__name__))

    @on(Listed)
    def _listed(self, event: Listed) -> None:
        self.documents = event.documents
        attached = {d.id for d in self.session.documents}
        table = self.query_one(DataTable)
        table.clear()
        for d in event.documents:
            table.add_row(
                escape(d.title),
                _pages(d),
                f"{d.size / 1000:.0f} KB",
                f"{d.added.astimezone():%Y-%m-%d}",
                "📎" if d.id in attached else "",
                key=d.id,
            )
        self._status(
            f"{len(event.documents)} documents. Enter attaches, a adds a file, v shows page 1, "
            "d removes."
            if event.documents
            else "No documents yet: press a to add one."
        )

    @on(Failed)
    def _failed(self, event: Failed) -> None:
        self._status(f"[$error]{escape(event.reason)}[/]")

    def _status(self, text: str) -> None:
        self.query_one("#library-status", Label).update(text)

    def _current(self) -> DocumentRecord | None:
        table = self.query_one(DataTable)
        if not self.documents or table.cursor_row < 0:
            return None
        return self.documents[min(table.cursor_row, len(self.documents) - 1)]

    def action_close(self) -> None:
        self.dismiss(None)

    def action_attach(self) -> None:
        doc = self._current()
        if doc is not None:
            self._attach_record(doc)

    @work(thread=True, group="library", exit_on_error=False)
    def _attach_record(self, doc: DocumentRecord) -> None:
        try:
            self.session.attach_record(doc)
        except Exception as exc:
            self.post_message(self.Failed(str(exc) or type(exc).__name__))
            return
        self.reload()

    def action_add(self) -> None:
        def chosen(path: str | None) -> None:
            if path:
                self._status("reading… (in a sandboxed process)")
                self._add(path)

        self.app.push_screen(AttachScreen(), chosen)

    @work(thread=True, group="library", exit_on_error=False)
    def _add(self, path: str) -> None:
        try:
            self.session.add_document(Path(path))
        except Exception as exc:
            self.post_message(self.Failed(str(exc) or type(exc).__name__))
            return
        self.reload()

    def action_view(self) -> None:
        doc = self._current()
        if doc is not None:
            source = SourceRef(
                n=1,
                ref_id=doc.id,
                title=doc.title,
                document_id=doc.id,
                page=1 if doc.paged else None,
            )
            open_source(self, self.session, source)

    def action_remove(self) -> None:
        from bastion.tui.dialogs import ConfirmScreen

        doc = self._current()
        if doc is None:
            return

        def done(yes: bool | None) -> None:
            if yes:
                self._remove(doc.id)

        self.app.push_screen(
            ConfirmScreen(f"Remove {escape(doc.title)} from the vault (text, index, attachments)?"),
            done,
        )

    @work(thread=True, group="library", exit_on_error=False)
    def _remove(self, document_id: str) -> None:
        try:
            self.session.remove_document(document_id)
        except Exception as exc:
            self.post_message(self.Failed(str(exc) or type(exc).__name__))
            return
        self.reload()
