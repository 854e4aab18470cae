"""Grounded answers: passages of attached documents in the turn, the citation check on
hand-written answers, and whole-document questions (map-reduce with progress and cancel)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from bastion.app import turn
from bastion.app.documents import citations, library, summary
from bastion.app.session import ChatSession
from bastion.models.engine import Engine
from bastion.models.settings import LoadSettings
from bastion.storage.schema import SourceRef
from tests.test_documents import real_pdf

LETTER = [
    SourceRef(
        n=1,
        ref_id="d:0",
        title="letter.pdf",
        text="The patient was discharged on 12 March with amoxicillin 500 mg three times "
        "daily for 7 days.",
        document_id="d",
        page=2,
        sha256="0" * 64,
    ),
    SourceRef(
        n=2,
        ref_id="d:1",
        title="letter.pdf",
        text="Follow-up with the cardiology clinic in 6 weeks; blood pressure 130/85 mmHg.",
        document_id="d",
        page=3,
        sha256="0" * 64,
    ),
]


def flagged(answer: str) -> list[str]:
    return [n.message for n in citations.check(answer, LETTER)]


def test_correct_citations_are_not_flagged() -> None:
    """Sentences that say what their passage says, numbers and units included: no flag."""
    answer = (
        "The patient went home with amoxicillin 500 mg three times daily for 7 days [1]. "
        "A cardiology follow-up is planned in 6 weeks [2].\n"
        "- Blood pressure was 130/85 mmHg. [2]"
    )
    assert flagged(answer) == []


def test_wrong_number_is_flagged_once() -> None:
    """A number or unit that is not in the cited passage is flagged, only that sentence."""
    answer = (
        "The patient received amoxicillin 250 mg three times daily [1]. "
        "A cardiology follow-up is planned in 6 weeks [2]."
    )
    out = flagged(answer)
    assert len(out) == 1 and out[0].startswith("sentence 1 cites [1], but 250 mg")
    assert flagged("Amoxicillin 500 g three times daily [1].")[0].startswith(
        "sentence 1 cites [1], but 500 g"
    )


def test_invented_and_unsupported_citations_are_flagged() -> None:
    """[3] when two passages were given, and a claim its passage does not make."""
    answer = (
        "The patient was discharged with amoxicillin [1]. "
        "The patient must avoid alcohol for a year [3]. "
        "The cardiology clinic recommends immediate surgery and physiotherapy [2]."
    )
    out = flagged(answer)
    assert len(out) == 2  # sentence 1 is fine
    assert out[0].startswith("sentence 2 cites [3], but no passage [3] was given")
    assert out[1].startswith("sentence 3 cites [2], but the passage does not say that")


def test_numbers_in_no_source_are_flagged_even_without_citation() -> None:
    """An uncited number that no passage (nor the question) contains is flagged."""
    out = [n.message for n in citations.check("Take 40 mg of aspirin daily.", LETTER)]
    assert out == ["40 mg is not in any source"]
    assert citations.check("Take 40 mg daily.", LETTER, question="Is 40 mg safe?") == []
    assert citations.check("See letter.pdf, p. 2, for details.", LETTER) == []  # a label


@pytest.fixture
def session(engine: Engine) -> ChatSession:
    s = ChatSession.ephemeral()
    s.engine = engine
    s.settings.sampling.max_tokens = 12
    s.settings.sampling.temperature = 0.0
    return s


def test_turn_with_a_document_sees_numbered_passages_with_pages(
    session: ChatSession, tmp_path: Path
) -> None:
    """Attached documents give passages labelled title and page; the answer stores them and
    the prompt of the next turn renders the question identically."""
    path = tmp_path / "gmpl.pdf"
    path.write_bytes(real_pdf("gmpl.pdf"))
    doc = session.attach(str(path))
    assert doc.paged and doc.pages == 74
    session.new_conversation(incognito=True)
    session.attach_record(doc)
    pending = session.send("What is an unsubscripted set in a set expression?")
    sources = pending.sources
    assert 1 <= len(sources) <= turn.MAX_SOURCES
    assert all(s.document_id == doc.id and s.page and s.sha256 == doc.sha256 for s in sources)
    pages = {p.page: p.text for p in session.store.document_pages(doc.id)}
    for s in sources:  # each passage is on the page it names
        body = (s.text or "").split(": ", 1)[-1]
        assert " ".join(body.split())[:50] in " ".join(pages[s.page or 0].split())
    prompt = pending.messages[-1].content
    assert prompt.startswith("Sources (cite them as [n]):\n[1] (gmpl.pdf, p. ")
    gen = session.generate(pending)
    answer = session.finish(pending, "".join(gen))
    assert [s.label for s in answer.meta.sources] == [s.label for s in sources]
    assert turn.sources_line(answer.meta.sources).startswith("[1")
    again = turn.prompt_messages(None, session.thread)
    assert again[-2].content == prompt  # history re-renders the question identically


def test_prefetch_prepares_document_passages_while_typing(session: ChatSession) -> None:
    """While typing, the passages are found and evaluated: sending evaluates little more."""
    doc = library.add_bytes(session.store, "gmpl.pdf", real_pdf("gmpl.pdf")).record
    session.new_conversation(incognito=True)
    session.attach_record(doc)
    question = "How are parameter statements written?"
    assert session.prefetch(question) > 100
    pending = session.send(question)
    gen = session.generate(pending)
    "".join(gen)
    assert gen.stats.prompt_tokens_evaluated < gen.stats.prompt_tokens / 3


def test_whole_document_question_reads_every_page_map_reduce(model_path: Path) -> None:
    """ "Summarise" on a document longer than the context summarises every part, reports
    progress, stores the part summaries with the question; Esc (cancel) stops between
    parts."""
    assert summary.is_whole_document_question("Please summarise this document")
    assert summary.is_whole_document_question("What are the key points of the contract?")
    assert not summary.is_whole_document_question("What is the deposit?")
    small = Engine(model_path, LoadSettings(n_ctx=1536))
    try:
        s = ChatSession.ephemeral()
        doc = library.add_bytes(s.store, "README.pdf", real_pdf("README.pdf")).record
        total_tokens = sum(len(small.tokenize(p.text)) for p in s.store.document_pages(doc.id))
        assert total_tokens > small.n_ctx  # longer than the context: map-reduce
        s.engine = small
        s.settings.sampling.max_tokens = 8
        s.summary_part_tokens = 8
        s.new_conversation(incognito=True)
        s.attach_record(doc)
        pending = s.send("Summarise this document.")
        assert pending.sources == [] and pending.whole_documents
        seen: list[tuple[int, int]] = []
        pending.progress = lambda d, t: seen.append((d, t))
        gen = s.generate(pending)
        answer = s.finish(pending, "".join(gen))
        total = seen[-1][1]
        assert total >= 3 and seen[0] == (0, total) and seen[-1] == (total, total)
        sources = s.thread[0].meta.sources  # stored with the question
        assert sources and all(x.document_id == doc.id for x in sources)
        assert sources[0].page == 1 and [x.label for x in answer.meta.sources] == [
            x.label for x in sources
        ]
        assert pending.messages[-1].content.startswith("Sources (cite them as [n]):")
        cancel = threading.Event()

        def stop_after_two(done: int, total: int) -> None:
            if done == 2:
                cancel.set()

        with pytest.raises(summary.Cancelled):
            summary.prepare(
                small, s.store, [doc], progress=stop_after_two, cancel=cancel, part_tokens=8
            )
    finally:
        small.close()
