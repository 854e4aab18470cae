"""export, verify, import, keys, backup and restore from the command line."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from bastion.storage import export as fmt
from tests.conftest import bastion_cmd, cli_env

FAST = ("--kdf-memory-mib", "8", "--kdf-passes", "1", "--weak-passphrase")  # test passphrases


def run(tmp_path: Path, *args: str, home: str = "a", **env: str):
    e = cli_env(tmp_path, BASTION_PASSPHRASE="pw", **env)
    e["BASTION_DATA_DIR"] = str(tmp_path / home / "data")
    return subprocess.run(
        [*bastion_cmd(), *args],
        capture_output=True,
        text=True,
        env=e,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def ok(proc):
    assert proc.returncode == 0, proc.stderr
    return proc


def seeded(tmp_path: Path, home: str = "a") -> str:
    ok(run(tmp_path, "init", *FAST, home=home))
    ok(
        run(
            tmp_path,
            "ask",
            "Say hello to jane@example.org",
            "--save",
            "--max-tokens",
            "8",
            "--temperature",
            "0",
            home=home,
        )
    )
    return json.loads(run(tmp_path, "history", "list", "--json", home=home).stdout)[0]["id"]


def test_export_verify_import_to_vault_identity(tmp_path: Path) -> None:
    """Default export goes to the vault's own key; verify and import read it back."""
    cid = seeded(tmp_path)
    out = tmp_path / "t.age"
    ok(run(tmp_path, "export", cid, str(out)))
    assert out.read_bytes().startswith(fmt.AGE_MAGIC) and oct(out.stat().st_mode)[-3:] == "600"
    assert b"jane@example.org" not in out.read_bytes()
    verified = ok(run(tmp_path, "verify", str(out)))
    assert "intact" in verified.stdout and "2 messages" in verified.stdout
    ok(run(tmp_path, "import", str(out)))
    convs = json.loads(run(tmp_path, "history", "list", "--json").stdout)
    assert len(convs) == 2  # imported as a new conversation, never overwriting


def test_export_to_age_recipient_and_redact(tmp_path: Path) -> None:
    """--recipient age1... is readable by `age -d`; --redact replaces the e-mail."""
    cid = seeded(tmp_path)
    key = tmp_path / "key.txt"
    subprocess.run(
        [shutil.which("age-keygen") or "age-keygen", "-o", str(key)],
        check=True,
        capture_output=True,
    )
    pub = fmt.public_key(fmt.parse_identity(key.read_text()))
    out = tmp_path / "r.age"
    proc = ok(run(tmp_path, "export", cid, str(out), "--recipient", pub, "--redact", "--yes"))
    assert "1 email" in proc.stderr
    plain = subprocess.run(
        ["age", "-d", "-i", str(key), str(out)], check=True, capture_output=True, text=True
    ).stdout
    assert "[EMAIL-1]" in plain and "jane@example.org" not in plain
    ok(run(tmp_path, "verify", str(out), "--identity", str(key)))


def test_passphrase_export_and_altered_copy(tmp_path: Path) -> None:
    """A passphrase export verifies; an edited, re-encrypted copy is named as altered."""
    cid = seeded(tmp_path)
    out = tmp_path / "p.age"
    ok(
        run(
            tmp_path,
            "export",
            cid,
            str(out),
            "--passphrase",
            "--format",
            "json",
            BASTION_EXPORT_PASSPHRASE="export pw",
        )
    )
    ok(run(tmp_path, "verify", str(out), BASTION_EXPORT_PASSPHRASE="export pw"))
    bad = run(tmp_path, "verify", str(out), BASTION_EXPORT_PASSPHRASE="nope")
    assert bad.returncode == 1 and bad.stderr.strip().startswith("bastion: cannot decrypt")
    doc = json.loads(fmt.decrypt(out.read_bytes(), passphrase="export pw"))
    msg = doc["conversations"][0]["messages"][1]
    msg["content"] = "something else"
    out.write_bytes(fmt.encrypt(json.dumps(doc).encode(), passphrase="export pw"))
    proc = run(tmp_path, "verify", str(out), BASTION_EXPORT_PASSPHRASE="export pw")
    assert proc.returncode == 1
    assert f"ALTERED at message 2 (id {msg['id']})" in proc.stdout


def test_backup_restore_into_new_vault(tmp_path: Path) -> None:
    """backup with a passphrase, restore into an empty vault elsewhere: same history."""
    seeded(tmp_path)
    out = tmp_path / "b.age"
    ok(run(tmp_path, "backup", str(out), "--passphrase", BASTION_EXPORT_PASSPHRASE="bk"))
    ok(run(tmp_path, "init", *FAST, home="b"))
    ok(run(tmp_path, "restore", str(out), home="b", BASTION_EXPORT_PASSPHRASE="bk"))
    a = json.loads(run(tmp_path, "history", "list", "--json").stdout)
    b = json.loads(run(tmp_path, "history", "list", "--json", home="b").stdout)
    assert [c["title"] for c in a] == [c["title"] for c in b]
    shown_a = json.loads(run(tmp_path, "history", "show", a[0]["id"], "--json").stdout)
    shown_b = json.loads(run(tmp_path, "history", "show", b[0]["id"], "--json", home="b").stdout)
    assert [m["content"] for m in shown_a["messages"]] == [
        m["content"] for m in shown_b["messages"]
    ]
    # the vault identity came along: exports made by vault a open in vault b
    assert run(tmp_path, "keys", "show").stdout == run(tmp_path, "keys", "show", home="b").stdout


def test_bad_files_one_line(tmp_path: Path) -> None:
    """Missing, non-age and truncated files: one line, non-zero, nothing written."""
    cid = seeded(tmp_path)
    out = tmp_path / "t.age"
    ok(run(tmp_path, "export", cid, str(out)))
    (tmp_path / "cut.age").write_bytes(out.read_bytes()[:-20])
    (tmp_path / "text.age").write_text("hello")
    for name in ("cut.age", "text.age", "missing.age"):
        proc = run(tmp_path, "import", str(tmp_path / name))
        assert proc.returncode == 1, name
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert len(json.loads(run(tmp_path, "history", "list", "--json").stdout)) == 1
    proc = run(tmp_path, "export", str(tmp_path / "x.age"))
    assert proc.returncode == 2
