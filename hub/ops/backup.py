"""`hub backup` and `hub restore`: a consistent snapshot of every table, portable between dialects.

The archive is a zip file (deflate) holding `manifest.json` (format, Alembic revision, source dialect,
time, and each table's columns and row count) and one `tables/<name>.jsonl` member per table: a JSON
array of the stored values per row, in primary-key order. Values are read and written as stored
(column types below any TypeDecorator: sealed or hashed values stay sealed or hashed); timestamps are
written as UTC ISO strings, bytes as base64. Every table of the models' metadata is covered, so a table
added later is backed up without a change here.

Consistency: the whole backup is one read-only transaction: REPEATABLE READ on PostgreSQL (one
snapshot of every table while the hub keeps serving), one read transaction on SQLite (WAL mode gives
it one snapshot while writers commit). Restore runs into an empty database migrated to the archive's
revision, of either dialect, as one transaction: a failure leaves the target as it was.
"""
from __future__ import annotations

import base64
import datetime as dt
import decimal
import inspect
import json
import os
import zipfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import func, select, text
from sqlalchemy.types import TypeDecorator, TypeEngine
from sqlmodel import SQLModel

import hub.models  # noqa: F401 - every table registers on the metadata
from hub.db import Database, bulk_insert, value_rows
from hub.errors import HubError

FORMAT = "hub-backup/1"
BATCH = 10_000
# tables the migrations seed (the policy, its revision counter, the policy-change event): a restore
# replaces their rows with the archive's; a database holding only these is empty
SEEDED = ("authz_rule", "authz_revision", "outbox_head")  # rows migrations write: replaced by the archive's
MIGRATION_ACTOR = "migration:%"

Progress = Callable[[str, int], Awaitable[None] | None]


class BackupError(HubError):
    """A backup or restore refused: the message says why and what to do."""

    code = "BAD_USER_INPUT"


def tables() -> list[sa.Table]:
    """Every table of the models, parents before children."""
    return list(SQLModel.metadata.sorted_tables)


def _raw_type(typ: TypeEngine) -> TypeEngine:
    while isinstance(typ, TypeDecorator):
        typ = typ.impl if isinstance(typ.impl, TypeEngine) else typ.impl()
    return typ


def _raw_table(table: sa.Table) -> sa.Table:
    """The table with its stored column types (no TypeDecorator processing on the way in or out)."""
    return sa.Table(table.name, sa.MetaData(), *(
        sa.Column(c.name, _raw_type(c.type), primary_key=c.primary_key, autoincrement=False) for c in table.columns))


def _kind(typ: TypeEngine) -> str:
    typ = _raw_type(typ)
    if isinstance(typ, sa.DateTime):
        return "datetime"
    if isinstance(typ, sa.Date):
        return "date"
    if isinstance(typ, sa.LargeBinary):
        return "bytes"
    if isinstance(typ, sa.Numeric) and not isinstance(typ, sa.Float) and getattr(typ, "asdecimal", False):
        return "decimal"
    return "plain"


def _encode(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "datetime":
        if value.tzinfo is None:  # SQLite stores UTC without a zone
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat()
    if kind == "date":
        return value.isoformat()
    if kind == "bytes":
        return base64.b64encode(bytes(value)).decode("ascii")
    if kind == "decimal":
        return str(value)
    return value


def _decoder(kind: str, sqlite: bool) -> Callable[[Any], Any]:
    if kind == "datetime":
        def datetime(v):
            if v is None:
                return None
            value = dt.datetime.fromisoformat(v)
            return value.replace(tzinfo=None) if sqlite else value
        return datetime
    if kind == "date":
        return lambda v: None if v is None else dt.date.fromisoformat(v)
    if kind == "bytes":
        return lambda v: None if v is None else base64.b64decode(v)
    if kind == "decimal":
        return lambda v: None if v is None else decimal.Decimal(v)
    return lambda v: v


async def _revision(conn) -> str | None:
    try:
        return (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    except sa.exc.DBAPIError:
        return None


async def _report(progress: Progress | None, name: str, rows: int) -> None:
    if progress is not None:
        result = progress(name, rows)
        if inspect.isawaitable(result):
            await result


def _create_private(path: Path):
    """Open a new file readable by its owner only (archives hold personal data)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(fd, "wb")


async def backup(db: Database, path: str | Path, *, progress: Progress | None = None) -> dict:
    """Write a consistent snapshot of every table to a new archive at `path`; return its manifest."""
    path = Path(path)
    if path.exists():
        raise BackupError(f"{path} exists: name a new file (a backup never overwrites one)")
    partial = path.with_name(path.name + ".partial")
    manifest: dict[str, Any] = {"format": FORMAT, "dialect": db.engine.dialect.name,
                                "created_at": dt.datetime.now(dt.UTC).isoformat(), "tables": {}}
    try:
        with _create_private(partial) as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            async with db.engine.connect() as conn:
                if db.sqlite:
                    await conn.begin()
                else:
                    await conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
                    await conn.begin()
                    await conn.execute(text("SET LOCAL statement_timeout = 0"))
                manifest["revision"] = await _revision(conn)
                if manifest["revision"] is None:
                    raise BackupError("the database is not migrated (no Alembic revision): nothing to back up")
                for table in tables():
                    manifest["tables"][table.name] = await _dump(conn, zf, table, progress)
                await conn.rollback()
            zf.writestr("manifest.json", json.dumps(manifest, indent=1))
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return manifest


async def _dump(conn, zf: zipfile.ZipFile, table: sa.Table, progress: Progress | None) -> dict:
    raw = _raw_table(table)
    kinds = [_kind(c.type) for c in raw.columns]
    plain = all(k == "plain" for k in kinds)
    order = [raw.c[c.name] for c in table.primary_key.columns]
    rows = 0
    with zf.open(f"tables/{table.name}.jsonl", "w", force_zip64=True) as out:
        result = await conn.stream(select(raw).order_by(*order))
        async for part in result.partitions(BATCH):
            lines = []
            for row in part:
                values = list(row) if plain else [_encode(k, v) for k, v in zip(kinds, row, strict=True)]
                lines.append(json.dumps(values, ensure_ascii=False, separators=(",", ":")))
            out.write(("\n".join(lines) + "\n").encode("utf-8"))
            rows += len(part)
            await _report(progress, table.name, rows)
    return {"columns": [c.name for c in raw.columns], "rows": rows}


def read_manifest(path: str | Path) -> dict:
    """The manifest of an archive, or a clear error if the file is not one."""
    try:
        with zipfile.ZipFile(path) as zf:
            manifest = json.loads(zf.read("manifest.json"))
    except FileNotFoundError:
        raise BackupError(f"{path}: no such file") from None
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError):
        raise BackupError(f"{path} is not a hub backup (no manifest)") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{path}: unknown backup format {manifest.get('format')!r} (expected {FORMAT})")
    return manifest


async def _not_empty(session) -> list[str]:
    """Tables holding rows a migration did not put there."""
    full = []
    for table in tables():
        if table.name in SEEDED:
            continue
        query = select(func.count()).select_from(table)
        if table.name == "event":
            query = query.where(~table.c.actor.like(MIGRATION_ACTOR))
        if (await session.execute(query.limit(1))).scalar():
            full.append(table.name)
    return full


async def restore(db: Database, path: str | Path, *, progress: Progress | None = None) -> dict:
    """Load an archive into this empty database, migrated to the archive's revision; return the manifest."""
    manifest = read_manifest(path)
    async with db.reader() as conn:
        revision = await _revision(conn)
    if revision is None:
        raise BackupError("the target database is not migrated: run `hub migrate` on it first")
    if revision != manifest["revision"]:
        raise BackupError(f"the archive is of revision {manifest['revision']}, the target database of {revision}: "
                          "migrate the target to the archive's revision (or restore into a hub of that version)")
    known = {t.name: t for t in tables()}
    unknown = sorted(set(manifest["tables"]) - set(known))
    if unknown:
        raise BackupError(f"the archive holds tables this hub does not know: {', '.join(unknown)}")
    async with db.write() as session:
        if not db.sqlite:
            await session.execute(text("SET LOCAL statement_timeout = 0"))
        full = await _not_empty(session)
        if full:
            raise BackupError(f"the target database is not empty ({', '.join(full)} hold rows): restore into an "
                              "empty, migrated database")
        for name in reversed([t.name for t in tables()]):
            if name in SEEDED or name == "event":
                await session.execute(known[name].delete())
        with zipfile.ZipFile(path) as zf:
            for table in tables():
                if table.name in manifest["tables"]:
                    await _load(session, zf, table, manifest["tables"][table.name], db.sqlite, progress)
        if not db.sqlite:
            await _fix_sequences(session)
    db.grew(sum(t["rows"] for t in manifest["tables"].values()))
    return manifest


def _self_references(table: sa.Table) -> list[str]:
    return [fk.parent.name for fk in table.foreign_keys if fk.column.table is table]


async def _load(session, zf: zipfile.ZipFile, table: sa.Table, info: dict, sqlite: bool,
                progress: Progress | None) -> None:
    raw = _raw_table(table)
    columns = info["columns"]
    missing = set(columns) - set(raw.c.keys())
    if missing:
        raise BackupError(f"table {table.name}: the archive has columns this hub does not: {', '.join(sorted(missing))}")
    decoders = [_decoder(_kind(raw.c[c].type), sqlite) for c in columns]
    # a column pointing into its own table (customer.merged_into) is filled after every row is in
    later = [c for c in _self_references(table) if c in columns]
    pk = [c.name for c in table.primary_key.columns]
    rows = 0
    for batch in _batches(zf, f"tables/{table.name}.jsonl"):
        records = [{c: dec(v) for c, dec, v in zip(columns, decoders, values, strict=True)} for values in batch]
        deferred = [(r[pk[0]], {c: r[c] for c in later}) for r in records if any(r[c] is not None for c in later)]
        for r in records:
            for c in later:
                r[c] = None
        await bulk_insert(session, raw, records)
        for c in later:
            pairs = [(key, vals[c]) for key, vals in deferred if vals[c] is not None]
            if pairs:
                v = value_rows(session, {"k": (sa.BigInteger, [k for k, _ in pairs]),
                                         "v": (sa.BigInteger, [x for _, x in pairs])})
                await session.execute(sa.update(raw).where(raw.c[pk[0]] == v.c.k).values({c: v.c.v}))
        rows += len(records)
        await _report(progress, table.name, rows)
    if rows != info["rows"]:
        raise BackupError(f"table {table.name}: the archive lists {info['rows']} rows but holds {rows}")


def _batches(zf: zipfile.ZipFile, member: str) -> Iterator[list[list]]:
    batch: list[list] = []
    with zf.open(member) as f:
        for line in f:
            if line.strip():
                batch.append(json.loads(line))
                if len(batch) >= BATCH:
                    yield batch
                    batch = []
    if batch:
        yield batch


async def _fix_sequences(session) -> None:
    """Move each id sequence past the restored rows (PostgreSQL), so new rows get fresh ids."""
    for table in tables():
        pk = list(table.primary_key.columns)
        if len(pk) != 1 or not isinstance(_raw_type(pk[0].type), sa.Integer):
            continue
        await session.execute(text(
            f"SELECT setval(seq, COALESCE((SELECT MAX({pk[0].name}) FROM {table.name}), 0) + 1, false) "
            "FROM pg_get_serial_sequence(:t, :c) AS seq WHERE seq IS NOT NULL"), {"t": table.name, "c": pk[0].name})
