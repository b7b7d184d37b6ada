"""AES-256-GCM engines: PyCryptodome (the reference) and OpenSSL through ``cryptography``.

Both take the same (key, 96-bit nonce, plaintext, associated data) and give the
same bytes ``ciphertext || 128-bit tag`` -- GCM is deterministic given the nonce --
so a container written by one is read by the other (``tests/test_crypto_vectors.py``
proves it byte for byte).  The OpenSSL engine keeps one cipher context per key,
which removes PyCryptodome's per-record setup cost (~30 us).
"""

from __future__ import annotations

from Crypto.Cipher import AES

from .errors import CryptoError

NONCE_BYTES = 12
TAG_BYTES = 16


class Engine:
    name: str

    def encrypt(self, key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """``ciphertext || tag``."""
        raise NotImplementedError

    def decrypt(self, key: bytes, nonce: bytes, sealed: bytes, aad: bytes) -> bytes | None:
        """The plaintext, or ``None`` when the tag does not verify."""
        raise NotImplementedError

    def encrypt_into(self, key: bytes, nonce: bytes, plaintext: bytes, aad: bytes, out: memoryview) -> None:
        """:meth:`encrypt` writing ``ciphertext || tag`` into ``out`` (``len(plaintext) + 16`` bytes, reusable
        memory: no allocation per record)."""
        out[:] = self.encrypt(key, nonce, plaintext, aad)


class PyCryptodomeEngine(Engine):
    name = "pycryptodome"

    def encrypt(self, key, nonce, plaintext, aad):
        cipher = AES.new(key, AES.MODE_GCM, nonce=nonce, mac_len=TAG_BYTES)
        cipher.update(aad)
        ct, tag = cipher.encrypt_and_digest(plaintext)
        return ct + tag

    def encrypt_into(self, key, nonce, plaintext, aad, out):
        cipher = AES.new(key, AES.MODE_GCM, nonce=nonce, mac_len=TAG_BYTES)
        cipher.update(aad)
        cipher.encrypt(plaintext, output=out[:-TAG_BYTES])
        out[-TAG_BYTES:] = cipher.digest()

    def decrypt(self, key, nonce, sealed, aad):
        if len(sealed) < TAG_BYTES:
            return None
        cipher = AES.new(key, AES.MODE_GCM, nonce=nonce, mac_len=TAG_BYTES)
        cipher.update(aad)
        try:
            return cipher.decrypt_and_verify(sealed[:-TAG_BYTES], sealed[-TAG_BYTES:])
        except ValueError:
            return None


class OpenSSLEngine(Engine):
    name = "openssl"

    def __init__(self):
        try:
            from cryptography.exceptions import InvalidTag
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError as exc:  # pragma: no cover - cryptography is pinned in requirements.txt
            raise CryptoError("crypto.engine 'openssl' needs the 'cryptography' package") from exc
        self._aesgcm, self._invalid = AESGCM, InvalidTag
        self._ctx: dict[bytes, object] = {}

    def _get(self, key):
        ctx = self._ctx.get(key)
        if ctx is None:
            ctx = self._ctx[key] = self._aesgcm(key)
        return ctx

    def encrypt(self, key, nonce, plaintext, aad):
        return self._get(key).encrypt(nonce, plaintext, aad)

    def encrypt_into(self, key, nonce, plaintext, aad, out):
        self._get(key).encrypt_into(nonce, plaintext, aad, out)

    def decrypt(self, key, nonce, sealed, aad):
        try:
            return self._get(key).decrypt(nonce, sealed, aad)
        except self._invalid:
            return None


ENGINES = {"pycryptodome": PyCryptodomeEngine, "openssl": OpenSSLEngine}


def get_engine(name: str | Engine = "pycryptodome") -> Engine:
    if isinstance(name, Engine):
        return name
    try:
        return ENGINES[name]()
    except KeyError:
        raise CryptoError(f"unknown crypto engine {name!r}; choose one of {sorted(ENGINES)}") from None
