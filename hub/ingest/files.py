"""Read bulk files (JSONL, CSV) into registration inputs, line by line, the way registerRecords reads its input.

A line is checked for the shape GraphQL's type system gives `SourceRecordInput` (an object with a string
`key`, an `attributes` object of known attribute names holding strings or null, an ISO 8601 `updatedAt`);
a line that breaks it is refused on its own, with its line number, and the rest of the file goes on. Values
are not judged here: registration does that, exactly as for registerRecords. Error messages here never
quote a value of the line (they may reach a terminal); the caller's errors file may quote the line itself.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from dateutil.parser import isoparse

from hub.golden.attributes import API_NAME
from hub.ingest.records import RecordInput
from hub.privacy.consent import Statement
from hub.ingest.standardise import FieldError
from hub.validation import safe_echo

ATTRIBUTE_NAMES = frozenset(API_NAME.values())
RECORD_FIELDS = ("key", "attributes", "updatedAt", "consents")
MAX_LINE_BYTES = 1 << 20     # a line longer than this is refused unread (a record's limits add up to ~3 KB)


@dataclass
class Line:
    """One record of a file: its input, or why the line was refused (then `record` is None)."""

    number: int                         # the file's line number (a CSV record's first line)
    text: str                           # what the line held, for the caller's errors file (may be cut short)
    record: RecordInput | None = None
    errors: list[FieldError] = field(default_factory=list)


def _name(value: object) -> str:
    return safe_echo(value, 60)


def record_from_object(obj: Any) -> tuple[RecordInput | None, list[FieldError]]:
    """Check one parsed line against the shape of SourceRecordInput; return the input or the line's errors."""
    if not isinstance(obj, dict):
        kind = {list: "an array", str: "a string", type(None): "null", bool: "a boolean"}.get(type(obj), "a number")
        return None, [FieldError("line", f"is {kind}, not a JSON object with key and attributes")]
    errors = [FieldError("line", f"unknown field {_name(k)!r}; a record has {', '.join(RECORD_FIELDS)}")
              for k in obj if k not in RECORD_FIELDS]
    key = obj.get("key")
    if not isinstance(key, str):
        errors.append(FieldError("key", "is missing" if key is None else f"must be a string, not {_kind(key)}"))
    attributes = obj.get("attributes")
    if not isinstance(attributes, dict):
        errors.append(FieldError("attributes", "is missing" if attributes is None
                                 else f"must be an object, not {_kind(attributes)}"))
        attributes = {}
    for name, value in attributes.items():
        if name not in ATTRIBUTE_NAMES:
            # the name goes in the message, not the field: a terminal summary shows fields, and a name is data
            errors.append(FieldError("attributes", f"unknown attribute {_name(name)!r}; known: "
                                                   + ", ".join(API_NAME.values())))
        elif value is not None and not isinstance(value, str):
            errors.append(FieldError(name, f"must be a string or null, not {_kind(value)}"))
    updated_at = obj.get("updatedAt")
    moment = None
    if updated_at is not None:
        if not isinstance(updated_at, str):
            errors.append(FieldError("updatedAt", f"must be an ISO 8601 date-time string, not {_kind(updated_at)}"))
        else:
            try:
                moment = isoparse(updated_at)
            except (ValueError, OverflowError):
                errors.append(FieldError("updatedAt", "is not an ISO 8601 date-time"))
    consents = _consents(obj.get("consents"), errors)
    if errors:
        return None, errors
    return RecordInput(key, attributes, moment, consents), []


def _consents(value: Any, errors: list[FieldError]) -> list[Statement]:
    """The line's `consents` (as ConsentInput: purpose, granted, optional at and evidence), or errors."""
    if value is None:
        return []
    if not isinstance(value, list):
        errors.append(FieldError("consents", f"must be an array of objects, not {_kind(value)}"))
        return []
    out = []
    for c in value:
        if not isinstance(c, dict) or not isinstance(c.get("purpose"), str) or not isinstance(c.get("granted"), bool):
            errors.append(FieldError("consents", "each consent is an object with a purpose (text) and granted "
                                                 "(true or false)"))
            continue
        at, evidence = c.get("at"), c.get("evidence")
        moment = None
        if at is not None:
            try:
                moment = isoparse(at) if isinstance(at, str) else None
            except (ValueError, OverflowError):
                moment = None
            if moment is None:
                errors.append(FieldError("consents", "a consent's at is not an ISO 8601 date-time"))
                continue
        if evidence is not None and not isinstance(evidence, str):
            errors.append(FieldError("consents", f"a consent's evidence must be a string, not {_kind(evidence)}"))
            continue
        out.append(Statement(c["purpose"], c["granted"], moment, evidence))
    return out


def _kind(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(type(value), "a number")


def _lines(f: BinaryIO) -> Iterator[tuple[int, bytes | None]]:
    """Yield (line number, bytes) per line; None for a line longer than MAX_LINE_BYTES (skipped unread)."""
    number = 0
    while True:
        chunk = f.readline(MAX_LINE_BYTES + 1)
        if not chunk:
            return
        number += 1
        if len(chunk) > MAX_LINE_BYTES and not chunk.endswith(b"\n"):
            while chunk and not chunk.endswith(b"\n"):   # skip the rest of the line
                chunk = f.readline(MAX_LINE_BYTES)
            yield number, None
            continue
        yield number, chunk


def read_jsonl(path: Path) -> Iterator[Line]:
    """One Line per non-blank line of a JSONL file (UTF-8, a byte-order mark allowed)."""
    with path.open("rb") as f:
        for number, data in _lines(f):
            if data is None:
                yield Line(number, "", errors=[FieldError("line", f"is longer than {MAX_LINE_BYTES} bytes")])
                continue
            try:
                text = data.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as e:
                yield Line(number, data[:MAX_LINE_BYTES].decode("utf-8", "replace").rstrip("\r\n"),
                           errors=[FieldError("line", f"is not valid UTF-8 (byte {e.start + 1})")])
                continue
            if not text.strip():
                continue
            text = text.rstrip("\r\n")
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                yield Line(number, text, errors=[FieldError("line", f"is not JSON: {e.msg} at column {e.colno}")])
                continue
            except (ValueError, RecursionError):  # an integer of thousands of digits, nesting too deep
                yield Line(number, text, errors=[FieldError("line", "is not JSON the loader can read "
                                                                    "(a number too long or nesting too deep)")])
                continue
            record, errors = record_from_object(obj)
            yield Line(number, text, record, errors)


def read_csv(path: Path) -> Iterator[Line]:
    """One Line per CSV record: a header row (key, updatedAt, attribute names), then one record a row.

    An unknown column refuses the whole file before anything is read (raises ValueError): every row
    would lose that column, which is better fixed once.
    """
    with path.open("rb") as raw:
        # invalid UTF-8 becomes lone surrogates (refused below as such) instead of ending the read
        f = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise ValueError(f"{path}: line 1: the header is not CSV ({e})") from None
        header = [h.strip() for h in header]
        unknown = [h for h in header if h not in ATTRIBUTE_NAMES and h not in ("key", "updatedAt")]
        if unknown or "key" not in header or len(set(header)) != len(header):
            raise ValueError(
                f"{path}: line 1: the header must name key, optionally updatedAt, and attributes, each once "
                f"({', '.join(API_NAME.values())})" + (f"; unknown: {', '.join(_name(h) for h in unknown)}"
                                                       if unknown else ""))
        while True:
            number = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                yield Line(number, "", errors=[FieldError("line", f"is not CSV ({e})")])
                continue
            if not any(cell.strip() for cell in row):
                continue
            text = ",".join(row)[:MAX_LINE_BYTES]
            if any("\udc80" <= ch <= "\udcff" for cell in row for ch in cell):
                yield Line(number, text.encode("utf-8", "surrogateescape").decode("utf-8", "replace"),
                           errors=[FieldError("line", "is not valid UTF-8")])
                continue
            if len(row) != len(header):
                yield Line(number, text, errors=[FieldError(
                    "line", f"has {len(row)} fields; the header has {len(header)}")])
                continue
            cells = dict(zip(header, row, strict=True))
            obj: dict[str, Any] = {"key": cells.pop("key"),
                                   "attributes": {k: v for k, v in cells.items() if k != "updatedAt" and v != ""}}
            if cells.get("updatedAt"):
                obj["updatedAt"] = cells["updatedAt"]
            record, errors = record_from_object(obj)
            yield Line(number, text, record, errors)


def read_lines(path: Path) -> Iterator[Line]:
    """The records of a bulk file: CSV by its .csv suffix, else JSONL."""
    return read_csv(path) if path.suffix.lower() == ".csv" else read_jsonl(path)


__all__ = ["MAX_LINE_BYTES", "Line", "read_csv", "read_jsonl", "read_lines", "record_from_object"]
