"""authz for privacy: consent purposes bound to roles (row-level access) and fields marked sensitive."""
from __future__ import annotations

import pytest

from authz import Access, Authorizer, default_policy_rows, validate_row


def test_marketing_is_bound_to_marketing_email_and_other_roles_to_nothing():
    auth = Authorizer()
    assert auth.purposes("marketing") == frozenset({"marketing-email"})
    for role in ("admin", "steward", "reader", "source", "nobody"):
        assert auth.purposes(role) == frozenset()


def test_purposes_are_inherited_through_g_and_lifted_by_a_deny_row():
    rows = [*default_policy_rows(), ("g", "campaigns", "marketing"),
            ("p", "campaigns", "profiling", "require-consent", "allow"),
            ("g", "analyst", "marketing"), ("p", "analyst", "marketing-email", "require-consent", "deny")]
    auth = Authorizer(rows)
    assert auth.purposes("campaigns") == frozenset({"marketing-email", "profiling"})
    assert auth.purposes("analyst") == frozenset()


def test_national_id_and_birth_date_are_audited_for_every_known_role_and_email_is_not():
    auth = Authorizer()
    for role in ("admin", "steward", "reader", "source", "marketing"):
        for type_name in ("Customer", "SourceRecord"):
            assert auth.audited(role, type_name, "nationalId") and auth.audited(role, type_name, "dateOfBirth")
        assert not auth.audited(role, "Customer", "email")
    assert not auth.audited("nobody", "Customer", "nationalId")  # an unknown role reads nothing anyway


def test_an_any_role_row_does_not_give_an_unknown_role_access():
    auth = Authorizer([*default_policy_rows(), ("p", "*", "Customer.email", "read", "allow")])
    assert auth.field_access("reader", "Customer", "email") is Access.ALLOW
    assert auth.field_access("nobody", "Customer", "email") is Access.DENY


def test_marketing_field_access_is_a_readers_without_what_hangs_off_the_record():
    auth = Authorizer()
    assert auth.field_access("marketing", "Customer", "email") is Access.ALLOW
    for field in ("nationalId", "dateOfBirth", "sourceRecords", "lineage", "history"):
        assert auth.field_access("marketing", "Customer", field) is Access.DENY
    assert auth.field_access("marketing", "Consent", "granted") is Access.ALLOW
    assert auth.field_access("marketing", "Consent", "evidence") is Access.DENY
    assert not auth.operation_allowed("marketing", "Query.sourceSystems")
    assert not auth.operation_allowed("steward", "Query.subjectAccess")
    assert not auth.operation_allowed("steward", "Query.sensitiveReads")
    assert auth.operation_allowed("admin", "Query.subjectAccess")


@pytest.mark.parametrize("row", [
    ("p", "marketing", "Marketing Email", "require-consent", "allow"),   # not a purpose name
    ("p", "marketing", "Customer.email", "require-consent", "allow"),    # a field is not a purpose
    ("p", "marketing", "marketing-email", "consent", "allow"),           # unknown action
    ("g", "*", "admin"),                                                 # "*" is for p rows only
])
def test_malformed_privacy_rows_are_refused(row):
    with pytest.raises(ValueError):
        validate_row(row)


def test_a_purpose_row_and_an_audit_row_are_valid():
    assert validate_row(["p", "marketing", "profiling", "require-consent", "allow"])[2] == "profiling"
    assert validate_row(["p", "*", "Customer.email", "audit", "allow"])[1] == "*"
