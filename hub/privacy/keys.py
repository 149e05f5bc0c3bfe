"""The hub's keys for personal data at rest: AES-256-GCM encryption and HMAC-SHA256 keyed hashes.

Key material is text, one key a line (blank lines and `#` comments ignored):

    hash <base64 32 bytes>          the keyed-hash key: stable for the life of the data (exact rules,
                                    blocking keys and erasure blocks compare its hashes)
    enc <key id> <base64 32 bytes>  an encryption key; the last `enc` line encrypts, every one decrypts

It comes from `HUB_KEYS` (the same lines joined by `;`) or else from the file `HUB_KEY_FILE`
(default `./hub.keys`). On the embedded database (SQLite) a missing key file is created with a
fresh key, readable by its owner only; on PostgreSQL the keys must be configured, since several
processes or machines must share them. Neither the keys nor anything derived from them is logged.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hub.config import Settings
from hub.db import is_sqlite

KEY_BYTES = 32
NONCE_BYTES = 12
CIPHER_PREFIX = "enc1"  # enc1:<key id>:<base64 nonce + ciphertext + tag>
_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class KeyMaterialError(RuntimeError):
    """The key material is missing or malformed, or does not open a stored value (an operator's problem)."""


@dataclass(frozen=True)
class KeyRing:
    """The keyed-hash key and the encryption keys, the last one active."""

    hash_key: bytes
    enc_keys: tuple[tuple[str, bytes], ...]

    @property
    def active_id(self) -> str:
        return self.enc_keys[-1][0]

    def key(self, key_id: str) -> bytes:
        for kid, material in self.enc_keys:
            if kid == key_id:
                return material
        raise KeyMaterialError(f"no key with id {key_id!r} is configured")

    @cached_property
    def _aeads(self) -> dict[str, AESGCM]:
        # one cipher object per key: building it costs more than sealing a short value
        return {kid: AESGCM(material) for kid, material in self.enc_keys}

    def _aead(self, key_id: str) -> AESGCM:
        aead = self._aeads.get(key_id)
        if aead is None:
            raise KeyMaterialError(f"no key with id {key_id!r} is configured")
        return aead

    def keyed_hash(self, value: str, *, purpose: str) -> str:
        """Return the hex HMAC of a value, separated by purpose (equal values hash equal within one purpose)."""
        return hmac.new(self.hash_key, f"{purpose}\x1f{value}".encode(), hashlib.sha256).hexdigest()

    def encrypt(self, plaintext: str, *, context: str) -> str:
        """Encrypt under the active key; `context` (e.g. the column) is authenticated, not stored."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._aead(self.active_id).encrypt(nonce, plaintext.encode(), context.encode())
        return f"{CIPHER_PREFIX}:{self.active_id}:{base64.b64encode(nonce + sealed).decode()}"

    def decrypt(self, token: str, *, context: str) -> str:
        """Open a value sealed by `encrypt` under any configured key."""
        key_id, body = key_id_of(token), token.split(":", 2)[2]
        try:
            raw = base64.b64decode(body, validate=True)
            opened = self._aead(key_id).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode())
        except (InvalidTag, binascii.Error, ValueError) as e:
            raise KeyMaterialError(f"a stored value does not open with key {key_id!r}") from e
        return opened.decode()

    def with_new_key(self, key_id: str | None = None) -> KeyRing:
        """Return this ring with a fresh encryption key appended (it becomes the active one)."""
        key_id = key_id or f"k{len(self.enc_keys) + 1}"
        if not _KEY_ID.match(key_id) or any(kid == key_id for kid, _ in self.enc_keys):
            raise KeyMaterialError(f"key id {key_id!r} is malformed or taken")
        return KeyRing(self.hash_key, (*self.enc_keys, (key_id, secrets.token_bytes(KEY_BYTES))))

    def to_text(self) -> str:
        """Render the ring in the key-file format."""
        lines = ["# hub keys: keep this file secret and backed up (losing it loses the encrypted values)",
                 f"hash {base64.b64encode(self.hash_key).decode()}"]
        lines += [f"enc {kid} {base64.b64encode(material).decode()}" for kid, material in self.enc_keys]
        return "\n".join(lines) + "\n"


def is_sealed(value: str | None) -> bool:
    """Tell whether a stored value is an `encrypt` output."""
    return bool(value) and value.startswith(CIPHER_PREFIX + ":")


def key_id_of(token: str) -> str:
    """Return the key id a sealed value names."""
    parts = token.split(":", 2)
    if len(parts) != 3 or parts[0] != CIPHER_PREFIX:
        raise KeyMaterialError("a stored value is not in the sealed format")
    return parts[1]


def _material(text: str, where: str) -> bytes:
    try:
        material = base64.b64decode(text, validate=True)
    except binascii.Error as e:
        raise KeyMaterialError(f"{where}: a key is not base64") from e
    if len(material) != KEY_BYTES:
        raise KeyMaterialError(f"{where}: a key must be {KEY_BYTES} bytes, base64-encoded")
    return material


def parse_keys(text: str, where: str = "keys") -> KeyRing:
    """Parse key-file text (lines, or `;`-separated as in HUB_KEYS) into a ring."""
    hash_key, enc_keys = None, []
    for n, line in enumerate(re.split(r"[;\n]", text), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if parts[0] == "hash" and len(parts) == 2 and hash_key is None:
            hash_key = _material(parts[1], f"{where}, entry {n}")
        elif parts[0] == "enc" and len(parts) == 3 and _KEY_ID.match(parts[1]):
            if any(kid == parts[1] for kid, _ in enc_keys):
                raise KeyMaterialError(f"{where}, entry {n}: key id {parts[1]!r} appears twice")
            enc_keys.append((parts[1], _material(parts[2], f"{where}, entry {n}")))
        else:
            raise KeyMaterialError(f"{where}, entry {n}: expected 'hash <base64>' (once) or 'enc <id> <base64>'")
    if hash_key is None or not enc_keys:
        raise KeyMaterialError(f"{where}: needs one 'hash' line and at least one 'enc' line")
    return KeyRing(hash_key, tuple(enc_keys))


def new_keyring() -> KeyRing:
    """Make a ring with fresh random keys."""
    return KeyRing(secrets.token_bytes(KEY_BYTES), (("k1", secrets.token_bytes(KEY_BYTES)),))


def write_key_file(path: Path, ring: KeyRing) -> None:
    """Write a key file readable by its owner only, replacing any earlier one atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(ring.to_text())
    os.replace(tmp, path)


def load_keyring(*, keys: str | None, key_file: str, create: bool) -> KeyRing:
    """Load the ring from HUB_KEYS text, else the key file; create the file if allowed and absent."""
    if keys:
        return parse_keys(keys, "HUB_KEYS")
    path = Path(key_file)
    if path.exists():
        return parse_keys(path.read_text(), str(path))
    if not create:
        raise KeyMaterialError(f"no keys: set HUB_KEYS or HUB_KEY_FILE (the key file {path} does not exist); "
                        "`hub keys init` makes one")
    ring = new_keyring()
    write_key_file(path, ring)
    return ring


@lru_cache(maxsize=8)
def _cached(keys: str | None, key_file: str, create: bool) -> KeyRing:
    return load_keyring(keys=keys, key_file=key_file, create=create)


def keyring(settings: Settings) -> KeyRing:
    """Return the process's key ring for these settings (loaded once; created only for the embedded database)."""
    return _cached(settings.keys, settings.key_file, is_sqlite(settings.database_url))
