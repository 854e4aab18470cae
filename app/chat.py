"""Chat use cases: choose and load a model, build a turn's messages, save a turn."""

from __future__ import annotations

import atexit
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app import paths
from models.discovery import HashCache, ModelInfo, choose, discover
from models.engine import ChatMessage, Engine, Generation, TurnStats
from models.settings import LoadSettings, SamplingSettings
from storage.schema import Conversation, Message
from storage.store import Store

TITLE_LENGTH = 60


def find_models(explicit: Path | None = None) -> list[ModelInfo]:
    """All models on this machine (explicit path, user folder, embedded, other tools)."""
    return discover(explicit, paths.models_dir())


def pick_model(model: str | None = None) -> ModelInfo:
    """A model by path or name, or the best available one.

    Raises:
        NoModelError: nothing usable matches.
    """
    explicit = Path(model) if model and (Path(model).exists() or "/" in model) else None
    found = find_models(explicit)
    if explicit is not None:
        return choose(found, str(explicit))
    return choose(found, model)


def model_sha256(info: ModelInfo) -> str:
    return info.sha256(HashCache(paths.cache_dir() / "model-hashes.json"))


_engines: dict[tuple[Path, str], Engine] = {}
_engines_lock = threading.Lock()


def close_engines() -> None:
    """Free every loaded model (at exit: llama-cpp-python's own finaliser fails then)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.close()
        _engines.clear()


atexit.register(close_engines)


def load_engine(info: ModelInfo, load: LoadSettings | None = None) -> Engine:
    """The engine for ``info``, loaded once per process and load settings (blocking)."""
    load = load or LoadSettings()
    key = (info.path.resolve(), load.model_dump_json())
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            # One model in memory at a time: a second llama.cpp instance would fight the
            # first for the same cores (../shared/FINDINGS.md).
            for old in list(_engines.values()):
                old.close()
            _engines.clear()
            engine = Engine(info.path, load, chat_template=info.chat_template)
            _engines[key] = engine
        return engine


def to_chat(messages: Sequence[Message]) -> list[ChatMessage]:
    return [ChatMessage(role=m.role, content=m.content, pinned=m.pinned, id=m.id) for m in messages]


def build_messages(
    question: str,
    *,
    system: str | None = None,
    history: Sequence[Message] = (),
) -> list[ChatMessage]:
    """System prompt (if any), the history of the shown branch, then the question."""
    msgs: list[ChatMessage] = []
    if system:
        msgs.append(ChatMessage(role="system", content=system, pinned=True))
    msgs.extend(to_chat([m for m in history if m.role != "system" or not system]))
    msgs.append(ChatMessage(role="user", content=question))
    return msgs


def answer(
    engine: Engine,
    messages: Sequence[ChatMessage],
    sampling: SamplingSettings | None = None,
    cancel: threading.Event | None = None,
) -> Generation:
    """Start generating an answer (see :meth:`Engine.chat`)."""
    return engine.chat(messages, sampling, cancel=cancel)


def title_for(question: str) -> str:
    """A conversation title from its first question: first line, at most 60 characters."""
    line = " ".join(question.split())
    return line if len(line) <= TITLE_LENGTH else line[: TITLE_LENGTH - 1].rstrip() + "…"


def start_conversation(
    store: Store,
    question: str,
    info: ModelInfo | None,
    sampling: SamplingSettings | None = None,
    *,
    system: str | None = None,
    pack_id: str | None = None,
    pack_version: str | None = None,
) -> Conversation:
    conv = store.create_conversation(
        title_for(question),
        model_name=info.name if info else None,
        model_sha256=model_sha256(info) if info else None,
        pack_id=pack_id,
        pack_version=pack_version,
        settings={"sampling": (sampling or SamplingSettings()).model_dump()},
    )
    if system:
        store.add_message(conv.id, "system", system, pinned=True)
    return conv


def save_turn(
    store: Store,
    conversation_id: str,
    question: str,
    answer_text: str,
    stats: TurnStats | None,
    *,
    user_stats: dict[str, Any] | None = None,
    answer_extra: dict[str, Any] | None = None,
) -> tuple[Message, Message]:
    """Store the user's question and the answer (with its statistics) on the shown branch.

    ``user_stats`` (sources, safety rules) goes with the question; ``answer_extra`` is merged
    into the answer's statistics."""
    with store.transaction():
        q = store.add_message(conversation_id, "user", question, stats=user_stats or None)
        a_stats = {**(stats.model_dump(mode="json") if stats else {}), **(answer_extra or {})}
        a = store.add_message(conversation_id, "assistant", answer_text, stats=a_stats)
    return q, a
