"""The encrypted vault: a SQLCipher database, its key header, a lock, rollback detection.

Files in the vault folder (0700)::

    vault.hdr   the data key wrapped under the passphrase and the recovery key
                (see storage.crypto), 0600
    vault.db    SQLCipher 4 database keyed with a subkey of the data key, 0600
    vault.db-wal, vault.db-shm   SQLite's (encrypted page images; empty after close)
    vault.lock  held with flock while a Bastion process has the vault open
    vault.failed  how many unlock attempts failed since the last unlock (a number, 0600;
                the next unlock records it in the audit log and removes the file)

Rollback detection: the header and the database both record a counter that is raised at
every open and every close (database first, then header). The database behind its header
(an older copy restored) or the header behind by more than the one-step crash window is
reported as :class:`RollbackError`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlcipher3

from bastion.storage import crypto, recovery_key
from bastion.storage.audit import AuditLog
from bastion.storage.files import atomic_write, fsync_dir
from bastion.storage.store import Store

HEADER_NAME = "vault.hdr"
DB_NAME = "vault.db"
LOCK_NAME = "vault.lock"
FAILED_NAME = "vault.failed"
# Rekeying (see Vault.rekey): the re-encrypted database and the header that opens it,
# present only while a rekey is under way or was interrupted.
REKEY_DB_NAME = "vault.db.rekey"
REKEY_HEADER_NAME = "vault.hdr.next"
VAULT_FILES = frozenset(
    {
        HEADER_NAME,
        DB_NAME,
        f"{DB_NAME}-wal",
        f"{DB_NAME}-shm",
        f"{DB_NAME}-journal",
        LOCK_NAME,
        FAILED_NAME,
        REKEY_DB_NAME,
        f"{REKEY_DB_NAME}-journal",
        REKEY_HEADER_NAME,
    }
)

# Each is checked after it is set; a mismatch refuses the open.
REQUIRED_PRAGMAS: dict[str, Any] = {
    "secure_delete": 1,
    "temp_store": 2,  # MEMORY: no plaintext temp files
    "journal_mode": "wal",
    "synchronous": 2,  # FULL
    "foreign_keys": 1,
}


class VaultError(Exception):
    """A vault problem, explained in one line for the user."""


class VaultLockedError(VaultError):
    """Another running Bastion has the vault open."""


class VaultCorruptError(VaultError):
    """The database is damaged, tampered with, or not a Bastion vault."""


class RollbackError(VaultError):
    """The database and its header are from different points in time.

    Attributes:
        missing: how many recorded changes (counter steps) one file is behind the other.
    """

    def __init__(self, message: str, missing: int = 0) -> None:
        super().__init__(message)
        self.missing = missing


class DiskFullError(VaultError):
    """The disk (or the user's quota) is full: nothing was changed."""


class ReadOnlyMediaError(VaultError):
    """The vault is on read-only media: it cannot be opened for writing."""


class VaultExistsError(VaultError):
    """``init`` on a folder that already has a vault."""


class VaultMissingError(VaultError):
    """No vault (or no header) where one was expected."""


UnlockError = crypto.UnlockError
RecoveryKeyError = recovery_key.RecoveryKeyError


def _as_bytes(passphrase: str | bytes | bytearray) -> bytearray:
    if isinstance(passphrase, str):
        return bytearray(passphrase.encode("utf-8"))
    return bytearray(passphrase)


@dataclass
class VaultPaths:
    folder: Path

    @property
    def header(self) -> Path:
        return self.folder / HEADER_NAME

    @property
    def db(self) -> Path:
        return self.folder / DB_NAME

    @property
    def lock(self) -> Path:
        return self.folder / LOCK_NAME

    @property
    def failed(self) -> Path:
        return self.folder / FAILED_NAME

    @property
    def rekey_db(self) -> Path:
        return self.folder / REKEY_DB_NAME

    @property
    def rekey_header(self) -> Path:
        return self.folder / REKEY_HEADER_NAME

    def exists(self) -> bool:
        return self.header.exists() or self.db.exists()


def _failed_count(paths: VaultPaths) -> int:
    try:
        with open(paths.failed, "rb") as f:
            text = f.read(24)
        return max(0, int(text.decode("ascii").strip() or 0))
    except (OSError, ValueError):
        return 0


def _count_failure(paths: VaultPaths) -> None:
    """One more failed unlock (held under the vault lock)."""
    with contextlib.suppress(OSError):  # a full disk must not hide the unlock error
        atomic_write(paths.failed, str(_failed_count(paths) + 1).encode("ascii"))


def _take_failures(paths: VaultPaths) -> int:
    """The failed unlocks since the last unlock, and start counting again."""
    n = _failed_count(paths)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(paths.failed)
    return n


def _acquire_lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise VaultLockedError(
            "the vault is open in another Bastion process; close it first"
        ) from None
    return fd


_SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_FULL, _SQLITE_CANTOPEN = 8, 10, 13, 14


def media_problem(folder: Path, exc: BaseException | None = None) -> VaultError | None:
    """A full disk or read-only media behind a failure, told as such (never as damage):
    from the error itself (SQLite's code, ``errno``) or the file system's state."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    errno_ = getattr(exc, "errno", None)
    text = str(exc).lower() if exc is not None else ""
    try:
        fs = os.statvfs(folder)
        read_only = bool(fs.f_flag & os.ST_RDONLY)
        free = fs.f_bavail * fs.f_frsize
    except OSError:
        read_only, free = False, None
    if primary == _SQLITE_READONLY or errno_ == 30 or read_only or "readonly" in text:
        return ReadOnlyMediaError(
            f"the vault is on read-only media ({folder}): it can only be opened where it "
            "can be written; nothing was changed"
        )
    full = primary == _SQLITE_FULL or errno_ in (28, 122) or "disk is full" in text
    if full or (free is not None and free < 1024 * 1024 and primary in (_SQLITE_IOERR, None)):
        return DiskFullError(
            f"the disk holding the vault is full ({folder}): free some space and try again; "
            "nothing was lost"
        )
    if primary in (_SQLITE_IOERR, _SQLITE_CANTOPEN):
        return VaultError(
            f"the vault files cannot be read or written (I/O error in {folder}); they were not "
            "changed"
        )
    return None


def _connect(db_path: Path, db_key: bytes) -> sqlcipher3.Connection:
    # A small statement cache. Measured with sqlcipher3 0.6.4: once ~10 statements sit in
    # the default 128-entry cache, FTS5 bm25 ranking runs ~10x slower (60 ms -> 350 ms on
    # 30k messages); the cause inside the module was not established.
    conn = sqlcipher3.connect(
        str(db_path), check_same_thread=False, isolation_level=None, cached_statements=8
    )
    try:
        conn.execute(f"PRAGMA key = \"x'{db_key.hex()}'\"")
        conn.execute("PRAGMA cipher_memory_security = ON")
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlcipher3.DatabaseError as exc:
            media = media_problem(db_path.parent, exc)
            if media is not None:
                raise media from exc
            raise VaultCorruptError(
                "the vault database cannot be read: it is damaged or not this vault's"
            ) from exc
        for name, want in REQUIRED_PRAGMAS.items():
            value = want if isinstance(want, str) else int(want)
            conn.execute(f"PRAGMA {name} = {value}").fetchall()
        # Read back only after all are set: interleaving sets and reads was measured to
        # leave SQLCipher's FTS5 ranking ~10x slower on this connection.
        for name, want in REQUIRED_PRAGMAS.items():
            got = conn.execute(f"PRAGMA {name}").fetchall()[0][0]
            if (got.lower() if isinstance(got, str) else got) != want:
                raise VaultError(f"refusing to open: PRAGMA {name} is {got!r}, need {want!r}")
    except BaseException:
        conn.close()
        raise
    return conn


def _check_integrity(conn: sqlcipher3.Connection) -> None:
    try:
        bad = conn.execute("PRAGMA cipher_integrity_check").fetchall()
        quick = conn.execute("PRAGMA quick_check").fetchall()
    except sqlcipher3.DatabaseError as exc:
        raise VaultCorruptError("the vault database is damaged or was tampered with") from exc
    if bad or quick != [("ok",)]:
        raise VaultCorruptError("the vault database is damaged or was tampered with")


class Vault:
    """An unlocked vault. Use :meth:`create` or :meth:`open`; :meth:`close` when done."""

    def __init__(self) -> None:  # use create() / open()
        self.paths: VaultPaths
        self.store: Store
        self._key = bytearray()
        self._lock_fd = -1
        self._header = b""
        self._slot: crypto.PassphraseSlot | None = None
        self.rollback_warning: str | None = None
        self.failed_unlocks = 0
        """Failed unlock attempts between the previous unlock and this one."""
        self.new_recovery_key: str | None = None
        """The recovery key made by :meth:`create` (to show once, then forget)."""

    # -- lifecycle ------------------------------------------------------------

    @classmethod
    def create(
        cls,
        folder: Path,
        passphrase: str | bytes | bytearray,
        kdf: crypto.KdfParams | None = None,
        *,
        recovery: bool = True,
    ) -> Vault:
        """Create a new vault in ``folder`` (made 0700 if missing).

        With ``recovery`` (the default) the data key is also wrapped under a new recovery
        key, left in :attr:`new_recovery_key` for the caller to show once.

        Raises:
            VaultExistsError: there is already a vault (or part of one) there.
        """
        paths = VaultPaths(Path(folder))
        paths.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(paths.folder, 0o700)
        lock_fd = _acquire_lock(paths.lock)
        try:
            if paths.exists():
                raise VaultExistsError(f"a vault already exists in {paths.folder}")
            for suffix in ("-wal", "-shm", "-journal"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(str(paths.db) + suffix)
            key = crypto.new_key()
            pw = _as_bytes(passphrase)
            try:
                slot = crypto.passphrase_slot(pw, kdf)
            finally:
                crypto.wipe(pw)
            shown = None
            rslot = None
            if recovery:
                secret, rslot = crypto.new_recovery(key)
                shown = recovery_key.encode(secret)
                crypto.wipe(secret)
            header = crypto.write_header(key, slot, rslot, 0)
            # The database is created 0600 before SQLite opens it.
            os.close(os.open(paths.db, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            conn = _connect(paths.db, crypto.subkey(key, "sqlcipher"))
            store = Store(conn)
            # The header is written last: a crash before leaves no half-vault that unlocks.
            atomic_write(paths.header, header)
        except BaseException:
            os.close(lock_fd)
            raise
        vault = cls._assemble(paths, key, header, store, lock_fd)
        vault._slot = slot
        vault.new_recovery_key = shown
        try:
            vault._bump()
        except BaseException:
            vault.close(bump=False)
            raise
        return vault

    @classmethod
    def open(
        cls,
        folder: Path,
        passphrase: str | bytes | bytearray,
        *,
        accept_rollback: bool = False,
        verify: bool = True,
    ) -> Vault:
        """Unlock the vault in ``folder``.

        Raises:
            VaultMissingError: no vault there.
            UnlockError: wrong passphrase or damaged header (deliberately the same error).
            VaultLockedError: another Bastion has it open.
            VaultCorruptError: the database is damaged or tampered with.
            RollbackError: database and header disagree in time (unless ``accept_rollback``).
        """
        paths = VaultPaths(Path(folder))
        if not paths.header.exists():
            if paths.db.exists():
                raise VaultMissingError(f"the vault header {paths.header} is missing")
            raise VaultMissingError(f"no vault in {paths.folder}; create one with `bastion init`")
        try:
            lock_fd = _acquire_lock(paths.lock)
        except OSError as exc:
            raise media_problem(paths.folder, exc) or exc from None
        try:
            pw = _as_bytes(passphrase)
            try:
                _finish_rekey(paths, pw)
                header = paths.header.read_bytes()
                try:
                    key, _, slot = crypto.open_slot(header, pw)
                except UnlockError:
                    _count_failure(paths)
                    raise
            finally:
                crypto.wipe(pw)
            vault = cls._open_with_key(paths, key, header, lock_fd, accept_rollback, verify)
        except OSError as exc:
            os.close(lock_fd)
            raise media_problem(paths.folder, exc) or exc from None
        except BaseException:
            os.close(lock_fd)
            raise
        vault._slot = slot
        vault.failed_unlocks = _take_failures(paths)
        return vault

    @classmethod
    def recover(
        cls,
        folder: Path,
        key_text: str | bytes | bytearray,
        new_passphrase: str | bytes | bytearray,
        kdf: crypto.KdfParams | None = None,
        *,
        accept_rollback: bool = False,
    ) -> Vault:
        """Unlock with the recovery key and set a new passphrase (the old one stops working;
        the recovery key stays valid). Returns the open vault.

        Raises:
            RecoveryKeyError: the key as typed is malformed or has a typo (checksum).
            VaultMissingError: no vault there.
            VaultError: the vault has no recovery key.
            UnlockError: wrong recovery key or damaged header.
        """
        secret = recovery_key.decode(key_text)
        paths = VaultPaths(Path(folder))
        if not paths.header.exists():
            crypto.wipe(secret)
            raise VaultMissingError(f"no vault in {paths.folder}")
        lock_fd = _acquire_lock(paths.lock)
        try:
            old = paths.header.read_bytes()
            if crypto.parse(old).recovery is None:
                raise VaultError(
                    "this vault has no recovery key (it was made before recovery keys existed)"
                )
            try:
                key, header = crypto.unseal_recovery(old, secret)
            except UnlockError:
                _count_failure(paths)
                raise
            finally:
                crypto.wipe(secret)
            pw = _as_bytes(new_passphrase)
            try:
                slot = crypto.passphrase_slot(pw, kdf or header.kdf)
            finally:
                crypto.wipe(pw)
            # Written by the first counter bump, once the database has opened and passed
            # its checks: a damaged database leaves the old header as it was.
            new = crypto.write_header(key, slot, header.recovery, header.counter)
            vault = cls._open_with_key(paths, key, new, lock_fd, accept_rollback, True)
        except BaseException:
            os.close(lock_fd)
            raise
        vault._slot = slot
        vault.failed_unlocks = _take_failures(paths)
        return vault

    @classmethod
    def _open_with_key(
        cls,
        paths: VaultPaths,
        key: bytearray,
        header: bytes,
        lock_fd: int,
        accept_rollback: bool,
        verify: bool,
    ) -> Vault:
        if not paths.db.exists():
            raise VaultMissingError(f"the vault database {paths.db} is missing")
        conn = _connect(paths.db, crypto.subkey(key, "sqlcipher"))
        try:
            if verify:
                _check_integrity(conn)
            try:
                store = Store(conn)
            except sqlcipher3.DatabaseError as exc:
                raise VaultCorruptError(
                    "the vault database is damaged or was tampered with"
                ) from exc
        except BaseException:
            conn.close()
            raise
        vault = cls._assemble(paths, key, header, store, lock_fd)
        try:
            vault._check_rollback(accept_rollback)
            vault._bump()
        except BaseException:
            # The caller still owns (and closes) the lock.
            with store.lock:
                store.conn.close()
            crypto.wipe(key)
            raise
        return vault

    @classmethod
    def _assemble(
        cls, paths: VaultPaths, key: bytearray, header: bytes, store: Store, lock_fd: int
    ) -> Vault:
        vault = cls()
        vault.paths = paths
        vault._key = key
        vault._header = header
        vault.store = store
        vault._lock_fd = lock_fd
        store.audit = AuditLog(store, crypto.subkey(key, "audit-mac"))
        return vault

    def close(self, *, bump: bool = True) -> None:
        """Raise the rollback counter, checkpoint, close, wipe the key, release the lock."""
        if self._lock_fd < 0:
            return
        try:
            if bump:
                self._bump()
            with self.store.lock:
                self.store.purge()
                self.store.conn.close()
        finally:
            crypto.wipe(self._key)
            if self._slot is not None:
                crypto.wipe(self._slot.kek)
            os.close(self._lock_fd)
            self._lock_fd = -1

    def destroy(self) -> None:
        """Delete this open vault's files for good (the lock is held until the end) and its
        folder if it is then empty."""
        if self._lock_fd < 0:
            raise VaultError("the vault is not open")
        try:
            with self.store.lock:
                self.store.conn.close()
            for name in sorted(VAULT_FILES - {LOCK_NAME}):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.paths.folder / name)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.paths.lock)
        finally:
            crypto.wipe(self._key)
            if self._slot is not None:
                crypto.wipe(self._slot.kek)
            os.close(self._lock_fd)
            self._lock_fd = -1
        with contextlib.suppress(OSError):
            self.paths.folder.rmdir()

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def is_open(self) -> bool:
        return self._lock_fd >= 0

    # -- rollback counter -----------------------------------------------------

    @property
    def header_counter(self) -> int:
        return crypto.parse(self._header).counter

    def _check_rollback(self, accept: bool) -> None:
        problem = rollback_problem(self.header_counter, self.store.counter())
        if problem is None:
            d = self.store.counter()
            if d == self.header_counter + 1:
                # A crash between raising the database's counter and rewriting the header.
                self._write_header(crypto.with_counter(self._header, self._key, d))
            return
        text, missing = problem
        if not accept:
            raise RollbackError(
                text + "; to open this copy anyway, unlock with --accept-rollback", missing
            )
        self.rollback_warning = text + "; accepted at unlock (--accept-rollback)"
        top = max(self.header_counter, self.store.counter())
        self.store.set_counter(top)
        self._write_header(crypto.with_counter(self._header, self._key, top))

    def _bump(self) -> None:
        new = max(self.header_counter, self.store.counter()) + 1
        self.store.set_counter(new)  # database first: see _check_rollback
        self._write_header(crypto.with_counter(self._header, self._key, new))

    def _write_header(self, header: bytes) -> None:
        atomic_write(self.paths.header, header)
        self._header = header

    # -- passphrase -----------------------------------------------------------

    def change_passphrase(
        self,
        new_passphrase: str | bytes | bytearray,
        kdf: crypto.KdfParams | None = None,
    ) -> None:
        """Re-wrap the data key under a new passphrase: one atomic header replacement,
        so after a crash exactly one of the old and new passphrases opens the vault. The
        recovery key (if any) stays valid."""
        pw = _as_bytes(new_passphrase)
        try:
            slot = crypto.passphrase_slot(pw, kdf or crypto.parse(self._header).kdf)
        finally:
            crypto.wipe(pw)
        self.write_header_with_slots(slot=slot)
        self._slot = slot

    # -- recovery key ---------------------------------------------------------

    @property
    def has_recovery_key(self) -> bool:
        return crypto.parse(self._header).recovery is not None

    def rotate_recovery_key(self) -> str:
        """Make a new recovery key (the old one stops working) and return it, to show once.
        A version-1 vault gets its first recovery key (its header becomes version 2)."""
        secret, rslot = crypto.new_recovery(self._key)
        try:
            text = recovery_key.encode(secret)
        finally:
            crypto.wipe(secret)
        self.write_header_with_slots(recovery=rslot)
        return text

    _KEEP: Any = object()

    def write_header_with_slots(
        self,
        *,
        slot: crypto.PassphraseSlot | None = None,
        recovery: crypto.RecoverySlot | Any | None = _KEEP,
        key: bytes | bytearray | None = None,
    ) -> None:
        """The one place the header is rewritten with its slots: the passphrase ``slot``
        (default: the one this vault was opened with), the ``recovery`` slot (default: the
        current one, re-wrapped for ``key`` if a new data key is given), the current counter.

        A re-key passes ``key`` (the new data key) and keeps both ways in: the passphrase
        slot wraps the new key under the same KEK, the recovery slot under the same recovery
        key (taken from its escrow).
        """
        slot = slot or self._slot
        if slot is None:
            raise VaultError("the vault was not opened with a passphrase")
        current = crypto.parse(self._header).recovery
        if recovery is self._KEEP:
            recovery = current
            if current is not None and key is not None:
                recovery = crypto.rewrap_recovery(current, self._key, key)
        header = crypto.write_header(
            key if key is not None else self._key, slot, recovery, self.header_counter
        )
        self._write_header(header)

    # -- rekey ------------------------------------------------------------------

    def rekey(
        self,
        new_passphrase: str | bytes | bytearray,
        kdf: crypto.KdfParams | None = None,
    ) -> None:
        """Rotate the data key: re-encrypt the whole database under a new key into a new
        file, then swap it in, so an old header (from a backup) with the old passphrase
        opens nothing written from now on.

        Crash safety (kill -9 at any point leaves exactly one working vault):

        1. the database is exported under the new key into ``vault.db.rekey``;
        2. the header wrapping the new key is written to ``vault.hdr.next``;
        3. the old database is closed (its WAL checkpointed away) and ``vault.db.rekey`` is
           renamed over ``vault.db``: the commit point;
        4. ``vault.hdr.next`` is renamed over ``vault.hdr``.

        An interrupted rekey is finished or undone at the next unlock
        (:func:`_finish_rekey`), whichever the database's key says.
        """
        pw = _as_bytes(new_passphrase)
        new_key = crypto.new_key()
        paths = self.paths
        try:
            kdf = kdf or crypto.parse(self._header).kdf
            counter = max(self.header_counter, self.store.counter())
            for leftover in (paths.rekey_db, paths.rekey_header):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(leftover)
            os.close(os.open(paths.rekey_db, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            sub = crypto.subkey(new_key, "sqlcipher")
            with self.store.lock:
                conn = self.store.conn
                where = str(paths.rekey_db).replace("'", "''")
                conn.execute(f"ATTACH DATABASE '{where}' AS rekeyed KEY \"x'{sub.hex()}'\"")
                try:
                    conn.execute("SELECT sqlcipher_export('rekeyed')").fetchall()
                    version = conn.execute("PRAGMA user_version").fetchone()[0]
                    conn.execute(f"PRAGMA rekeyed.user_version = {int(version)}")
                finally:
                    conn.execute("DETACH DATABASE rekeyed")
            # The audit log's MACs are keyed by the data key: re-chain the copy under the new
            # key before it can become the database (the chain is checked first).
            copy = Store(_connect(paths.rekey_db, sub))
            try:
                copy.audit = AuditLog(copy, crypto.subkey(self._key, "audit-mac"))
                copy.audit.rechain(crypto.subkey(new_key, "audit-mac"))
            finally:
                copy.conn.close()
            with open(paths.rekey_db, "rb+") as fh:
                os.fsync(fh.fileno())
            # Both ways in are kept: the new passphrase, and the same recovery key (its slot
            # re-wrapped for the new data key from its escrow).
            slot = crypto.passphrase_slot(pw, kdf)
            recovery = crypto.parse(self._header).recovery
            if recovery is not None:
                recovery = crypto.rewrap_recovery(recovery, self._key, new_key)
            header = crypto.write_header(new_key, slot, recovery, counter)
            atomic_write(paths.rekey_header, header)
            # The old database must leave no WAL behind: it would be replayed into the new one.
            with self.store.lock:
                self.store.purge()
                self.store.conn.close()
            os.replace(paths.rekey_db, paths.db)  # the commit point
            fsync_dir(paths.folder)
            os.replace(paths.rekey_header, paths.header)
            fsync_dir(paths.folder)
        except OSError as exc:
            raise media_problem(paths.folder, exc) or exc from None
        finally:
            crypto.wipe(pw)
        old = self._key
        self._key = new_key
        self._header = header
        self._slot = slot
        crypto.wipe(old)
        self.store = Store(_connect(paths.db, crypto.subkey(new_key, "sqlcipher")))
        self.store.audit = AuditLog(self.store, crypto.subkey(new_key, "audit-mac"))

    # -- checks for doctor ----------------------------------------------------

    def integrity_problems(self) -> list[str]:
        """What ``integrity_check`` and ``cipher_integrity_check`` report (empty when fine)."""
        with self.store.lock:
            conn = self.store.conn
            problems = [str(r[0]) for r in conn.execute("PRAGMA cipher_integrity_check")]
            problems += [str(r[0]) for r in conn.execute("PRAGMA integrity_check") if r[0] != "ok"]
        return problems

    def pragma_problems(self) -> list[str]:
        """Required pragmas not in force, and FTS indexes without secure-delete."""
        problems = []
        with self.store.lock:
            conn = self.store.conn
            for name, want in REQUIRED_PRAGMAS.items():
                got = conn.execute(f"PRAGMA {name}").fetchall()[0][0]
                if (got.lower() if isinstance(got, str) else got) != want:
                    problems.append(f"PRAGMA {name} is {got!r}, need {want!r}")
            for table in ("messages_fts", "conversations_fts"):
                row = conn.execute(
                    f"SELECT v FROM [{table}_config] WHERE k = 'secure-delete'"
                ).fetchone()
                if not row or int(row[0]) != 1:
                    problems.append(f"{table} does not have secure-delete on")
        return problems


def _db_opens(db: Path, key: bytes | bytearray) -> bool:
    """Whether ``db`` can be read with the database key derived from ``key`` (read-only)."""
    if not db.exists():
        return False
    conn = sqlcipher3.connect(str(db), check_same_thread=False)
    try:
        conn.execute(f"PRAGMA key = \"x'{crypto.subkey(key, 'sqlcipher').hex()}'\"")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return True
    except sqlcipher3.DatabaseError:
        return False
    finally:
        conn.close()


def _finish_rekey(paths: VaultPaths, passphrase: bytearray) -> None:
    """Finish or undo a rekey that was interrupted (see :meth:`Vault.rekey`).

    If the database still opens under the current header's key, the swap did not happen:
    the half-made files are removed. If it opens under the key of ``vault.hdr.next``, the
    database was swapped: the new header is put in place. With a passphrase that opens
    neither, nothing is touched (the normal unlock then fails).
    """
    if not paths.rekey_header.exists():
        if paths.rekey_db.exists():  # interrupted before its header was written
            os.unlink(paths.rekey_db)
        return
    for candidate in (paths.header, paths.rekey_header):
        try:
            key, _ = crypto.unseal(candidate.read_bytes(), passphrase)
        except (crypto.UnlockError, OSError):
            continue
        try:
            opens = _db_opens(paths.db, key)
        finally:
            crypto.wipe(key)
        if not opens:
            continue
        if candidate == paths.rekey_header:
            os.replace(paths.rekey_header, paths.header)
        else:
            os.unlink(paths.rekey_header)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(paths.rekey_db)
        fsync_dir(paths.folder)
        return
    # A rekey is under way and this passphrase opens neither state of it.
    raise crypto.UnlockError()


def rollback_problem(header: int, database: int) -> tuple[str, int] | None:
    """What a header counter and a database counter that disagree mean, and how many
    recorded changes are missing; None when they agree (or differ by the one-step crash
    window of a database raised before its header)."""
    if database in (header, header + 1):
        return None
    missing = abs(header - database)
    if database < header:
        text = (
            f"ROLLBACK: the vault database is older than its header by {missing} change(s): an "
            f"older copy may have been put back, and {missing} recorded change(s) are missing "
            f"(database at {database}, header at {header})"
        )
    else:
        text = (
            f"ROLLBACK: the vault header is older than its database by {missing} change(s): an "
            f"older header may have been put back (header at {header}, database at {database})"
        )
    return text, missing


def file_mode_problems(folder: Path) -> list[str]:
    """Vault files readable by others, or a folder that is not 0700."""
    problems = []
    try:
        if stat.S_IMODE(folder.stat().st_mode) & 0o077:
            problems.append(f"{folder} is accessible by other users (want 0700)")
    except FileNotFoundError:
        return [f"{folder} does not exist"]
    for path in sorted(folder.iterdir()):
        if path.is_file() and stat.S_IMODE(path.stat().st_mode) & 0o077:
            problems.append(f"{path.name} is readable by other users (want 0600)")
    return problems


__all__ = [
    "DiskFullError",
    "ReadOnlyMediaError",
    "RecoveryKeyError",
    "RollbackError",
    "UnlockError",
    "Vault",
    "VaultCorruptError",
    "VaultError",
    "VaultExistsError",
    "VaultLockedError",
    "VaultMissingError",
    "file_mode_problems",
]


def memory_store() -> Store:
    """A store that lives only in this process's memory (nothing is ever written to disk):
    for built-in packs when there is no vault yet."""
    conn = sqlcipher3.connect(":memory:", check_same_thread=False)
    conn.execute("PRAGMA temp_store = MEMORY")
    return Store(conn)
