"""A fake engine for UI mechanics only (streaming speed, snapshots); never for behaviour
that depends on the model."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

from bastion.models.engine import (
    ChatMessage,
    Generation,
    PrefillProgress,
    StopReason,
    TurnStats,
)
from bastion.models.settings import SamplingSettings


class FakeEngine:
    """Streams ``tokens`` pieces of text as fast as asked (``delay`` seconds apart)."""

    def __init__(self, tokens: int = 20, delay: float = 0.0, text: str = "word ") -> None:
        self.tokens = tokens
        self.delay = delay
        self.text = text
        self.n_ctx = 4096
        self.cleared = 0

    def chat(
        self,
        messages: Sequence[ChatMessage],
        sampling: SamplingSettings | None = None,
        *,
        cancel: threading.Event | None = None,
        stop: Sequence[str] = (),
        progress: PrefillProgress | None = None,
    ) -> Generation:
        stats = TurnStats(prompt_tokens=10 * len(messages), context_size=self.n_ctx)
        if progress is not None:
            progress(stats.prompt_tokens, stats.prompt_tokens)
        gen = Generation(iter(()), stats)
        gen._pieces = self._run(stats, cancel)
        return gen

    def _run(self, stats: TurnStats, cancel: threading.Event | None) -> Iterator[str]:
        start = time.perf_counter()
        stats.stop_reason = StopReason.EOS
        for i in range(self.tokens):
            if cancel is not None and cancel.is_set():
                stats.stop_reason = StopReason.CANCELLED
                break
            if self.delay:
                time.sleep(self.delay)
            if i == 0:
                stats.time_to_first_token_s = time.perf_counter() - start
            stats.generated_tokens = i + 1
            yield self.text
        total = time.perf_counter() - start
        stats.total_s = total
        if stats.generated_tokens > 1:
            stats.decode_tokens_per_s = stats.generated_tokens / max(total, 1e-9)

    def clear_cache(self) -> None:
        self.cleared += 1

    def close(self) -> None:
        pass
