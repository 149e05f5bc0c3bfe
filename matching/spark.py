"""Splink 5 on Apache Spark (`SparkAPI`): the batch matcher and the trainer for what outgrows one machine.

The same steps as the DuckDB path (`matching.cluster.predict_clusters`, `matching.train.train`):
candidate pairs from the real-time blocking keys (a self-join of (key, id), groups above
`max_key_group` dropped), Splink predict with the model's m/u and its own term-frequency tables,
the model's conflict levels, then `constrained_clusters` on the links and contradictions collected
from Spark, so the clusters are the same whichever engine scored the pairs. Training runs Splink's
estimators on a Spark DataFrame of the features.

`pip install -e '.[spark]'` (pyspark, pandas) and a Java runtime (17+). `master`: `local[*]` runs
Spark in this process's machine; `spark://host:7077`, `yarn` or `k8s://...` a cluster.
Traps avoided here: Splink's similarity functions (jaro_winkler, ...) live in a jar that must be on
the session's classpath (`spark.jars`), clustering needs a checkpoint directory, and
`as_pandas_dataframe` needs pandas.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.compute as pc

try:  # the spark extra: pandas UDFs' type hints are resolved in this module's globals
    import pandas as pd
except ImportError:  # pragma: no cover - available() reports it
    pd = None

from .cluster import MAX_KEY_GROUP, _conflict_sql, constrained_clusters, splink_settings
from .model import MatchModel
from .spec import settings_dict
from .table import feature_batches, feature_table


def available() -> str | None:
    """None when Spark can run here, else why not (no pyspark, no java)."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed: pip install -e '.[spark]'"
    if pd is None:
        return "pandas is not installed: pip install -e '.[spark]'"
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "no Java runtime (java on PATH or JAVA_HOME): Spark needs Java 17 or later"
    return None


@contextmanager
def spark_session(master: str = "local[*]", *, app_name: str = "hub-matching",
                  conf: Mapping[str, str] | None = None) -> Iterator[Any]:
    """A Spark session fit for Splink, stopped at the end, with a private checkpoint directory."""
    why = available()
    if why:
        raise RuntimeError(why)
    from pyspark.sql import SparkSession
    from splink.backends.spark import similarity_jar_location

    active = SparkSession.getActiveSession()
    if active is not None:  # the caller's session (a notebook, a test): used, not stopped
        yield active
        return
    checkpoints = tempfile.mkdtemp(prefix="matching_spark_")
    builder = (SparkSession.builder.master(master).appName(app_name)
               .config("spark.jars", similarity_jar_location())
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .config("spark.sql.shuffle.partitions", str(_partitions(master)))
               .config("spark.local.dir", checkpoints))
    if master.startswith("local") and not os.environ.get("PYSPARK_PYTHON"):
        # Python workers (the similarity UDFs) run this interpreter, with this environment's packages
        # (pyspark reads the variable when the context starts; a cluster's executors name their own)
        os.environ["PYSPARK_PYTHON"] = sys.executable
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    spark.sparkContext.setCheckpointDir(os.path.join(checkpoints, "checkpoints"))
    try:
        yield spark
    finally:
        spark.stop()
        shutil.rmtree(checkpoints, ignore_errors=True)


def _partitions(master: str) -> int:
    # local[N] / local[*]: a few partitions per core; a cluster keeps Spark's default of 200
    if master.startswith("local"):
        return max(4, 2 * (os.cpu_count() or 2))
    return 200


def _frame(spark, table: pa.Table):
    return spark.createDataFrame(table) if table.num_rows else spark.createDataFrame(
        [], schema=_spark_schema(table.schema))


def _spark_schema(schema: pa.Schema):
    from pyspark.sql import types as T

    def typ(t: pa.DataType):
        if pa.types.is_list(t):
            return T.ArrayType(typ(t.value_type))
        if pa.types.is_integer(t):
            return T.LongType()
        if pa.types.is_floating(t):
            return T.DoubleType()
        return T.StringType()
    return T.StructType([T.StructField(f.name, typ(f.type)) for f in schema])


def _to_arrow(df) -> pa.Table:
    return df.toArrow() if hasattr(df, "toArrow") else pa.Table.from_pandas(df.toPandas(), preserve_index=False)


# The model's comparison SQL is written for DuckDB. On Spark, list_has_any is arrays_overlap, and the
# string similarities are vectorised UDFs over rapidfuzz: DuckDB's and the real-time evaluator's are
# bit-identical to rapidfuzz, while the Java ones of Splink's jar are not (its Jaro-Winkler scores
# "ypriya"/"prya" differently), which would move links across the threshold.
_SPARK_FUNCTIONS = {"list_has_any(": "arrays_overlap(", "jaro_winkler_similarity(": "hub_jaro_winkler(",
                    "damerau_levenshtein(": "hub_damerau_levenshtein("}


def _elementwise(a, b, metric: str):
    from rapidfuzz.distance import DamerauLevenshtein, JaroWinkler
    from rapidfuzz.process import cpdist

    scorer = JaroWinkler.similarity if metric == "jw" else DamerauLevenshtein.distance
    present = (a.notna() & b.notna()).to_numpy()
    out = pd.Series([None] * len(a), dtype="object")
    if present.any():
        out[present] = cpdist(a[present].tolist(), b[present].tolist(), scorer=scorer, workers=1).tolist()
    return out.astype("float64") if metric == "jw" else out.astype("Int64")


def hub_jaro_winkler(a: pd.Series, b: pd.Series) -> pd.Series:
    """rapidfuzz's Jaro-Winkler similarity of each pair; null when either is null (as DuckDB's)."""
    return _elementwise(a, b, "jw")


def hub_damerau_levenshtein(a: pd.Series, b: pd.Series) -> pd.Series:
    """rapidfuzz's Damerau-Levenshtein distance of each pair; null when either is null (as DuckDB's)."""
    return _elementwise(a, b, "dl")


def _register_similarities(spark) -> None:
    from pyspark.sql.functions import pandas_udf

    spark.udf.register("hub_jaro_winkler", pandas_udf(hub_jaro_winkler, "double"))
    spark.udf.register("hub_damerau_levenshtein", pandas_udf(hub_damerau_levenshtein, "long"))


def _translate(settings: dict, mapping: dict[str, str], dialect: str) -> dict:
    out = json.loads(json.dumps(settings))
    for comparison in out["comparisons"]:
        for level in comparison["comparison_levels"]:
            sql = level["sql_condition"]
            for old, new in mapping.items():
                sql = re.sub(re.escape(old), new, sql, flags=re.IGNORECASE)
            level["sql_condition"] = sql
    out["sql_dialect"] = dialect
    return out


def spark_settings(settings: dict) -> dict:
    """Splink settings (a model's, or the training spec's) with the comparison SQL in Spark's dialect."""
    return _translate(settings, _SPARK_FUNCTIONS, "spark")


def duckdb_settings(settings: dict) -> dict:
    """The reverse of spark_settings: a model trained on Spark, as the hub stores and evaluates it."""
    return _translate(settings, {v: k for k, v in _SPARK_FUNCTIONS.items()}, "duckdb")


def _register_term_frequencies(linker, db_api, spark, model_json: dict, tag: str) -> None:
    for col, table in (model_json.get("term_frequencies") or {}).items():
        tf = pa.table({col: pa.array(list(table.keys()), pa.string()),
                       f"tf_{col}": pa.array(list(table.values()), pa.float64())})
        sdf = db_api.register(_frame(spark, tf), dataset_display_name=f"__matching_tf_{col}_{tag}")
        linker.table_management.register_term_frequency_lookup(sdf, col)


def predict_clusters_spark(records, model_json: dict, *, link_threshold: float, spark=None,
                           master: str = "local[*]", progress: Callable[[str], None] | None = None,
                           id_column: str = "id", max_key_group: int = MAX_KEY_GROUP,
                           conflict_rule: bool = True) -> tuple[pa.Table, pa.Table]:
    """`matching.cluster.predict_clusters` on Spark: same inputs, same (pairs, clusters) outputs.

    spark: a session from `spark_session` (one is made on `master` and stopped if not given).
    """
    if spark is None:
        with spark_session(master) as session:
            return predict_clusters_spark(records, model_json, link_threshold=link_threshold, spark=session,
                                          progress=progress, id_column=id_column, max_key_group=max_key_group,
                                          conflict_rule=conflict_rule)
    from splink import Linker, SparkAPI

    say = progress or (lambda msg: None)
    t0 = time.time()
    tag = uuid.uuid4().hex[:8]  # names of this run's tables: a reused session keeps earlier runs' views
    feats, keys = [], []
    for fb, kb in feature_batches(records, id_column=id_column, with_keys=True):
        feats.append(fb)
        keys.append(kb)
    from .table import FEATURE_SCHEMA
    features = pa.Table.from_batches(feats, schema=FEATURE_SCHEMA) if feats else FEATURE_SCHEMA.empty_table()
    bkeys = pa.Table.from_batches(keys) if keys else pa.table({"key": pa.array([], pa.string()),
                                                               "unique_id": pa.array([], pa.int64())})
    spark_feats = _frame(spark, features).cache()
    ids = features.column("unique_id")
    del feats, features
    _frame(spark, bkeys).createOrReplaceTempView(f"matching_bkeys_{tag}")
    say(f"features: {spark_feats.count()} records ({time.time() - t0:.1f}s)")
    blocked = spark.sql(f"""
        WITH k AS (
            SELECT key, unique_id FROM matching_bkeys_{tag}
            WHERE key IN (SELECT key FROM matching_bkeys_{tag} GROUP BY key
                          HAVING count(*) BETWEEN 2 AND {int(max_key_group)})
        )
        SELECT DISTINCT 0 AS match_key, a.unique_id AS join_key_l, b.unique_id AS join_key_r
        FROM k a JOIN k b ON a.key = b.key AND a.unique_id < b.unique_id""").checkpoint()
    say(f"blocking: {blocked.count()} candidate pairs ({time.time() - t0:.1f}s)")

    db_api = SparkAPI(spark_session=spark)
    _register_similarities(spark)
    settings = spark_settings(splink_settings(model_json))
    if conflict_rule:
        settings["retain_intermediate_calculation_columns"] = True
    linker = Linker(db_api.register(spark_feats, dataset_display_name=f"matching_records_{tag}"), settings)
    _register_term_frequencies(linker, db_api, spark, model_json, tag)
    linker.table_management.register_blocked_pairs_for_predict(
        db_api.register(blocked, dataset_display_name=f"matching_blocked_pairs_{tag}"))
    veto = _conflict_sql(model_json) if conflict_rule else ""
    constrained = bool(veto) and MatchModel.from_json(model_json).cluster_conflict
    threshold = float(link_threshold)
    if constrained:
        pred = linker.inference.predict(warning_mode="never")
        scored = _to_arrow(spark.sql(f"""
            SELECT unique_id_l AS id_l, unique_id_r AS id_r, match_weight, match_probability, ({veto}) AS conflict
            FROM {pred.physical_name} WHERE ({veto}) OR match_probability >= {threshold!r}"""))
    else:
        pred = linker.inference.predict(threshold_match_probability=threshold, warning_mode="never")
        where = f"WHERE NOT ({veto})" if veto else ""
        scored = _to_arrow(spark.sql(f"""
            SELECT unique_id_l AS id_l, unique_id_r AS id_r, match_weight, match_probability, false AS conflict
            FROM {pred.physical_name} {where}"""))
    scored = scored.cast(pa.schema([("id_l", pa.int64()), ("id_r", pa.int64()), ("match_weight", pa.float64()),
                                    ("match_probability", pa.float64()), ("conflict", pa.bool_())]))
    conflict = scored.column("conflict").combine_chunks()
    links = scored.filter(pc.invert(conflict)).drop_columns(["conflict"])
    say(f"predict: {links.num_rows} links >= {link_threshold}, {scored.num_rows - links.num_rows} "
        f"contradicting pairs ({time.time() - t0:.1f}s)")
    # the clustering is the hub's own, on the driver, exactly as after DuckDB's predict; without the
    # conflict rule there are no contradictions and it is connected components
    clusters = constrained_clusters(ids, links, scored.filter(conflict))
    cl = clusters.column("cluster_id")
    index = clusters.column("id")
    same = pc.equal(pc.take(cl, pc.index_in(links.column("id_l"), index)),
                    pc.take(cl, pc.index_in(links.column("id_r"), index)))
    pairs = links.filter(same)
    say(f"clusters: {clusters.num_rows} records ({time.time() - t0:.1f}s)")
    spark_feats.unpersist()
    spark.catalog.dropTempView(f"matching_bkeys_{tag}")
    return pairs, clusters


def train_spark(records: Iterable[Mapping] | pa.Table, *, spark=None, master: str = "local[*]", seed: int = 1,
                max_pairs_u: float = 1e7, max_pairs_em: float = 2e6, id_column: str | None = None,
                m_caps: dict[tuple[str, str], float] | None = None) -> dict:
    """`matching.train.train` on Spark: the same estimators, rules and m caps; returns the model JSON."""
    if spark is None:
        with spark_session(master) as session:
            return train_spark(records, spark=session, seed=seed, max_pairs_u=max_pairs_u,
                               max_pairs_em=max_pairs_em, id_column=id_column, m_caps=m_caps)
    from splink import Linker, SparkAPI

    from .spec import TF_COLUMNS
    from .train import (
        DETERMINISTIC_RECALL, DETERMINISTIC_RULES, EM_BLOCKING_RULES, M_CAPS, PREDICT_BLOCKING_RULES, apply_m_caps,
    )

    features = feature_table(records, id_column=id_column)
    db_api = SparkAPI(spark_session=spark)
    frame = _frame(spark, features).cache()
    _register_similarities(spark)
    linker = Linker(db_api.register(frame, dataset_display_name=f"records_{uuid.uuid4().hex[:8]}"),
                    spark_settings(settings_dict(PREDICT_BLOCKING_RULES)))
    linker.training.estimate_probability_two_random_records_match(DETERMINISTIC_RULES, recall=DETERMINISTIC_RECALL)
    linker.training.estimate_u_using_random_sampling(max_pairs=max_pairs_u, seed=seed)
    for rule in EM_BLOCKING_RULES:
        linker.training.estimate_parameters_using_expectation_maximisation(
            rule, estimate_without_term_frequencies=True, max_pairs=max_pairs_em)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.json")
        linker.misc.save_model_to_json(path, overwrite=True)
        with open(path) as f:
            model = duckdb_settings(json.load(f))
    caps = M_CAPS if m_caps is None else m_caps
    apply_m_caps(model, caps)
    tfs = {}
    for col in TF_COLUMNS:
        tf = linker.table_management.compute_tf_table(col)
        rows = spark.sql(f"SELECT {col}, tf_{col} FROM {tf.physical_name}").collect()
        tfs[col] = {r[0]: float(r[1]) for r in sorted(rows, key=lambda r: r[0])}
    model["term_frequencies"] = tfs
    model["matching_training"] = {
        "records": features.num_rows, "seed": seed, "max_pairs_u": max_pairs_u, "max_pairs_em": max_pairs_em,
        "em_blocking_rules": EM_BLOCKING_RULES, "deterministic_rules": DETERMINISTIC_RULES,
        "deterministic_recall": DETERMINISTIC_RECALL, "engine": "spark",
        "m_caps": [[c, lv, v] for (c, lv), v in caps.items()],
    }
    frame.unpersist()
    return model
