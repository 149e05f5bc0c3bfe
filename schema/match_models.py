"""Match model versions over GraphQL (admin and steward by the policy): status, m / u / weight of every level,
the training report and the evaluation against the promoted model, for a console to draw. The model's term
frequency tables (names) are not exposed."""
from __future__ import annotations

import datetime as dt
import math
from typing import Any

import strawberry
from strawberry.scalars import JSON

from hub.ops.models import get_model, list_models
from schema.errors import operation
from schema.queries import parse_id
from schema.types import _required


@strawberry.type(description="One comparison level of a match model: m, u and the match weight log2(m/u).")
class MatchModelLevel:
    label: str
    m: float | None
    u: float | None
    match_weight: float | None = strawberry.field(description="log2(m/u); null for the null level.")
    m_source: str | None = strawberry.field(description="Where m came from: EM on a rule, prior, cap, absent.")
    u_source: str | None


@strawberry.type(description="One comparison of a match model and its levels, strongest first.")
class MatchModelComparison:
    name: str
    levels: list[MatchModelLevel]


def _levels(model: dict[str, Any]) -> list[MatchModelComparison]:
    report = ((model.get("matching_training") or {}).get("report") or {}).get("levels") or {}
    out = []
    for comp in model.get("comparisons", []):
        name = comp["output_column_name"]
        levels = []
        for lv in comp["comparison_levels"]:
            label = lv.get("label_for_charts") or ""
            m, u = lv.get("m_probability"), lv.get("u_probability")
            m = m if isinstance(m, (int, float)) else None
            u = u if isinstance(u, (int, float)) else None
            weight = math.log2(m / u) if m and u else None
            src = report.get(name, {}).get(label, {})
            levels.append(MatchModelLevel(label=label, m=m, u=u, match_weight=weight,
                                          m_source=src.get("m"), u_source=src.get("u")))
        out.append(MatchModelComparison(name=name, levels=levels))
    return out


@strawberry.type(description="A stored match model version (hub train): candidate, promoted or retired.")
class MatchModelInfo:
    row: strawberry.Private[dict[str, Any]]

    @strawberry.field
    def id(self, info: strawberry.Info) -> strawberry.ID:
        return _required(info, "MatchModelInfo", "id", strawberry.ID(str(self.row["id"])))

    @strawberry.field(description="candidate, promoted (the one the hub matches with) or retired.")
    def status(self, info: strawberry.Info) -> str:
        return _required(info, "MatchModelInfo", "status", self.row["status"])

    @strawberry.field
    def created_at(self, info: strawberry.Info) -> dt.datetime:
        return _required(info, "MatchModelInfo", "createdAt", self.row["created_at"])

    @strawberry.field
    def promoted_at(self, info: strawberry.Info) -> dt.datetime | None:
        return _required(info, "MatchModelInfo", "promotedAt", self.row["promoted_at"])

    @strawberry.field(description="Source records it was trained on.")
    def records(self, info: strawberry.Info) -> int:
        return _required(info, "MatchModelInfo", "records", self.row["records"])

    @strawberry.field(description="Training time in seconds.")
    def seconds(self, info: strawberry.Info) -> float:
        return _required(info, "MatchModelInfo", "seconds", self.row["seconds"])

    @strawberry.field
    def note(self, info: strawberry.Info) -> str | None:
        return _required(info, "MatchModelInfo", "note", self.row["note"])

    async def _model(self, info: strawberry.Info) -> dict[str, Any]:
        if "model" not in self.row:          # listed without it: read this version once
            self.row = await get_model(db=info.context.db, model_id=self.row["id"])
        return self.row.get("model") or {}

    @strawberry.field(description="Prior probability that two random records match.")
    async def probability_two_random_records_match(self, info: strawberry.Info) -> float | None:
        model = await self._model(info)
        return _required(info, "MatchModelInfo", "probabilityTwoRandomRecordsMatch",
                         model.get("probability_two_random_records_match"))

    @strawberry.field(description="Comparisons and their levels with m, u and match weight.")
    async def comparisons(self, info: strawberry.Info) -> list[MatchModelComparison]:
        info.context.require("MatchModelInfo", "comparisons")
        return _levels(await self._model(info))

    @strawberry.field(description="What was estimated from what (matching.train report); null for older models.")
    async def training_report(self, info: strawberry.Info) -> JSON | None:
        info.context.require("MatchModelInfo", "trainingReport")
        return ((await self._model(info)).get("matching_training") or {}).get("report")

    @strawberry.field(description="Against the promoted model when trained: the rematch it would cause, steward labels.")
    def evaluation(self, info: strawberry.Info) -> JSON | None:
        return _required(info, "MatchModelInfo", "evaluation", self.row.get("evaluation"))


@operation
async def match_models(info: strawberry.Info) -> list[MatchModelInfo]:
    return [MatchModelInfo(row=r) for r in await list_models(db=info.context.db)]


@operation
async def match_model(info: strawberry.Info, id: strawberry.ID) -> MatchModelInfo:
    return MatchModelInfo(row=await get_model(db=info.context.db, model_id=parse_id(id)))


@strawberry.type
class MatchModelQuery:
    match_models: list[MatchModelInfo] = strawberry.field(
        resolver=match_models, description="Stored match model versions, newest first. Admins and stewards.")
    match_model: MatchModelInfo = strawberry.field(
        resolver=match_model, description="One stored match model version with its levels, report and evaluation.")
