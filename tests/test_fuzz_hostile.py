"""Structure-aware fuzzing of the two documents an attacker can hand Bastion: export
documents (nesting, wrong types everywhere, huge numbers) and pack TOML. 2,000 examples
each: only the project's typed errors may come out."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.app import packs, transfer
from bastion.app.packs import PackError
from bastion.storage import export as fmt
from bastion.storage.store import StoreError
from bastion.storage.vault import memory_store

FUZZ = settings(
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["2026-01-01T00:00:00+00:00", "user", "assistant", "system", "", "0" * 64]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _field(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a well-typed value, sometimes anything at all."""
    return st.one_of(good, good, json_values)


iso = st.sampled_from(["2026-01-01T00:00:00+00:00", "2026-05-01T10:00:00", "yesterday"])
message = st.fixed_dictionaries(
    {
        "id": _field(st.text(min_size=1, max_size=8)),
        "parent_id": _field(st.one_of(st.none(), st.text(max_size=8))),
        "role": _field(st.sampled_from(["user", "assistant", "system"])),
        "content": _field(st.text(max_size=40)),
        "created": _field(iso),
    },
    optional={
        "pinned": json_values,
        "stats": _field(
            st.dictionaries(
                st.sampled_from(
                    list(
                        _STATS := [
                            "prompt_tokens",
                            "generated_tokens",
                            "decode_tokens_per_s",
                            "sources",
                            "safety",
                            "stop_reason",
                            "dropped_messages",
                            "fixed_response",
                        ]
                    )
                ),
                json_values,
            )
        ),
        "content_sha256": json_values,
        "chain": json_values,
    },
)
conversation = st.fixed_dictionaries(
    {
        "id": _field(st.text(min_size=1, max_size=8)),
        "title": _field(st.text(max_size=20)),
        "created": _field(iso),
        "messages": _field(st.lists(message, max_size=4)),
    },
    optional={
        "model": _field(st.dictionaries(st.sampled_from(["name", "sha256"]), st.text(max_size=5))),
        "pack": json_values,
        "settings": json_values,
        "pinned": json_values,
        "imported": json_values,
        "head_id": json_values,
        "chain_head": json_values,
    },
)
document = st.fixed_dictionaries(
    {
        "format": _field(st.sampled_from([fmt.FORMAT, fmt.BACKUP_FORMAT])),
        "version": _field(st.sampled_from([1, 2])),
        "conversations": _field(st.lists(conversation, max_size=3)),
    },
    optional={
        "exported": _field(iso),
        "signature": _field(
            st.fixed_dictionaries(
                {
                    "algorithm": st.just("ed25519"),
                    "public_key": st.text(max_size=50),
                    "value": st.text(max_size=90),
                }
            )
        ),
        "packs": json_values,
        "settings": json_values,
    },
)


@st.composite
def export_texts(draw: st.DrawFn) -> bytes:
    """A document, sometimes with sealed chains, then raw mutations a JSON encoder would
    never make: deep nesting, huge numbers, NaN, lone surrogates, Markdown wrapping."""
    doc = draw(document)
    if draw(st.booleans()) and isinstance(doc.get("conversations"), list):
        for conv in doc["conversations"]:
            if not isinstance(conv, dict):
                continue
            msgs = conv.get("messages")
            if isinstance(msgs, list) and all(
                isinstance(m, dict) and isinstance(m.get("content"), str) for m in msgs
            ):
                with contextlib.suppress(KeyError, TypeError, ValueError):
                    conv["chain_head"] = fmt.seal_chain(msgs)
    text = json.dumps(doc, ensure_ascii=draw(st.booleans()))
    mutation = draw(st.integers(0, 6))
    if mutation == 1:
        n = draw(st.integers(30, 5000))
        text = text[:-1] + ', "deep": ' + "[" * n + "]" * n + "}"
    elif mutation == 2:
        text = text[:-1] + ', "huge": ' + "9" * draw(st.integers(300, 6000)) + "}"
    elif mutation == 3:
        text = text[:-1] + ', "x": ' + draw(st.sampled_from(["NaN", "-Infinity", "1e999"])) + "}"
    elif mutation == 4:
        text = text[:-1] + ', "s": "\\udc80"}'
    elif mutation == 5:
        text = "# Bastion transcript\n\n" + fmt.APPENDIX_OPEN + text + "\n```\n"
    elif mutation == 6:
        cut = draw(st.integers(0, len(text)))
        text = text[:cut]
    return text.encode("utf-8", "surrogatepass")


STORE = memory_store()


@FUZZ
@given(export_texts())
def test_export_documents_raise_only_export_errors(plaintext: bytes) -> None:
    """verify and import of any document: a result or ExportError/StoreError, never another
    exception (RecursionError, TypeError, KeyError, ValueError...)."""
    try:
        result = transfer.verify(plaintext, STORE)
    except fmt.ExportError:
        return
    result.describe()
    fmt.render_markdown(result.document)
    try:
        transfer.import_verified(STORE, plaintext)
    except (fmt.ExportError, StoreError):
        return


toml_scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=20),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)
PACK_KEYS = [
    "id",
    "name",
    "version",
    "description",
    "author",
    "license",
    "language",
    "system_prompt",
    "disclaimer",
    "min_context",
    "templates",
    "safety",
    "references",
    "examples",
    "eval",
    "signature",
]
GOOD = {
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


@st.composite
def pack_texts(draw: st.DrawFn) -> str:
    """A pack table with some fields replaced by anything, then raw TOML mutations: deep
    arrays and inline tables, unterminated strings, huge integers."""
    doc: dict[str, Any] = dict(GOOD)
    for key in draw(st.lists(st.sampled_from(PACK_KEYS), max_size=5)):
        doc[key] = draw(toml_values)
    if draw(st.booleans()):
        doc["safety"] = [
            {
                "id": draw(st.text(max_size=4)),
                "description": "d",
                "action": draw(st.sampled_from(["respond", "caution", "x"])),
                "any": draw(st.lists(st.text(max_size=8), max_size=3)),
                "message": "m",
                "positive": draw(st.lists(st.text(max_size=8), max_size=2)),
                "negative": [],
            }
        ]
    text = tomli_w.dumps(doc)
    mutation = draw(st.integers(0, 4))
    if mutation == 1:
        n = draw(st.integers(30, 3000))
        text += "deep = " + "[" * n + "]" * n + "\n"
    elif mutation == 2:
        n = draw(st.integers(30, 3000))
        text += "deep = " + "{a = " * n + "1" + "}" * n + "\n"
    elif mutation == 3:
        text += 'broken = "no end\n'
    elif mutation == 4:
        text += "huge = " + "9" * draw(st.integers(20, 5000)) + "\n"
    return text


@FUZZ
@given(pack_texts())
def test_pack_toml_raises_only_pack_errors(text: str) -> None:
    """Any pack TOML: a pack or PackError (every problem one line), never another exception."""
    try:
        packs.parse(text)
    except PackError as exc:
        assert exc.problems and all("\n" not in p for p in exc.problems)
