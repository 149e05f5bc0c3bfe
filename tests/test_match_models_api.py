"""Match model versions over GraphQL: admins and stewards read levels, report and evaluation; readers cannot."""
from __future__ import annotations

from tests.conftest import Gql, mint
from tests.test_training import _load

from hub.ops.models import evaluate, promote
from hub.ops.training import train_model

MODELS = """query { matchModels { id status records probabilityTwoRandomRecordsMatch
  comparisons { name levels { label m u matchWeight mSource uSource } } } }"""
ONE = """query($id: ID!) { matchModel(id: $id) { id status trainingReport evaluation
  comparisons { name levels { label matchWeight mSource } } } }"""


async def test_admin_and_steward_read_a_models_levels_report_and_evaluation_readers_are_refused(
        admin, client, db, settings):
    await _load(db, settings, 60)
    done = await train_model(db=db, max_pairs_u=1e5, max_pairs_em=5e4)
    await evaluate(db=db, settings=settings, model_id=done.model_id, model_json=done.model)
    await promote(db=db, model_id=done.model_id)
    [listed] = (await admin(MODELS))["matchModels"]
    assert listed["id"] == str(done.model_id) and listed["status"] == "promoted"
    names = [c["name"] for c in listed["comparisons"]]
    assert "given_name" in names and "national_id" not in names      # left out: no national id in the data
    exact = next(lv for c in listed["comparisons"] if c["name"] == "given_name" for lv in c["levels"]
                 if lv["label"] == "exact")
    assert exact["matchWeight"] > 0 and exact["mSource"].startswith("EM on") and exact["uSource"] == "random sampling"
    steward = Gql(client, await mint(db, "steward"))
    one = (await steward(ONE, id=str(done.model_id)))["matchModel"]
    assert one["trainingReport"]["records"] == done.records
    assert "national_id" in one["trainingReport"]["comparisons_left_out"]
    assert one["evaluation"]["rematch"]["records"] == done.records
    reader = Gql(client, await mint(db, "reader"))
    _, errors = await reader.errors(MODELS)
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    _, errors = await admin.errors(ONE, id="999999")
    assert errors[0]["extensions"]["code"] == "NOT_FOUND"
