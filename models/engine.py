"""The llama.cpp engine: one ``Llama`` per loaded model, streaming, KV reuse, cancellation.

Why not ``create_chat_completion(stream=True)``: it re-detokenizes the whole completion on
every token (quadratic) and hides the prefix reuse it does. This engine renders the
conversation with the model's own chat template, tokenizes it, and drives
``Llama.generate()`` directly with an incremental detokenizer, so the stream costs O(1) per
token and the statistics say exactly how many prompt tokens were evaluated.

Threading: one lock per engine; a generation holds it from prefill to its last token.
Cancellation: the caller sets a ``threading.Event``. During prefill, llama.cpp's abort
callback polls it (installed only while the prompt is read: it runs for every graph node, so
it stays off during decoding), and the part evaluated so far stays reusable; during
decoding it is checked after every token.

KV states kept in memory (never on disk by the engine): fixed prefixes (a pack's system prompt
and examples, see :meth:`Engine.remember_prefix`) and the last few conversations, saved when
another prompt is about to evict them, within :data:`RECENT_STATES_BUDGET` bytes, so switching
back to a conversation does not evaluate its history again.
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import math
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from bastion.models import compute, memory
from bastion.models.gguf import GGUFError, read_header
from bastion.models.settings import LoadSettings, SamplingSettings
from bastion.models.templates import (
    CHATML_TEMPLATE,
    THINK_OPEN,
    ChatTemplate,
    ReasoningSplitter,
    TemplateError,
    fallback_template,
)

__all__ = ["CHATML_TEMPLATE", "ChatMessage", "Engine", "EngineError", "Generation"]

# -- llama.cpp's log ------------------------------------------------------------------------

LLAMA_LOGGER = logging.getLogger("bastion.llama")
"""llama.cpp's own log lines, through Bastion's logging (and so its filter). Quiet unless
``BASTION_LLAMA_LOG`` asks for more; warnings and errors are counted for ``doctor``."""
LLAMA_LOGGER.setLevel(logging.ERROR)
log_counts: Counter[str] = Counter()
"""llama.cpp log lines of this process by level (``warning``, ``error``)."""
# enum ggml_log_level of the bundled llama.cpp (5 is CONT: the rest of the previous line).
_GGML_LEVELS = {
    0: logging.CRITICAL,
    1: logging.DEBUG,
    2: logging.INFO,
    3: logging.WARNING,
    4: logging.ERROR,
}
_log_state: dict[str, Any] = {"callback": None, "last": logging.DEBUG}


def route_llama_log() -> None:
    """Send llama.cpp's log to :data:`LLAMA_LOGGER` (never straight to the terminal)."""
    if _log_state["callback"] is not None:
        return
    import os

    import llama_cpp

    wanted = os.environ.get("BASTION_LLAMA_LOG", "").upper()
    if wanted in ("DEBUG", "INFO", "WARNING", "ERROR"):
        LLAMA_LOGGER.setLevel(wanted)

    @llama_cpp.llama_log_callback
    def callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        try:
            if level == 5:  # GGML_LOG_LEVEL_CONT: the rest of the previous line
                lvl = _log_state["last"]
            else:
                lvl = _GGML_LEVELS.get(level, logging.DEBUG)
                _log_state["last"] = lvl
                if lvl >= logging.WARNING:
                    log_counts[logging.getLevelName(lvl).lower()] += 1
            line = text.decode("utf-8", "replace").strip()
            if line and LLAMA_LOGGER.isEnabledFor(lvl):
                source = line.partition(":")[0].strip()
                LLAMA_LOGGER.log(lvl, "llama.cpp %s: %s", source, line)
        except Exception:  # a log line must never break the model
            return

    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
    _log_state["callback"] = callback  # keep the C callback alive


MAX_SAVED_PREFIXES = 4
RECENT_STATES_BUDGET = 512 * 1024 * 1024
"""Bytes of KV state kept for recently used conversations (oldest dropped first)."""
MIN_RECENT_TOKENS = 64
"""A cache shorter than this is not worth keeping when another prompt evicts it."""

PrefillProgress = Callable[[int, int], None]
"""Called with (tokens evaluated, tokens to evaluate) while a prompt is read."""
"""Fixed prefixes (one per pack in use) whose KV state an engine keeps in memory."""


class EngineError(Exception):
    """The model cannot be loaded or used; the message is one line for the user."""


class ContextOverflowError(EngineError):
    """A message (with the system prompt and pinned messages) does not fit the context."""


class ChatMessage(BaseModel):
    """One message as the engine sees it."""

    role: str = Field(pattern="^(system|user|assistant)$")
    content: str
    pinned: bool = False
    """Pinned messages are never dropped when the history overflows the context."""
    id: str | None = None
    """The caller's id for the message, echoed back in ``TurnStats.dropped_ids``."""


class StopReason(StrEnum):
    """Why a generation ended."""

    EOS = "eos"
    LENGTH = "length"
    STOP = "stop"
    CANCELLED = "cancelled"


class TurnStats(BaseModel):
    """What happened in one turn; everything the status bar and ``--stats`` show."""

    prompt_tokens: int = 0
    """Tokens in the rendered prompt (after any dropped turns)."""
    prompt_tokens_evaluated: int = 0
    """Prompt tokens actually run through the model (the rest came from the KV cache)."""
    generated_tokens: int = 0
    time_to_first_token_s: float = 0.0
    decode_tokens_per_s: float = 0.0
    """Tokens per second after the first one (pure decode speed)."""
    prefill_tokens_per_s: float = 0.0
    prefix_prefill_s: float = 0.0
    """Seconds spent computing a saved prefix (a pack's) before this turn; 0 when restored."""
    total_s: float = 0.0
    stop_reason: StopReason = StopReason.EOS
    context_size: int = 0
    dropped_messages: list[int] = Field(default_factory=list)
    """Indices (in the request) of messages left out because the history did not fit."""
    dropped_ids: list[str] = Field(default_factory=list)
    """Ids of the dropped messages, for those that had one."""
    reasoning: str = ""
    """The model's ``<think>`` reasoning, kept apart from the answer (never fed back)."""

    @property
    def context_used(self) -> int:
        return self.prompt_tokens + self.generated_tokens


@dataclass
class Generation:
    """An answer being generated: iterate for text pieces; ``stats`` is final afterwards."""

    _pieces: Iterator[str]
    stats: TurnStats = field(default_factory=TurnStats)

    def __iter__(self) -> Iterator[str]:
        return self._pieces

    def text(self) -> str:
        """Consume the whole answer and return it."""
        return "".join(self._pieces)


class _Detokenizer:
    """Turns tokens into text incrementally: O(1) per token.

    Holds back bytes of an incomplete UTF-8 sequence, and text that could be the start of
    a stop string, until the next token settles it.
    """

    def __init__(self, piece: Callable[[int], bytes], stop: Sequence[str]) -> None:
        self._piece = piece
        self._stop = [s for s in stop if s]
        self._bytes = b""
        self._pending = ""
        self.stopped = False

    def feed(self, token: int) -> str:
        self._bytes += self._piece(token)
        try:
            text = self._bytes.decode("utf-8")
            self._bytes = b""
        except UnicodeDecodeError as exc:
            if exc.reason == "unexpected end of data" or len(self._bytes) - exc.start < 4:
                text = self._bytes[: exc.start].decode("utf-8", errors="replace")
                self._bytes = self._bytes[exc.start :]
            else:
                text = self._bytes.decode("utf-8", errors="replace")
                self._bytes = b""
        return self._emit(text)

    def _emit(self, text: str) -> str:
        if not self._stop:
            return text
        buf = self._pending + text
        for stop in self._stop:
            at = buf.find(stop)
            if at != -1:
                self.stopped = True
                self._pending = ""
                return buf[:at]
        # Keep back the longest tail that is a prefix of some stop string.
        hold = 0
        for stop in self._stop:
            for n in range(min(len(stop) - 1, len(buf)), 0, -1):
                if stop.startswith(buf[-n:]):
                    hold = max(hold, n)
                    break
        self._pending = buf[len(buf) - hold :] if hold else ""
        return buf[: len(buf) - hold]

    def flush(self) -> str:
        rest = self._pending + self._bytes.decode("utf-8", errors="replace")
        self._pending, self._bytes = "", b""
        return rest


class BackendInfo(BaseModel):
    """The llama.cpp build this process uses (for ``bastion doctor``).

    ``cpu_backend`` is the CPU variant ggml chose at run time from the CPU's features (the
    ``haswell`` of ``libggml-cpu-haswell.so``), or ``built-in`` when the CPU backend is linked
    into libggml itself; ``cpu_backends`` lists the variants next to the library.
    """

    version: str
    library: str
    system_info: str
    cpu_features: list[str]
    cpu_backend: str = "built-in"
    cpu_backend_path: str = ""
    cpu_backends: list[str] = Field(default_factory=list)


_CPU_VARIANT_PREFIX = "libggml-cpu-"


def backend_info() -> BackendInfo:
    """Load llama.cpp and its backends (if not yet loaded) and describe the build in use.

    With dynamic backends, ggml loads the best ``libggml-cpu-<variant>.so`` for this CPU from
    the folder of its own library when the backend is first initialised; the variant in use
    is the one mapped into this process (``/proc/self/maps``).
    """
    import llama_cpp

    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    # llama-cpp-python prints llama.cpp's log lines (here: "loaded CPU backend from ...") to
    # stderr unless its logger is quieter, as `Llama(verbose=False)` makes it.
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    llama_cpp.llama_backend_init()  # loads the backends once; later calls load nothing
    info = llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip()
    features = [p.split("=")[0].split(":")[-1].strip() for p in info.split("|") if "= 1" in p]
    variants = sorted(
        p.name.removeprefix(_CPU_VARIANT_PREFIX).split(".so")[0]
        for p in lib_dir.glob(_CPU_VARIANT_PREFIX + "*.so*")
    )
    backend, backend_path = "built-in", ""
    try:
        maps = Path("/proc/self/maps").read_text(errors="replace").splitlines()
    except OSError:
        maps = []
    for line in maps:
        parts = line.split(maxsplit=5)
        path = parts[5] if len(parts) == 6 else ""
        name = Path(path).name
        if name.startswith(_CPU_VARIANT_PREFIX) and ".so" in name:
            backend = name.removeprefix(_CPU_VARIANT_PREFIX).split(".so")[0]
            backend_path = path
            break
    return BackendInfo(
        version=llama_cpp.__version__,
        library=str(lib_dir / "libllama.so"),
        system_info=info,
        cpu_features=features,
        cpu_backend=backend,
        cpu_backend_path=backend_path,
        cpu_backends=variants,
    )


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


class Engine:
    """One loaded model. Thread-safe: generations are serialised by a lock."""

    def __init__(
        self,
        model_path: str | Path,
        load: LoadSettings | None = None,
        *,
        chat_template: str | None = None,
    ) -> None:
        """Load ``model_path`` into llama.cpp (blocking: run it in a worker).

        The context is ``min(load.n_ctx, the context the model was trained with)``, lowered
        further when the memory estimate does not fit the memory available.

        Raises:
            EngineError: the file cannot be loaded, there is not enough memory even for the
                smallest context, or its chat template does not work (one line).
        """
        route_llama_log()
        import llama_cpp  # deferred: importing it loads the shared library

        self.path = Path(model_path)
        self.load_settings = load or LoadSettings()
        s = self.load_settings
        name = self.path.name
        try:
            header = read_header(self.path)
        except GGUFError as exc:
            raise EngineError(f"cannot load model {name}: {exc}") from exc
        except OSError as exc:
            raise EngineError(f"cannot load model {name}: {exc.strerror or exc}") from exc
        from bastion.models.discovery import _shape, split_parts

        parts = split_parts(self.path, header)
        weights = header.data_bytes
        if len(parts) > 1:
            try:
                weights = sum(p.stat().st_size for p in parts)
            except OSError as exc:
                raise EngineError(f"cannot load model {name}: a part is missing") from exc
        self.shape = _shape(header, weights)
        self.trained_context = header.context_length
        self.context_note: str | None = None
        """Why the context is smaller than the setting, if it is."""
        n_ctx = s.n_ctx
        if self.trained_context and self.trained_context < n_ctx:
            n_ctx = max(self.trained_context, 64)
            self.context_note = f"the model was trained with {self.trained_context} tokens"
        budget = memory.available_memory()
        if budget is not None:
            fitted = memory.largest_context(self.shape, budget, n_ctx, s.n_batch)
            if fitted is None:
                need = memory.estimate(self.shape, memory.MIN_CONTEXT, s.n_batch).total
                raise EngineError(
                    f"not enough memory for model {name}: it needs about "
                    f"{memory.format_bytes(need)}, {memory.format_bytes(budget)} is available"
                )
            if fitted < n_ctx:
                self.context_note = (
                    f"context lowered from {n_ctx} to {fitted} tokens to fit the "
                    f"{memory.format_bytes(budget)} of memory available"
                )
                n_ctx = fitted
        self.memory_estimate = memory.estimate(self.shape, n_ctx, s.n_batch)
        try:
            self.llama = compute.run(
                lambda: llama_cpp.Llama(
                    model_path=str(self.path),
                    n_ctx=n_ctx,
                    n_threads=s.n_threads,
                    n_threads_batch=s.n_threads,
                    n_batch=s.n_batch,
                    n_ubatch=s.n_batch,
                    flash_attn=s.flash_attn,
                    n_gpu_layers=s.n_gpu_layers,
                    verbose=False,
                )
            )
        except Exception as exc:  # llama-cpp-python raises ValueError, jinja2 errors, ...
            raise EngineError(f"cannot load model {name}: {_one_line(exc)}") from exc
        self._lib = llama_cpp
        self._vocab = self.llama._model.vocab
        self._lock = threading.Lock()
        self._pieces: dict[int, bytes] = {}
        self._buf = ctypes.create_string_buffer(256)
        meta = self.llama.metadata

        def token_text(key: str) -> str:
            tid = meta.get(key)
            if tid is None or int(tid) < 0:
                return ""
            return str(self.llama._model.token_get_text(int(tid)))

        self._bos_text = token_text("tokenizer.ggml.bos_token_id")
        eos_text = token_text("tokenizer.ggml.eos_token_id")
        self._special = self._special_tokens()
        own = chat_template or meta.get("tokenizer.chat_template")
        self.has_own_template = own is not None
        self.template_note: str | None = None
        """Which fallback format is used when the model has no template."""
        stop: tuple[str, ...] = ()
        if own is None:
            own, self.template_note, stop = fallback_template(
                lambda text: text in self._special or len(self._tokenize_raw(text)) == 1,
                self._bos_text,
                eos_text,
            )
        try:
            self.template = ChatTemplate(
                own, bos_token=self._bos_text, eos_token=eos_text, name=name, stop=stop
            )
        except TemplateError as exc:
            self.llama.close()
            raise EngineError(f"model {name}: {exc}") from exc
        # Saved KV states of fixed prompt prefixes (a pack's system prompt and examples),
        # most recently used last. Memory only; never written to disk.
        self._prefixes: OrderedDict[tuple[int, ...], bytes] = OrderedDict()
        # KV states of recent conversations, saved when another prompt evicts them.
        self._recent: OrderedDict[tuple[int, ...], bytes] = OrderedDict()
        self._answers = 0
        """Answers started (:meth:`chat`, :meth:`complete`): a prefill asked for before the
        last one started is skipped."""
        self._abort: threading.Event | None = None
        self._abort_cb = llama_cpp.ggml_abort_callback(self._abort_requested)
        self._no_abort_cb = llama_cpp.ggml_abort_callback()  # a NULL function pointer

    # -- tokens ---------------------------------------------------------------

    @property
    def n_ctx(self) -> int:
        return int(self.llama.n_ctx())

    @property
    def system_folded(self) -> bool:
        """The template rejects or drops system messages: the system prompt is folded into
        the first user message."""
        return self.template.fold_system

    def _special_tokens(self) -> dict[str, tuple[int, int]]:
        """Text -> (id, attributes) of the control and unknown tokens: the only ones a
        template's text may produce (llama.cpp's own special-token partition)."""
        lib = self._lib
        out: dict[str, tuple[int, int]] = {}
        wanted = lib.LLAMA_TOKEN_ATTR_CONTROL | lib.LLAMA_TOKEN_ATTR_UNKNOWN
        self._user_defined: list[str] = []
        for tid in range(int(lib.llama_vocab_n_tokens(self._vocab))):
            attr = int(lib.llama_vocab_get_attr(self._vocab, tid))
            if attr & (wanted | lib.LLAMA_TOKEN_ATTR_USER_DEFINED):
                raw = lib.llama_vocab_get_text(self._vocab, tid)
                text = raw.decode("utf-8", "replace") if raw else ""
                if not text:
                    continue
                if attr & wanted:
                    out.setdefault(text, (tid, attr))
                elif len(text) > 2 and text[0] in "<[" and text[-1] in ">]":
                    self._user_defined.append(text)
        self._special_lengths = sorted({len(t) for t in out}, reverse=True)
        self._special_first = {t[0] for t in out}
        self._user_defined.sort(key=len, reverse=True)
        return out

    def _piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            n = self._lib.llama_token_to_piece(self._vocab, token, self._buf, 256, 0, False)
            piece = self._buf.raw[: max(n, 0)]
            self._pieces[token] = piece
        return piece

    def _is_eog(self, token: int) -> bool:
        return bool(self._lib.llama_vocab_is_eog(self._vocab, token))

    def _tokenize_raw(self, text: str, add_bos: bool = False) -> list[int]:
        return list(self.llama.tokenize(text.encode("utf-8"), add_bos=add_bos, special=False))

    def defuse(self, text: str) -> str:
        """``text`` with marker-like user-defined tokens (which llama.cpp matches even with
        special-token parsing off, e.g. ``<think>``) broken by a zero-width space, so that
        text stays text."""
        for tok in self._user_defined:
            if tok in text:
                text = text.replace(tok, tok[:1] + "\u200b" + tok[1:])
        return text

    def tokenize(self, text: str) -> list[int]:
        """Tokens of plain text (no special tokens parsed)."""
        return self._tokenize_raw(self.defuse(text))

    def render(self, messages: Sequence[ChatMessage]) -> str:
        """The prompt text for ``messages`` under the model's chat template."""
        return self._rendered(messages).text

    def _rendered(self, messages: Sequence[ChatMessage]) -> Any:
        payload = [{"role": m.role, "content": m.content} for m in messages]
        try:
            return self.template.render(payload)
        except TemplateError as exc:
            raise EngineError(f"model {self.path.name}: {exc}") from exc

    def prompt_tokens(self, messages: Sequence[ChatMessage]) -> list[int]:
        """The tokens the model will see for ``messages``: the template's markers as control
        tokens, every message's text with special-token parsing off."""
        rendered = self._rendered(messages)
        # Fragments as llama.cpp's tokenizer would cut the whole prompt, except that only the
        # template's text is searched for control tokens.
        frags: list[tuple[int | None, str]] = []  # (special token id, or None and raw text)
        for is_content, text in rendered.parts:
            if is_content or not self._special:
                frags.append((None, self.defuse(text) if is_content else text))
                continue
            start = pos = 0
            while pos < len(text):
                found = None
                if text[pos] in self._special_first:
                    for n in self._special_lengths:  # longest first, as llama.cpp does
                        if text[pos : pos + n] in self._special:
                            found = text[pos : pos + n]
                            break
                if found is None:
                    pos += 1
                    continue
                if pos > start:
                    frags.append((None, text[start:pos]))
                frags.append((self._special[found][0], found))
                pos = start = pos + len(found)
            if start < len(text):
                frags.append((None, text[start:]))
        lib = self._lib
        tokens: list[int] = []
        add_bos = bool(self.llama._model.add_bos_token())
        if add_bos and self._bos_text and rendered.text.startswith(self._bos_text):
            add_bos = False  # the template already wrote it
        bos = int(lib.llama_vocab_bos(self._vocab))
        if add_bos and bos >= 0:
            tokens.append(bos)
        raw = ""
        for i, (tid, text) in enumerate(frags):
            if tid is None:
                raw += text
                continue
            attr = self._special[text][1]
            if attr & lib.LLAMA_TOKEN_ATTR_LSTRIP:
                raw = raw.rstrip()
            if raw:
                tokens += self._tokenize_raw(raw)
                raw = ""
            tokens.append(tid)
            if attr & lib.LLAMA_TOKEN_ATTR_RSTRIP and i + 1 < len(frags):
                nxt_id, nxt = frags[i + 1]
                if nxt_id is None:
                    frags[i + 1] = (None, nxt.lstrip())
        if raw:
            tokens += self._tokenize_raw(raw)
        return tokens

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return len(self.prompt_tokens(messages))

    def opens_reasoning(self, messages: Sequence[ChatMessage]) -> bool:
        """The rendered prompt already opens a ``<think>`` block (the answer starts inside)."""
        return self.render(messages).rstrip().endswith(THINK_OPEN)

    # -- context policy -------------------------------------------------------

    def fit(
        self, messages: Sequence[ChatMessage], reserve: int
    ) -> tuple[list[ChatMessage], list[int], list[int]]:
        """Drop the oldest turns until the prompt plus ``reserve`` tokens fits the context.

        The system prompt, pinned messages and the last message are always kept. Returns the
        kept messages, the indices of the dropped ones, and the kept prompt's tokens.

        Raises:
            ContextOverflowError: even with everything droppable dropped it does not fit.
        """
        limit = self.n_ctx - reserve
        keep = list(range(len(messages)))
        dropped: list[int] = []
        while True:
            kept = [messages[i] for i in keep]
            tokens = self.prompt_tokens(kept)
            if len(tokens) <= limit:
                return kept, dropped, tokens
            droppable = [
                i for i in keep[:-1] if messages[i].role != "system" and not messages[i].pinned
            ]
            if not droppable:
                raise ContextOverflowError(
                    f"the message needs {len(tokens)} tokens with the system prompt and pinned "
                    f"messages, but the context holds {self.n_ctx} "
                    f"({reserve} kept for the answer): shorten it or raise the context size"
                )
            # Drop one turn: the oldest droppable message and the replies that follow it.
            first = droppable[0]
            batch = [first]
            for i in keep[keep.index(first) + 1 : -1]:
                if messages[i].role == "assistant" and not messages[i].pinned:
                    batch.append(i)
                else:
                    break
            dropped.extend(batch)
            keep = [i for i in keep if i not in batch]

    # -- generation -----------------------------------------------------------

    def chat(
        self,
        messages: Sequence[ChatMessage],
        sampling: SamplingSettings | None = None,
        *,
        cancel: threading.Event | None = None,
        stop: Sequence[str] = (),
        progress: PrefillProgress | None = None,
    ) -> Generation:
        """Start answering ``messages``; iterate the result for text pieces.

        The KV cache of the previous call is reused for the longest common token prefix, so a
        follow-up turn evaluates only the new tokens. The history is fitted to the context
        first (see :meth:`fit`); what was dropped is in ``stats.dropped_messages``.

        Raises:
            ContextOverflowError: when the last message cannot fit (raised here, eagerly).
        """
        sampling = sampling or SamplingSettings()
        if not messages:
            raise EngineError("nothing to answer: no messages")
        self._answers += 1
        reserve = min(sampling.max_tokens, self.n_ctx // 2)
        with self._lock:
            kept, dropped, tokens = self.fit(messages, reserve)
        stats = TurnStats(
            prompt_tokens=len(tokens),
            context_size=self.n_ctx,
            dropped_messages=dropped,
            dropped_ids=[m.id for i, m in enumerate(messages) if i in dropped and m.id],
        )
        gen = Generation(iter(()), stats)
        inside = self.opens_reasoning(kept)
        run = compute.iterate(
            self._run(tokens, sampling, cancel, (*stop, *self.template.stop), stats, progress)
        )
        gen._pieces = self._answer_only(run, stats, inside)
        return gen

    @staticmethod
    def _answer_only(pieces: Iterator[str], stats: TurnStats, inside: bool) -> Iterator[str]:
        """The answer text of ``pieces``; ``<think>`` reasoning goes to ``stats.reasoning``."""
        splitter = ReasoningSplitter(inside=inside)
        for piece in pieces:
            text = splitter.feed(piece)
            stats.reasoning = splitter.reasoning
            if text:
                yield text
        rest = splitter.flush()
        stats.reasoning = splitter.reasoning.strip()
        if rest:
            yield rest

    def complete(
        self,
        prompt: str,
        sampling: SamplingSettings | None = None,
        *,
        cancel: threading.Event | None = None,
    ) -> Generation:
        """Continue raw text (no chat template); for benchmarks and scoring."""
        sampling = sampling or SamplingSettings()
        self._answers += 1
        tokens = list(self.llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=False))
        if len(tokens) >= self.n_ctx:
            raise ContextOverflowError(
                f"the prompt needs {len(tokens)} tokens, but the context holds {self.n_ctx}"
            )
        stats = TurnStats(prompt_tokens=len(tokens), context_size=self.n_ctx)
        return Generation(compute.iterate(self._run(tokens, sampling, cancel, (), stats)), stats)

    def _run(
        self,
        tokens: list[int],
        sampling: SamplingSettings,
        cancel: threading.Event | None,
        stop: Sequence[str],
        stats: TurnStats,
        progress: PrefillProgress | None = None,
    ) -> Iterator[str]:
        """The answer's text pieces. Iterate it on the compute thread (callers wrap it in
        :func:`bastion.models.compute.iterate`)."""
        with self._lock:
            llama = self.llama
            start = time.perf_counter()
            if cancel is not None and cancel.is_set():
                stats.stop_reason = StopReason.CANCELLED
                return
            cached = self._reusable(tokens)
            stats.prompt_tokens_evaluated = len(tokens) - cached
            if not self._prefill_locked(tokens, cached, cancel, progress):
                stats.stop_reason = StopReason.CANCELLED
                stats.total_s = stats.time_to_first_token_s = time.perf_counter() - start
                return
            budget = min(sampling.max_tokens, self.n_ctx - len(tokens))
            llama.set_seed(sampling.seed if sampling.seed is not None else time.time_ns() % 2**31)
            detok = _Detokenizer(self._piece, stop)
            first = last = start
            n = 0
            stats.stop_reason = StopReason.LENGTH
            try:
                for token in llama.generate(
                    tokens,
                    top_k=sampling.top_k,
                    top_p=sampling.top_p,
                    min_p=sampling.min_p,
                    temp=sampling.temperature,
                    repeat_penalty=sampling.repeat_penalty,
                ):
                    now = time.perf_counter()
                    if n == 0:
                        first = now
                    if cancel is not None and cancel.is_set():
                        stats.stop_reason = StopReason.CANCELLED
                        break
                    if self._is_eog(token):
                        stats.stop_reason = StopReason.EOS
                        break
                    n += 1
                    last = now
                    text = detok.feed(token)
                    if text:
                        yield text
                    if detok.stopped:
                        stats.stop_reason = StopReason.STOP
                        break
                    if n >= budget:
                        break
                    stats.generated_tokens = n
                rest = detok.flush() if not detok.stopped else ""
                if rest and stats.stop_reason is not StopReason.CANCELLED:
                    yield rest
            finally:
                end = time.perf_counter()
                stats.generated_tokens = n
                stats.time_to_first_token_s = (first if n or first != start else end) - start
                stats.total_s = end - start
                if n > 1 and last > first:
                    stats.decode_tokens_per_s = (n - 1) / (last - first)
                if stats.time_to_first_token_s > 0:
                    stats.prefill_tokens_per_s = (
                        stats.prompt_tokens_evaluated / stats.time_to_first_token_s
                    )

    def _abort_requested(self, _data: Any) -> bool:
        abort = self._abort
        return abort is not None and abort.is_set()

    def _prefill_locked(
        self,
        tokens: Sequence[int],
        cached: int,
        cancel: threading.Event | None,
        progress: PrefillProgress | None,
    ) -> bool:
        """Evaluate ``tokens[cached:-1]`` in batches (the last token is left for sampling),
        with llama.cpp's abort callback polling ``cancel``. Returns False when cancelled: the
        batches evaluated before stay in the KV cache and reusable. Call with the lock held."""
        llama = self.llama
        end = len(tokens) - 1
        llama.n_tokens = cached
        total = end - cached
        if total <= 0:
            return True
        if progress is not None:
            progress(0, total)
        ctx = llama._ctx.ctx
        self._abort = cancel
        if cancel is not None:
            self._lib.llama_set_abort_callback(ctx, self._abort_cb, None)
        try:
            step = max(1, int(llama.n_batch))
            for i in range(cached, end, step):
                if cancel is not None and cancel.is_set():
                    return False
                try:
                    llama.eval(tokens[i : min(end, i + step)])
                except RuntimeError:
                    if cancel is not None and cancel.is_set():
                        # The aborted batch left nothing usable; what came before stays.
                        llama._ctx.kv_cache_seq_rm(-1, llama.n_tokens, -1)
                        return False
                    raise
                if progress is not None:
                    progress(llama.n_tokens - cached, total)
            return True
        finally:
            if cancel is not None:
                self._lib.llama_set_abort_callback(ctx, self._no_abort_cb, None)
            self._abort = None

    def clear_cache(self) -> None:
        """Forget the KV cache, saved prefixes and recent conversations' states (e.g. when the
        app locks); the weights stay loaded."""
        with self._lock:
            self.llama.reset()
            self.llama._ctx.kv_cache_clear()
            self._prefixes.clear()
            self._recent.clear()

    # -- saved prefixes (pack system prompt + examples) ----------------------------------

    def fixed_prefix(self, messages: Sequence[ChatMessage]) -> list[int]:
        """The tokens every conversation that starts with ``messages`` shares.

        Found template-agnostically: the common token prefix of ``messages`` followed by two
        different user messages.
        """
        a = self.prompt_tokens([*messages, ChatMessage(role="user", content="a")])
        b = self.prompt_tokens([*messages, ChatMessage(role="user", content="b")])
        n = 0
        for x, y in zip(a, b, strict=False):
            if x != y:
                break
            n += 1
        return a[:n]

    def remember_prefix(self, messages: Sequence[ChatMessage]) -> tuple[int, float]:
        """Evaluate the fixed prefix of ``messages`` once and keep its KV state in memory, so
        that new conversations starting with it skip that prefill.

        Returns the prefix length in tokens and the seconds spent (0 when already kept).
        """
        return compute.run(self._remember_prefix, tuple(self.fixed_prefix(messages)))

    def _remember_prefix(self, tokens: tuple[int, ...]) -> tuple[int, float]:
        with self._lock:
            if tokens in self._prefixes:
                self._prefixes.move_to_end(tokens)
                return len(tokens), 0.0
            start = time.perf_counter()
            llama = self.llama
            if llama.n_tokens >= MIN_RECENT_TOKENS:
                self._keep_recent()  # a conversation is in the cache: keep it for later
            llama.reset()
            llama.eval(list(tokens))
            self._prefixes[tokens] = self._state_bytes()
            while len(self._prefixes) > MAX_SAVED_PREFIXES:
                self._prefixes.popitem(last=False)
            return len(tokens), time.perf_counter() - start

    def saved_prefix(self, tokens: Sequence[int]) -> bytes | None:
        """The KV state kept for the prefix ``tokens`` (see :meth:`remember_prefix`), if any."""
        with self._lock:
            return self._prefixes.get(tuple(tokens))

    def load_prefix(self, tokens: Sequence[int], state: bytes) -> None:
        """Keep a KV state saved earlier (e.g. in the vault) for the prefix ``tokens``; it is
        restored into the cache by the first prompt that starts with them."""
        with self._lock:
            self._prefixes[tuple(int(t) for t in tokens)] = bytes(state)
            while len(self._prefixes) > MAX_SAVED_PREFIXES:
                self._prefixes.popitem(last=False)

    def state_key(self) -> str:
        """What a saved KV state of this engine depends on besides the model file and the
        tokens: the llama.cpp build and the cache layout settings."""
        s = self.load_settings
        return f"llama-cpp-python {self._lib.__version__}; flash_attn={s.flash_attn}"

    def _reusable(self, tokens: Sequence[int]) -> int:
        """How many leading ``tokens`` the KV cache can serve: the match with what it holds
        (one token short of all: the last is always replayed), or a longer saved prefix,
        which is then loaded. Call with the lock held."""
        llama = self.llama
        cached = 0
        if llama.n_tokens:
            for a, b in zip(llama._input_ids[: llama.n_tokens], tokens, strict=False):
                if a != b:
                    break
                cached += 1
            cached = min(cached, len(tokens) - 1)
            if llama.n_tokens - cached >= MIN_RECENT_TOKENS:
                self._keep_recent()  # this prompt evicts another conversation: keep its state
        return self._restore_prefix(tokens, cached)

    def _state_bytes(self) -> bytes:
        """The KV state of sequence 0, copied once (it is tens of MB for a long conversation,
        and saving it is on the path of a conversation switch)."""
        ctx = self.llama._ctx.ctx
        size = self._lib.llama_state_seq_get_size(ctx, 0)
        buf = ctypes.create_string_buffer(size)
        written = self._lib.llama_state_seq_get_data(
            ctx, ctypes.cast(buf, ctypes.POINTER(ctypes.c_uint8)), size, 0
        )
        return ctypes.string_at(buf, written)

    def _keep_recent(self) -> None:
        """Save the KV state of what the cache holds now among the recent conversations'
        states (within the memory budget). Call with the lock held."""
        llama = self.llama
        key = tuple(int(t) for t in llama._input_ids[: llama.n_tokens])
        if key in self._recent or key in self._prefixes:
            return
        # A longer state of the same conversation replaces its shorter ones.
        for old in [k for k in self._recent if key[: len(k)] == k]:
            del self._recent[old]
        self._recent[key] = self._state_bytes()
        while sum(len(v) for v in self._recent.values()) > RECENT_STATES_BUDGET:
            self._recent.popitem(last=False)

    @property
    def kept_states_bytes(self) -> int:
        """Memory held by saved KV states (prefixes and recent conversations)."""
        return sum(len(v) for v in (*self._prefixes.values(), *self._recent.values()))

    def _restore_prefix(self, tokens: Sequence[int], cached: int) -> int:
        """Load the saved state (a fixed prefix, or a recent conversation) that shares the
        longest start with ``tokens``, if longer than the ``cached`` match; whatever it holds
        beyond that shared start is dropped. Returns the new number of cached tokens. Call
        with the lock held."""
        limit = len(tokens) - 1  # the last token is always evaluated, for sampling
        best: tuple[int, ...] | None = None
        best_n = cached
        store = self._prefixes
        for saved in (self._prefixes, self._recent):
            for key in saved:
                if len(key) <= best_n or key[0] != tokens[0]:
                    continue
                n = 0
                for a, b in zip(key, tokens[:limit], strict=False):
                    if a != b:
                        break
                    n += 1
                if n > best_n:
                    best, best_n, store = key, n, saved
        if best is None:
            return cached
        state = store[best]
        store.move_to_end(best)
        llama = self.llama
        llama.reset()
        llama._ctx.kv_cache_clear()
        # Read in place (no copy): llama.cpp only reads the buffer.
        data = ctypes.cast(ctypes.c_char_p(state), ctypes.POINTER(ctypes.c_uint8))
        if not self._lib.llama_state_seq_set_data(llama._ctx.ctx, data, len(state), 0):
            llama._ctx.kv_cache_clear()
            return 0
        llama.input_ids[: len(best)] = best
        llama._ctx.kv_cache_seq_rm(-1, best_n, -1)
        llama.n_tokens = best_n
        return best_n

    def prefill(
        self, messages: Sequence[ChatMessage], cancel: threading.Event | None = None
    ) -> int:
        """Evaluate the prompt of ``messages`` into the KV cache ahead of time (e.g. a turn's
        sources while the user is still typing the question). A later :meth:`chat` whose
        prompt starts with the same tokens evaluates only the rest. Skipped when ``cancel`` is
        set or another generation holds the engine. Returns the tokens evaluated."""
        tokens = self.prompt_tokens(messages)
        if len(tokens) >= self.n_ctx // 2 or self._lock.locked():
            return 0
        return compute.run(self._prefill, tokens, cancel, self._answers)

    def _prefill(self, tokens: list[int], cancel: threading.Event | None, answers: int) -> int:
        if answers != self._answers:
            return 0  # an answer started while this waited for the compute thread: too late
        if not self._lock.acquire(blocking=False):
            return 0
        try:
            if cancel is not None and cancel.is_set():
                return 0
            cached = self._reusable(tokens)
            llama = self.llama
            llama.n_tokens = cached
            llama.eval(tokens[cached:])
            return len(tokens) - cached
        finally:
            self._lock.release()

    # -- scoring ------------------------------------------------------------------------

    def option_logprobs(
        self, messages: Sequence[ChatMessage], options: Sequence[str]
    ) -> list[float]:
        """How likely the model finds each option as the answer to ``messages``: the total
        log-probability of the option's tokens right after the assistant turn starts (divide
        by the option's length to compare options of different lengths). Used to score
        multiple-choice questions without sampling."""
        prompt = self.prompt_tokens(messages)
        if len(prompt) + 64 >= self.n_ctx:
            raise ContextOverflowError(
                f"the question needs {len(prompt)} tokens, but the context holds {self.n_ctx}"
            )
        return compute.run(self._option_logprobs, prompt, options)

    def _option_logprobs(self, prompt: list[int], options: Sequence[str]) -> list[float]:
        import numpy as np

        with self._lock:
            llama = self.llama
            cached = self._reusable(prompt)  # at most len(prompt) - 1
            llama.n_tokens = cached
            llama.eval(prompt[cached:])

            def logits() -> Any:
                ptr = llama._ctx.get_logits_ith(-1)
                return np.ctypeslib.as_array(ptr, shape=(llama.n_vocab(),)).astype(np.float64)

            def log_softmax(x: Any) -> Any:
                m = x.max()
                return x - (m + math.log(np.exp(x - m).sum()))

            first = log_softmax(logits())
            scores = []
            for option in options:
                toks = self.tokenize(option)
                if not toks:
                    scores.append(float("-inf"))
                    continue
                total = float(first[toks[0]])
                llama.n_tokens = len(prompt)
                for prev, nxt in itertools.pairwise(toks):
                    llama.eval([prev])
                    total += float(log_softmax(logits())[nxt])
                scores.append(total)
            llama.n_tokens = len(prompt)
            llama._ctx.kv_cache_seq_rm(-1, len(prompt), -1)
            return scores

    def close(self) -> None:
        with self._lock:
            self.llama.close()
