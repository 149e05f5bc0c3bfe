"""Probabilistic search: rank golden records against a description of a person, with the match model."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select

from hub.golden.attributes import ATTRIBUTES
from hub.ingest.blocking import candidate_keys, id_condition
from hub.config import Settings
from hub.errors import BadInput
from hub.ingest.linking import Planner, rule_name
from hub.models import ACTIVE, Customer, SourceRecord
from hub.ingest.standardise import SystemProfile, standardise
from hub.privacy.consent import visible

SR, CUSTOMER = SourceRecord.__table__, Customer.__table__


@dataclass
class Match:
    customer_id: int
    probability: float
    explanation: list  # [(comparison, level, match_weight)]


async def find_customers(*, session, attributes: Mapping[str, Any], settings: Settings, scorer, first: int = 10,
                         minimum: float = 0.0, purposes: Collection[str] = ()) -> list[Match]:
    """Rank live golden records by how likely they describe the person in `attributes` (API names).

    `purposes`: only golden records that granted every one of these consent purposes are candidates
    (ranked among themselves, so a consent-bound caller gets its full page).
    """
    if not 1 <= first <= 100:
        raise BadInput("first must be between 1 and 100")
    std = standardise(attributes, SystemProfile())
    if std.errors:
        raise BadInput("; ".join(f"{e.field}: {e.message}" for e in std.errors))
    if not std.values:
        raise BadInput("give at least one attribute to search by")
    planner = Planner(settings.exact_rules, settings.link_threshold, settings.review_threshold, scorer)
    probe = planner.profile(std.values)
    conditions = [SR.c[rule[0]] == key[2] for key in probe.exact for rule in [settings.exact_rules[key[1]]]]
    shared = await candidate_keys(session, probe.blocking)
    if shared:
        conditions.append(id_condition(session, list(shared)))
    if not conditions:
        return []
    rows = (await session.execute(
        select(SR.c.id, SR.c.customer_id, SR.c.match_features, *(SR.c[a] for a in ATTRIBUTES))
        .join(CUSTOMER, CUSTOMER.c.id == SR.c.customer_id)
        .where(or_(*conditions), CUSTOMER.c.status == ACTIVE,
               *([visible(CUSTOMER.c.id, purposes)] if purposes else [])))).all()
    members: dict[int, list] = defaultdict(list)
    exact: dict[int, str] = {}
    keys = set(probe.exact)
    for row in rows:
        values = {a: row._mapping[a] for a in ATTRIBUTES}
        stored = planner.stored_profile(values, row.match_features, shared.get(row.id, ()))
        members[row.customer_id].append(stored.prepared)
        hit = keys & set(stored.exact)
        if hit:
            exact[row.customer_id] = rule_name(settings.exact_rules[next(iter(hit))[1]])
    found = []
    for cid, prepared in members.items():
        explanation, probability = [], 0.0
        if scorer is not None:
            s = scorer.score_cluster(probe.prepared, prepared)
            explanation, probability = [(e.comparison, e.level, e.match_weight) for e in s.explanation], s.probability
        if cid in exact:  # a deterministic rule holds: certain, whatever the model says
            explanation, probability = [*explanation, ("rule", exact[cid], 0.0)], 1.0
        if explanation:
            found.append(Match(cid, probability, explanation))
    ranked = sorted((m for m in found if m.probability >= minimum),
                    key=lambda m: (-m.probability, m.customer_id))
    return ranked[:first]
