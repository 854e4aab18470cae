"""Log records carry ids and numbers only: content is redacted by construction."""

from __future__ import annotations

import io
import logging
import subprocess
from pathlib import Path

from bastion.app import logs
from tests.conftest import bastion_cmd, cli_env

CANARY = "patient Jane Canary-4417 has chest pain"


def test_filter_keeps_ids_and_numbers_and_redacts_content() -> None:
    stream = io.StringIO()
    handler = logs.install()
    handler.setStream(stream)
    log = logging.getLogger("bastion.test")
    log.warning("saved message %s in %s (%d tokens)", "a" * 32, "medical", 42)
    log.warning("question was %s", CANARY)
    log.warning("settings %(x)s", {"x": CANARY})
    log.warning(CANARY.encode())  # not a format string: dropped whole
    try:
        raise ValueError(CANARY)
    except ValueError:
        log.exception("failed on %s", "1234abcd")
    out = stream.getvalue()
    assert "saved message " + "a" * 32 + " in medical (42 tokens)" in out
    assert out.count(logs.REDACTED) == 3
    assert "failed on 1234abcd [ValueError]" in out
    assert "Canary" not in out and "Traceback" not in out
    logging.getLogger().removeHandler(handler)


def test_console_script_installs_the_filter(tmp_path: Path) -> None:
    """Warnings from any library in the real process pass through the filter."""
    code = (
        "import sys, logging; sys.argv = ['bastion', '--version'];"
        "from bastion.tui import launch;"
        "import bastion.app.cli as c; c.main = lambda **k: (logging.getLogger('lib').error("
        f"'leak %s', {CANARY!r}), 0)[1];"
        "launch.main()"
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
    assert proc.returncode == 0, proc.stderr
    assert "bastion: ERROR lib: leak <redacted>" in proc.stderr
    assert "Canary" not in proc.stderr
