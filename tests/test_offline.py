"""The offline guard refuses and counts every network attempt; the CLI works without one."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, bastion_cmd, cli_env

PROBE = r"""
import json, socket, subprocess
from bastion.app import offline
offline.install()
results = {}
def attempt(name, fn):
    try:
        fn()
        results[name] = "allowed"
    except offline.OfflineError as exc:
        results[name] = "blocked: " + str(exc)
    except OSError as exc:
        results[name] = "oserror: " + str(exc)
attempt("loopback", lambda: socket.create_connection(("127.0.0.1", 9), timeout=1))
attempt("public", lambda: socket.socket().connect(("93.184.216.34", 443)))
attempt("dns", lambda: socket.getaddrinfo("example.com", 443))
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
attempt("udp", lambda: udp.sendto(b"x", ("8.8.8.8", 53)))
attempt("unix", lambda: socket.socketpair())
attempt("program", lambda: subprocess.run(["ls"]))
results["count"] = offline.blocked_count()
print(json.dumps(results))
"""


def test_guard_blocks_and_counts() -> None:
    """Loopback, public, DNS, UDP and programs are refused and counted; AF_UNIX is fine."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    for name in ("loopback", "public", "dns", "udp", "program"):
        assert r[name].startswith("blocked: offline guard"), (name, r[name])
    assert "127.0.0.1" in r["loopback"] and "93.184.216.34" in r["public"]
    assert "__main__" in r["public"]  # names who tried
    assert r["unix"] == "allowed"
    assert r["count"] == 5


def test_cli_installs_guard_first() -> None:
    """The console script installs the guard before importing the rest of Bastion."""
    code = (
        "import sys; from bastion.tui import launch; from bastion.app import offline; "
        "sys.argv=['bastion','--version']; "
        "import contextlib, io\n"
        "try:\n    launch.main()\nexcept SystemExit:\n    pass\n"
        "print(offline.installed())"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd="/", timeout=60
    )
    assert proc.stdout.strip().splitlines()[-1] == "True", proc.stderr


def test_cli_works_in_network_namespace(tmp_path: Path) -> None:
    """ask --save, history list and search all work with no network at all (unshare -n)."""
    unshare = shutil.which("unshare")
    assert unshare, "unshare (util-linux) is part of the base system"
    env = cli_env(tmp_path, BASTION_PASSPHRASE="pw")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [unshare, "-n", *bastion_cmd(), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    assert (
        run("init", "--kdf-memory-mib", "8", "--kdf-passes", "1", "--weak-passphrase").returncode
        == 0
    )
    ask = run("ask", "Name a color.", "--save", "--max-tokens", "8", "--temperature", "0")
    assert ask.returncode == 0, ask.stderr
    listed = run("history", "list", "--json")
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) == 1
    found = run("history", "search", "color")
    assert found.returncode == 0 and found.stdout.strip()
    out = tmp_path / "e.age"
    exported = run("export", "--all", str(out))
    assert exported.returncode == 0, exported.stderr
    assert run("verify", str(out)).returncode == 0
