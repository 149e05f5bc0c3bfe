"""findCustomers: ranked probabilistic search, and what a caller may learn from an explanation."""
from __future__ import annotations

import strawberry

from authz import Access
from hub.errors import Forbidden
from hub.steward.search import find_customers
from schema.types import ComparisonExplanation, Customer, CustomerAttributesInput, visible_explanation

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
                                       scorer=ctx.services.scorer, first=first, purposes=ctx.purposes)
    rows = await ctx.loaders.customer.load_many([m.customer_id for m in matches])
    return [CustomerMatch(customer=Customer(row=row), match_probability=m.probability,
                          explanation=visible_explanation(info, m.explanation))
            for m, row in zip(matches, rows, strict=True) if row is not None]
