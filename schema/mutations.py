"""Write operations: each is one unit of work in the hub, then the answer is read back."""
from __future__ import annotations

import strawberry

from hub.records import RecordInput, delete_record, register_batch
from hub.systems import register_system
from schema.errors import operation
from schema.queries import check_system
from schema.types import (
    Customer, FieldError, RegistrationAction, RegistrationResult, SourceRecordInput, SourceSystem, SourceSystemInput,
)


@strawberry.type
class Mutation:
    @strawberry.field
    @operation
    async def register_source_system(self, info: strawberry.Info, input: SourceSystemInput) -> SourceSystem:
        async with info.context.db.write() as session:
            row = await register_system(session=session, name=input.name, description=input.description,
                                        date_order=input.date_order.value, default_country=input.default_country,
                                        trust=input.trust, actor=info.context.principal.subject)
        return SourceSystem(row=row)

    @strawberry.field(description="Insert or update records of one system (1 to 5000 per call); "
                                  "each is matched as it arrives.")
    @operation
    async def register_records(self, info: strawberry.Info, system: str,
                               records: list[SourceRecordInput]) -> list[RegistrationResult]:
        check_system(info, system)
        ctx = info.context
        inputs = [RecordInput(r.key, r.attributes.raw(), r.updated_at) for r in records]
        results = await register_batch(db=ctx.db, system=system, records=inputs, actor=ctx.principal.subject,
                                       settings=ctx.services.settings, scorer=ctx.services.scorer)
        return [RegistrationResult(key=r.key, action=RegistrationAction(r.action), customer_id=r.customer_id,
                                   match_probability=r.probability,
                                   errors=[FieldError(field=e.field, message=e.message) for e in r.errors])
                for r in results]

    @strawberry.field(description="The record leaves the hub; its golden record is recomputed, or retired "
                                  "when it has no records left.")
    @operation
    async def delete_source_record(self, info: strawberry.Info, system: str, key: str) -> Customer | None:
        check_system(info, system)
        async with info.context.db.write() as session:
            customer_id = await delete_record(session=session, system=system, key=key,
                                              actor=info.context.principal.subject)
        if customer_id is None:
            return None
        row = await info.context.loaders.customer.load(customer_id)
        return Customer(row=row) if row is not None else None
