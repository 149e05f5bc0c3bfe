"""What the hub writes to its logs, and how: key=value or JSON lines, no values, no secrets.

Everything the hub logs goes through the standard `logging` module. `configure_logging()` (called by
`hub serve` in every worker, and by the other commands) puts one handler on the root logger whose
formatter

- caps every message at `MAX_MESSAGE` characters (a 5 MB bad id must not add 5 MB to the log);
- rewrites every traceback (ours, uvicorn's, SQLAlchemy's) through `safe_traceback`: exception messages
  lose their quoted parts and PostgreSQL's DETAIL lines (`Failing row contains (...)`, `Key (email)=(...)`),
  which is where databases and parsers repeat the values they were given.

SQL parameters never reach a message in the first place: the engine runs with `hide_parameters=True`
(hub.db). Database URLs are printed through `mask_url`.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
import traceback
from typing import Any

from sqlalchemy.engine import make_url

MAX_MESSAGE = 2000  # characters of one log message, traceback excluded
MAX_EXCEPTION_TEXT = 500  # characters of one exception's message inside a traceback
HANDLER_NAME = "hub"

# 'quoted', "quoted" (greedy up to the closing quote on the same line), and PostgreSQL's DETAIL/HINT lines
_QUOTED = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"")
_DETAIL = re.compile(r"^\s*(DETAIL|HINT|CONTEXT|WHERE):.*$", re.MULTILINE)
_PAREN_VALUES = re.compile(r"\)=\([^\n]*\)")  # Key (email)=(jane@example.com)


def mask_url(url: str) -> str:
    """A database URL fit for printing: its password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy can read: print nothing of it
        return "<unreadable database URL>"


def redact(text: str, limit: int = MAX_EXCEPTION_TEXT) -> str:
    """An exception message without the values it may quote, at most `limit` characters."""
    text = _DETAIL.sub(r"\1: <redacted>", text)
    text = _PAREN_VALUES.sub(")=(<redacted>)", text)
    text = _QUOTED.sub(lambda m: m.group(0)[0] + "…" + m.group(0)[0], text)
    return truncate(text, limit)


def truncate(text: str, limit: int = MAX_MESSAGE) -> str:
    """At most `limit` characters, saying how many were cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit} more characters]"


def safe_traceback(exc: BaseException) -> str:
    """The traceback of an exception and its causes, each exception's message redacted."""
    te = traceback.TracebackException.from_exception(exc, capture_locals=False)
    seen: set[int] = set()
    stack = [te]
    while stack:
        t = stack.pop()
        if t is None or id(t) in seen:
            continue
        seen.add(id(t))
        t._str = redact(str(getattr(t, "_str", "")))  # the message line of each exception in the chain
        stack.extend([t.__cause__, t.__context__, *(getattr(t, "exceptions", None) or [])])
    return "".join(te.format()).rstrip()


class HubFormatter(logging.Formatter):
    """One line per record, key=value (default) or JSON; capped messages, redacted tracebacks.

    text: `ts=... level=INFO logger=hub.request request_id=... op=... role=... status=200 ms=3.1 errors=-`;
    a value with spaces, quotes or newlines is a JSON string (a traceback stays on its line as `\\n`).
    """

    def __init__(self, style: str = "text") -> None:
        super().__init__()
        self.json = style == "json"

    def formatException(self, ei) -> str:  # noqa: N802 - logging's name
        return safe_traceback(ei[1]) if ei and ei[1] is not None else ""

    def format(self, record: logging.LogRecord) -> str:
        message = truncate(record.getMessage())
        fields: dict[str, Any] = getattr(record, "fields", None) or {}
        when = dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        exc = self.formatException(record.exc_info) if record.exc_info else ""
        if self.json:
            out = {"ts": when, "level": record.levelname, "logger": record.name, "message": message, **fields}
            if exc:
                out["exception"] = exc
            return json.dumps(out, default=str, ensure_ascii=False)
        line = f"ts={when} level={record.levelname} logger={record.name} " + (
            " ".join(f"{k}={_kv(v)}" for k, v in fields.items()) if fields else f"msg={_kv(message)}")
        return f"{line} exc={_kv(exc)}" if exc else line


def _kv(value: Any) -> str:
    if value is None:
        return "-"
    text = str(value)
    if text and not any(c in text for c in ' "=\n\t\\'):
        return text
    return json.dumps(text, ensure_ascii=False)


# loggers that write SQL parameters (personal values) at DEBUG: never below WARNING, whatever HUB_LOG_LEVEL says
NOISY = ("aiosqlite", "asyncpg", "sqlalchemy.pool", "httpcore", "httpx")


def quiet_drivers() -> None:
    """Hold the database drivers' loggers at WARNING: aiosqlite logs every statement with its parameters."""
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)


class _StderrHandler(logging.StreamHandler):
    """A handler writing to whatever sys.stderr is at the time (a test runner may swap it)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_logging(level: str = "INFO", style: str = "text") -> None:
    """Log to stderr through HubFormatter (once per process; later calls adjust level and style)."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if h.get_name() == HANDLER_NAME), None)
    if handler is None:
        handler = _StderrHandler()
        handler.set_name(HANDLER_NAME)
        root.addHandler(handler)
    handler.setFormatter(HubFormatter(style))
    root.setLevel(level.upper())
    quiet_drivers()
    # strawberry logs every GraphQL error with its traceback; the hub logs them itself (schema.build)
    logging.getLogger("strawberry.execution").setLevel(logging.CRITICAL)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).setLevel(logging.WARNING)
