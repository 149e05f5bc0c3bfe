"""The blocking-key index: how real-time matching finds candidates without scanning a table."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.models import BlockingKey, SourceRecord

BK = BlockingKey.__table__
SR = SourceRecord.__table__
MAX_CANDIDATES = 20_000  # a guard: a batch never pulls more stored records than this into memory
# a key shared by more records than this says little (a family mailbox of a call centre, a default phone):
# it is skipped, as the batch re-match skips it
MAX_KEY_GROUP = 300


async def records_with_keys(session: AsyncSession, keys: Iterable[str], columns: Sequence[Any]) -> list[Any]:
    """Return stored records sharing any of these blocking keys."""
    keys = list(keys)
    found: dict[int, Any] = {}
    for start in range(0, len(keys), 10_000):  # stay far below the drivers' bind-parameter limits
        wanted = BK.c.key.in_(bindparam("k", expanding=True))
        heavy = select(BK.c.key).where(wanted).group_by(BK.c.key).having(func.count() > MAX_KEY_GROUP)
        ids = select(BK.c.source_record_id).where(wanted, BK.c.key.not_in(heavy))
        rows = await session.execute(select(*columns).where(SR.c.id.in_(ids)).limit(MAX_CANDIDATES),
                                     {"k": keys[start:start + 10_000]})
        for row in rows:
            found[row.id] = row
    return list(found.values())


async def replace_keys(session: AsyncSession, keys_by_record: Mapping[int, Iterable[str]]) -> None:
    """Store the blocking keys of these records, replacing what they had."""
    await delete_keys(session, list(keys_by_record))
    rows = [{"key": k, "source_record_id": rid} for rid, keys in keys_by_record.items() for k in sorted(set(keys))]
    if rows:
        await session.execute(insert(BK), rows)


async def delete_keys(session: AsyncSession, record_ids: Sequence[int]) -> None:
    """Forget the blocking keys of these records."""
    if record_ids:
        await session.execute(delete(BK).where(BK.c.source_record_id.in_(bindparam("ids", expanding=True))),
                              {"ids": list(record_ids)})
