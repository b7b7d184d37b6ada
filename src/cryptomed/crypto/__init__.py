"""AES-256-GCM envelope encryption of image records: keys, engines, and the container format.

``keys``       key-encryption keys (raw key or scrypt passphrase), key ids, key files
``engines``    AES-GCM implementations (PyCryptodome reference, OpenSSL via ``cryptography``)
``container``  the versioned record container (``docs/format.md``), reading, writing, rotation
``errors``     one error type per failure
"""

from .container import (
    ContainerReader,
    DecryptedRecord,
    check_nonces_unique,
    check_verification_record,
    decrypt_records,
    decrypt_to_arrays,
    encrypt_records,
    inspect,
    printable,
    read_header,
    rotate,
    verification_record,
    verify_container,
)
from .engines import ENGINES, get_engine
from .errors import (
    ContainerFormatError,
    ContainerMismatchError,
    CryptoError,
    HeaderAuthenticationError,
    InvalidKeyError,
    KeyMissingError,
    NonceReuseError,
    RecordAuthenticationError,
    WrongKeyError,
)
from .keys import (
    KEY_ENV,
    PASSPHRASE_ENV,
    KeyEncryptionKey,
    Passphrase,
    RawKey,
    generate_key_file,
    key_id,
    load_kek,
    load_key,
    read_key_file,
)
