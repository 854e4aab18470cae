"""Documents in the app, driven with Pilot on the real model: attach by pasted path, the
attachments above the composer, the library screen, and a cited page beside the answer."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Static

from bastion.tui.app import BastionApp
from bastion.tui.chat import ChatScreen
from bastion.tui.documents import AttachmentsBar, AttachScreen, LibraryScreen, PageScreen
from bastion.tui.widgets import MessageBox
from tests.test_documents import real_pdf
from tests.test_tui import SIZE, settle, type_text, unlock


async def test_attach_library_and_cited_page(vault_with_settings: Path, tmp_path: Path) -> None:
    """F9 + pasted path attaches; F10 lists it; an answer's sources open beside it (o)."""
    pdf = tmp_path / "src" / "gmpl.pdf"
    pdf.parent.mkdir()
    pdf.write_bytes(real_pdf("gmpl.pdf"))
    (tmp_path / "src" / "broken.pdf").write_bytes(b"%PDF-1.4 nothing")
    app = BastionApp()
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot, app)
        assert isinstance(app.screen, ChatScreen)
        # A broken file: one line, nothing attached.
        await pilot.press("f9")
        await settle(pilot, app)
        assert isinstance(app.screen, AttachScreen)
        await type_text(pilot, str(tmp_path / "src" / "broken.pdf"))
        await pilot.press("enter")
        await settle(pilot, app)
        assert app.session.documents == []
        await pilot.press("f9")
        await settle(pilot, app)
        await type_text(pilot, str(pdf))
        await pilot.press("enter")
        await settle(pilot, app)
        assert [d.title for d in app.session.documents] == ["gmpl.pdf"]
        bar = app.screen.query_one(AttachmentsBar)
        assert bar.display and "gmpl.pdf (74 p.)" in str(bar.render())
        await pilot.press("f10")
        await settle(pilot, app)
        assert isinstance(app.screen, LibraryScreen)
        table = app.screen.query_one(DataTable)
        assert table.row_count == 1
        await pilot.press("v")
        await settle(pilot, app)
        assert isinstance(app.screen, PageScreen) and "Modeling Language" in app.screen.text
        await pilot.press("escape")
        await pilot.press("escape")
        await settle(pilot, app)
        assert isinstance(app.screen, ChatScreen)
        # The question set at once and sent (typing key by key on a loaded machine would
        # start and cancel a prefetch at every pause: that is measured by bench/docs.py).
        composer = app.screen.query_one("#composer")
        composer.text = "How is a parameter statement written?"
        await pilot.click("#composer")
        await pilot.press("enter")
        await pilot.pause(0.1)
        await settle(pilot, app, timeout=600)
        answer = app.screen.query(MessageBox).last()
        assert answer.message is not None and answer.message.meta.sources
        sources = str(answer.query_one(".message-sources", Static).render())
        assert "gmpl.pdf, p. " in sources
        answer.focus()
        await pilot.press("o")
        await settle(pilot, app)
        if not isinstance(app.screen, PageScreen):  # several sources: choose the first
            await pilot.press("enter")
            await settle(pilot, app)
        assert isinstance(app.screen, PageScreen)
        cited = answer.message.meta.sources[0]
        assert app.screen.heading == cited.label
        assert app.session.conversation is not None
        attached = app.session.store.conversation_documents(app.session.conversation.id)
        assert [d.title for d in attached] == ["gmpl.pdf"]
