"""The vault's audit log: an append-only table of events, each row MAC-chained to the one
before it.

A row holds the time, an event name and a small JSON object of ids and numbers (conversation
ids, fingerprints, counts, file hashes), never content. Its MAC is::

    mac[n] = HMAC-SHA256(audit_key, mac[n-1] || canonical JSON [id, at, event, data])

with ``mac[0]`` 32 zero bytes and ``audit_key = HKDF(data_key, "audit-mac")``, so a row
changed, inserted or removed by someone without the data key breaks the chain at that row.
Triggers refuse UPDATE and DELETE on the table, so a bug cannot rewrite history either.
(Rows cut off at the end leave an intact, shorter chain: the chain proves what is there was
written by a key holder, not that nothing came after.)
"""

from __future__ import annotations

import hmac
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import sha256
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    from bastion.storage.store import Store

GENESIS = bytes(32)
MAX_KEYS = 16
MAX_TEXT = 200
MAX_LIST = 10_000
_KEY = re.compile(r"[a-z][a-z0-9_]{0,39}")
_EVENT = re.compile(r"[a-z][a-z0-9_.-]{0,39}")

Scalar = str | int | float | bool | None


class AuditError(ValueError):
    """An event or its ids do not fit the audit log (too big, or not ids and numbers)."""


class AuditEvent(BaseModel):
    """One row of the audit log."""

    id: int
    at: datetime
    event: str
    data: dict[str, Any]


@dataclass
class AuditReport:
    """What checking the chain found."""

    rows: int
    first_bad: int | None = None
    """The id of the first row whose MAC does not match (None: the chain is intact)."""
    reason: str = ""

    @property
    def intact(self) -> bool:
        return self.first_bad is None


def _scalar(key: str, value: Any) -> Scalar:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise AuditError(f"audit field {key!r} is longer than {MAX_TEXT} characters")
        return value
    raise AuditError(f"audit field {key!r} must be an id or a number, not {type(value).__name__}")


def clean(data: dict[str, Any]) -> dict[str, Any]:
    """Check that ``data`` holds only ids and numbers (or lists of them), within bounds.

    Raises:
        AuditError: anything else.
    """
    if len(data) > MAX_KEYS:
        raise AuditError(f"an audit event takes at most {MAX_KEYS} fields")
    out: dict[str, Any] = {}
    for key, value in data.items():
        if not _KEY.fullmatch(key):
            raise AuditError(f"bad audit field name {key!r}")
        if isinstance(value, list | tuple | set | frozenset):
            items = sorted(value) if isinstance(value, set | frozenset) else list(value)
            if len(items) > MAX_LIST:
                raise AuditError(f"audit field {key!r} has more than {MAX_LIST} items")
            out[key] = [_scalar(key, v) for v in items]
        else:
            out[key] = _scalar(key, value)
    return out


def _canonical(row_id: int, at: str, event: str, data: str) -> bytes:
    return json.dumps([row_id, at, event, data], ensure_ascii=False, separators=(",", ":")).encode()


def _mac(key: bytes, previous: bytes, row_id: int, at: str, event: str, data: str) -> bytes:
    return hmac.new(key, previous + _canonical(row_id, at, event, data), sha256).digest()


class AuditLog:
    """The audit table of one open store, with the key that chains its rows."""

    def __init__(self, store: Store, key: bytes) -> None:
        self.store = store
        self._key = bytes(key)

    def append(self, event: str, data: dict[str, Any] | None = None) -> int:
        """Add one event; returns its row id.

        Raises:
            AuditError: the event name or its data are not ids and numbers within bounds.
            StoreError: the row could not be written.
        """
        if not _EVENT.fullmatch(event):
            raise AuditError(f"bad audit event name {event!r}")
        payload = json.dumps(clean(data or {}), ensure_ascii=False, sort_keys=True)
        at = datetime.now(UTC).isoformat(timespec="microseconds")
        with self.store.transaction():
            conn = self.store.conn
            last = conn.execute("SELECT id, mac FROM audit ORDER BY id DESC LIMIT 1").fetchone()
            row_id = (last[0] + 1) if last else 1
            previous = bytes.fromhex(last[1]) if last else GENESIS
            mac = _mac(self._key, previous, row_id, at, event, payload).hex()
            conn.execute(
                "INSERT INTO audit (id, at, event, data, mac) VALUES (?, ?, ?, ?, ?)",
                [row_id, at, event, payload, mac],
            )
        return row_id

    def events(self, since: datetime | None = None, limit: int | None = None) -> list[AuditEvent]:
        """Events oldest first, from ``since`` on; rows that do not parse are shown with an
        ``unreadable`` flag rather than hidden (``verify`` names them)."""
        sql = "SELECT id, at, event, data FROM audit"
        params: list[Any] = []
        if since is not None:
            sql += " WHERE at >= ?"
            params.append(since.astimezone(UTC).isoformat(timespec="microseconds"))
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        with self.store.lock:
            rows = self.store.conn.execute(sql, params).fetchall()
        out = []
        for row_id, at, event, data in rows:
            try:
                when = datetime.fromisoformat(str(at))
                parsed = json.loads(data)
                if not isinstance(parsed, dict):
                    raise ValueError
            except (ValueError, TypeError, RecursionError):
                when, parsed = datetime.fromtimestamp(0, UTC), {"unreadable": True}
            out.append(AuditEvent(id=int(row_id), at=when, event=str(event), data=parsed))
        return out

    def verify(self) -> AuditReport:
        """Check every row's MAC against the chain; name the first row that does not match."""
        previous = GENESIS
        expected_id = 1
        n = 0
        with self.store.lock:
            cur = self.store.conn.execute("SELECT id, at, event, data, mac FROM audit ORDER BY id")
            for row_id, at, event, data, mac in cur:
                n += 1
                if row_id != expected_id:
                    return AuditReport(n, int(row_id), f"row {expected_id} is missing")
                if not all(isinstance(v, str) for v in (at, event, data, mac)):
                    return AuditReport(n, int(row_id), "a field has the wrong type")
                want = _mac(self._key, previous, row_id, at, event, data)
                try:
                    got = bytes.fromhex(mac)
                except ValueError:
                    got = b""
                if not hmac.compare_digest(want, got):
                    return AuditReport(n, int(row_id), "its MAC does not match")
                previous = got
                expected_id += 1
        return AuditReport(n)

    def rechain(self, new_key: bytes) -> None:
        """Re-MAC every row under ``new_key`` after checking the chain under the current key
        (for a re-key, whose new data key derives a new audit key).

        Raises:
            AuditError: the chain is already broken (it is not re-signed).
        """
        report = self.verify()
        if not report.intact:
            raise AuditError(f"the audit log is damaged at row {report.first_bad}: not re-keyed")
        new_key = bytes(new_key)
        with self.store.transaction():
            conn = self.store.conn
            rows = conn.execute("SELECT id, at, event, data FROM audit ORDER BY id").fetchall()
            conn.execute("DROP TRIGGER audit_no_update")
            previous = GENESIS
            for row_id, at, event, data in rows:
                mac = _mac(new_key, previous, row_id, at, event, data)
                conn.execute("UPDATE audit SET mac = ? WHERE id = ?", [mac.hex(), row_id])
                previous = mac
            conn.execute(UPDATE_TRIGGER)
        self._key = new_key


# As created by migration m003_audit (re-created by rechain).
UPDATE_TRIGGER = (
    "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit "
    "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
)
DELETE_TRIGGER = (
    "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit "
    "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
)
