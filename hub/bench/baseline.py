"""A competent user's plain Splink 5 batch model on a generated data set, scored against the same truth.

What a user would do with Splink alone, no hub: clean the records (here with the hub's standardiser,
so both see the same cleaned values), choose comparisons and blocking rules from the attributes the
data has, train (prior from deterministic rules, u by random sampling, m by expectation maximisation
on two blocking rules, term frequencies on names and postcodes), predict every blocked pair, cluster
at a threshold. Nothing of the hub's own model, blocking keys or decision rules is used.
"""
from __future__ import annotations

import collections
import datetime as dt
import logging
import random
import time
from collections.abc import Callable

from hub.bench.generate import read_records, read_systems, read_truth
from hub.bench.score import score_clusters

COLUMNS = ("given_name", "family_name", "date_of_birth", "email", "phone", "address_line1", "locality", "postcode",
           "national_id")


def standardised_rows(data: str) -> tuple[list[dict], dict[int, tuple[str, str]]]:
    """Every record of the data set standardised by the hub's rules; (rows, unique_id -> (system, key))."""
    from hub.ingest.standardise import SystemProfile, standardise

    rows, ids = [], {}
    for system in read_systems(data):
        profile = SystemProfile(date_order=system.get("dateOrder", "YMD"),
                                default_country=system.get("defaultCountry"))
        for rec in read_records(data, system["name"]):
            values = standardise(rec.get("attributes") or {}, profile, today=dt.date(2026, 11, 1)).values
            uid = len(rows)
            ids[uid] = (system["name"], rec["key"])
            row = {"unique_id": uid}
            for c in COLUMNS:
                v = values.get(c)
                row[c] = v.isoformat() if isinstance(v, dt.date) else (None if v is None else str(v))
            if row["given_name"]:
                row["given_name"] = row["given_name"].lower()
            if row["family_name"]:
                row["family_name"] = row["family_name"].lower()
            rows.append(row)
    return rows, ids


def _address_comparison():
    """One comparison for the address: street line, postcode and locality are one fact about a person,
    and counting them separately would triple the evidence of a shared home (households)."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    return cl.CustomComparison(output_column_name="address", comparison_levels=[
        cll.CustomLevel('("postcode_l" IS NULL OR "postcode_r" IS NULL) AND '
                        '("address_line1_l" IS NULL OR "address_line1_r" IS NULL)', "address is NULL"
                        ).configure(is_null_level=True),
        cll.CustomLevel('"address_line1_l" = "address_line1_r" AND "postcode_l" = "postcode_r"',
                        "same street address and postcode"),
        cll.CustomLevel('jaro_winkler_similarity("address_line1_l", "address_line1_r") >= 0.9',
                        "similar street address"),
        cll.CustomLevel('"postcode_l" = "postcode_r"', "same postcode"),
        cll.CustomLevel('"locality_l" = "locality_r"', "same locality"),
        cll.ElseLevel()])


def _settings(present: set[str]):
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    comparisons = []
    if "given_name" in present:
        comparisons.append(cl.NameComparison("given_name").configure(term_frequency_adjustments=True))
    if "family_name" in present:
        comparisons.append(cl.NameComparison("family_name").configure(term_frequency_adjustments=True))
    if "date_of_birth" in present:
        comparisons.append(cl.DateOfBirthComparison("date_of_birth", input_is_string=True))
    if "email" in present:
        comparisons.append(cl.EmailComparison("email"))
    if "phone" in present:
        comparisons.append(cl.ExactMatch("phone"))
    if "national_id" in present:
        comparisons.append(cl.ExactMatch("national_id"))
    if "postcode" in present or "address_line1" in present:
        comparisons.append(_address_comparison())
    rules = []
    for cols in (("email",), ("phone",), ("national_id",), ("given_name", "family_name"),
                 ("family_name", "date_of_birth"), ("given_name", "date_of_birth"), ("postcode", "family_name"),
                 ("postcode", "date_of_birth")):
        if all(c in present for c in cols):
            rules.append(block_on(*cols))
    return SettingsCreator(link_type="dedupe_only", unique_id_column_name="unique_id", comparisons=comparisons,
                           blocking_rules_to_generate_predictions=rules, retain_intermediate_calculation_columns=False)


def run_baseline(data: str, *, threshold: float = 0.95, seed: int = 1, max_pairs_u: float = 2e6,
                 max_pairs_em: float = 1e6, progress: Callable[[str], None] | None = None) -> dict:
    """Train, predict and cluster with plain Splink; return quality, timings and score distributions."""
    import duckdb
    import pyarrow as pa
    from splink import DuckDBAPI, Linker, block_on

    say = progress or (lambda _m: None)
    for name in [n for n in logging.root.manager.loggerDict if n.startswith("splink")] + ["splink"]:
        logging.getLogger(name).setLevel(logging.ERROR)
    started = time.perf_counter()
    rows, ids = standardised_rows(data)
    truth_by_key = read_truth(data)
    truth = {uid: truth_by_key[ids[uid]] for uid in ids}
    present = {c for c in COLUMNS if sum(1 for r in rows if r[c]) >= max(2, len(rows) // 100)}
    table = pa.Table.from_pylist(rows, schema=pa.schema([("unique_id", pa.int64()),
                                                         *[(c, pa.string()) for c in COLUMNS]]))
    timings = {"standardise": round(time.perf_counter() - started, 2)}
    con = duckdb.connect()
    try:
        db_api = DuckDBAPI(connection=con)
        linker = Linker(db_api.register(table, dataset_display_name="bench_records"), _settings(present))
        t = time.perf_counter()
        deterministic = [block_on(c) for c in ("email", "national_id") if c in present] or \
            [block_on(*[c for c in ("given_name", "family_name", "date_of_birth") if c in present])]
        linker.training.estimate_probability_two_random_records_match(deterministic, recall=0.7)
        linker.training.estimate_u_using_random_sampling(max_pairs=max_pairs_u, seed=seed)
        for cols in (("date_of_birth",), ("given_name", "family_name")):
            if all(c in present for c in cols):
                linker.training.estimate_parameters_using_expectation_maximisation(block_on(*cols),
                                                                                   estimate_without_term_frequencies=False)
        timings["train"] = round(time.perf_counter() - t, 2)
        say(f"baseline: trained in {timings['train']} s on {len(rows)} records")
        t = time.perf_counter()
        pred = linker.inference.predict(threshold_match_probability=0.01)
        pairs = con.sql(f"SELECT unique_id_l, unique_id_r, match_probability FROM {pred.physical_name}").fetchall()
        timings["predict"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(pred, threshold_match_probability=threshold)
        assign = dict(con.sql(f"SELECT unique_id, cluster_id FROM {clusters.physical_name}").fetchall())
        timings["cluster"] = round(time.perf_counter() - t, 2)
    finally:
        con.close()
    quality = score_clusters(assign, truth)
    scored = [(p, truth[a] == truth[b]) for a, b, p in pairs]
    true_pairs = quality["pairwise"]["true_pairs"]
    curve = []
    ordered = sorted(scored, reverse=True)
    for i in range(101):
        tt = i / 100
        above = [ok for p, ok in ordered if p >= tt]
        tp = sum(above)
        curve.append({"threshold": round(tt, 3), "precision": round(tp / len(above), 4) if above else 1.0,
                      "recall": round(tp / true_pairs, 4) if true_pairs else 1.0, "predicted": len(above)})
    rng = random.Random(seed)
    by_label = collections.defaultdict(list)
    for p, ok in scored:
        by_label[ok].append(round(p, 4))
    sample = {("true" if k else "false"): (v if len(v) <= 20000 else rng.sample(v, 20000)) for k, v in by_label.items()}
    return {"description": "plain Splink 5 (DuckDB), dedupe over all systems; comparisons "
                           + ", ".join(sorted(present)) + f"; clustered at {threshold}",
            "threshold": threshold, "quality": quality, "pairs_scored": len(pairs),
            "seconds": round(time.perf_counter() - started, 2), "timings": timings, "threshold_curve": curve,
            "scores": {"true": sample.get("true", []), "false": sample.get("false", [])}}
