"""Encryption at rest of the sensitive person attributes, wherever the hub stores them.

The attributes in HUB_ENCRYPTED_ATTRIBUTES (default: national id and date of birth) are sealed with the
key ring (`hub.privacy.keys`: AES-256-GCM, the key id inside each sealed value, the attribute name as
authenticated context) in every place that holds them:

- the source record and golden record columns (`SealedAttribute`: Core and ORM writes seal, reads open);
- the raw payload, the stored match features and the events' before/after values (`SealedJSON`);
- lineage values (sealed by `seal_lineage` where lineage is written, opened by `open_lineage` where read).

Beside the source record columns sits a keyed hash (HMAC-SHA256, `<attribute>_hash`, indexed): the
deterministic rules and search look records up by it, never by the sealed text. Every stored blocking
key is a keyed hash too (`block_keys`), so the key index holds no value either.

The sealer of a process is installed once (`configure`) and reloads a key file that changed (at most
once a second, and at once when a value names a key it does not hold), so `hub keys rotate` can add a
key while servers run. Nothing here logs a value or key material.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from hub.config import Settings
from hub.db import is_sqlite
from hub.golden.attributes import API_NAME, STORAGE_NAME
from hub.models.types import SEALING
from hub.privacy.keys import KeyMaterialError, KeyRing, is_sealed, key_id_of, load_keyring, parse_keys

# attributes the hub can seal: their columns have room for sealed text and a keyed-hash column beside them
SEALABLE: tuple[str, ...] = ("national_id", "date_of_birth")
HASHED: tuple[str, ...] = SEALABLE  # source_record.<attribute>_hash
# match-feature names of the sealable attributes (matching.features)
FEATURE_OF: dict[str, str] = {"dob": "date_of_birth", "nid": "national_id"}
BLOCK_KEY_PURPOSE = "blocking-key"
BLOCK_KEY_HEX = 32  # 128 bits of HMAC: collisions are out of reach and the key index stays small
RELOAD_EVERY = 1.0  # seconds between checks of the key file


def _text(attribute: str, value: Any) -> str:
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


class Sealer:
    """Seal and open one process's sensitive values with one key ring."""

    def __init__(self, ring: KeyRing, attributes: Iterable[str], *, key_file: str | None = None) -> None:
        self.ring = ring
        self.attributes = frozenset(attributes)
        self.api = frozenset(API_NAME[a] for a in self.attributes)
        self.key_file = key_file  # reloaded when it changes (None: keys from HUB_KEYS, fixed for the process)
        self._stamp = _stamp(key_file)
        self._checked = time.monotonic()
        self._lock = threading.Lock()
        base = hmac.new(ring.hash_key, digestmod=hashlib.sha256)
        self._hmacs: dict[str, Any] = {}
        self._base = base

    # --- the ring in use -------------------------------------------------------------------------------------

    def current(self) -> Sealer:
        """This sealer, or a fresh one if its key file changed (checked at most once a second)."""
        if self.key_file is None:
            return self
        now = time.monotonic()
        if now - self._checked < RELOAD_EVERY:
            return self
        self._checked = now
        return self._reload_if_changed()

    def _reload_if_changed(self) -> Sealer:
        stamp = _stamp(self.key_file)
        if stamp == self._stamp or stamp is None:
            return self
        with self._lock:
            if SEALING.sealer is not self:
                return SEALING.sealer
            with open(self.key_file) as f:
                ring = parse_keys(f.read(), self.key_file)
            if ring.hash_key != self.ring.hash_key:
                raise KeyMaterialError(f"{self.key_file}: the hash key changed; keyed hashes would no longer "
                                       "match the stored ones (restore the file's hash line)")
            fresh = Sealer(ring, self.attributes, key_file=self.key_file)
            fresh._stamp = stamp
            fresh._settings = getattr(self, "_settings", None)
            SEALING.sealer = fresh
            return fresh

    def _ring_for(self, token: str) -> KeyRing:
        """The ring that holds the key a sealed value names: reload the key file once if this one lacks it."""
        kid = key_id_of(token)
        if any(k == kid for k, _ in self.ring.enc_keys) or self.key_file is None:
            return self.ring
        return self._reload_if_changed().ring

    # --- single values ---------------------------------------------------------------------------------------

    def seal(self, context: str, text: str) -> str:
        """Seal a text under the active key (context: the attribute, authenticated)."""
        return self.ring.encrypt(text, context=context)

    def open(self, context: str, token: str) -> str:
        """Open a sealed text (a clear one is returned as it is)."""
        if not is_sealed(token):
            return token
        return self._ring_for(token).decrypt(token, context=context)

    def stored(self, attribute: str, value: Any) -> str:
        """The stored form of a column value: sealed if the attribute is encrypted, else its text."""
        if isinstance(value, str) and is_sealed(value):
            return value
        text = _text(attribute, value)
        return self.seal(attribute, text) if attribute in self.attributes else text

    def value(self, attribute: str, stored: str) -> Any:
        """The Python value of a stored column value (dates as dates)."""
        if isinstance(stored, dt.date):  # a column not migrated yet (never on a migrated hub)
            return stored
        text = self.open(attribute, stored)
        return dt.date.fromisoformat(text) if attribute == "date_of_birth" else text

    def _keyed(self, purpose: str):
        """An HMAC primed with the purpose prefix: copied per value, equal to KeyRing.keyed_hash's."""
        h = self._hmacs.get(purpose)
        if h is None:
            h = self._base.copy()
            h.update(f"{purpose}\x1f".encode())
            self._hmacs[purpose] = h
        return h

    def hash(self, attribute: str, value: Any) -> str | None:
        """The keyed hash stored beside an attribute (equal values hash equal, whatever the key in use)."""
        if value is None:
            return None
        c = self._keyed(attribute).copy()
        c.update(_text(attribute, value).encode())
        return c.hexdigest()

    def hashes(self, values: Mapping[str, Any]) -> dict[str, str | None]:
        """The `<attribute>_hash` columns of a source record's standardised values."""
        return {f"{a}_hash": self.hash(a, values.get(a)) for a in HASHED}

    def block_keys(self, keys: Iterable[str]) -> set[str]:
        """Blocking keys as stored and looked up: keyed hashes (a key holds names, dates, ids)."""
        h = self._keyed(BLOCK_KEY_PURPOSE)
        out = set()
        for k in keys:
            c = h.copy()
            c.update(k.encode())
            out.add(c.hexdigest()[:BLOCK_KEY_HEX])
        return out

    # --- lineage ---------------------------------------------------------------------------------------------

    def seal_lineage(self, field: str, value: str | None) -> str | None:
        """A lineage value (API field name) as stored."""
        if value is None or field not in self.api or is_sealed(value):
            return value
        return self.seal(STORAGE_NAME[field], value)

    def open_lineage(self, field: str, value: str | None) -> str | None:
        """A stored lineage value in clear."""
        if value is None or not is_sealed(value):
            return value
        return self.open(STORAGE_NAME.get(field, field), value)

    # --- JSON documents --------------------------------------------------------------------------------------

    def seal_document(self, shape: str, doc: Any) -> Any:
        """Seal the personal values of a JSON document: `raw`, `changes` (events) or `features`."""
        return _SHAPES[shape](doc, self._seal_api, self._seal_raw, self._seal_feature)

    def open_document(self, shape: str, doc: Any) -> Any:
        """Open the sealed values of a JSON document (whatever the configuration that sealed them)."""
        return _SHAPES[shape](doc, self._open_api, self._open_raw, self._open_feature)

    def _seal_api(self, field: str, value: Any) -> Any:
        if value is None or field not in self.api or (isinstance(value, str) and is_sealed(value)):
            return value
        return self.seal(STORAGE_NAME[field], _text(STORAGE_NAME[field], value))

    def _open_api(self, field: str, value: Any) -> Any:
        if isinstance(value, str) and is_sealed(value):
            return self.open(STORAGE_NAME.get(field, field), value)
        return value

    def _seal_raw(self, name: str, value: Any) -> Any:
        # raw values keep their JSON type: the sealed text holds the value as JSON
        if value is None or name not in self.api or (isinstance(value, str) and is_sealed(value)):
            return value
        return self.seal(f"raw.{name}", json.dumps(value))

    def _open_raw(self, name: str, value: Any) -> Any:
        if isinstance(value, str) and is_sealed(value):
            return json.loads(self.open(f"raw.{name}", value))
        return value

    def _seal_feature(self, name: str, value: Any) -> Any:
        attr = FEATURE_OF.get(name)
        if value is None or attr not in self.attributes or (isinstance(value, str) and is_sealed(value)):
            return value
        return self.seal(f"feature.{name}", str(value))

    def _open_feature(self, name: str, value: Any) -> Any:
        if isinstance(value, str) and is_sealed(value):
            return self.open(f"feature.{name}", value)
        return value


def _raw(doc, _api, raw, _feature):
    if not isinstance(doc, dict):
        return doc
    return {k: raw(k, v) for k, v in doc.items()}


def _features(doc, _api, _raw, feature):
    if not isinstance(doc, dict):
        return doc
    return {k: feature(k, v) for k, v in doc.items()}


def _changes(doc, api, _raw, _feature):
    """Attribute values in an event's changes: `fields` ({attribute: value} or {attribute: {before, after}})
    and entries naming one attribute ({"field": attribute, "value": value}, a steward's override)."""
    if not isinstance(doc, dict):
        return doc
    out = {}
    for key, entry in doc.items():
        if key == "fields" and isinstance(entry, dict):
            entry = {name: ({k: api(name, v) for k, v in value.items()} if isinstance(value, dict)
                            else api(name, value)) for name, value in entry.items()}
        elif isinstance(entry, dict) and isinstance(entry.get("field"), str) and "value" in entry:
            entry = {**entry, "value": api(entry["field"], entry["value"])}
        out[key] = entry
    return out


_SHAPES = {"raw": _raw, "features": _features, "changes": _changes}


def _stamp(path: str | None) -> tuple | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def configure(settings: Settings) -> Sealer:
    """Install this process's sealer for these settings (keys loaded, created only for the embedded database)."""
    sealer = SEALING.sealer
    wanted = (settings.keys, settings.key_file, settings.encrypted_attributes)
    if sealer is not None and getattr(sealer, "_settings", None) == wanted:
        return sealer
    unknown = sorted(settings.encrypted_attributes - set(SEALABLE))
    if unknown:
        raise KeyMaterialError(f"HUB_ENCRYPTED_ATTRIBUTES: {', '.join(unknown)} cannot be encrypted; the hub seals "
                               f"{', '.join(SEALABLE)} (another attribute needs a wider column and a hash column)")
    ring = load_keyring(keys=settings.keys, key_file=settings.key_file, create=is_sqlite(settings.database_url))
    sealer = Sealer(ring, settings.encrypted_attributes, key_file=None if settings.keys else settings.key_file)
    sealer._settings = wanted
    SEALING.sealer = sealer
    return sealer


def sealer() -> Sealer:
    """The process's sealer (`configure` must have run)."""
    return SEALING.get()


def lookup(table, attribute: str, values: Iterable[Any]):
    """`attribute IN values` on source records, by its keyed-hash column where it has one (sealed or not)."""
    values = list(values)
    if attribute in HASHED:
        s = sealer()
        return table.c[f"{attribute}_hash"].in_(sorted({s.hash(attribute, v) for v in values}))
    return table.c[attribute].in_(values)


async def verify_keys(db) -> None:
    """Open one stored value of each sealed column: keys that cannot open them stop a start, clearly.

    Raises KeyMaterialError (naming the key id a value needs, never the value).
    """
    from sqlalchemy import select

    from hub.models import Customer, SourceRecord

    sealer()  # configured at all
    async with db.reader() as conn:
        for table in (SourceRecord.__table__, Customer.__table__):
            # the newest rows are the likeliest under the newest key, the oldest under the oldest: opened
            # by the column type as they are read (a bounded read, whatever the table's size)
            for order in (table.c.id.desc(), table.c.id.asc()):
                (await conn.execute(select(*(table.c[a] for a in SEALABLE)).order_by(order).limit(200))).all()
