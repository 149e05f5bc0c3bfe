"""GraphQL operations shared by the tests."""

SYSTEM = """mutation($input: SourceSystemInput!) { registerSourceSystem(input: $input) {
  name dateOrder defaultCountry trust recordCount } }"""
REGISTER = """mutation($system: String!, $records: [SourceRecordInput!]!) {
  registerRecords(system: $system, records: $records) {
    key action matchProbability errors { field message } customer { id version } } }"""
CUSTOMER = """query($id: ID!) { customer(id: $id) { id version givenName familyName dateOfBirth email phone
  addressLine1 addressLine2 locality postcode region country nationalId
  lineage { field value rule sourceRecord { system key } }
  sourceRecords { system key givenName email }
  history { kind actor note changes } } }"""
RECORD = """query($system: String!, $key: String!) { sourceRecord(system: $system, key: $key) {
  system key givenName familyName dateOfBirth email phone country nationalId postcode customer { id } } }"""
DELETE = """mutation($system: String!, $key: String!) { deleteSourceRecord(system: $system, key: $key) {
  id version email } }"""


async def add_system(gql, name="crm", dateOrder="YMD", trust=50, defaultCountry=None):
    data = {"name": name, "dateOrder": dateOrder, "trust": trust}
    if defaultCountry:
        data["defaultCountry"] = defaultCountry
    return (await gql(SYSTEM, input=data))["registerSourceSystem"]


async def register(gql, system, *records):
    return (await gql(REGISTER, system=system, records=list(records)))["registerRecords"]


def rec(key, updatedAt=None, **attributes):
    out = {"key": key, "attributes": attributes}
    if updatedAt:
        out["updatedAt"] = updatedAt
    return out


async def dump_tables(db) -> dict[str, str]:
    """Every table the database holds (its own catalogue, so tables added later count), rows as stored, as text."""
    import json

    import sqlalchemy as sa

    out = {}
    async with db.reader() as conn:
        names = await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names())
        for name in sorted(names):
            rows = (await conn.execute(sa.text(f'SELECT * FROM "{name}"'))).all()
            out[name] = "\n".join(json.dumps([str(v) for v in row], ensure_ascii=False) for row in rows)
    return out
