"""`bastion packs ...` and `bastion ask --pack` through the installed console script."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bastion.app import packs
from tests.test_cli_history import FAST, ok, run


def test_packs_without_a_vault(tmp_path: Path) -> None:
    listed = json.loads(ok(run(tmp_path, "packs", "list", "--json", pw=None)).stdout)
    assert [(p["id"], p["trust"]) for p in listed] == [
        ("legal", "built-in"),
        ("medical", "built-in"),
    ]
    shown = json.loads(ok(run(tmp_path, "packs", "show", "legal", "--json", pw=None)).stdout)
    assert len(shown["templates"]) >= 8 and len(shown["safety"]) >= 10
    out = ok(run(tmp_path, "packs", "validate", str(packs.builtin_path("medical")), pw=None))
    assert "medical 2.0.0: valid" in out.stdout
    # A red flag is answered by the fixed message; the model is never asked (no vault needed,
    # nothing written to disk: the built-ins live in a memory-only store).
    red = ok(run(tmp_path, "ask", "--pack", "medical", "I want to kill myself", pw=None))
    suicide = next(r for r in packs.builtin("medical").safety if r.id == "suicide")
    assert red.stdout.strip() == suicide.message
    assert not (tmp_path / "data").exists()


def test_ask_with_pack_saves_sources_and_disclaimer(tmp_path: Path) -> None:
    ok(run(tmp_path, "init", *FAST))
    out = ok(
        run(
            tmp_path,
            "ask",
            "--pack",
            "medical",
            "--save",
            "--max-tokens",
            "24",
            "--temperature",
            "0",
            "How much paracetamol can an adult take in a day?",
        )
    )
    assert out.stdout.startswith("[caution] About doses")  # input rule, before the answer
    assert "Sources: [1" in out.stdout and "Paracetamol (acetaminophen)" in out.stdout
    conv_id = out.stderr.strip().split()[-1]
    shown = json.loads(ok(run(tmp_path, "history", "show", conv_id, "--json")).stdout)
    user, answer = shown["messages"][-2:]
    assert user["stats"]["sources"][0]["ref_id"] == "paracetamol"
    assert answer["stats"]["sources"][0]["title"].startswith("Paracetamol")
    assert shown["conversation"]["pack_id"] == "medical"
    # Continuing keeps the pack; a template fills the question.
    more = ok(
        run(
            tmp_path,
            "ask",
            "--continue",
            conv_id,
            "--template",
            "term",
            "--var",
            "term=hepatotoxicity",
            "--max-tokens",
            "8",
        )
    )
    assert more.returncode == 0
    bad = run(tmp_path, "ask", "--continue", conv_id, "--template", "lab", "--var", "test=x")
    assert bad.returncode == 1 and bad.stderr.strip() == "bastion: /lab: Value (value) is required"


def test_import_export_sign_trust_remove(tmp_path: Path) -> None:
    ok(run(tmp_path, "init", *FAST))
    folder = tmp_path / "mine"
    shutil.copytree(packs.builtin_path("legal"), folder)
    toml = folder / "pack.toml"
    toml.write_text(toml.read_text().replace('id = "legal"', 'id = "firm"', 1))
    key = tmp_path / "signing.pem"
    public = ok(run(tmp_path, "packs", "keygen", "--out", str(key), pw=None)).stdout.strip()
    assert public.startswith("ed25519:") and oct(key.stat().st_mode)[-3:] == "600"
    ok(run(tmp_path, "packs", "sign", str(folder), "--key", str(key), "--signer", "Firm IT"))
    assert "[signature]" in toml.read_text()

    # Signed by an unknown key: imported, shown as such; after `trust`, verified by name.
    ok(run(tmp_path, "packs", "import", str(folder)))
    rows = {p["id"]: p for p in json.loads(ok(run(tmp_path, "packs", "list", "--json")).stdout)}
    assert rows["firm"]["trust"].startswith("signed by a key you have not trusted")
    ok(run(tmp_path, "packs", "trust", public, "--name", "Our firm"))
    rows = {p["id"]: p for p in json.loads(ok(run(tmp_path, "packs", "list", "--json")).stdout)}
    assert rows["firm"]["trust"] == "verified: signed by Our firm"

    # Tampered content: refused, nothing changes.
    ref = folder / "references" / "limitation.md"
    ref.write_text(ref.read_text().replace("six years", "sixty years"))
    bad = run(tmp_path, "packs", "import", str(folder))
    assert bad.returncode == 1 and "signature does not match" in bad.stderr
    # Equal version: asks first; without a terminal it needs --yes, and nothing changes.
    ref.write_text(ref.read_text().replace("sixty years", "six years"))
    same = run(tmp_path, "packs", "import", str(folder))
    assert same.returncode == 2 and "add --yes" in same.stderr
    ok(run(tmp_path, "packs", "import", str(folder), "--yes"))

    # Export (encrypted to the vault by default, or plain) and import again after removing.
    enc = tmp_path / "firm.pack.age"
    ok(run(tmp_path, "packs", "export", "firm", str(enc)))
    assert enc.read_bytes().startswith(b"age-encryption.org/v1") and b"Firm" not in enc.read_bytes()
    plain = tmp_path / "firm.toml"
    ok(run(tmp_path, "packs", "export", "firm", str(plain), "--plain"))
    ok(run(tmp_path, "packs", "remove", "firm", "--yes"))
    assert "firm" not in ok(run(tmp_path, "packs", "list")).stdout
    ok(run(tmp_path, "packs", "import", str(enc)))
    rows = {p["id"]: p for p in json.loads(ok(run(tmp_path, "packs", "list", "--json")).stdout)}
    assert rows["firm"]["trust"] == "verified: signed by Our firm"
    ok(run(tmp_path, "packs", "import", str(plain), "--yes"))


def test_bad_packs_are_one_line_errors_and_import_nothing(tmp_path: Path) -> None:
    ok(run(tmp_path, "init", *FAST))
    cases = {
        "syntax.toml": 'id = "x"\nname = \n',
        "unknown.toml": (packs.builtin_path("legal") / "pack.toml").read_text()
        + "\nsurprise = 1\n",
        "missing.toml": 'id = "x"\n',
    }
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text)
        proc = run(tmp_path, "packs", "import", str(path))
        assert proc.returncode == 1, name
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert proc.stderr.startswith(f"bastion: {name} line ") or "Field required" in proc.stderr
        checked = run(tmp_path, "packs", "validate", str(path), pw=None)
        assert checked.returncode == 1 and checked.stderr.startswith("bastion: ")
    listed = json.loads(ok(run(tmp_path, "packs", "list", "--json")).stdout)
    assert [p["id"] for p in listed] == ["legal", "medical"]
