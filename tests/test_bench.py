"""`hub bench`: the generator, the scoring, the embedded run with its report, the baseline, the sizing fit."""
from __future__ import annotations

import asyncio
import collections
import csv
import hashlib
import json
import os
import re
import uuid

import pytest
from click.testing import CliRunner

from hub.bench.generate import ATTRIBUTES, NICKNAMES, PROFILES, read_records, read_systems, write
from hub.bench.score import score_clusters
from hub.bench.sizing import fit
from hub.cli import main

PEOPLE = 300


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "full"
    manifest = write(str(out), PEOPLE, seed=5)
    return str(out), manifest


def _digest(folder: str) -> dict[str, str]:
    return {name: hashlib.sha256(open(os.path.join(folder, name), "rb").read()).hexdigest()
            for name in sorted(os.listdir(folder)) if name != "manifest.json"}


def _records(folder: str) -> list[tuple[str, dict]]:
    return [(s["name"], r) for s in read_systems(folder) for r in read_records(folder, s["name"])]


def _truth_rows(folder: str) -> list[dict]:
    with open(os.path.join(folder, "truth.csv"), newline="") as f:
        return list(csv.DictReader(f))


def test_generator_with_the_same_seed_writes_identical_files_and_another_seed_differs(dataset, tmp_path):
    folder, _ = dataset
    write(str(tmp_path / "again"), PEOPLE, seed=5)
    write(str(tmp_path / "other"), PEOPLE, seed=6)
    assert _digest(folder) == _digest(str(tmp_path / "again"))
    assert _digest(folder)["truth.csv"] != _digest(str(tmp_path / "other"))["truth.csv"]


def test_generated_records_are_source_record_inputs_with_a_truth_for_each(dataset):
    folder, manifest = dataset
    records = _records(folder)
    truth = {(r["system"], r["key"]): r["entity"] for r in _truth_rows(folder)}
    assert len(records) == manifest["records"] == len(truth)
    assert {(s, r["key"]) for s, r in records} == set(truth)
    assert len({r["entity"] for r in _truth_rows(folder)}) == PEOPLE
    for _s, r in records:
        assert set(r) == {"key", "updatedAt", "attributes"} and r["key"]
        assert set(r["attributes"]) <= set(ATTRIBUTES)
    systems = read_systems(folder)
    assert {s["dateOrder"] for s in systems} == {"YMD", "DMY", "MDY"}
    # people appear in several systems, and each system writes dates its own way
    per_entity = collections.Counter(truth.values())
    assert sum(1 for n in per_entity.values() if n >= 2) > PEOPLE // 2
    crm = [r["attributes"]["dateOfBirth"] for s, r in records if s == "crm" and r["attributes"].get("dateOfBirth")]
    marketing = [r["attributes"]["dateOfBirth"] for s, r in records
                 if s == "marketing" and r["attributes"].get("dateOfBirth")]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d", d) for d in crm)
    assert all(re.fullmatch(r"\d\d\.\d\d\.\d{4}", d) for d in marketing)


def test_generator_makes_households_twins_nicknames_marriages_and_shared_emails(dataset):
    folder, manifest = dataset
    features = manifest["features"]
    for name in ("household_members", "twins", "nickname_records", "married_name_changes", "shared_family_emails",
                 "moves", "typo_records", "stale_records"):
        assert features.get(name, 0) > 0, name
    rows = _truth_rows(folder)
    entity_of = {(r["system"], r["key"]): r["entity"] for r in rows}
    household = {r["entity"]: r["household"] for r in rows}
    by_entity = collections.defaultdict(list)
    for s, r in _records(folder):
        by_entity[entity_of[(s, r["key"])]].append((s, r["attributes"]))
    # households: different people sharing a postcode and a family name
    homes = collections.defaultdict(set)
    for e, recs in by_entity.items():
        for _s, a in recs:
            if a.get("postcode") and a.get("familyName"):
                homes[(household[e], a["postcode"], a["familyName"].lower())].add(e)
    assert any(len(people) >= 2 for people in homes.values())
    # twins: two people of one household with the same birth date (read in each system's date order)
    from hub.ingest.standardise import SystemProfile, standardise

    orders = {s["name"]: SystemProfile(date_order=s["dateOrder"]) for s in read_systems(folder)}
    born = collections.defaultdict(set)
    for e, recs in by_entity.items():
        for s, a in recs:
            dob = standardise({"dateOfBirth": a.get("dateOfBirth")}, orders[s]).values.get("date_of_birth")
            if dob:
                born[(household[e], dob)].add(e)
    assert any(len(people) >= 2 for people in born.values())
    # nicknames: one person's records carry a name and one of its nicknames
    def has_nickname(recs):
        names = {(a.get("givenName") or "").lower() for _s, a in recs}
        return any(n.lower() in names for full in names for n in NICKNAMES.get(full, ()))
    assert any(has_nickname(recs) for recs in by_entity.values())
    # shared family mailboxes: one email held by two different people
    holders = collections.defaultdict(set)
    for e, recs in by_entity.items():
        for _s, a in recs:
            if a.get("email"):
                holders[a["email"].strip().lower()].add(e)
    assert any(len(people) >= 2 for people in holders.values())


@pytest.mark.parametrize("profile", ["febrl-like", "no-email", "no-national-id"])
def test_profile_limits_the_attributes_written(profile, tmp_path):
    manifest = write(str(tmp_path / profile), 120, seed=2, profile=profile)
    allowed = PROFILES[profile][1]
    seen = set()
    for _s, r in _records(str(tmp_path / profile)):
        seen |= set(r["attributes"])
    assert seen <= allowed and manifest["profile"] == profile
    assert {"givenName", "familyName", "dateOfBirth", "postcode"} <= seen


def test_generate_command_refuses_an_unknown_profile_and_a_bad_count(tmp_path):
    bad = CliRunner().invoke(main, ["bench", "generate", "--people", "10", "--profile", "nope", "--out",
                                    str(tmp_path / "x")])
    assert bad.exit_code != 0 and "nope" in bad.output
    bad = CliRunner().invoke(main, ["bench", "generate", "--people", "lots", "--out", str(tmp_path / "x")])
    assert bad.exit_code != 0 and "lots" in bad.output


def test_run_and_baseline_refuse_a_folder_without_truth(tmp_path):
    for args in (["run", "--data", str(tmp_path), "--embedded"], ["baseline", "--data", str(tmp_path)]):
        result = CliRunner().invoke(main, ["bench", *args])
        assert result.exit_code != 0 and "truth.csv" in result.output


def test_score_clusters_counts_pairs_and_exact_clusters():
    truth = {"a": 1, "b": 1, "c": 1, "d": 2, "e": 3}
    assign = {"a": "x", "b": "x", "c": "y", "d": "y", "e": "z"}
    q = score_clusters(assign, truth)
    # predicted pairs: ab, cd (1 right of 2); true pairs: ab, ac, bc (1 found of 3)
    assert q["pairwise"]["precision"] == 0.5 and q["pairwise"]["recall"] == round(1 / 3, 4)
    # clusters: only z == {e} is exactly one person; of 3 people only person 3 is reproduced
    assert q["cluster"]["precision"] == round(1 / 3, 4) and q["cluster"]["recall"] == round(1 / 3, 4)


def _no_external_urls(page: str) -> bool:
    return not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I) and "http://" not in page \
        and "https://" not in page


def _run_embedded(folder: str, out, *extra: str):
    result = CliRunner().invoke(main, ["bench", "run", "--data", folder, "--embedded", "--single", "20",
                                       "--reads", "10", "--steward", "15", "--json", str(out / "r.json"),
                                       "--html", str(out / "r.html"), *extra], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads((out / "r.json").read_text()), (out / "r.html").read_text()


async def _pg_admin(sql: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from tests.conftest import PG_SERVER

    engine = create_async_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def embedded_database(request):
    """The arguments that give `hub bench run --embedded` each dialect: a temporary SQLite file, or an
    empty PostgreSQL database made for the test."""
    if request.param == "sqlite":
        yield ["--port", "8172"]
        return
    from tests.conftest import PG_SERVER

    name = f"hub_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    yield ["--port", "8173", "--database-url", PG_SERVER.rsplit("/", 1)[0] + "/" + name]
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_embedded_run_writes_the_documented_figures_and_an_offline_report(tmp_path, embedded_database):
    folder = str(tmp_path / "tiny")
    write(folder, 120, seed=9)
    result, page = _run_embedded(folder, tmp_path, *embedded_database)
    for key in ("data", "environment", "load", "register_one_ms", "search_ms", "search", "read_ms", "quality",
                "queue", "scores", "thresholds", "database_bytes", "server_peak_memory_mb"):
        assert key in result, key
    assert result["load"]["records"] + 20 == result["data"]["records"]
    assert sum(result["load"]["actions"].values()) == result["load"]["records"]
    assert result["register_one_ms"]["n"] == 20 and result["read_ms"]["n"] == 10
    for part in ("pairwise", "cluster"):
        assert 0.5 < result["quality"][part]["f1"] <= 1.0
    assert result["quality"]["records"] == result["data"]["records"]
    assert result["load"]["timeline"][-1][0] == result["load"]["records"]
    assert result["scores"]["true"] and len(result["scores"]["threshold_curve"]) == 101
    assert result["environment"]["database"] == ("postgresql" if "--database-url" in embedded_database else "sqlite")
    assert result["queue"]["pending"] > 0             # seed 9 leaves a few uncertain pairs for the steward
    assert result["steward"]["resolved"] + result["steward"]["decisions"].get("superseded", 0) \
        == min(15, result["queue"]["pending"])
    assert "quality_after_steward" in result and set(result["steward"]["gain"]) == {"pairwise", "cluster"}
    assert page.startswith("<!doctype html>") and page.count("<svg") >= 5
    assert _no_external_urls(page)


def test_run_against_a_hub_that_already_holds_the_data_is_refused(tmp_path):
    folder = str(tmp_path / "tiny")
    write(folder, 30, seed=4)
    from hub.bench.run import EmbeddedHub, HubError, Options, run

    with EmbeddedHub(port=8174) as hub:
        asyncio.run(run(folder, hub.url, hub.token, Options(single=0, reads=0, steward=0)))
        with pytest.raises(HubError, match="empty hub"):
            asyncio.run(run(folder, hub.url, hub.token, Options(single=0, reads=0, steward=0)))


def test_baseline_on_a_tiny_set_scores_against_the_truth(dataset, tmp_path):
    folder, manifest = dataset
    result = CliRunner().invoke(main, ["bench", "baseline", "--data", folder, "--json", str(tmp_path / "b.json")])
    assert result.exit_code == 0, result.output
    b = json.loads((tmp_path / "b.json").read_text())
    assert b["quality"]["records"] == manifest["records"] and b["quality"]["entities"] == PEOPLE
    assert 0.3 < b["quality"]["pairwise"]["f1"] <= 1.0 and b["pairs_scored"] > 0
    assert len(b["threshold_curve"]) == 101 and b["scores"]["true"]


def _result(records: int, rate: float, p50: float) -> dict:
    return {"data": {"records": records}, "load": {"records_per_s": rate, "seconds": records / rate, "batch": 500,
                                                    "concurrency": 2},
            "register_one_ms": {"p50": p50, "p99": p50 * 2}, "database_bytes": records * 2000,
            "environment": {"cores": 2, "memory_gb": 8, "database": "sqlite"}}


def test_sizing_fits_the_growth_and_projects_it():
    runs = [_result(n, 1000 * (n / 1000) ** -0.2, 5 * (n / 1000) ** 0.1) for n in (1000, 4000, 16000)]
    s = fit(runs, 16_000_000)
    assert s["runs"] == [1000, 4000, 16000] and s["project"] == 16_000_000
    assert s["figures"]["bulk load rate"]["exponent"] == pytest.approx(-0.2, abs=1e-3)
    assert s["figures"]["bulk load rate"]["projected"] == pytest.approx(1000 * 16000 ** -0.2, rel=1e-3)
    assert s["figures"]["database size"]["projected"] == pytest.approx(32_000, rel=1e-3)      # MB
    assert s["figures"]["bulk load time"]["projected"] > 16_000_000 / 1000 / 3600              # slower than at 1k
    assert any("16,000,000" in a for a in s["assumptions"])


def test_report_command_merges_runs_of_several_sizes(tmp_path):
    paths = []
    for n in (1000, 8000):
        p = tmp_path / f"r{n}.json"
        p.write_text(json.dumps({**_result(n, 900, 6), "quality": {"pairwise": {"f1": 0.99}}}))
        paths.append(str(p))
    out = tmp_path / "report.html"
    result = CliRunner().invoke(main, ["bench", "report", *paths, "--project", "50M", "--html", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "Sizing" in page and "50,000,000" in page and _no_external_urls(page)
    refused = CliRunner().invoke(main, ["bench", "report", paths[0], "--project", "50M", "--html", str(out)])
    assert refused.exit_code != 0 and "two sizes" in refused.output
