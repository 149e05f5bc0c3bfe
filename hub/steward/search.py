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
from hub.privacy.sealing import lookup

SR, CUSTOMER = SourceRecord.__table__, Customer.__table__


@dataclass
class Match:
    customer_id: int
    probability: float
    explanation: list  # [(comparison, level, match_weight)]


# records read per name probe: a name alone is weak evidence, so the model ranks a bounded set of the
# records that carry it (index range scans on ix_source_record_family_given, never a table scan)
NAME_CANDIDATES = 200


async def name_candidates(session, values: Mapping[str, Any]) -> list[int]:
    """Ids of stored records with the standardised family name (and given name) searched for.

    The blocking keys never pair a name with nothing else (a name alone is shared by too many people to
    block on), so a search by name alone needs this lookup: the same given and family name first (also
    swapped), then others of the family name, at most NAME_CANDIDATES of each.
    """
    family, given = values.get("family_name"), values.get("given_name")
    if not family:
        return []
    probes = [select(SR.c.id).where(SR.c.family_name == family, SR.c.given_name == given).limit(NAME_CANDIDATES)
              ] if given else []
    if given and given != family:
        probes.append(select(SR.c.id).where(SR.c.family_name == given, SR.c.given_name == family)
                      .limit(NAME_CANDIDATES))
    probes.append(select(SR.c.id).where(SR.c.family_name == family).limit(NAME_CANDIDATES))
    ids: dict[int, None] = {}
    for probe in probes:
        ids |= dict.fromkeys((await session.execute(probe)).scalars())
    return list(ids)


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
    if scorer is not None and not probe.exact and not probe.blocking and not std.values.get("family_name"):
        # nothing to look candidates up by: say what would do, rather than answer an empty list
        raise BadInput("these attributes alone cannot be looked up: give a family name (with the given name), "
                       "or an email, phone or national id, or a name with a date of birth or postcode")
    conditions = [lookup(SR, rule[0], [key[2]]) for key in probe.exact for rule in [settings.exact_rules[key[1]]]]
    shared = await candidate_keys(session, probe.blocking)
    if shared:
        conditions.append(id_condition(session, list(shared)))
    named = await name_candidates(session, std.values)
    if named:
        conditions.append(id_condition(session, named))
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
