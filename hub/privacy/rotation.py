"""`hub keys rotate` / `retire` / `status`: bring every sealed value under the active key, while the hub serves.

Every place that holds sealed values is walked in primary-key order, in batches; each batch is one write
transaction under the hub's write lock (so a registration never interleaves with it), reads the values as
stored (around the column types), and rewrites only those sealed under another key than the active one, or
still in clear although their attribute is now configured to be sealed. A run that stops halfway is resumed
by running it again (`hub keys rotate --resume`): it finds nothing left to do in the batches already done.
Keyed hashes do not depend on the encryption keys, so lookups keep working throughout.

Places: source_record (national_id, date_of_birth, raw, match_features), customer (national_id,
date_of_birth), lineage (the values of the sealed attributes), event (changes).
"""
from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam, select, tuple_, update

from hub.config import Settings
from hub.db import Database
from hub.golden.attributes import API_NAME
from hub.models import Customer, Event, Lineage, SourceRecord
from hub.models.types import SEALING
from hub.privacy.keys import (
    CIPHER_PREFIX,
    KeyMaterialError,
    KeyRing,
    is_sealed,
    key_id_of,
    new_keyring,
    parse_keys,
    write_key_file,
)
from hub.privacy.sealing import SEALABLE, Sealer, sealer

SR, CUSTOMER, LINEAGE, EVENT = SourceRecord.__table__, Customer.__table__, Lineage.__table__, Event.__table__
Progress = Callable[[str, int, int | None], None]
_SEALED_FIELDS = tuple(API_NAME[a] for a in SEALABLE)


@dataclass
class KeyReport:
    """What a pass found: sealed values per key id, clear values of sealed attributes, rows rewritten."""

    by_key: collections.Counter = field(default_factory=collections.Counter)
    clear: int = 0           # values of configured attributes still in clear (before the pass)
    rewritten: int = 0       # rows rewritten by the pass
    rows: int = 0            # rows read

    def old(self, active: str) -> int:
        """Values sealed under other keys than the active one."""
        return sum(n for kid, n in self.by_key.items() if kid != active)


def _walk(obj: Any, found: collections.Counter) -> None:
    """Count the key ids of the sealed strings anywhere in a JSON value."""
    if isinstance(obj, str):
        if obj.startswith(CIPHER_PREFIX + ":"):
            found[key_id_of(obj)] += 1
    elif isinstance(obj, dict):
        for v in obj.values():
            _walk(v, found)
    elif isinstance(obj, list):
        for v in obj:
            _walk(v, found)


def _needs(found: collections.Counter, active: str) -> bool:
    return any(kid != active for kid in found)


class _Pass:
    def __init__(self, seal: Sealer, fix: bool, report: KeyReport) -> None:
        self.seal, self.fix, self.report = seal, fix, report
        self.active = seal.ring.active_id

    def _due(self, stored: str | None, sealable: bool) -> bool:
        """Count a stored value by its key (or as clear); tell whether it must be rewritten under the active key."""
        if stored is None:
            return False
        if is_sealed(stored):
            kid = key_id_of(stored)
            self.report.by_key[kid] += 1
            return kid != self.active
        if sealable:
            self.report.clear += 1
        return sealable

    def column(self, attribute: str, stored: str | None) -> str | None:
        """The new stored text of a column value, or None when it stays as it is."""
        if not self._due(stored, attribute in self.seal.attributes):
            return None
        return self.seal.stored(attribute, self.seal.value(attribute, stored))

    def lineage(self, fld: str, stored: str | None) -> str | None:
        if not self._due(stored, fld in self.seal.api):
            return None
        return self.seal.seal_lineage(fld, self.seal.open_lineage(fld, stored))

    def document(self, shape: str, stored: Any) -> Any | None:
        if stored is None:
            return None
        found: collections.Counter = collections.Counter()
        _walk(stored, found)
        self.report.by_key.update(found)
        fresh = self.seal.seal_document(shape, self.seal.open_document(shape, stored))
        after: collections.Counter = collections.Counter()
        _walk(fresh, after)
        newly = sum(after.values()) - sum(found.values())
        self.report.clear += max(newly, 0)
        if not _needs(found, self.active) and newly <= 0:
            return None
        return fresh


def _plain(column, typ=None):
    """A column read or written as stored, around its sealing type."""
    return sa.type_coerce(column, typ or (sa.JSON() if isinstance(column.type.impl, sa.JSON) else sa.String()))


async def _by_id(db: Database, table, columns: dict[str, Callable], p: _Pass, batch: int,
                 progress: Progress | None, label: str) -> None:
    """Walk a table with an integer id in batches; rewrite the columns whose values need it."""
    last, done = 0, 0
    names = list(columns)
    while True:
        async with db.write() if p.fix else db.session() as session:
            rows = (await session.execute(
                select(table.c.id, *(_plain(table.c[n]).label(n) for n in names))
                .where(table.c.id > last).order_by(table.c.id).limit(batch))).all()
            if not rows:
                return
            changes = []
            for row in rows:
                new = {n: columns[n](n, getattr(row, n)) for n in names}
                if any(v is not None for v in new.values()):
                    # keep what does not change: write the stored form back as it is
                    changes.append({"_id": row.id, **{f"b_{n}": (new[n] if new[n] is not None else getattr(row, n))
                                                      for n in names}})
            p.report.rows += len(rows)
            if changes and p.fix:
                await session.execute(
                    update(table).where(table.c.id == bindparam("_id")).values(
                        {n: bindparam(f"b_{n}", type_=sa.JSON() if isinstance(table.c[n].type.impl, sa.JSON)
                                      else sa.String()) for n in names}), changes)
                p.report.rewritten += len(changes)
            last = rows[-1].id
        done += len(rows)
        if progress is not None:
            progress(label, done, done)


async def _lineage(db: Database, p: _Pass, batch: int, progress: Progress | None) -> None:
    last: tuple[int, str] = (0, "")
    done = 0
    while True:
        async with db.write() if p.fix else db.session() as session:
            rows = (await session.execute(
                select(LINEAGE.c.customer_id, LINEAGE.c.field, _plain(LINEAGE.c.value).label("value"))
                .where(LINEAGE.c.field.in_(_SEALED_FIELDS),
                       tuple_(LINEAGE.c.customer_id, LINEAGE.c.field) > tuple_(sa.literal(last[0]), sa.literal(last[1])))
                .order_by(LINEAGE.c.customer_id, LINEAGE.c.field).limit(batch))).all()
            if not rows:
                return
            changes = [{"_c": r.customer_id, "_f": r.field, "b_value": new} for r in rows
                       if (new := p.lineage(r.field, r.value)) is not None]
            p.report.rows += len(rows)
            if changes and p.fix:
                await session.execute(update(LINEAGE).where(LINEAGE.c.customer_id == bindparam("_c"),
                                                            LINEAGE.c.field == bindparam("_f"))
                                      .values(value=bindparam("b_value")), changes)
                p.report.rewritten += len(changes)
            last = (rows[-1].customer_id, rows[-1].field)
        done += len(rows)
        if progress is not None:
            progress("lineage", done, done)


async def walk(db: Database, *, fix: bool, batch: int = 1000, progress: Progress | None = None) -> KeyReport:
    """Count (and with fix, rewrite under the active key) every sealed value the hub stores."""
    seal = sealer()
    report = KeyReport()
    p = _Pass(seal, fix, report)
    await _by_id(db, SR, {"national_id": p.column, "date_of_birth": p.column,
                          "raw": lambda n, v: p.document("raw", v),
                          "match_features": lambda n, v: p.document("features", v)},
                 p, batch, progress, "source records")
    await _by_id(db, CUSTOMER, {"national_id": p.column, "date_of_birth": p.column}, p, batch, progress,
                 "golden records")
    await _lineage(db, p, batch, progress)
    await _by_id(db, EVENT, {"changes": lambda n, v: p.document("changes", v)}, p, batch, progress, "events")
    return report


MAX_PASSES = 3  # values a server sealed under the old key while a pass ran are caught by the next one


def _key_file(settings: Settings, verb: str) -> Path:
    if settings.keys:
        raise KeyMaterialError(f"the keys come from HUB_KEYS, which `hub keys {verb}` cannot change: edit it on every "
                               "process (add an 'enc <id> <base64>' entry last to rotate; `hub keys init --stdout` "
                               "prints fresh material), restart them, then run `hub keys rotate --resume`")
    return Path(settings.key_file)


def _install(ring: KeyRing, settings: Settings, path: Path | None) -> Sealer:
    fresh = Sealer(ring, settings.encrypted_attributes, key_file=str(path) if path else None)
    fresh._settings = (settings.keys, settings.key_file, settings.encrypted_attributes)
    SEALING.sealer = fresh
    return fresh


def init_keys(settings: Settings) -> Path:
    """Write a fresh key file (owner-only); refuse to overwrite one."""
    path = _key_file(settings, "init")
    if path.exists():
        raise KeyMaterialError(f"{path} exists: refusing to overwrite keys (values sealed with them would be lost)")
    write_key_file(path, new_keyring())
    return path


async def rotate(db: Database, settings: Settings, *, key_id: str | None = None, resume: bool = False,
                 batch: int = 1000, progress: Progress | None = None) -> tuple[str, KeyReport]:
    """Add a key (unless resuming), make it active, and re-encrypt every sealed value under it.

    Returns the active key id and the report of the last pass (which found nothing left to rewrite, unless
    MAX_PASSES passes did not suffice).
    """
    if resume:
        path = None if settings.keys else Path(settings.key_file)
        ring = sealer().ring if path is None else parse_keys(path.read_text(), str(path))
    else:
        path = _key_file(settings, "rotate")
        ring = parse_keys(path.read_text(), str(path)).with_new_key(key_id)
        write_key_file(path, ring)  # running servers read it within a second, at once for a value under it
    _install(ring, settings, path)
    total = KeyReport()
    for _ in range(MAX_PASSES):
        report = await walk(db, fix=True, batch=batch, progress=progress)
        total.rewritten += report.rewritten
        if report.rewritten == 0:
            break
    report.rewritten = total.rewritten
    return ring.active_id, report


async def retire(db: Database, settings: Settings, *, batch: int = 1000,
                 progress: Progress | None = None) -> tuple[list[str], KeyReport]:
    """Drop the keys no stored value needs any more (only if none does); return the retired key ids."""
    path = _key_file(settings, "retire")
    ring = parse_keys(path.read_text(), str(path))
    _install(ring, settings, path)
    report = await walk(db, fix=False, batch=batch, progress=progress)
    active = ring.active_id
    if report.old(active):
        raise KeyMaterialError(f"{report.old(active)} stored values are still sealed under older keys "
                               f"({', '.join(sorted(k for k in report.by_key if k != active))}): "
                               "run `hub keys rotate --resume` first")
    retired = [kid for kid, _ in ring.enc_keys if kid != active]
    if retired:
        write_key_file(path, KeyRing(ring.hash_key, (ring.enc_keys[-1],)))
    return retired, report


def new_key_text() -> str:
    """Fresh key material in the key-file format (for `hub keys init --stdout`)."""
    return new_keyring().to_text()


__all__ = ["KeyReport", "init_keys", "new_key_text", "retire", "rotate", "walk"]
