"""Hostile input (issue 14): nothing an attacker writes reaches the terminal, forges a
transcript, or stalls the app. Commands run in-process through ``bastion.app.cli.main``."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from bastion.app import terminal, transfer
from bastion.app.cli import main
from bastion.app.cli.common import printable
from bastion.storage import crypto
from bastion.storage import export as fmt
from bastion.storage.schema import Message, MessageMeta
from bastion.storage.vault import Vault
from tests.conftest import bastion_cmd, cli_env, make_gguf

FAST = ("--kdf-memory-mib", "8", "--kdf-passes", "1", "--weak-passphrase")

# What an attacker writes: OSC title/clipboard, screen clear, a forged "verified" line over
# the real one, 8-bit CSI/OSC, bidi overrides, DEL, NUL, backspaces, Textual markup.
ATTACKS = [
    "\x1b]0;pwned\x07",
    "\x1b]52;c;Y3VybCBodHRwOi8vZXZpbCB8IHNo\x07",
    "\x1b[2J\x1b[H",
    "\r\x1b[2Kverified: signed by NHS England",
    "\u202eevil\u202c",
    "\u2066isolate\u2069",
    "\x9b31m",
    "\x9d0;t\x9c",
    "\x7f",
    "\x00",
    "\x08\x08\x08",
    "[@click=app.quit]x[/]",
    "\u2028",
    "\x1bP+q\x1b\\",
]
hostile = st.lists(
    st.one_of(
        st.sampled_from(ATTACKS),
        st.text(
            alphabet=st.characters(
                min_codepoint=0, max_codepoint=0x2070, exclude_categories=["Cs"]
            ),
            max_size=6,
        ),
    ),
    min_size=1,
    max_size=5,
).map(lambda parts: "x" + "".join(parts))


def cli(*args: str, passphrase: str | None = "pw", **env: str) -> tuple[int, str, str]:
    """Run the CLI in this process; returns (exit status, stdout, stderr)."""
    if passphrase is not None:
        os.environ["BASTION_PASSPHRASE"] = passphrase
    os.environ.update(env)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def unsafe_in(text: str) -> list[str]:
    """Every character of ``text`` a terminal would act on (newline and tab allowed)."""
    return [c for c in text if c not in "\n\t" and terminal.is_unsafe(c)]


def vault_dir() -> Path:
    return Path(os.environ["BASTION_DATA_DIR"]) / "vault"


def init() -> None:
    code, _, err = cli("init", *FAST)
    assert code == 0, err


# -- the sanitiser ----------------------------------------------------------------------


def test_visible_escapes_every_class() -> None:
    """C0, C1, ESC, BEL, DEL, bidi overrides and isolates, separators: shown, never emitted."""
    for c in [*map(chr, range(0x20)), "\x7f", *map(chr, range(0x80, 0xA0))]:
        assert terminal.visible(c) == f"\\x{ord(c):02x}"
    for c in map(chr, [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x2028, 0x2029]):
        assert terminal.visible(c) == f"\\u{ord(c):04x}"
    assert terminal.visible("a\nb\tc", keep_newlines=True) == "a\nb\tc"
    assert terminal.visible("a\nb") == "a\\x0ab"
    assert terminal.visible("héllo 日本 👍🏽 ‍") == "héllo 日本 👍🏽 ‍"  # text stays text
    assert printable("\x1b[2J") == "\\x1b[2J"


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_visible_never_leaves_a_control(text: str) -> None:
    """Whatever the input, the output holds no unsafe character and keeps the safe ones."""
    shown = terminal.visible(text)
    assert unsafe_in(shown) == [] and "\n" not in shown
    if not unsafe_in(text) and "\n" not in text and "\t" not in text:
        assert shown == text


# -- the property test: every command, hostile strings in every field --------------------


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # each example runs ~15 commands
)
@given(
    title=hostile,
    question=hostile,
    answer=hostile,
    model=hostile,
    stat=hostile,
    new_title=hostile,
)
def test_no_control_byte_reaches_the_terminal(
    tmp_path: Path,
    title: str,
    question: str,
    answer: str,
    model: str,
    stat: str,
    new_title: str,
) -> None:
    """history list/show/search/rename, export, verify, import, keys, doctor: with hostile
    titles, messages, model names and statistics, stdout and stderr carry no control byte."""
    if not vault_dir().exists():
        init()
    with Vault.open(vault_dir(), "pw") as v:
        conv = v.store.create_conversation(title, model_name=model, model_sha256=model)
        v.store.add_message(conv.id, "user", question)
        v.store.add_message(
            conv.id,
            "assistant",
            answer,
            meta=MessageMeta.read({"stop_reason": stat, "generated_tokens": 3}),
        )
    out_file = tmp_path / f"e{conv.id[:8]}.age"
    word = next((w for w in question.split() if w.isalnum()), "x")
    runs = [
        cli("history", "list"),
        cli("history", "show", conv.id),
        cli("history", "search", word),
        cli("history", "search", question),
        cli("export", conv.id, str(out_file)),
        cli("verify", str(out_file)),
        cli("import", str(out_file)),
        cli("history", "rename", conv.id, new_title),
        cli("history", "list"),
        cli("history", "show", conv.id),
        cli("history", "show", new_title),
        cli("keys", "trust", new_title, "--name", new_title),
        cli("keys", "show"),
        cli("verify", str(tmp_path / new_title.replace("/", "_"))),
    ]
    for code, out, err in runs:
        assert unsafe_in(out) == [] and unsafe_in(err) == [], (code, out, err)
    assert runs[5][0] == 0  # the vault's own export is authentic


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # each example runs ~15 commands
)
@given(fields=st.fixed_dictionaries({k: hostile for k in ("name", "description", "author")}))
def test_pack_fields_never_reach_the_terminal(tmp_path: Path, fields: dict[str, str]) -> None:
    """packs validate/import/list/show with hostile name, description, author, signer and
    unknown keys: one line per problem, no control byte."""
    if not vault_dir().exists():
        init()
    doc = {
        "id": "demo",
        "name": fields["name"],
        "version": "1.0.0",
        "description": fields["description"],
        "author": fields["author"],
        "license": "CC0-1.0",
        "language": "en",
        "system_prompt": "You help.",
        "disclaimer": fields["description"],
    }
    good = tmp_path / "good.toml"
    good.write_text(tomli_w.dumps(doc))
    bad = tmp_path / "bad.toml"
    bad.write_text(tomli_w.dumps({**doc, fields["author"]: fields["name"]}))
    runs = [
        cli("packs", "validate", str(good)),
        cli("packs", "validate", str(bad)),
        cli("packs", "import", str(good), "--yes"),
        cli("packs", "list"),
        cli("packs", "show", "demo"),
        cli("packs", "trust", fields["name"], "--name", fields["author"]),
    ]
    for code, out, err in runs:
        assert unsafe_in(out) == [] and unsafe_in(err) == [], (code, out, err)


def test_pack_signer_cannot_forge_verified(tmp_path: Path) -> None:
    """A signer of CR + erase-line + "verified: signed by NHS England" shows escaped."""
    from bastion.app import packs

    folder = tmp_path / "p"
    folder.mkdir()
    toml = folder / "pack.toml"
    toml.write_text(
        tomli_w.dumps(
            {
                "id": "demo",
                "name": "Demo",
                "version": "1.0.0",
                "description": "d",
                "author": "a",
                "license": "CC0-1.0",
                "language": "en",
                "system_prompt": "You help.",
                "disclaimer": "x",
            }
        )
    )
    pem, _ = packs.new_signing_key()
    key = tmp_path / "k.pem"
    key.write_bytes(pem)
    signer = "Evil\r\x1b[2Kverified: signed by NHS England"
    code, _, err = cli("packs", "sign", str(folder), "--key", str(key), "--signer", signer)
    assert code == 0, err
    code, out, err = cli("packs", "validate", str(folder))
    assert code == 0 and "\r" not in out and "\x1b" not in out
    assert "Evil\\x0d\\x1b[2Kverified" in out


def test_models_output_is_sanitised(tmp_path: Path) -> None:
    """GGUF general.name, size label and a file name with escapes are shown escaped."""
    path = make_gguf(
        tmp_path / "ev\x1b]0;x\x07il.gguf",
        {"general.name": "\x1b]52;c;Y3VybA==\x07name\u202e", "general.size_label": "\x9b2J"},
    )
    _, out, err = cli("models", "--model", str(path), passphrase=None)
    assert unsafe_in(out) == [] and unsafe_in(err) == [], (out, err)
    assert "\\x1b" in out + err


def test_tui_header_escapes_role_and_markup() -> None:
    """The TUI's message header: a hostile role is markup-escaped and made visible; numbers
    come validated from MessageMeta (wrong types read as empty, never a crash)."""
    from datetime import UTC, datetime

    from bastion.tui.widgets import MessageBox

    msg = Message(
        id="m",
        conversation_id="c",
        parent_id=None,
        role="[@click=app.quit]x[/]\x1b]0;t\x07",
        content="body",
        created=datetime.now(UTC),
        stats={"generated_tokens": "[@click=app.quit]", "decode_tokens_per_s": "fast"},
    )
    box = MessageBox(msg, msg.role, msg.content)
    header = box._header()
    assert "[@click" not in header.replace("\\[@click", "")
    assert "\x1b" not in header
    assert msg.meta == MessageMeta()


# -- authentic transcripts ---------------------------------------------------------------


def _seed(title: str = "Dosing", text: str = "Take 5 mg of warfarin daily") -> str:
    init()
    with Vault.open(vault_dir(), "pw") as v:
        conv = v.store.create_conversation(title, model_name="m")
        v.store.add_message(conv.id, "user", "How much?")
        v.store.add_message(conv.id, "assistant", text)
        return conv.id


def _vault_age_public() -> object:
    with Vault.open(vault_dir(), "pw") as v:
        return transfer.ensure_identity(v.store).to_public()


def _forged(doc_version: int = 2, signed_by: bytes | None = None) -> dict[str, object]:
    """A transcript written by someone holding only the vault's public age key: a
    consistent hash chain, no (or a foreign) signature."""
    doc = fmt.transcript_document(
        [
            {
                "id": "c1",
                "title": "Dosing",
                "created": "2026-01-01T00:00:00+00:00",
                "model": {"name": "m", "sha256": None},
                "pack": {},
                "settings": {},
                "messages": [
                    {
                        "id": "m1",
                        "parent_id": None,
                        "role": "user",
                        "content": "How much?",
                        "created": "2026-01-01T00:00:00+00:00",
                    },
                    {
                        "id": "m2",
                        "parent_id": "m1",
                        "role": "assistant",
                        "content": "Take 50 mg of warfarin daily",
                        "created": "2026-01-01T00:00:01+00:00",
                    },
                ],
            }
        ]
    )
    doc["version"] = doc_version
    if signed_by is not None:
        fmt.sign_document(doc, signed_by)
    return doc


def test_forged_transcript_is_not_authentic(tmp_path: Path) -> None:
    """A transcript encrypted to the vault's public key, chain intact, unsigned: verify
    exits 3 and says so; import says so and marks it imported in history."""
    _seed()
    forged = tmp_path / "forged.age"
    doc = _forged()
    forged.write_bytes(
        fmt.encrypt(fmt.render_markdown(doc).encode(), recipients=[_vault_age_public()])
    )
    code, out, err = cli("verify", str(forged))
    assert code == 3, (out, err)
    assert "not signed" in out and "NOT authenticated" in out
    code, out, err = cli("import", str(forged))
    assert code == 0 and "not signed" in err
    code, out, _ = cli("history", "list")
    assert out.count("[imported]") == 1
    with Vault.open(vault_dir(), "pw") as v:
        (imported,) = [c for c in v.store.list_conversations() if c.imported]
    code, shown, _ = cli("history", "show", imported.id)
    assert code == 0 and "(imported from an export file" in shown


def test_version1_export_imports_as_unsigned(tmp_path: Path) -> None:
    """A version-1 file (no signature) still verifies intact (exit 3) and imports."""
    _seed()
    old = tmp_path / "v1.age"
    old.write_bytes(
        fmt.encrypt(json.dumps(_forged(doc_version=1)).encode(), recipients=[_vault_age_public()])
    )
    code, out, _ = cli("verify", str(old))
    assert code == 3 and "v1" in out and "not signed" in out
    code, _, err = cli("import", str(old))
    assert code == 0 and "imported 1" in err


def test_own_export_is_authentic_and_foreign_key_needs_trust(tmp_path: Path) -> None:
    """The vault's own export verifies authentic (0); another vault's signature is an
    unknown key (3, naming its fingerprint) until `keys trust` (then 0)."""
    cid = _seed()
    mine = tmp_path / "mine.age"
    assert cli("export", cid, str(mine))[0] == 0
    code, out, _ = cli("verify", str(mine))
    assert code == 0 and "authentic: signed by this vault" in out
    other_key = crypto.new_signing_key()
    fp = crypto.key_fingerprint(crypto.signing_public_key(other_key))
    foreign = tmp_path / "foreign.age"
    doc = _forged(signed_by=other_key)
    foreign.write_bytes(
        fmt.encrypt(fmt.render_markdown(doc).encode(), recipients=[_vault_age_public()])
    )
    code, out, _ = cli("verify", str(foreign))
    assert code == 3 and fp in out and "unknown key" in out
    assert cli("keys", "trust", fp, "--name", "Dr Lee's laptop")[0] == 0
    code, out, _ = cli("verify", str(foreign))
    assert code == 0 and "Dr Lee's laptop" in out
    code, out, _ = cli("keys", "show")
    shown_fp = out.splitlines()[1].split()[-1]
    assert out.splitlines()[1].startswith("ed25519:") and len(shown_fp) == 39


def _reencrypt(path: Path, plaintext: bytes) -> None:
    path.write_bytes(fmt.encrypt(plaintext, recipients=[_vault_age_public()]))


def test_markdown_body_is_checked_byte_for_byte(tmp_path: Path) -> None:
    """A readable body saying 500 mg over a JSON saying 5 mg: ALTERED (exit 1), naming
    the message; import refuses it."""
    cid = _seed()
    out_file = tmp_path / "t.age"
    assert cli("export", cid, str(out_file))[0] == 0
    with Vault.open(vault_dir(), "pw") as v:
        plain = transfer.decrypt_export(v.store, out_file.read_bytes())
    text = plain.decode()
    assert text.count("Take 5 mg") == 2  # the body and the JSON appendix
    body_end = text.index(fmt.APPENDIX_OPEN)
    altered = text[:body_end].replace("Take 5 mg", "Take 500 mg") + text[body_end:]
    _reencrypt(out_file, altered.encode())
    code, out, err = cli("verify", str(out_file))
    assert code == 1 and "ALTERED" in out and "readable text of message" in out, (out, err)
    code, _, err = cli("import", str(out_file))
    assert code == 1 and "refusing to import" in err


def test_resealed_chain_breaks_the_signature(tmp_path: Path) -> None:
    """Editing the JSON and recomputing the (unkeyed) chain: the signature no longer
    matches, so verify says ALTERED (exit 1)."""
    cid = _seed()
    out_file = tmp_path / "t.age"
    assert cli("export", cid, str(out_file), "--format", "json")[0] == 0
    with Vault.open(vault_dir(), "pw") as v:
        doc = json.loads(transfer.decrypt_export(v.store, out_file.read_bytes()))
    conv = doc["conversations"][0]
    conv["messages"][-1]["content"] = "Take 50 mg of warfarin daily"
    conv["chain_head"] = fmt.seal_chain(conv["messages"])
    _reencrypt(out_file, json.dumps(doc).encode())
    code, out, _ = cli("verify", str(out_file))
    assert code == 1 and "signature does not match" in out


def test_export_marks_imported_conversations(tmp_path: Path) -> None:
    """An imported conversation, exported again, says so in JSON, Markdown and verify."""
    _seed()
    forged = tmp_path / "f.age"
    _reencrypt(forged, fmt.render_markdown(_forged()).encode())
    assert cli("import", str(forged))[0] == 0
    with Vault.open(vault_dir(), "pw") as v:
        imported = [c for c in v.store.list_conversations() if c.imported]
        doc, _ = transfer.build_export(v.store, [imported[0].id])
    assert doc["conversations"][0]["imported"] is True
    assert "(imported into the exporting vault" in fmt.render_markdown(doc)
    again = tmp_path / "again.age"
    assert cli("export", imported[0].id, str(again))[0] == 0
    code, out, _ = cli("verify", str(again))
    assert code == 0 and "[imported]" in out


# -- bounded parsers, regular files only -------------------------------------------------


def test_deeply_nested_export_is_one_line(tmp_path: Path) -> None:
    """100,000 nested arrays: verify and import end with one line, no traceback."""
    _seed()
    bomb = tmp_path / "bomb.age"
    _reencrypt(bomb, ("[" * 100_000 + "]" * 100_000).encode())
    for command in ("verify", "import"):
        code, _, err = cli(command, str(bomb))
        assert code == 1 and len(err.strip().splitlines()) == 1, err
        assert "nested deeper than" in err
    with pytest.raises(fmt.MalformedExportError):
        fmt.load_json('{"a": ' * 40 + "1" + "}" * 40)
    with pytest.raises(fmt.MalformedExportError):
        fmt.load_json('{"x": NaN}')
    with pytest.raises(fmt.MalformedExportError):
        fmt.load_json('{"x": 1e999}')
    with pytest.raises(fmt.MalformedExportError):
        fmt.load_json('{"x": "\\ud800"}')
    assert fmt.load_json('["[[[[{{{{", {"a": "]]]}}}"}]') == ["[[[[{{{{", {"a": "]]]}}}"}]


def test_identity_file_must_be_an_identity(tmp_path: Path) -> None:
    """--identity /bin/ls (binary), a folder or a FIFO: one line, exit 1."""
    _seed()
    f = tmp_path / "x.age"
    f.write_bytes(fmt.encrypt(b"x", recipients=[_vault_age_public()]))
    fifo = tmp_path / "id.fifo"
    os.mkfifo(fifo)
    for identity in (shutil.which("ls") or "/bin/ls", str(tmp_path), str(fifo)):
        code, _, err = cli("verify", str(f), "--identity", identity)
        assert code == 1 and len(err.strip().splitlines()) == 1, err
        assert err.startswith("bastion: --identity:"), err


def test_special_files_refused_without_blocking(tmp_path: Path) -> None:
    """A FIFO export, a pack.toml symlinked to /dev/zero and a FIFO pack: refused at once
    with one line (run as the real command, with a timeout that would catch a hang)."""
    env = cli_env(tmp_path, BASTION_PASSPHRASE="pw")
    fifo = tmp_path / "x.age"
    os.mkfifo(fifo)
    pack_dir = tmp_path / "p"
    pack_dir.mkdir()
    (pack_dir / "pack.toml").symlink_to("/dev/zero")
    fifo_pack = tmp_path / "pack.fifo"
    os.mkfifo(fifo_pack)
    for args in (
        ["verify", str(fifo), "--identity", "/dev/null"],
        ["packs", "validate", str(pack_dir)],
        ["packs", "validate", str(fifo_pack)],
    ):
        proc = subprocess.run(
            [*bastion_cmd(), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert proc.returncode == 1, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "not a regular file" in proc.stderr and "Traceback" not in proc.stderr


def test_wrong_stats_types_never_stop_a_conversation(tmp_path: Path) -> None:
    """Imported statistics of the wrong type: history show and the stored thread read them
    as empty metadata (no TypeError)."""
    _seed()
    doc = _forged()
    conv = doc["conversations"][0]  # type: ignore[index]
    conv["messages"][1]["stats"] = {  # type: ignore[index]
        "decode_tokens_per_s": "[@click=app.quit]",
        "generated_tokens": [1, 2],
        "sources": "nope",
        "safety": [{"rule": 1}],
    }
    conv["chain_head"] = fmt.seal_chain(conv["messages"])  # type: ignore[index]
    f = tmp_path / "s.age"
    _reencrypt(f, json.dumps(doc).encode())
    assert cli("import", str(f))[0] == 0
    with Vault.open(vault_dir(), "pw") as v:
        (imp,) = [c for c in v.store.list_conversations() if c.imported]
        thread = v.store.thread(imp.id)
        assert thread[-1].meta == MessageMeta()
    assert cli("history", "show", imp.id)[0] == 0


# -- vault: rollback, restore, rekey, environment ----------------------------------------


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.name in ("vault.db", "vault.hdr")
    }


def test_doctor_reports_rollback_and_changes_nothing(tmp_path: Path) -> None:
    """An older vault.db put back: doctor says FAIL (exit 1) and changes no byte; the next
    command still refuses; --accept-rollback says how many changes are missing."""
    _seed()
    old = tmp_path / "old.db"
    shutil.copy(vault_dir() / "vault.db", old)
    for _ in range(3):
        with Vault.open(vault_dir(), "pw") as v:
            v.store.create_conversation("later")
    shutil.copy(old, vault_dir() / "vault.db")
    before = _digest(vault_dir())
    code, out, _ = cli("doctor")
    assert code == 1 and "FAIL  rollback: ROLLBACK" in out, out
    assert _digest(vault_dir()) == before
    code, _, err = cli("history", "list")
    assert code == 1 and "--accept-rollback" in err
    code, _, err = cli("history", "list", "--accept-rollback")
    assert code == 0 and "6 recorded change(s) are missing" in err, err


def test_restore_keeps_the_vaults_keys(tmp_path: Path) -> None:
    """Restoring a backup into a vault that has its own key: exports made under either
    key still open, and the vault's own key is unchanged."""
    cid = _seed()
    backup = tmp_path / "b.age"
    assert cli("backup", str(backup))[0] == 0
    a_export = tmp_path / "a.age"
    assert cli("export", cid, str(a_export))[0] == 0
    a_identity = tmp_path / "a-id.txt"
    with Vault.open(vault_dir(), "pw") as v:
        a_identity.write_text(fmt.identity_text(transfer.vault_identity(v.store)))
    # a second vault with its own key, settings and an export of its own
    os.environ["BASTION_DATA_DIR"] = str(tmp_path / "other")
    init()
    with Vault.open(vault_dir(), "pw") as v:
        v.store.set_setting("theme", "mine")
        own_before = fmt.identity_text(transfer.ensure_identity(v.store))
        c = v.store.create_conversation("b's own")
        v.store.add_message(c.id, "user", "hello")
        b_cid = c.id
    b_export = tmp_path / "b-own.age"
    assert cli("export", b_cid, str(b_export))[0] == 0
    with Vault.open(vault_dir(), "pw") as v:
        v.store.delete_conversation(b_cid)  # restore needs no conversations
    code, _, err = cli("restore", str(backup), "--identity", str(a_identity))
    assert code == 0, err
    with Vault.open(vault_dir(), "pw") as v:
        assert fmt.identity_text(transfer.vault_identity(v.store)) == own_before
        assert v.store.get_setting("theme") == "mine"
    assert cli("import", str(b_export))[0] == 0  # made under the vault's own key
    code, _, err = cli("import", str(a_export))  # made under the backup's key
    assert code == 0, err
    code, out, _ = cli("verify", str(a_export))
    assert code == 0 and "restored backup" in out


def test_rekey_locks_out_old_header_and_passphrase(tmp_path: Path) -> None:
    """After passwd --rekey, an old vault.hdr plus the old passphrase opens nothing new;
    without --rekey (the old behaviour) it would."""
    _seed()
    old_header = (vault_dir() / "vault.hdr").read_bytes()
    code, _, err = cli("passwd", "--rekey", "--weak-passphrase", BASTION_NEW_PASSPHRASE="new pw")
    assert code == 0, err
    with Vault.open(vault_dir(), "new pw") as v:
        v.store.create_conversation("after the change")
    saved = tmp_path / "saved"
    shutil.copytree(vault_dir(), saved)
    (saved / "vault.hdr").write_bytes(old_header)
    with pytest.raises(Exception) as caught:
        Vault.open(saved, "pw", accept_rollback=True)
    assert "damaged or not this vault's" in str(caught.value)
    with Vault.open(vault_dir(), "new pw") as v:
        titles = {c.title for c in v.store.list_conversations()}
        assert titles == {"Dosing", "after the change"}
        assert v.integrity_problems() == []
        assert v.store.search("warfarin")  # the full-text index came along


def test_passphrase_removed_from_environment(tmp_path: Path) -> None:
    """BASTION_PASSPHRASE is gone from os.environ and /proc/self/environ once read."""
    code = (
        "import os\n"
        "from bastion.app.secrets_input import read_passphrase\n"
        "pw = read_passphrase()\n"
        "raw = open('/proc/self/environ', 'rb').read()\n"
        "print(bytes(pw) == b'SecretCanary42', b'SecretCanary42' in raw,"
        " 'BASTION_PASSPHRASE' in os.environ)\n"
    )
    env = cli_env(tmp_path, BASTION_PASSPHRASE="SecretCanary42")
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.stdout.split() == ["True", "False", "False"], proc.stderr


def test_export_signature_helpers_roundtrip() -> None:
    """sign_document/check_signature: valid, then invalid after any change, unsigned without."""
    key = crypto.new_signing_key()
    doc = _forged()
    assert fmt.check_signature(doc).status == "unsigned"
    fmt.sign_document(doc, key)
    check = fmt.check_signature(doc)
    assert check.status == "valid"
    assert check.fingerprint == crypto.key_fingerprint(crypto.signing_public_key(key))
    doc["exported"] = "2030-01-01T00:00:00+00:00"
    assert fmt.check_signature(doc).status == "invalid"
    sig = doc["signature"]
    assert isinstance(sig, dict)
    sig["public_key"] = base64.b64encode(b"short").decode()
    assert fmt.check_signature(doc).status == "invalid"


def test_ask_with_pack_shows_hostile_source_titles_escaped(tmp_path: Path) -> None:
    """ask --pack with a reference titled with OSC 52 and a bidi override (real model): the
    Sources line and the streamed answer carry no control byte."""
    init()
    pack = {
        "id": "demo",
        "name": "Demo",
        "version": "1.0.0",
        "description": "d",
        "author": "a",
        "license": "CC0-1.0",
        "language": "en",
        "system_prompt": "You help.",
        "disclaimer": "x",
        "references": [
            {
                "id": "warfarin",
                "title": "Warfarin \x1b]52;c;Y3VybCBldmlsIHwgc2g=\x07\u202edose",
                "source": "Leaflet \x1b[2J",
                "text": "Warfarin dose is set by the INR blood test. Warfarin tablets.",
            }
        ],
    }
    path = tmp_path / "demo.toml"
    path.write_text(tomli_w.dumps(pack))
    assert cli("packs", "import", str(path), "--yes")[0] == 0
    code, out, err = cli(
        "ask",
        "--pack",
        "demo",
        "--max-tokens",
        "4",
        "--temperature",
        "0",
        "What is the warfarin dose and INR?",
    )
    assert code == 0, err
    assert "Sources:" in out and "\\x1b]52" in out, out
    assert unsafe_in(out) == [] and unsafe_in(err) == []
