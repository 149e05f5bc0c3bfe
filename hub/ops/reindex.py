"""`hub reindex`: recompute the stored blocking keys of every source record.

A record's blocking keys are stored when it is registered (`blocking_key`), by the key definitions
of that day (`matching.blocking`). When the definitions change, stored records keep their old keys
and real-time matching finds them only through keys both versions share; `hub rematch` is not
affected (it derives keys afresh). This walks the records in id order, in batches, each batch one
write transaction under the hub's write lock (so a registration running meanwhile is never
overwritten by keys computed from the values it replaced): read the batch's standardised columns and
stored keys, derive the keys exactly as registration does, and rewrite the keys of the records whose
key set differs. A second run writes nothing.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, func, select

from hub.ingest.blocking import BK, SR
from hub.db import Database, any_of, bulk_insert
from hub.ingest.matcher import matching_view
from hub.privacy.sealing import sealer
from matching.blocking import keys_from_features
from matching.features import ATTRIBUTES, features


@dataclass
class ReindexResult:
    records: int = 0           # records read
    changed: int = 0           # records whose key set was rewritten
    keys_before: int = 0       # stored keys of all records read, before
    keys_after: int = 0        # and after
    keys_deleted: int = 0
    keys_inserted: int = 0


async def reindex_keys(db: Database, *, batch: int = 2000,
                       progress: Callable[[str, int, int | None], None] | None = None) -> ReindexResult:
    """Recompute every record's blocking keys from its standardised columns; rewrite the ones that differ."""
    result = ReindexResult()
    async with db.session() as session:
        total = (await session.execute(select(func.count()).select_from(SR))).scalar_one()
    last = 0
    while True:
        async with db.write() as session:
            rows = (await session.execute(
                select(SR.c.id, *(SR.c[a] for a in ATTRIBUTES)).where(SR.c.id > last)
                .order_by(SR.c.id).limit(batch))).all()
            if not rows:
                break
            ids = [r.id for r in rows]
            stored: dict[int, set[str]] = {rid: set() for rid in ids}
            of_batch = any_of(session, BK.c.source_record_id, ids)
            for rid, key in await session.execute(select(BK.c.source_record_id, BK.c.key).where(of_batch)):
                stored[rid].add(key)
            # exactly what registration derives (hub.ingest.matcher.ModelScorer.prepare), from the stored columns
            seal = sealer()
            wanted = {r.id: seal.block_keys(keys_from_features(features(matching_view(r._mapping)))) for r in rows}
            changed = [rid for rid in ids if wanted[rid] != stored[rid]]
            if changed:
                await session.execute(delete(BK).where(any_of(session, BK.c.source_record_id, changed)))
                await bulk_insert(session, BK, [{"key": k, "source_record_id": rid}
                                                for rid in changed for k in sorted(wanted[rid])])
            result.records += len(ids)
            result.changed += len(changed)
            result.keys_before += sum(map(len, stored.values()))
            result.keys_after += sum(map(len, wanted.values()))
            result.keys_deleted += sum(len(stored[rid]) for rid in changed)
            result.keys_inserted += sum(len(wanted[rid]) for rid in changed)
        last = ids[-1]
        if progress is not None:
            progress("reindex", result.records, max(total, result.records))
    return result
