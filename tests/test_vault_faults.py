"""Faults: kill -9 during writes and passphrase changes, a full disk, and canary scans."""

from __future__ import annotations

import base64
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

from bastion.storage.vault import UnlockError, Vault
from tests.conftest import FAST_KDF, ROOT


def child(mode: str, folder: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.vault_child", mode, str(folder), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_until_killed(proc: subprocess.Popen[str], after_lines: int) -> list[str]:
    assert proc.stdout is not None
    lines = []
    while len(lines) < after_lines:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"child ended early: {proc.stderr.read() if proc.stderr else ''}")
        lines.append(line.strip())
    os.kill(proc.pid, signal.SIGKILL)
    rest, _ = proc.communicate()
    # Lines printed before the kill are acknowledged commits too.
    lines += [ln.strip() for ln in rest.splitlines() if ln.strip()]
    return lines


def test_kill9_during_commits_loses_nothing(tmp_path: Path) -> None:
    """20 rounds of kill -9 during commits: every acknowledged message survives, intact."""
    folder = tmp_path / "v"
    Vault.create(folder, "A", FAST_KDF).close()
    rng = random.Random(9)
    expected: dict[str, int] = {}
    for round_no in range(20):
        proc = child("commits", folder, f"r{round_no}")
        acked = read_until_killed(proc, rng.randrange(1, 40))
        expected[f"crash r{round_no}"] = int(acked[-1]) + 1
    with Vault.open(folder, "A") as v:
        assert v.integrity_problems() == []
        for conv in v.store.list_conversations():
            got = len(v.store.thread(conv.id))
            # All acknowledged commits are there; at most one more (committed, not yet printed).
            assert expected[conv.title] <= got <= expected[conv.title] + 1, conv.title
        assert len(v.store.list_conversations()) == 20


def test_kill9_during_passphrase_change(tmp_path: Path) -> None:
    """20 rounds of kill -9 while changing the passphrase: exactly one passphrase opens."""
    folder = tmp_path / "v"
    Vault.create(folder, "A", FAST_KDF).close()
    rng = random.Random(5)
    for _ in range(20):
        # Bring the vault back to passphrase A for the child.
        current = None
        for pw in ("A", "B"):
            try:
                with Vault.open(folder, pw) as v:
                    current = pw
                    if pw == "B":
                        v.change_passphrase("A", FAST_KDF)
            except UnlockError:
                continue
        assert current is not None
        proc = child("passwd", folder)
        acked = read_until_killed(proc, rng.randrange(1, 6))
        opens = []
        for pw in ("A", "B"):
            try:
                Vault.open(folder, pw).close()
                opens.append(pw)
            except UnlockError:
                pass
        assert len(opens) == 1, opens
        # The acknowledged change is in force, or the next one that was under way.
        assert opens[0] in (acked[-1], "A" if acked[-1] == "B" else "B")
    leftovers = [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) <= 20  # a killed writer may leave its temp file; never read


def test_full_disk_fails_cleanly_and_keeps_data(tmp_path: Path) -> None:
    """When the disk fills during writes, the write fails with one line; earlier data is intact."""
    folder = tmp_path / "v"
    Vault.create(folder, "A", FAST_KDF).close()
    proc = child("fill", folder)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert out.startswith("ERROR "), out
    assert "disk" in out.lower() or "full" in out.lower()
    with Vault.open(folder, "A") as v:
        assert v.integrity_problems() == []
        (conv,) = v.store.list_conversations()
        contents = [m.content for m in v.store.thread(conv.id)]
        assert contents[:5] == [f"before {i}" for i in range(5)]


def scan(folder: Path, canaries: list[str]) -> list[str]:
    """Every canary found in plain text, UTF-16 or base64 in any file under ``folder``."""
    hits = []
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        for c in canaries:
            raw = c.encode()
            forms = [raw, c.lower().encode(), c.encode("utf-16-le"), c.encode("utf-16-be")]
            # base64 at each of the three alignments a canary can have in a longer text
            forms += [base64.b64encode(raw[k:])[: (len(raw) - k) // 3 * 4] for k in range(3)]
            if any(f in data for f in forms):
                hits.append(f"{c} in {path.name}")
    return hits


def test_canaries_never_on_disk(tmp_path: Path) -> None:
    """Canaries written through every path never appear in any vault file, at any stage."""
    folder = tmp_path / "v"
    canaries = {
        "message": "CanaryMessageQx81",
        "title": "CanaryTitleWv27",
        "pack": "CanaryPackZm44",
        "query": "CanaryQueryKp63",
        "update": "CanaryUpdateHj90",
        "setting": "CanarySettingTt12",
    }
    all_c = list(canaries.values())
    v = Vault.create(folder, "A", FAST_KDF)
    c = v.store.create_conversation(f"about {canaries['title']}")
    m = v.store.add_message(c.id, "user", f"text {canaries['message']} here")
    v.store.save_pack("p", "1.0.0", "Pack", f'system_prompt = "{canaries["pack"]}"', None)
    v.store.set_setting("note", canaries["setting"])
    assert scan(folder, all_c) == []  # after insert (WAL holds the pages)
    v.store.search(canaries["query"])
    v.store.search(canaries["message"])
    v.store.update_message(m.id, content=f"edited {canaries['update']}")
    assert scan(folder, all_c) == []  # after update and search
    v.store.delete_message(m.id)
    assert scan(folder, all_c) == []  # after delete and checkpoint
    v.change_passphrase("B", FAST_KDF)
    assert scan(folder, all_c) == []  # after passphrase change
    v.close()
    assert scan(folder, all_c) == []  # after close
    # and after kill -9 in the middle of writing
    with Vault.open(folder, "B") as v2:
        v2.change_passphrase("A", FAST_KDF)
    proc = child("commits", folder, canaries["message"])
    read_until_killed(proc, 15)
    assert scan(folder, all_c) == []
    with Vault.open(folder, "A") as v3:
        assert v3.store.search(canaries["message"])  # the data is really there, encrypted


def test_scan_detects_plaintext(tmp_path: Path) -> None:
    """The scanner itself finds a canary in plain text, UTF-16 and base64."""
    (tmp_path / "a").write_bytes(b"xx AlphaCanary11 yy")
    (tmp_path / "b").write_bytes("BravoCanary22".encode("utf-16-le"))
    (tmp_path / "c").write_bytes(base64.b64encode(b"x CharlieCanary33 and more"))
    (tmp_path / "d").write_bytes(b"nothing to see")
    assert sorted(scan(tmp_path, ["AlphaCanary11", "BravoCanary22", "CharlieCanary33"])) == [
        "AlphaCanary11 in a",
        "BravoCanary22 in b",
        "CharlieCanary33 in c",
    ]
