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
import re
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
# Bounds on parameters read from a (not yet authenticated) header, so that opening any container costs at most
# 256 MiB and about 1-2 s (2-core VM: n*r*p = 2^21 takes 1.0-1.3 s) before the key is checked: each of n, r, p
# within its own bound, memory 128*n*r bytes <= 256 MiB (n*r <= 2^21) and work n*r*p <= 2^21. The documented
# maximum (e.g. n=2^18, r=8, p=1 or n=2^20, r=2, p=1) is derived with maxmem set to what it needs.
SCRYPT_MAX = {"n": 2**20, "r": 16, "p": 4}
SCRYPT_MAX_MEMORY = 256 << 20  # bytes: 128 * n * r
SCRYPT_MAX_WORK = 2**21  # n * r * p
SCRYPT_PARAM_KEYS = frozenset({"kdf", "n", "p", "r", "salt"})
SALT_BYTES = 16
_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")


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
        if scrypt_params_problem({"kdf": "scrypt", "salt": "00" * SALT_BYTES, **self.cost}):
            raise InvalidKeyError(f"{description}: scrypt cost {self.cost} is outside the bounds every reader accepts "
                                  f"({scrypt_bounds_text()})")
        self.description = description
        self._cache: dict[tuple, bytes] = {}

    def new_params(self, rng) -> dict:
        return {"kdf": "scrypt", "salt": rng(SALT_BYTES).hex(), **self.cost}

    def derive(self, params: dict) -> bytes:
        problem = scrypt_params_problem(params)
        if problem:
            raise ContainerFormatError(f"key block: invalid or out-of-bounds scrypt parameters ({problem})")
        n, r, p, salt = params["n"], params["r"], params["p"], bytes.fromhex(params["salt"])
        if (salt, n, r, p) not in self._cache:
            # OpenSSL needs 128*r*(n+2) bytes for V plus 128*r*p for B; maxmem is exactly that plus 1 MiB.
            self._cache[(salt, n, r, p)] = hashlib.scrypt(self._passphrase, salt=salt, n=n, r=r, p=p,
                                                          maxmem=128 * r * (n + 2 + p) + (1 << 20), dklen=KEY_BYTES)
        return self._cache[(salt, n, r, p)]

    def __repr__(self) -> str:
        return "Passphrase(***)"


def scrypt_bounds_text() -> str:
    return (f"n a power of two, 2 <= n <= 2^20, 1 <= r <= {SCRYPT_MAX['r']}, 1 <= p <= {SCRYPT_MAX['p']}, "
            f"128*n*r <= {SCRYPT_MAX_MEMORY >> 20} MiB, n*r*p <= 2^21, n < 2^(16*r)")


def _is_int(v) -> bool:
    return type(v) is int  # not bool, not float (1e999 is a float: inf)


def scrypt_params_problem(params) -> str | None:
    """What is wrong with scrypt parameters read from a key block (``None`` if nothing): exact keys and types,
    a 16-byte hex salt, and the cost bounds that cap the memory and time any header can make a reader spend."""
    if not isinstance(params, dict) or set(params) != SCRYPT_PARAM_KEYS:
        return f"expected exactly the keys {sorted(SCRYPT_PARAM_KEYS)}"
    if params["kdf"] != "scrypt":
        return "kdf is not scrypt"
    salt = params["salt"]
    if not isinstance(salt, str) or len(salt) != 2 * SALT_BYTES or not re.fullmatch(r"[0-9a-f]+", salt):
        return f"salt is not {2 * SALT_BYTES} lowercase hex digits"
    n, r, p = params["n"], params["r"], params["p"]
    if not (_is_int(n) and _is_int(r) and _is_int(p)):
        return "n, r and p must be integers"
    if not (2 <= n <= SCRYPT_MAX["n"] and n & (n - 1) == 0 and 1 <= r <= SCRYPT_MAX["r"] and 1 <= p <= SCRYPT_MAX["p"]
            and 128 * n * r <= SCRYPT_MAX_MEMORY and n * r * p <= SCRYPT_MAX_WORK
            and n < 2 ** (16 * r)):  # RFC 7914: N < 2^(128 r / 8); OpenSSL refuses r = 1 with n >= 2^16
        return f"n={n}, r={r}, p={p} outside the bounds ({scrypt_bounds_text()})"
    return None


def _parse_hex_key(text: str, where: str) -> bytes:
    """Exactly 64 hex digits (a key file may end in one newline); the text itself is never echoed."""
    if not _HEX_KEY.fullmatch(text):
        raise InvalidKeyError(f"{where}: key must be exactly {KEY_BYTES * 2} hex digits (AES-256), "
                              f"nothing else (got {len(text)} characters)")
    return bytes.fromhex(text)


def _key_file_text(text: str) -> str:
    return text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text


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
        return read_key_file(path)
    finally:
        os.unlink(tmp)
    return key


def read_key_file(path: str | os.PathLike) -> bytes:
    path = Path(path)
    if not path.exists():
        raise KeyMissingError(f"key file {path} not found")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:  # as ssh does for private keys
        raise InvalidKeyError(f"key file {path} is accessible to group/others (mode {mode:04o}); refusing to use it. "
                              f"Fix: chmod 600 {path}")
    return _parse_hex_key(_key_file_text(path.read_text()), str(path))


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
