"""Train the match model with Splink 5 (u by random sampling, m by EM, lambda by deterministic rules)."""
from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from typing import Iterable, Mapping

import duckdb
import pyarrow as pa

from .features import FEATURE_COLUMNS
from .spec import COMPARISONS, TF_COLUMNS, settings_dict
from .table import feature_table

# Blocking rules written into the model's settings; `predict_clusters` does not use them (it
# blocks on blocking_keys so batch and real time see the same candidates) but Splink's own
# linker.inference.predict on the saved model does.
PREDICT_BLOCKING_RULES = [
    "l.email = r.email",
    "l.phone = r.phone",
    "l.nid = r.nid",
    "l.family = r.family AND l.dob = r.dob",
    "l.given = r.given AND l.dob = r.dob",
    "l.family = r.family AND l.postcode = r.postcode",
]
# Lambda: pairs these rules find are almost all true matches; Splink corrects by the assumed recall.
DETERMINISTIC_RULES = [
    "l.email = r.email AND l.given = r.given",
    "l.given = r.given AND l.family = r.family AND l.dob = r.dob",
]
DETERMINISTIC_RECALL = 0.7
# EM sessions: each leaves the blocked columns' comparisons untrained, together they cover all.
EM_BLOCKING_RULES = [
    "l.dob = r.dob",
    "l.given = r.given AND l.family = r.family",
]

# EM over-estimates m of the person attributes' "else" levels: in its blocked pairs, household
# members (same family, address, phone, sometimes a shared mailbox or a twin's birth date) look
# like matches, so their different given names / birth dates count as match behaviour. These
# caps are the rates measured on labelled gen_customers data (seed 11, 20k people: given name
# 0.19%, birth date 0.57% of true pairs), rounded up; the other levels are rescaled to sum to 1.
M_CAPS = {("given_name", "else"): 0.002, ("date_of_birth", "else"): 0.006}
# ... but only where the data agrees that true pairs rarely fall there: pure EM puts household
# contamination at ~1.3% on gen_customers data, while data whose duplicates really do carry another
# given name or an unreadable birth date (FEBRL: 11% and 7% of true pairs) shows far more. Above this m
# the level is neither capped nor a conflict level (`matching_decision`): the data knows better.
CONFLICT_MAX_M = 0.03
# A comparison whose attributes fewer than this share of records have is left out of the model
# (it would only ever be null; its m and u cannot be estimated from the data).
MIN_PRESENCE = 0.01
# Candidate EM blocking rules, in order of preference; `choose_em_rules` takes those whose columns the
# data has (each in at least EM_MIN_PRESENCE of records) until every comparison is trained by one.
EM_RULE_CANDIDATES = [
    "l.dob = r.dob",
    "l.given = r.given AND l.family = r.family",
    "l.nid = r.nid",
    "l.email = r.email",
    "l.phone = r.phone",
    "l.family = r.family AND l.postcode = r.postcode",
]
EM_MIN_PRESENCE = 0.2
# m = u for a level that needs an absent attribute (weight 0; it cannot occur in this data)
IMPOSSIBLE = 1e-9
# Lambda rules where the data has no email / birth date: a national id with the family name, names + postcode.
FALLBACK_DETERMINISTIC_RULES = [
    "l.nid = r.nid AND l.family = r.family",
    "l.given = r.given AND l.family = r.family AND l.postcode = r.postcode",
]

log = logging.getLogger(__name__)


def rule_columns(rule: str) -> set[str]:
    """The feature columns a blocking rule or SQL condition reads (`l.dob`, `given_l`, ...)."""
    cols = set(re.findall(r"\b[lr]\.(\w+)", rule)) | set(re.findall(r"\b(\w+)_[lr]\b", rule))
    return cols & set(FEATURE_COLUMNS)


def comparison_columns() -> dict[str, set[str]]:
    """Feature columns each comparison of the spec reads."""
    return {c.name: set().union(*(rule_columns(lv.sql) for lv in c.levels)) for c in COMPARISONS}


def presence(features: pa.Table) -> dict[str, float]:
    """Share of records with a value, per feature column."""
    n = max(features.num_rows, 1)
    return {c: round(1.0 - features.column(c).null_count / n, 6) for c in FEATURE_COLUMNS}


def choose_comparisons(present: dict[str, float], min_presence: float = MIN_PRESENCE) -> tuple[list[str], list[str]]:
    """(kept, left out) comparison names: a comparison stays when any of its columns is present enough."""
    kept, dropped = [], []
    for name, cols in comparison_columns().items():
        (kept if max(present.get(c, 0.0) for c in cols) >= min_presence else dropped).append(name)
    return kept, dropped


def choose_em_rules(present: dict[str, float], kept: list[str]) -> list[str]:
    """EM blocking rules from the attributes present, until every kept comparison is trained by one session
    (a session trains the comparisons that do not read its rule's columns)."""
    cols = comparison_columns()
    untrained, rules = set(kept), []
    for rule in EM_RULE_CANDIDATES:
        rc = rule_columns(rule)
        if min(present.get(c, 0.0) for c in rc) < EM_MIN_PRESENCE:
            continue
        trains = {name for name in untrained if not (cols[name] & rc)}
        if trains:
            rules.append(rule)
            untrained -= trains
        if not untrained:
            break
    return rules


def choose_deterministic_rules(present: dict[str, float]) -> list[str]:
    """Lambda rules whose columns the data has; the fallbacks where none of the usual ones apply."""
    usable = [r for r in DETERMINISTIC_RULES + FALLBACK_DETERMINISTIC_RULES
              if min(present.get(c, 0.0) for c in rule_columns(r)) >= EM_MIN_PRESENCE]
    usual = [r for r in usable if r in DETERMINISTIC_RULES]
    return usual or usable[:1]


def complete(model: dict, base: dict) -> list[str]:
    """Give levels the data never showed (Splink leaves their m or u out) the base model's values.

    A small hub rarely has a pair in every level (a swapped day and month, a national id); without a
    value the model cannot be evaluated. The trained levels are rescaled so each comparison's m (and u)
    still sum to 1. Returns "comparison/level/m|u" for every value taken from the base.
    """
    base_levels = {(c["output_column_name"], lv.get("label_for_charts")): lv
                   for c in base["comparisons"] for lv in c["comparison_levels"]}
    filled = []
    for comp in model["comparisons"]:
        levels = [lv for lv in comp["comparison_levels"] if not lv.get("is_null_level")]
        for key in ("m_probability", "u_probability"):
            missing = [lv for lv in levels if key not in lv]
            if not missing:
                continue
            borrowed = [base_levels[(comp["output_column_name"], lv.get("label_for_charts"))][key] for lv in missing]
            trained = [lv for lv in levels if key in lv]
            scale = (1.0 - sum(borrowed)) / (sum(lv[key] for lv in trained) or 1.0)
            for lv in trained:
                lv[key] *= scale
            for lv, value in zip(missing, borrowed, strict=True):
                lv[key] = value
                filled.append(f"{comp['output_column_name']}/{lv.get('label_for_charts')}/{key[0]}")
    return filled


def decide_caps(model: dict, caps: dict[tuple[str, str], float],
                max_m: float = CONFLICT_MAX_M) -> tuple[dict[tuple[str, str], float], list[list[str]], dict]:
    """Which caps (and conflict levels) the data supports: those whose EM m is at most max_m.

    Returns the caps to apply, the conflict levels for `matching_decision`, and per capped level what EM
    said and what was decided."""
    m_of = {(c["output_column_name"], lv.get("label_for_charts")): lv.get("m_probability")
            for c in model["comparisons"] for lv in c["comparison_levels"]}
    keep, conflicts, why = {}, [], {}
    for key, cap in caps.items():
        if key not in m_of:
            why["/".join(key)] = "comparison left out"
            continue
        m = m_of[key]
        if m is None or m <= max_m:
            keep[key] = cap
            conflicts.append(list(key))
            why["/".join(key)] = f"EM m {m if m is None else round(m, 5)} <= {max_m}: capped at {cap}, conflict level"
        else:
            why["/".join(key)] = f"EM m {round(m, 5)} > {max_m}: true pairs often differ here; EM's m kept, no conflict rule"
    return keep, conflicts, why


def apply_m_caps(model: dict, caps: dict[tuple[str, str], float]) -> None:
    for comp in model["comparisons"]:
        levels = [lv for lv in comp["comparison_levels"] if not lv.get("is_null_level")]
        for lv in levels:
            cap = caps.get((comp["output_column_name"], lv.get("label_for_charts")))
            if cap is None or lv["m_probability"] <= cap:
                continue
            rest = [o for o in levels if o is not lv]
            scale = (1.0 - cap) / sum(o["m_probability"] for o in rest)
            for o in rest:
                o["m_probability"] *= scale
            lv["m_probability"] = cap
            lv["fix_m_probability"] = True


def make_linker(con: duckdb.DuckDBPyConnection, features: pa.Table, settings: dict | str, name: str = "records"):
    from splink import DuckDBAPI, Linker

    db_api = DuckDBAPI(connection=con)
    sdf = db_api.register(features, dataset_display_name=name)
    return Linker(sdf, settings), db_api


def term_frequency_tables(linker) -> dict[str, dict[str, float]]:
    out = {}
    for col in TF_COLUMNS:
        tf = linker.table_management.compute_tf_table(col)
        rows = linker._db_api._con.sql(f"select {col}, tf_{col} from {tf.physical_name}").fetchall()
        out[col] = {v: float(t) for v, t in sorted(rows)}
    return out


def train(records: Iterable[Mapping] | pa.Table, *, seed: int = 1, max_pairs_u: float = 1e7,
          max_pairs_em: float = 2e6, id_column: str | None = None,
          m_caps: dict[tuple[str, str], float] | None = None, prior: dict | None = None,
          adapt: bool = True) -> dict:
    """Train on standardised records; returns the model JSON (Splink settings + term_frequencies).

    Records are numbered by position unless id_column names an integer id column. The model fits the
    data (adapt=True): comparisons whose attributes are absent (< MIN_PRESENCE of records) are left
    out; EM blocking rules and lambda rules are chosen from the attributes present; levels the data
    never showed take the `prior` model's m/u (when given; listed in the report); the m caps (default
    M_CAPS, {} for pure EM) and the conflict rule apply only where EM agrees true pairs rarely differ.
    model["matching_training"]["report"] says what was estimated from what.
    """
    from splink import block_on  # noqa: F401  (import check: splink present)

    features = feature_table(records, id_column=id_column)
    present = presence(features)
    caps = M_CAPS if m_caps is None else m_caps
    if adapt:
        kept, dropped = choose_comparisons(present)
        em_rules = choose_em_rules(present, kept) or EM_BLOCKING_RULES
        det_rules = choose_deterministic_rules(present) or DETERMINISTIC_RULES
        predict_rules = [r for r in PREDICT_BLOCKING_RULES
                         if min(present.get(c, 0.0) for c in rule_columns(r)) >= MIN_PRESENCE] or PREDICT_BLOCKING_RULES
    else:
        kept, dropped = [c.name for c in COMPARISONS], []
        em_rules, det_rules, predict_rules = EM_BLOCKING_RULES, DETERMINISTIC_RULES, PREDICT_BLOCKING_RULES
    settings = settings_dict(predict_rules)
    settings["comparisons"] = [c for c in settings["comparisons"] if c["output_column_name"] in kept]
    con = duckdb.connect()
    linker, _ = make_linker(con, features, settings)
    linker.training.estimate_probability_two_random_records_match(det_rules, recall=DETERMINISTIC_RECALL)
    linker.training.estimate_u_using_random_sampling(max_pairs=max_pairs_u, seed=seed)
    cols = comparison_columns()
    sessions = []
    for rule in em_rules:
        try:
            linker.training.estimate_parameters_using_expectation_maximisation(
                rule, estimate_without_term_frequencies=True, max_pairs=max_pairs_em)
        except Exception as e:  # noqa: BLE001 - a rule without pairs: the other sessions still train
            log.warning("EM on %s failed: %s", rule, type(e).__name__)
            sessions.append({"rule": rule, "trains": [], "failed": type(e).__name__})
            continue
        sessions.append({"rule": rule, "trains": [n for n in kept if not (cols[n] & rule_columns(rule))]})
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.json")
        linker.misc.save_model_to_json(path, overwrite=True)
        with open(path) as f:
            model = json.load(f)
    levels_report = _levels_report(model, sessions)
    impossible = []
    if adapt:  # levels that need an absent attribute cannot occur here: weight 0, the rest keep the mass
        for comp in model["comparisons"]:
            for lv in comp["comparison_levels"]:
                absent = sorted(c for c in rule_columns(lv["sql_condition"]) if present.get(c, 0.0) < MIN_PRESENCE)
                if lv.get("is_null_level") or not absent:
                    continue
                for key in ("m_probability", "u_probability"):
                    if key not in lv:
                        lv[key] = IMPOSSIBLE
                        impossible.append(lv)
                        levels_report[comp["output_column_name"]][lv["label_for_charts"]][key[0]] = \
                            f"absent ({', '.join(absent)}): cannot occur"
    filled = complete(model, prior) if prior is not None else []
    for item in filled:
        comp, rest = item.split("/", 1)        # level labels may hold "/" (day/month swapped)
        label, which = rest.rsplit("/", 1)
        levels_report[comp][label][which] = "prior"
    if adapt:
        caps, conflicts, cap_why = decide_caps(model, caps)
        model["matching_decision"] = {"conflict_levels": conflicts, "conflict_cap_probability": 0.9,
                                      "cluster_conflict": True}
    else:
        cap_why = {"/".join(k): f"capped at {v}" for k, v in caps.items()}
    apply_m_caps(model, caps)
    for lv in impossible:  # rescaling (prior, caps) moved them: equal again, so weight 0 if one ever occurs
        lv["m_probability"] = lv["u_probability"] = IMPOSSIBLE
    for (comp, label) in caps:
        if comp in levels_report and label in levels_report[comp]:
            levels_report[comp][label]["m"] = "cap"
    model["term_frequencies"] = term_frequency_tables(linker)
    n = features.num_rows
    model["matching_training"] = {
        "records": n, "seed": seed, "max_pairs_u": max_pairs_u, "max_pairs_em": max_pairs_em,
        "em_blocking_rules": em_rules, "deterministic_rules": det_rules,
        "deterministic_recall": DETERMINISTIC_RECALL,
        "m_caps": [[c, lv, v] for (c, lv), v in caps.items()],
        "report": {
            "records": n,
            "presence": present,
            "comparisons_kept": kept,
            "comparisons_left_out": {name: f"attributes present in fewer than {MIN_PRESENCE:.0%} of records "
                                           f"({', '.join(f'{c} {present[c]:.1%}' for c in sorted(cols[name]))})"
                                     for name in dropped},
            "lambda": {"rules": det_rules, "assumed_recall": DETERMINISTIC_RECALL,
                       "value": model["probability_two_random_records_match"]},
            "u": f"random sampling of up to {max_pairs_u:.0f} pairs (seed {seed})",
            "em_sessions": sessions,
            "levels": levels_report,
            "caps": cap_why,
            "term_frequencies": {c: f"{len(t)} values from these records" for c, t in model["term_frequencies"].items()},
        },
    }
    con.close()
    return model


def _levels_report(model: dict, sessions: list[dict]) -> dict[str, dict[str, dict[str, str]]]:
    """Per comparison and level, where m and u came from (before filling from the prior)."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    for comp in model["comparisons"]:
        name = comp["output_column_name"]
        em = [s["rule"] for s in sessions if name in s["trains"]]
        out[name] = {}
        for lv in comp["comparison_levels"]:
            if lv.get("is_null_level"):
                continue
            out[name][lv.get("label_for_charts")] = {
                "m": ("EM on " + " | ".join(em)) if "m_probability" in lv else "not observed",
                "u": "random sampling" if "u_probability" in lv else "not observed"}
    return out


def report_lines(model: dict) -> list[str]:
    """The training report as lines for a terminal."""
    rep = (model.get("matching_training") or {}).get("report")
    if not rep:
        return []
    lines = [f"trained on {rep['records']} records; lambda {rep['lambda']['value']:.3g} from "
             + " OR ".join(rep["lambda"]["rules"]) + f" (recall {rep['lambda']['assumed_recall']})",
             f"u: {rep['u']}"]
    for name, why in rep["comparisons_left_out"].items():
        lines.append(f"left out: {name}: {why}")
    for s in rep["em_sessions"]:
        lines.append(f"EM on {s['rule']}: trains {', '.join(s['trains']) or 'nothing'}"
                     + (f" (failed: {s['failed']})" if s.get("failed") else ""))
    for name, levels in rep["levels"].items():
        prior = [f"{lv} {which}" for lv, src in levels.items() for which, v in src.items() if v == "prior"]
        unseen = [f"{lv} {which}" for lv, src in levels.items() for which, v in src.items() if v == "not observed"]
        if prior:
            lines.append(f"{name}: from the prior model (not observed here): {', '.join(prior)}")
        absent = sorted({lv for lv, src in levels.items() for v in src.values() if v.startswith("absent")})
        if absent:
            lines.append(f"{name}: cannot occur here (an attribute is absent), weight 0: {', '.join(absent)}")
        if unseen:
            lines.append(f"{name}: not observed, no prior: {', '.join(unseen)}")
    for key, why in rep["caps"].items():
        lines.append(f"{key}: {why}")
    lines.append("term frequencies: " + ", ".join(f"{c} {v}" for c, v in rep["term_frequencies"].items()))
    return lines
