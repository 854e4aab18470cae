"""The sidebar: the vault's conversations, pinned first."""

from __future__ import annotations

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message as TMessage
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from bastion.app.terminal import visible
from bastion.storage.schema import Conversation

INCOGNITO = "incognito:"
"""The option id of the incognito conversation starts with this (saved ones never do)."""


def label(
    title: str, *, pinned: bool = False, incognito: bool = False, imported: bool = False
) -> str:
    """A conversation's line (markup: the title escaped and its controls made visible)."""
    mark = "📌 " if pinned else ("🕶 " if incognito else "")
    tag = " [dim](imported)[/dim]" if imported else ""
    return f"{mark}{escape(visible(title))}{tag}"


class ConversationList(Vertical):
    """The list of conversations; posts :class:`Chosen` when the user picks one.

    One widget draws every conversation's line (an option list). As a list of widgets, one
    per conversation, showing the list again at every question and answer took 200-460 ms
    with 150 conversations, and every layout of the chat screen visited each of them.
    """

    class Chosen(TMessage):
        """The user picked a saved conversation in the list."""

        def __init__(self, conversation_id: str) -> None:
            super().__init__()
            self.conversation_id = conversation_id

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._shown: list[tuple[str, str]] = []  # (option id, line) as shown

    def compose(self) -> ComposeResult:
        yield Label("Conversations", classes="section")
        yield OptionList(id="conversations", compact=True)

    async def show(
        self,
        conversations: list[Conversation],
        current: Conversation | None,
        *,
        incognito: bool,
    ) -> None:
        """Show ``conversations`` (and the incognito one on top), ``current`` highlighted."""
        lines: list[tuple[str, str]] = []
        if incognito and current is not None:
            lines.append((INCOGNITO + current.id, label("Incognito", incognito=True)))
        lines += [
            (c.id, label(c.title, pinned=c.pinned, imported=c.imported)) for c in conversations
        ]
        options = self.query_one(OptionList)
        if lines != self._shown:
            options.set_options(Option(text, id=oid) for oid, text in lines)
            self._shown = lines
        ids = [oid for oid, _ in lines]
        highlight = None
        if current is not None:
            for oid in (INCOGNITO + current.id, current.id):
                if oid in ids:
                    highlight = ids.index(oid)
                    break
        if options.highlighted != highlight:
            options.highlighted = highlight

    @property
    def lines(self) -> list[str]:
        """The lines shown, as markup (for tests and the snapshots' readers)."""
        return [text for _, text in self._shown]

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        oid = event.option.id
        if oid is not None and not oid.startswith(INCOGNITO):
            self.post_message(self.Chosen(oid))
