"""The data shapes the store returns: pydantic models, never rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
)


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


class SourceRef(BaseModel):
    """A passage a user message was sent with (numbered as the model saw it)."""

    model_config = ConfigDict(extra="ignore")

    n: int = Field(ge=0, le=10_000)
    ref_id: str = Field(max_length=200)
    title: str = Field(max_length=500)
    source: str = Field(default="", max_length=2000)
    text: str | None = Field(default=None, max_length=20_000)
    """The passage itself (kept on the user message, so the prompt renders identically)."""
    document_id: str | None = Field(default=None, max_length=64)
    """For a passage of one of the user's documents: the document's id..."""
    page: int | None = Field(default=None, ge=1, le=1_000_000)
    """...the page it is on (1-based physical page; None for an unpaged document)..."""
    sha256: str | None = Field(default=None, max_length=64)
    """...and the SHA-256 of the document's file (exports name it)."""

    @property
    def label(self) -> str:
        """``title, p. N`` for a document page, else the title."""
        return f"{self.title}, p. {self.page}" if self.page is not None else self.title


class SafetyNotice(BaseModel):
    """A safety rule that fired on a message: its fixed message is shown with the answer."""

    model_config = ConfigDict(extra="ignore")

    rule: str = Field(max_length=200)
    stage: str = Field(max_length=20)
    action: str = Field(max_length=20)
    message: str = Field(max_length=4000)


class MessageMeta(BaseModel):
    """What Bastion knows about a message besides its text: the generation statistics of an
    answer, the sources a question was sent with, the safety notices, and whether the answer
    is a pack's fixed response. Stored as one JSON object in the message's ``stats`` column;
    every key is optional, and unknown keys (from newer versions or imports) are ignored."""

    model_config = ConfigDict(extra="ignore")

    prompt_tokens: int = Field(0, ge=0)
    prompt_tokens_evaluated: int = Field(0, ge=0)
    generated_tokens: int = Field(0, ge=0)
    time_to_first_token_s: float = Field(0.0, ge=0, allow_inf_nan=False)
    decode_tokens_per_s: float = Field(0.0, ge=0, allow_inf_nan=False)
    prefill_tokens_per_s: float = Field(0.0, ge=0, allow_inf_nan=False)
    prefix_prefill_s: float = Field(0.0, ge=0, allow_inf_nan=False)
    total_s: float = Field(0.0, ge=0, allow_inf_nan=False)
    stop_reason: str | None = Field(None, max_length=40)
    """``eos``, ``length``, ``cancelled``... (None for a question)."""
    context_size: int = Field(0, ge=0)
    dropped_messages: list[int] = Field(default_factory=list)
    dropped_ids: list[str] = Field(default_factory=list)
    sources: list[SourceRef] = Field(default_factory=list)
    safety: list[SafetyNotice] = Field(default_factory=list)
    fixed_response: bool = False
    """The answer is a safety rule's fixed text: the model was not asked."""
    reasoning: str = Field("", max_length=200_000)
    """An answer's ``<think>`` reasoning, kept apart: shown collapsed, never sent back to the
    model as part of the answer."""

    @classmethod
    def read(cls, value: Any) -> MessageMeta:
        """Stored or imported metadata, or empty metadata where it does not validate (a value
        written by something else must never stop a conversation from opening)."""
        if isinstance(value, MessageMeta):
            return value
        if not isinstance(value, dict):
            return cls()
        try:
            return cls.model_validate(value)
        except ValidationError:
            return cls()

    def stored(self) -> dict[str, Any] | None:
        """The JSON object to store (only what differs from the defaults), or None."""
        data = self.model_dump(mode="json", exclude_defaults=True)
        return data or None


class Message(BaseModel):
    """One message in a conversation."""

    model_config = ConfigDict(populate_by_name=True)

    id: str
    conversation_id: str
    parent_id: str | None
    role: str
    content: str
    created: datetime
    pinned: bool = False
    meta: MessageMeta = Field(default_factory=MessageMeta, alias="stats")
    """Statistics, sources, safety notices (stored and exported under the key ``stats``)."""

    @field_validator("meta", mode="before")
    @classmethod
    def _lenient_meta(cls, value: Any) -> MessageMeta:
        return MessageMeta.read(value)

    @field_serializer("meta")
    def _compact_meta(self, meta: MessageMeta) -> dict[str, Any] | None:
        """Dumped as stored: only what differs from the defaults (None when nothing)."""
        return meta.stored()


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


class KvState(BaseModel):
    """A saved KV state of a fixed prompt prefix (a pack's system prompt and examples)."""

    key: str
    model_sha256: str
    pack_id: str | None = None
    pack_version: str | None = None
    tokens: list[int]
    state: bytes
    created: datetime


class DocumentRecord(BaseModel):
    """One of the user's documents in the vault (without its text)."""

    id: str
    sha256: str
    title: str
    """The file's name when it was added."""
    kind: str
    """``pdf``, ``docx``, ``odt``, ``text``, ``markdown``, ``html``, ``eml``."""
    paged: bool
    """Whether the page numbers are the document's own."""
    pages: int
    empty_pages: int = 0
    size: int
    """Bytes of the original file."""
    added: datetime
    has_original: bool = False
    """Whether the original bytes are kept in the vault."""


class DocumentPage(BaseModel):
    document_id: str
    page: int
    text: str


class DocumentChunk(BaseModel):
    """A passage of a document: within one page, with the heading it sits under."""

    document_id: str
    title: str
    page: int
    n: int
    heading: str
    text: str
    sha256: str = ""
    paged: bool = True
    rank: float = 0.0
    """bm25 score (lower is more relevant)."""


class DocumentHit(BaseModel):
    """A ``docs search`` result: where, and a snippet with ``[`` ``]`` around matches."""

    document_id: str
    title: str
    page: int
    paged: bool
    heading: str
    snippet: str
    rank: float
