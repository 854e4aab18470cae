"""Property-based fuzzing: parsers raise only the project's typed errors.

2,000 examples per property (the CI run uses the same settings).
"""

from __future__ import annotations

import contextlib
import json

import pytest
import sqlcipher3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.app import packs, transfer
from bastion.app.cli import UsageError, build_parser
from bastion.app.packs import PackError
from bastion.storage import crypto
from bastion.storage import export as fmt
from bastion.storage.store import Store, StoreError

FUZZ = settings(
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
KEY = bytes(range(32))
HEADER = crypto.seal(b"pw", KEY, crypto.KdfParams(8 * 1024, 1), 3, salt=b"s" * 16, nonce=b"n" * 12)


@FUZZ
@given(st.binary(max_size=300))
def test_header_parser_arbitrary_bytes(blob: bytes) -> None:
    """Any bytes: the header parser returns a header or raises UnlockError."""
    with contextlib.suppress(crypto.UnlockError):
        crypto.parse(blob)


@FUZZ
@given(st.data())
def test_header_mutations_rejected(data: st.DataObject) -> None:
    """Any edit of a real header is rejected by its MAC (UnlockError), never accepted."""
    blob = bytearray(HEADER)
    n = data.draw(st.integers(1, 8))
    for _ in range(n):
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i] = data.draw(st.integers(0, 255).filter(lambda b, i=i: b != blob[i]))
    with pytest.raises(crypto.UnlockError):
        crypto.verify_mac(bytes(blob), KEY)


@FUZZ
@given(st.binary(max_size=2000))
def test_decrypt_arbitrary_bytes(blob: bytes) -> None:
    """Any bytes handed to the importer's decryption: ExportError or nothing."""
    for candidate in (blob, fmt.AGE_MAGIC + blob):
        with contextlib.suppress(fmt.ExportError):
            fmt.decrypt(candidate, passphrase="pw", identities=[])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
message = st.fixed_dictionaries(
    {
        "id": st.text(min_size=1, max_size=8),
        "role": st.sampled_from(["user", "assistant", "system", "bot", ""]),
        "content": st.text(max_size=50),
        "created": st.sampled_from(["2026-01-01T00:00:00+00:00", "yesterday", "2026-13-01"]),
    },
    optional={
        "parent_id": st.none() | st.text(max_size=8),
        "stats": json_values,
        "pinned": json_values,
    },
)
conversation = st.fixed_dictionaries(
    {
        "id": st.text(min_size=1, max_size=8),
        "title": st.text(max_size=30),
        "created": st.sampled_from(["2026-01-01T00:00:00+00:00", "", "2026-02-30"]),
        "messages": st.lists(message, max_size=5),
    },
    optional={"pinned": json_values, "settings": json_values, "head_id": json_values},
)
document = st.fixed_dictionaries(
    {
        "format": st.sampled_from([fmt.FORMAT, fmt.BACKUP_FORMAT, "x"]),
        "version": st.sampled_from([1, 2, "1"]),
        "conversations": st.lists(conversation, max_size=3) | json_values,
    }
)


@FUZZ
@given(document, st.booleans(), st.booleans())
def test_importer_documents(doc: dict, seal: bool, as_md: bool) -> None:
    """Any document: parse/import raise only ExportError or StoreError; imports are whole."""
    if seal and isinstance(doc.get("conversations"), list):
        for conv in doc["conversations"]:
            if isinstance(conv, dict) and isinstance(conv.get("messages"), list):
                conv["chain_head"] = fmt.seal_chain(conv["messages"])
    text = json.dumps(doc)
    if as_md:  # the Markdown transcript form, JSON in its fenced appendix
        text = "# Bastion transcript\n\n" + fmt.APPENDIX_OPEN + text + "\n```\n"
    raw = text.encode()
    store = Store(sqlcipher3.connect(":memory:", check_same_thread=False, isolation_level=None))
    try:
        parsed = fmt.parse_document(raw)
        transfer.import_conversations(store, parsed)
    except (fmt.ExportError, StoreError):
        assert store.list_conversations() == []  # nothing half-imported


WORDS = [
    "models",
    "ask",
    "init",
    "passwd",
    "history",
    "list",
    "show",
    "search",
    "delete",
    "export",
    "verify",
    "import",
    "backup",
    "restore",
    "keys",
    "doctor",
    "--json",
    "--max-tokens",
    "--temperature",
    "--seed",
    "--model",
    "--passphrase-fd",
    "-",
    "--all",
    "--format",
    "md",
    "json",
    "--since",
    "x",
    "0",
    "-1",
    "1e9",
    "--role",
    "user",
    "\x00",
    "--kdf-memory-mib",
    "--recipient",
    "--help-not",
]


@FUZZ
@given(st.lists(st.sampled_from(WORDS) | st.text(max_size=12), max_size=6))
def test_cli_argument_parsing(argv: list[str]) -> None:
    """Any argument list: parsed, or one UsageError; never another exception."""
    try:
        build_parser().parse_args(argv)
    except UsageError as exc:
        assert "\n" not in str(exc)
    except SystemExit as exc:  # only --version / --help exit
        assert exc.code == 0


PACK_TEXT = (packs.builtin_path("legal") / "pack.toml").read_text()
PACK_LINES = PACK_TEXT.splitlines()


@FUZZ
@given(st.text(max_size=400))
def test_pack_loader_arbitrary_text(text: str) -> None:
    """Any text: the pack parser returns a pack or raises PackError, never anything else."""
    with contextlib.suppress(PackError):
        packs.parse(text)


@FUZZ
@given(st.data())
def test_pack_loader_mutations(data: st.DataObject) -> None:
    """A real pack with lines dropped, duplicated or edited: a valid pack or PackError."""
    lines = list(PACK_LINES)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(lines) - 1))
        op = data.draw(st.sampled_from(["drop", "dup", "edit"]))
        if op == "drop":
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        else:
            lines[i] = data.draw(st.text(max_size=40))
    with contextlib.suppress(PackError):
        pack = packs.parse("\n".join(lines), name="fuzz.toml")
        assert pack.id  # a pack that loads is fully validated


def _load_with_reference(target: str) -> list[str | None] | None:
    """Load a folder pack whose reference points at ``target``; its reference texts, or None
    when the loader refuses it (PackError)."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "outside.md").write_text("SECRET")
        folder = root / "pack"
        folder.mkdir()
        (folder / "in.md").write_text("inside")
        escaped = target.replace("\\", "\\\\").replace('"', '\\"')
        text = (
            "\n".join(PACK_LINES[:12])
            + '\nsystem_prompt = "S"'
            + (f'\n[[references]]\nid = "r"\ntitle = "R"\nsource = "S"\nfile = "{escaped}"\n')
        )
        (folder / "pack.toml").write_text(text)
        try:
            return [r.text for r in packs.load(folder).references]
        except PackError:
            return None


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_pack_folder_reference_paths(target: str) -> None:
    """Any reference path in a folder pack: the file inside the folder, or PackError; never a
    file outside it."""
    assert _load_with_reference(target) in (None, ["inside"])


def test_pack_folder_reference_paths_can_load() -> None:
    """The property above is not vacuous: these paths load the file inside, these do not."""
    assert _load_with_reference("in.md") == ["inside"]
    assert _load_with_reference("./in.md") == ["inside"]
    assert _load_with_reference("../outside.md") is None
