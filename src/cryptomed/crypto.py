"""Keys and the AES-256-GCM record container.

Container layout (all integers big-endian), version 1::

    file header   magic b"CMED" | version u8 = 1 | algorithm u8 = 1 (AES-256-GCM)
                  | key id (8 bytes) | meta length u32 | meta (canonical JSON:
                  {"dataset": ..., "records": N})
    record * N    record length u32 | aad length u16 | aad (canonical JSON:
                  {"dataset", "index", "id", "split", "shape": [h, w]})
                  | nonce (12 bytes, fresh random per record) | ciphertext | tag (16 bytes)

The plaintext of a record is ``label (u16) || pixels (h*w bytes, row-major uint8)``:
the diagnosis is encrypted with the image.  The GCM associated data is
``file header || record aad``, so a record is bound to its dataset, split, id,
shape, position, and to the header (key id and record count) of its file: moving,
swapping or editing any of them fails authentication.

The key id is a one-way fingerprint of the key (first 8 bytes of
SHA-256("cryptomed key id v1" || key)); it lets a wrong key be reported as such
instead of as tampering.  Keys come from the ``CRYPTOMED_KEY`` environment
variable (64 hex digits) or from a key file (created on first use, mode 0600).
Key bytes are never logged or written anywhere else.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
from Crypto.Cipher import AES
from Crypto.Random import get_random_bytes

from . import CryptomedError
from .files import atomic_path

log = logging.getLogger(__name__)

MAGIC = b"CMED"
VERSION = 1
ALG_AES_256_GCM = 1
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_ENV = "CRYPTOMED_KEY"
_HEADER_FIXED = struct.Struct(">4sBB8sI")
_REC_LEN = struct.Struct(">I")
_AAD_LEN = struct.Struct(">H")
_LABEL = struct.Struct(">H")


class CryptoError(CryptomedError):
    """Base class of encryption/decryption errors."""


class KeyMissingError(CryptoError):
    """No key is available (no environment variable, no key file)."""


class InvalidKeyError(CryptoError):
    """A key is present but malformed."""


class WrongKeyError(CryptoError):
    """The container was written under a different key than the one given."""


class ContainerFormatError(CryptoError):
    """The bytes are not a (complete, supported) cryptomed container."""


class RecordAuthenticationError(CryptoError):
    """A record's GCM tag does not verify: it was tampered with, moved or corrupted."""


# --------------------------------------------------------------------------- keys


def key_id(key: bytes) -> bytes:
    """One-way 8-byte fingerprint of ``key``; safe to store and log."""
    return hashlib.sha256(b"cryptomed key id v1\x00" + key).digest()[:8]


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
    key = get_random_bytes(KEY_BYTES)
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


def load_key(key_file: str | os.PathLike | None, create: bool = False, env: str = KEY_ENV) -> bytes:
    """Return the key from ``$CRYPTOMED_KEY`` or ``key_file``; optionally create the file.

    Only ``encrypt`` passes ``create=True``: decrypting with a freshly made key could
    never succeed, so a missing key there is reported as missing.
    """
    value = os.environ.get(env)
    if value:
        return _parse_hex_key(value, f"${env}")
    if key_file is None:
        raise KeyMissingError(f"no key: set ${env} or configure crypto.key_file")
    path = Path(key_file)
    if not path.exists():
        if create:
            log.info("created a new AES-256 key file %s (mode 0600); back it up, it is not in git or DVC", path)
            return generate_key_file(path)
        raise KeyMissingError(f"key file {path} not found and ${env} is not set; the data cannot be decrypted without the key it was encrypted with")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("key file %s is accessible to group/others (mode %o); chmod 600 it", path, mode)
    return _parse_hex_key(path.read_text(), str(path))


# --------------------------------------------------------------------------- container


def _canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _file_header(kid: bytes, dataset: str, n_records: int) -> bytes:
    meta = _canonical({"dataset": dataset, "records": n_records})
    return _HEADER_FIXED.pack(MAGIC, VERSION, ALG_AES_256_GCM, kid, len(meta)) + meta


@dataclass
class DecryptedRecord:
    index: int
    id: str
    split: str
    label: int
    pixels: np.ndarray


def encrypt_records(path: str | os.PathLike, dataset: str, images: np.ndarray, labels: np.ndarray,
                    ids, splits, key: bytes) -> np.ndarray:
    """Write one AES-256-GCM record per image to ``path`` (atomically); return per-record seconds."""
    if len(key) != KEY_BYTES:
        raise InvalidKeyError("AES-256 needs a 32-byte key")
    n = len(images)
    if not (len(labels) == len(ids) == len(splits) == n):
        raise ValueError("images, labels, ids and splits must have the same length")
    header = _file_header(key_id(key), dataset, n)
    seconds = np.empty(n, dtype=np.float64)
    nonces: set[bytes] = set()
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(header)
        for i in range(n):
            img = np.ascontiguousarray(images[i], dtype=np.uint8)
            aad = _canonical({"dataset": dataset, "index": i, "id": str(ids[i]), "split": str(splits[i]),
                              "shape": list(img.shape)})
            plaintext = _LABEL.pack(int(labels[i])) + img.tobytes()
            t0 = time.perf_counter()
            nonce = get_random_bytes(NONCE_BYTES)
            cipher = AES.new(key, AES.MODE_GCM, nonce=nonce, mac_len=TAG_BYTES)
            cipher.update(header + aad)
            ciphertext, tag = cipher.encrypt_and_digest(plaintext)
            seconds[i] = time.perf_counter() - t0
            if nonce in nonces:  # 2^-96 per pair; checked because reuse would be catastrophic
                raise CryptoError(f"nonce reused at record {i} of {path}; refusing to write")
            nonces.add(nonce)
            body = _AAD_LEN.pack(len(aad)) + aad + nonce + ciphertext + tag
            fh.write(_REC_LEN.pack(len(body)) + body)
    return seconds


def _read_exact(fh: BinaryIO, n: int, what: str, path) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise ContainerFormatError(f"{path}: truncated while reading {what} ({len(data)} of {n} bytes)")
    return data


def read_header(fh: BinaryIO, path) -> tuple[bytes, bytes, dict]:
    fixed = fh.read(_HEADER_FIXED.size)
    if len(fixed) < _HEADER_FIXED.size or fixed[:4] != MAGIC:
        raise ContainerFormatError(f"{path}: not a cryptomed container (bad magic or too short)")
    _, version, alg, kid, meta_len = _HEADER_FIXED.unpack(fixed)
    if version != VERSION:
        raise ContainerFormatError(f"{path}: unsupported container version {version}")
    if alg != ALG_AES_256_GCM:
        raise ContainerFormatError(f"{path}: unsupported algorithm id {alg}")
    meta_bytes = _read_exact(fh, meta_len, "header metadata", path)
    try:
        meta = json.loads(meta_bytes)
        meta["dataset"], meta["records"]  # noqa: B018 - presence check
    except (ValueError, KeyError, TypeError):
        raise ContainerFormatError(f"{path}: header metadata is not valid") from None
    return fixed + meta_bytes, kid, meta


def decrypt_records(path: str | os.PathLike, key: bytes) -> Iterator[tuple[DecryptedRecord, float]]:
    """Yield ``(record, seconds)`` for each record, verifying every tag.

    Raises :class:`WrongKeyError` before touching any record if the key id differs,
    and :class:`RecordAuthenticationError` naming the record on a failed tag.
    """
    with open(path, "rb") as fh:
        header, kid, meta = read_header(fh, path)
        if kid != key_id(key):
            raise WrongKeyError(
                f"{path} was encrypted under key id {kid.hex()}, but the key given has id {key_id(key).hex()}: wrong key"
            )
        dataset, n = meta["dataset"], int(meta["records"])
        for i in range(n):
            (rec_len,) = _REC_LEN.unpack(_read_exact(fh, _REC_LEN.size, f"length of record {i}", path))
            body = _read_exact(fh, rec_len, f"record {i}", path)
            where = f"{path}: record {i}"
            try:
                (aad_len,) = _AAD_LEN.unpack_from(body)
                aad = body[2 : 2 + aad_len]
                info = json.loads(aad)
                rid = str(info.get("id", "?"))
                where = f"{path}: record {i} (dataset {info.get('dataset')}, split {info.get('split')}, id {rid})"
                h, w = (int(v) for v in info["shape"])
            except (ValueError, KeyError, TypeError, struct.error):
                raise RecordAuthenticationError(f"{where}: associated data is corrupt") from None
            off = 2 + aad_len
            nonce = body[off : off + NONCE_BYTES]
            ciphertext = body[off + NONCE_BYTES : len(body) - TAG_BYTES]
            tag = body[len(body) - TAG_BYTES :]
            t0 = time.perf_counter()
            cipher = AES.new(key, AES.MODE_GCM, nonce=nonce, mac_len=TAG_BYTES)
            cipher.update(header + aad)
            try:
                plaintext = cipher.decrypt_and_verify(ciphertext, tag)
            except ValueError:
                raise RecordAuthenticationError(f"{where}: authentication tag does not verify (tampered, moved or corrupted)") from None
            seconds = time.perf_counter() - t0
            # The associated data is authenticated from here on, so a position that differs from
            # where the record sits proves it was reordered or moved, not a random corruption.
            if info.get("index") != i or info.get("dataset") != dataset:
                raise RecordAuthenticationError(
                    f"{where}: authenticated position {info.get('index')} of dataset {info.get('dataset')} differs from "
                    f"its place ({i} of {dataset}): records were reordered or moved")
            if len(plaintext) != 2 + h * w:
                raise ContainerFormatError(f"{where}: plaintext size does not match the shape {h}x{w}")
            (label,) = _LABEL.unpack_from(plaintext)
            pixels = np.frombuffer(plaintext, dtype=np.uint8, offset=2).reshape(h, w)
            yield DecryptedRecord(i, rid, str(info["split"]), label, pixels), seconds
        if fh.read(1):
            raise ContainerFormatError(f"{path}: trailing bytes after the last of {n} records")


def decrypt_to_arrays(path: str | os.PathLike, key: bytes) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Decrypt a whole container into the arrays layout used by preprocess; return (arrays, seconds per record)."""
    images, labels, ids, splits, seconds = [], [], [], [], []
    for rec, sec in decrypt_records(path, key):
        images.append(rec.pixels)
        labels.append(rec.label)
        ids.append(rec.id)
        splits.append(rec.split)
        seconds.append(sec)
    arrays = {
        "images": np.stack(images) if images else np.zeros((0, 0, 0), np.uint8),
        "labels": np.array(labels, dtype=np.int64),
        "ids": np.array(ids),
        "splits": np.array(splits),
    }
    return arrays, np.array(seconds)

