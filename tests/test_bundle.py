"""The self-contained bundle built by `make bundle`, run as a user without Python would run it:
an empty environment (`env -i`-like: only HOME, PATH and TERM), a PATH with no Python on it,
no network. `make test` builds the bundle and runs these (marker `bundle`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.bundle

BUNDLE = Path(os.environ.get("BASTION_BUNDLE", ROOT / "dist" / "bastion"))
TOOLS = ("sh", "env", "cat", "ls", "sleep")


@pytest.fixture(scope="module")
def bundle() -> Path:
    assert (BUNDLE / "bastion").is_file(), f"no bundle in {BUNDLE}: run `make bundle`"
    return BUNDLE.resolve()


def manifest(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in folder.rglob("*")
    }


def bare_path(tmp: Path) -> Path:
    """A PATH folder with a few basic tools and no Python."""
    folder = tmp / "bin"
    folder.mkdir(exist_ok=True)
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found
        link = folder / tool
        if not link.exists():
            link.symlink_to(found)
    return folder


def env_for(tmp: Path, **extra: str) -> dict[str, str]:
    (tmp / "home").mkdir(exist_ok=True)
    return {
        "HOME": str(tmp / "home"),
        "PATH": str(bare_path(tmp)),
        "TERM": "xterm-256color",
        **extra,
    }


def run(bundle: Path, tmp: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    # unshare -n: no network at all, as on many of our users' machines.
    return subprocess.run(
        [shutil.which("unshare") or "unshare", "-n", str(bundle / "bastion"), *args],
        env=env_for(tmp, **extra),
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stderr
    return proc


def test_bundle_commands_without_python(bundle: Path, tmp_path: Path) -> None:
    before = manifest(bundle)
    path = str(bare_path(tmp_path))
    assert shutil.which("python3", path=path) is None and shutil.which("python", path=path) is None

    assert ok(run(bundle, tmp_path, "--version")).stdout.startswith("bastion ")
    models = json.loads(ok(run(bundle, tmp_path, "models", "--json")).stdout)
    embedded = [m for m in models if m["source"] == "embedded"]
    assert embedded and embedded[0]["usable"], models
    assert Path(embedded[0]["path"]).is_relative_to(bundle)

    pw = {"BASTION_PASSPHRASE": "bundle test passphrase"}
    ok(run(bundle, tmp_path, "init", "--kdf-memory-mib", "8", "--kdf-passes", "1", **pw))
    answer = ok(
        run(
            bundle,
            tmp_path,
            "ask",
            "--save",
            "--max-tokens",
            "12",
            "--temperature",
            "0",
            "--stats",
            "What is the capital of France?",
            **pw,
        )
    )
    assert answer.stdout.strip() and "[stats]" in answer.stderr
    red = ok(run(bundle, tmp_path, "ask", "--pack", "medical", "I want to kill myself", **pw))
    assert "988" in red.stdout  # the pack's fixed response, from the bundled pack files

    doctor = run(bundle, tmp_path, "doctor", "--json", **pw)
    checks = {c["name"]: c for c in json.loads(doctor.stdout)}
    assert doctor.returncode == 0, [c for c in checks.values() if c["status"] == "FAIL"]
    assert "bundled with this executable" in checks["llama.cpp"]["detail"]
    assert str(bundle) in checks["llama.cpp"]["detail"]
    assert checks["offline guard"]["status"] == "OK"

    # Nothing was written next to the executable or in the working folder; the data is in
    # the user's data folder.
    assert manifest(bundle) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "home"]
    assert (tmp_path / "home" / ".local" / "share" / "bastion" / "vault" / "vault.db").is_file()


def test_bundle_starts_the_app_in_tmux(bundle: Path, tmp_path: Path) -> None:
    """The TUI starts and shows the first-run screen; the time it takes is printed."""
    assert shutil.which("tmux"), "tmux is installed by `make test`"
    session = f"bastion-bundle-{os.getpid()}"
    env = env_for(tmp_path)
    command = " ".join(
        [
            f"env -i HOME={env['HOME']} PATH={env['PATH']} TERM=xterm-256color",
            str(bundle / "bastion"),
        ]
    )
    start = time.monotonic()
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "40", command], check=True
    )
    try:
        screen = ""
        while time.monotonic() - start < 60:
            screen = subprocess.run(
                ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True
            ).stdout
            if "cannot be recovered" in screen:
                break
            time.sleep(0.05)
        elapsed = time.monotonic() - start
        assert "cannot be recovered" in screen, screen
        print(f"\nbundle cold start to the first-run screen: {elapsed:.2f} s")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def test_desktop_entry_installs_for_the_user(bundle: Path, tmp_path: Path) -> None:
    """The bundle's install script writes a desktop entry that runs this bundle in a terminal."""
    import configparser

    home = tmp_path / "home"
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin"}
    script = bundle / "install-desktop-entry.sh"
    proc = subprocess.run([str(script)], env=env, capture_output=True, text=True, check=True)
    entry = home / ".local" / "share" / "applications" / "bastion.desktop"
    assert str(entry) in proc.stdout
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(entry)
    desktop = parser["Desktop Entry"]
    assert desktop["Exec"] == f'"{bundle / "bastion"}"'
    assert desktop["Terminal"] == "true" and desktop["Icon"] == "bastion"
    assert (home / ".local/share/icons/hicolor/scalable/apps/bastion.svg").is_file()
    subprocess.run([str(script), "--uninstall"], env=env, check=True, capture_output=True)
    assert not entry.exists()
