"""`bastion doctor` passes on a healthy vault and FAILs each kind of damage."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.conftest import bastion_cmd, cli_env

FAST = ("--kdf-memory-mib", "8", "--kdf-passes", "1", "--weak-passphrase")  # test passphrases


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*bastion_cmd(), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=cli_env(tmp_path, BASTION_PASSPHRASE="pw"),
        stdin=subprocess.DEVNULL,
    )


def doctor(tmp_path: Path) -> tuple[int, dict[str, dict[str, str]]]:
    proc = run(tmp_path, "doctor", "--json")
    return proc.returncode, {c["name"]: c for c in json.loads(proc.stdout)}


def healthy(tmp_path: Path) -> Path:
    assert run(tmp_path, "init", *FAST).returncode == 0
    return tmp_path / "data" / "vault"


def test_healthy_vault_passes(tmp_path: Path) -> None:
    """Every check is OK on a fresh vault, the guard included; exit code 0."""
    healthy(tmp_path)
    code, checks = doctor(tmp_path)
    assert code == 0, checks
    for name in (
        "offline guard",
        "vault header",
        "database integrity",
        "pragmas",
        "permissions",
        "unexpected files",
        "models",
        "llama.cpp",
        "free disk",
    ):
        assert checks[name]["status"] == "OK", checks[name]
    assert "llama-cpp-python" in checks["llama.cpp"]["detail"]
    text = run(tmp_path, "doctor")
    assert text.returncode == 0 and text.stdout.startswith("OK    offline guard")


def test_header_bit_flip_fails(tmp_path: Path) -> None:
    """A flipped bit in the header is a FAIL."""
    folder = healthy(tmp_path)
    blob = bytearray((folder / "vault.hdr").read_bytes())
    blob[40] ^= 0x10
    (folder / "vault.hdr").write_bytes(bytes(blob))
    code, checks = doctor(tmp_path)
    assert code == 1 and checks["vault header"]["status"] == "FAIL"


def test_world_readable_database_fails(tmp_path: Path) -> None:
    """A database readable by other users is a FAIL."""
    folder = healthy(tmp_path)
    os.chmod(folder / "vault.db", 0o644)
    code, checks = doctor(tmp_path)
    assert code == 1 and checks["permissions"]["status"] == "FAIL"
    assert "vault.db" in checks["permissions"]["detail"]


def test_stray_plaintext_file_fails(tmp_path: Path) -> None:
    """A file Bastion did not make in the data folder is a FAIL, named."""
    folder = healthy(tmp_path)
    (folder / "notes.txt").write_text("plaintext left behind")
    code, checks = doctor(tmp_path)
    assert code == 1 and checks["unexpected files"]["status"] == "FAIL"
    assert "notes.txt" in checks["unexpected files"]["detail"]


def test_changed_model_file_fails(tmp_path: Path, model_path: Path) -> None:
    """A model whose file changed since a conversation recorded its hash is a FAIL."""
    healthy(tmp_path)
    models = tmp_path / "data" / "models"
    models.mkdir(mode=0o700)
    mine = models / "mine.gguf"
    mine.write_bytes(model_path.read_bytes())
    proc = run(tmp_path, "ask", "Hi", "--model", "mine", "--save", "--max-tokens", "4")
    assert proc.returncode == 0, proc.stderr
    assert doctor(tmp_path)[1]["model hashes"]["status"] == "OK"
    with open(mine, "ab") as fh:
        fh.write(b"\0" * 16)
    code, checks = doctor(tmp_path)
    assert code == 1 and checks["model hashes"]["status"] == "FAIL"
    assert "mine" in checks["model hashes"]["detail"]
