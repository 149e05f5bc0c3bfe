"""GraphQL types of the contract, resolved from stored rows with per-field access control."""
from __future__ import annotations

import base64
import datetime as dt
import enum
import re
from collections.abc import Callable, Iterable
from types import SimpleNamespace
from typing import Annotated, Any, Optional

import strawberry
from graphql import FieldNode
from strawberry.scalars import JSON

from authz import Access, mask
from schema.context import FieldForbidden
from hub.errors import BadInput
from hub.validation import parse_id, shown
from schema.errors import PER_RECORD
from hub.golden.attributes import API_NAME, ATTRIBUTES, STORAGE_NAME, as_text
from hub.privacy.sealing import sealer


def encode_cursor(kind: str, value: int) -> str:
    """Make an opaque cursor from a row id."""
    return base64.urlsafe_b64encode(f"{kind}:{value}".encode()).decode()


def _row_id(value: str) -> int:
    return parse_id(value, "cursor")


def decode_cursor(kind: str, cursor: str | None, parse: Callable[[str], Any] = _row_id, start: Any = 0) -> Any:
    """Read a cursor made by encode_cursor (its value through `parse`); None gives `start`."""
    if not cursor:
        return start
    try:
        k, v = base64.urlsafe_b64decode(cursor.encode()).decode().split(":", 1)
        if k != kind:
            raise ValueError(k)
        return parse(v)
    except (ValueError, UnicodeError, BadInput):
        raise BadInput(f"invalid cursor {shown(cursor)}: pass a cursor this field returned") from None


@strawberry.enum
class DateOrder(enum.Enum):
    YMD = "YMD"
    DMY = "DMY"
    MDY = "MDY"


@strawberry.enum
class RegistrationAction(enum.Enum):
    CREATED = "CREATED"
    LINKED = "LINKED"
    UPDATED = "UPDATED"
    UNCHANGED = "UNCHANGED"
    QUEUED_FOR_REVIEW = "QUEUED_FOR_REVIEW"
    REJECTED = "REJECTED"
    ACCEPTED = strawberry.enum_value("ACCEPTED", description=(
        "Stored (new or changed): CREATED, LINKED, QUEUED_FOR_REVIEW or UPDATED as told to a caller whose "
        "policy hides what its record linked to (RegistrationResult.action read-masked)."))
    ERASED = "ERASED"  # refused: the record or its person was erased (an admin may lift the block)


@strawberry.enum
class CandidateStatus(enum.Enum):
    PENDING = "PENDING"
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    SUPERSEDED = "SUPERSEDED"


@strawberry.enum
class MatchDecision(enum.Enum):
    MERGE = "MERGE"
    NOT_A_MATCH = "NOT_A_MATCH"


# attributes whose masked form would still tell most of the value (a date's last 4 characters are its
# month and day, and a Date field cannot carry a masked value): masking one of them denies it
UNMASKABLE = frozenset({"dateOfBirth"})


def _guarded(type_name: str, api: str, value: Any, info: strawberry.Info, access: Access | None = None) -> Any:
    """Return a value as the caller may see it: in clear, masked, or null with a FORBIDDEN error.

    A refusal is reported whether or not there is a value, so the error does not tell that one exists.
    """
    if access is None:
        access = info.context.access(type_name, api)
    if access is Access.ALLOW:
        return value
    if access is Access.MASK:
        return mask(as_text(value))
    info.context.forbid(type_name, api, info.path)
    return None


def _readable(info: strawberry.Info, type_name: str, api: str, value: Any) -> Any:
    """A nullable field: its value, or null with one FORBIDDEN error when the caller may not read it."""
    return value if info.context.allowed(type_name, api, info.path) else None


def _required(info: strawberry.Info, type_name: str, api: str, value: Any) -> Any:
    """A non-null field: its value, or a FORBIDDEN error (the null then reaches the nearest nullable parent)."""
    info.context.require(type_name, api)
    return value


def _value_access(info: strawberry.Info, type_name: str, api: str, attribute: str) -> Access:
    """Access to an attribute's value served by another field: the stricter of both, masking a date denies it."""
    access = info.context.value_access(type_name, api, attribute)
    return Access.DENY if access is Access.MASK and attribute in UNMASKABLE else access


def _person_field(type_name: str, attr: str) -> Any:
    """A resolver field for one person attribute, guarded by the caller's access plan."""
    api = API_NAME[attr]

    customer_of = (lambda row: row.id) if type_name == "Customer" else (lambda row: row.customer_id)

    def resolve(root, info: strawberry.Info):
        value = getattr(root.row, attr)
        access = info.context.access(type_name, api)
        if value is not None:
            info.context.note_read(type_name, api, customer_of(root.row), access)
        return _guarded(type_name, api, value, info, access)

    def resolve_unmaskable(root, info: strawberry.Info):
        value = getattr(root.row, attr)
        access = info.context.access(type_name, api)
        if access is Access.MASK:
            access = Access.DENY
        if value is not None:
            info.context.note_read(type_name, api, customer_of(root.row), access)
        return _guarded(type_name, api, value, info, access)

    resolver = resolve_unmaskable if api in UNMASKABLE else resolve
    returns = Optional[dt.date] if attr == "date_of_birth" else Optional[str]  # noqa: UP045
    resolver.__annotations__ = {"info": strawberry.Info, "return": returns}
    return strawberry.field(resolver=resolver, name=api)


@strawberry.interface(description="Standardised customer attributes: names trimmed and cased, email "
                                  "lower-cased, phone in E.164, dates as ISO dates, country as ISO 3166-1 alpha-2.")
class PersonAttributes:
    given_name: str | None
    family_name: str | None
    date_of_birth: dt.date | None
    email: str | None
    phone: str | None
    address_line1: str | None
    address_line2: str | None
    locality: str | None
    postcode: str | None
    region: str | None
    country: str | None
    national_id: str | None


def _with_person_fields(type_name: str):
    """Give a type one guarded resolver per person attribute."""
    def decorate(cls):
        for attr in ATTRIBUTES:
            setattr(cls, attr, _person_field(type_name, attr))
            cls.__annotations__[attr] = Optional[dt.date] if attr == "date_of_birth" else Optional[str]  # noqa: UP045
        return cls
    return decorate


@strawberry.type(description="A system of record that sends customer records to the hub (crm, billing, ...).")
class SourceSystem:
    row: strawberry.Private[Any]

    @strawberry.field
    def name(self, info: strawberry.Info) -> str:
        return _required(info, "SourceSystem", "name", self.row.name)

    @strawberry.field
    def description(self, info: strawberry.Info) -> str | None:
        return _readable(info, "SourceSystem", "description", self.row.description)

    @strawberry.field(description="How the system writes ambiguous dates such as 03/04/1987.")
    def date_order(self, info: strawberry.Info) -> DateOrder:
        return _required(info, "SourceSystem", "dateOrder", DateOrder(self.row.date_order))

    @strawberry.field(description="ISO 3166-1 alpha-2 country used to read national phone numbers and addresses.")
    def default_country(self, info: strawberry.Info) -> str | None:
        return _readable(info, "SourceSystem", "defaultCountry", self.row.default_country)

    @strawberry.field(description="0..100; survivorship prefers values from more trusted systems.")
    def trust(self, info: strawberry.Info) -> int:
        return _required(info, "SourceSystem", "trust", self.row.trust)

    @strawberry.field
    def record_count(self, info: strawberry.Info) -> int:
        if info.context.purposes:  # it counts every customer's records: a consent-bound caller may not learn it
            raise FieldForbidden("SourceSystem.recordCount")
        return _required(info, "SourceSystem", "recordCount", self.row.record_count)

    @strawberry.field(description="Days the hub keeps a record not updated since (`hub retention run` removes "
                                  "it after); null: kept until deleted.")
    def retention_days(self, info: strawberry.Info) -> int | None:
        return _readable(info, "SourceSystem", "retentionDays", self.row.retention_days)


@strawberry.type
@_with_person_fields("SourceRecord")
class SourceRecord(PersonAttributes):
    row: strawberry.Private[Any]

    @strawberry.field
    def system(self, info: strawberry.Info) -> str:
        return _required(info, "SourceRecord", "system", self.row.system)

    @strawberry.field
    def key(self, info: strawberry.Info) -> str:
        return _required(info, "SourceRecord", "key", self.row.key)

    @strawberry.field(description="The golden record this source record belongs to.")
    async def customer(self, info: strawberry.Info) -> Annotated["Customer", strawberry.lazy("schema.types")] | None:
        if not info.context.allowed("SourceRecord", "customer", info.path):
            return None
        row = await info.context.loaders.customer.load(self.row.customer_id)
        return Customer(row=row) if row is not None else None

    @strawberry.field
    def received_at(self, info: strawberry.Info) -> dt.datetime:
        return _required(info, "SourceRecord", "receivedAt", self.row.received_at)

    @strawberry.field
    def updated_at(self, info: strawberry.Info) -> dt.datetime:
        return _required(info, "SourceRecord", "updatedAt", self.row.updated_at)


def hidden_attribute(info: strawberry.Info, attribute: str) -> bool:
    """Whether a golden-record attribute is hidden from the caller entirely (denied, or a date only masked).

    Such an attribute leaves no trace: no lineage row, no key in an event's changes, so nothing tells
    whether a customer has a value for it or when it changed.
    """
    access = info.context.access("Customer", attribute)
    return access is Access.DENY or (access is Access.MASK and attribute in UNMASKABLE)


@strawberry.type
class AttributeLineage:
    row: strawberry.Private[Any]

    @strawberry.field(description="Attribute name as in PersonAttributes, e.g. email.")
    def field(self, info: strawberry.Info) -> str:
        return _required(info, "AttributeLineage", "field", self.row.field)

    @strawberry.field
    def value(self, info: strawberry.Info) -> str | None:
        # the golden value of an attribute: visible only as both this field and that attribute allow
        access = _value_access(info, "AttributeLineage", "value", self.row.field)
        # stored sealed for the encrypted attributes: opened only for a caller who may see something of it
        value = None if access is Access.DENY else sealer().open_lineage(self.row.field, self.row.value)
        if value is not None:  # a sensitive attribute's value is as sensitive here
            info.context.note_read("Customer", self.row.field, self.row.customer_id, access, via="AttributeLineage")
        return _guarded("AttributeLineage", "value", value, info, access)

    @strawberry.field(description="The source record that supplied the value; null for a steward override.")
    async def source_record(self, info: strawberry.Info) -> SourceRecord | None:
        if self.row.source_record_id is None or not info.context.allowed("AttributeLineage", "sourceRecord",
                                                                         info.path):
            return None
        # lineage names the customer's own records: the batch that serves Customer.sourceRecords serves this
        row = next((r for r in await info.context.loaders.records_of.load(self.row.customer_id)
                    if r.id == self.row.source_record_id), None)
        if row is None:
            row = await info.context.loaders.record.load(self.row.source_record_id)
        return SourceRecord(row=row) if row is not None and info.context.sees_record(row) else None

    @strawberry.field(description="The survivorship rule that chose it, e.g. most-recent, source-trust, "
                                  "most-frequent, steward-override.")
    def rule(self, info: strawberry.Info) -> str:
        return _required(info, "AttributeLineage", "rule", self.row.rule)


def _visible_value(info: strawberry.Info, attribute: str, value: Any, customer_id: int | None = None) -> Any:
    """One attribute's value in an event's changes (a value or {before, after}) as the caller may see it."""
    access = _value_access(info, "CustomerEvent", "changes", attribute)
    if attribute in STORAGE_NAME and value is not None and value != {"before": None, "after": None}:
        info.context.note_read("Customer", attribute, customer_id, access, via="CustomerEvent")
    if access is Access.ALLOW:
        return value
    if isinstance(value, dict):
        return {k: mask(as_text(v)) if access is Access.MASK else None for k, v in value.items()}
    return mask(as_text(value)) if access is Access.MASK else None


def _visible_changes(changes: Any, info: strawberry.Info, customer_id: int | None = None) -> Any:
    """An event's changes as the caller may see them.

    Attribute values sit in `fields` ({attribute: value} or {attribute: {before, after}}) and in entries
    that name one attribute ({"field": attribute, "value": value}, e.g. a steward's override). An
    attribute hidden from the caller leaves no key and no entry (and no error: an error would appear
    only where a value exists); a masked one is masked, before and after.
    """
    if not isinstance(changes, dict):
        return changes
    shown = {}
    for key, entry in changes.items():
        if key == "fields" and isinstance(entry, dict):
            entry = {name: _visible_value(info, name, value, customer_id) for name, value in entry.items()
                     if not (name in STORAGE_NAME and hidden_attribute(info, name))}
        elif isinstance(entry, dict) and entry.get("field") in STORAGE_NAME and "value" in entry:
            if hidden_attribute(info, entry["field"]):
                continue
            entry = {**entry, "value": _visible_value(info, entry["field"], entry["value"], customer_id)}
        shown[key] = entry
    return shown


@strawberry.type
class CustomerEvent:
    row: strawberry.Private[Any]

    @strawberry.field
    def id(self, info: strawberry.Info) -> strawberry.ID:
        return _required(info, "CustomerEvent", "id", strawberry.ID(str(self.row.id)))

    @strawberry.field(description="CREATED, UPDATED, LINKED, MERGED, SPLIT, OVERRIDDEN, ERASED, ...")
    def kind(self, info: strawberry.Info) -> str:
        return _required(info, "CustomerEvent", "kind", self.row.kind)

    @strawberry.field
    def at(self, info: strawberry.Info) -> dt.datetime:
        return _required(info, "CustomerEvent", "at", self.row.at)

    @strawberry.field(description="Subject of the token that caused it.")
    def actor(self, info: strawberry.Info) -> str:
        return _required(info, "CustomerEvent", "actor", self.row.actor)

    @strawberry.field
    def note(self, info: strawberry.Info) -> str | None:
        return _readable(info, "CustomerEvent", "note", self.row.note)

    @strawberry.field
    def changes(self, info: strawberry.Info) -> JSON | None:
        if not info.context.allowed("CustomerEvent", "changes", info.path):
            return None
        return _visible_changes(self.row.changes, info, self.row.customer_id)


@strawberry.type(description="A customer's consent to one purpose: the current state, or one statement of its "
                              "history.")
class Consent:
    row: strawberry.Private[Any]

    @strawberry.field(description="The purpose, one of HUB_CONSENT_PURPOSES (marketing-email, profiling, ...).")
    def purpose(self, info: strawberry.Info) -> str:
        return _required(info, "Consent", "purpose", self.row.purpose)

    @strawberry.field(description="true: granted; false: withdrawn (or refused).")
    def granted(self, info: strawberry.Info) -> bool:
        return _required(info, "Consent", "granted", self.row.granted)

    @strawberry.field(description="When the person gave or withdrew it.")
    def at(self, info: strawberry.Info) -> dt.datetime:
        return _required(info, "Consent", "at", self.row.at)

    @strawberry.field(description="The source system that reported it; null when set in the hub (setConsent).")
    def source(self, info: strawberry.Info) -> str | None:
        return _readable(info, "Consent", "source", self.row.system)

    @strawberry.field(description="Subject of the token that recorded it.")
    def actor(self, info: strawberry.Info) -> str | None:
        return _readable(info, "Consent", "actor", self.row.actor)

    @strawberry.field(description="What proves it (a form reference, a call note).")
    def evidence(self, info: strawberry.Info) -> str | None:
        return _readable(info, "Consent", "evidence", self.row.evidence)

    @strawberry.field(description="When the hub recorded it.")
    def recorded_at(self, info: strawberry.Info) -> dt.datetime | None:
        return _readable(info, "Consent", "recordedAt", self.row.recorded_at)


@strawberry.type(description="The golden record: the hub's single view of one real customer.")
@_with_person_fields("Customer")
class Customer(PersonAttributes):
    row: strawberry.Private[Any]

    @strawberry.field
    def id(self, info: strawberry.Info) -> strawberry.ID:
        return _required(info, "Customer", "id", strawberry.ID(str(self.row.id)))

    @strawberry.field(description="Increases by one with every change to the golden record.")
    def version(self, info: strawberry.Info) -> int:
        return _required(info, "Customer", "version", self.row.version)

    @strawberry.field
    async def source_records(self, info: strawberry.Info) -> list[SourceRecord]:
        if not info.context.allowed("Customer", "sourceRecords", info.path):
            return []
        ctx = info.context
        return [SourceRecord(row=r) for r in await ctx.loaders.records_of.load(self.row.id) if ctx.sees_record(r)]

    @strawberry.field(description="For each attribute, where its value came from and which rule chose it.")
    async def lineage(self, info: strawberry.Info) -> list[AttributeLineage]:
        if not info.context.allowed("Customer", "lineage", info.path):
            return []
        # no row at all for an attribute hidden from the caller: a row exists only where a value does
        return [AttributeLineage(row=r) for r in await info.context.loaders.lineage_of.load(self.row.id)
                if not hidden_attribute(info, r.field)]

    @strawberry.field
    async def history(self, info: strawberry.Info, first: int = 50) -> list[CustomerEvent]:
        if not info.context.allowed("Customer", "history", info.path):
            return []
        first = max(1, min(first, 1000))
        return [CustomerEvent(row=r) for r in await info.context.loaders.history.load((self.row.id, first))]

    @strawberry.field(description="The current consent per purpose (purposes never stated are absent).")
    async def consents(self, info: strawberry.Info) -> list[Consent]:
        if not info.context.allowed("Customer", "consents", info.path):
            return []
        return [Consent(row=r) for r in await info.context.loaders.consents_of.load(self.row.id)]

    @strawberry.field(description="Every consent statement, oldest first (never overwritten).")
    async def consent_history(self, info: strawberry.Info) -> list[Consent]:
        if not info.context.allowed("Customer", "consentHistory", info.path):
            return []
        return [Consent(row=r) for r in await info.context.loaders.consent_history_of.load(self.row.id)]

    @strawberry.field
    def created_at(self, info: strawberry.Info) -> dt.datetime:
        return _required(info, "Customer", "createdAt", self.row.created_at)

    @strawberry.field
    def updated_at(self, info: strawberry.Info) -> dt.datetime:
        return _required(info, "Customer", "updatedAt", self.row.updated_at)


@strawberry.type(description="One comparison's share of the evidence (a Fellegi-Sunter match weight).")
class ComparisonExplanation:
    comparison: str
    level: str
    match_weight: float


# the attributes each comparison of the model looks at
COMPARISON_FIELDS = {
    "given_name": ("givenName",),
    "date_of_birth": ("dateOfBirth",),
    "email": ("email",),
    "household": ("familyName", "addressLine1", "postcode", "locality", "phone"),
    "national_id": ("nationalId",),
}
_NAMES = re.compile("|".join(sorted([*ATTRIBUTES, *COMPARISON_FIELDS], key=len, reverse=True)))


def _fields_in(text: str) -> set[str]:
    """API names of the attributes an explanation entry speaks of (e.g. `capped: date_of_birth else`)."""
    out: set[str] = set()
    for name in _NAMES.findall(text):
        out.update(COMPARISON_FIELDS.get(name, (API_NAME.get(name, name),)))
    return out


def visible_explanation(info: strawberry.Info, rows: Iterable[tuple[str, str, float]]) -> list[ComparisonExplanation]:
    """Keep the explanation entries about attributes the caller may read in clear; others would leak them."""
    ctx = info.context
    out = []
    for comparison, level, weight in rows:
        fields = _fields_in(f"{comparison} {level}")
        if all(ctx.access("Customer", f) is Access.ALLOW for f in fields):
            out.append(ComparisonExplanation(comparison=comparison, level=level, match_weight=weight))
    return out


def explanations(info: strawberry.Info, rows: Any) -> list[ComparisonExplanation]:
    """Build explanation objects from stored JSON rows, as far as the caller may see them."""
    return visible_explanation(info, [(r["comparison"], r["level"], r["matchWeight"]) for r in rows or []])


@strawberry.type(description="Two golden records that may be the same customer, waiting for a steward.")
class MatchCandidate:
    row: strawberry.Private[Any]

    @strawberry.field
    def id(self, info: strawberry.Info) -> strawberry.ID:
        return _required(info, "MatchCandidate", "id", strawberry.ID(str(self.row.id)))

    @strawberry.field
    def status(self, info: strawberry.Info) -> CandidateStatus:
        return _required(info, "MatchCandidate", "status", CandidateStatus(self.row.status))

    @strawberry.field
    def match_probability(self, info: strawberry.Info) -> float:
        return _required(info, "MatchCandidate", "matchProbability", self.row.probability)

    @strawberry.field
    async def customer(self, info: strawberry.Info) -> Customer:
        info.context.require("MatchCandidate", "customer")
        return Customer(row=await info.context.loaders.customer.load(self.row.customer_id))

    @strawberry.field
    async def other_customer(self, info: strawberry.Info) -> Customer:
        info.context.require("MatchCandidate", "otherCustomer")
        return Customer(row=await info.context.loaders.customer.load(self.row.other_customer_id))

    @strawberry.field
    def explanation(self, info: strawberry.Info) -> list[ComparisonExplanation]:
        if not info.context.allowed("MatchCandidate", "explanation", info.path):
            return []
        return explanations(info, self.row.explanation)

    @strawberry.field
    def created_at(self, info: strawberry.Info) -> dt.datetime:
        return _required(info, "MatchCandidate", "createdAt", self.row.created_at)

    @strawberry.field
    def resolved_by(self, info: strawberry.Info) -> str | None:
        return _readable(info, "MatchCandidate", "resolvedBy", self.row.resolved_by)

    @strawberry.field
    def resolved_at(self, info: strawberry.Info) -> dt.datetime | None:
        return _readable(info, "MatchCandidate", "resolvedAt", self.row.resolved_at)

    @strawberry.field
    def note(self, info: strawberry.Info) -> str | None:
        return _readable(info, "MatchCandidate", "note", self.row.note)


@strawberry.type
class FieldError:
    field: str
    text: strawberry.Private[str]
    code: str | None = strawberry.field(default=None, description="A machine-readable reason where there is "
                                                                  "one: ERASED (the person was erased).")

    def __init__(self, field: str, message: str, code: str | None = None) -> None:
        self.field, self.text, self.code = field, message, code

    @strawberry.field(description="Why the value was refused; it quotes the value only to callers who may "
                                  "read that field of a source record.")
    def message(self, info: strawberry.Info) -> str:
        if self.field in STORAGE_NAME and info.context.access("SourceRecord", self.field) is not Access.ALLOW:
            return f"the {self.field} value was refused (details withheld: this caller may not read it)"
        return self.text


# what a caller who may read RegistrationResult.action only masked is told: its record's own fate
_MASKED_ACTION = {RegistrationAction.CREATED: RegistrationAction.ACCEPTED,
                  RegistrationAction.LINKED: RegistrationAction.ACCEPTED,
                  RegistrationAction.QUEUED_FOR_REVIEW: RegistrationAction.ACCEPTED,
                  RegistrationAction.UPDATED: RegistrationAction.ACCEPTED}


@strawberry.type(description="What became of one registered record. What it linked to (action LINKED or "
                             "QUEUED_FOR_REVIEW, matchProbability, customer) is told only as the policy allows: "
                             "by default a source system learns ACCEPTED, UNCHANGED or REJECTED.")
class RegistrationResult:
    key: str
    outcome: strawberry.Private[RegistrationAction]
    customer_id: strawberry.Private[int | None]
    probability: strawberry.Private[float | None]
    errors: list[FieldError]

    @strawberry.field
    def action(self, info: strawberry.Info) -> RegistrationAction:
        access = info.context.access("RegistrationResult", "action")
        if access is Access.MASK:
            return _MASKED_ACTION.get(self.outcome, self.outcome)
        return _required(info, "RegistrationResult", "action", self.outcome)

    @strawberry.field
    def match_probability(self, info: strawberry.Info) -> float | None:
        return _readable(info, "RegistrationResult", "matchProbability", self.probability)

    @strawberry.field(description="The golden record the source record now belongs to; null when REJECTED.")
    def customer(self, info: strawberry.Info) -> Customer | None:
        # a plain resolver: a batch of 5000 results asking only for the id needs no read and no
        # coroutine per result; otherwise it hands graphql-core an awaitable that reads the record
        if not info.context.allowed("RegistrationResult", "customer", info.path) or self.customer_id is None:
            return None
        if _asks_only_id(info) and not info.context.purposes:
            return Customer(row=SimpleNamespace(id=self.customer_id))  # the id is known: no read needed
        return _load_customer(info, self.customer_id)


def _asks_only_id(info: strawberry.Info) -> bool:
    """Whether the selection under this field is plain `id` / `__typename` fields (read off the parsed
    document: strawberry's `selected_fields` converts the nodes anew for every item of a list)."""
    for node in info._raw_info.field_nodes:
        for sel in node.selection_set.selections if node.selection_set else ():
            if not isinstance(sel, FieldNode) or sel.name.value not in ("id", "__typename") or sel.directives:
                return False
    return True


async def _load_customer(info: strawberry.Info, customer_id: int) -> Customer | None:
    row = await info.context.loaders.customer.load(customer_id)
    return Customer(row=row) if row is not None else None


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class CustomerEdge:
    cursor: str
    node: Customer


@strawberry.type
class CustomerConnection:
    edges: list[CustomerEdge]
    page_info: PageInfo


@strawberry.type
class SourceRecordEdge:
    cursor: str
    node: SourceRecord


@strawberry.type
class SourceRecordConnection:
    edges: list[SourceRecordEdge]
    page_info: PageInfo


@strawberry.type
class MatchCandidateEdge:
    cursor: str
    node: MatchCandidate


@strawberry.type
class MatchCandidateConnection:
    edges: list[MatchCandidateEdge]
    page_info: PageInfo


@strawberry.input
class SourceSystemInput:
    name: str
    description: str | None = None
    date_order: DateOrder = DateOrder.YMD
    default_country: str | None = None
    trust: int = 50
    retention_days: int | None = strawberry.field(default=None, description=(
        "Keep records not updated for this many days, then `hub retention run` removes them; null: keep."))


@strawberry.input(description="Raw attributes as a source system holds them; the hub validates and standardises them.")
class CustomerAttributesInput:
    given_name: str | None = strawberry.UNSET
    family_name: str | None = strawberry.UNSET
    date_of_birth: str | None = strawberry.UNSET
    email: str | None = strawberry.UNSET
    phone: str | None = strawberry.UNSET
    address_line1: str | None = strawberry.UNSET
    address_line2: str | None = strawberry.UNSET
    locality: str | None = strawberry.UNSET
    postcode: str | None = strawberry.UNSET
    region: str | None = strawberry.UNSET
    country: str | None = strawberry.UNSET
    national_id: str | None = strawberry.UNSET

    def raw(self) -> dict[str, str]:
        """The attributes that were sent, by their API names."""
        return {API_NAME[a]: v for a in ATTRIBUTES if (v := getattr(self, a)) not in (None, strawberry.UNSET)}


@strawberry.input(description="A consent statement: the person granted or withdrew one purpose.")
class ConsentInput:
    purpose: str = strawberry.field(description="One of HUB_CONSENT_PURPOSES.")
    granted: bool = strawberry.field(description="true: granted; false: withdrawn.")
    at: dt.datetime | None = strawberry.field(
        default=None, description="When the person said so; defaults to the record's updatedAt (setConsent: now).")
    evidence: str | None = strawberry.field(default=None, description="What proves it (up to 1000 characters).")


@strawberry.input
class SourceRecordInput:
    key: str = strawberry.field(description="The record's identifier in its source system.")
    attributes: CustomerAttributesInput
    updated_at: dt.datetime | None = strawberry.field(
        default=None, description="When the source system last changed the record; defaults to the time of receipt.")
    consents: list[ConsentInput] | None = strawberry.field(
        default=None, description="Consents the person gave or withdrew in the source system; stored against the "
                                  "golden record the record belongs to, and following the record.")


def _record_from_input(cls: type, value: Any, _context: Any) -> Any:
    """Build a SourceRecordInput straight from graphql-core's coerced value (strawberry's `from_input` hook).

    A bulk call carries up to 5000 of them; strawberry's generic conversion resolves each field's type
    for every record, which cost about a tenth of a bulk registration.
    """
    attributes = CustomerAttributesInput(**{_INPUT_ATTRIBUTE[k]: v for k, v in value["attributes"].items()})
    consents = value.get("consents")
    if consents is not None:
        consents = [ConsentInput(purpose=c["purpose"], granted=c["granted"], at=c.get("at"),
                                 evidence=c.get("evidence")) for c in consents]
    return cls(key=value["key"], attributes=attributes, updated_at=value.get("updatedAt"), consents=consents)


_INPUT_ATTRIBUTE = {API_NAME[a]: a for a in ATTRIBUTES}
SourceRecordInput.__strawberry_definition__.from_input = _record_from_input
# checked value by value by the hub (a bad value is a FieldError of its record), not refused whole at the edge
PER_RECORD.update({SourceRecordInput, CustomerAttributesInput})
