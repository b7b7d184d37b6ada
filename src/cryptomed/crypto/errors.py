"""Error types of the crypto layer: one per thing that can go wrong, so callers and tests can tell them apart."""

from __future__ import annotations

from .. import CryptomedError


class CryptoError(CryptomedError):
    """Base class of encryption/decryption errors."""


class KeyMissingError(CryptoError):
    """No key is available (no environment variable, no key file)."""


class InvalidKeyError(CryptoError):
    """A key or passphrase is present but malformed."""


class WrongKeyError(CryptoError):
    """The container was written under a different key-encryption key than the one given."""


class ContainerFormatError(CryptoError):
    """The bytes are not a complete, supported cryptomed container (empty, truncated, garbage, unknown version)."""


class HeaderAuthenticationError(CryptoError):
    """The key id matches but the data key does not unwrap: the header or key block was modified."""


class RecordAuthenticationError(CryptoError):
    """A record's GCM tag does not verify: it was tampered with, moved, swapped or corrupted."""


class NonceReuseError(CryptoError):
    """Two records would be encrypted under the same (key, nonce): refused before anything is written."""


class ContainerMismatchError(CryptoError):
    """A valid container, but not the one a trusted record names: modified or replaced (e.g. rolled back to an
    older valid container) since the ``decrypt`` rule verified it, or different from the hash in ``dvc.lock``."""
