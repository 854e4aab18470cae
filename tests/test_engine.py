"""The llama.cpp engine on the real embedded model."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from bastion.models.engine import (
    ChatMessage,
    ContextOverflowError,
    Engine,
    StopReason,
    _Detokenizer,
)
from bastion.models.settings import LoadSettings, SamplingSettings

GREEDY = SamplingSettings(temperature=0.0, max_tokens=16, seed=7)


def user(text: str, **kw: object) -> ChatMessage:
    return ChatMessage(role="user", content=text, **kw)  # type: ignore[arg-type]


def test_greedy_is_deterministic(engine: Engine) -> None:
    """A short greedy answer is the same every time for a fixed seed."""
    msgs = [user("What is the capital of France?")]
    first = engine.chat(msgs, GREEDY).text()
    engine.clear_cache()
    second = engine.chat(msgs, GREEDY).text()
    assert first and first == second
    assert "Paris" in first


def test_seeded_sampling_repeats(engine: Engine) -> None:
    """With temperature > 0 the same seed gives the same answer; the stats count tokens."""
    s = SamplingSettings(temperature=0.9, max_tokens=16, seed=123)
    msgs = [user("Write a word.")]
    a = engine.chat(msgs, s)
    text_a = a.text()
    b = engine.chat(msgs, s)
    assert text_a == b.text()
    assert 0 < a.stats.generated_tokens <= 16


def test_turn_two_reuses_kv_cache(engine: Engine) -> None:
    """Turn 2 evaluates only the new tokens, not the whole history."""
    engine.clear_cache()
    msgs = [user("Name a fruit.")]
    g1 = engine.chat(msgs, GREEDY)
    answer = g1.text()
    assert g1.stats.prompt_tokens_evaluated == g1.stats.prompt_tokens
    msgs += [ChatMessage(role="assistant", content=answer), user("Name a vegetable.")]
    g2 = engine.chat(msgs, GREEDY)
    g2.text()
    assert g2.stats.prompt_tokens > g1.stats.prompt_tokens
    assert g2.stats.prompt_tokens_evaluated < g2.stats.prompt_tokens - g1.stats.prompt_tokens + 10
    assert g2.stats.prompt_tokens_evaluated < g2.stats.prompt_tokens


def test_switching_conversations_stays_correct(engine: Engine) -> None:
    """Serving A, then B, then A again gives A the same answer as a fresh cache."""
    a = [user("What colour is the sky on a clear day?")]
    b = [user("Count from one to five.")]
    engine.clear_cache()
    fresh_a = engine.chat(a, GREEDY).text()
    engine.clear_cache()
    fresh_b = engine.chat(b, GREEDY).text()
    assert engine.chat(a, GREEDY).text() == fresh_a
    assert engine.chat(b, GREEDY).text() == fresh_b


def test_cancel_stops_within_a_few_tokens(engine: Engine) -> None:
    """Setting the cancel event stops a long generation at the next token."""
    cancel = threading.Event()
    gen = engine.chat(
        [user("Write a very long story about a dragon.")],
        SamplingSettings(temperature=0.8, max_tokens=400, seed=1),
        cancel=cancel,
    )
    for pieces, _ in enumerate(gen, start=1):
        if pieces == 5:
            cancel.set()
    assert gen.stats.stop_reason is StopReason.CANCELLED
    assert gen.stats.generated_tokens <= 6


def test_cancel_before_prefill(engine: Engine) -> None:
    """A cancel set before the turn starts evaluates nothing."""
    cancel = threading.Event()
    cancel.set()
    gen = engine.chat([user("Hello")], GREEDY, cancel=cancel)
    assert gen.text() == ""
    assert gen.stats.stop_reason is StopReason.CANCELLED
    assert gen.stats.generated_tokens == 0


def test_max_tokens_is_length_stop(engine: Engine) -> None:
    """max_tokens bounds the answer and is reported as the stop reason."""
    gen = engine.chat(
        [user("Write a long essay about rivers.")],
        SamplingSettings(temperature=0, max_tokens=5),
    )
    gen.text()
    assert gen.stats.generated_tokens == 5
    assert gen.stats.stop_reason is StopReason.LENGTH
    assert gen.stats.decode_tokens_per_s > 0 and gen.stats.time_to_first_token_s > 0


@pytest.fixture(scope="module")
def small_engine(model_path: Path):
    eng = Engine(model_path, LoadSettings(n_ctx=256))
    yield eng
    eng.close()


def test_overflow_drops_oldest_turns_keeps_system_and_pinned(small_engine: Engine) -> None:
    """When history overflows, the oldest turns go; system and pinned stay; it is reported."""
    filler = "The quick brown fox jumps over the lazy dog. " * 6
    msgs = [ChatMessage(role="system", content="You are terse.")]
    for i in range(6):
        msgs.append(user(f"Turn {i}: {filler}", id=f"u{i}", pinned=(i == 1)))
        msgs.append(ChatMessage(role="assistant", content=f"Reply {i}.", id=f"a{i}"))
    msgs.append(user("What is 1+1?", id="last"))
    gen = small_engine.chat(msgs, SamplingSettings(temperature=0, max_tokens=16))
    gen.text()
    dropped = gen.stats.dropped_messages
    assert dropped, "expected some turns to be dropped"
    assert 0 not in dropped  # system prompt
    assert 3 not in dropped  # the pinned user message u1
    assert len(msgs) - 1 not in dropped  # the question itself
    assert dropped == sorted(dropped) and dropped[0] == 1  # oldest first
    assert "u0" in gen.stats.dropped_ids and "a0" in gen.stats.dropped_ids
    kept = [m for i, m in enumerate(msgs) if i not in dropped]
    assert small_engine.count_tokens(kept) == gen.stats.prompt_tokens
    assert gen.stats.prompt_tokens + 16 <= 256


def test_single_huge_message_is_refused(small_engine: Engine) -> None:
    """A message larger than the whole context is refused with a clear error."""
    with pytest.raises(ContextOverflowError, match="context holds 256"):
        small_engine.chat([user("word " * 400)], SamplingSettings(max_tokens=16))


def test_detokenizer_holds_incomplete_utf8() -> None:
    """Multi-byte characters split across tokens come out whole."""
    pieces = {1: "é".encode()[:1], 2: "é".encode()[1:] + b"!", 3: "🙂".encode()[:2]}
    d = _Detokenizer(lambda t: pieces[t], ())
    assert d.feed(1) == ""
    assert d.feed(2) == "é!"
    assert d.feed(3) == ""
    assert d.flush() == "\ufffd"


def test_detokenizer_stop_string_across_tokens() -> None:
    """A stop string split over tokens ends the text before it, never showing a part."""
    pieces = {1: b"Hello <|e", 2: b"nd|> tail"}
    d = _Detokenizer(lambda t: pieces[t], ["<|end|>"])
    assert d.feed(1) == "Hello "
    assert d.feed(2) == ""
    assert d.stopped


def test_settings_validate() -> None:
    """Sampling and load settings reject nonsense with a field name."""
    with pytest.raises(ValueError, match="temperature"):
        SamplingSettings(temperature=-1)
    with pytest.raises(ValueError, match="n_ctx"):
        LoadSettings(n_ctx=10)
    assert LoadSettings().n_threads >= 1


def _pack_prefix() -> list[ChatMessage]:
    from bastion.app import packs, turn

    return turn.prefix_messages(packs.builtin("medical"))


def test_saved_prefix_skips_prefill_and_changes_nothing(engine: Engine) -> None:
    """A pack's prefix state, restored for a new conversation, gives the same answer as a cold
    prefill while evaluating only the new tokens; lock (clear_cache) forgets it."""
    prefix = _pack_prefix()
    question = [*prefix, user("What is an INR test?")]
    engine.clear_cache()
    cold = engine.chat(question, GREEDY)
    cold_text = cold.text()
    n, _ = engine.remember_prefix(prefix)
    assert 500 < n < cold.stats.prompt_tokens
    assert engine.remember_prefix(prefix) == (n, 0.0)  # kept, not recomputed
    engine.chat([user("Something else entirely")], GREEDY).text()  # the KV now holds another chat
    warm = engine.chat(question, GREEDY)
    assert warm.text() == cold_text
    # At most the tokens after the prefix (the whole question may even come back from the
    # recent conversations' states).
    assert warm.stats.prompt_tokens_evaluated <= cold.stats.prompt_tokens - n
    engine.clear_cache()
    after_lock = engine.chat(question, GREEDY)
    after_lock.text()
    assert after_lock.stats.prompt_tokens_evaluated == cold.stats.prompt_tokens


def test_option_scores(engine: Engine) -> None:
    """Log-likelihood scoring prefers the obvious option and is repeatable."""
    msgs = [user("Reply with one word: what colour is the sky on a clear day?")]
    scores = engine.option_logprobs(msgs, ["Blue", "Tuesday", "Elephant"])
    assert len(scores) == 3 and scores[0] == max(scores)
    assert engine.option_logprobs(msgs, ["Blue", "Tuesday", "Elephant"]) == pytest.approx(scores)
    # Scoring leaves the engine usable for chat.
    assert engine.chat(msgs, GREEDY).text()


def test_prefill_ahead_changes_nothing_but_the_work(engine: Engine) -> None:
    """Evaluating the start of a prompt ahead of time (sources while the user types) gives
    the same answer and leaves only the rest to evaluate."""
    system = ChatMessage(role="system", content="You answer briefly.", pinned=True)
    sources = "Sources:\n[1] Paracetamol: the adult maximum is 4 grams in 24 hours.\n\nQuestion: "
    full = [system, user(sources + "What is the adult maximum of paracetamol?")]
    engine.clear_cache()
    cold = engine.chat(full, GREEDY)
    cold_text = cold.text()
    # Nothing kept (the engine would otherwise restore the cold conversation's own state).
    engine.clear_cache()
    engine.chat([user("Something unrelated")], GREEDY).text()
    ahead = engine.prefill([system, user(sources)])
    assert ahead > 20
    warm = engine.chat(full, GREEDY)
    assert warm.text() == cold_text
    assert warm.stats.prompt_tokens_evaluated < cold.stats.prompt_tokens - ahead + 5


def _long_question(words: int) -> list[ChatMessage]:
    text = " ".join(f"item{i} is filed under shelf {i % 17}." for i in range(words))
    return [user(f"Read this inventory and say which shelf item3 is on. {text}")]


def test_cancel_stops_a_prefill_midway_and_the_cache_stays_sound(engine: Engine) -> None:
    """Cancelling during a long prefill stops it within a batch (llama.cpp's abort callback)
    instead of after the whole prompt; what was evaluated stays usable, and the next greedy
    answer equals one from a cold cache."""
    msgs = _long_question(300)
    engine.clear_cache()
    cancel = threading.Event()
    seen: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> None:
        seen.append((done, total))
        if done > 0:
            cancel.set()  # as if Esc was pressed after the first batch

    gen = engine.chat(msgs, GREEDY, cancel=cancel, progress=progress)
    assert gen.text() == ""
    assert gen.stats.stop_reason is StopReason.CANCELLED
    total = gen.stats.prompt_tokens
    assert total > 3 * engine.llama.n_batch
    assert 0 < engine.llama.n_tokens < total - engine.llama.n_batch  # stopped early
    assert seen[0] == (0, total - 1) and len(seen) >= 2
    resumed = engine.chat(msgs, GREEDY)
    resumed_text = resumed.text()
    assert resumed.stats.prompt_tokens_evaluated < total  # the evaluated part was reused
    engine.clear_cache()
    assert engine.chat(msgs, GREEDY).text() == resumed_text


def test_cancel_set_from_another_thread_interrupts_a_batch(engine: Engine) -> None:
    """A cancel arriving while llama.cpp is inside one large batch aborts that batch."""
    msgs = _long_question(300)
    engine.clear_cache()
    cancel = threading.Event()
    started = threading.Event()

    def progress(done: int, total: int) -> None:
        started.set()

    timer = threading.Thread(target=lambda: started.wait(30) and cancel.set())
    timer.start()
    gen = engine.chat(msgs, GREEDY, cancel=cancel, progress=progress)
    gen.text()
    timer.join()
    assert gen.stats.stop_reason is StopReason.CANCELLED
    assert engine.llama.n_tokens < gen.stats.prompt_tokens - 1
    after = engine.chat([user("What is the capital of France?")], GREEDY).text()
    assert "Paris" in after


def test_switching_back_to_a_conversation_reuses_its_state(engine: Engine) -> None:
    """Another conversation in between does not cost the first one its KV state: going back
    evaluates only the new message."""
    engine.clear_cache()
    first = _long_question(60)
    answer = engine.chat(first, GREEDY).text()
    other = engine.chat([user("Tell me about boats. " * 30)], GREEDY)
    other.text()
    follow = [*first, ChatMessage(role="assistant", content=answer), user("And item5?")]
    back = engine.chat(follow, GREEDY)
    back.text()
    assert back.stats.prompt_tokens > 300
    assert back.stats.prompt_tokens_evaluated < 40
    engine.clear_cache()  # lock: the saved states are gone
    again = engine.chat(follow, GREEDY)
    again.text()
    assert again.stats.prompt_tokens_evaluated == again.stats.prompt_tokens
