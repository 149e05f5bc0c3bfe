"""`hub train`: a model re-estimated on the hub's own records is stored as the newest version."""
from __future__ import annotations

import asyncio
import random

import pytest

from click.testing import CliRunner
from sqlalchemy import func, select

from hub import cli
from tests.conftest import TEST_KEYS
from hub.config import get_settings
from hub.ingest.matcher import load_scorer
from hub.errors import BadInput, NotFound
from hub.models import MatchModelVersion
from hub.ingest.records import RecordInput, register_batch
from hub.ingest.systems import register_system
from hub.ops.models import evaluate, list_models, promote, rollback
from hub.ops.training import complete, default_model_json, summary, train_model

GIVEN = ["Anna", "Bernd", "Carla", "Dieter", "Emma", "Felix", "Greta", "Hans", "Ida", "Jonas", "Karin", "Lukas",
         "Maria", "Nina", "Otto", "Paula", "Rita", "Stefan", "Tina", "Vera", "Walter", "Xenia", "Yusuf", "Zoe"]
FAMILY = ["Berg", "Holm", "Nord", "Sund", "Kim", "Meyer", "Schulz", "Wagner", "Becker", "Hoffmann", "Koch",
          "Richter", "Klein", "Wolf", "Neumann", "Braun", "Zimmer", "Lange"]


def _typo(text: str, rnd: random.Random) -> str:
    i = rnd.randrange(1, len(text))
    return text[:i] + rnd.choice("aeiourst") + text[i + 1:]


def people(n: int, *, seed: int = 3) -> list[RecordInput]:
    """About 3 records per person, later ones with a typo or a missing attribute (a tiny generator)."""
    rnd, out = random.Random(seed), []
    for p in range(n):
        given, family = rnd.choice(GIVEN), rnd.choice(FAMILY)
        base = {"givenName": given, "familyName": family, "email": f"{given}.{family}{p}@x.org".lower(),
                "dateOfBirth": f"{rnd.randint(1940, 2004)}-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}",
                "phone": f"+4930{rnd.randint(1000000, 9999999)}", "postcode": f"{rnd.randint(10000, 99999)}",
                "addressLine1": f"{rnd.randint(1, 200)} {rnd.choice(['Main', 'Oak', 'Elm', 'Lake'])} St",
                "locality": "Berlin", "country": "DE"}
        for k in range(rnd.randint(1, 5)):
            attrs = dict(base)
            if k:
                for a in rnd.sample(["givenName", "familyName", "email", "phone", "addressLine1"], 2):
                    attrs[a] = _typo(attrs[a], rnd) if a.endswith("Name") and rnd.random() < .5 else None
            out.append(RecordInput(f"P{p}-{k}", attrs))
    return out


async def _load(db, settings, n: int = 100) -> int:
    async with db.write() as session:
        await register_system(session=session, name="crm", description=None, date_order="YMD",
                              default_country=None, trust=50, actor="test")
    records = people(n)
    await register_batch(db=db, system="crm", records=records, actor="test", settings=settings, scorer=None)
    return len(records)


async def test_train_stores_a_version_that_the_hub_then_uses(db, settings):
    n = await _load(db, settings)
    assert 250 <= n <= 350
    dry = await train_model(db=db, max_pairs_u=2e5, max_pairs_em=1e5, dry_run=True)
    assert dry.model_id is None and dry.records == n
    async with db.session() as session:
        assert await session.scalar(select(func.count()).select_from(MatchModelVersion)) == 0
    done = await train_model(db=db, seed=2, max_pairs_u=2e5, max_pairs_em=1e5, note="first", actor="tester")
    # a trained model is a candidate: the hub keeps the shipped model until it is promoted
    assert (await load_scorer(db, "latest")).version is None
    await promote(db=db, model_id=done.model_id)
    scorer = await load_scorer(db, "latest")
    assert scorer.version == done.model_id
    async with db.session() as session:
        row = (await session.execute(select(MatchModelVersion))).scalar_one()
    assert (row.records, row.actor, row.note, row.params["seed"]) == (n, "tester", "first", 2)
    assert row.seconds > 0 and 0 < row.model["probability_two_random_records_match"] < 1
    assert any("lambda" in line for line in summary(row.model))


def test_complete_fills_untrained_levels_and_keeps_each_comparison_summing_to_one():
    base = default_model_json()
    model = default_model_json()
    comp = model["comparisons"][0]
    levels = [lv for lv in comp["comparison_levels"] if not lv.get("is_null_level")]
    del levels[1]["m_probability"]
    filled = complete(model, base)
    assert filled == [f"{comp['output_column_name']}/{levels[1]['label_for_charts']}/m"]
    assert abs(sum(lv["m_probability"] for lv in levels) - 1) < 1e-9


async def test_cli_train_dry_run_prints_a_summary_and_stores_nothing(db, settings, monkeypatch):
    await _load(db, settings, 60)
    monkeypatch.setenv("HUB_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("HUB_KEYS", TEST_KEYS)
    get_settings.cache_clear()
    try:
        # the command starts its own event loop: run it in a worker thread
        result = await asyncio.to_thread(CliRunner().invoke, cli.main, [
            "train", "--dry-run", "--max-pairs-u", "1e5", "--max-pairs-em", "5e4"], catch_exceptions=False)
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "dry run" in result.stderr and "lambda" in result.stderr and result.stdout == ""


def _no_email_no_phone(n: int = 120) -> list[dict]:
    """Standardised records of people with names, birth date and address only (FEBRL's mix), with typos."""
    rnd, out = random.Random(5), []
    for p in range(n):
        given, family = rnd.choice(GIVEN), rnd.choice(FAMILY)
        base = {"given_name": given, "family_name": family,
                "date_of_birth": f"{rnd.randint(1940, 2004)}-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}",
                "postcode": f"{rnd.randint(10000, 99999)}", "locality": "Berlin",
                "address_line1": f"{rnd.randint(1, 200)} {rnd.choice(['Main', 'Oak', 'Elm', 'Lake'])} St"}
        for k in range(rnd.randint(1, 3)):
            rec = dict(base, id=len(out))
            if k:
                rec["given_name"] = _typo(given, rnd)
            out.append(rec)
    return out


def test_training_leaves_out_absent_attributes_and_reports_what_came_from_where():
    from matching.train import report_lines, train

    model = train(_no_email_no_phone(), max_pairs_u=2e5, max_pairs_em=1e5, id_column="id", prior=default_model_json())
    names = [c["output_column_name"] for c in model["comparisons"]]
    assert "email" not in names and "national_id" not in names and "given_name" in names
    report = model["matching_training"]["report"]
    assert set(report["comparisons_left_out"]) == {"email", "national_id"}
    # EM never blocks on a column the data lacks
    assert all("email" not in s["rule"] and "nid" not in s["rule"] for s in report["em_sessions"])
    household = {lv["label_for_charts"]: lv for c in model["comparisons"] if c["output_column_name"] == "household"
                 for lv in c["comparison_levels"]}
    # a level that needs the absent phone weighs nothing; the others keep their mass
    assert household["phone"]["m_probability"] == household["phone"]["u_probability"]
    assert report["levels"]["household"]["phone"]["m"].startswith("absent")
    lines = report_lines(model)
    assert any(line.startswith("left out: email") for line in lines)
    assert "email" not in model["term_frequencies"] or not model["term_frequencies"].get("email")


async def test_promote_retires_the_previous_model_and_rollback_brings_it_back(db, settings):
    await _load(db, settings, 60)
    first = await train_model(db=db, max_pairs_u=1e5, max_pairs_em=5e4)
    second = await train_model(db=db, seed=2, max_pairs_u=1e5, max_pairs_em=5e4)
    assert await promote(db=db, model_id=first.model_id) is None
    assert await promote(db=db, model_id=second.model_id) == first.model_id
    status = {m["id"]: m["status"] for m in await list_models(db=db)}
    assert status == {first.model_id: "retired", second.model_id: "promoted"}
    assert await rollback(db=db) == (second.model_id, first.model_id)
    assert (await load_scorer(db, "latest")).version == first.model_id
    assert await rollback(db=db) == (first.model_id, None)
    assert (await load_scorer(db, "latest")).version is None          # the shipped model again
    with pytest.raises(BadInput):
        await rollback(db=db)
    with pytest.raises(NotFound):
        await promote(db=db, model_id=999_999)


async def test_evaluation_of_a_candidate_says_what_a_rematch_would_change_and_is_stored(db, settings):
    n = await _load(db, settings, 60)
    done = await train_model(db=db, max_pairs_u=1e5, max_pairs_em=5e4)
    ev = await evaluate(db=db, settings=settings, model_id=done.model_id, model_json=done.model)
    assert ev["against"] == "default" and ev["rematch"]["records"] == n
    assert sum(int(k) * v for k, v in ev["golden_sizes_now"].items() if k.isdigit()) <= n
    assert 0.0 <= ev["split_share"] <= 1.0
    rows = await list_models(db=db)
    assert rows[0]["status"] == "candidate"
    async with db.session() as session:
        stored = await session.scalar(select(MatchModelVersion.evaluation))
    assert stored["rematch"] == ev["rematch"]


async def test_cli_train_stores_a_candidate_that_model_promote_and_rollback_switch(db, settings, hub_cli):
    await _load(db, settings, 60)
    trained = await hub_cli("train", "--max-pairs-u", "1e5", "--max-pairs-em", "5e4")
    assert trained.exit_code == 0, trained.output
    model_id = int(trained.stdout.strip())
    assert "(candidate)" in trained.stderr and "a rematch with it would" in trained.stderr
    assert f"hub model promote {model_id}" in trained.stderr
    listed = await hub_cli("model", "list")
    assert listed.stdout.split("\t")[:2] == [str(model_id), "candidate"]
    shown = await hub_cli("model", "show", str(model_id))
    assert shown.exit_code == 0 and "left out" in shown.stdout          # the tiny generator has no national id
    assert (await hub_cli("model", "promote", str(model_id))).exit_code == 0
    assert (await load_scorer(db, "latest")).version == model_id
    back = await hub_cli("model", "rollback")
    assert back.exit_code == 0 and "shipped model" in back.stdout
    missing = await hub_cli("model", "show", "999999")
    assert missing.exit_code != 0 and "no stored match model" in missing.output


async def test_model_report_writes_offline_splink_charts_of_a_stored_model(db, settings, hub_cli, tmp_path):
    await _load(db, settings, 40)
    done = await train_model(db=db, max_pairs_u=1e5, max_pairs_em=5e4)
    out = tmp_path / "report"
    result = await hub_cli("model", "report", str(done.model_id), "--out", str(out))
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{c}.html" for c in ("match_weights", "m_u_parameters", "unlinkables", "waterfall",
                                                  "comparison_viewer", "cluster_studio"))
    for p in out.iterdir():
        text = p.read_text(encoding="utf-8")
        # self-contained: no script is loaded from elsewhere, vega is inlined
        assert "<script src=" not in text and "vega" in text.lower(), p.name
    missing = await hub_cli("model", "report", "999999", "--out", str(out))
    assert missing.exit_code != 0 and "no stored match model" in missing.output


async def test_train_on_spark_is_refused_plainly_until_it_fits_the_data(db):
    from hub.ops.training import train_model

    with pytest.raises(ValueError, match="DuckDB only"):
        await train_model(db=db, engine="spark", dry_run=True)
