"""Regenerate a golden vault: `python tests/data/make_golden.py tests/data/vault-vN`.

Run once per released format version and commit the result; never regenerate an old one.

- ``vault-v1``: header version 1 (passphrase slot only), schema up to m002.
- ``vault-v2``: header version 2 (passphrase and recovery slots), schema with m003_audit and
  a few audit events; ``recovery_key.txt`` holds its recovery key.
- ``header-v2``: a version-2 header built from fixed inputs (``inputs.json``), for a
  known-answer test of storage.crypto.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path


from bastion.storage.crypto import KdfParams
from bastion.storage.vault import Vault

PASSPHRASE = "golden vault passphrase v1"
PASSPHRASE_V2 = "golden vault passphrase v2"


def _fill(v: Vault) -> list[str]:
    c = v.store.create_conversation("Héllo golden ✓")
    v.store.add_message(c.id, "system", "You are terse.", pinned=True)
    v.store.add_message(c.id, "user", "What is the boiling point of water?")
    v.store.add_message(c.id, "assistant", "100 °C at sea level.")
    v.store.set_setting("theme", "dark")
    v.store.save_pack("demo", "1.0.0", "Demo", 'id = "demo"\n', None)
    return [m.content for m in v.store.thread(c.id)]


def _expected(out: Path, thread: list[str], **extra: object) -> None:
    (out / "expected.json").write_text(
        json.dumps(
            {"titles": ["Héllo golden ✓"], "first_thread": thread, "search": "boiling", **extra},
            ensure_ascii=False,
            indent=1,
        )
        + "\n"
    )


def main(out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    kdf = KdfParams(memory_kib=8 * 1024, passes=1)
    if out.name == "header-v2":
        return header_v2(out)
    if out.name == "vault-v2":
        with Vault.create(out, PASSPHRASE_V2, kdf) as v:
            thread = _fill(v)
            assert v.store.audit is not None
            v.store.audit.append("vault.create", {"recovery_key": True})
            v.store.audit.append("conversation.delete", {"conversation": "0" * 32})
            key = v.new_recovery_key
        (out / "vault.lock").unlink()
        (out / "passphrase.txt").write_text(PASSPHRASE_V2 + "\n")
        (out / "recovery_key.txt").write_text(f"{key}\n")
        _expected(out, thread, audit_events=["vault.create", "conversation.delete"])
        return None
    with Vault.create(out, PASSPHRASE, kdf, recovery=False) as v:
        thread = _fill(v)
    (out / "vault.lock").unlink()
    (out / "passphrase.txt").write_text(PASSPHRASE + "\n")
    _expected(out, thread)
    return None


def header_v2(out: Path) -> None:
    from bastion.storage import crypto, recovery_key

    inputs = {
        "data_key": bytes(range(32)).hex(),
        "passphrase": "golden header passphrase",
        "memory_kib": 8 * 1024,
        "passes": 1,
        "lanes": 1,
        "salt": bytes(range(100, 116)).hex(),
        "nonce": bytes(range(200, 212)).hex(),
        "recovery_secret": bytes(range(50, 70)).hex(),
        "recovery_salt": bytes(range(10, 26)).hex(),
        "recovery_nonce": bytes(range(30, 42)).hex(),
        "escrow_nonce": bytes(range(70, 82)).hex(),
        "counter": 7,
    }
    blob = build_header_v2(inputs)
    secret = bytes.fromhex(str(inputs["recovery_secret"]))
    inputs["recovery_key"] = recovery_key.encode(secret)
    out.mkdir(parents=True)
    (out / "vault.hdr").write_bytes(blob)
    (out / "inputs.json").write_text(json.dumps(inputs, indent=1) + "\n")
    assert crypto.unseal(blob, str(inputs["passphrase"]).encode())[0] == bytes(range(32))


def build_header_v2(inputs: dict[str, object]) -> bytes:
    """The header the inputs describe (also used by the known-answer test)."""
    from bastion.storage import crypto

    h = {k: bytes.fromhex(v) for k, v in inputs.items() if isinstance(v, str) and k != "passphrase"
         and k != "recovery_key"}
    kdf = KdfParams(int(inputs["memory_kib"]), int(inputs["passes"]), int(inputs["lanes"]))  # type: ignore[call-overload]
    slot = crypto.passphrase_slot(str(inputs["passphrase"]).encode(), kdf, salt=h["salt"])
    rslot = crypto.recovery_slot(
        h["data_key"],
        crypto.recovery_kek(h["recovery_secret"], h["recovery_salt"]),
        salt=h["recovery_salt"],
        nonce=h["recovery_nonce"],
        escrow_nonce=h["escrow_nonce"],
    )
    return crypto.write_header(
        h["data_key"], slot, rslot, int(inputs["counter"]), nonce=h["nonce"]  # type: ignore[call-overload]
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
