"""Train the match model with Splink 5 (u by random sampling, m by EM, lambda by deterministic rules)."""
from __future__ import annotations

import json
import logging
import os
import tempfile
from typing import Iterable, Mapping

import duckdb
import pyarrow as pa

from .spec import TF_COLUMNS, settings_dict
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

log = logging.getLogger(__name__)


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
          m_caps: dict[tuple[str, str], float] | None = None) -> dict:
    """Train on standardised records; returns the model JSON (Splink settings + term_frequencies).

    Records are numbered by position unless id_column names an integer id column. m_caps (default
    M_CAPS) bounds m of named (comparison, level) pairs after EM; pass {} for pure EM.
    """
    from splink import block_on  # noqa: F401  (import check: splink present)

    features = feature_table(records, id_column=id_column)
    con = duckdb.connect()
    linker, _ = make_linker(con, features, settings_dict(PREDICT_BLOCKING_RULES))
    linker.training.estimate_probability_two_random_records_match(DETERMINISTIC_RULES,
                                                                  recall=DETERMINISTIC_RECALL)
    linker.training.estimate_u_using_random_sampling(max_pairs=max_pairs_u, seed=seed)
    for rule in EM_BLOCKING_RULES:
        linker.training.estimate_parameters_using_expectation_maximisation(
            rule, estimate_without_term_frequencies=True, max_pairs=max_pairs_em)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.json")
        linker.misc.save_model_to_json(path, overwrite=True)
        with open(path) as f:
            model = json.load(f)
    apply_m_caps(model, M_CAPS if m_caps is None else m_caps)
    model["term_frequencies"] = term_frequency_tables(linker)
    model["matching_training"] = {
        "records": features.num_rows, "seed": seed, "max_pairs_u": max_pairs_u, "max_pairs_em": max_pairs_em,
        "em_blocking_rules": EM_BLOCKING_RULES, "deterministic_rules": DETERMINISTIC_RULES,
        "deterministic_recall": DETERMINISTIC_RECALL,
        "m_caps": [[c, lv, v] for (c, lv), v in (M_CAPS if m_caps is None else m_caps).items()],
    }
    con.close()
    return model
