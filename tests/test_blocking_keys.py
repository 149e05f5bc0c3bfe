"""Blocking keys for the pairs the first key set missed, and `hub reindex` bringing stored keys up to date."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import delete, select

from hub.ingest.blocking import BK, candidate_keys
from hub.models import SourceRecord
from hub.privacy.sealing import sealer
from matching.blocking import MAX_KEY_LENGTH, blocking_keys, keys_from_features
from matching.features import features
from tests.helpers import add_system, rec, register

# Pairs of one person that shared no key before (bench/match_quality.py data, names changed)
PAIRS = {
    # typo in the email user part, and moved house with a new phone: same provider, same names
    "email typo + moved": (
        {"given_name": "Lesley", "family_name": "Marsh", "date_of_birth": "1988-12-08",
         "email": "lesley_myrsh88@yahoo.com", "postcode": "G27 4PL", "locality": "Jordanbury"},
        {"given_name": "Lesley", "family_name": "Marsh", "email": "lesley_marsh88@yahoo.com",
         "phone": "+449098790506", "address_line1": "67 Kayleigh Radial", "postcode": "E1B 4XJ",
         "locality": "South Georgetown"}),
    # the family name only inside the email address, a typo in the given name
    "family name in the email": (
        {"given_name": "Sharon", "family_name": "Mitchell", "date_of_birth": "1951-08-13",
         "phone": "+441184960208", "address_line1": "32 Johnston Mountain", "postcode": "RG0 E2TR"},
        {"given_name": "Shron", "email": "mitchell.s@hotmail.com", "postcode": "RG0 E2TR"}),
    # "initial + family" email, no family name, a typo in the given name, the same birth date
    "jparker": (
        {"given_name": "Jsese", "date_of_birth": "1987-07-20", "email": "jparker@hotmail.com"},
        {"given_name": "Jesse", "family_name": "Parker", "date_of_birth": "1987-07-20",
         "phone": "+14147867139"}),
    # an initial for the given name, moved within the town, a new email and phone
    "initial, moved in town": (
        {"given_name": "J.", "family_name": "Parker", "email": "jp1@hotmail.com",
         "phone": "+14147867139", "address_line1": "87 Perez Track", "postcode": "48293",
         "locality": "Lake Jennifer"},
        {"given_name": "Jesse", "family_name": "Parker", "email": "jesse.p@gmail.com",
         "phone": "+14145550100", "postcode": "48201", "locality": "Lake Jennifer"}),
    # typos in both names and in the email, nothing else in common but the provider
    "typos in names and email": (
        {"given_name": "Gerald", "family_name": "Robertsn", "email": "robertson.g@hotmail.com",
         "postcode": "95536"},
        {"given_name": "Gerald", "family_name": "Robertson", "email": "robertsom.g@hotmail.com",
         "phone": "+18274528678"}),
}


@pytest.mark.parametrize("name", list(PAIRS))
def test_pairs_the_first_keys_missed_now_share_a_key(name):
    a, b = PAIRS[name]
    assert blocking_keys(a) & blocking_keys(b), name


def test_new_keys_pair_a_name_with_another_attribute():
    keys = blocking_keys(PAIRS["email typo + moved"][0]) | blocking_keys(PAIRS["initial, moved in town"][0])
    assert "n:LSL|MRX|88@yahoo.com" in keys                 # given sound | family sound | digits of the user @ domain
    assert "l:j|PRKR|lake jennifer" in keys                 # given initial | family sound | locality
    for k in keys:
        assert k[0] not in "nl" or len(k[2:].split("|")) == 3, k
    # nothing but names: no key at all; names and a domain without a family name: no n: key
    assert blocking_keys({"given_name": "Lesley", "family_name": "Marsh"}) == set()
    lone = blocking_keys({"given_name": "Lesley", "email": "lesley@yahoo.com"})
    assert not any(k.startswith("n:") for k in lone)


def test_same_name_addresses_with_other_digits_share_no_n_key():
    # two Roy Waltons at one provider: an email within one edit is no typo when the digits differ
    a = blocking_keys({"given_name": "Roy", "family_name": "Walton", "email": "roy38@yahoo.com"})
    b = blocking_keys({"given_name": "Roy", "family_name": "Walton", "email": "roy37@yahoo.com"})
    assert not a & b


def test_email_words_that_only_repeat_the_given_name_add_no_keys():
    plain = {"given_name": "Jose Ramon", "date_of_birth": "1970-01-01", "postcode": "28001"}
    assert blocking_keys(dict(plain, email="joseramon.x@gmail.com")) - blocking_keys(plain) == {
        "e:joseramon.x@gmail.com", "s:" + "".join(sorted("joseramon.x")) + "@gmail.com", "m:joseramon.x|jose"}


def test_keys_from_stored_features_equal_keys_of_the_record():
    # the hub stores the feature row as JSON (given_nick becomes a list): the keys must not change
    for a, b in PAIRS.values():
        for r in (a, b):
            assert keys_from_features(json.loads(json.dumps(features(r)))) == blocking_keys(r)


def test_long_values_give_keys_that_fit_the_column():
    long = {"given_name": "A" * 150, "family_name": "B" * 150, "email": "x" * 64 + "@" + "d" * 180 + ".com",
            "address_line1": "1 " + "c" * 250, "locality": "L" * 190, "postcode": "1234",
            "date_of_birth": "1980-01-01"}
    keys = blocking_keys(long)
    assert keys and all(len(k) <= MAX_KEY_LENGTH for k in keys)
    assert keys == blocking_keys(dict(long))


def api(values: dict) -> dict:
    names = {"given_name": "givenName", "family_name": "familyName", "date_of_birth": "dateOfBirth",
             "address_line1": "addressLine1"}
    return {names.get(k, k): v for k, v in values.items()}


async def stored_keys(db) -> dict[int, set[str]]:
    async with db.session() as s:
        out: dict[int, set[str]] = {}
        for rid, key in await s.execute(select(BK.c.source_record_id, BK.c.key)):
            out.setdefault(rid, set()).add(key)
        return out


async def test_reindex_gives_stored_records_the_new_keys(hub_cli, db, admin):
    await add_system(admin, "crm", defaultCountry="GB")
    first, later = PAIRS["email typo + moved"]
    await register(admin, "crm", rec("C1", **api(first)), rec("C2", givenName="Ann", familyName="Lee",
                                                              email="ann@x.org", postcode="SW1A 1AA"))
    fresh = await stored_keys(db)
    async with db.session() as s:
        ids = {r.key: r.id for r in (await s.execute(select(SourceRecord.key, SourceRecord.id)))}
    # keys are stored as keyed hashes (hub.privacy.sealing): the clear keys are hashed to find them
    newer = sealer().block_keys(k for k in blocking_keys(first) if k[0] in "nl")
    assert newer and newer <= fresh[ids["C1"]], fresh          # registration stores the new keys
    assert not any(k in fresh[ids["C1"]] for k in blocking_keys(first))  # and no key in clear

    # a hub that stored C1 under the old key definitions: no n:/l: keys, no keys from email words
    async with db.write() as s:
        await s.execute(delete(BK).where(BK.c.source_record_id == ids["C1"], BK.c.key.in_(sorted(newer))))
    probe = sealer().block_keys(blocking_keys(later))
    async with db.session() as s:
        assert ids["C1"] not in await candidate_keys(s, probe)          # the new record would miss it

    result = await hub_cli("reindex", "--batch", "1")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["records"] == 2 and summary["changed"] == 1
    assert summary["keys_deleted"] < summary["keys_inserted"]
    assert await stored_keys(db) == fresh
    async with db.session() as s:
        assert ids["C1"] in await candidate_keys(s, probe)

    again = json.loads((await hub_cli("reindex")).stdout.strip().splitlines()[-1])
    assert again["changed"] == 0 and again["keys_inserted"] == 0          # nothing to do the second time

    [res] = await register(admin, "crm", rec("C3", **api(later)))
    assert res["action"] != "CREATED" and res["matchProbability"] is not None, res


async def test_reindex_removes_keys_no_longer_derived(hub_cli, db, admin):
    await add_system(admin, "crm")
    await register(admin, "crm", rec("K1", givenName="Ann", familyName="Lee", email="ann@x.org"))
    fresh = await stored_keys(db)
    [rid] = fresh
    async with db.write() as s:
        await s.execute(BK.insert(), [{"key": "z:stale", "source_record_id": rid}])
    result = await hub_cli("reindex")
    assert result.exit_code == 0
    assert json.loads(result.stdout.strip().splitlines()[-1])["keys_deleted"] == len(fresh[rid]) + 1
    assert await stored_keys(db) == fresh


async def test_a_long_address_registers(db, admin):
    # keys are cut to the column's 200 characters (PostgreSQL refuses longer ones)
    await add_system(admin, "crm")
    long = rec("L1", givenName="Ann", familyName="Lee", dateOfBirth="1980-01-01",
               addressLine1="1 " + "Long Road " * 28, postcode="12345")
    [res] = await register(admin, "crm", long)
    assert res["action"] == "CREATED", res
    assert all(len(k) <= MAX_KEY_LENGTH for keys in (await stored_keys(db)).values() for k in keys)
