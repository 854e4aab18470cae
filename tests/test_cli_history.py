"""The vault from the command line: init, ask --save/--continue, history, passwd."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.conftest import bastion_cmd, cli_env

FAST = ("--kdf-memory-mib", "8", "--kdf-passes", "1", "--weak-passphrase")  # test passphrases


def run(tmp_path: Path, *args: str, pw: str | None = "pw1", **env: str):
    extra = dict(env)
    if pw is not None:
        extra["BASTION_PASSPHRASE"] = pw
    return subprocess.run(
        [*bastion_cmd(), *args],
        capture_output=True,
        text=True,
        env=cli_env(tmp_path, **extra),
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stderr
    return proc


def test_history_flow(tmp_path: Path) -> None:
    """init, ask --save, --continue, list, show, search, rename, delete, wrong passphrase."""
    ok(run(tmp_path, "init", *FAST))
    folder = tmp_path / "data" / "vault"
    assert (folder / "vault.hdr").exists() and oct(folder.stat().st_mode)[-3:] == "700"
    assert run(tmp_path, "init", *FAST).returncode != 0  # never overwrites
    first = ok(
        run(
            tmp_path,
            "ask",
            "Name a large ocean.",
            "--save",
            "--temperature",
            "0",
            "--max-tokens",
            "12",
        )
    )
    assert first.stdout.strip()
    convs = json.loads(ok(run(tmp_path, "history", "list", "--json")).stdout)
    assert len(convs) == 1 and set(convs[0]) >= {"id", "title", "updated"}
    cid = convs[0]["id"]
    assert convs[0]["title"] == "Name a large ocean."
    ok(
        run(
            tmp_path,
            "ask",
            "And a small sea?",
            "--continue",
            cid[:8],
            "--max-tokens",
            "12",
            "--temperature",
            "0",
            "--stats",
        )
    )
    shown = json.loads(ok(run(tmp_path, "history", "show", cid, "--json")).stdout)
    roles = [m["role"] for m in shown["messages"]]
    assert roles == ["user", "assistant", "user", "assistant"]
    assert shown["messages"][3]["stats"]["prompt_tokens_evaluated"] > 0
    found = ok(run(tmp_path, "history", "search", "ocean")).stdout.splitlines()
    assert found and all(line.startswith(cid) for line in found)
    assert "[ocean]" in found[0].lower()
    assert ok(run(tmp_path, "history", "search", "ocean", "--since", "2000-01-01")).stdout
    assert ok(run(tmp_path, "history", "search", "ocean", "--until", "2000-01-01")).stdout == ""
    assert ok(run(tmp_path, "history", "search", "ocean", "--role", "user")).stdout
    bad_date = run(tmp_path, "history", "search", "ocean", "--since", "yesterday")
    assert bad_date.returncode == 2 and len(bad_date.stderr.strip().splitlines()) == 1
    ok(run(tmp_path, "history", "rename", cid, "Seas"))
    assert json.loads(run(tmp_path, "history", "list", "--json").stdout)[0]["title"] == "Seas"
    bad = run(tmp_path, "history", "list", pw="nope")
    assert bad.returncode == 1 and bad.stderr.strip() == (
        "bastion: wrong passphrase or damaged vault header"
    )
    ok(run(tmp_path, "history", "delete", cid))
    assert json.loads(run(tmp_path, "history", "list", "--json").stdout) == []
    assert run(tmp_path, "history", "show", cid).returncode == 1


def test_passwd_and_passphrase_fd(tmp_path: Path) -> None:
    """passwd re-wraps the key; --passphrase-fd reads the passphrase from a pipe."""
    ok(run(tmp_path, "init", *FAST))
    ok(run(tmp_path, "passwd", "--weak-passphrase", BASTION_NEW_PASSPHRASE="pw2"))
    assert run(tmp_path, "history", "list").returncode == 1
    ok(run(tmp_path, "history", "list", pw="pw2"))
    r, w = os.pipe()
    os.write(w, b"pw2\n")
    os.close(w)
    proc = subprocess.run(
        [*bastion_cmd(), "history", "list", "--passphrase-fd", str(r)],
        capture_output=True,
        text=True,
        env=cli_env(tmp_path),
        pass_fds=(r,),
        timeout=60,
    )
    os.close(r)
    assert proc.returncode == 0, proc.stderr


def test_no_passphrase_without_terminal(tmp_path: Path) -> None:
    """Without a terminal or BASTION_PASSPHRASE, Bastion refuses instead of echoing input."""
    ok(run(tmp_path, "init", *FAST))
    proc = run(tmp_path, "history", "list", pw=None)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("bastion: no passphrase")


def test_vault_in_use(tmp_path: Path) -> None:
    """A second Bastion on an open vault gets one clear line."""
    ok(run(tmp_path, "init", *FAST))
    from bastion.storage.vault import Vault

    with Vault.open(tmp_path / "data" / "vault", "pw1"):
        proc = run(tmp_path, "history", "list")
    assert proc.returncode == 1
    assert "open in another Bastion process" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
