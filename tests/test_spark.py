"""Splink on Spark (`--engine spark`): the same links, clusters and rematch plan as DuckDB."""
from __future__ import annotations

import json
from importlib import resources

import pytest

from matching import MatchModel, predict_clusters
from matching import spark as matching_spark
from tests.test_matching_data import make_records

WHY_NOT = matching_spark.available()
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=f"Splink on Spark cannot run here: {WHY_NOT}")


@pytest.fixture(scope="module")
def spark():
    with matching_spark.spark_session("local[2]") as session:
        yield session


@pytest.fixture(scope="module")
def model_json():
    return json.loads(resources.files("matching").joinpath("default_model.json").read_text(encoding="utf-8"))


def _pairs(table):
    return sorted(zip(table.column("id_l").to_pylist(), table.column("id_r").to_pylist(), strict=True))


def test_spark_links_and_clusters_equal_duckdb_on_a_small_set(spark, model_json):
    records = make_records(150, seed=3)
    duck_pairs, duck_clusters = predict_clusters(records, model_json, link_threshold=0.95)
    spark_pairs, spark_clusters = matching_spark.predict_clusters_spark(records, model_json, link_threshold=0.95,
                                                                        spark=spark)
    assert spark_clusters.sort_by("id").to_pylist() == duck_clusters.sort_by("id").to_pylist()
    assert _pairs(spark_pairs) == _pairs(duck_pairs) and duck_pairs.num_rows > 50
    duck_w = dict(zip(_pairs(duck_pairs), duck_pairs.sort_by([("id_l", "ascending"), ("id_r", "ascending")])
                      .column("match_weight").to_pylist()))
    spark_w = spark_pairs.sort_by([("id_l", "ascending"), ("id_r", "ascending")]).column("match_weight").to_pylist()
    assert all(abs(a - b) < 1e-9 for a, b in zip(duck_w.values(), spark_w, strict=True))
    # the constrained clustering ran: some links were refused, as on DuckDB
    assert len(set(duck_clusters.column("cluster_id").to_pylist())) > len(set(r["entity"] for r in records)) * 0.8


def test_spark_training_gives_a_usable_model(spark):
    records = make_records(150, seed=5)
    model = matching_spark.train_spark(records, spark=spark, max_pairs_u=2e4, max_pairs_em=2e4, id_column="id")
    assert model["matching_training"]["engine"] == "spark" and set(model["term_frequencies"]) >= {"given"}
    assert model["sql_dialect"] == "duckdb" and "hub_jaro_winkler" not in json.dumps(model)
    from hub.ops.training import complete, default_model_json
    complete(model, default_model_json())  # levels 150 people never showed, as `hub train` does
    evaluator = MatchModel.from_json(model)  # the evaluator accepts the SQL as its spec's
    trained = {(c["output_column_name"], lv.get("label_for_charts")): lv["m_probability"]
               for c in model["comparisons"] for lv in c["comparison_levels"] if "m_probability" in lv}
    assert evaluator.comparisons and trained[("email", "exact")] > 0.5


async def test_rematch_plan_on_spark_is_the_plan_of_duckdb(spark, admin, services, db, settings):
    from hub.ops.rematch import model_in_use, plan_rematch
    from tests.test_rematch import _hub_without_model

    await _hub_without_model(admin, services)
    _, model = await model_in_use(db=db, choice="default")
    duck = await plan_rematch(db=db, settings=settings, model_json=model, engine="duckdb")
    on_spark = await plan_rematch(db=db, settings=settings, model_json=model, engine="spark")
    assert on_spark.counts == duck.counts and on_spark.counts["merges"] == 2
    assert on_spark.changes == duck.changes
