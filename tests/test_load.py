"""`hub load`: the checks and results of registerRecords, line by line, with line numbers and an errors file."""
from __future__ import annotations

import json

from sqlalchemy import select

from hub.models import SourceRecord
from tests.helpers import add_system

SR = SourceRecord.__table__
ANN = {"givenName": "Ann", "familyName": "Lee", "email": "ann@example.org"}
SECRET_NAME = "Zebediah"       # a personal value that must never reach the terminal


def person(i: int) -> dict:
    return {"givenName": "Bo", "familyName": f"Lind{'abcdefghij'[i % 10]}{'klmnopqrst'[i // 10 % 10]}",
            "email": f"bo{i}@example.org"}


async def keys(db) -> dict[str, object]:
    async with db.session() as s:
        return {r.key: r for r in (await s.execute(select(SR))).all()}


def summary(result) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


async def test_load_skips_bad_lines_with_their_numbers_and_loads_the_rest(hub_cli, admin, db, tmp_path):
    await add_system(admin, "shop")
    lines = [
        json.dumps({"key": "A", "attributes": ANN}),                                        # 1
        '{"key": "B", "attributes": {"email": "b@example.org"',                             # 2 malformed
        json.dumps([{"key": "C", "attributes": ANN}]),                                      # 3 an array
        "",                                                                                 # 4 blank
        json.dumps({"key": "D", "attributes": {**ANN, "email": "d@x.org", "shoeSize": "9"}}),  # 5 unknown attr
        json.dumps({"key": "E", "attributes": {**ANN, "email": "e@x.org", "phone": 4155550123}}),  # 6 wrong type
        json.dumps({"key": "F", "attributes": {**ANN, "email": "f@x.org", "dateOfBirth": "2999-01-01"}}),  # 7 flag
        json.dumps({"key": "G", "attributes": {"givenName": SECRET_NAME}}),                 # 8 not identifiable
        json.dumps({"key": "H\u0000", "attributes": ANN}),                                  # 9 bad key
        json.dumps({"key": "I", "updatedAt": "2999-01-01T00:00:00Z", "attributes": ANN}),   # 10 future
        json.dumps({"key": "J", "updatedAt": "yesterday", "attributes": ANN}),              # 11 not ISO
        json.dumps({"key": "K", "attributes": {**ANN, "email": "k@x.org"}, "extra": 1}),    # 12 unknown field
        json.dumps("just a string"),                                                        # 13
        '{"key": "M", "attributes": {"phone": ' + "9" * 5000 + "}}",                        # 14 huge int
        "[" * 100_000 + "]" * 100_000,                                                      # 15 deep
        json.dumps({"key": "L", "attributes": {**ANN, "email": "l@x.org"}}),                # 16
    ]
    f = tmp_path / "shop.jsonl"
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    errors_file = tmp_path / "errors.jsonl"
    result = await hub_cli("load", str(f), "--system", "shop", "--batch", "2", "--errors", str(errors_file))
    assert result.exit_code == 1
    assert set(await keys(db)) == {"A", "F", "L"}
    out = summary(result)
    assert out["lines"] == 15 and out["rejectedLines"] == 12
    assert out["actions"]["REJECTED"] == 12 and out["fieldErrors"]["dateOfBirth"] == 1
    reported = [json.loads(line) for line in errors_file.read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in reported] == [2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
    by_line = {r["line"]: r for r in reported}
    assert by_line[7]["action"] == "CREATED" and by_line[7]["errors"][0]["field"] == "dateOfBirth"
    assert by_line[5]["errors"][0]["field"] == "attributes" and "shoeSize" in by_line[5]["errors"][0]["message"]
    assert by_line[6]["errors"][0]["field"] == "phone" and "shoeSize" not in result.output
    assert by_line[9]["errors"][0]["field"] == "key" and by_line[10]["errors"][0]["field"] == "updatedAt"
    assert SECRET_NAME in by_line[8]["input"]             # the errors file may quote the line
    assert "line 2: rejected (line)" in result.stderr and "line 7: created (dateOfBirth)" in result.stderr
    assert SECRET_NAME not in result.output and "2999-01-01" not in result.stderr
    async with db.session() as s:
        raw = (await s.execute(select(SR.c.raw).where(SR.c.key == "F"))).scalar_one()
    assert set(raw) == {"givenName", "familyName", "email", "dateOfBirth"}


async def test_load_of_the_same_file_twice_changes_nothing_the_second_time(hub_cli, admin, db, tmp_path):
    await add_system(admin, "shop")
    f = tmp_path / "people.jsonl"
    f.write_text("".join(json.dumps({"key": f"P{i}", "attributes": person(i)}) + "\n" for i in range(7)))
    first = await hub_cli("load", str(f), "--system", "shop", "--batch", "3")
    assert first.exit_code == 0 and summary(first)["lines"] == 7
    again = await hub_cli("load", str(f), "--system", "shop", "--batch", "3")
    assert again.exit_code == 0 and summary(again)["actions"] == {"UNCHANGED": 7}


async def test_load_with_batch_1_keeps_loading_after_a_bad_line(hub_cli, admin, db, tmp_path):
    await add_system(admin, "shop")
    f = tmp_path / "people.jsonl"
    f.write_text("\n".join([json.dumps({"key": "P0", "attributes": person(0)}), "{not json",
                            json.dumps({"key": "P1", "attributes": {**person(1), "givenName": "x" * 300}}),
                            json.dumps({"key": "P2", "attributes": person(2)})]) + "\n")
    result = await hub_cli("load", str(f), "--system", "shop", "--batch", "1")
    assert result.exit_code == 1
    assert set(await keys(db)) == {"P0", "P1", "P2"}
    assert (await keys(db))["P1"].given_name is None


async def test_load_csv_reports_rows_by_line_and_refuses_unknown_columns(hub_cli, admin, db, tmp_path):
    await add_system(admin, "shop")
    f = tmp_path / "people.csv"
    f.write_bytes(b"\xef\xbb\xbfkey,updatedAt,givenName,familyName,email\n"
                  b"A,,Ann,Lee,ann@example.org\n"
                  b"B,2999-01-01T00:00:00Z,Bo,Lind,bo@example.org\n"
                  b"C,,Cy,\"Multi\nLine\",cy@example.org\n"
                  b"D,,D\xff,Lee,d@example.org\n"
                  b"E,,Eve,Lee\n"
                  b"F,,Fay,Lee,fay@example.org\n")
    errors_file = tmp_path / "errors.jsonl"
    result = await hub_cli("load", str(f), "--system", "shop", "--errors", str(errors_file))
    assert result.exit_code == 1
    assert set(await keys(db)) == {"A", "C", "F"}
    assert [json.loads(x)["line"] for x in errors_file.read_text().splitlines()] == [3, 6, 7]
    bad = tmp_path / "extra.csv"
    bad.write_text("key,givenName,email,shoeSize\nA,Ann,ann@example.org,9\n")
    refused = await hub_cli("load", str(bad), "--system", "shop")
    assert refused.exit_code != 0 and "shoeSize" in refused.output


async def test_load_help_says_what_is_committed_when(hub_cli):
    result = await hub_cli("load", "--help")
    assert "transaction" in result.output and "--errors" in result.output and "Exit status 1" in result.output
