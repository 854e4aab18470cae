"""Encrypted transcripts and backups: the age format, a hash chain, atomic writes.

An export file is an age file (https://age-encryption.org/v1), so `age -d` opens it. Inside,
format ``md`` (the default) is a Markdown transcript readable as is, ending with a fenced
appendix that holds the full JSON document::

    # Bastion transcript
    ...the conversation, message by message...

    ```json bastion-transcript
    {"format": "bastion-transcript", "version": 1, ...}
    ```

Format ``json`` is the JSON document alone. The JSON carries every message with
``content_sha256`` and ``chain`` = SHA-256 over the previous chain value and the message's
canonical fields, and each conversation carries ``chain_head``: any edit of the content shows
up as a broken chain at the first altered message.

Authenticity (version 2): the chain is unkeyed, so anyone who can encrypt to the vault could
write a consistent one. Each export is therefore signed with the exporting vault's Ed25519
key over the canonical JSON of the whole document (``signature`` holds the public key and
the signature). The Markdown part is rendered from the JSON, so :func:`body_mismatch`
re-renders it and compares byte for byte: a readable part that says something else than
the signed JSON is an alteration. Version-1 files (unsigned) still parse.

Parsing is bounded: the JSON is read with an explicit nesting limit
(:data:`MAX_JSON_DEPTH`), no NaN or infinite numbers, valid Unicode only; files are read
through :func:`bastion.storage.files.read_regular` (regular files only, size capped on the
bytes read).

Decryption happens in memory only. Before a file reaches pyrage, its header is read here:
scrypt work factors above ``max_work_factor`` and files above ``max_size`` are refused, so a
hostile file cannot make Bastion spend gigabytes of memory or minutes of CPU.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import pyrage
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from bastion.storage import crypto
from bastion.storage.files import UnsafeFileError, atomic_write, read_regular

FORMAT = "bastion-transcript"
BACKUP_FORMAT = "bastion-backup"
VERSION = 2
SUPPORTED_VERSIONS = (1, 2)
MAX_JSON_DEPTH = 32
MAX_IDENTITY_FILE = 64 * 1024
AGE_MAGIC = b"age-encryption.org/v1\n"
DEFAULT_MAX_WORK_FACTOR = 20  # 2^20 scrypt: 1 GiB, a few seconds; age's own ceiling is 22
DEFAULT_MAX_SIZE = 512 * 1024 * 1024
APPENDIX_OPEN = "```json bastion-transcript\n"


class ExportError(Exception):
    """An export or import failed; the message is one line for the user."""


class DecryptionError(ExportError):
    """Wrong key or passphrase, or the file was damaged: one opaque error."""

    def __init__(self) -> None:
        super().__init__("cannot decrypt: wrong key or passphrase, or the file is damaged")


class HostileFileError(ExportError):
    """The file asks for more than Bastion will spend to open it."""


class MalformedExportError(ExportError):
    """The decrypted content is not a well-formed Bastion document (too deeply nested, not
    JSON, invalid numbers or Unicode, wrong fields)."""


class IdentityFileError(ExportError):
    """An ``--identity`` file that is not a readable age identity file."""


# -- bounded JSON -------------------------------------------------------------------

_JSON_TOKENS = re.compile(r'"(?:[^"\\]++|\\.)*+"|[\[\]{}]')


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("number out of range")
    return value


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not a JSON number")


def load_json(text: str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` with an explicit nesting limit, finite numbers and valid Unicode.

    The nesting is measured before parsing (strings skipped), so a deeply nested document
    never reaches the recursive parser.

    Raises:
        MalformedExportError: nested deeper than ``max_depth``, not JSON, NaN/Infinity or a
            number out of range, or a lone surrogate in a string.
    """
    depth = 0
    for m in _JSON_TOKENS.finditer(text):
        c = m.group()
        if c in "[{":
            depth += 1
            if depth > max_depth:
                raise MalformedExportError(
                    f"malformed export: nested deeper than {max_depth} levels"
                )
        elif c in "]}":
            depth -= 1
    try:
        value = json.loads(text, parse_float=_finite, parse_constant=_no_constant)
        # A lone surrogate (\ud800) parses but cannot be hashed or stored as UTF-8.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError):
        raise MalformedExportError(
            "not a Bastion export: no readable JSON document inside"
        ) from None
    return value


# -- the hash chain ---------------------------------------------------------------


def content_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def chain_step(previous: str, message: dict[str, Any]) -> str:
    """The chain value of ``message`` following ``previous`` (hex)."""
    canonical = json.dumps(
        {
            "prev": previous,
            "id": message["id"],
            "parent_id": message.get("parent_id"),
            "role": message["role"],
            "created": message["created"],
            "content_sha256": content_sha256(message["content"]),
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def seal_chain(messages: list[dict[str, Any]]) -> str:
    """Add ``content_sha256`` and ``chain`` to each message in place; return the head."""
    head = "0" * 64
    for m in messages:
        m["content_sha256"] = content_sha256(m["content"])
        head = chain_step(head, m)
        m["chain"] = head
    return head


@dataclass
class ChainReport:
    """What verification found in one conversation."""

    title: str
    messages: int
    intact: bool
    first_altered: int | None = None
    """0-based index of the first message whose content or chain does not match."""
    altered_id: str | None = None


def verify_chain(conversation: dict[str, Any]) -> ChainReport:
    messages = conversation.get("messages", [])
    head = "0" * 64
    for i, m in enumerate(messages):
        expected = chain_step(head, m)
        if m.get("content_sha256") != content_sha256(m["content"]) or m.get("chain") != expected:
            return ChainReport(conversation.get("title", "?"), len(messages), False, i, m.get("id"))
        head = expected
    if conversation.get("chain_head") != head:
        return ChainReport(
            conversation.get("title", "?"), len(messages), False, len(messages), None
        )
    return ChainReport(conversation.get("title", "?"), len(messages), True)


# -- redaction ------------------------------------------------------------------------

REDACTIONS: list[tuple[str, re.Pattern[str]]] = [
    ("EMAIL", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")),
    (
        "DOB",
        re.compile(
            r"\b(?:DOB|D\.O\.B\.|date of birth|born(?: on)?)[:\s]+"
            r"(?:\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}|\d{1,2} \w+ \d{4}|\w+ \d{1,2},? \d{4})",
            re.IGNORECASE,
        ),
    ),
    (
        "RECORD",
        re.compile(
            r"\b(?:MRN|NHS|record|case|file|patient)\s*(?:no\.?|number|#|id)?[:\s#]*\d[\d-]{4,}\b",
            re.IGNORECASE,
        ),
    ),
    ("NATIONAL-ID", re.compile(r"\b\d{3}-\d{2}-\d{4}\b|\b[A-Z]{2}\d{6}[A-D]\b")),
    ("PHONE", re.compile(r"(?<![\w-])\+?\d[\d ().-]{7,}\d\b")),
]


@dataclass
class Redaction:
    """Text with identifying patterns replaced by typed placeholders, and what was replaced."""

    counts: dict[str, int] = field(default_factory=dict)
    _seen: dict[tuple[str, str], str] = field(default_factory=dict)

    def apply(self, text: str) -> str:
        for kind, pattern in REDACTIONS:

            def repl(m: re.Match[str], kind: str = kind) -> str:
                key = (kind, m.group(0))
                if key not in self._seen:
                    self.counts[kind] = self.counts.get(kind, 0) + 1
                    self._seen[key] = f"[{kind}-{self.counts[kind]}]"
                return self._seen[key]

            text = pattern.sub(repl, text)
        return text

    def summary(self) -> str:
        if not self.counts:
            return "nothing to redact"
        return ", ".join(f"{n} {kind.lower()}" for kind, n in sorted(self.counts.items()))


# -- documents ------------------------------------------------------------------------


def transcript_document(conversations: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON document for ``conversations`` (each with its messages), chains sealed."""
    for conv in conversations:
        conv["chain_head"] = seal_chain(conv["messages"])
    return {
        "format": FORMAT,
        "version": VERSION,
        "exported": datetime.now(UTC).isoformat(timespec="seconds"),
        "conversations": conversations,
    }


def _markdown_sections(doc: dict[str, Any]) -> list[tuple[str | None, str]]:
    """The Markdown transcript in sections, each tagged with the id of the message it shows
    (None for the rest): rendered from the JSON document alone, so it can be checked."""
    head = ["# Bastion transcript", "", f"Exported {doc.get('exported')}."]
    signature = doc.get("signature")
    if isinstance(signature, dict):
        fp = signature_fingerprint(signature)
        head.append(f"Signed by the vault key {fp} (check with `bastion verify`).")
    sections: list[tuple[str | None, str]] = [(None, "\n".join(head))]
    for conv in doc["conversations"]:
        out = ["", f"## {conv['title']}", ""]
        if conv.get("imported"):
            out += ["(imported into the exporting vault from another file)", ""]
        model = conv.get("model") or {}
        pack = conv.get("pack") or {}
        if model.get("name"):
            out.append(f"Model: {model['name']} (SHA-256 {model.get('sha256') or 'unknown'})")
        if pack.get("id"):
            out.append(f"Pack: {pack['id']} {pack.get('version') or ''}".rstrip())
            if pack.get("disclaimer"):
                out += ["", f"> {pack['disclaimer']}"]
        sections.append((None, "\n".join(out)))
        for m in conv["messages"]:
            text = "\n".join(["", f"### {m['role']} · {m['created']}", "", m["content"]])
            sections.append((m.get("id"), text))
    body = json.dumps(doc, ensure_ascii=False, indent=1)
    sections.append((None, "\n".join(["", "---", "", APPENDIX_OPEN + body, "```", ""])))
    return sections


def render_markdown(doc: dict[str, Any]) -> str:
    """The transcript as Markdown, with the JSON document as a fenced appendix."""
    return "\n".join(text for _, text in _markdown_sections(doc))


def body_mismatch(plaintext: bytes, doc: dict[str, Any]) -> tuple[bool, str | None]:
    """Whether a Markdown export's readable part differs from what its JSON renders to.

    Returns:
        ``(False, None)`` when the bytes match (or the file is the JSON alone), else
        ``(True, id)`` with the id of the first message whose readable text differs (None
        when the difference is outside the messages).
    """
    try:
        text = plaintext.decode("utf-8")
    except UnicodeDecodeError:
        return True, None
    if text.rfind(APPENDIX_OPEN) == -1:
        return False, None  # format json: the JSON is the whole file
    sections = _markdown_sections(doc)
    expected = "\n".join(t for _, t in sections)
    if expected == text:
        return False, None
    at = next(
        (i for i, (a, b) in enumerate(zip(expected, text, strict=False)) if a != b),
        min(len(expected), len(text)),
    )
    pos = 0
    for message_id, section in sections:
        pos += len(section) + 1
        if at < pos:
            return True, message_id
    return True, None


def _iso(value: str) -> str:
    datetime.fromisoformat(value)  # raises ValueError for anything else
    return value


IsoTime = Annotated[str, AfterValidator(_iso)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class ExportedMessage(_Strict):
    """A message as exported (validated before anything is imported)."""

    id: str = Field(min_length=1, max_length=200)
    parent_id: str | None = None
    role: str = Field(pattern="^(system|user|assistant)$")
    content: str
    created: IsoTime
    pinned: bool = False
    stats: dict[str, Any] = Field(default_factory=dict)
    content_sha256: str | None = None
    chain: str | None = None


class ExportedConversation(_Strict):
    id: str = Field(min_length=1, max_length=200)
    title: str
    created: IsoTime
    model: dict[str, str | None] = Field(default_factory=dict)
    pack: dict[str, str | None] = Field(default_factory=dict)
    settings: dict[str, Any] = Field(default_factory=dict)
    pinned: bool = False
    imported: bool = False
    head_id: str | None = None
    chain_head: str | None = None
    messages: list[ExportedMessage] = Field(default_factory=list)


class ExportedPack(_Strict):
    id: str
    version: str
    name: str
    source: str
    signer: str | None = None


class ExportedSignature(_Strict):
    algorithm: str = Field(pattern="^ed25519$")
    public_key: str = Field(max_length=100)
    value: str = Field(max_length=200)


class ExportedDocument(_Strict):
    format: str
    version: int
    exported: IsoTime | None = None
    signature: ExportedSignature | None = None
    conversations: list[ExportedConversation] = Field(default_factory=list)
    packs: list[ExportedPack] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict)
    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)

    @property
    def raw(self) -> dict[str, Any]:
        """The document exactly as it was read: what its hash chains and signature cover
        (checked byte for byte, so they are computed on this, not on a re-serialisation)."""
        return self._raw


def parse_document(plaintext: bytes) -> ExportedDocument:
    """The JSON document inside a decrypted export (Markdown with appendix, or JSON),
    validated (bounded depth and sizes, strict types).

    Raises:
        ExportError: not a Bastion export, an unsupported version, or malformed.
    """
    try:
        text = plaintext.decode("utf-8")
    except UnicodeDecodeError:
        raise ExportError("not a Bastion export: the content is not UTF-8 text") from None
    at = text.rfind(APPENDIX_OPEN)
    if at != -1:
        end = text.rfind("\n```")
        text = text[at + len(APPENDIX_OPEN) : end if end > at else len(text)]
    doc = load_json(text)
    if not isinstance(doc, dict) or doc.get("format") not in (FORMAT, BACKUP_FORMAT):
        raise MalformedExportError("not a Bastion export: unknown format")
    version = doc.get("version")
    if type(version) is not int or version not in SUPPORTED_VERSIONS:
        shown = version if type(version) is int and abs(version) < 10**6 else "?"
        raise MalformedExportError(f"export format version {shown} is not supported")
    try:
        model = ExportedDocument.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise MalformedExportError(f"malformed export: {where}: {first['msg']}") from None
    model._raw = doc
    return model


# -- signatures ------------------------------------------------------------------------


def canonical_bytes(doc: dict[str, Any]) -> bytes:
    """What a signature covers: the document without its ``signature``, as canonical JSON
    (keys sorted, no spaces, UTF-8)."""
    body = {k: v for k, v in doc.items() if k != "signature"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def sign_document(doc: dict[str, Any], signing_key: bytes | bytearray) -> None:
    """Sign ``doc`` in place with the vault's Ed25519 key (adds ``signature``)."""
    public = crypto.signing_public_key(signing_key)
    value = crypto.sign(signing_key, canonical_bytes(doc))
    doc["signature"] = {
        "algorithm": "ed25519",
        "public_key": base64.b64encode(public).decode(),
        "value": base64.b64encode(value).decode(),
    }


def signature_fingerprint(signature: dict[str, Any]) -> str:
    """The fingerprint of the key a signature names (``?`` if it is not a key)."""
    try:
        raw = base64.b64decode(str(signature.get("public_key")), validate=True)
    except ValueError:
        return "?"
    return crypto.key_fingerprint(raw) if len(raw) == 32 else "?"


@dataclass
class SignatureCheck:
    """What the signature of a document says: ``unsigned``, ``valid`` or ``invalid``
    (present but not matching the document); ``fingerprint`` names the key."""

    status: str
    fingerprint: str | None = None


def check_signature(doc: dict[str, Any]) -> SignatureCheck:
    """Check a parsed document's signature against the key it names."""
    sig = doc.get("signature")
    if sig is None:
        return SignatureCheck("unsigned")
    if not isinstance(sig, dict):
        return SignatureCheck("invalid")
    try:
        public = base64.b64decode(str(sig.get("public_key")), validate=True)
        value = base64.b64decode(str(sig.get("value")), validate=True)
    except ValueError:
        return SignatureCheck("invalid")
    if len(public) != 32:
        return SignatureCheck("invalid")
    fingerprint = crypto.key_fingerprint(public)
    ok = crypto.verify_signature(public, value, canonical_bytes(doc))
    return SignatureCheck("valid" if ok else "invalid", fingerprint)


# -- age -------------------------------------------------------------------------------


def parse_recipient(text: str) -> Any:
    """An age X25519 (``age1...``) or SSH ed25519 public key."""
    text = text.strip()
    try:
        if text.startswith("age1"):
            return pyrage.x25519.Recipient.from_str(text)
        if text.startswith("ssh-"):
            return pyrage.ssh.Recipient.from_str(text)
    except (pyrage.RecipientError, ValueError) as exc:
        raise ExportError(f"not a valid recipient: {exc}") from None
    raise ExportError("a recipient is an age public key (age1...) or an ssh-ed25519 key")


def read_identity_file(path: Path) -> Any:
    """The age identity in an identity file (regular file, at most 64 KB, UTF-8).

    Raises:
        IdentityFileError: not a regular file, too large, not text, or no identity inside.
    """
    try:
        raw = read_regular(path, MAX_IDENTITY_FILE)
    except UnsafeFileError as exc:
        raise IdentityFileError(f"--identity: {exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise IdentityFileError(
            f"--identity: {path.name} is not an age identity file (not UTF-8 text)"
        ) from None
    try:
        return parse_identity(text)
    except ExportError:
        raise IdentityFileError(
            f"--identity: no age identity (AGE-SECRET-KEY-...) in {path.name}"
        ) from None


def parse_identity(text: str) -> Any:
    """An age identity (``AGE-SECRET-KEY-1...``) from an identity file's text."""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("AGE-SECRET-KEY-"):
            try:
                return pyrage.x25519.Identity.from_str(line)
            except (pyrage.IdentityError, ValueError):
                break
    raise ExportError("no age identity (AGE-SECRET-KEY-...) in that file")


def encrypt(
    plaintext: bytes, *, recipients: Sequence[Any] = (), passphrase: str | None = None
) -> bytes:
    try:
        if passphrase is not None:
            return bytes(pyrage.passphrase.encrypt(plaintext, passphrase))
        return bytes(pyrage.encrypt(plaintext, list(recipients)))
    except pyrage.EncryptError as exc:
        raise ExportError(f"cannot encrypt: {exc}") from None


@dataclass
class AgeHeader:
    """The stanzas of an age header, read without decrypting anything."""

    kinds: list[str]
    work_factor: int | None


def read_header(data: bytes, *, max_work_factor: int = DEFAULT_MAX_WORK_FACTOR) -> AgeHeader:
    """Check an age file's header before decryption.

    Raises:
        ExportError: not an age file (or armored, which Bastion does not read).
        HostileFileError: an scrypt work factor above ``max_work_factor``.
    """
    if data.startswith(b"-----BEGIN AGE ENCRYPTED FILE-----"):
        raise ExportError("ASCII-armored age files are not supported; use binary age files")
    if not data.startswith(AGE_MAGIC):
        raise ExportError("not an age-encrypted file")
    end = data.find(b"\n--- ")
    if end == -1:
        raise ExportError("damaged age file: the header does not end")
    kinds = []
    work = None
    for line in data[len(AGE_MAGIC) : end].split(b"\n"):
        if line.startswith(b"-> "):
            parts = line[3:].split(b" ")
            kind = parts[0].decode("ascii", "replace")
            kinds.append(kind)
            if kind == "scrypt":
                try:
                    work = int(parts[2])
                except (IndexError, ValueError):
                    raise ExportError("damaged age file: bad scrypt stanza") from None
                if work > max_work_factor:
                    raise HostileFileError(
                        f"refusing to open: the file asks for scrypt work factor 2^{work} "
                        f"(at most 2^{max_work_factor} is allowed)"
                    )
    return AgeHeader(kinds, work)


def decrypt(
    data: bytes,
    *,
    identities: Sequence[Any] = (),
    passphrase: str | None = None,
    max_work_factor: int = DEFAULT_MAX_WORK_FACTOR,
) -> bytes:
    """Decrypt in memory after checking the header. Nothing is written anywhere."""
    header = read_header(data, max_work_factor=max_work_factor)
    try:
        if "scrypt" in header.kinds:
            if passphrase is None:
                raise ExportError("this file is encrypted with a passphrase: give --passphrase")
            return bytes(pyrage.passphrase.decrypt(data, passphrase))
        if not identities:
            raise ExportError("no identity to decrypt with")
        return bytes(pyrage.decrypt(data, list(identities)))
    except pyrage.DecryptError:
        raise DecryptionError() from None


def read_limited(path: Path, max_size: int = DEFAULT_MAX_SIZE) -> bytes:
    """Read a regular file, refusing one larger than ``max_size`` (counted on the bytes
    read) and anything that is not a regular file (FIFO, device, folder), without blocking.

    Raises:
        HostileFileError: not a regular file, or larger than ``max_size``.
    """
    try:
        return read_regular(Path(path), max_size)
    except UnsafeFileError as exc:
        raise HostileFileError(str(exc)) from None


def write_encrypted(path: Path, ciphertext: bytes) -> None:
    """Write atomically (temp file in the same folder, fsync, rename): never partial."""
    if path.is_dir():
        raise ExportError(f"{path} is a folder")
    atomic_write(path, ciphertext, mode=0o600)


def identity_text(identity: Any) -> str:
    return str(identity)


def new_identity() -> Any:
    return pyrage.x25519.Identity.generate()


def public_key(identity: Any) -> str:
    return str(identity.to_public())
