"""Key material for personal data at rest: parsing, sealing, rotation, the embedded default."""
from __future__ import annotations

import stat

import pytest

from hub.config import Settings
from hub.privacy.keys import (
    KeyMaterialError,
    is_sealed,
    key_id_of,
    keyring,
    load_keyring,
    new_keyring,
    parse_keys,
)


def test_sealed_value_opens_with_its_context_only():
    ring = new_keyring()
    sealed = ring.encrypt("AB123456C", context="national_id")
    assert is_sealed(sealed) and "AB123456C" not in sealed and key_id_of(sealed) == "k1"
    assert ring.decrypt(sealed, context="national_id") == "AB123456C"
    with pytest.raises(KeyMaterialError):
        ring.decrypt(sealed, context="date_of_birth")


def test_same_value_seals_differently_but_hashes_equally():
    ring = new_keyring()
    assert ring.encrypt("x", context="c") != ring.encrypt("x", context="c")
    assert ring.keyed_hash("x", purpose="p") == ring.keyed_hash("x", purpose="p")
    assert ring.keyed_hash("x", purpose="p") != ring.keyed_hash("x", purpose="q")
    assert ring.keyed_hash("x", purpose="p") != new_keyring().keyed_hash("x", purpose="p")


def test_rotated_ring_opens_old_values_and_seals_under_the_new_key():
    ring = new_keyring()
    old = ring.encrypt("1984-07-02", context="dob")
    rotated = parse_keys(ring.with_new_key("k2").to_text())
    assert rotated.decrypt(old, context="dob") == "1984-07-02"
    assert key_id_of(rotated.encrypt("1984-07-02", context="dob")) == "k2"
    assert rotated.keyed_hash("v", purpose="p") == ring.keyed_hash("v", purpose="p")  # hashes survive rotation
    with pytest.raises(KeyMaterialError):
        rotated.with_new_key("k2")


@pytest.mark.parametrize("text", ["", "hash AAAA", "enc k1 " + "A" * 44, "hash !!!\nenc k1 x", "bogus line"])
def test_malformed_key_text_is_refused_without_quoting_it(text):
    with pytest.raises(KeyMaterialError) as e:
        parse_keys(text)
    assert "!!!" not in str(e.value)


def test_hub_keys_text_joins_lines_with_semicolons():
    ring = new_keyring()
    assert parse_keys(ring.to_text().replace("\n", ";")) == ring


def test_embedded_default_creates_an_owner_only_key_file(tmp_path):
    path = tmp_path / "hub.keys"
    ring = keyring(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/hub.db", key_file=str(path)))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_keyring(keys=None, key_file=str(path), create=False) == ring


def test_postgresql_without_keys_is_refused(tmp_path):
    settings = Settings(database_url="postgresql+asyncpg://postgres@127.0.0.1:5432/x",
                        key_file=str(tmp_path / "absent.keys"))
    with pytest.raises(KeyMaterialError, match="HUB_KEYS"):
        keyring(settings)
    assert not (tmp_path / "absent.keys").exists()
