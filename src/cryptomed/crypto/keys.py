"""Key-encryption keys (KEKs): where they come from, their ids, and wrapping of data keys.

cryptomed uses envelope encryption.  Each container has its own random AES-256
data key (DEK) that encrypts the image records; the DEK is stored in the
container's key block wrapped (AES-256-GCM) under a key-encryption key.  The KEK
is either

* a raw 256-bit key: ``$CRYPTOMED_KEY`` (64 hex digits) or a key file (64 hex
  digits, mode 0600, created on first use), or
* derived from a passphrase (``$CRYPTOMED_PASSPHRASE``) with scrypt; the salt and
  cost parameters are stored in the key block, so every container gets its own
  derived KEK.

Key ids are one-way fingerprints (8 bytes of SHA-256 over a domain-separated
key), safe to store and log; they let "wrong key" be told apart from "tampered
data".  Key bytes and passphrases are never logged or written anywhere else.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import tempfile
from pathlib import Path

from .errors import ContainerFormatError, InvalidKeyError, KeyMissingError

log = logging.getLogger(__name__)

KEY_BYTES = 32
KEY_ENV = "CRYPTOMED_KEY"
PASSPHRASE_ENV = "CRYPTOMED_PASSPHRASE"

KIND_RAW = 1
KIND_SCRYPT = 2

# scrypt cost: N=2^15, r=8, p=1 (32 MiB, ~0.1 s here; RFC 7914 / OWASP interactive-login level).
SCRYPT_DEFAULT = {"n": 2**15, "r": 8, "p": 1}
# Bounds on parameters read from a (not yet authenticated) header, so a crafted file cannot make us
# allocate gigabytes or spin for minutes before the tag check fails.
_SCRYPT_MAX = {"n": 2**20, "r": 16, "p": 4}
SALT_BYTES = 16


def key_id(key: bytes) -> bytes:
    """One-way 8-byte fingerprint of ``key``; safe to store and log."""
    return hashlib.sha256(b"cryptomed key id v1\x00" + key).digest()[:8]


def canonical_json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


class KeyEncryptionKey:
    """A source of KEK bytes for a key block: ``kind`` plus the public parameters it needs."""

    kind: int
    description: str

    def new_params(self, rng) -> dict:
        """Public parameters for a new key block (e.g. a fresh salt)."""
        return {}

    def derive(self, params: dict) -> bytes:
        raise NotImplementedError


class RawKey(KeyEncryptionKey):
    kind = KIND_RAW

    def __init__(self, key: bytes, description: str = "raw key"):
        if len(key) != KEY_BYTES:
            raise InvalidKeyError(f"{description}: an AES-256 key is {KEY_BYTES} bytes, got {len(key)}")
        self._key = bytes(key)
        self.description = description

    def derive(self, params: dict) -> bytes:
        return self._key

    def __repr__(self) -> str:  # never the key bytes
        return f"RawKey(id={key_id(self._key).hex()})"


class Passphrase(KeyEncryptionKey):
    kind = KIND_SCRYPT

    def __init__(self, passphrase: str, n: int = SCRYPT_DEFAULT["n"], r: int = SCRYPT_DEFAULT["r"],
                 p: int = SCRYPT_DEFAULT["p"], description: str = "passphrase"):
        if len(passphrase) < 8:
            raise InvalidKeyError(f"{description}: a passphrase needs at least 8 characters")
        self._passphrase = passphrase.encode()
        self.cost = {"n": n, "r": r, "p": p}
        self.description = description
        self._cache: dict[bytes, bytes] = {}

    def new_params(self, rng) -> dict:
        return {"kdf": "scrypt", "salt": rng(SALT_BYTES).hex(), **self.cost}

    def derive(self, params: dict) -> bytes:
        try:
            salt = bytes.fromhex(params["salt"])
            n, r, p = int(params["n"]), int(params["r"]), int(params["p"])
            ok = params.get("kdf") == "scrypt" and len(salt) == SALT_BYTES and n >= 2 and n & (n - 1) == 0
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok or n > _SCRYPT_MAX["n"] or not 1 <= r <= _SCRYPT_MAX["r"] or not 1 <= p <= _SCRYPT_MAX["p"]:
            raise ContainerFormatError(f"key block: invalid or out-of-bounds scrypt parameters {params}")
        if salt not in self._cache:
            self._cache[salt] = hashlib.scrypt(self._passphrase, salt=salt, n=n, r=r, p=p,
                                               maxmem=2 * 128 * r * (n + p + 2), dklen=KEY_BYTES)
        return self._cache[salt]

    def __repr__(self) -> str:
        return "Passphrase(***)"


def _parse_hex_key(text: str, where: str) -> bytes:
    text = text.strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise InvalidKeyError(f"{where}: key must be {KEY_BYTES * 2} hex digits") from None
    if len(key) != KEY_BYTES:
        raise InvalidKeyError(f"{where}: key must be {KEY_BYTES * 2} hex digits (AES-256), got {len(text)} characters")
    return key


def generate_key_file(path: str | os.PathLike) -> bytes:
    """Create a new random AES-256 key file with mode 0600 and return the key.

    Safe against concurrent first use (two encrypt jobs starting together): the key is
    written to a private temporary file and hard-linked into place, which fails if the
    file already exists; the loser then reads the winner's complete key.  Never overwrites.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = os.urandom(KEY_BYTES)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(key.hex() + "\n")
        os.link(tmp, path)
    except FileExistsError:
        return _parse_hex_key(path.read_text(), str(path))
    finally:
        os.unlink(tmp)
    return key


def read_key_file(path: str | os.PathLike) -> bytes:
    path = Path(path)
    if not path.exists():
        raise KeyMissingError(f"key file {path} not found")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("key file %s is accessible to group/others (mode %o); chmod 600 it", path, mode)
    return _parse_hex_key(path.read_text(), str(path))


def load_key(key_file: str | os.PathLike | None, create: bool = False) -> bytes:
    """Raw key bytes from ``$CRYPTOMED_KEY`` or ``key_file`` (optionally created)."""
    value = os.environ.get(KEY_ENV)
    if value:
        return _parse_hex_key(value, f"${KEY_ENV}")
    if key_file is None:
        raise KeyMissingError(f"no key: set ${KEY_ENV} or ${PASSPHRASE_ENV}, or configure crypto.key_file")
    path = Path(key_file)
    if not path.exists():
        if create:
            log.info("created a new AES-256 key file %s (mode 0600); back it up, it is not in git or DVC", path)
            return generate_key_file(path)
        raise KeyMissingError(f"key file {path} not found and neither ${KEY_ENV} nor ${PASSPHRASE_ENV} is set; "
                              "the data cannot be decrypted without the key it was encrypted with")
    return read_key_file(path)


def load_kek(key_file: str | os.PathLike | None, create: bool = False) -> KeyEncryptionKey:
    """The KEK for a stage: ``$CRYPTOMED_KEY`` > ``$CRYPTOMED_PASSPHRASE`` (scrypt) > ``key_file``.

    Only ``encrypt`` passes ``create=True``: decrypting with a freshly made key could
    never succeed, so a missing key there is reported as missing.
    """
    if not os.environ.get(KEY_ENV) and os.environ.get(PASSPHRASE_ENV):
        return Passphrase(os.environ[PASSPHRASE_ENV], description=f"${PASSPHRASE_ENV}")
    where = f"${KEY_ENV}" if os.environ.get(KEY_ENV) else str(key_file)
    return RawKey(load_key(key_file, create=create), description=where)
