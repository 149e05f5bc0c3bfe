"""Right to erasure: remove everything the hub holds on a person, keep a tombstone, tell every source.

`erase_customer` erases a golden record and the golden records merged away into it, in the caller's write
transaction, in a fixed number of set-based statements whatever the number of records:

1. Gather (`gather`): the golden ids (the record and every id forwarding to it), their source records,
   every value the person had (standardised, raw as sent, golden, steward overrides, history), and the
   other golden records whose history may hold those values (steward rules and merge/split/unmerge
   events name them).
2. Issue tasks (one per source record: "erase key K" for its system) and blocks (keyed hashes of each
   system + key and of each exact-rule value tuple), unless the caller says not to (retention).
3. Run every eraser of `ERASERS` on that scope: each removes the person from one group of tables and
   returns counts. A table that holds personal data gets its eraser here; the proof test
   (tests/test_erasure.py) dumps every table after an erasure, so a forgotten one fails it.
4. Write the tombstone (`erasure`: id, when, who, why, counts) and an ERASED event without values.

The golden record keeps its row with status ERASED and every personal column null (its id is referenced by
events, the tombstone and the ids forwarding to it); merged-away ids keep forwarding to it, so any id the
person ever had reads as erased.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BigInteger, String, bindparam, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hub.config import Settings
from hub.db import any_of, bulk_insert, value_rows
from hub.errors import BadInput, NotFound
from hub.golden.attributes import API_NAME, ATTRIBUTES, as_text
from hub.ingest.erased import key_hash, rule_hashes
from hub.models import (
    ACTIVE, ERASED, MERGED, RETIRED, BlockingKey, Customer, Erasure, ErasureBlock, ErasureTask, Event, Lineage,
    MatchCandidate, MatchModelVersion, SourceRecord, SourceSystem, StewardRule, utcnow,
)
from hub.models.consent import Consent, ConsentStatement
from hub.models.erasure import ERASURE, KEY_BLOCK, RULE_BLOCK
from hub.privacy.keys import keyring
from matching.features import features
from matching.spec import TF_COLUMNS

CUSTOMER, SR, LINEAGE, EVENT, MC, RULE, BK, SYSTEM = (
    Customer.__table__, SourceRecord.__table__, Lineage.__table__, Event.__table__, MatchCandidate.__table__,
    StewardRule.__table__, BlockingKey.__table__, SourceSystem.__table__)
TOMBSTONE, BLOCK, TASK, MODEL = (Erasure.__table__, ErasureBlock.__table__, ErasureTask.__table__,
                                 MatchModelVersion.__table__)
CONSENT, STATEMENT = Consent.__table__, ConsentStatement.__table__
ERASED_CHANGES = {"erased": True}
# keys of event changes that name another golden record the person's records were with
_RELATED_KEYS = ("from", "into", "merged", "unmerged", "unmerged_from", "split_from")


@dataclass
class Scope:
    """What one erasure removes, gathered before anything is written; every eraser reads it."""

    roots: list[int]                       # the golden records erased (tombstone ids)
    customer_ids: list[int]                # the roots and every golden id forwarding to them
    merged: dict[int, list[int]]           # root -> the ids merged away into it
    record_ids: list[int]
    records: list[tuple[int, int, str, str]]  # (id, customer id, system, key)
    values: dict[str, set[str]]            # API attribute -> every text the person had for it
    related: list[int]                     # other golden records whose history may hold those values
    golden_values: list[dict[str, Any]] = field(default_factory=list)  # the roots' values (rule blocks)
    standardised: list[dict[str, Any]] = field(default_factory=list)   # each record's values (rule blocks)
    actor: str = ""
    now: dt.datetime = field(default_factory=utcnow)


Eraser = Callable[[AsyncSession, Scope], Awaitable[dict[str, int]]]


def _rows(result) -> int:
    return max(result.rowcount or 0, 0)


async def _erase_blocking_keys(session: AsyncSession, scope: Scope) -> dict[str, int]:
    """The blocking keys (the real-time matcher's and search's index) of the person's records."""
    if not scope.record_ids:
        return {"blockingKeys": 0}
    return {"blockingKeys": _rows(await session.execute(
        delete(BK).where(any_of(session, BK.c.source_record_id, scope.record_ids))))}


async def _erase_source_records(session: AsyncSession, scope: Scope) -> dict[str, int]:
    """The source records: standardised columns, raw payloads and stored match features go with the rows."""
    if not scope.record_ids:
        return {"sourceRecords": 0}
    n = _rows(await session.execute(delete(SR).where(any_of(session, SR.c.id, scope.record_ids))))
    per_system = Counter(system for _, _, system, _ in scope.records)
    v = value_rows(session, {"name": (String, list(per_system)), "n": (BigInteger, list(per_system.values()))})
    await session.execute(update(SYSTEM).where(SYSTEM.c.name == v.c.name)
                          .values(record_count=SYSTEM.c.record_count - v.c.n))
    return {"sourceRecords": n}


async def _erase_lineage(session: AsyncSession, scope: Scope) -> dict[str, int]:
    """The lineage of the golden ids: every value and override."""
    return {"lineage": _rows(await session.execute(
        delete(LINEAGE).where(any_of(session, LINEAGE.c.customer_id, scope.customer_ids))))}


async def _erase_candidates(session: AsyncSession, scope: Scope) -> dict[str, int]:
    """Match candidates involving the person (whatever their status), with their explanations and notes."""
    ids = scope.customer_ids
    return {"matchCandidates": _rows(await session.execute(delete(MC).where(
        or_(any_of(session, MC.c.customer_id, ids), any_of(session, MC.c.other_customer_id, ids)))))}


async def _erase_steward_rules(session: AsyncSession, scope: Scope) -> dict[str, int]:
    """Steward rules about the person: they name erased ids only and carry free-text notes."""
    ids = scope.customer_ids
    return {"stewardRules": _rows(await session.execute(delete(RULE).where(
        or_(any_of(session, RULE.c.customer_id, ids), any_of(session, RULE.c.other_customer_id, ids)))))}


async def _erase_own_events(session: AsyncSession, scope: Scope) -> dict[str, int]:
    """The person's own events keep their kind, time and actor; their changes and notes (free text) go."""
    return {"events": _rows(await session.execute(
        update(EVENT).where(any_of(session, EVENT.c.customer_id, scope.customer_ids))
        .values(changes=ERASED_CHANGES, note=None)))}


async def _erase_related_history(session: AsyncSession, scope: Scope) -> dict[str, int]:
    """The person's values in the history of golden records that once held their records."""
    keys = {(system, key) for _, _, system, key in scope.records}
    return {"relatedEvents": await scrub_history(session, scope.related, scope.values, keys)}


def _model_without(model: dict, names: Mapping[str, Counter]) -> dict | None:
    """A stored model's JSON without the term-frequency entries of these names, or None when it has none.

    An entry goes when the name is as rare as the person's own occurrences make it (its frequency at most
    theirs times the table's smallest): a name only they had. A common name is a statistic of many people
    and stays; a missing entry only means no frequency adjustment for that name.
    """
    tables = model.get("term_frequencies") or {}
    changed = {}
    for column, counts in names.items():
        table = tables.get(column) or {}
        hits = [n for n in counts if n in table]
        if not hits:
            continue
        smallest = min(table.values())
        gone = {n for n in hits if table[n] <= smallest * counts[n] * (1 + 1e-9)}
        if gone:
            changed[column] = {k: v for k, v in table.items() if k not in gone}
    if not changed:
        return None
    return {**model, "term_frequencies": {**tables, **changed}}


async def _erase_model_statistics(session: AsyncSession, scope: Scope) -> dict[str, int]:
    """The person's names in the term-frequency tables of stored match models (`hub train` keeps every name)."""
    return {"matchModels": await forget_names(session, scope.standardised)}


async def forget_names(session: AsyncSession, removed: Sequence[Mapping[str, Any]],
                       kept: Sequence[Mapping[str, Any]] = ()) -> int:
    """Take the names of these removed records (standardised values) out of stored models' term frequencies,
    but not names the `kept` records still hold; return how many models changed."""
    def names_of(records: Sequence[Mapping[str, Any]]) -> dict[str, Counter]:
        out: dict[str, Counter] = {column: Counter() for column in TF_COLUMNS}
        for values in records:
            row = features({a: as_text(v) for a, v in values.items()})
            for column in TF_COLUMNS:
                if row.get(column):
                    out[column][row[column]] += 1
        return out

    names, still = names_of(removed), names_of(kept)
    names = {column: Counter({n: c for n, c in counts.items() if n not in still[column]})
             for column, counts in names.items()}
    if not any(names.values()):
        return 0
    updates = []
    for mid, model in await session.execute(select(MODEL.c.id, MODEL.c.model)):
        edited = _model_without(model or {}, names)
        if edited is not None:
            updates.append({"_id": mid, "b_model": edited})
    if updates:
        await session.execute(update(MODEL).where(MODEL.c.id == bindparam("_id"))
                              .values(model=bindparam("b_model")), updates)
    return len(updates)


async def _erase_golden(session: AsyncSession, scope: Scope) -> dict[str, int]:
    """The golden records: every personal column null; the roots ERASED, merged-away ids keep forwarding."""
    empty = {a: None for a in ATTRIBUTES}
    await session.execute(update(CUSTOMER).where(any_of(session, CUSTOMER.c.id, scope.roots)).values(
        status=ERASED, version=CUSTOMER.c.version + 1, updated_at=scope.now, **empty))
    away = [i for i in scope.customer_ids if i not in set(scope.roots)]
    if away:
        await session.execute(update(CUSTOMER).where(any_of(session, CUSTOMER.c.id, away)).values(
            updated_at=scope.now, **empty))
    return {"goldenRecords": len(scope.customer_ids)}


async def _erase_consents(session: AsyncSession, scope: Scope) -> dict[str, int]:
    """Consent: every statement (with its evidence text) and the current state, of the golden ids and records.

    The read audit stays: it holds who read which field of which customer id and when, never a value.
    """
    of_person = [any_of(session, STATEMENT.c.customer_id, scope.customer_ids)]
    if scope.record_ids:
        of_person.append(any_of(session, STATEMENT.c.source_record_id, scope.record_ids))
    statements = delete(STATEMENT).where(or_(*of_person))
    removed = _rows(await session.execute(statements))
    await session.execute(delete(CONSENT).where(any_of(session, CONSENT.c.customer_id, scope.customer_ids)))
    return {"consentStatements": removed}


# Every group of tables that can hold a person's data, erased in this order. A capability that adds such a
# table (consent, read audit, ...) appends its eraser here: an async function (session, scope) -> counts.
ERASERS: list[Eraser] = [
    _erase_blocking_keys,
    _erase_source_records,
    _erase_lineage,
    _erase_candidates,
    _erase_steward_rules,
    _erase_own_events,
    _erase_related_history,
    _erase_model_statistics,
    _erase_consents,
    _erase_golden,
]


# --- gathering ------------------------------------------------------------------------------------------------

def add_value(values: dict[str, set[str]], name: str, value: Any) -> None:
    text = as_text(value) if not isinstance(value, str) else value
    if text:
        values[name].add(text)


def _values_in_changes(changes: Any, values: dict[str, set[str]]) -> None:
    """Collect the attribute values an event's changes hold (fields and override entries)."""
    if not isinstance(changes, dict):
        return
    for key, entry in changes.items():
        if key == "fields" and isinstance(entry, dict):
            for name, value in entry.items():
                for v in (value.values() if isinstance(value, dict) else (value,)):
                    add_value(values, name, v)
        elif isinstance(entry, dict) and "field" in entry and "value" in entry:
            add_value(values, str(entry["field"]), entry["value"])


def _ids_in_changes(changes: Any) -> set[int]:
    """Golden ids an event names as where records came from or went (merges, splits, unmerges)."""
    out: set[int] = set()
    if not isinstance(changes, dict):
        return out
    for key in _RELATED_KEYS:
        value = changes.get(key)
        for v in value if isinstance(value, list) else (value,):
            if isinstance(v, int) and not isinstance(v, bool):
                out.add(v)
    return out


async def gather(session: AsyncSession, roots: Sequence[int], *, actor: str, now: dt.datetime) -> Scope:
    """Read everything the erasure of these golden records touches (reads only, each indexed)."""
    merged: dict[int, list[int]] = defaultdict(list)
    for cid, into in await session.execute(select(CUSTOMER.c.id, CUSTOMER.c.merged_into).where(
            any_of(session, CUSTOMER.c.merged_into, roots))):
        merged[into].append(cid)
    ids = sorted({*roots, *(i for away in merged.values() for i in away)})
    values: dict[str, set[str]] = defaultdict(set)
    golden = []
    for row in await session.execute(select(*(CUSTOMER.c[a] for a in ATTRIBUTES)).where(
            any_of(session, CUSTOMER.c.id, ids))):
        golden.append(dict(zip(ATTRIBUTES, row, strict=True)))
        for a, v in golden[-1].items():
            add_value(values, API_NAME[a], v)
    records, standardised = [], []
    for row in await session.execute(select(SR.c.id, SR.c.customer_id, SR.c.system, SR.c.key, SR.c.raw,
                                            *(SR.c[a] for a in ATTRIBUTES)).where(
            any_of(session, SR.c.customer_id, ids))):
        records.append((row.id, row.customer_id, row.system, row.key))
        std = {a: row._mapping[a] for a in ATTRIBUTES}
        standardised.append(std)
        for a, v in std.items():
            add_value(values, API_NAME[a], v)
        for name, v in (row.raw or {}).items():
            add_value(values, name, v if isinstance(v, str) else str(v))
    for name, value in await session.execute(select(LINEAGE.c.field, LINEAGE.c.value).where(
            any_of(session, LINEAGE.c.customer_id, ids))):
        add_value(values, name, value)
    related: set[int] = set()
    for (changes,) in await session.execute(select(EVENT.c.changes).where(any_of(session, EVENT.c.customer_id, ids))):
        _values_in_changes(changes, values)
        related |= _ids_in_changes(changes)
    for a, b in await session.execute(select(RULE.c.customer_id, RULE.c.other_customer_id).where(
            or_(any_of(session, RULE.c.customer_id, ids), any_of(session, RULE.c.other_customer_id, ids)))):
        related |= {a, b}
    return Scope(roots=list(roots), customer_ids=ids, merged=dict(merged), record_ids=[r[0] for r in records],
                 records=records, values=dict(values), related=sorted(related - set(ids)), golden_values=golden,
                 standardised=standardised, actor=actor, now=now)


# --- scrubbing the history of other golden records --------------------------------------------------------------

def scrub_changes(changes: Any, values: Mapping[str, set[str]], keys: set[tuple[str, str]]) -> Any:
    """An event's changes without these attribute values (nulled) and with these records' keys nulled."""
    if isinstance(changes, list):
        return [scrub_changes(v, values, keys) for v in changes]
    if not isinstance(changes, dict):
        return changes
    out = {}
    for k, entry in changes.items():
        if k == "fields" and isinstance(entry, dict):
            entry = {name: ({s: (None if as_text(x) in values.get(name, ()) else x) for s, x in v.items()}
                            if isinstance(v, dict) else (None if as_text(v) in values.get(name, ()) else v))
                     for name, v in entry.items()}
        elif isinstance(entry, dict) and "field" in entry and "value" in entry:
            entry = scrub_changes(entry, values, keys)
            if as_text(entry["value"]) in values.get(str(entry["field"]), ()):
                entry = {**entry, "value": None}
        else:
            entry = scrub_changes(entry, values, keys)
        out[k] = entry
    if (out.get("system"), out.get("key")) in keys:
        out = {**out, "key": None, "erased": True}
    return out


async def scrub_history(session: AsyncSession, customer_ids: Sequence[int], values: Mapping[str, set[str]],
                        keys: set[tuple[str, str]]) -> int:
    """Remove these values and record keys from the events of these golden records; return events changed.

    Values the golden records still hold themselves (through their own records or steward overrides) are
    kept: two people may share a mailbox, and the other's history is theirs.
    """
    if not customer_ids:
        return 0
    held: dict[str, set[str]] = defaultdict(set)
    for row in await session.execute(select(*(SR.c[a] for a in ATTRIBUTES)).where(
            any_of(session, SR.c.customer_id, customer_ids))):
        for a, v in zip(ATTRIBUTES, row, strict=True):
            add_value(held, API_NAME[a], v)
    for name, value in await session.execute(select(LINEAGE.c.field, LINEAGE.c.value).where(
            any_of(session, LINEAGE.c.customer_id, customer_ids))):
        add_value(held, name, value)
    gone = {name: texts - held.get(name, set()) for name, texts in values.items()}
    gone = {name: texts for name, texts in gone.items() if texts}
    if not gone and not keys:
        return 0
    updates = []
    for eid, changes in await session.execute(select(EVENT.c.id, EVENT.c.changes).where(
            any_of(session, EVENT.c.customer_id, customer_ids))):
        scrubbed = scrub_changes(changes, gone, keys)
        if scrubbed != changes:
            updates.append({"_id": eid, "b_changes": scrubbed})
    if updates:
        await session.execute(update(EVENT).where(EVENT.c.id == bindparam("_id"))
                              .values(changes=bindparam("b_changes")), updates)
    return len(updates)


# --- the erasure ------------------------------------------------------------------------------------------------

async def _root(session: AsyncSession, customer_id: int) -> Any:
    """The golden record an erasure of this id concerns (following a merge), or NOT_FOUND."""
    row = (await session.execute(select(CUSTOMER.c.id, CUSTOMER.c.status, CUSTOMER.c.merged_into)
                                 .where(CUSTOMER.c.id == customer_id))).first()
    if row is not None and row.status == MERGED:
        row = (await session.execute(select(CUSTOMER.c.id, CUSTOMER.c.status, CUSTOMER.c.merged_into)
                                     .where(CUSTOMER.c.id == row.merged_into))).first()
    if row is None or row.status not in (ACTIVE, RETIRED, ERASED):
        raise NotFound(f"no customer {customer_id}")
    return row


async def erase(session: AsyncSession, roots: Sequence[int], *, actor: str, note: str | None, kind: str,
                settings: Settings, tasks: bool, block: bool, now: dt.datetime | None = None) -> Scope:
    """Erase these golden records (live or retired, not merged away) in the caller's transaction."""
    now = now or utcnow()
    scope = await gather(session, roots, actor=actor, now=now)
    ring = keyring(settings) if tasks or block else None
    if tasks and scope.records:
        await bulk_insert(session, TASK, [
            {"customer_id": root_of(scope, cid), "system": system, "key": key, "key_hash": key_hash(ring, system, key),
             "created_at": now} for _, cid, system, key in scope.records])
    if block:
        blocks: set[tuple[int, str, str]] = set()
        for (_, cid, system, key), std in zip(scope.records, scope.standardised, strict=True):
            root = root_of(scope, cid)
            blocks.add((root, KEY_BLOCK, key_hash(ring, system, key)))
            blocks |= {(root, RULE_BLOCK, h) for h in rule_hashes(ring, std, settings.exact_rules)}
        if len(scope.roots) == 1:  # golden values (steward overrides included) block the person too
            for values in scope.golden_values:
                blocks |= {(scope.roots[0], RULE_BLOCK, h) for h in rule_hashes(ring, values, settings.exact_rules)}
        await bulk_insert(session, BLOCK, [{"customer_id": c, "kind": k, "hash": h} for c, k, h in sorted(blocks)])
    counts: dict[str, int] = {}
    for eraser in ERASERS:
        counts.update(await eraser(session, scope))
    per_root = Counter(root_of(scope, cid) for _, cid, _, _ in scope.records)
    await bulk_insert(session, TOMBSTONE, [
        {"customer_id": root, "kind": kind, "erased_at": now, "actor": actor, "note": note,
         "source_records": per_root.get(root, 0), "merged_ids": sorted(scope.merged.get(root, [])),
         "counts": counts if len(scope.roots) == 1 else {"sourceRecords": per_root.get(root, 0)}}
        for root in scope.roots])
    await bulk_insert(session, EVENT, [
        {"customer_id": root, "kind": "ERASED", "at": now, "actor": actor, "note": None,
         "changes": {"reason": kind, "sourceRecords": per_root.get(root, 0),
                     "merged": sorted(scope.merged.get(root, [])), "tasks": per_root.get(root, 0) if tasks else 0}}
        for root in scope.roots])
    return scope


def root_of(scope: Scope, customer_id: int) -> int:
    """The erased golden record a (possibly merged-away) id belongs to."""
    if customer_id in scope.roots:
        return customer_id
    for root, away in scope.merged.items():
        if customer_id in away:
            return root
    return scope.roots[0]


async def erase_customer(*, session: AsyncSession, customer_id: int, actor: str, note: str,
                         settings: Settings) -> int:
    """Erase a customer (any id it ever had) for the right to erasure; return the erased golden id.

    Erasing an erased customer again changes nothing and returns the same id.
    """
    if not (note or "").strip():
        raise BadInput("an erasure needs a note saying why (the request it answers)")
    root = await _root(session, customer_id)
    if root.status == ERASED:
        return root.id
    await erase(session, [root.id], actor=actor, note=note.strip(), kind=ERASURE, settings=settings,
                tasks=True, block=True)
    return root.id


# --- reading tombstones, tasks and blocks -----------------------------------------------------------------------

@dataclass
class Receipt:
    tombstone: Any
    tasks: list[Any]
    blocked: bool


async def receipt(*, session, customer_id: int) -> Receipt | None:
    """The tombstone of an erased customer (any id it ever had) with its tasks, or None."""
    row = (await session.execute(select(CUSTOMER.c.id, CUSTOMER.c.status, CUSTOMER.c.merged_into)
                                 .where(CUSTOMER.c.id == customer_id))).first()
    if row is None:
        return None
    target = row.merged_into if row.status == MERGED else row.id
    tomb = (await session.execute(select(TOMBSTONE).where(TOMBSTONE.c.customer_id == target))).first()
    if tomb is None:
        return None
    tasks = list((await session.execute(select(TASK).where(TASK.c.customer_id == target).order_by(TASK.c.id))).all())
    blocked = (await session.execute(select(BLOCK.c.id).where(BLOCK.c.customer_id == target).limit(1))).first()
    return Receipt(tomb, tasks, blocked is not None)


async def is_erased(session, customer_id: int) -> bool:
    """Tell whether an id belongs to an erased customer (itself or the record it forwards to)."""
    row = (await session.execute(select(CUSTOMER.c.status, CUSTOMER.c.merged_into)
                                 .where(CUSTOMER.c.id == customer_id))).first()
    if row is not None and row.status == MERGED:
        row = (await session.execute(select(CUSTOMER.c.status, CUSTOMER.c.merged_into)
                                     .where(CUSTOMER.c.id == row.merged_into))).first()
    return row is not None and row.status == ERASED


async def lift_block(*, session: AsyncSession, customer_id: int, actor: str, note: str) -> int:
    """Let the erased person's records be registered again (an admin's decision, e.g. a new contract)."""
    if not (note or "").strip():
        raise BadInput("lifting an erasure block needs a note saying why")
    found = await receipt(session=session, customer_id=customer_id)
    if found is None:
        raise NotFound(f"no erasure of customer {customer_id}")
    target = found.tombstone.customer_id
    removed = _rows(await session.execute(delete(BLOCK).where(BLOCK.c.customer_id == target)))
    if removed:
        now = utcnow()
        await session.execute(update(TOMBSTONE).where(TOMBSTONE.c.customer_id == target).values(
            block_lifted_at=now, block_lifted_by=actor, block_lift_note=note.strip()))
        await session.execute(insert(EVENT).values(customer_id=target, kind="ERASURE_BLOCK_LIFTED", at=now,
                                                   actor=actor, note=None, changes={"blocks": removed}))
    return target


async def list_tasks(*, session, system: str | None, open_only: bool | None, first: int,
                     after: int = 0) -> list[Any]:
    """Erasure tasks, oldest first: one system's, or every system's (system None); open, acknowledged or both
    (open_only True, False, None)."""
    stmt = select(TASK).where(TASK.c.id > after)
    if system is not None:
        stmt = stmt.where(TASK.c.system == system)
    if open_only is not None:
        stmt = stmt.where(TASK.c.acknowledged_at.is_(None) if open_only else TASK.c.acknowledged_at.is_not(None))
    return list((await session.execute(stmt.order_by(TASK.c.id).limit(first))).all())


async def overdue_tasks(*, session, days: int, first: int, now: dt.datetime | None = None) -> list[Any]:
    """Open tasks older than `days`, oldest first: which sources still hold an erased person."""
    if days < 0:
        raise BadInput("days must not be negative")
    cutoff = (now or utcnow()) - dt.timedelta(days=days)
    return list((await session.execute(select(TASK).where(TASK.c.acknowledged_at.is_(None),
                                                          TASK.c.created_at < cutoff)
                                       .order_by(TASK.c.created_at, TASK.c.id).limit(first))).all())


async def acknowledge_task(*, session: AsyncSession, task_id: int, system: str | None, actor: str,
                           note: str | None = None) -> int:
    """A source confirms it erased the key: the key is reduced to its keyed hash. Only its own system's tasks.

    Acknowledging again changes nothing. A task of another system is NOT_FOUND to a source.
    """
    row = (await session.execute(select(TASK.c.id, TASK.c.system, TASK.c.acknowledged_at)
                                 .where(TASK.c.id == task_id))).first()
    if row is None or (system is not None and row.system != system):
        raise NotFound(f"no erasure task {task_id}")
    if row.acknowledged_at is None:
        await session.execute(update(TASK).where(TASK.c.id == task_id).values(
            key=None, acknowledged_at=utcnow(), acknowledged_by=actor, note=(note or "").strip() or None))
    return task_id


def task_due(created_at: dt.datetime, days: int) -> dt.datetime:
    """When a task becomes overdue."""
    return created_at + dt.timedelta(days=days)


__all__ = ["ERASERS", "Eraser", "Receipt", "Scope", "acknowledge_task", "erase", "erase_customer", "forget_names", "gather",
           "is_erased", "lift_block", "list_tasks", "overdue_tasks", "receipt", "scrub_history", "task_due"]
