"""A read-only view of the vault's audit log, with the result of checking its chain."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label

from bastion.app import audit
from bastion.app.session import ChatSession


def _fields(data: dict[str, object]) -> str:
    parts = []
    for key, value in data.items():
        shown = ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
        parts.append(f"{key}={shown}")
    return " ".join(parts)


class AuditScreen(ModalScreen[None]):
    """Every event of the open vault, newest first; nothing here can change the log."""

    DEFAULT_CSS = """
    AuditScreen { align: center middle; }
    #audit-box { width: 90%; height: 90%; padding: 1 2; border: round $primary;
        background: $surface; }
    #audit-table { height: 1fr; }
    #audit-status { margin-bottom: 1; }
    """
    BINDINGS = [Binding("escape", "close", "Close", id="audit.close")]

    class Loaded(Message):
        def __init__(self, events: list[audit.AuditEvent], report: audit.AuditReport) -> None:
            super().__init__()
            self.events = events
            self.report = report

    def __init__(self, session: ChatSession) -> None:
        super().__init__()
        self.session = session

    def compose(self) -> ComposeResult:
        with Vertical(id="audit-box"):
            yield Label("Audit log (read-only)", classes="dialog-title")
            yield Label("Checking the chain…", id="audit-status")
            yield DataTable(id="audit-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one("#audit-table", DataTable)
        table.add_columns("#", "time (UTC)", "event", "ids")
        table.focus()
        self._load()

    @work(thread=True, group="store", exclusive=True, exit_on_error=False)
    def _load(self) -> None:
        store = self.session.store
        self.post_message(self.Loaded(audit.events(store), audit.verify(store)))

    @on(Loaded)
    def _loaded(self, event: Loaded) -> None:
        report = event.report
        status = self.query_one("#audit-status", Label)
        if report.intact:
            status.update(f"{report.rows} event(s); the chain is intact (every MAC matches).")
        else:
            status.update(
                f"[$error]The log was altered at row {report.first_bad}: {report.reason}.[/]"
            )
        table = self.query_one("#audit-table", DataTable)
        for e in reversed(event.events):
            table.add_row(
                str(e.id), f"{e.at:%Y-%m-%d %H:%M:%S}", Text(e.event), Text(_fields(e.data))
            )

    def action_close(self) -> None:
        self.dismiss(None)
