"""The sidebar's conversation list: one widget draws every conversation's line. As a list of
widgets, one per conversation, showing it again at every question and answer took
200-460 ms with 150 conversations, and every layout of the chat screen visited each item."""

from __future__ import annotations

from datetime import UTC, datetime

from textual.app import App, ComposeResult
from textual.content import Content
from textual.widget import Widget
from textual.widgets import OptionList

from bastion.storage.schema import Conversation
from bastion.tui.conversations import ConversationList, label


def conv(cid: str, title: str = "", **kw: object) -> Conversation:
    now = datetime.now(UTC)
    title = title or f"About {cid}"
    return Conversation(id=cid, title=title, created=now, updated=now, **kw)  # type: ignore[arg-type]


class _ListApp(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.chosen: list[str] = []

    def compose(self) -> ComposeResult:
        yield ConversationList(id="sidebar")

    def on_conversation_list_chosen(self, event: ConversationList.Chosen) -> None:
        self.chosen.append(event.conversation_id)


def plain(options: OptionList) -> list[str]:
    return [Content.from_markup(str(o.prompt)).plain for o in options.options]


async def test_many_conversations_are_one_widget() -> None:
    """150 conversations: the sidebar holds as many widgets as with one, and showing the same
    list again changes nothing."""
    app = _ListApp()
    async with app.run_test() as pilot:
        side = app.query_one(ConversationList)
        one = [conv("c0")]
        await side.show(one, one[0], incognito=False)
        await pilot.pause()
        widgets = len(list(side.query(Widget)))
        convs = [conv(f"c{i}") for i in range(150)]
        await side.show(convs, convs[0], incognito=False)
        await pilot.pause()
        assert len(list(side.query(Widget))) == widgets
        options = app.query_one(OptionList)
        assert options.option_count == 150
        before = list(options.options)
        await side.show(convs, convs[0], incognito=False)  # a turn in the first conversation
        assert all(a is b for a, b in zip(options.options, before, strict=True))


async def test_added_removed_moved_renamed_incognito_and_chosen() -> None:
    app = _ListApp()
    async with app.run_test() as pilot:
        side = app.query_one(ConversationList)
        options = app.query_one(OptionList)
        a, b, c = conv("a"), conv("b"), conv("c")
        await side.show([a, b, c], b, incognito=False)
        await pilot.pause()
        assert options.highlighted == 1

        # A new conversation on top, b renamed and pinned, c deleted, a moved below b.
        d = conv("d", "New one")
        b2 = conv("b", "Renamed [b]", pinned=True)
        await side.show([b2, d, a], d, incognito=False)
        await pilot.pause()
        assert side.lines == [
            label("Renamed [b]", pinned=True),
            label("New one"),
            label("About a"),
        ]
        assert plain(options) == ["📌 Renamed [b]", "New one", "About a"]
        assert options.highlighted == 1

        # Enter picks the highlighted conversation.
        options.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert app.chosen == ["d"]

        # An incognito conversation is shown on top, highlighted, and cannot be picked.
        e = conv("e", "secret")
        await side.show([b2, d, a], e, incognito=True)
        await pilot.pause()
        assert plain(options)[0] == "🕶 Incognito" and options.highlighted == 0
        await pilot.press("enter")
        await pilot.pause()
        assert app.chosen == ["d"]
        await side.show([a], a, incognito=False)
        await pilot.pause()
        assert plain(options) == ["About a"] and options.highlighted == 0

        # A new conversation, not saved yet: nothing in the list is highlighted.
        await side.show([a], None, incognito=False)
        await pilot.pause()
        assert options.highlighted is None
