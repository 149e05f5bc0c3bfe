"""findCustomers: ranked by the match model, explained, and no oracle for fields a caller may not read."""
from __future__ import annotations

from tests.conftest import Gql, mint
from tests.helpers import add_system, rec, register

FIND = """query($a: CustomerAttributesInput!, $first: Int! = 10) { findCustomers(attributes: $a, first: $first) {
  matchProbability customer { id givenName email } explanation { comparison level matchWeight } } }"""


async def _people(admin):
    await add_system(admin)
    return await register(admin, "crm",
                          rec("A", givenName="Anna", familyName="Berg", dateOfBirth="1980-01-01", email="anna@x.org",
                              phone="+14155550123", nationalId="AB-123456"),
                          rec("B", givenName="Ola", familyName="Berg", dateOfBirth="1982-05-05", email="ola@x.org"),
                          rec("C", givenName="Kari", familyName="Sund", dateOfBirth="1975-07-07", email="kari@y.org"))


async def test_find_by_name_and_birth_date_ranks_the_person_first_as_admin(admin):
    a, b, _ = await _people(admin)
    found = (await admin(FIND, a={"givenName": "ANNA", "familyName": "berg", "dateOfBirth": "1980-01-01"}))
    matches = found["findCustomers"]
    assert matches[0]["customer"]["id"] == a["customer"]["id"] and matches[0]["matchProbability"] > 0.95
    assert {e["comparison"] for e in matches[0]["explanation"]} >= {"given_name", "date_of_birth", "household"}
    assert all(m["matchProbability"] <= matches[0]["matchProbability"] for m in matches)


async def test_find_by_national_id_is_exact_as_admin(admin):
    a, _, _ = await _people(admin)
    [match, *_] = (await admin(FIND, a={"nationalId": " ab-123456 "}))["findCustomers"]
    assert match["customer"]["id"] == a["customer"]["id"] and match["matchProbability"] == 1.0
    assert {"comparison": "rule", "level": "exact:national_id", "matchWeight": 0.0} in match["explanation"]


async def test_find_by_birth_date_as_reader_is_forbidden(admin, client, db):
    await _people(admin)
    reader = Gql(client, await mint(db, "reader"))
    data, errors = await reader.errors(FIND, a={"familyName": "Berg", "dateOfBirth": "1980-01-01"})
    assert data is None and errors[0]["extensions"]["code"] == "FORBIDDEN"
    assert "1980" not in errors[0]["message"]


async def test_find_as_reader_hides_explanations_about_hidden_fields(admin, client, db):
    a, _, _ = await _people(admin)
    reader = Gql(client, await mint(db, "reader"))
    [match, *_] = (await reader(FIND, a={"givenName": "Anna", "familyName": "Berg", "email": "anna@x.org"}))[
        "findCustomers"]
    assert match["customer"]["id"] == a["customer"]["id"]
    comparisons = {e["comparison"] for e in match["explanation"]}
    assert "date_of_birth" not in comparisons and "national_id" not in comparisons and "email" in comparisons


async def test_find_with_a_bad_value_is_bad_input(admin):
    await _people(admin)
    _, errors = await admin.errors(FIND, a={"email": "not-an-email"})
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"
    _, errors = await admin.errors(FIND, a={})
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_find_by_given_and_family_name_alone_ranks_the_named_person_first_as_reader(admin, client, db):
    await add_system(admin)
    await register(admin, "crm",
                   rec("K1", givenName="Ahmed", familyName="Khan", email="ahmed.khan@x.org", dateOfBirth="1980-02-03"),
                   rec("K2", givenName="Amina", familyName="Khan", email="amina@x.org", dateOfBirth="1982-04-05"),
                   rec("K3", givenName="Ahmed", familyName="Malik", email="malik@x.org", dateOfBirth="1979-01-01"),
                   rec("K4", givenName="Jane", familyName="Doe", email="jane@x.org"))
    reader = Gql(client, await mint(db, "reader"))
    matches = (await reader(FIND, a={"givenName": "ahmed", "familyName": "KHAN"}))["findCustomers"]
    assert matches, "a name alone finds the people of that name"
    assert matches[0]["customer"]["email"] == "ahmed.khan@x.org"
    assert [m["matchProbability"] for m in matches] == sorted((m["matchProbability"] for m in matches), reverse=True)
    assert {m["customer"]["email"] for m in matches} <= {"ahmed.khan@x.org", "amina@x.org"}


async def test_find_by_name_alone_reads_through_the_name_index(admin, db):
    """The lookup is an index search: the query plan names ix_source_record_family_given, no full scan."""
    from sqlalchemy import select, text

    from hub.models import SourceRecord

    sr = SourceRecord.__table__
    stmt = select(sr.c.id).where(sr.c.family_name == "Khan", sr.c.given_name == "Ahmed").limit(200)
    async with db.session() as session:
        if db.sqlite:
            compiled = stmt.compile(compile_kwargs={"literal_binds": True})
            plan = " ".join(str(r[-1]) for r in await session.execute(text(f"EXPLAIN QUERY PLAN {compiled}")))
        else:
            await session.execute(text("SET LOCAL enable_seqscan = off"))  # an empty table: ask for the index
            compiled = stmt.compile(dialect=session.bind.dialect, compile_kwargs={"literal_binds": True})
            plan = " ".join(r[0] for r in await session.execute(text(f"EXPLAIN {compiled}")))
    assert "ix_source_record_family_given" in plan, plan


async def test_find_by_given_name_alone_is_bad_input_that_says_what_to_add(admin):
    await _people(admin)
    _, errors = await admin.errors(FIND, a={"givenName": "Anna"})
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT" and "family name" in errors[0]["message"]
