"""Encrypted transcripts: round trips, age interoperability, tampering, hostile files."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlcipher3

from bastion.app import pack_library, packs, transfer
from bastion.storage import export as fmt
from bastion.storage.store import Store
from tests.conftest import ROOT

UNICODE = 'naïve café — 東京 🙂 مرحبا עברית \u200b\u0301 \U0001f9ec 𝔘𝔫𝔦 \\ " ` ```'


def new_store() -> Store:
    return Store(sqlcipher3.connect(":memory:", check_same_thread=False, isolation_level=None))


def filled(n: int, text: str = "message") -> tuple[Store, str]:
    store = new_store()
    c = store.create_conversation(f"Conv {UNICODE}", model_name="SmolLM2", model_sha256="ab" * 32)
    store.add_messages(
        c.id,
        [("user" if i % 2 == 0 else "assistant", f"{text} {i} {UNICODE}", None) for i in range(n)],
    )
    return store, c.id


def roundtrip(store: Store, cid: str, form: str, **enc) -> tuple[dict, bytes]:
    doc, _ = transfer.build_export(store, [cid])
    blob = fmt.encrypt(transfer.render(doc, form), **enc)
    return doc, blob


@pytest.mark.parametrize("n", [0, 1, 1000])
@pytest.mark.parametrize("form", ["md", "json"])
def test_roundtrip_key_and_passphrase(n: int, form: str) -> None:
    """0, 1 and 1,000 messages with every kind of Unicode survive export and import."""
    store, cid = filled(n)
    identity = fmt.new_identity()
    for enc, dec in (
        ({"recipients": [identity.to_public()]}, {"identities": [identity]}),
        ({"passphrase": "pässwörd"}, {"passphrase": "pässwörd"}),
    ):
        _, blob = roundtrip(store, cid, form, **enc)
        back = fmt.parse_document(fmt.decrypt(blob, **dec))
        assert transfer.verify(transfer.render(back, "json")).intact
        target = new_store()
        (new_id,) = transfer.import_conversations(target, back)
        conv = target.get_conversation(new_id)
        assert conv.imported and conv.title == f"Conv {UNICODE}"
        assert [m.content for m in target.thread(new_id)] == [m.content for m in store.thread(cid)]


def test_markdown_readable_and_metadata() -> None:
    """The Markdown part reads as a transcript; the JSON has model hash, chain, head."""
    store, cid = filled(2)
    doc, _ = transfer.build_export(store, [cid])
    md = fmt.render_markdown(doc)
    assert md.startswith("# Bastion transcript")
    assert "### user" in md and "Model: SmolLM2 (SHA-256 " + "ab" * 32 + ")" in md
    parsed = fmt.parse_document(md.encode())
    assert parsed.conversations[0].id == doc["conversations"][0]["id"]
    conv = parsed.raw["conversations"][0]
    assert len(conv["chain_head"]) == 64 and conv["messages"][1]["chain"] == conv["chain_head"]


def test_age_cli_interop(tmp_path: Path) -> None:
    """`age -d` opens Bastion's export; Bastion imports a file `age` encrypted."""
    age, keygen = shutil.which("age"), shutil.which("age-keygen")
    assert age and keygen, "the age CLI is installed by `make test`"
    key = tmp_path / "key.txt"
    subprocess.run([keygen, "-o", str(key)], check=True, capture_output=True)
    identity = fmt.parse_identity(key.read_text())
    store, cid = filled(3, "interop")
    doc, blob = roundtrip(store, cid, "md", recipients=[identity.to_public()])
    out = tmp_path / "t.age"
    fmt.write_encrypted(out, blob)
    plain = subprocess.run(
        [age, "-d", "-i", str(key), str(out)], check=True, capture_output=True
    ).stdout.decode()
    assert "interop 2" in plain and plain.startswith("# Bastion transcript")
    # the other way: age encrypts a Bastion JSON document to the identity
    src = tmp_path / "doc.json"
    src.write_bytes(transfer.render(doc, "json"))
    enc = tmp_path / "from-age.age"
    subprocess.run([age, "-r", fmt.public_key(identity), "-o", str(enc), str(src)], check=True)
    back = fmt.parse_document(fmt.decrypt(enc.read_bytes(), identities=[identity]))
    target = new_store()
    (new_id,) = transfer.import_conversations(target, back)
    assert [m.content for m in target.thread(new_id)][2].startswith("interop 2")


def test_500_bit_flips_and_truncations_rejected() -> None:
    """Every bit flip and truncation at a structural boundary gives a typed error."""
    store, cid = filled(40)
    identity = fmt.new_identity()
    _, blob = roundtrip(store, cid, "md", recipients=[identity.to_public()])
    rng = random.Random(6)
    for _ in range(500):
        bad = bytearray(blob)
        bit = rng.randrange(len(bad) * 8)
        bad[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(fmt.ExportError):
            fmt.decrypt(bytes(bad), identities=[identity])
    header_end = blob.index(b"\n--- ") + 1
    mac_end = blob.index(b"\n", header_end) + 1
    cuts = {
        0,
        5,
        len(fmt.AGE_MAGIC),
        header_end - 1,
        header_end,
        mac_end - 1,
        mac_end,
        mac_end + 16,
        mac_end + 17,
        len(blob) - 1,
        len(blob) - 17,
        (len(blob) + mac_end) // 2,
    }
    for cut in sorted(c for c in cuts if 0 <= c < len(blob)):
        with pytest.raises(fmt.ExportError):
            fmt.decrypt(blob[:cut], identities=[identity])


def test_edited_json_fails_verify_naming_message() -> None:
    """Editing a message inside and re-encrypting is caught at the first altered message."""
    store, cid = filled(6)
    doc, _ = transfer.build_export(store, [cid])
    doc["conversations"][0]["messages"][3]["content"] = "take 500mg"
    result = transfer.verify(transfer.render(doc, "json"))
    assert not result.intact
    report = result.reports[0]
    assert report.first_altered == 3
    assert report.altered_id == doc["conversations"][0]["messages"][3]["id"]
    with pytest.raises(fmt.ExportError, match="altered"):
        transfer.import_conversations(new_store(), doc)


def test_hostile_work_factor_refused_fast() -> None:
    """A header asking for scrypt 2^30 is refused in well under 100 ms."""
    blob = fmt.encrypt(b"x", passphrase="pw")
    line_start = blob.index(b"-> scrypt ")
    line_end = blob.index(b"\n", line_start)
    parts = blob[line_start:line_end].split(b" ")
    hostile = blob[:line_start] + b" ".join([*parts[:3], b"30"]) + blob[line_end:]
    t = time.perf_counter()
    with pytest.raises(fmt.HostileFileError, match="2\\^30"):
        fmt.decrypt(hostile, passphrase="pw")
    assert time.perf_counter() - t < 0.1


def test_oversized_file_refused(tmp_path: Path) -> None:
    """A file above the size limit is refused before it is read."""
    big = tmp_path / "big.age"
    big.write_bytes(fmt.AGE_MAGIC + b"\0" * 2048)
    with pytest.raises(fmt.HostileFileError):
        fmt.read_limited(big, max_size=1024)


def test_kill9_during_export_leaves_old_or_new(tmp_path: Path) -> None:
    """kill -9 while exporting: the destination is absent or a complete, valid file."""
    key = tmp_path / "key.txt"
    identity = fmt.new_identity()
    key.write_text(fmt.identity_text(identity))
    out = tmp_path / "out.age"
    rng = random.Random(3)
    for _ in range(10):
        if out.exists():
            out.unlink()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.vault_child",
                "export",
                str(tmp_path),
                str(out),
                str(key),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        time.sleep(rng.uniform(0.05, 1.5))
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        if out.exists():
            assert fmt.decrypt(out.read_bytes(), identities=[identity]).startswith(b"export body")
        stray = [p for p in tmp_path.iterdir() if p.name.startswith(".out.age")]
        for p in stray:  # a killed writer's temp file: encrypted, never plaintext
            assert p.read_bytes()[:22] in (fmt.AGE_MAGIC, fmt.AGE_MAGIC[: len(p.read_bytes())])
            p.unlink()


def test_backup_restore_reproduces_everything() -> None:
    """Backup then restore into an empty vault: conversations, branches, packs, settings."""
    store, cid = filled(5)
    q = store.thread(cid)[0]
    store.add_message(cid, "assistant", "an alternative answer", parent_id=q.id)
    store.set_pinned(cid, True)
    pack_library.save(store, packs.builtin("medical"), "key1")
    store.set_setting("app", {"theme": "nord"})
    doc = transfer.build_backup(store)
    blob = fmt.encrypt(transfer.render(doc, "json"), passphrase="b")
    target = new_store()
    pack_library.install_builtins(target)  # a new vault opened in the app already has these
    n = transfer.restore_backup(target, fmt.parse_document(fmt.decrypt(blob, passphrase="b")))
    assert n == 1
    (conv,) = target.list_conversations()
    assert conv.pinned and conv.title == store.get_conversation(cid).title
    assert sorted(m.content for m in target.all_messages(conv.id)) == sorted(
        m.content for m in store.all_messages(cid)
    )
    assert [m.content for m in target.thread(conv.id)] == [m.content for m in store.thread(cid)]
    # The backup's `signer` is not evidence: an unsigned pack under a built-in's id is not
    # restored, and the built-in this version ships stays (tests/test_safety.py).
    assert target.get_pack("medical").signer == packs.BUILTIN_SIGNER
    assert target.pack_chunk_count("medical") == len(packs.chunks(packs.builtin("medical")))
    assert target.get_setting("app") == {"theme": "nord"}
    with pytest.raises(fmt.ExportError, match="empty vault"):
        transfer.restore_backup(target, doc)
    # A pack altered in the backup is refused as a whole: nothing is restored.
    doc["packs"][0]["source"] = doc["packs"][0]["source"].replace('id = "medical"', "id = 7")
    fresh = new_store()
    with pytest.raises(fmt.ExportError, match="refusing to restore: pack medical"):
        transfer.restore_backup(fresh, doc)
    assert fresh.list_conversations() == [] and fresh.list_packs() == []


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("mail me at jane.doe@example.org today", "EMAIL"),
        ("call +44 20 7946 0958 now", "PHONE"),
        ("SSN 123-45-6789", "NATIONAL-ID"),
        ("MRN: 00123456", "RECORD"),
        ("DOB: 1984-02-29", "DOB"),
        ("born on 3 March 1990", "DOB"),
    ],
)
def test_redaction_finds(text: str, kind: str) -> None:
    """Each identifying pattern is replaced by a typed placeholder and counted."""
    r = fmt.Redaction()
    out = r.apply(text)
    assert f"[{kind}-1]" in out and r.counts.get(kind) == 1


@pytest.mark.parametrize(
    "text", ["take 500mg twice a day", "the year 2024 was long", "chapter 12, page 45"]
)
def test_redaction_leaves_ordinary_text(text: str) -> None:
    """Doses, years and page numbers are not mistaken for identifiers."""
    assert fmt.Redaction().apply(text) == text


def test_not_an_export() -> None:
    """Garbage, plaintext and armored input give clear typed errors."""
    for data in (b"", b"hello", b"-----BEGIN AGE ENCRYPTED FILE-----\nxx"):
        with pytest.raises(fmt.ExportError):
            fmt.decrypt(data, passphrase="x")
    with pytest.raises(fmt.ExportError):
        fmt.parse_document(json.dumps({"format": "other"}).encode())


def test_ssh_ed25519_recipient() -> None:
    """An ssh-ed25519 public key works as a recipient; its private key decrypts."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    store, cid = filled(2, "ssh")
    _, blob = roundtrip(store, cid, "md", recipients=[fmt.parse_recipient(public)])
    import pyrage

    identity = pyrage.ssh.Identity.from_buffer(private)
    assert b"ssh 1" in fmt.decrypt(blob, identities=[identity])


def test_pack_disclaimer_in_export() -> None:
    """A conversation that used a pack carries the pack's id, version and disclaimer."""
    store = new_store()
    store.save_pack(
        "medical", "1.2.0", "Medical", 'id = "medical"\ndisclaimer = "Not medical advice."\n', None
    )
    c = store.create_conversation("Q", pack_id="medical", pack_version="1.2.0")
    store.add_message(c.id, "user", "hello")
    doc, _ = transfer.build_export(store, [c.id])
    assert doc["conversations"][0]["pack"] == {
        "id": "medical",
        "version": "1.2.0",
        "disclaimer": "Not medical advice.",
    }
    assert "> Not medical advice." in fmt.render_markdown(doc)
