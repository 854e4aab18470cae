"""The data shapes the store returns: pydantic models, never rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class Conversation(BaseModel):
    """A conversation; its messages form a tree (edits and regenerations are branches)."""

    id: str
    title: str
    created: datetime
    updated: datetime
    model_name: str | None = None
    model_sha256: str | None = None
    pack_id: str | None = None
    pack_version: str | None = None
    pinned: bool = False
    imported: bool = False
    head_id: str | None = None
    """The last message of the branch currently shown."""
    settings: dict[str, Any] = Field(default_factory=dict)
    """Per-conversation sampling and load settings (as JSON-able values)."""


class Message(BaseModel):
    """One message in a conversation."""

    id: str
    conversation_id: str
    parent_id: str | None
    role: str
    content: str
    created: datetime
    pinned: bool = False
    stats: dict[str, Any] | None = None
    """Generation statistics of an assistant message (``TurnStats`` as a dict)."""


class SearchHit(BaseModel):
    """A full-text search result: a message (or a title) with a highlighted snippet."""

    conversation_id: str
    conversation_title: str
    message_id: str | None
    """None when the hit is the conversation's title."""
    role: str | None
    snippet: str
    created: datetime
    rank: float


class PackRecord(BaseModel):
    """A domain pack as stored in the vault: its source text and how it was trusted."""

    id: str
    version: str
    name: str
    source: str
    """The pack file (TOML) as imported."""
    signer: str | None = None
    imported: datetime


class SourceChunk(BaseModel):
    """A chunk of a pack's reference document, found for a question."""

    pack_id: str
    ref_id: str
    n: int
    """Position of the chunk in its document."""
    title: str
    source: str
    """Attribution of the document (the public source it summarises)."""
    text: str
    rank: float = 0.0
    """bm25 score (lower is more relevant)."""
