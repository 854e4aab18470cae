"""Domain packs: the file format, loading with precise errors, templates, safety rules,
reference chunking and Ed25519 signatures.

A pack is one TOML file, or a folder with ``pack.toml`` whose references point at Markdown
files beside it. Loading validates everything up front (pydantic, ``extra="forbid"``; regular
expressions compiled; every safety rule checked against its own positive and negative
examples; template placeholders checked against the declared variables) and reports the first
problems as ``FILE line N: field.path: message``. Nothing here touches the vault: installing,
importing and trusting packs is :mod:`bastion.app.pack_library`; turns grounded by a pack are
:mod:`bastion.app.turn`.

Modules: ``base`` (limits, errors), ``format`` (the pydantic models), ``safety`` (rules),
``loader`` (TOML with line numbers), ``builtins``, ``chunking``, ``signing``.
"""

from bastion.app.packs.base import (
    FORMAT_VERSION,
    MAX_PACK_BYTES,
    MAX_REFERENCE_BYTES,
    MAX_TOTAL_BYTES,
    PackError,
    SignatureMismatchError,
    TemplateError,
)
from bastion.app.packs.builtins import (
    BUILTIN_SIGNER,
    builtin,
    builtin_ids,
    builtin_path,
    builtin_toml,
)
from bastion.app.packs.chunking import Chunk, chunks
from bastion.app.packs.format import (
    EvalQuestion,
    Example,
    Pack,
    Reference,
    Signature,
    Template,
    Variable,
    json_schema,
    json_schema_text,
    placeholders,
    version_key,
)
from bastion.app.packs.loader import load, parse
from bastion.app.packs.safety import SafetyRule, normalise
from bastion.app.packs.signing import (
    Trust,
    load_signing_key,
    new_signing_key,
    parse_public_key,
    public_key_text,
    signature_for,
    signed_toml,
    verify,
)

__all__ = [
    "BUILTIN_SIGNER",
    "FORMAT_VERSION",
    "MAX_PACK_BYTES",
    "MAX_REFERENCE_BYTES",
    "MAX_TOTAL_BYTES",
    "Chunk",
    "EvalQuestion",
    "Example",
    "Pack",
    "PackError",
    "Reference",
    "SafetyRule",
    "Signature",
    "SignatureMismatchError",
    "Template",
    "TemplateError",
    "Trust",
    "Variable",
    "builtin",
    "builtin_ids",
    "builtin_path",
    "builtin_toml",
    "chunks",
    "json_schema",
    "json_schema_text",
    "load",
    "load_signing_key",
    "new_signing_key",
    "normalise",
    "parse",
    "parse_public_key",
    "placeholders",
    "public_key_text",
    "signature_for",
    "signed_toml",
    "verify",
    "version_key",
]
