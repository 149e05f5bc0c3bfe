"""MatchModel.score (pure Python) reproduces Splink 5's match weights to 1e-6."""
from __future__ import annotations

import copy
import itertools
import random

import duckdb
import pyarrow as pa
import pytest

from matching import MatchModel, train
from matching.cluster import register_term_frequencies, splink_settings
from matching.table import feature_table
from tests.test_matching_data import make_records


@pytest.fixture(scope="module")
def records():
    return make_records(600, seed=3)


def candidate_pairs(records, n_random=1500, seed=5) -> list[tuple[int, int]]:
    """Same-person pairs, household / same-surname pairs and random pairs: every level gets hit."""
    rng = random.Random(seed)
    by_entity, by_family = {}, {}
    for r in records:
        by_entity.setdefault(r["entity"], []).append(r["id"])
        by_family.setdefault((r.get("family_name") or "").lower()[:3], []).append(r["id"])
    pairs = set()
    for ids in by_entity.values():
        pairs.update(itertools.combinations(ids, 2))
    for ids in by_family.values():
        for _ in range(min(len(ids), 60)):
            a, b = rng.sample(ids, 2) if len(ids) > 1 else (ids[0], ids[0])
            if a != b:
                pairs.add((min(a, b), max(a, b)))
    n = len(records)
    while len(pairs) < len(by_entity) + n_random + 2000:
        a, b = rng.randrange(n), rng.randrange(n)
        if a != b:
            pairs.add((min(a, b), max(a, b)))
    return sorted(pairs)


def splink_weights(records, model_json, pairs) -> dict[tuple[int, int], float]:
    from splink import DuckDBAPI, Linker

    con = duckdb.connect()
    db_api = DuckDBAPI(connection=con)
    linker = Linker(db_api.register(feature_table(records), dataset_display_name="parity_records"),
                    splink_settings(model_json))
    register_term_frequencies(linker, db_api, model_json)
    blocked = pa.table({"match_key": pa.array([0] * len(pairs), pa.int64()),
                        "join_key_l": pa.array([a for a, _ in pairs], pa.int64()),
                        "join_key_r": pa.array([b for _, b in pairs], pa.int64())})
    linker.table_management.register_blocked_pairs_for_predict(
        db_api.register(blocked, dataset_display_name="parity_pairs"))
    pred = linker.inference.predict(warning_mode="never")
    rows = con.sql(f"select unique_id_l, unique_id_r, match_weight from {pred.physical_name}").fetchall()
    con.close()
    return {(a, b): w for a, b, w in rows}


def assert_parity(records, model_json, pairs):
    model = MatchModel.from_json(model_json)
    prepared = [model.prepare(r) for r in records]
    expected = splink_weights(records, model_json, pairs)
    assert len(expected) == len(pairs)
    worst = 0.0
    levels_hit = set()
    for a, b in pairs:
        s = model.score(prepared[a], prepared[b])
        worst = max(worst, abs(s.match_weight - expected[(a, b)]))
        levels_hit.update((e.comparison, e.level) for e in s.explanation)
        assert abs(s.match_weight - expected[(a, b)]) < 1e-6, (records[a], records[b], s, expected[(a, b)])
        assert model.match_weight(prepared[a], prepared[b]) == pytest.approx(s.match_weight, abs=1e-12)
    return worst, levels_hit


def test_parity_default_model(records):
    model_json = MatchModel.default().to_json()
    pairs = candidate_pairs(records)
    assert len(pairs) >= 3000
    worst, levels_hit = assert_parity(records, model_json, pairs)
    # the test data exercises nearly every level of every comparison
    all_levels = {(c["output_column_name"], lv["label_for_charts"]) for c in model_json["comparisons"]
                  for lv in c["comparison_levels"]}
    assert len(levels_hit) >= len(all_levels) - 4, sorted(all_levels - levels_hit)


def test_parity_follows_json_weights(records):
    """Perturbed m/u, lambda and TF values: the evaluator follows the JSON, no code change."""
    model_json = copy.deepcopy(MatchModel.default().to_json())
    rng = random.Random(9)
    model_json["probability_two_random_records_match"] = 0.003
    for comp in model_json["comparisons"]:
        for lv in comp["comparison_levels"]:
            if not lv.get("is_null_level"):
                lv["m_probability"] = rng.uniform(0.01, 0.9)
                lv["u_probability"] = rng.uniform(0.0001, 0.5)
            if lv.get("tf_adjustment_column"):
                lv["tf_adjustment_weight"] = 0.5
                lv["tf_minimum_u_value"] = 0.001
    pairs = candidate_pairs(records, n_random=500)[:1500]
    assert_parity(records, model_json, pairs)


def test_train_small_then_parity(records):
    """train() yields a model JSON that Splink and the evaluator both load and agree on."""
    model_json = train(records, seed=1, max_pairs_u=2e5, max_pairs_em=1e5)
    assert set(model_json["term_frequencies"]) == {"given", "family"}
    assert 0 < model_json["probability_two_random_records_match"] < 0.1
    pairs = candidate_pairs(records, n_random=300)[:1000]
    assert_parity(records, model_json, pairs)
