"""Batch match + cluster with Splink 5 in an embedded DuckDB (used by `hub rematch`).

Candidate pairs come from the same `blocking_keys` the real-time path uses (a self-join of the
(key, id) table), registered with Splink via register_blocked_pairs_for_predict, so batch and
real time see the same candidates. Splink scores them with the model's m/u values and the
model's own term-frequency tables (not ones recomputed from this data: real time uses those too),
then clusters at `link_threshold` under the real-time path's cluster-level conflict rule
(`constrained_clusters`): links join clusters strongest first, and never join two clusters when a
record of one contradicts a record of the other, so a chain of links cannot pull different people
into one golden record the way plain connected components do.
"""
from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from .model import MatchModel
from .table import FEATURE_SCHEMA, feature_batches

# model JSON keys that are ours, not Splink's
EXTRA_KEYS = ("term_frequencies", "matching_training", "matching_decision")
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
      pairs    (id_l, id_r, match_weight, match_probability): the links the clusters were made of,
               all >= link_threshold, id_l < id_r, both ends in one cluster
      clusters (id, cluster_id) for every record; cluster_id is the smallest id of the cluster
    conflict_rule: as the real-time path decides (MatchModel.score_cluster): a pair that falls in one
    of the model's conflict levels (given name / birth date plainly different) is never a link, and
    with the model's `cluster_conflict` (the default) no link joins two clusters holding two records
    that contradict each other; False gives plain Splink (predict +
    cluster_pairwise_predictions_at_threshold).
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
        veto = _conflict_sql(model_json) if conflict_rule else ""
        if veto and MatchModel.from_json(model_json).cluster_conflict:
            # every candidate pair is scored: a contradiction below the link threshold still keeps two apart
            pred = linker.inference.predict(warning_mode="never")
            scored = con.sql(f"""SELECT unique_id_l AS id_l, unique_id_r AS id_r, match_weight, match_probability,
                                        ({veto}) AS conflict
                                 FROM {pred.physical_name}
                                 WHERE ({veto}) OR match_probability >= {float(link_threshold)!r}""").to_arrow_table()
            conflict = scored.column("conflict").combine_chunks()
            links = scored.filter(pc.invert(conflict)).drop_columns(["conflict"])
            say(f"predict: {links.num_rows} links >= {link_threshold}, {scored.num_rows - links.num_rows} "
                f"contradicting pairs ({time.time() - t0:.1f}s)")
            ids = con.sql("SELECT unique_id FROM feats ORDER BY unique_id").to_arrow_table().column(0)
            clusters = constrained_clusters(ids, links, scored.filter(conflict))
            cl = pc.index_in(links.column("id_l"), clusters.column("id"))
            same = pc.equal(pc.take(clusters.column("cluster_id"), cl),
                            pc.take(clusters.column("cluster_id"), pc.index_in(links.column("id_r"),
                                                                              clusters.column("id"))))
            pairs = links.filter(same)
            say(f"clusters: {clusters.num_rows} records, {links.num_rows - pairs.num_rows} links refused by a "
                f"contradiction in the cluster ({time.time() - t0:.1f}s)")
            return pairs, clusters
        pred = linker.inference.predict(threshold_match_probability=link_threshold, warning_mode="never")
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


def constrained_clusters(ids: pa.Array | pa.ChunkedArray, links: pa.Table, conflicts: pa.Table) -> pa.Table:
    """Cluster `ids` by `links` (id_l, id_r, match_weight), strongest first, never across a contradiction.

    conflicts: (id_l, id_r) pairs of records that contradict each other. A link joins its two
    clusters only if no record of one contradicts a record of the other: what score_cluster's
    cluster-level rule does for one new record, applied to every link. Returns (id, cluster_id) for
    every id, cluster_id being the smallest id of its cluster, ordered by id.
    """
    ids = pc.unique(ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids).sort()
    n = len(ids)
    index = {v: i for i, v in enumerate(ids.to_pylist())}
    parent = list(range(n))
    members: list[list[int] | None] = [[i] for i in range(n)]
    against: dict[int, set[int]] = {}          # cluster root -> every record some member contradicts
    for a, b in zip(conflicts.column("id_l").to_pylist(), conflicts.column("id_r").to_pylist()):
        ia, ib = index[a], index[b]
        against.setdefault(ia, set()).add(ib)
        against.setdefault(ib, set()).add(ia)

    def find(i: int) -> int:
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return root

    # strongest first, weights compared to 1e-9: engines sum a pair's weights in different orders (DuckDB,
    # Spark), which moves the last bits; rounded, equal weights tie and fall back to the ids on every engine
    ranked = pa.table({"w": pc.round(links.column("match_weight"), 9), "id_l": links.column("id_l"),
                       "id_r": links.column("id_r")})
    order = pc.sort_indices(ranked, sort_keys=[("w", "descending"), ("id_l", "ascending"), ("id_r", "ascending")])
    ls = pc.take(links.column("id_l"), order).to_pylist()
    rs = pc.take(links.column("id_r"), order).to_pylist()
    for a, b in zip(ls, rs):
        ra, rb = find(index[a]), find(index[b])
        if ra == rb:
            continue
        if len(members[ra]) < len(members[rb]):
            ra, rb = rb, ra
        hostile_a, hostile_b = against.get(ra), against.get(rb)
        if hostile_a and any(m in hostile_a for m in members[rb]):
            continue
        parent[rb] = ra
        members[ra].extend(members[rb])
        members[rb] = None
        if hostile_b:
            if hostile_a is None:
                against[ra] = hostile_b
            else:
                hostile_a |= hostile_b
            del against[rb]
    smallest = [0] * n
    for root, group in enumerate(members):
        if group is not None:
            low = min(group)
            for i in group:
                smallest[i] = low
    return pa.table({"id": ids, "cluster_id": pc.take(ids, pa.array(smallest, pa.int64()))})


def _conflict_sql(model_json: dict) -> str:
    """SQL over Splink's mw_<comparison> columns that is true when a pair falls in a conflict level.

    Splink writes each level's weight as the literal cast(log2(m/u) as float8), so the weight the
    evaluator computes the same way identifies the level exactly (checked: no other level of the
    comparison has the same weight, else the rule is refused).
    """
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
