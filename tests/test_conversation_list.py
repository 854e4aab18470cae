"""The sidebar's conversation list follows the vault without being rebuilt: at every question
and answer the chat screen shows the list again, and rebuilding 150 items stalled the UI for
200-460 ms each time."""

from __future__ import annotations

from datetime import UTC, datetime

from textual.app import App, ComposeResult
from textual.widgets import ListView

from bastion.storage.schema import Conversation
from bastion.tui.conversations import ConversationItem, ConversationList


def conv(cid: str, title: str = "", **kw: object) -> Conversation:
    now = datetime.now(UTC)
    return Conversation(id=cid, title=title or f"About {cid}", created=now, updated=now, **kw)  # type: ignore[arg-type]


class _ListApp(App[None]):
    def compose(self) -> ComposeResult:
        yield ConversationList(id="sidebar")


def shown(app: _ListApp) -> list[tuple[str, bool, str]]:
    lv = app.query_one(ListView)
    return [
        (i.conv_id, i.incognito, i.text) for i in lv.children if isinstance(i, ConversationItem)
    ]


async def test_unchanged_conversations_keep_their_items() -> None:
    app = _ListApp()
    async with app.run_test() as pilot:
        side = app.query_one(ConversationList)
        convs = [conv(f"c{i}") for i in range(150)]
        await side.show(convs, convs[0], incognito=False)
        await pilot.pause()
        before = list(app.query(ConversationItem))
        await side.show(convs, convs[0], incognito=False)  # a turn in the first conversation
        await pilot.pause()
        assert list(app.query(ConversationItem)) == before
        assert all(a is b for a, b in zip(app.query(ConversationItem), before, strict=True))


async def test_added_removed_moved_renamed_and_incognito() -> None:
    app = _ListApp()
    async with app.run_test() as pilot:
        side = app.query_one(ConversationList)
        lv = app.query_one(ListView)
        a, b, c = conv("a"), conv("b"), conv("c")
        await side.show([a, b, c], b, incognito=False)
        await pilot.pause()
        items = {i.conv_id: i for i in app.query(ConversationItem)}
        assert lv.index == 1

        # A new conversation on top, b renamed and pinned, c deleted, a moved below b.
        d = conv("d", "New one")
        b2 = conv("b", "Renamed [b]", pinned=True)
        await side.show([b2, d, a], d, incognito=False)
        await pilot.pause()
        assert shown(app) == [
            ("b", False, ConversationItem.label("Renamed [b]", pinned=True)),
            ("d", False, ConversationItem.label("New one", pinned=False)),
            ("a", False, ConversationItem.label("About a", pinned=False)),
        ]
        assert lv.index == 1
        now = {i.conv_id: i for i in app.query(ConversationItem)}
        assert now["a"] is items["a"] and now["b"] is items["b"]
        assert "Renamed" in str(now["b"].query_one("Static").render())

        # An incognito conversation is shown on top, highlighted; then it is gone.
        e = conv("e", "secret")
        await side.show([b2, d, a], e, incognito=True)
        await pilot.pause()
        assert shown(app)[0][:2] == ("e", True) and lv.index == 0
        assert "secret" not in shown(app)[0][2]
        await side.show([a], a, incognito=False)
        await pilot.pause()
        assert [row[0] for row in shown(app)] == ["a"] and lv.index == 0
