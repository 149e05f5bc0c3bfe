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

log = logging.getLogger(__name__)


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
          max_pairs_em: float = 2e6, id_column: str | None = None) -> dict:
    """Train on standardised records; returns the model JSON (Splink settings + term_frequencies).

    Records are numbered by position unless id_column names an integer id column.
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
    model["term_frequencies"] = term_frequency_tables(linker)
    model["matching_training"] = {
        "records": features.num_rows, "seed": seed, "max_pairs_u": max_pairs_u, "max_pairs_em": max_pairs_em,
        "em_blocking_rules": EM_BLOCKING_RULES, "deterministic_rules": DETERMINISTIC_RULES,
        "deterministic_recall": DETERMINISTIC_RECALL,
    }
    con.close()
    return model
