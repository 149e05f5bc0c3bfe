"""Write operations: each is one unit of work in the hub, then the answer is read back."""
from __future__ import annotations

import datetime as dt

import strawberry

from authz import Access
from hub.errors import BadInput, Forbidden, NotFound
from hub.golden.attributes import STORAGE_NAME
from hub.privacy.consent import Statement, set_consent
from hub.ingest.records import RecordInput, delete_record, register_batch
from hub.steward.stewardship import merge_customers, override_attribute, resolve_candidate, split_record, unmerge_customer
from hub.ingest.systems import register_system
from hub.db import in_own_loop
from schema.errors import operation
from schema.queries import check_system, parse_id
from schema.types import (
    Customer, FieldError, MatchCandidate, MatchDecision, RegistrationAction, RegistrationResult, SourceRecordInput,
    SourceSystem, SourceSystemInput,
)


def check_writable(info: strawberry.Info, type_name: str, fields: set[str]) -> None:
    """Refuse writing fields the caller may not write, or may not read in clear (a write would be an oracle)."""
    ctx = info.context
    refused = sorted(f for f in fields if not ctx.services.authorizer.may_write(ctx.principal.role, type_name, f))
    if refused:
        raise Forbidden(f"role {ctx.principal.role!r} may not write {', '.join(f'{type_name}.{f}' for f in refused)}"
                        " (writing a field needs reading it in clear)")


async def _customer(info: strawberry.Info, customer_id: int) -> Customer:
    row = await info.context.loaders.customer.load(customer_id)
    if row is None:  # a customer the caller's consent purposes hide: as if it did not exist
        raise NotFound(f"no customer {customer_id}")
    return Customer(row=row)


INLINE_BATCH = 50  # records a registerRecords call may have for it to run on the event loop


@strawberry.type
class Mutation:
    @strawberry.field
    @operation
    async def register_source_system(self, info: strawberry.Info, input: SourceSystemInput) -> SourceSystem:
        async with info.context.db.write() as session:
            row = await register_system(session=session, name=input.name, description=input.description,
                                        date_order=input.date_order.value, default_country=input.default_country,
                                        trust=input.trust, actor=info.context.principal.subject,
                                        retention_days=input.retention_days)
        return SourceSystem(row=row)

    @strawberry.field(description="Insert or update records of one system (1 to 5000 per call); "
                                  "each is matched as it arrives.")
    @operation
    async def register_records(self, info: strawberry.Info, system: str,
                               records: list[SourceRecordInput]) -> list[RegistrationResult]:
        check_system(info, system)
        ctx = info.context
        inputs = [RecordInput(r.key, r.attributes.raw(), r.updated_at,
                              [Statement(c.purpose, c.granted, c.at, c.evidence) for c in r.consents or ()])
                  for r in records]
        check_writable(info, "SourceRecord", {name for r in inputs for name in r.attributes})
        if ctx.access("RegistrationResult", "action") is Access.DENY:
            # refused before writing: a batch stored but answered with an error would be sent again
            raise Forbidden(f"role {ctx.principal.role!r} may not read RegistrationResult.action, so it may not "
                            "register records (the policy should allow read or read-masked)")

        def register(db):
            return register_batch(db=db, system=system, records=inputs, actor=ctx.principal.subject,
                                  settings=ctx.services.settings, scorer=ctx.services.scorer)

        # a big batch is seconds of Python: in a thread of its own, the event loop keeps serving meanwhile
        results = await (in_own_loop(ctx.db, register) if len(inputs) > INLINE_BATCH else register(ctx.db))
        return [RegistrationResult(key=r.key, outcome=RegistrationAction(r.action), customer_id=r.customer_id,
                                   probability=r.probability,
                                   errors=[FieldError(field=e.field, message=e.message, code=e.code) for e in r.errors])
                for r in results]

    @strawberry.field(description="The record leaves the hub; its golden record is recomputed, or retired "
                                  "when it has no records left.")
    @operation
    async def delete_source_record(self, info: strawberry.Info, system: str, key: str) -> Customer | None:
        check_system(info, system)
        async with info.context.db.write() as session:
            customer_id = await delete_record(session=session, system=system, key=key,
                                              actor=info.context.principal.subject)
        if not info.context.allowed("SourceRecord", "customer", info.path):
            # refused whether or not the golden record lives on: a null alone would tell whether other
            # records share it
            return None
        if customer_id is None:
            return None
        row = await info.context.loaders.customer.load(customer_id)
        return Customer(row=row) if row is not None else None


    @strawberry.field
    @operation
    async def resolve_match_candidate(self, info: strawberry.Info, id: strawberry.ID, decision: MatchDecision,
                                      note: str | None = None,
                                      expected_version: int | None = None) -> MatchCandidate:
        ctx = info.context
        async with ctx.db.write() as session:
            cid = await resolve_candidate(session=session, candidate_id=parse_id(id, "match candidate id"), decision=decision.value,
                                          actor=ctx.principal.subject, note=note, expected_version=expected_version)
        return MatchCandidate(row=await ctx.loaders.candidate.load(cid))

    @strawberry.field(description="Merge golden records into the first one; the others resolve to it from now on.")
    @operation
    async def merge_customers(self, info: strawberry.Info, ids: list[strawberry.ID], note: str | None = None,
                              expected_versions: list[int] | None = None) -> Customer:
        ctx = info.context
        async with ctx.db.write() as session:
            survivor = await merge_customers(session=session, ids=[parse_id(i) for i in ids],
                                             actor=ctx.principal.subject, note=note,
                                             expected_versions=expected_versions)
        return await _customer(info, survivor)

    @strawberry.field(description="Unmerge: move one source record out to a golden record of its own (returned); "
                                  "the hub remembers not to link them again.")
    @operation
    async def split_source_record(self, info: strawberry.Info, system: str, key: str, note: str | None = None,
                                  expected_version: int | None = None) -> Customer:
        ctx = info.context
        async with ctx.db.write() as session:
            new_id = await split_record(session=session, system=system, key=key, actor=ctx.principal.subject,
                                        note=note, expected_version=expected_version)
        return await _customer(info, new_id)

    @strawberry.field(description="Undo a merge: a merged-away golden record comes back, with the source records "
                                  "it had, under its own id; the hub remembers the two differ.")
    @operation
    async def unmerge_customer(self, info: strawberry.Info, id: strawberry.ID, note: str | None = None) -> Customer:
        ctx = info.context
        async with ctx.db.write() as session:
            revived = await unmerge_customer(session=session, customer_id=parse_id(id), actor=ctx.principal.subject,
                                             note=note)
        return await _customer(info, revived)

    @strawberry.field(description="A steward's value for one attribute, kept until cleared with value null.")
    @operation
    async def override_attribute(self, info: strawberry.Info, customer_id: strawberry.ID, field: str,
                                 value: str | None, note: str, expected_version: int | None = None) -> Customer:
        ctx = info.context
        if field not in STORAGE_NAME:  # before asking the policy: junk names must not grow its memo
            raise BadInput(f"unknown attribute {field!r}; use one of {', '.join(STORAGE_NAME)}")
        check_writable(info, "Customer", {field})
        async with ctx.db.write() as session:
            cid = await override_attribute(session=session, customer_id=parse_id(customer_id), field=field,
                                           value=value, actor=ctx.principal.subject, note=note,
                                           expected_version=expected_version)
        return await _customer(info, cid)

    @strawberry.field(description="Record that a customer granted (granted: true) or withdrew (false) consent to one "
                                  "purpose; kept in the consent history. A statement that changes nothing, or is "
                                  "older than the consent held, is not stored. Admins and stewards by default.")
    @operation
    async def set_consent(self, info: strawberry.Info, customer_id: strawberry.ID, purpose: str, granted: bool,
                          evidence: str | None = None, at: dt.datetime | None = None) -> Customer:
        ctx = info.context
        async with ctx.db.write() as session:
            cid = await set_consent(session=session, customer_id=parse_id(customer_id),
                                    statement=Statement(purpose, granted, at, evidence),
                                    purposes=ctx.services.settings.consent_purposes, actor=ctx.principal.subject)
        return await _customer(info, cid)
