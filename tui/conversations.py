"""The sidebar: the vault's conversations, pinned first."""

from __future__ import annotations

from typing import NamedTuple

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
        self._text = self.label(title, pinned=pinned, incognito=incognito, imported=imported)
        super().__init__(Static(self._text))
        self.conv_id = conv_id
        self.incognito = incognito

    @staticmethod
    def label(title: str, *, pinned: bool, incognito: bool = False, imported: bool = False) -> str:
        """The item's text (Rich markup; the title escaped and its controls made visible)."""
        mark = "📌 " if pinned else ("🕶 " if incognito else "")
        tag = " [dim](imported)[/dim]" if imported else ""
        return f"{mark}{escape(visible(title))}{tag}"

    @property
    def key(self) -> tuple[str, bool]:
        """What the item stands for: a conversation, or the incognito one."""
        return self.conv_id, self.incognito

    @property
    def text(self) -> str:
        return self._text

    def relabel(self, text: str) -> None:
        """Show ``text`` (from :meth:`label`) if it is not what the item shows already."""
        if text != self._text:
            self._text = text
            self.query_one(Static).update(text)


class _Row(NamedTuple):
    """A conversation as the list should show it (a widget is made only if it is new)."""

    conv_id: str
    title: str
    pinned: bool = False
    incognito: bool = False
    imported: bool = False

    @property
    def key(self) -> tuple[str, bool]:
        return self.conv_id, self.incognito

    @property
    def text(self) -> str:
        return ConversationItem.label(
            self.title, pinned=self.pinned, incognito=self.incognito, imported=self.imported
        )

    def item(self) -> ConversationItem:
        return ConversationItem(
            self.conv_id,
            self.title,
            pinned=self.pinned,
            incognito=self.incognito,
            imported=self.imported,
        )


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
        """Show ``conversations`` (and the incognito one on top), ``current`` highlighted.

        Only what changed is mounted, moved or removed: rebuilding the whole list at every
        question and answer took 200-460 ms with 150 conversations, a stall of the UI at the
        start and end of every turn.
        """
        lv = self.query_one(ListView)
        wanted: list[_Row] = []
        if incognito and current is not None:
            wanted.append(_Row(current.id, "Incognito", incognito=True))
        wanted += [_Row(c.id, c.title, pinned=c.pinned, imported=c.imported) for c in conversations]
        keys = {row.key for row in wanted}
        shown = [item for item in lv.children if isinstance(item, ConversationItem)]
        gone = [i for i, item in enumerate(shown) if item.key not in keys]
        if gone:
            await lv.remove_items(gone)
        kept = {item.key: item for item in shown if item.key in keys}
        for pos, row in enumerate(wanted):
            item = kept.get(row.key)
            if item is None:
                item = row.item()
                await (lv.insert(pos, [item]) if pos < len(lv.children) else lv.append(item))
                continue
            if lv.children[pos] is not item:
                lv.move_child(item, before=pos)
            item.relabel(row.text)
        for i, row in enumerate(wanted):
            if current is not None and row.conv_id == current.id and lv.index != i:
                lv.index = i
                break

    @on(ListView.Selected)
    def _selected(self, event: ListView.Selected) -> None:
        event.stop()
        item = event.item
        if isinstance(item, ConversationItem) and not item.incognito:
            self.post_message(self.Chosen(item.conv_id))
