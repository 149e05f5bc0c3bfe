"""Subject access (GDPR Art. 15): everything the hub holds on one person, as one JSON document and a summary.

The person is a golden record; an id merged away resolves to the surviving golden record, and the
report then covers the survivor and every golden record merged into it (their history, candidates,
decisions, consents and read audit). A retired golden record is reported too: the hub still holds it.
About a dozen indexed statements, whatever the size of the hub.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.errors import NotFound
from hub.golden.attributes import API_NAME, ATTRIBUTES, as_text
from hub.models import (
    MERGED, Customer, Event, Lineage, MatchCandidate, SourceRecord, StewardRule, utcnow,
)
from hub.privacy.audit import Read, reads_query
from hub.privacy.consent import current_query, history_query

CUSTOMER, SR, LINEAGE, EVENT, MC, RULE = (Customer.__table__, SourceRecord.__table__, Lineage.__table__,
                                          Event.__table__, MatchCandidate.__table__, StewardRule.__table__)
FORMAT = "hub-subject-access/1"


@dataclass
class SubjectReport:
    customer_id: int
    document: dict[str, Any]
    summary: str
    reads: list[Read]  # the sensitive values the document discloses (for the read audit)


def _json(value: Any) -> Any:
    """Make a stored value JSON-ready (timestamps and dates as ISO 8601)."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value


def _attributes(row: Any) -> dict[str, Any]:
    return {API_NAME[a]: as_text(getattr(row, a)) for a in ATTRIBUTES}


async def resolve(session: AsyncSession, customer_id: int) -> Any:
    """The golden record an id names (a merged-away id: its survivor), whatever its status; or NOT_FOUND."""
    row = (await session.execute(select(CUSTOMER).where(CUSTOMER.c.id == customer_id))).first()
    if row is not None and row.status == MERGED and row.merged_into is not None:
        row = (await session.execute(select(CUSTOMER).where(CUSTOMER.c.id == row.merged_into))).first()
    if row is None:
        raise NotFound(f"no customer {customer_id}")
    return row


async def subject_access(*, session: AsyncSession, customer_id: int,
                         sensitive: Collection[str] = ("nationalId", "dateOfBirth")) -> SubjectReport:
    """Gather everything held on the person behind `customer_id`.

    `sensitive`: attribute names (API) whose disclosure the read audit records; the report lists them in
    `reads`, for the caller to audit.
    """
    golden = await resolve(session, customer_id)
    merged = [r.id for r in await session.execute(select(CUSTOMER.c.id).where(CUSTOMER.c.merged_into == golden.id)
                                                  .order_by(CUSTOMER.c.id))]
    family = [golden.id, *merged]

    records = (await session.execute(select(SR).where(SR.c.customer_id == golden.id).order_by(SR.c.id))).all()
    by_id = {r.id: r for r in records}
    lineage = (await session.execute(select(LINEAGE).where(LINEAGE.c.customer_id == golden.id)
                                     .order_by(LINEAGE.c.field))).all()
    events = (await session.execute(select(EVENT).where(EVENT.c.customer_id.in_(family))
                                    .order_by(EVENT.c.at, EVENT.c.id))).all()
    consents = (await session.execute(current_query(family))).all()
    statements = (await session.execute(history_query(family))).all()
    candidates = (await session.execute(select(MC).where(or_(MC.c.customer_id.in_(family),
                                                             MC.c.other_customer_id.in_(family)))
                                        .order_by(MC.c.id))).all()
    rules = (await session.execute(select(RULE).where(or_(RULE.c.customer_id.in_(family),
                                                          RULE.c.other_customer_id.in_(family)))
                                   .order_by(RULE.c.id))).all()
    reads = (await session.execute(reads_query(family))).all()
    missing = {lin.source_record_id for lin in lineage if lin.source_record_id is not None} - set(by_id)
    if missing:  # lineage naming a record that moved since: still say where the value came from
        by_id |= {r.id: r for r in await session.execute(select(SR).where(SR.c.id.in_(sorted(missing))))}

    def ref(record_id: int | None) -> dict[str, str] | None:
        r = by_id.get(record_id) if record_id is not None else None
        return {"system": r.system, "key": r.key} if r is not None else None

    document = {
        "format": FORMAT,
        "generatedAt": utcnow().isoformat(),
        "requestedId": str(customer_id),
        "customer": {"id": str(golden.id), "status": golden.status, "version": golden.version,
                     "createdAt": _json(golden.created_at), "updatedAt": _json(golden.updated_at),
                     "mergedIds": [str(i) for i in merged], "attributes": _attributes(golden)},
        "sourceRecords": [{"system": r.system, "key": r.key, "receivedAt": _json(r.received_at),
                           "updatedAt": _json(r.updated_at), "raw": _json(r.raw), "standardised": _attributes(r)}
                          for r in records],
        "lineage": [{"field": lin.field, "value": lin.value, "rule": lin.rule, "sourceRecord": ref(lin.source_record_id),
                     "actor": lin.actor} for lin in lineage],
        "history": [{"customerId": str(e.customer_id), "kind": e.kind, "at": _json(e.at), "actor": e.actor,
                     "note": e.note, "changes": _json(e.changes)} for e in events],
        "consents": [{"purpose": c.purpose, "granted": c.granted, "at": _json(c.at), "source": c.system,
                      "actor": c.actor, "evidence": c.evidence} for c in consents],
        "consentHistory": [{"purpose": s.purpose, "granted": s.granted, "at": _json(s.at), "source": s.system,
                            "actor": s.actor, "evidence": s.evidence, "recordedAt": _json(s.recorded_at)}
                           for s in statements],
        "matchCandidates": [{"id": str(c.id), "customerId": str(c.customer_id),
                             "otherCustomerId": str(c.other_customer_id), "matchProbability": c.probability,
                             "status": c.status, "explanation": _json(c.explanation), "createdAt": _json(c.created_at),
                             "resolvedBy": c.resolved_by, "resolvedAt": _json(c.resolved_at), "note": c.note}
                            for c in candidates],
        "stewardDecisions": [{"kind": r.kind, "customerId": str(r.customer_id),
                              "otherCustomerId": str(r.other_customer_id), "sourceRecord": ref(r.source_record_id),
                              "active": r.active, "actor": r.actor, "at": _json(r.at), "note": r.note}
                             for r in rules],
        "sensitiveReads": [{"at": _json(a.at), "subject": a.subject, "role": a.role, "customerId": str(a.customer_id),
                            "field": a.field, "via": a.via, "masked": a.masked, "requestId": a.request_id}
                           for a in reads],
    }
    disclosed = [Read(golden.id, API_NAME[a], "SubjectAccess", False) for a in ATTRIBUTES
                 if API_NAME[a] in sensitive and (getattr(golden, a) is not None
                                                  or any(getattr(r, a) is not None for r in records))]
    return SubjectReport(golden.id, document, summary(document), disclosed)


def summary(doc: dict[str, Any]) -> str:
    """A readable account of a subject access document (Markdown)."""
    c = doc["customer"]
    lines = [f"# What the customer hub holds on customer {c['id']}", "",
             f"Report generated {doc['generatedAt']} for the request about id {doc['requestedId']}."]
    if c["mergedIds"]:
        lines.append(f"Golden records {', '.join(c['mergedIds'])} were merged into {c['id']}; they are covered too.")
    lines += ["", f"Status: {c['status']}, version {c['version']}, held since {c['createdAt']}, "
                  f"last changed {c['updatedAt']}.", "", "## Golden record", "", "| attribute | value |",
              "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in c["attributes"].items() if v is not None]
    systems = Counter(r["system"] for r in doc["sourceRecords"])
    lines += ["", f"## Source records ({len(doc['sourceRecords'])})", ""]
    lines += [f"- {r['system']} / {r['key']}: received {r['receivedAt']}, updated {r['updatedAt']}"
              for r in doc["sourceRecords"]]
    if systems:
        lines += ["", "Systems holding this person: " + ", ".join(f"{s} ({n})" for s, n in sorted(systems.items()))]
    lines += ["", "## Consents", ""]
    lines += [f"- {x['purpose']}: {'granted' if x['granted'] else 'withdrawn'} on {x['at']}"
              f"{' via ' + x['source'] if x['source'] else ''}" for x in doc["consents"]] or ["- none recorded"]
    if doc["consentHistory"]:
        lines.append(f"- {len(doc['consentHistory'])} consent statements in all (see consentHistory)")
    lines += ["", "## History", "", f"{len(doc['history'])} events: " + ", ".join(
        f"{k} x{n}" for k, n in Counter(e["kind"] for e in doc["history"]).items())]
    lines += ["", "## Matching and steward decisions", "",
              f"- {len(doc['matchCandidates'])} match candidates "
              f"({', '.join(f'{s} {n}' for s, n in Counter(m['status'] for m in doc['matchCandidates']).items()) or 'none'})",
              f"- {len(doc['stewardDecisions'])} steward decisions"]
    lines += ["", "## Who read sensitive fields", ""]
    readers = Counter((a["subject"], a["role"], a["field"], a["masked"]) for a in doc["sensitiveReads"])
    lines += [f"- {s} ({r}) read {f}{' masked' if m else ''} {n} time{'s' if n > 1 else ''}"
              for (s, r, f, m), n in sorted(readers.items())] or ["- nobody"]
    return "\n".join(lines) + "\n"
