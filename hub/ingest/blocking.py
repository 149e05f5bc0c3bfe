"""The blocking-key index: how real-time matching finds candidates without scanning a table."""
from __future__ import annotations

import json

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import bindparam, delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from hub.db import any_of, bulk_insert
from hub.models import BlockingKey, SourceRecord

BK = BlockingKey.__table__
SR = SourceRecord.__table__
MAX_CANDIDATES = 50_000  # a guard: a batch never pulls more stored records than this into memory
# a key shared by more records than this says little (a family mailbox of a call centre, a default phone):
# it is skipped, as the batch re-match skips it
MAX_KEY_GROUP = 300


async def candidate_keys(session: AsyncSession, keys: Iterable[str]) -> dict[int, set[str]]:
    """Stored records sharing any of these blocking keys, with the keys they share.

    Keys held by more than MAX_KEY_GROUP records are skipped: they say little, and the batch
    re-match skips them too.
    """
    keys = sorted(set(keys))
    if not keys:
        return {}
    if session.bind.dialect.name == "postgresql":
        rows = await session.execute(_PG_PAIRS, {"keys": keys, "probe": MAX_KEY_GROUP + 1})
    else:
        # SQLite: the keys travel as one JSON parameter (a batch can hold more keys than SQLite takes parameters)
        listed = select(func.json_each(json.dumps(keys)).table_valued("value").c.value).scalar_subquery()
        rows = await session.execute(select(BK.c.key, BK.c.source_record_id).where(BK.c.key.in_(listed)))
    by_key: dict[str, list[int]] = {}
    for key, rid in rows:
        by_key.setdefault(key, []).append(rid)
    found: dict[int, set[str]] = {}
    for key, rids in by_key.items():
        if len(rids) <= MAX_KEY_GROUP:
            for rid in rids:
                found.setdefault(rid, set()).add(key)
    return dict(list(found.items())[:MAX_CANDIDATES])


def id_condition(session: AsyncSession, ids: Sequence[int]) -> Any:
    """`source_record.id IN ids` as one parameter, however many ids."""
    return any_of(session, SR.c.id, ids)


# One index probe per key, at most MAX_KEY_GROUP + 1 rows each, whatever the planner believes about the
# table: a bulk load outruns autovacuum's statistics, and a hash join over a stale estimate scans it all.
_PG_PAIRS = text("""
    SELECT k.key, b.source_record_id
    FROM unnest(CAST(:keys AS text[])) AS k(key)
    CROSS JOIN LATERAL (SELECT bk.source_record_id FROM blocking_key bk WHERE bk.key = k.key
                        LIMIT :probe) AS b
""")


async def replace_keys(session: AsyncSession, keys_by_record: Mapping[int, Iterable[str]],
                       stored: Sequence[int] = ()) -> None:
    """Store the blocking keys of these records, replacing what the already stored ones had."""
    await delete_keys(session, list(stored))
    await bulk_insert(session, BK, [{"key": k, "source_record_id": rid}
                                    for rid, keys in keys_by_record.items() for k in keys])


async def delete_keys(session: AsyncSession, record_ids: Sequence[int]) -> None:
    """Forget the blocking keys of these records."""
    if record_ids:
        await session.execute(delete(BK).where(BK.c.source_record_id.in_(bindparam("ids", expanding=True))),
                              {"ids": list(record_ids)})
