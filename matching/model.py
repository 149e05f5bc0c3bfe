"""MatchModel: a Splink 5 model JSON evaluated directly in Python (the real-time hot path).

match_weight = log2(lambda / (1 - lambda))
             + sum over comparisons of log2(m / u) of the level the pair falls in (0 for null levels)
             + TF adjustment of that level, exactly as Splink's `_tf_adjustment_sql`:
               w * (log2(u_exact) - log2(max(coalesce(tf_l, tf_r), coalesce(tf_r, tf_l), tf_min_u)))
               when either side has a term frequency, else 0
probability  = 1 / (1 + 2 ** -match_weight)

Term frequencies come from the model JSON's extra key "term_frequencies" ({column: {value: tf}}),
the same tables `predict_clusters` registers with Splink, so batch and real time agree.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib import resources
from typing import Mapping, Sequence

from .features import Prepared, features
from .spec import COMPARISONS, ComparisonSpec

M_U_CLAMP_MIN = 1e-300          # splink.internals.comparison_level.M_U_CLAMP_MIN
LEVEL_NOT_OBSERVED = 1e-6       # Splink's value for a "level not observed" m/u
_SPECS = {c.name: c for c in COMPARISONS}
# (comparison, level) pairs that mean "plainly a different person" for score_cluster
DEFAULT_CONFLICT_LEVELS = (("given_name", "else"), ("date_of_birth", "else"))


@dataclass(frozen=True)
class Explanation:
    comparison: str
    level: str
    match_weight: float


@dataclass(frozen=True)
class Score:
    match_weight: float
    probability: float
    explanation: list[Explanation] = field(default_factory=list)


def probability_from_weight(mw: float) -> float:
    if mw >= 0:
        return 1.0 / (1.0 + 2.0 ** -mw)
    p = 2.0 ** mw
    return p / (1.0 + p)


def _prob(value, what: str) -> float:
    if value == "level not observed":
        return LEVEL_NOT_OBSERVED
    if value is None:
        raise ValueError(f"model is not trained: {what} has no value")
    return float(value)


def _norm_sql(sql: str) -> str:
    return " ".join(sql.split()).lower()


class _CompiledLevel:
    __slots__ = ("label", "pred", "weight", "tf_col", "tf_weight", "tf_min_u", "log2_u_exact")

    def __init__(self, label, pred, weight, tf_col=None, tf_weight=1.0, tf_min_u=0.0, log2_u_exact=0.0):
        self.label, self.pred, self.weight = label, pred, weight
        self.tf_col, self.tf_weight, self.tf_min_u, self.log2_u_exact = tf_col, tf_weight, tf_min_u, log2_u_exact


def _compile_comparison(comp: dict) -> tuple[str, list[_CompiledLevel]]:
    name = comp["output_column_name"]
    spec: ComparisonSpec | None = _SPECS.get(name)
    if spec is None:
        raise ValueError(f"comparison {name!r} is not one the evaluator knows ({sorted(_SPECS)})")
    by_label = {lv.label: lv for lv in spec.levels}
    exact_u: dict[str, float] = {}
    for lv in comp["comparison_levels"]:
        if lv.get("is_null_level"):
            continue
        sql = _norm_sql(lv["sql_condition"])
        for col in {s.tf_column for s in spec.levels if s.tf_column}:
            if sql == f"{col}_l = {col}_r":
                exact_u[col] = _prob(lv.get("u_probability"), f"{name}/{lv.get('label_for_charts')} u")
    out = []
    for lv in comp["comparison_levels"]:
        label = lv.get("label_for_charts")
        s = by_label.get(label)
        if s is None:
            raise ValueError(f"{name}: level {label!r} is not in the evaluator's spec")
        if _norm_sql(lv["sql_condition"]) != _norm_sql(s.sql):
            raise ValueError(f"{name}/{label}: sql_condition {lv['sql_condition']!r} differs from the spec's "
                             f"{s.sql!r}; the evaluator would not reproduce Splink")
        if lv.get("is_null_level"):
            out.append(_CompiledLevel(label, s.pred, 0.0))
            continue
        m = max(_prob(lv.get("m_probability"), f"{name}/{label} m"), M_U_CLAMP_MIN)
        u = max(_prob(lv.get("u_probability"), f"{name}/{label} u"), M_U_CLAMP_MIN)
        weight = math.log2(m / u)
        tf_col = lv.get("tf_adjustment_column")
        tf_weight = float(lv.get("tf_adjustment_weight", 1.0))
        if tf_col and tf_weight != 0 and _norm_sql(lv["sql_condition"]) != "else":
            if tf_col not in exact_u:
                raise ValueError(f"{name}/{label}: no exact-match level for TF column {tf_col}")
            out.append(_CompiledLevel(label, s.pred, weight, tf_col, tf_weight,
                                      float(lv.get("tf_minimum_u_value", 0.0)), math.log2(exact_u[tf_col])))
        else:
            out.append(_CompiledLevel(label, s.pred, weight))
    return name, out


class MatchModel:
    """A trained Splink 5 model, evaluated without Splink."""

    def __init__(self, data: dict):
        self._json = data
        lam = float(data["probability_two_random_records_match"])
        self.prior_weight = math.log2(lam / (1.0 - lam))
        self.comparisons = [_compile_comparison(c) for c in data["comparisons"]]
        self.term_frequencies: dict[str, dict[str, float]] = {
            col: dict(table) for col, table in (data.get("term_frequencies") or {}).items()}
        self.tf_columns = sorted({lv.tf_col for _, levels in self.comparisons for lv in levels if lv.tf_col})
        decision = data.get("matching_decision") or {}
        self.conflict_levels = {tuple(x) for x in decision.get("conflict_levels", DEFAULT_CONFLICT_LEVELS)}
        cap_p = float(decision.get("conflict_cap_probability", 0.9))
        self.conflict_cap_weight = math.log2(cap_p / (1.0 - cap_p))
        self.cluster_conflict = bool(decision.get("cluster_conflict", True))
        missing = [c for c in self.tf_columns if c not in self.term_frequencies]
        if missing:
            raise ValueError(f"model JSON lacks term_frequencies for {missing}")

    # ---- construction / serialisation -------------------------------------------------
    @classmethod
    def default(cls) -> "MatchModel":
        text = resources.files(__package__).joinpath("default_model.json").read_text(encoding="utf-8")
        return cls.from_json(text)

    @classmethod
    def from_json(cls, data: str | dict) -> "MatchModel":
        if isinstance(data, str):
            data = json.loads(data)
        return cls(data)

    def to_json(self) -> dict:
        return json.loads(json.dumps(self._json))

    # ---- evaluation ---------------------------------------------------------------------
    def prepare(self, rec: Mapping, rid=None) -> Prepared:
        """Features of one standardised record (snake_case attributes), with its term frequencies."""
        row = features(rec)
        tf = {col: self.term_frequencies[col].get(row[col]) if row[col] is not None else None
              for col in self.tf_columns}
        return Prepared(row, tf, rid if rid is not None else rec.get("id"))

    def prepare_row(self, row: Mapping, rid=None) -> Prepared:
        """Like prepare, from an already derived feature row (see features.features)."""
        tf = {col: self.term_frequencies[col].get(row[col]) if row[col] is not None else None
              for col in self.tf_columns}
        return Prepared(row, tf, rid)

    def match_weight(self, a: Prepared, b: Prepared) -> float:
        """Score's match weight without building the explanation (fastest path)."""
        total = self.prior_weight
        for _, levels in self.comparisons:
            for lv in levels:
                if lv.pred(a, b):
                    total += lv.weight
                    if lv.tf_col is not None:
                        total += self._tf_adjustment(lv, a, b)
                    break
        return total

    def score(self, a: Prepared, b: Prepared) -> Score:
        total = self.prior_weight
        expl = []
        for name, levels in self.comparisons:
            for lv in levels:
                if lv.pred(a, b):
                    w = lv.weight
                    if lv.tf_col is not None:
                        w += self._tf_adjustment(lv, a, b)
                    total += w
                    expl.append(Explanation(name, lv.label, w))
                    break
        return Score(total, probability_from_weight(total), expl)

    @staticmethod
    def _tf_adjustment(lv: _CompiledLevel, a: Prepared, b: Prepared) -> float:
        tl, tr = a.tf.get(lv.tf_col), b.tf.get(lv.tf_col)
        if tl is None and tr is None:
            return 0.0
        tf = max(tl if tl is not None else tr, tr if tr is not None else tl, lv.tf_min_u)
        return lv.tf_weight * (lv.log2_u_exact - math.log2(tf))

    def score_cluster(self, rec: Prepared, members: Sequence[Prepared]) -> Score:
        """How strongly `rec` belongs to the golden record made of `members`.

        The best pairwise score against any member, with a conflict rule on top of the
        Fellegi-Sunter weights: a pair that falls in a conflict level (by default given name
        "else" or birth date "else": both present and plainly different) is capped at
        `conflict_cap_probability`, i.e. at most a review, never an automatic link; and with
        `cluster_conflict` a conflict with ANY member caps the whole cluster score, so one
        strong pair cannot pull a record into a golden record that also holds someone it
        contradicts. Why: household members share family name, address, phone and sometimes
        the mailbox or (twins) the birth date; those agreements are not independent evidence, and
        no per-comparison weight is big enough to outvote all of them in a naive-Bayes sum
        without also breaking true matches. The explanation gets a "decision" entry when capped.
        """
        if not members:
            return Score(float("-inf"), 0.0, [])
        cap = self.conflict_cap_weight
        best: Score | None = None
        best_w = float("-inf")
        conflict = None
        for m in members:
            s = self.score(rec, m)
            w = s.match_weight
            hit = next((e for e in s.explanation if (e.comparison, e.level) in self.conflict_levels), None)
            if hit is not None:
                conflict = conflict or hit
                w = min(w, cap)
            if w > best_w:
                best, best_w = s, w
        assert best is not None
        if conflict is not None and self.cluster_conflict:
            best_w = min(best_w, cap)
        if best_w == best.match_weight:
            return best
        note = Explanation("decision", f"capped: {conflict.comparison} {conflict.level}", best_w - best.match_weight)
        return Score(best_w, probability_from_weight(best_w), best.explanation + [note])
