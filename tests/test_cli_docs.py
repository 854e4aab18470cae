"""`bastion docs ...` and `bastion ask --doc` through the installed console script, and the
canary check: nothing of a document lands in any plain file, temp file or /dev/shm."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import bastion_cmd, cli_env
from tests.test_cli_history import FAST, ok
from tests.test_documents import real_pdf
from tests.test_vault_faults import scan


def run(tmp_path: Path, *args: str, pw: str | None = "pw1", **env: str):
    """The console script (a grounded answer prefills ~600 tokens: a generous timeout for
    a shared machine)."""
    extra = dict(env)
    if pw is not None:
        extra["BASTION_PASSPHRASE"] = pw
    return subprocess.run(
        [*bastion_cmd(), *args],
        capture_output=True,
        text=True,
        env=cli_env(tmp_path, **extra),
        timeout=900,
        stdin=subprocess.DEVNULL,
    )


CANARY = "CanaryClauseTb72"
CONTRACT = f"""# Lease agreement

## Rent

The tenant pays a monthly rent of 950 EUR, due on the first day of each month.
The reference of this contract is {CANARY}.

## Deposit

The deposit is two months of rent, returned within 30 days after the end of the lease.
"""


def test_docs_add_list_show_search_remove(tmp_path: Path) -> None:
    """The whole family on real PDFs: ids printed, hits with title and page, removal."""
    ok(run(tmp_path, "init", *FAST))
    src = tmp_path / "src"
    src.mkdir()
    (src / "gmpl.pdf").write_bytes(real_pdf("gmpl.pdf"))
    (src / "README.pdf").write_bytes(real_pdf("README.pdf"))
    (src / "empty.docx").write_bytes(b"")
    added = run(
        tmp_path,
        "docs",
        "add",
        str(src / "gmpl.pdf"),
        str(src / "README.pdf"),
        str(src / "empty.docx"),
    )
    assert added.returncode == 1  # one file failed; the others were added
    ids = added.stdout.split()
    assert len(ids) == 2 and all(len(i) == 32 for i in ids)
    assert "bastion: empty.docx: empty file (0 bytes)" in added.stderr
    listed = json.loads(ok(run(tmp_path, "docs", "list", "--json")).stdout)
    assert {(d["title"], d["pages"]) for d in listed} == {("gmpl.pdf", 74), ("README.pdf", 4)}
    assert all(set(d) >= {"id", "title", "pages", "size", "added"} for d in listed)
    table = ok(run(tmp_path, "docs", "list")).stdout
    assert "gmpl.pdf" in table and "74" in table
    shown = ok(run(tmp_path, "docs", "show", ids[1][:8], "--page", "4")).stdout
    assert "--- p. 4 ---" in shown and "Mailing Lists" in shown
    hits = ok(run(tmp_path, "docs", "search", "unsubscripted set")).stdout
    assert hits.splitlines()[0].startswith("gmpl.pdf p. 2")
    again = ok(run(tmp_path, "docs", "add", str(src / "gmpl.pdf")))
    assert again.stdout.split() == ids[:1] and "already in the vault" in again.stderr
    assert run(tmp_path, "docs", "remove", ids[0]).returncode != 0  # no --yes, no terminal
    ok(run(tmp_path, "docs", "remove", ids[0], "--yes"))
    assert run(tmp_path, "docs", "search", "unsubscripted set").returncode == 1
    assert run(tmp_path, "docs", "show", "ffff").returncode == 1


def test_ask_doc_file_and_canary_never_in_plain_files(tmp_path: Path) -> None:
    """ask --doc FILE adds the file, answers from its passages with "title, p. N" sources;
    after add, search, ask, export and remove, the canary is in no file under the data,
    config, cache, home and temp folders, nor in /dev/shm."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {"TMPDIR": str(scratch)}
    ok(run(tmp_path, "init", *FAST, **env))
    src = tmp_path / "src"
    src.mkdir()
    (src / "lease.md").write_text(CONTRACT)
    (src / "README.pdf").write_bytes(real_pdf("README.pdf"))
    out = ok(
        run(
            tmp_path,
            "ask",
            "--doc",
            str(src / "lease.md"),
            "--doc",
            str(src / "README.pdf"),
            "--save",
            "--max-tokens",
            "8",
            "--temperature",
            "0",
            "What is the monthly rent and the reference of the lease?",
            **env,
        )
    )
    assert "Sources: [1" in out.stdout and "lease.md" in out.stdout
    conv = out.stderr.strip().split()[-1]
    shown = json.loads(ok(run(tmp_path, "history", "show", conv, "--json", **env)).stdout)
    question = shown["messages"][-2]
    refs = (question.get("stats") or question.get("meta"))["sources"]
    assert refs and all(r["document_id"] and r["sha256"] for r in refs)
    assert any(CANARY in (r.get("text") or "") for r in refs)
    ok(run(tmp_path, "docs", "search", CANARY, **env))
    listed = json.loads(ok(run(tmp_path, "docs", "list", "--json", **env)).stdout)
    assert {d["title"] for d in listed} == {"lease.md", "README.pdf"}
    export = tmp_path / "data" / "out.age"
    ok(run(tmp_path, "export", conv, str(export), **env))
    for d in listed:
        ok(run(tmp_path, "docs", "remove", d["id"], "--yes", **env))
    folders = [tmp_path / n for n in ("data", "config", "cache", "home", "tmp")]
    hits = [h for f in folders if f.exists() for h in scan(f, [CANARY, "monthly rent of 950"])]
    hits += scan(Path("/dev/shm"), [CANARY])
    assert hits == []
    assert (tmp_path / "data" / "vault" / "vault.db").exists()


def test_ask_doc_without_vault_reads_in_memory_only(tmp_path: Path) -> None:
    """Without a vault, --doc FILE is read into memory; nothing is written anywhere."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "lease.md").write_text(CONTRACT)
    out = ok(
        run(
            tmp_path,
            "ask",
            "--doc",
            str(src / "lease.md"),
            "--max-tokens",
            "4",
            "What is the rent?",
            pw=None,
        )
    )
    assert "lease.md" in out.stdout
    assert not (tmp_path / "data").exists()
    bad = run(tmp_path, "ask", "--doc", "abcd1234", "What?", pw=None)
    assert bad.returncode == 2 and "no vault" in bad.stderr
    scanned = run(tmp_path, "ask", "--doc", str(src / "nothing.pdf"), "x", pw=None)
    assert scanned.returncode == 1 and scanned.stderr.count("\n") == 1
