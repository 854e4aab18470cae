"""The sidebar: the vault's conversations, pinned first."""

from __future__ import annotations

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message as TMessage
from textual.widgets import Label, ListItem, ListView, Static

from bastion.app.terminal import visible
from bastion.storage.schema import Conversation


class ConversationItem(ListItem):
    """A conversation in the sidebar."""

    def __init__(
        self,
        conv_id: str,
        title: str,
        *,
        pinned: bool,
        incognito: bool = False,
        imported: bool = False,
    ) -> None:
        mark = "📌 " if pinned else ("🕶 " if incognito else "")
        tag = " [dim](imported)[/dim]" if imported else ""
        super().__init__(Static(f"{mark}{escape(visible(title))}{tag}"))
        self.conv_id = conv_id
        self.incognito = incognito


class ConversationList(Vertical):
    """The list of conversations; posts :class:`Chosen` when the user picks one."""

    class Chosen(TMessage):
        """The user picked a saved conversation in the list."""

        def __init__(self, conversation_id: str) -> None:
            super().__init__()
            self.conversation_id = conversation_id

    def compose(self) -> ComposeResult:
        yield Label("Conversations", classes="section")
        yield ListView(id="conversations")

    async def show(
        self,
        conversations: list[Conversation],
        current: Conversation | None,
        *,
        incognito: bool,
    ) -> None:
        """Show ``conversations`` (and the incognito one on top), ``current`` highlighted."""
        lv = self.query_one(ListView)
        await lv.clear()
        items = []
        if incognito and current is not None:
            items.append(ConversationItem(current.id, "Incognito", pinned=False, incognito=True))
        items += [
            ConversationItem(c.id, c.title, pinned=c.pinned, imported=c.imported)
            for c in conversations
        ]
        await lv.extend(items)
        for i, item in enumerate(items):
            if current is not None and item.conv_id == current.id:
                lv.index = i

    @on(ListView.Selected)
    def _selected(self, event: ListView.Selected) -> None:
        event.stop()
        item = event.item
        if isinstance(item, ConversationItem) and not item.incognito:
            self.post_message(self.Chosen(item.conv_id))
