"""Per-request DataLoaders: a page of customers with records, lineage and history is a handful of queries."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, func, select
from strawberry.dataloader import DataLoader

from hub.db import Reads, cooperate
from hub.models import ACTIVE, MERGED, Customer, Event, Lineage, MatchCandidate, SourceRecord
from hub.privacy.consent import current_query, history_query, visible

CUSTOMER, SR, LINEAGE, EVENT, MC = (Customer.__table__, SourceRecord.__table__, Lineage.__table__, Event.__table__,
                                   MatchCandidate.__table__)


class CooperativeLoader(DataLoader):
    """A DataLoader whose callers resume in slices (see `cooperate`)."""

    def load(self, key: Any) -> Any:
        # the key joins the current batch now, as with DataLoader; only the caller's resumption is sliced
        return _resume(super().load(key))


async def _resume(future: Any) -> Any:
    value = await future
    await cooperate()
    return value


class Loaders:
    """The loaders of one request, reading through the request's connection."""

    def __init__(self, reads: Reads, purposes: frozenset[str] = frozenset()) -> None:
        self.reads = reads
        # a caller bound to consent purposes: a golden record that has not granted them all is not found
        self._visible = visible(CUSTOMER.c.id, purposes)
        self.customer = CooperativeLoader(self._customers)
        self.consents_of = CooperativeLoader(self._consents_of)
        self.consent_history_of = CooperativeLoader(self._consent_history_of)
        self.records_of = CooperativeLoader(self._records_of)
        self.record = CooperativeLoader(self._records)
        self.lineage_of = CooperativeLoader(self._lineage_of)
        self.history = CooperativeLoader(self._history)
        self.candidate = CooperativeLoader(self._candidates)

    async def _rows(self, stmt, params: dict[str, Any]) -> list[Any]:
        return await self.reads.all(stmt, params)

    async def _customers(self, ids: Sequence[int]) -> list[Any]:
        """Live golden records by id; a merged-away id gives its survivor, a retired one None, and so does one
        the caller's consent purposes hide (exactly as if it did not exist)."""
        columns = [CUSTOMER] if self._visible is None else [CUSTOMER, self._visible.label("visible")]
        stmt = select(*columns).where(CUSTOMER.c.id.in_(bindparam("ids", expanding=True)))
        found = {r.id: r for r in await self._rows(stmt, {"ids": list(ids)})}
        forward = {r.merged_into for r in found.values() if r.status == MERGED and r.merged_into not in found}
        if forward:
            found |= {r.id: r for r in await self._rows(stmt, {"ids": list(forward)})}
        out = []
        for i in ids:
            row = found.get(i)
            if row is not None and row.status == MERGED:
                row = found.get(row.merged_into)
            live = row is not None and row.status == ACTIVE and (self._visible is None or row.visible)
            out.append(row if live else None)
        return out

    async def _consents_of(self, customer_ids: Sequence[int]) -> list[list[Any]]:
        by: dict[int, list] = defaultdict(list)
        for r in await self._rows(current_query(list(customer_ids)), {}):
            by[r.customer_id].append(r)
        return [by.get(i, []) for i in customer_ids]

    async def _consent_history_of(self, customer_ids: Sequence[int]) -> list[list[Any]]:
        by: dict[int, list] = defaultdict(list)
        for r in await self._rows(history_query(list(customer_ids)), {}):
            by[r.customer_id].append(r)
        return [by.get(i, []) for i in customer_ids]

    async def _candidates(self, ids: Sequence[int]) -> list[Any]:
        stmt = select(MC).where(MC.c.id.in_(bindparam("ids", expanding=True)))
        found = {r.id: r for r in await self._rows(stmt, {"ids": list(ids)})}
        return [found.get(i) for i in ids]

    async def _records_of(self, customer_ids: Sequence[int]) -> list[list[Any]]:
        stmt = (select(SR).where(SR.c.customer_id.in_(bindparam("ids", expanding=True))).order_by(SR.c.id))
        by: dict[int, list] = defaultdict(list)
        for r in await self._rows(stmt, {"ids": list(customer_ids)}):
            by[r.customer_id].append(r)
        return [by.get(i, []) for i in customer_ids]

    async def _records(self, ids: Sequence[int]) -> list[Any]:
        stmt = select(SR).where(SR.c.id.in_(bindparam("ids", expanding=True)))
        found = {r.id: r for r in await self._rows(stmt, {"ids": list(ids)})}
        return [found.get(i) for i in ids]

    async def _lineage_of(self, customer_ids: Sequence[int]) -> list[list[Any]]:
        stmt = (select(LINEAGE).where(LINEAGE.c.customer_id.in_(bindparam("ids", expanding=True)))
                .order_by(LINEAGE.c.customer_id, LINEAGE.c.field))
        by: dict[int, list] = defaultdict(list)
        for r in await self._rows(stmt, {"ids": list(customer_ids)}):
            by[r.customer_id].append(r)
        return [by.get(i, []) for i in customer_ids]

    async def _history(self, keys: Sequence[tuple[int, int]]) -> list[list[Any]]:
        """The first N events of each golden record, oldest first: keys are (customer id, N)."""
        limit = max(n for _, n in keys)
        ranked = select(EVENT, func.row_number().over(partition_by=EVENT.c.customer_id, order_by=EVENT.c.id)
                        .label("n")).where(EVENT.c.customer_id.in_(bindparam("ids", expanding=True))).subquery()
        stmt = select(ranked).where(ranked.c.n <= limit).order_by(ranked.c.customer_id, ranked.c.id)
        by: dict[int, list] = defaultdict(list)
        for r in await self._rows(stmt, {"ids": list({c for c, _ in keys})}):
            by[r.customer_id].append(r)
        return [by.get(c, [])[:n] for c, n in keys]
