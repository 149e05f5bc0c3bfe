"""Unit tests of the matching package: blocking keys, features, explanations, TF, decisions, batch."""
from __future__ import annotations

import copy
import json

import pytest

from matching import ATTRIBUTES, MatchModel, blocking_keys, predict_clusters
from tests.test_matching_data import make_records

JOHN = dict(given_name="John", family_name="Smith", date_of_birth="1980-01-02", email="john.smith@x.com",
            phone="+14155550123", address_line1="12 Main Street", locality="Springfield", postcode="12345",
            country="US", national_id="123-45-6789")


@pytest.fixture(scope="module")
def model():
    return MatchModel.default()


def test_attributes():
    assert ATTRIBUTES == ("given_name", "family_name", "date_of_birth", "email", "phone", "address_line1",
                          "address_line2", "locality", "postcode", "region", "country", "national_id")


def test_blocking_keys_shape_and_strong_identifiers():
    keys = blocking_keys(JOHN)
    assert "e:john.smith@x.com" in keys and "p:+14155550123" in keys and "i:123456789" in keys
    assert "d:smith|1980-01-02" in keys and "d:john|1980-01-02" in keys
    assert all(len(k) < 120 and k[1] == ":" for k in keys)
    assert blocking_keys(JOHN) == blocking_keys(dict(JOHN))          # deterministic


def test_blocking_keys_never_name_only():
    names = {"john", "smith"}
    for k in blocking_keys(JOHN):
        parts = k[2:].split("|")
        assert not set(parts) <= names, k                            # a name always comes with another attribute
    assert blocking_keys(dict(given_name="John", family_name="Smith")) == set()
    assert blocking_keys({}) == set()


def test_blocking_keys_survive_noise():
    variants = [
        dict(JOHN, given_name="Smith", family_name="John", email=None, phone=None, national_id=None),  # swapped
        dict(JOHN, given_name="Johnny", email=None, phone=None, national_id=None),                   # nickname
        dict(JOHN, family_name="Smiht", email=None, phone=None, national_id=None),                   # typo
        dict(JOHN, date_of_birth="1980-02-01", email=None, phone=None, national_id=None),            # day/month
        dict(JOHN, address_line1="9 Other Rd", postcode="99999", locality="Elsewhere", phone=None,
             national_id=None),                                                                    # moved
        dict(given_name="J.", date_of_birth="1980-01-02", postcode="12345"),                          # initial
        dict(JOHN, email="jonh.smith@x.com", phone=None, national_id=None, date_of_birth=None,
             postcode=None, address_line1=None),                                                    # email typo
    ]
    base = blocking_keys(JOHN)
    for v in variants:
        assert base & blocking_keys(v), v


def test_features_normalise(model):
    a = model.prepare(dict(given_name="JOSÉ", family_name="van den Berg", address_line1="12 Main Street",
                           postcode="sw1a 1aa", email=" John@X.com", phone="+1 415 555 0123"))
    assert (a.given, a.family, a.addr, a.postcode, a.email, a.phone) == (
        "jose", "van den berg", "12 main st", "SW1A1AA", "john@x.com", "+14155550123")
    b = model.prepare(dict(address_line1="12 Main St."))
    assert b.addr == a.addr
    assert model.prepare(dict(address_line1="Hauptstraße 5")).addr == model.prepare(
        dict(address_line1="Hauptstr. 5")).addr
    assert model.prepare(dict(given_name="  ", email="")).given is None


def test_explanation_names_every_comparison(model):
    comps = [c["output_column_name"] for c in model.to_json()["comparisons"]]
    s = model.score(model.prepare(JOHN), model.prepare(dict(JOHN, given_name="Jon")))
    assert [e.comparison for e in s.explanation] == comps
    assert s.match_weight == pytest.approx(model.prior_weight + sum(e.match_weight for e in s.explanation))
    assert 0.99 < s.probability <= 1.0
    levels = {e.comparison: e.level for e in s.explanation}
    assert levels["given_name"] == "jaro_winkler >= 0.92" and levels["date_of_birth"] == "exact"
    empty = model.score(model.prepare({}), model.prepare(JOHN))
    assert all(e.level == "null" and e.match_weight == 0 for e in empty.explanation)


def test_levels_nickname_swap_dob(model):
    def level(a, b, comp):
        s = model.score(model.prepare(a), model.prepare(b))
        return {e.comparison: e.level for e in s.explanation}[comp]
    assert level(JOHN, dict(JOHN, given_name="Jack"), "given_name") == "nickname"
    assert level(JOHN, dict(JOHN, given_name="J."), "given_name") == "initial"
    assert level(JOHN, dict(JOHN, given_name="Smith", family_name="John"), "given_name").startswith("given equals")
    assert level(JOHN, dict(JOHN, date_of_birth="1980-02-01"), "date_of_birth").startswith("day/month")
    assert level(JOHN, dict(JOHN, date_of_birth="1990-01-02"), "date_of_birth").startswith("year off")
    assert level(JOHN, dict(JOHN, date_of_birth="1975-06-30"), "date_of_birth") == "else"
    assert level(JOHN, dict(JOHN, address_line1="12 Main St"), "household") == "family, address and phone"


def test_tf_adjustment_rare_surname_weighs_more(model):
    tf = model.term_frequencies["family"]
    common = max(tf, key=tf.get)
    rare = min(tf, key=tf.get)
    assert tf[common] > 20 * tf[rare]

    def family_weight(name):
        a = model.prepare(dict(family_name=name, given_name="Ann"))
        b = model.prepare(dict(family_name=name, given_name="Zoe"))
        return {e.comparison: e.match_weight for e in model.score(a, b).explanation}["household"]
    assert family_weight(rare) > family_weight(common) + 3
    # a surname the TF table has never seen gets no adjustment: the level's own weight
    base = next(lv.weight for _, lvs in model.comparisons for lv in lvs if lv.label == "family")
    assert family_weight("Zzyzxquonk") == pytest.approx(base)


def test_from_json_follows_weights_and_refuses_other_sql(model):
    data = copy.deepcopy(model.to_json())
    a, b = model.prepare(JOHN), model.prepare(dict(JOHN, email=None))
    before = model.score(a, b).match_weight
    for comp in data["comparisons"]:
        if comp["output_column_name"] == "date_of_birth":
            exact = next(lv for lv in comp["comparison_levels"] if lv.get("label_for_charts") == "exact")
            exact["m_probability"] /= 2
    after = MatchModel.from_json(json.dumps(data)).score(a, b).match_weight
    assert after == pytest.approx(before - 1.0)
    data["comparisons"][0]["comparison_levels"][1]["sql_condition"] = "given_l <> given_r"
    with pytest.raises(ValueError, match="differs from the spec"):
        MatchModel.from_json(data)


def test_score_cluster_conflict_caps_household_twin(model):
    twin_a = dict(JOHN, email=None, national_id=None)
    twin_b = dict(twin_a, given_name="Michael")
    pa, pb = model.prepare(twin_a), model.prepare(twin_b)
    s = model.score_cluster(pb, [pa])
    assert s.probability <= 0.9 + 1e-9
    assert s.explanation[-1].comparison == "decision" or model.score(pb, pa).probability <= 0.9
    same = model.score_cluster(model.prepare(dict(twin_a, given_name="Johnny")), [pa, pb])
    assert same.probability <= 0.9 + 1e-9                      # the cluster holds someone it contradicts
    alone = model.score_cluster(model.prepare(dict(twin_a, given_name="Johnny")), [pa])
    assert alone.probability > 0.95
    assert model.score_cluster(pa, []).probability == 0.0


def test_predict_clusters_small():
    records = make_records(200, seed=8)
    pairs, clusters = predict_clusters(records, MatchModel.default().to_json(), link_threshold=0.95)
    assert clusters.num_rows == len(records)
    assert sorted(clusters.column("id").to_pylist()) == [r["id"] for r in records]
    assert pairs.num_rows > 0 and min(pairs.column("match_probability").to_pylist()) >= 0.95
    ids_l, ids_r = pairs.column("id_l").to_pylist(), pairs.column("id_r").to_pylist()
    assert all(a < b for a, b in zip(ids_l, ids_r))
    cl = dict(zip(clusters.column("id").to_pylist(), clusters.column("cluster_id").to_pylist()))
    assert all(cl[a] == cl[b] for a, b in zip(ids_l, ids_r))             # every link inside one cluster
    assert all(cid <= rid for rid, cid in cl.items())                     # cluster_id = smallest member id
    ent = {r["id"]: r["entity"] for r in records}
    assert sum(ent[a] == ent[b] for a, b in zip(ids_l, ids_r)) / len(ids_l) > 0.8
    plain, _ = predict_clusters(records, MatchModel.default().to_json(), link_threshold=0.95, conflict_rule=False)
    assert plain.num_rows >= pairs.num_rows                                # the conflict rule only removes links


def test_constrained_clusters_cut_a_chain_at_the_contradiction():
    import pyarrow as pa

    from matching.cluster import constrained_clusters

    links = pa.table({"id_l": [1, 2, 4], "id_r": [2, 3, 5], "match_weight": [12.0, 9.0, 8.0]})
    conflicts = pa.table({"id_l": [1], "id_r": [3]})
    clusters = constrained_clusters(pa.array([1, 2, 3, 4, 5, 6]), links, conflicts)
    assert dict(zip(clusters.column("id").to_pylist(), clusters.column("cluster_id").to_pylist())) == {
        1: 1, 2: 1, 3: 3, 4: 4, 5: 4, 6: 6}                  # 3 contradicts 1, so 2-3 is refused
    plain = constrained_clusters(pa.array([1, 2, 3, 4, 5, 6]), links, conflicts.slice(0, 0))
    assert plain.column("cluster_id").to_pylist() == [1, 1, 1, 4, 4, 6]


def test_predict_clusters_never_chains_two_people_through_a_third():
    home = dict(address_line1="12 Mill Lane", locality="Leeds", postcode="LS1 4AB", country="GB")
    father = dict(id=1, given_name="Peter", family_name="Okafor", date_of_birth="1961-03-14",
                  email="peter.okafor@example.com", phone="+441134960001", **home)
    profile = dict(id=2, given_name="Peter", family_name="Okafor", date_of_birth=None,
                   email="peter.okafor@example.com", phone="+441134960001", **home)   # no birth date
    son = dict(id=3, given_name="Peter", family_name="Okafor", date_of_birth="1992-08-30",
               email=None, phone="+441134960001", **home)                             # same landline
    records = [dict({a: None for a in ATTRIBUTES}, **r) for r in (father, profile, son)]
    model = MatchModel.default().to_json()
    _, plain = predict_clusters(records, model, link_threshold=0.95, conflict_rule=False)
    pairs, clusters = predict_clusters(records, model, link_threshold=0.95)
    cl = dict(zip(clusters.column("id").to_pylist(), clusters.column("cluster_id").to_pylist()))
    assert len(set(plain.column("cluster_id").to_pylist())) == 1           # plain components chain all three
    assert cl[1] != cl[3]                                                   # father and son stay apart
    assert cl[2] in (cl[1], cl[3])
    assert all(cl[a] == cl[b] for a, b in zip(pairs.column("id_l").to_pylist(), pairs.column("id_r").to_pylist()))
