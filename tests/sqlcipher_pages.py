"""Decrypt the raw pages of a SQLCipher 4 database and its WAL, for tests only.

SQLCipher 4 defaults with a raw key: 4096-byte pages; the first 16 bytes of the file are the
salt; each page ends with an 80-byte reserve (16-byte IV, 64-byte HMAC-SHA512); the page body
is AES-256-CBC under the raw key. This lets a test see what is physically on disk,
free pages and stale WAL frames included, not just what SQL can still reach.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

PAGE = 4096
RESERVE = 80
SALT = 16


def _decrypt_page(key: bytes, page: bytes, first: bool) -> bytes:
    start = SALT if first else 0
    body = page[start : PAGE - RESERVE]
    iv = page[PAGE - RESERVE : PAGE - RESERVE + 16]
    dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return dec.update(body) + dec.finalize()


def plaintext_of(db: Path, key: bytes) -> bytes:
    """Every page of the database file and every frame of its WAL, decrypted."""
    out = bytearray()
    if db.exists():
        data = db.read_bytes()
        for i in range(0, len(data) - PAGE + 1, PAGE):
            out += _decrypt_page(key, data[i : i + PAGE], i == 0)
    wal = Path(str(db) + "-wal")
    if wal.exists():
        data = wal.read_bytes()
        at = 32  # WAL header
        while at + 24 + PAGE <= len(data):
            page_no = int.from_bytes(data[at : at + 4], "big")
            out += _decrypt_page(key, data[at + 24 : at + 24 + PAGE], page_no == 1)
            at += 24 + PAGE
    return bytes(out)
