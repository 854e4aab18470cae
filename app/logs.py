"""Logging that cannot leak content: records carry ids, never message text.

Bastion's own code logs only constant format strings with ids and numbers as arguments. The
filter enforces it for every record (third-party libraries included): an argument that is not
a number, a boolean, or an id-like token (hex ids, UUIDs, short names such as pack ids) is
replaced by ``<redacted>``, and exceptions are reduced to their type. Output goes to stderr
only, never to a file.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

_ID = re.compile(r"[0-9a-f]{8,64}|[0-9a-f-]{36}|[a-z][a-z0-9_.-]{0,39}")
REDACTED = "<redacted>"


def _safe(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str) and _ID.fullmatch(value):
        return value
    return REDACTED


class IdsOnlyFilter(logging.Filter):
    """Rewrite each record so that only ids and numbers survive (see the module docstring)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.msg, str):
            record.msg = REDACTED
        if isinstance(record.args, dict):
            record.args = {k: _safe(v) for k, v in record.args.items()}
        elif record.args:
            record.args = tuple(_safe(a) for a in record.args)
        if record.exc_info:
            exc_type = record.exc_info[0]
            record.msg = f"{record.msg} [{exc_type.__name__ if exc_type else 'error'}]"
            record.exc_info = None
            record.exc_text = None
        record.stack_info = None
        return True


def install(level: int = logging.WARNING) -> logging.Handler:
    """Send every log record through the filter to stderr (the only log destination)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(IdsOnlyFilter())
    handler.setFormatter(logging.Formatter("bastion: %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    return handler
