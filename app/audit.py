"""Recording what happens to a vault: the one function features call, and reading the log.

Events hold ids, counts, fingerprints and file hashes, never content (no titles, messages,
passphrases, file names of exports). The log lives inside each vault (storage.audit) and is
MAC-chained under a key derived from the data key. Stores without a vault (the in-memory one
of ``bastion ask`` without a vault) record nothing.

Event names in use (``data`` fields in brackets)::

    unlock [via, failed_before]          lock [via]
    unlock.failed is not an event: failed attempts cannot be written without the key, so
        they are counted beside the vault and recorded as ``failed_before`` at the next unlock
    vault.create [recovery_key]          recover                passwd
    recovery_key.rotate                  rekey
    export [conversations, recipients, passphrase, form, redacted]
    backup [conversations, recipients, passphrase]
    import [origin_sha256, conversations, authenticity, encryption]
    restore [origin_sha256, conversations, authenticity, encryption]
    pack.import [pack, version, trust, signer]   pack.remove [pack, version]
    pack.trust [key]   pack.untrust [key]
    document.add [document, sha256]      document.remove [document]
    conversation.delete [conversation]   message.delete [conversation, message]
    retention.delete [conversations]     settings.change [keys]
    keys.new [recipient]
    model.load [file, sha256, conversation]
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from bastion.storage.audit import AuditError, AuditEvent, AuditReport
from bastion.storage.store import Store

__all__ = [
    "AuditError",
    "AuditEvent",
    "AuditReport",
    "enabled",
    "events",
    "file_sha256",
    "fingerprint",
    "record",
    "verify",
]


def record(store: Store, event: str, **ids: Any) -> None:
    """Append ``event`` with ``ids`` (ids, numbers, fingerprints; lists of them) to the
    vault's audit log. Does nothing for a store without a log (in memory only).

    Raises:
        AuditError: a field is not an id or a number, or too long.
        StoreError: the row could not be written.
    """
    log = store.audit
    if log is not None:
        log.append(event, ids)


def enabled(store: Store) -> bool:
    """Whether ``store`` keeps an audit log (to skip work only an event needs)."""
    return store.audit is not None


def fingerprint(text: str | bytes) -> str:
    """A short public fingerprint (16 hex digits of SHA-256) of a key or a recipient."""
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return hashlib.sha256(raw.strip()).hexdigest()[:16]


def file_sha256(data: bytes) -> str:
    """The SHA-256 of a file's bytes (an import's origin)."""
    return hashlib.sha256(data).hexdigest()


def events(store: Store, since: datetime | None = None) -> list[AuditEvent]:
    """The vault's events, oldest first (empty for a store without a log)."""
    log = store.audit
    return log.events(since) if log is not None else []


def verify(store: Store) -> AuditReport:
    """Check the whole chain; the report names the first row that does not match."""
    log = store.audit
    return log.verify() if log is not None else AuditReport(0)
