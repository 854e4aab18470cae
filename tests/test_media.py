"""A full disk and read-only media are told as such (one line, exit 1), never as damage,
and nothing is lost. The vault lives on a small tmpfs mounted in a private user and mount
namespace (`unshare`), so the test needs no privileges and touches no real disk."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import bastion_cmd

SCRIPT = r"""
set -u
M="$1"; B="$2"; PY="$3"
mount -t tmpfs -o size=4m tmpfs "$M"
export BASTION_DATA_DIR="$M/data" BASTION_CONFIG_DIR="$M/config" BASTION_CACHE_DIR="$M/cache"
export HOME="$M"
step() { echo "== $1"; shift; BASTION_PASSPHRASE=pw "$B" "$@" 2>&1; echo "rc=$?"; }
step init init --kdf-memory-mib 8 --kdf-passes 1 --weak-passphrase
"$PY" -c "
from pathlib import Path
from bastion.storage.vault import Vault
with Vault.open(Path('$M/data/vault'), 'pw') as v:
    c = v.store.create_conversation('kept')
    v.store.add_message(c.id, 'user', 'kept words')
"
dd if=/dev/zero of="$M/filler" bs=64k 2>/dev/null
step list-full history list
step rename-full history rename x y
rm "$M/filler"
step list-after history list --json
mount -o remount,ro "$M"
step list-ro history list
"""


def _steps(output: str) -> dict[str, tuple[str, int]]:
    steps: dict[str, tuple[str, int]] = {}
    name, lines = "", []
    for line in output.splitlines():
        if line.startswith("== "):
            name, lines = line[3:], []
        elif line.startswith("rc="):
            steps[name] = ("\n".join(lines), int(line[3:]))
        else:
            lines.append(line)
    return steps


def test_full_disk_and_read_only_media(tmp_path: Path) -> None:
    """On a full tmpfs and then a read-only one: one line naming the cause, exit 1, and
    the vault opens intact once there is space again."""
    mount = tmp_path / "mnt"
    mount.mkdir()
    script = tmp_path / "media.sh"
    script.write_text(SCRIPT)
    unshare = shutil.which("unshare")
    assert unshare, "util-linux unshare is part of the test set-up"
    proc = subprocess.run(
        [
            unshare,
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            str(script),
            str(mount),
            bastion_cmd()[0],
            sys.executable,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    steps = _steps(proc.stdout)
    assert steps["init"][1] == 0, proc.stdout + proc.stderr
    for name in ("list-full", "rename-full"):
        text, code = steps[name]
        assert code == 1 and len(text.strip().splitlines()) == 1, (name, text)
        assert "full" in text and "damaged" not in text, (name, text)
    text, code = steps["list-after"]
    assert code == 0 and [c["title"] for c in json.loads(text)] == ["kept"], text
    text, code = steps["list-ro"]
    assert code == 1 and "read-only" in text and "damaged" not in text, text
    assert len(text.strip().splitlines()) == 1
