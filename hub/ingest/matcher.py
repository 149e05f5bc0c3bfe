"""The hub's side of probabilistic matching: which model is in use, and how it sees hub records."""
from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select

from matching import MatchModel, Prepared, Score
from matching.blocking import keys_from_features
from matching.features import features

from hub.db import Database
from hub.models import MatchModelVersion
from hub.models.matching import PROMOTED
from hub.privacy.sealing import sealer

log = logging.getLogger("hub")


def matching_view(values: Mapping[str, Any]) -> dict[str, Any]:
    """The record as `matching` takes it: strings, dates as ISO text."""
    return {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in values.items()}


class ModelScorer:
    """The real-time evaluator of one trained model, as the linking planner uses it."""

    def __init__(self, model: MatchModel, version: int | None = None) -> None:
        self.model = model
        self.version = version  # None: the model shipped with the package

    def prepare(self, values: Mapping[str, Any]) -> tuple[Prepared, set[str], dict[str, Any]]:
        """Derive one record's comparison features (to store) and blocking keys, from one feature row."""
        row = features(matching_view(values))
        # stored and looked up as keyed hashes: a key holds names, dates of birth, national ids
        return self.model.prepare_row(row), sealer().block_keys(keys_from_features(row)), row

    def from_features(self, row: Mapping[str, Any]) -> Prepared:
        """Rebuild a stored record's features without normalising it again."""
        return self.model.prepare_row(row)

    def score_cluster(self, rec: Prepared, members: Sequence[Prepared]) -> Score:
        """How strongly a record belongs to a golden record made of these members."""
        return self.model.score_cluster(rec, members)

    def score(self, a: Prepared, b: Prepared) -> Score:
        """Score one pair."""
        return self.model.score(a, b)


@functools.cache
def default_scorer() -> ModelScorer:
    """The shipped model's evaluator, built once per process."""
    return ModelScorer(MatchModel.default())


async def load_scorer(db: Database, choice: str = "latest") -> ModelScorer | None:
    """Load the model to match with: `latest` = the promoted one (else the shipped default), `default`, an id,
    or `off`. A trained model is a candidate, not used by `latest`, until `hub model promote`."""
    if choice == "off":
        return None
    if choice != "default":
        stmt = select(MatchModelVersion.id, MatchModelVersion.model)
        stmt = stmt.where(MatchModelVersion.status == PROMOTED).order_by(MatchModelVersion.id.desc()).limit(1) \
            if choice == "latest" else \
            stmt.where(MatchModelVersion.id == int(choice))
        async with db.session() as session:
            row = (await session.execute(stmt)).first()
        if row is not None:
            return ModelScorer(MatchModel.from_json(row.model), row.id)
        if choice != "latest":
            raise ValueError(f"no stored match model {choice}")
    return default_scorer()
