"""Batch match + cluster with Splink 5 in an embedded DuckDB (used by `hub rematch`).

Candidate pairs come from the same `blocking_keys` the real-time path uses (a self-join of the
(key, id) table), registered with Splink via register_blocked_pairs_for_predict, so batch and
real time see the same candidates. Splink scores them with the model's m/u values and the
model's own term-frequency tables (not ones recomputed from this data: real time uses those too),
then clusters with connected components at `link_threshold`.
"""
from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable

import duckdb
import pyarrow as pa

from .table import FEATURE_SCHEMA, feature_batches

# model JSON keys that are ours, not Splink's
EXTRA_KEYS = ("term_frequencies", "matching_training")
# a blocking key shared by more records than this is a placeholder value ("none@none.com",
# "+10000000000"), not evidence; the real-time lookup should apply the same cap
MAX_KEY_GROUP = 300


def splink_settings(model_json: dict) -> dict:
    return {k: v for k, v in model_json.items() if k not in EXTRA_KEYS}


def register_term_frequencies(linker, db_api, model_json: dict, prefix: str = "tf") -> None:
    for col, table in (model_json.get("term_frequencies") or {}).items():
        tf = pa.table({col: pa.array(list(table.keys()), pa.string()),
                       f"tf_{col}": pa.array(list(table.values()), pa.float64())})
        sdf = db_api.register(tf, dataset_display_name=f"__matching_{prefix}_{col}")
        linker.table_management.register_term_frequency_lookup(sdf, col)


def predict_clusters(records, model_json: dict, *, link_threshold: float, progress: Callable[[str], None] | None = None,
                     id_column: str = "id", memory_limit: str = "6GB", threads: int | None = None,
                     max_key_group: int = MAX_KEY_GROUP, conflict_rule: bool = True) -> tuple[pa.Table, pa.Table]:
    """Score all candidate pairs of `records` and cluster them.

    records: a pyarrow Table or an iterable of mappings with an integer `id` column and the
    standardised attributes. link_threshold: a match probability (0-1); pairs at or above it
    are links. Returns two pyarrow Tables:
      pairs    (id_l, id_r, match_weight, match_probability), only pairs >= link_threshold, id_l < id_r
      clusters (id, cluster_id) for every record; cluster_id is the smallest id of the component
    conflict_rule: drop links whose pair falls in one of the model's conflict levels (given name /
    birth date plainly different, see MatchModel.score_cluster) before clustering, as the real-time
    path does for pairs; False gives plain Splink (predict + cluster_pairwise_predictions_at_threshold).
    DuckDB works under `memory_limit` and spills to a temporary directory beyond it.
    """
    from splink import DuckDBAPI, Linker

    say = progress or (lambda msg: None)
    t0 = time.time()
    tmpdir = tempfile.mkdtemp(prefix="matching_duckdb_")
    con = duckdb.connect(config={"memory_limit": memory_limit, "temp_directory": tmpdir,
                                 "preserve_insertion_order": False,
                                 **({"threads": threads} if threads else {})})
    try:
        con.execute(f"CREATE TABLE feats ({', '.join(_ddl(f) for f in FEATURE_SCHEMA)})")
        con.execute("CREATE TABLE bkeys (key VARCHAR, unique_id BIGINT)")
        n = 0
        for fb, kb in feature_batches(records, id_column=id_column, with_keys=True):
            con.register("_fb", fb)
            con.execute("INSERT INTO feats SELECT * FROM _fb")
            con.unregister("_fb")
            con.register("_kb", kb)
            con.execute("INSERT INTO bkeys SELECT * FROM _kb")
            con.unregister("_kb")
            n += fb.num_rows
            say(f"features: {n} records ({time.time() - t0:.1f}s)")
        con.execute(f"""
            CREATE TABLE blocked_pairs AS
            WITH k AS (
                SELECT key, unique_id FROM bkeys
                WHERE key IN (SELECT key FROM bkeys GROUP BY key HAVING count(*) BETWEEN 2 AND {int(max_key_group)})
            )
            SELECT DISTINCT 0 AS match_key, a.unique_id AS join_key_l, b.unique_id AS join_key_r
            FROM k a JOIN k b ON a.key = b.key AND a.unique_id < b.unique_id
        """)
        con.execute("DROP TABLE bkeys")
        n_pairs = con.sql("SELECT count(*) FROM blocked_pairs").fetchall()[0][0]
        say(f"blocking: {n_pairs} candidate pairs ({time.time() - t0:.1f}s)")

        db_api = DuckDBAPI(connection=con)
        settings = splink_settings(model_json)
        if conflict_rule:
            settings["retain_intermediate_calculation_columns"] = True     # gamma_ columns for the rule
        linker = Linker(db_api.register("feats", dataset_display_name="matching_records"), settings)
        register_term_frequencies(linker, db_api, model_json)
        linker.table_management.register_blocked_pairs_for_predict(
            db_api.register("blocked_pairs", dataset_display_name="matching_blocked_pairs"))
        pred = linker.inference.predict(threshold_match_probability=link_threshold, warning_mode="never")
        veto = _conflict_sql(model_json) if conflict_rule else ""
        if veto:
            con.execute(f"CREATE TABLE matching_links AS SELECT * FROM {pred.physical_name} WHERE NOT ({veto})")
            pred = db_api.register("matching_links", dataset_display_name="matching_links")
        pairs = con.sql(f"""SELECT unique_id_l AS id_l, unique_id_r AS id_r, match_weight, match_probability
                            FROM {pred.physical_name}""").to_arrow_table()
        say(f"predict: {pairs.num_rows} pairs >= {link_threshold} ({time.time() - t0:.1f}s)")
        clusters_sdf = linker.clustering.cluster_pairwise_predictions_at_threshold(
            pred, threshold_match_probability=link_threshold)
        clusters = con.sql(f"SELECT unique_id AS id, cluster_id FROM {clusters_sdf.physical_name} ORDER BY id"
                           ).to_arrow_table()
        say(f"clusters: {clusters.num_rows} records ({time.time() - t0:.1f}s)")
        return pairs, clusters
    finally:
        con.close()
        for root, dirs, files in os.walk(tmpdir, topdown=False):
            for f in files:
                os.remove(os.path.join(root, f))
            for d in dirs:
                os.rmdir(os.path.join(root, d))
        os.rmdir(tmpdir)


def _conflict_sql(model_json: dict) -> str:
    """SQL over Splink's mw_<comparison> columns that is true when a pair falls in a conflict level.

    Splink writes each level's weight as the literal cast(log2(m/u) as float8), so the weight the
    evaluator computes the same way identifies the level exactly (checked: no other level of the
    comparison has the same weight, else the rule is refused).
    """
    from .model import MatchModel

    model = MatchModel.from_json(model_json)
    terms = []
    for name, levels in model.comparisons:
        for lv in levels:
            if (name, lv.label) in model.conflict_levels:
                if lv.tf_col is not None or sum(o.weight == lv.weight for o in levels) != 1:
                    raise ValueError(f"conflict level {name}/{lv.label} is not identifiable by its weight")
                terms.append(f"mw_{name} = CAST({lv.weight!r} AS DOUBLE)")
    return " OR ".join(terms)


def _ddl(field: pa.Field) -> str:
    if pa.types.is_list(field.type):
        return f"{field.name} VARCHAR[]"
    if pa.types.is_integer(field.type):
        return f"{field.name} BIGINT"
    return f"{field.name} VARCHAR"
