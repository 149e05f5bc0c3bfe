"""The comparison design: every level once, as Splink SQL and as the equivalent Python predicate.

`settings_dict()` renders the Splink 5 settings from this spec; the evaluator (`model.py`)
pairs each level of a model JSON with its predicate by (comparison name, level label) and
checks the JSON's sql_condition is the one below, so a retrained model (new m/u, new
lambda, new TF tables) needs no code change, while a hand-edited SQL condition is refused
rather than silently evaluated differently.

Python predicates follow SQL three-valued logic: a comparison with NULL is never true.
`jaro_winkler_similarity` / `damerau_levenshtein` in DuckDB are bit-identical to rapidfuzz's
JaroWinkler.similarity / DamerauLevenshtein.distance on non-empty strings (checked on
20k random pairs; empty strings never reach them: features() maps '' to NULL).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from rapidfuzz.distance import DamerauLevenshtein, JaroWinkler

from .features import Prepared

_jw = JaroWinkler.similarity
_dl = DamerauLevenshtein.distance

Pred = Callable[[Prepared, Prepared], bool]


@dataclass(frozen=True)
class Level:
    label: str
    sql: str
    pred: Pred
    is_null: bool = False
    tf_column: str | None = None


@dataclass(frozen=True)
class ComparisonSpec:
    name: str
    description: str
    levels: tuple[Level, ...]


def _eq(x, y) -> bool:
    return x is not None and x == y


def _null(col: str) -> Level:
    return Level("null", f"{col}_l IS NULL OR {col}_r IS NULL",
                 lambda a, b: getattr(a, col) is None or getattr(b, col) is None, is_null=True)


def _exact(col: str, tf: bool = False) -> Level:
    return Level("exact", f"{col}_l = {col}_r", lambda a, b: _eq(getattr(a, col), getattr(b, col)),
                 tf_column=col if tf else None)


def _jw_ge(col: str, threshold: float) -> Level:
    def pred(a, b):
        x, y = getattr(a, col), getattr(b, col)
        return x is not None and y is not None and _jw(x, y) >= threshold
    return Level(f"jaro_winkler >= {threshold}", f"jaro_winkler_similarity({col}_l, {col}_r) >= {threshold}", pred)


def _dl_le(col: str, k: int) -> Level:
    def pred(a, b):
        x, y = getattr(a, col), getattr(b, col)
        return x is not None and y is not None and _dl(x, y, score_cutoff=k + 1) <= k
    return Level(f"damerau_levenshtein <= {k}", f"damerau_levenshtein({col}_l, {col}_r) <= {k}", pred)


def _else() -> Level:
    return Level("else", "ELSE", lambda a, b: True)


def _swapped(col: str, other: str) -> Level:
    return Level(f"{col} equals the other's {other}", f"{col}_l = {other}_r OR {col}_r = {other}_l",
                 lambda a, b: _eq(getattr(a, col), getattr(b, other)) or _eq(getattr(b, col), getattr(a, other)))


def _initial(a: Prepared, b: Prepared) -> bool:
    x, y = a.given, b.given
    return x is not None and y is not None and (len(x) == 1 or len(y) == 1) and x[0] == y[0]


GIVEN = ComparisonSpec("given_name", "given name: exact (TF), swapped, nickname, fuzzy, initial", (
    _null("given"),
    _exact("given", tf=True),
    _swapped("given", "family"),
    Level("nickname", "list_has_any(given_nick_l, given_nick_r)",
          lambda a, b: bool(a.nick) and bool(b.nick) and not a.nick.isdisjoint(b.nick)),
    _jw_ge("given", 0.92),
    _dl_le("given", 1),
    Level("initial", "(length(given_l) = 1 OR length(given_r) = 1) AND substr(given_l, 1, 1) = substr(given_r, 1, 1)",
          _initial),
    _jw_ge("given", 0.8),
    _else(),
))

def _dob_swap(a: Prepared, b: Prepared) -> bool:
    if a.dob is None or b.dob is None:
        return False
    if a.dob_year == b.dob_year and a.dob_month == b.dob_day and a.dob_day == b.dob_month:
        return True
    return a.dob_ym == b.dob_ym and (a.dob_day == a.dob_month or b.dob_day == b.dob_month)


def _dob_year_slip(a: Prepared, b: Prepared) -> bool:
    return (a.dob is not None and b.dob is not None and a.dob_md == b.dob_md
            and abs(a.dob_yi - b.dob_yi) in (1, 10, 100))


DOB = ComparisonSpec("date_of_birth", "date of birth: exact, day/month swap, year slip", (
    _null("dob"),
    _exact("dob"),
    Level("day/month swapped or day typed as month",
          "substr(dob_l, 1, 4) = substr(dob_r, 1, 4) AND ((substr(dob_l, 6, 2) = substr(dob_r, 9, 2) "
          "AND substr(dob_l, 9, 2) = substr(dob_r, 6, 2)) OR (substr(dob_l, 1, 7) = substr(dob_r, 1, 7) "
          "AND (substr(dob_l, 9, 2) = substr(dob_l, 6, 2) OR substr(dob_r, 9, 2) = substr(dob_r, 6, 2))))",
          _dob_swap),
    Level("year off by 1, 10 or 100",
          "substr(dob_l, 6, 5) = substr(dob_r, 6, 5) AND abs(cast(substr(dob_l, 1, 4) AS INTEGER) - "
          "cast(substr(dob_r, 1, 4) AS INTEGER)) IN (1, 10, 100)", _dob_year_slip),
    _else(),
))

# No "same user part" level: user parts are built from names (john.smith@...), so at another
# provider they identify a name, not a person; EM gave them +9.6 and they linked namesakes.
EMAIL = ComparisonSpec("email", "email: exact, one typo", (
    _null("email"),
    _exact("email"),
    _dl_le("email", 1),
    _else(),
))

# Household evidence: family name, address and phone are shared by everyone in a household, so
# they are ONE comparison whose levels are their joint patterns. Random sampling then measures how
# often non-matching records share e.g. family + address + phone (households do) instead of
# multiplying three small independent u values, and the person attributes (given name, birth
# date, email, national id) decide between household members.
_ADDR_EQ = ("(addr_l = addr_r OR (jaro_winkler_similarity(addr_l, addr_r) >= 0.9 "
            "AND (postcode_l = postcode_r OR locality_l = locality_r)))")
_AREA_EQ = "(postcode_l = postcode_r OR jaro_winkler_similarity(locality_l, locality_r) >= 0.92)"
_FAM_EQ = "family_l = family_r"
_PHONE_EQ = "phone_l = phone_r"
_FAM_FUZZY = "(jaro_winkler_similarity(family_l, family_r) >= 0.92 OR damerau_levenshtein(family_l, family_r) <= 1)"


def _addr_eq(a: Prepared, b: Prepared) -> bool:
    x, y = a.addr, b.addr
    if x is None or y is None:
        return False
    return x == y or (_jw(x, y) >= 0.9 and (_eq(a.postcode, b.postcode) or _eq(a.locality, b.locality)))


def _area_eq(a: Prepared, b: Prepared) -> bool:
    return _eq(a.postcode, b.postcode) or (a.locality is not None and b.locality is not None
                                           and _jw(a.locality, b.locality) >= 0.92)


def _fam_eq(a: Prepared, b: Prepared) -> bool:
    return _eq(a.family, b.family)


def _phone_eq(a: Prepared, b: Prepared) -> bool:
    return _eq(a.phone, b.phone)


def _fam_fuzzy(a: Prepared, b: Prepared) -> bool:
    x, y = a.family, b.family
    return x is not None and y is not None and (_jw(x, y) >= 0.92 or _dl(x, y, score_cutoff=2) <= 1)


def _household_null(a: Prepared, b: Prepared) -> bool:
    return all(getattr(a, c) is None or getattr(b, c) is None
               for c in ("family", "addr", "postcode", "locality", "phone"))


HOUSEHOLD = ComparisonSpec("household", "family name + address + phone as one comparison (joint patterns)", (
    Level("null", " AND ".join(f"({c}_l IS NULL OR {c}_r IS NULL)"
                               for c in ("family", "addr", "postcode", "locality", "phone")),
          _household_null, is_null=True),
    Level("family, address and phone", f"{_FAM_EQ} AND {_ADDR_EQ} AND {_PHONE_EQ}",
          lambda a, b: _fam_eq(a, b) and _phone_eq(a, b) and _addr_eq(a, b)),
    Level("family and address", f"{_FAM_EQ} AND {_ADDR_EQ}", lambda a, b: _fam_eq(a, b) and _addr_eq(a, b)),
    Level("address and phone", f"{_ADDR_EQ} AND {_PHONE_EQ}", lambda a, b: _phone_eq(a, b) and _addr_eq(a, b)),
    Level("address", _ADDR_EQ, _addr_eq),
    Level("family and phone", f"{_FAM_EQ} AND {_PHONE_EQ}", lambda a, b: _fam_eq(a, b) and _phone_eq(a, b)),
    Level("phone", _PHONE_EQ, _phone_eq),
    Level("family and area", f"{_FAM_EQ} AND {_AREA_EQ}", lambda a, b: _fam_eq(a, b) and _area_eq(a, b),
          tf_column="family"),
    Level("family", _FAM_EQ, _fam_eq, tf_column="family"),
    Level("family fuzzy and area", f"{_FAM_FUZZY} AND {_AREA_EQ}", lambda a, b: _fam_fuzzy(a, b) and _area_eq(a, b)),
    Level("family fuzzy", _FAM_FUZZY, _fam_fuzzy),
    Level("area", _AREA_EQ, _area_eq),
    _else(),
))

NATIONAL_ID = ComparisonSpec("national_id", "national id: exact", (
    _null("nid"),
    _exact("nid"),
    _else(),
))

COMPARISONS: tuple[ComparisonSpec, ...] = (GIVEN, DOB, EMAIL, HOUSEHOLD, NATIONAL_ID)
TF_COLUMNS: tuple[str, ...] = tuple(dict.fromkeys(lv.tf_column for c in COMPARISONS for lv in c.levels if lv.tf_column))


def comparison_dict(spec: ComparisonSpec) -> dict:
    """Splink comparison dict (as accepted in settings and written by save_model_to_json)."""
    levels = []
    for lv in spec.levels:
        d = {"sql_condition": lv.sql, "label_for_charts": lv.label}
        if lv.is_null:
            d["is_null_level"] = True
        if lv.tf_column:
            d["tf_adjustment_column"] = lv.tf_column
            d["tf_adjustment_weight"] = 1.0
        levels.append(d)
    return {"output_column_name": spec.name, "comparison_description": spec.description,
            "comparison_levels": levels}


def settings_dict(blocking_rules: list[str], link_type: str = "dedupe_only") -> dict:
    return {
        "link_type": link_type,
        "unique_id_column_name": "unique_id",
        "probability_two_random_records_match": 1e-4,
        "comparisons": [comparison_dict(c) for c in COMPARISONS],
        "blocking_rules_to_generate_predictions": blocking_rules,
        "retain_matching_columns": False,
        "retain_intermediate_calculation_columns": False,
    }
