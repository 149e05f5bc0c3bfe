"""findCustomers: ranked probabilistic search, and what a caller may learn from an explanation."""
from __future__ import annotations

import re
from collections.abc import Iterable

import strawberry

from authz import Access
from hub.attributes import API_NAME, ATTRIBUTES
from hub.errors import Forbidden
from hub.search import find_customers
from schema.types import ComparisonExplanation, Customer, CustomerAttributesInput

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


@strawberry.type
class CustomerMatch:
    customer: Customer
    match_probability: float
    explanation: list[ComparisonExplanation]


async def search(info: strawberry.Info, attributes: CustomerAttributesInput, first: int) -> list[CustomerMatch]:
    """Resolve findCustomers for the caller: only by attributes it may read, explained as far as it may see."""
    ctx = info.context
    raw = attributes.raw()
    hidden = [f for f in raw if ctx.access("Customer", f) is not Access.ALLOW]
    if hidden:
        # searching by a value one may not read would make the search an oracle for it
        raise Forbidden(f"role {ctx.principal.role!r} may not search by {', '.join(sorted(hidden))}")
    async with ctx.db.session() as session:
        matches = await find_customers(session=session, attributes=raw, settings=ctx.services.settings,
                                       scorer=ctx.services.scorer, first=first)
    rows = await ctx.loaders.customer.load_many([m.customer_id for m in matches])
    return [CustomerMatch(customer=Customer(row=row), match_probability=m.probability,
                          explanation=visible_explanation(info, m.explanation))
            for m, row in zip(matches, rows, strict=True) if row is not None]
