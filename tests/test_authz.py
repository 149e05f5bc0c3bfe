"""authz: the default policy as a matrix (roles x fields x operations), deny-overrides, memo invalidation,
masking. Plain, synchronous and fast: no database, no GraphQL."""

import threading

import pytest

from authz import Access, Authorizer, default_model_path, default_policy_rows, mask

ALLOW, MASK, DENY = Access.ALLOW, Access.MASK, Access.DENY
ROLES = ("admin", "steward", "reader", "source")

PERSON_FIELDS = (
    "givenName", "familyName", "dateOfBirth", "email", "phone", "addressLine1", "addressLine2",
    "locality", "postcode", "region", "country", "nationalId",
)


def expected_person_access(role: str, type_name: str, field: str) -> Access:
    """The default policy's promise for person attributes of Customer and SourceRecord."""
    if role == "admin":
        return ALLOW
    if role == "steward":
        return MASK if field == "nationalId" else ALLOW
    if role == "reader":
        return DENY if field in ("nationalId", "dateOfBirth") else ALLOW
    if role == "source":
        return ALLOW if type_name == "SourceRecord" else DENY
    raise AssertionError(role)


QUERIES = ("customer", "customers", "findCustomers", "sourceSystems", "sourceRecord", "sourceRecords",
           "matchCandidates")
MUTATIONS = ("registerSourceSystem", "registerRecords", "deleteSourceRecord", "resolveMatchCandidate",
             "mergeCustomers", "splitSourceRecord", "overrideAttribute", "eraseCustomer")
OPERATIONS = tuple(f"Query.{q}" for q in QUERIES) + tuple(f"Mutation.{m}" for m in MUTATIONS)

ALLOWED_OPERATIONS = {
    "admin": set(OPERATIONS),
    "steward": {f"Query.{q}" for q in QUERIES} | {
        "Mutation.resolveMatchCandidate", "Mutation.mergeCustomers", "Mutation.splitSourceRecord",
        "Mutation.overrideAttribute", "Mutation.deleteSourceRecord",
    },
    "reader": {"Query.customer", "Query.customers", "Query.findCustomers", "Query.sourceSystems"},
    "source": {"Mutation.registerRecords", "Mutation.deleteSourceRecord", "Query.sourceRecord",
               "Query.sourceRecords", "Query.sourceSystems"},
}

# Fields that are not person attributes, per role.
OTHER_FIELDS = [
    ("admin", "AttributeLineage", "value", ALLOW),
    ("admin", "CustomerEvent", "changes", ALLOW),
    ("steward", "AttributeLineage", "value", ALLOW),
    ("steward", "CustomerEvent", "changes", ALLOW),
    ("steward", "MatchCandidate", "score", ALLOW),
    ("reader", "Customer", "id", ALLOW),
    ("reader", "Customer", "lineage", ALLOW),
    ("reader", "AttributeLineage", "value", ALLOW),  # per value: see test_value_access
    ("reader", "CustomerEvent", "changes", ALLOW),
    ("reader", "SourceSystem", "name", ALLOW),
    ("reader", "MatchCandidate", "score", DENY),  # types not listed for readers stay hidden
    ("source", "Customer", "id", ALLOW),
    ("source", "Customer", "version", ALLOW),
    ("source", "Customer", "lineage", DENY),
    ("source", "Customer", "history", DENY),
    ("source", "AttributeLineage", "value", DENY),
    ("source", "CustomerEvent", "changes", DENY),
    ("source", "SourceSystem", "name", ALLOW),
    ("source", "MatchCandidate", "score", DENY),
]

WRITES = [
    ("admin", "Customer.nationalId", True),
    ("steward", "Customer.givenName", True),
    ("steward", "Customer.nationalId", True),
    ("steward", "SourceRecord.email", False),
    ("reader", "Customer.email", False),
    ("source", "SourceRecord.email", True),
    ("source", "Customer.email", False),
]


@pytest.fixture(scope="module")
def default() -> Authorizer:
    return Authorizer()


# -- the default matrix ------------------------------------------------------------------------------

@pytest.mark.parametrize("field", PERSON_FIELDS)
@pytest.mark.parametrize("type_name", ("Customer", "SourceRecord"))
@pytest.mark.parametrize("role", ROLES)
def test_person_attribute_access(default, role, type_name, field):
    assert default.field_access(role, type_name, field) is expected_person_access(role, type_name, field)


@pytest.mark.parametrize(("role", "type_name", "field", "access"), OTHER_FIELDS)
def test_other_field_access(default, role, type_name, field, access):
    assert default.field_access(role, type_name, field) is access


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("role", ROLES)
def test_operations(default, role, operation):
    assert default.operation_allowed(role, operation) is (operation in ALLOWED_OPERATIONS[role])


@pytest.mark.parametrize(("role", "obj", "allowed"), WRITES)
def test_writes(default, role, obj, allowed):
    assert default.can(role, obj, "write") is allowed


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("type_name", ("Customer", "SourceRecord"))
def test_field_plan_matches_field_access(default, role, type_name):
    plan = default.field_plan(role, type_name, PERSON_FIELDS)
    assert plan == {f: expected_person_access(role, type_name, f) for f in PERSON_FIELDS}
    plan["nationalId"] = ALLOW  # the caller gets a copy: the memo is untouched
    assert default.field_plan(role, type_name, PERSON_FIELDS) == {
        f: expected_person_access(role, type_name, f) for f in PERSON_FIELDS}


@pytest.mark.parametrize(("role", "attribute", "access"), [
    ("admin", "nationalId", ALLOW),
    ("steward", "nationalId", MASK),
    ("steward", "dateOfBirth", ALLOW),
    ("reader", "dateOfBirth", DENY),
    ("reader", "nationalId", DENY),
    ("reader", "email", ALLOW),
    ("source", "email", DENY),
])
def test_value_access(default, role, attribute, access):
    # a lineage value / a change of `attribute` is no more visible than the attribute itself
    assert default.value_access(role, "AttributeLineage", "value", attribute) is access
    assert default.value_access(role, "CustomerEvent", "changes", attribute) is access


@pytest.mark.parametrize("role", ("", "auditor", "Admin", "*", "admin ", "steward,reader"))
def test_unknown_role_denied_everywhere(default, role):
    assert default.field_access(role, "Customer", "id") is DENY
    assert default.field_access(role, "SourceRecord", "email") is DENY
    assert not default.operation_allowed(role, "Query.customer")
    assert not default.can(role, "Customer.email", "read-masked")
    assert not default.can(role, "Customer.email", "write")


def test_unknown_operation_or_type_only_for_wildcard_roles(default):
    assert default.operation_allowed("admin", "Mutation.somethingNew")
    assert not default.operation_allowed("steward", "Mutation.somethingNew")
    assert default.operation_allowed("steward", "Query.somethingNew")
    assert not default.operation_allowed("reader", "Query.somethingNew")
    assert default.field_access("reader", "NewType", "field") is DENY


def test_wildcard_is_not_a_prefix_match():
    # keyMatch would treat "*.nationalId" as "*": make sure the suffix counts
    auth = Authorizer([("p", "r", "*.nationalId", "read", "allow")])
    assert auth.field_access("r", "Customer", "nationalId") is ALLOW
    assert auth.field_access("r", "Customer", "email") is DENY
    assert auth.field_access("r", "Customer", "nationalIdHash") is DENY


# -- deny overrides allow ----------------------------------------------------------------------------

@pytest.mark.parametrize("deny_first", (True, False))
def test_deny_overrides_allow_whatever_the_order(deny_first):
    allow, deny = ("p", "r", "Customer.*", "read", "allow"), ("p", "r", "Customer.email", "read", "deny")
    auth = Authorizer([deny, allow] if deny_first else [allow, deny])
    assert auth.field_access("r", "Customer", "email") is DENY
    assert auth.field_access("r", "Customer", "phone") is ALLOW


def test_added_deny_wins_over_admin_wildcard():
    auth = Authorizer()
    assert auth.operation_allowed("admin", "Mutation.eraseCustomer")
    assert auth.add(("p", "admin", "Mutation.eraseCustomer", "call", "deny"))
    assert not auth.operation_allowed("admin", "Mutation.eraseCustomer")
    assert auth.operation_allowed("admin", "Mutation.mergeCustomers")


def test_deny_of_read_leaves_masked_read():
    auth = Authorizer([
        ("p", "r", "Customer.*", "read", "allow"),
        ("p", "r", "Customer.*", "read-masked", "allow"),
        ("p", "r", "Customer.phone", "read", "deny"),
    ])
    assert auth.field_access("r", "Customer", "phone") is MASK


def test_inheritance_via_g():
    auth = Authorizer([*default_policy_rows(), ("g", "auditor", "reader")])
    assert auth.field_access("auditor", "Customer", "email") is ALLOW
    assert auth.field_access("auditor", "Customer", "dateOfBirth") is DENY
    assert auth.operation_allowed("auditor", "Query.customer")
    assert not auth.operation_allowed("auditor", "Mutation.mergeCustomers")


# -- policy edits invalidate every memo --------------------------------------------------------------

def test_add_and_remove_invalidate_memo():
    auth = Authorizer()
    row = ("p", "reader", "Customer.email", "read", "deny")
    assert auth.field_access("reader", "Customer", "email") is ALLOW  # memoised now
    assert auth.field_plan("reader", "Customer", ["email"]) == {"email": ALLOW}
    assert auth.can("reader", "Customer.email", "read")

    assert auth.add(row) is True
    assert auth.field_access("reader", "Customer", "email") is DENY
    assert auth.field_plan("reader", "Customer", ["email"]) == {"email": DENY}
    assert not auth.can("reader", "Customer.email", "read")
    assert auth.add(row) is False  # already there

    assert auth.remove(row) is True
    assert auth.field_access("reader", "Customer", "email") is ALLOW
    assert auth.can("reader", "Customer.email", "read")
    assert auth.remove(row) is False  # not there any more
    assert auth.rows == default_policy_rows()


def test_load_replaces_policy_and_memo():
    auth = Authorizer()
    assert auth.operation_allowed("reader", "Query.customer")
    assert auth.field_access("steward", "Customer", "nationalId") is MASK
    auth.load([["p", "steward", "Customer.nationalId", "read", "allow"]])
    assert auth.rows == [("p", "steward", "Customer.nationalId", "read", "allow")]
    assert auth.field_access("steward", "Customer", "nationalId") is ALLOW
    assert not auth.operation_allowed("reader", "Query.customer")  # reader is now unknown
    auth.load([])
    assert auth.field_access("steward", "Customer", "nationalId") is DENY


def test_new_role_added_at_runtime():
    auth = Authorizer()
    assert not auth.operation_allowed("auditor", "Query.customer")
    auth.add(("p", "auditor", "Query.customer", "call", "allow"))
    assert auth.operation_allowed("auditor", "Query.customer")


def test_load_while_reading_never_mixes_policies():
    wide = [("p", "r", "Customer.*", "read", "allow")]
    narrow = [*wide, ("p", "r", "Customer.nationalId", "read", "deny")]
    auth = Authorizer(wide)
    stop, seen = threading.Event(), set()

    def read():
        while not stop.is_set():
            national_id = auth.field_access("r", "Customer", "nationalId")
            seen.add((national_id, auth.field_access("r", "Customer", "email")))

    readers = [threading.Thread(target=read) for _ in range(4)]
    for t in readers:
        t.start()
    for i in range(40):
        auth.load(narrow if i % 2 == 0 else wide)
    stop.set()
    for t in readers:
        t.join()
    # only what one of the two policies says: never an empty or half-built policy (email DENY)
    assert seen <= {(ALLOW, ALLOW), (DENY, ALLOW)}
    assert auth.field_access("r", "Customer", "nationalId") is ALLOW  # the last load was `wide`


# -- rows ----------------------------------------------------------------------------------------------

def test_default_rows_and_model():
    rows = default_policy_rows()
    assert default_model_path().is_file()
    assert ("p", "admin", "*", "call", "allow") in rows
    assert ("p", "reader", "Customer.*", "read", "allow") in rows
    assert all(r[0] in ("p", "g") for r in rows)
    assert Authorizer().rows == rows


@pytest.mark.parametrize("row", [
    ("p", "reader", "Customer.email", "raed", "deny"),  # typo in the action
    ("p", "reader", "Customer.email", "read", "Deny"),
    ("p", "reader", "Customer.email", "read"),
    ("p", "reader", "Customer email", "read", "deny"),
    ("p", "reader", "Customer.{email,phone}", "read", "deny"),
    ("p", "", "Customer.email", "read", "deny"),
    ("g", "steward"),
    ("x", "reader", "Customer.email", "read", "deny"),
])
def test_invalid_rows_rejected(row):
    with pytest.raises(ValueError):
        Authorizer([row])
    with pytest.raises(ValueError):
        Authorizer().add(row)


def test_rows_are_normalised_and_deduplicated():
    row = ("p", "r", "Customer.id", "read", "allow")
    auth = Authorizer([[" p", "r ", " Customer.id ", "read", " allow"], row])
    assert auth.rows == [row]


# -- masking ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "keep", "masked"), [
    ("123-45-6789", 4, "*******6789"),
    ("AB123456C", 4, "*****456C"),
    ("12345", 4, "*2345"),
    ("1234", 4, "****"),  # not longer than keep: nothing shown
    ("123", 4, "***"),
    ("", 4, ""),
    (None, 4, None),
    ("abcdef", 2, "****ef"),
    ("abcdef", 0, "******"),
])
def test_mask(value, keep, masked):
    assert mask(value, keep) == masked
