"""What every part of the pack format shares: limits, errors and the strict base model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

FORMAT_VERSION = 1
MAX_PACK_BYTES = 1_000_000
"""Largest ``pack.toml`` (or single-file pack) accepted."""
MAX_REFERENCE_BYTES = 200_000
"""Largest single reference document in a folder pack."""
MAX_TOTAL_BYTES = 4_000_000
"""Largest pack in total (TOML plus every reference document)."""
MAX_PATTERN_CHARS = 400
SIGNATURE_CONTEXT = b"bastion-pack-signature-v1\n"
KEY_PREFIX = "ed25519:"

_ID = r"^[a-z0-9][a-z0-9-]{0,39}$"
_SEMVER = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z.-]+)?$"
)


class PackError(Exception):
    """A pack cannot be used: the first line names the file, line and field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        super().__init__(problems[0] + more)


class SignatureMismatchError(PackError):
    """The pack carries a signature that does not match its content: refuse it."""


class TemplateError(ValueError):
    """A template cannot be filled in with the values given."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)
