"""The recovery key: the second way into a vault (header version 2), its typed form, the
`recover` and `recovery-key` commands, and the golden header files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bastion.app.cli import main
from bastion.storage import crypto, recovery_key
from bastion.storage.vault import RecoveryKeyError, UnlockError, Vault, VaultError
from tests.conftest import FAST_KDF, bastion_cmd, cli_env


@pytest.fixture(autouse=True)
def _environment_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests run several CLI commands in one process, each reading the passphrase from
    the environment; a real command runs once per process and removes it (tested in
    test_hostile.py), so the removal is left out here."""
    from bastion.app import secrets_input

    monkeypatch.setattr(secrets_input, "scrub_environment", lambda name: None)


PW = "correct horse battery staple"
NEW_PW = "violet tractor anthem pebble"
DATA = Path(__file__).parent / "data"
FAST = ("--kdf-memory-mib", "8", "--kdf-passes", "1")


def make(folder: Path) -> str:
    with Vault.create(folder, PW, FAST_KDF) as v:
        c = v.store.create_conversation("kept")
        v.store.add_message(c.id, "user", "the note that must survive")
        assert v.new_recovery_key is not None
        return v.new_recovery_key


def typo(key: str, at: int = 8) -> str:
    """The key with one character replaced by another of the alphabet."""
    c = key[at]
    other = "Q" if c != "Q" else "R"
    return key[:at] + other + key[at + 1 :]


def only_note(v: Vault) -> str:
    (conv,) = v.store.list_conversations()
    return v.store.thread(conv.id)[0].content


def test_recovery_key_text_format() -> None:
    """>= 128 random bits, six hand-copyable groups, read back through case and look-alikes."""
    secret = os.urandom(crypto.RECOVERY_SECRET_SIZE)
    assert len(secret) * 8 >= 128
    text = recovery_key.encode(secret)
    groups = text.split("-")
    assert len(groups) == 6 and all(len(g) == 6 for g in groups)
    assert not set(text) & set("ILOU")
    assert recovery_key.decode(text) == secret
    assert recovery_key.decode(f"  {text.lower().replace('-', ' ')}\n") == secret
    folded = text.replace("0", "o").replace("1", "l")
    assert recovery_key.decode(folded) == secret


def test_every_single_typo_and_swap_is_caught() -> None:
    """Each one-character substitution and each swap of neighbours fails the checksum."""
    secret = bytes(range(20))
    text = recovery_key.encode(secret).replace("-", "")
    caught = 0
    for i, c in enumerate(text):
        for other in recovery_key.ALPHABET:
            if other == c:
                continue
            with pytest.raises(RecoveryKeyError, match="typo"):
                recovery_key.decode(text[:i] + other + text[i + 1 :])
            caught += 1
        if i + 1 < len(text) and text[i] != text[i + 1]:
            swapped = text[:i] + text[i + 1] + text[i] + text[i + 2 :]
            with pytest.raises(RecoveryKeyError, match="typo"):
                recovery_key.decode(swapped)
    assert caught == len(text) * 31
    with pytest.raises(RecoveryKeyError, match="36"):
        recovery_key.decode(text[:-1])
    with pytest.raises(RecoveryKeyError, match="not in a recovery key"):
        recovery_key.decode("U" + text[1:])


def test_recover_with_right_key_sets_new_passphrase(tmp_path: Path) -> None:
    """The right recovery key opens the vault, sets a new passphrase; the old one stops."""
    folder = tmp_path / "v"
    key = make(folder)
    with Vault.recover(folder, key, NEW_PW, FAST_KDF) as v:
        assert only_note(v) == "the note that must survive"
    with pytest.raises(UnlockError):
        Vault.open(folder, PW)
    with Vault.open(folder, NEW_PW) as v:
        assert only_note(v) == "the note that must survive"
    # The recovery key still works after being used.
    Vault.recover(folder, key, PW, FAST_KDF).close()
    Vault.open(folder, PW).close()


def test_wrong_key_and_typo_are_refused_and_nothing_changes(tmp_path: Path) -> None:
    """A well-formed but wrong key is UnlockError; a typo is caught by the checksum first;
    neither changes the header."""
    folder = tmp_path / "v"
    make(folder)
    before = (folder / "vault.hdr").read_bytes()
    other = recovery_key.encode(os.urandom(20))
    with pytest.raises(UnlockError, match="recovery key"):
        Vault.recover(folder, other, NEW_PW, FAST_KDF)
    key = make(tmp_path / "w")
    with pytest.raises(RecoveryKeyError, match="typo"):
        Vault.recover(folder, typo(key), NEW_PW, FAST_KDF)
    assert (folder / "vault.hdr").read_bytes() == before
    with Vault.open(folder, PW) as v:
        assert v.failed_unlocks == 1  # the wrong key counted; the typo never reached it


def test_recovery_key_survives_passwd(tmp_path: Path) -> None:
    """Changing the passphrase keeps the recovery key valid."""
    folder = tmp_path / "v"
    key = make(folder)
    with Vault.open(folder, PW) as v:
        v.change_passphrase("second passphrase here")
    with Vault.recover(folder, key, NEW_PW, FAST_KDF) as v:
        assert only_note(v) == "the note that must survive"
    with pytest.raises(UnlockError):
        Vault.open(folder, "second passphrase here")


def test_rotate_replaces_the_key(tmp_path: Path) -> None:
    """After rotation the old key stops working and the new one works; the passphrase too."""
    folder = tmp_path / "v"
    old = make(folder)
    with Vault.open(folder, PW) as v:
        new = v.rotate_recovery_key()
    assert new != old
    with pytest.raises(UnlockError):
        Vault.recover(folder, old, NEW_PW, FAST_KDF)
    Vault.open(folder, PW).close()
    with Vault.recover(folder, new, NEW_PW, FAST_KDF) as v:
        assert only_note(v) == "the note that must survive"


def test_every_header_byte_flip_breaks_both_ways_in(tmp_path: Path) -> None:
    """A changed bit anywhere in a version-2 header stops the passphrase and the key."""
    folder = tmp_path / "v"
    key = make(folder)
    original = (folder / "vault.hdr").read_bytes()
    assert len(original) == crypto.HEADER_SIZES[crypto.VERSION_RECOVERY]
    secret = recovery_key.decode(key)
    assert crypto.unseal(original, PW.encode())[0] == crypto.unseal_recovery(original, secret)[0]
    for i in range(len(original)):
        blob = bytearray(original)
        blob[i] ^= 1 << (i % 8)
        with pytest.raises(UnlockError):
            crypto.unseal(bytes(blob), PW.encode())
        with pytest.raises(UnlockError):
            crypto.unseal_recovery(bytes(blob), secret)


def test_header_flip_through_the_vault(tmp_path: Path) -> None:
    """The same through Vault.open and Vault.recover on a few bytes of each region."""
    folder = tmp_path / "v"
    key = make(folder)
    original = (folder / "vault.hdr").read_bytes()
    for i in (9, 40, 120, 150, 200, 240, len(original) - 1):
        blob = bytearray(original)
        blob[i] ^= 0x10
        (folder / "vault.hdr").write_bytes(bytes(blob))
        with pytest.raises(UnlockError):
            Vault.open(folder, PW)
        with pytest.raises(UnlockError):
            Vault.recover(folder, key, NEW_PW, FAST_KDF)
    (folder / "vault.hdr").write_bytes(original)
    Vault.open(folder, PW).close()


def test_version1_vault_opens_and_gets_a_recovery_key(tmp_path: Path) -> None:
    """The golden v1 vault opens, has no recovery key, and is offered one (header -> v2)."""
    work = tmp_path / "golden"
    shutil.copytree(DATA / "vault-v1", work)
    pw = (work / "passphrase.txt").read_text().strip()
    assert len((work / "vault.hdr").read_bytes()) == crypto.HEADER_SIZE
    with pytest.raises(VaultError, match="no recovery key"):
        Vault.recover(work, recovery_key.encode(bytes(20)), NEW_PW, FAST_KDF)
    with Vault.open(work, pw) as v:
        assert not v.has_recovery_key
        key = v.rotate_recovery_key()
        assert v.has_recovery_key
    assert crypto.parse((work / "vault.hdr").read_bytes()).version == crypto.VERSION_RECOVERY
    Vault.open(work, pw).close()
    with Vault.recover(work, key, NEW_PW, FAST_KDF) as v:
        assert [c.title for c in v.store.list_conversations()] == ["Héllo golden ✓"]


def test_golden_v2_header_known_answer() -> None:
    """The committed version-2 header is what the code builds from the same inputs, and
    opens with its passphrase and its recovery key."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_golden", DATA / "make_golden.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    inputs = json.loads((DATA / "header-v2" / "inputs.json").read_text())
    blob = (DATA / "header-v2" / "vault.hdr").read_bytes()
    assert module.build_header_v2(inputs) == blob
    data_key = bytes.fromhex(inputs["data_key"])
    assert crypto.unseal(blob, inputs["passphrase"].encode())[0] == data_key
    secret = recovery_key.decode(inputs["recovery_key"])
    assert crypto.unseal_recovery(blob, secret)[0] == data_key
    assert crypto.parse(blob).counter == inputs["counter"]


def test_golden_v2_vault_opens_with_passphrase_and_recovery_key(tmp_path: Path) -> None:
    """The committed version-2 vault opens both ways and its audit chain verifies."""
    work = tmp_path / "golden"
    shutil.copytree(DATA / "vault-v2", work)
    expected = json.loads((work / "expected.json").read_text())
    pw = (work / "passphrase.txt").read_text().strip()
    key = (work / "recovery_key.txt").read_text().strip()
    with Vault.open(work, pw) as v:
        convs = v.store.list_conversations()
        assert [c.title for c in convs] == expected["titles"]
        assert [m.content for m in v.store.thread(convs[0].id)] == expected["first_thread"]
        assert v.store.audit is not None
        assert [e.event for e in v.store.audit.events()] == expected["audit_events"]
        assert v.store.audit.verify().intact
    with Vault.recover(work, key, NEW_PW, FAST_KDF) as v:
        assert [c.title for c in v.store.list_conversations()] == expected["titles"]


def test_rekey_keeps_both_slots() -> None:
    """write_header with a new data key keeps the passphrase KEK and the recovery key."""
    old_key, new_key = crypto.new_key(), crypto.new_key()
    slot = crypto.passphrase_slot(b"pass phrase", FAST_KDF)
    secret, rslot = crypto.new_recovery(old_key)
    moved = crypto.rewrap_recovery(rslot, old_key, new_key)
    blob = crypto.write_header(new_key, slot, moved, 3)
    assert crypto.unseal(blob, b"pass phrase")[0] == new_key
    assert crypto.unseal_recovery(blob, secret)[0] == new_key
    with pytest.raises(UnlockError):
        crypto.rewrap_recovery(rslot, new_key, old_key)  # the escrow needs the old key


# -- the commands ----------------------------------------------------------------------


def cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*bastion_cmd(), *args],
        capture_output=True,
        text=True,
        env=cli_env(tmp_path, **env),
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def key_from(stdout: str) -> str:
    lines = stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if "RECOVERY KEY" in line)
    return next(line.strip() for line in lines[at + 1 :] if line.strip())


def test_init_prints_key_once_and_recover_command(tmp_path: Path) -> None:
    """init shows the key under a heading with a warning; `recover` takes it from the
    environment or a file descriptor, refuses a typo in one line, sets the new passphrase."""
    proc = cli(tmp_path, "init", *FAST, BASTION_PASSPHRASE=PW)
    assert proc.returncode == 0, proc.stderr
    assert "shown once" in proc.stdout and "anyone who has" in proc.stdout
    key = key_from(proc.stdout)
    recovery_key.decode(key)
    assert key not in proc.stderr
    # Never on disk in plain.
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            raw = path.read_bytes()
            assert key.encode() not in raw and key.replace("-", "").encode() not in raw

    bad = cli(tmp_path, "recover", BASTION_RECOVERY_KEY=typo(key), BASTION_NEW_PASSPHRASE=NEW_PW)
    assert bad.returncode == 1 and "typo" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr

    wrong = recovery_key.encode(os.urandom(20))
    bad = cli(tmp_path, "recover", BASTION_RECOVERY_KEY=wrong, BASTION_NEW_PASSPHRASE=NEW_PW)
    assert bad.returncode == 1 and "wrong recovery key" in bad.stderr

    weak = cli(tmp_path, "recover", BASTION_RECOVERY_KEY=key, BASTION_NEW_PASSPHRASE="abc123")
    assert weak.returncode == 1 and "too weak" in weak.stderr

    r, w = os.pipe()
    os.write(w, key.lower().encode() + b"\n")
    os.close(w)
    try:
        proc = subprocess.run(
            [*bastion_cmd(), "recover", "--recovery-key-fd", str(r)],
            capture_output=True,
            text=True,
            env=cli_env(tmp_path, BASTION_NEW_PASSPHRASE=NEW_PW),
            timeout=120,
            pass_fds=(r,),
            stdin=subprocess.DEVNULL,
        )
    finally:
        os.close(r)
    assert proc.returncode == 0, proc.stderr
    assert cli(tmp_path, "history", "list", BASTION_PASSPHRASE=PW).returncode == 1
    assert cli(tmp_path, "history", "list", BASTION_PASSPHRASE=NEW_PW).returncode == 0

    # passwd keeps the key; --rotate replaces it.
    proc = cli(
        tmp_path, "passwd", BASTION_PASSPHRASE=NEW_PW, BASTION_NEW_PASSPHRASE="third pass phrase ok"
    )
    assert proc.returncode == 0, proc.stderr
    proc = cli(tmp_path, "recovery-key", "--rotate", BASTION_PASSPHRASE="third pass phrase ok")
    assert proc.returncode == 0, proc.stderr
    new_key = key_from(proc.stdout)
    bad = cli(tmp_path, "recover", BASTION_RECOVERY_KEY=key, BASTION_NEW_PASSPHRASE=NEW_PW)
    assert bad.returncode == 1 and "wrong recovery key" in bad.stderr
    proc = cli(tmp_path, "recover", BASTION_RECOVERY_KEY=new_key, BASTION_NEW_PASSPHRASE=NEW_PW)
    assert proc.returncode == 0, proc.stderr


def test_old_vault_is_offered_a_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A version-1 vault opens from the CLI with a hint to make a recovery key."""
    folder = tmp_path / "data" / "vault"
    shutil.copytree(DATA / "vault-v1", folder)
    monkeypatch.setenv("BASTION_PASSPHRASE", (folder / "passphrase.txt").read_text().strip())
    (folder / "passphrase.txt").unlink()
    (folder / "expected.json").unlink()
    assert main(["history", "list"]) == 0
    assert "no recovery key" in capsys.readouterr().err
    assert main(["recovery-key"]) == 1
    assert main(["recovery-key", "--rotate"]) == 0
    out = capsys.readouterr().out
    recovery_key.decode(key_from(out))
    assert main(["recovery-key"]) == 0
    assert "no recovery key" not in capsys.readouterr().err
