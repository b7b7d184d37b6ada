"""The cryptomed container (format version 3): envelope-encrypted AES-256-GCM image records.

The byte layout is specified in ``docs/format.md``; in short::

    immutable header  magic "CMED" | version 3 | algorithm 1 | file id (16) | DEK id (8) | N (u32)
                      | meta length (u32) | meta JSON {"dataset", "shape", "splits"} | index: N+1 offsets (u64)
                      | split table: N bytes, record i's split = splits[table[i]]
    key block         length (u32) | KEK kind (u8) | KEK id (8) | KDF params length (u16) | KDF params JSON
                      | wrap nonce (12) | wrapped DEK (32) | wrap tag (16)
    records (N)       length (u32) | AAD length (u16) | AAD JSON {"dataset","id","index","shape","split"}
                      | nonce (12) | ciphertext (2 + h*w) | tag (16)

The data key (DEK) is fresh per container.  It is wrapped under the KEK with
associated data ``"cryptomed/v3/dek-wrap" || SHA-256(immutable header) || KEK
kind || KEK id || KDF params``; each record is encrypted under the DEK with a
fresh random nonce and associated data ``"cryptomed/v3/record" || SHA-256(immutable
header) || record AAD``.  The plaintext of a record is ``label (u16) || pixels``.
So a record is bound to its file (file id, DEK), dataset, split, id, shape and
position; rotation (:func:`rotate`) rewrites only the key block.

Nothing read from the file is trusted before it is authenticated: the split table
(what a filtered read selects by) is in the immutable header, authenticated when
the data key unwraps; a record's associated data is parsed only after its tag
verifies (and must then agree with the header).  Every header value is checked for
type and range before use, and the scrypt cost a header may ask for is capped.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..files import atomic_path
from .engines import NONCE_BYTES, TAG_BYTES, Engine, get_engine
from .errors import (
    ContainerFormatError,
    ContainerMismatchError,
    CryptoError,
    HeaderAuthenticationError,
    InvalidKeyError,
    NonceReuseError,
    RecordAuthenticationError,
    WrongKeyError,
)
from .keys import KEY_BYTES, KIND_RAW, KIND_SCRYPT, KeyEncryptionKey, canonical_json, key_id, scrypt_params_problem
from .parallel import run_spans

MAGIC = b"CMED"
VERSION = 3
ALG_AES_256_GCM = 1
FILE_ID_BYTES = 16
_FIXED = struct.Struct(">4sBB16s8sII")  # magic, version, algorithm, file id, DEK id, records, meta length
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_KB_FIXED = struct.Struct(">B8sH")  # KEK kind, KEK id, KDF params length
WRAP_DOMAIN = b"cryptomed/v3/dek-wrap\x00"
RECORD_DOMAIN = b"cryptomed/v3/record\x00"
WRAPPED_BYTES = KEY_BYTES + TAG_BYTES
# Bounds on what a header may declare, checked before anything is allocated by it: the record index and split
# table take at most 9 bytes x MAX_RECORDS = 36 MiB (and must fit in the file), each record must be as long as
# its image, so decrypting allocates no more than the file's size.
MAX_RECORDS = 1 << 22
MAX_META = 1 << 16
MAX_KEY_BLOCK = 1 << 12
MAX_SIDE = 1 << 14  # image height and width
MAX_SPLITS = 255  # split names (the split table holds one byte per record)
MAX_NAME = 256  # characters of a dataset or split name
RECORD_OVERHEAD = 4 + 2 + NONCE_BYTES + 2 + TAG_BYTES  # length, AAD length, nonce, label, tag
MAX_AAD = (1 << 16) - 1
MIN_RECORDS_PER_WORKER = 256  # below this, forking costs more than it saves

Rng = Callable[[int], bytes]


@dataclass
class DecryptedRecord:
    index: int
    id: str
    split: str
    label: int
    pixels: np.ndarray


@dataclass
class KeyBlock:
    kind: int
    kek_id: bytes
    params: dict
    params_raw: bytes
    wrap_nonce: bytes
    wrapped: bytes

    def to_bytes(self) -> bytes:
        body = _KB_FIXED.pack(self.kind, self.kek_id, len(self.params_raw)) + self.params_raw + self.wrap_nonce + self.wrapped
        return _U32.pack(len(body)) + body

    def wrap_aad(self, header_digest: bytes) -> bytes:
        return WRAP_DOMAIN + header_digest + bytes([self.kind]) + self.kek_id + self.params_raw


@dataclass
class Header:
    file_id: bytes
    dek_id: bytes
    n_records: int
    dataset: str
    shape: tuple[int, int]
    offsets: np.ndarray  # N+1 offsets from the start of the records section
    raw: bytes  # the immutable header bytes
    key_block: KeyBlock
    records_start: int
    split_names: tuple[str, ...] = ()
    split_codes: np.ndarray = None  # uint8 per record: index into split_names

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.raw).digest()

    def split_of(self, i: int) -> str:
        return self.split_names[self.split_codes[i]]

    def split_counts(self) -> dict[str, int]:
        counts = np.bincount(self.split_codes, minlength=len(self.split_names))
        return {name: int(c) for name, c in zip(self.split_names, counts)}

    def records_of(self, splits) -> np.ndarray:
        """Indices of the records the (authenticated, once the key unwraps) header puts in ``splits``."""
        codes = [k for k, name in enumerate(self.split_names) if name in set(splits)]
        return np.flatnonzero(np.isin(self.split_codes, codes))


def printable(value, limit: int = 80) -> str:
    """Unauthenticated text made safe for a message: control and non-ASCII characters escaped (no terminal escape
    sequences reach a terminal or log), at most ``limit`` characters, non-strings shown only by their type."""
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        return f"<{type(value).__name__}>"
    text = ascii(value)[1:-1] if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _reject_number(text):
    raise ValueError(f"number {text[:20]} not allowed")


def strict_json(raw: bytes):
    """Parse JSON from the file: no floats or non-finite constants (1e999, Infinity, NaN), nesting too deep is a
    ValueError like any other malformed JSON (the caller turns it into its CryptoError)."""
    try:
        return json.loads(raw, parse_float=_reject_number, parse_constant=_reject_number)
    except RecursionError:
        raise ValueError("JSON nested too deep") from None


# --------------------------------------------------------------------------- key block


def _wrap_dek(kek: KeyEncryptionKey, dek: bytes, header_digest: bytes, engine: Engine, rng: Rng) -> KeyBlock:
    params = kek.new_params(rng)
    params_raw = canonical_json(params) if params else b""
    kek_bytes = kek.derive(params)
    block = KeyBlock(kek.kind, key_id(kek_bytes), params, params_raw, rng(NONCE_BYTES), b"")
    block.wrapped = engine.encrypt(kek_bytes, block.wrap_nonce, dek, block.wrap_aad(header_digest))
    return block


def _unwrap_dek(header: Header, kek: KeyEncryptionKey, engine: Engine, path) -> bytes:
    block = header.key_block
    if block.kind != kek.kind:
        kinds = {KIND_RAW: "a raw key", KIND_SCRYPT: "a passphrase"}
        raise WrongKeyError(f"{path} was encrypted under {kinds.get(block.kind)} (key id {block.kek_id.hex()}), "
                            f"but {kinds.get(kek.kind)} was given ({kek.description}): wrong key")
    kek_bytes = kek.derive(block.params)
    if key_id(kek_bytes) != block.kek_id:
        raise WrongKeyError(f"{path} was encrypted under key id {block.kek_id.hex()}, but the key given "
                            f"({kek.description}) has id {key_id(kek_bytes).hex()}: wrong key")
    dek = engine.decrypt(kek_bytes, block.wrap_nonce, block.wrapped, block.wrap_aad(header.digest))
    if dek is None or key_id(dek) != header.dek_id:
        raise HeaderAuthenticationError(f"{path}: the key is right (id {block.kek_id.hex()}) but the data key does not "
                                        "unwrap: the header or key block was modified")
    return dek


# --------------------------------------------------------------------------- writing


class _RecordAADs:
    """Each record's AAD: canonical JSON of {dataset, id, index, shape, split}, formatted directly.

    Byte-identical to ``canonical_json`` (tested) and ~5x faster than json.dumps.  The
    writer needs every record's length up front (for the index) but the bytes only
    when it encrypts, so :meth:`lengths` is vectorised for the parent and
    :meth:`__getitem__` formats one record in whichever worker encrypts it.
    """

    _INDEX = ',"index":'

    def __init__(self, dataset: str, ids, splits, shape):
        self._q = q = json.encoder.encode_basestring_ascii  # the escaping json.dumps uses
        self._head = f'{{"dataset":{q(dataset)},"id":'
        self._tail = f',"shape":[{int(shape[0])},{int(shape[1])}],"split":'
        self._ids_arr, splits_arr = np.asarray(ids, dtype=str), np.asarray(splits, dtype=str)
        self._ids, self._splits = self._ids_arr.tolist(), splits_arr.tolist()
        self._splits_q = {s: q(s) + "}" for s in set(self._splits)}
        self._split_lengths = np.zeros(len(self._splits), np.int64)
        for split, quoted in self._splits_q.items():
            self._split_lengths[splits_arr == split] = len(quoted)

    def lengths(self) -> np.ndarray:
        n, q = len(self._ids), self._q
        joined = ",".join(self._ids)
        if q(joined) == f'"{joined}"':  # no id needs escaping: each is its characters and two quotes
            id_lengths = np.strings.str_len(self._ids_arr).astype(np.int64) + 2
        else:
            id_lengths = np.fromiter(map(len, map(q, self._ids)), np.int64, n)
        index = np.arange(n)
        digits = np.ones(n, np.int64)
        for power in range(1, len(str(max(n - 1, 0)))):
            digits += index >= 10**power
        fixed = len(self._head) + len(self._INDEX) + len(self._tail)  # all ASCII: characters = bytes
        return fixed + digits + id_lengths + self._split_lengths

    def __getitem__(self, i: int) -> bytes:
        return (f"{self._head}{self._q(self._ids[i])}{self._INDEX}{i}{self._tail}"
                f"{self._splits_q[self._splits[i]]}").encode()

    def __len__(self) -> int:
        return len(self._ids)


def _immutable_header(file_id: bytes, dek_id: bytes, dataset: str, shape, offsets: np.ndarray,
                      split_names: list[str], split_codes: np.ndarray) -> bytes:
    meta = canonical_json({"dataset": dataset, "shape": [int(shape[0]), int(shape[1])], "splits": split_names})
    if len(meta) > MAX_META:
        raise ValueError(f"header metadata of {len(meta)} bytes exceeds {MAX_META}")
    n = len(offsets) - 1
    return (_FIXED.pack(MAGIC, VERSION, ALG_AES_256_GCM, file_id, dek_id, n, len(meta)) + meta
            + offsets.astype(">u8").tobytes() + split_codes.astype(np.uint8).tobytes())


def _split_table(splits) -> tuple[list[str], np.ndarray]:
    """Sorted distinct split names and each record's index among them (the header's split table)."""
    names, codes = np.unique(np.asarray(splits, dtype=str), return_inverse=True)
    names = [str(x) for x in names]
    if len(names) > MAX_SPLITS or any(not 1 <= len(x) <= MAX_NAME for x in names):
        raise ValueError(f"at most {MAX_SPLITS} split names of 1 to {MAX_NAME} characters")
    return names, codes.astype(np.uint8).reshape(-1)


def encrypt_records(path: str | os.PathLike, dataset: str, images: np.ndarray, labels, ids, splits,
                    kek: KeyEncryptionKey, *, engine: str | Engine = "pycryptodome", workers: int = 1,
                    rng: Rng = os.urandom) -> np.ndarray:
    """Write one AES-256-GCM record per image to ``path`` (atomically); return per-record seconds.

    ``images`` is ``(N, h, w) uint8``.  All random values (data key, file id, nonces)
    come from ``rng`` (``os.urandom``; tests pass a seeded one to compare engines byte
    for byte).  Nonces are drawn up front and checked for uniqueness before anything
    is written.  ``workers > 1`` encrypts spans of records in forked processes that
    write straight into the output file.
    """
    if not isinstance(kek, KeyEncryptionKey):
        raise InvalidKeyError("encrypt_records needs a KeyEncryptionKey (RawKey or Passphrase), not raw bytes")
    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be an (N, h, w) uint8 array, got {images.dtype} {images.shape}")
    n, h, w = images.shape
    if not (len(labels) == len(ids) == len(splits) == n):
        raise ValueError("images, labels, ids and splits must have the same length")
    if n > MAX_RECORDS:
        raise ValueError(f"at most {MAX_RECORDS} records per container")
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE) or not isinstance(dataset, str) or not 1 <= len(dataset) <= MAX_NAME:
        raise ValueError(f"images of 1 to {MAX_SIDE} pixels per side and a dataset name of 1 to {MAX_NAME} characters")
    labels = np.asarray(labels, dtype=np.int64)
    if n and (labels.min() < 0 or labels.max() > 0xFFFF):
        raise ValueError("labels must fit in 16 bits")
    engine = get_engine(engine)
    dek, file_id = rng(KEY_BYTES), rng(FILE_ID_BYTES)
    nonces = _Nonces(rng(NONCE_BYTES * n))
    if not nonces.surely_unique():
        check_nonces_unique([nonces[i] for i in range(n)], path)
    aads = _RecordAADs(dataset, ids, splits, (h, w))  # formatted by the workers; only their lengths here
    aad_lengths = aads.lengths()
    if n and aad_lengths.max() > MAX_AAD:
        raise ValueError(f"a record's associated data exceeds {MAX_AAD} bytes (id too long)")
    sizes = aad_lengths + (RECORD_OVERHEAD + h * w)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    raw = _immutable_header(file_id, key_id(dek), dataset, (h, w), offsets, *_split_table(splits))
    digest = hashlib.sha256(raw).digest()
    block = _wrap_dek(kek, dek, digest, engine, rng)
    prefix = raw + block.to_bytes()
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(prefix)
            fh.truncate(len(prefix) + int(offsets[-1]))
        job = {"path": str(tmp), "engine": engine, "dek": dek, "aad_prefix": RECORD_DOMAIN + digest, "aads": aads,
               "nonces": nonces, "images": images, "labels": labels, "base": len(prefix), "offsets": offsets}
        parts = _run_spans(_encrypt_span, job, n, workers)
    return np.concatenate(parts) if parts else np.zeros(0)


class _Nonces:
    """``n`` nonces drawn as one byte string; the workers slice out their own."""

    def __init__(self, data: bytes):
        self.data = data

    def __getitem__(self, i: int) -> bytes:
        return self.data[i * NONCE_BYTES : (i + 1) * NONCE_BYTES]

    def surely_unique(self) -> bool:
        """True when the first 8 bytes of the nonces already differ (vectorised; a full check otherwise)."""
        prefixes = np.frombuffer(self.data, np.uint8).reshape(-1, NONCE_BYTES)[:, :8].copy().view("<u8").ravel()
        prefixes.sort()
        return bool((prefixes[1:] != prefixes[:-1]).all())


def check_nonces_unique(nonces, where) -> None:
    """Refuse a (key, nonce) pair used twice: GCM nonce reuse leaks the XOR of plaintexts and the hash key."""
    if len(set(nonces)) != len(nonces):
        seen: dict[bytes, int] = {}
        for i, nonce in enumerate(nonces):
            if nonce in seen:
                raise NonceReuseError(f"{where}: records {seen[nonce]} and {i} would share a nonce; refusing to write")
            seen[nonce] = i


WRITE_BATCH = 256  # records per pwritev at most: 4 buffers each, within the usual IOV_MAX of 1024
IO_CHUNK_BYTES = 4 << 20  # and at most this much per pwritev / preadv (the scratch memory a process keeps)


def _encrypt_span(job, start: int, stop: int) -> np.ndarray:
    """Encrypt records ``start`` to ``stop - 1`` and write them in place, a batch of records per system call.

    Ciphertexts go into this process's scratch memory (no allocation per record: at 224x224
    that saves ~5 us of page faults per image) and are written from there.
    """
    engine, dek, aad_prefix, aads, nonces = job["engine"], job["dek"], job["aad_prefix"], job["aads"], job["nonces"]
    images, labels, offsets, base = job["images"], job["labels"], job["offsets"], job["base"]
    sealed_len = 2 + images.shape[1] * images.shape[2] + TAG_BYTES
    fixed = _U32.size + _U16.size + NONCE_BYTES + sealed_len
    batch = max(1, min(WRITE_BATCH, IO_CHUNK_BYTES // sealed_len))
    scratch = _scratch("encrypt", batch * sealed_len)
    seconds = np.empty(stop - start)
    fd = os.open(job["path"], os.O_WRONLY)
    try:
        for first in range(start, stop, batch):
            last = min(first + batch, stop)
            parts = []
            for k, i in enumerate(range(first, last)):
                aad, nonce = aads[i], nonces[i]
                if len(aad) != offsets[i + 1] - offsets[i] - fixed:
                    raise RuntimeError(f"record {i}: associated data length differs from the index (a bug)")
                plaintext = int(labels[i]).to_bytes(2, "big") + images[i].tobytes()
                sealed = scratch[k * sealed_len : (k + 1) * sealed_len]
                t0 = time.perf_counter()
                engine.encrypt_into(dek, nonce, plaintext, aad_prefix + aad, sealed)
                seconds[i - start] = time.perf_counter() - t0
                parts += (_U32.pack(fixed - _U32.size + len(aad)) + _U16.pack(len(aad)), aad, nonce, sealed)
            _pwrite_all(fd, parts, base + int(offsets[first]), int(offsets[last] - offsets[first]))
    finally:
        os.close(fd)
    return seconds


_SCRATCH: dict[str, tuple[int, bytearray]] = {}


def _scratch(name: str, nbytes: int) -> memoryview:
    """``nbytes`` of memory reused by every span this process runs (a forked child gets its own)."""
    pid, buf = _SCRATCH.get(name, (None, bytearray()))
    if pid != os.getpid() or len(buf) < nbytes:
        buf = bytearray(max(nbytes, len(buf) if pid == os.getpid() else 0))
        _SCRATCH[name] = (os.getpid(), buf)
    return memoryview(buf)[:nbytes]


def _pwrite_all(fd: int, parts: list, offset: int, nbytes: int) -> None:
    """Write ``parts`` contiguously at ``offset`` (records are laid out back to back), finishing short writes."""
    written = os.pwritev(fd, parts, offset)
    if written != nbytes:
        rest = memoryview(b"".join(parts))[written:]
        while rest:
            n = os.pwrite(fd, rest, offset + written)
            if n <= 0:
                raise OSError(f"could not write records at byte {offset + written}")
            rest, written = rest[n:], written + n


# --------------------------------------------------------------------------- parallel spans


def _run_spans(fn, job, n: int, workers: int) -> list:
    """``fn(job, start, stop)`` over contiguous spans, in ``workers`` processes when there is enough work."""
    label = fn.__name__.strip("_").replace("_span", "")
    return run_spans(fn, job, n, workers, label, min_per_worker=MIN_RECORDS_PER_WORKER)


# --------------------------------------------------------------------------- reading


def _read_exact(fh, n: int, what: str, path) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise ContainerFormatError(f"{path}: truncated in the {what} ({len(data)} of {n} bytes)")
    return data


def _parse_meta(raw: bytes) -> tuple[str, tuple[int, int], tuple[str, ...]]:
    """The header metadata: exactly {"dataset": name, "shape": [h, w], "splits": [names]}, canonical JSON."""
    meta = strict_json(raw)
    if not isinstance(meta, dict) or set(meta) != {"dataset", "shape", "splits"}:
        raise ValueError("keys")
    dataset, shape, splits = meta["dataset"], meta["shape"], meta["splits"]
    if not isinstance(dataset, str) or not 1 <= len(dataset) <= MAX_NAME:
        raise ValueError("dataset")
    if not (isinstance(shape, list) and len(shape) == 2 and all(type(v) is int and 1 <= v <= MAX_SIDE for v in shape)):
        raise ValueError("shape")
    if not (isinstance(splits, list) and len(splits) <= MAX_SPLITS
            and all(isinstance(x, str) and 1 <= len(x) <= MAX_NAME for x in splits) and splits == sorted(set(splits))):
        raise ValueError("splits")
    if canonical_json(meta) != raw:
        raise ValueError("not canonical")
    return dataset, (shape[0], shape[1]), tuple(splits)


def _parse_header(fh, size: int, path) -> Header:
    """Parse (not authenticate) the header and key block from ``fh``; every problem is a ContainerFormatError.

    Every value is checked for type and range before it is used, and nothing is allocated by what the header
    declares before that declaration is checked against the file's size.
    """
    if size == 0:
        raise ContainerFormatError(f"{path}: empty file, not a cryptomed container")
    fh.seek(0)
    fixed = fh.read(_FIXED.size)
    if fixed[:4] != MAGIC:
        raise ContainerFormatError(f"{path}: not a cryptomed container (bad magic)")
    if len(fixed) < _FIXED.size:
        raise ContainerFormatError(f"{path}: truncated in the header")
    _, version, alg, file_id, dek_id, n, meta_len = _FIXED.unpack(fixed)
    if version != VERSION:
        hint = (" (an earlier cryptomed format: its split claims are not authenticated; re-run encrypt, "
                "e.g. snakemake --forcerun encrypt)") if version < VERSION else " (written by a newer cryptomed)"
        raise ContainerFormatError(f"{path}: unsupported container version {version}; this cryptomed reads "
                                   f"version {VERSION} only{hint}")
    if alg != ALG_AES_256_GCM:
        raise ContainerFormatError(f"{path}: unsupported algorithm id {alg}")
    if n > MAX_RECORDS or meta_len > MAX_META or _FIXED.size + meta_len + 9 * n + 8 > size:
        raise ContainerFormatError(f"{path}: header declares {n} records and {meta_len} bytes of metadata, "
                                   f"which do not fit in a {size}-byte file (truncated or corrupt)")
    meta_raw = _read_exact(fh, meta_len, "header metadata", path)
    index_raw = _read_exact(fh, 8 * (n + 1), "record index", path)
    table_raw = _read_exact(fh, n, "split table", path)
    try:
        dataset, (h, w), split_names = _parse_meta(meta_raw)
    except ValueError:
        raise ContainerFormatError(f"{path}: header metadata is not valid") from None
    offsets = np.frombuffer(index_raw, dtype=">u8")
    if offsets[-1] >= 1 << 62:  # checked against the file's size below
        raise ContainerFormatError(f"{path}: record index is not valid")
    offsets = offsets.astype(np.int64)
    sizes = np.diff(offsets)
    smallest = RECORD_OVERHEAD + h * w
    if offsets[0] != 0 or (sizes < smallest).any() or (sizes > smallest + MAX_AAD).any():
        raise ContainerFormatError(f"{path}: record index is not valid")
    codes = np.frombuffer(table_raw, dtype=np.uint8)
    if n and int(codes.max()) >= len(split_names):
        raise ContainerFormatError(f"{path}: split table is not valid")
    (kb_len,) = _U32.unpack(_read_exact(fh, _U32.size, "key block length", path))
    if not _KB_FIXED.size + NONCE_BYTES + WRAPPED_BYTES <= kb_len <= MAX_KEY_BLOCK:
        raise ContainerFormatError(f"{path}: key block length {kb_len} is not valid")
    kb = _read_exact(fh, kb_len, "key block", path)
    kind, kek_id, params_len = _KB_FIXED.unpack_from(kb)
    if kind not in (KIND_RAW, KIND_SCRYPT) or _KB_FIXED.size + params_len + NONCE_BYTES + WRAPPED_BYTES != kb_len:
        raise ContainerFormatError(f"{path}: key block is not valid (kind {kind})")
    params_raw = kb[_KB_FIXED.size : _KB_FIXED.size + params_len]
    try:
        params = strict_json(params_raw) if params_raw else {}
        problem = scrypt_params_problem(params) if kind == KIND_SCRYPT else ("" if params_raw else None)
        if problem is None and kind == KIND_SCRYPT and canonical_json(params) != params_raw:
            problem = "not canonical JSON"
    except ValueError as exc:
        problem = str(exc)
    if problem is not None:
        raise ContainerFormatError(f"{path}: key block parameters are not valid"
                                   + (f": {printable(problem, 200)}" if problem else ""))
    rest = kb[_KB_FIXED.size + params_len :]
    block = KeyBlock(kind, kek_id, params, params_raw, rest[:NONCE_BYTES], rest[NONCE_BYTES:])
    raw = fixed + meta_raw + index_raw + table_raw
    header = Header(file_id, dek_id, n, dataset, (h, w), offsets, raw, block, len(raw) + _U32.size + kb_len,
                    split_names, codes)
    end = header.records_start + int(offsets[-1])
    if size < end:
        cut = int(np.searchsorted(offsets, size - header.records_start, side="right")) - 1
        raise ContainerFormatError(f"{path}: truncated: record {cut} of {n} ends at byte "
                                   f"{header.records_start + int(offsets[cut + 1])}, the file has {size} bytes")
    if size > end:
        raise ContainerFormatError(f"{path}: {size - end} trailing bytes after the last of {n} records")
    return header


def read_header(path: str | os.PathLike) -> Header:
    """Parse (not authenticate) the header and key block; every structural problem is a ContainerFormatError."""
    with open(path, "rb") as fh:
        return _parse_header(fh, os.fstat(fh.fileno()).st_size, path)


class ContainerReader:
    """Random access to the records of a container, every record verified when read.

    Opening checks the structure, the key id (:class:`WrongKeyError`) and unwraps the
    data key (:class:`HeaderAuthenticationError` if the header -- split table included --
    was modified).  The header and every record are read through one open file
    descriptor, so a file renamed over the path meanwhile is not mixed in.
    """

    def __init__(self, path: str | os.PathLike, kek: KeyEncryptionKey, engine: str | Engine = "pycryptodome"):
        self.path = path
        self._fh = open(path, "rb")
        self._fd = self._fh.fileno()
        try:
            self.header = _parse_header(self._fh, os.fstat(self._fd).st_size, path)
            self.engine = get_engine(engine)
            self._dek = _unwrap_dek(self.header, kek, self.engine, path)
        except BaseException:
            self.close()
            raise
        self._aad_prefix = RECORD_DOMAIN + self.header.digest

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._fh is not None:
            self._fh.close()
            self._fh = self._fd = None

    def __len__(self) -> int:
        return self.header.n_records

    def content_digest(self) -> str:
        """SHA-256 (hex) of the immutable header and the records section, read through this reader's descriptor.

        Unlike the file's hash it does not change when :func:`rotate` rewrites the key block; it changes with any
        edit of a record or the header and differs between any two containers (file ids differ).
        """
        digest = hashlib.sha256(self.header.raw)
        for chunk in self.records_bytes("read"):
            digest.update(chunk)
        return digest.hexdigest()

    def records_bytes(self, doing: str = "read"):
        """The records section as it is on disk, in chunks of at most ``IO_CHUNK_BYTES`` (pread: no shared offset);
        a file that got shorter meanwhile is a ContainerFormatError ("the file changed while it was ``doing``")."""
        pos, end = self.header.records_start, self.header.records_start + int(self.header.offsets[-1])
        while pos < end:
            chunk = os.pread(self._fd, min(IO_CHUNK_BYTES, end - pos), pos)
            if not chunk:
                raise ContainerFormatError(f"{self.path}: the file changed while it was {doing}")
            yield chunk
            pos += len(chunk)

    def _where(self, i: int, info: dict | None = None) -> str:
        if not isinstance(info, dict):
            return f"{self.path}: record {i}"
        return (f"{self.path}: record {i} (dataset {printable(info.get('dataset'))}, split "
                f"{printable(info.get('split'))}, id {printable(info.get('id'))})")

    def _raw(self, i: int, blob: memoryview | None = None) -> tuple[memoryview, int]:
        """The record's bytes after its length field and its AAD length (nothing of it parsed yet).

        ``blob`` is the record's bytes when the caller has read them already (a span read at once).
        """
        if blob is None:
            start, stop = int(self.header.offsets[i]), int(self.header.offsets[i + 1])
            blob = memoryview(os.pread(self._fd, stop - start, self.header.records_start + start))
        (rec_len,) = _U32.unpack_from(blob)
        if rec_len != len(blob) - _U32.size:
            raise RecordAuthenticationError(f"{self._where(i)}: length field {rec_len} disagrees with the index "
                                            f"({len(blob) - _U32.size}); the record was modified")
        (aad_len,) = _U16.unpack_from(blob, _U32.size)
        h, w = self.header.shape
        if len(blob) != RECORD_OVERHEAD + aad_len + h * w:
            raise RecordAuthenticationError(f"{self._where(i)}: associated data length {aad_len} disagrees with the "
                                            "index; the record was modified")
        return blob[_U32.size :], aad_len

    def read(self, i: int) -> tuple[DecryptedRecord, float]:
        """Decrypt and verify record ``i``; return it with the seconds the decryption took."""
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._open(i, self._raw(i))

    def read_span(self, start: int, stop: int, splits: set[str] | None = None,
                  scratch: Callable[[int], memoryview] | None = None) -> Iterator[tuple[DecryptedRecord | None, float]]:
        """:meth:`read` for records ``start`` to ``stop - 1``, read a few MiB per system call.

        With ``splits``, a record that the authenticated header's split table puts in another
        split is skipped, not decrypted: ``(None, 0.0)``.  A record that is decrypted must
        carry the same split in its (authenticated) associated data.  ``scratch(nbytes)``
        lends reusable memory to read into (fresh memory otherwise).
        """
        if not 0 <= start <= stop <= len(self):
            raise IndexError((start, stop))
        offsets, hdr = self.header.offsets, self.header
        wanted = None if splits is None else set(splits)
        i = start
        while i < stop:
            last = max(i + 1, min(stop, int(np.searchsorted(offsets, offsets[i] + IO_CHUNK_BYTES, side="right")) - 1))
            first, nbytes = int(offsets[i]), int(offsets[last] - offsets[i])
            view = scratch(nbytes) if scratch else memoryview(bytearray(nbytes))
            if os.preadv(self._fd, [view], hdr.records_start + first) != nbytes:
                raise ContainerFormatError(f"{self.path}: records {i} to {last - 1} could not be read in full "
                                           "(the file changed while it was read)")
            for j in range(i, last):
                if wanted is not None and hdr.split_of(j) not in wanted:
                    yield None, 0.0
                    continue
                yield self._open(j, self._raw(j, view[int(offsets[j]) - first : int(offsets[j + 1]) - first]))
            i = last

    def _unverified_info(self, aad) -> dict | None:
        """The AAD's claims, parsed only to name a record whose tag failed (escaped when shown)."""
        try:
            info = strict_json(bytes(aad))
        except ValueError:
            return None
        return info if isinstance(info, dict) else None

    def _open(self, i: int, raw: tuple[memoryview, int]) -> tuple[DecryptedRecord, float]:
        body, aad_len = raw
        aad = body[2 : 2 + aad_len]
        nonce = bytes(body[2 + aad_len : 2 + aad_len + NONCE_BYTES])
        sealed = body[2 + aad_len + NONCE_BYTES :]
        t0 = time.perf_counter()
        plaintext = self.engine.decrypt(self._dek, nonce, sealed, self._aad_prefix + aad)
        seconds = time.perf_counter() - t0
        if plaintext is None:
            raise RecordAuthenticationError(f"{self._where(i, self._unverified_info(aad))}: authentication tag does "
                                            "not verify (tampered, moved or corrupted)")
        # Authenticated from here on: a position, dataset, shape or split that differs from where the record
        # sits proves it was reordered or moved (or written wrongly), not randomly corrupted.
        hdr = self.header
        try:
            info = strict_json(bytes(aad))
        except ValueError:
            info = None
        if not (isinstance(info, dict) and set(info) == {"dataset", "id", "index", "shape", "split"}
                and isinstance(info["id"], str)):
            raise RecordAuthenticationError(f"{self._where(i)}: authenticated associated data is not valid")
        if type(info["index"]) is not int or info["index"] != i or info["dataset"] != hdr.dataset or info["shape"] != list(hdr.shape):
            raise RecordAuthenticationError(
                f"{self._where(i, info)}: authenticated position {printable(info['index'])} of dataset "
                f"{printable(info['dataset'])} differs from its place ({i} of {printable(hdr.dataset)}): "
                "records were reordered or moved")
        if info["split"] != hdr.split_of(i):
            raise RecordAuthenticationError(f"{self._where(i, info)}: authenticated split differs from the header's "
                                            f"split table ({printable(hdr.split_of(i))})")
        h, w = hdr.shape
        label = int.from_bytes(plaintext[:2], "big")
        pixels = np.frombuffer(plaintext, dtype=np.uint8, offset=2).reshape(h, w)
        return DecryptedRecord(i, info["id"], info["split"], label, pixels), seconds

    def __iter__(self) -> Iterator[tuple[DecryptedRecord, float]]:
        for i in range(len(self)):
            yield self.read(i)


def decrypt_records(path, kek: KeyEncryptionKey, engine: str | Engine = "pycryptodome") -> Iterator[tuple[DecryptedRecord, float]]:
    """Yield ``(record, seconds)`` for every record in order, verifying each tag."""
    with ContainerReader(path, kek, engine) as reader:
        yield from reader


def decrypt_to_arrays(path, kek: KeyEncryptionKey, *, engine: str | Engine = "pycryptodome", workers: int = 1,
                      splits: tuple[str, ...] | None = None, expect: dict | None = None,
                      ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Decrypt a container into the arrays layout used by preprocess; return (arrays, seconds per record).

    ``splits`` keeps exactly the records that the authenticated header's split table puts
    in those splits (each verified; the others are not decrypted).  ``expect`` is a
    verification record (:func:`verification_record`, written by the pipeline's ``decrypt``
    rule): the container must be that one (same content digest), else
    :class:`ContainerMismatchError` -- an edit or a rollback since it was verified.
    ``workers > 1`` decrypts spans in forked processes into shared memory; use 1 in
    processes that run threaded libraries (TensorFlow).
    """
    with ContainerReader(path, kek, engine) as reader:  # the forked workers use it too (pread: no shared offset)
        if expect is not None:
            check_verification_record(reader, expect)
        return _decrypt(reader, workers, splits)


def _decrypt(reader: ContainerReader, workers: int, splits: tuple[str, ...] | None = None):
    n, (h, w) = reader.header.n_records, reader.header.shape
    shared = mmap.mmap(-1, max(1, n * h * w))  # MAP_SHARED: children write, the parent reads
    job = {"reader": reader, "pixels": shared, "splits": None if splits is None else set(splits)}
    parts = _run_spans(_decrypt_span, job, n, workers)
    listed = n if splits is None else len(reader.header.records_of(splits))
    pixels = np.frombuffer(shared, dtype=np.uint8, count=n * h * w).reshape(n, h, w)  # keeps the mapping alive
    keep = np.concatenate([p["keep"] for p in parts]) if parts else np.zeros(0, bool)
    if int(keep.sum()) != listed:  # cannot happen: every listed record is returned or raised
        raise RuntimeError(f"{reader.path}: {int(keep.sum())} records read, the header lists {listed}")
    cat = lambda key, dtype: np.concatenate([p[key] for p in parts]).astype(dtype) if parts else np.zeros(0, dtype)  # noqa: E731
    arrays = {
        "images": pixels if keep.all() else pixels[keep],
        "labels": cat("labels", np.int64),
        "ids": np.array(sum((p["ids"] for p in parts), [])),
        "splits": np.array(sum((p["split"] for p in parts), [])),
    }
    seconds = cat("seconds", np.float64)
    return arrays, seconds


def _decrypt_span(job, start: int, stop: int) -> dict:
    reader, wanted = job["reader"], job["splits"]
    size = reader.header.shape[0] * reader.header.shape[1]
    out = np.frombuffer(job["pixels"], dtype=np.uint8, count=max(1, stop) * size)
    res = {"keep": np.zeros(stop - start, bool), "labels": [], "ids": [], "split": [], "seconds": []}
    for rec, sec in reader.read_span(start, stop, wanted, lambda nbytes: _scratch("decrypt", nbytes)):
        if rec is None:
            continue  # the authenticated header puts this record in another split: not decrypted (nor used)
        i = rec.index
        out[i * size : (i + 1) * size] = rec.pixels.reshape(-1)
        res["keep"][i - start] = True
        res["labels"].append(rec.label)
        res["ids"].append(rec.id)
        res["split"].append(rec.split)
        res["seconds"].append(sec)
    return res


# --------------------------------------------------------------------------- verification records


def verification_record(reader: ContainerReader) -> dict:
    """What the ``decrypt`` rule records after verifying every record, for later stages to check against.

    Public facts only (no key material): ids, counts and digests.
    """
    hdr = reader.header
    return {"format_version": VERSION, "dataset": hdr.dataset, "records": hdr.n_records,
            "split_counts": hdr.split_counts(), "file_id": hdr.file_id.hex(), "data_key_id": hdr.dek_id.hex(),
            "header_sha256": hdr.digest.hex(), "content_sha256": reader.content_digest()}


def check_verification_record(reader: ContainerReader, expect: dict) -> None:
    """Raise :class:`ContainerMismatchError` unless ``reader``'s container is the one ``expect`` records."""
    hdr = reader.header
    if not isinstance(expect, dict) or not isinstance(expect.get("content_sha256"), str):
        raise ContainerMismatchError(f"{reader.path}: the verification record is not valid; rerun the decrypt rule")
    if expect.get("file_id") != hdr.file_id.hex():
        raise ContainerMismatchError(
            f"{reader.path} is not the container the decrypt rule verified (file id {hdr.file_id.hex()}, verified "
            f"{printable(expect.get('file_id'))}): it was replaced since, e.g. rolled back to an older container. "
            "Check it (python -m cryptomed verify) and rerun the decrypt rule only if the replacement is intended")
    digest = reader.content_digest()
    if digest != expect["content_sha256"]:
        raise ContainerMismatchError(
            f"{reader.path} was modified since the decrypt rule verified it (content sha256 {digest[:16]}..., "
            f"verified {printable(expect['content_sha256'][:16])}...), although its file id is the same")


def verify_container(path, kek: KeyEncryptionKey, engine: str | Engine = "pycryptodome",
                     workers: int = 1) -> tuple[dict, dict[str, np.ndarray], np.ndarray]:
    """Decrypt and verify every record; return the :func:`verification_record`, the decrypted arrays (as
    :func:`decrypt_to_arrays`) and the seconds per record -- from one opening of the file."""
    with ContainerReader(path, kek, engine) as reader:
        record = verification_record(reader)
        arrays, seconds = _decrypt(reader, workers)
    return record, arrays, seconds


# --------------------------------------------------------------------------- keys: rotation and inspection


def rotate(path: str | os.PathLike, old: KeyEncryptionKey, new: KeyEncryptionKey, *, keep_mtime: bool = True,
           verify_records: bool = False, rng: Rng = os.urandom) -> tuple[str, str]:
    """Re-wrap the container's data key under ``new``; the records are copied byte for byte.

    The old KEK must open the container, which authenticates the header (wrong key /
    tampering are reported as on decrypt); ``verify_records`` also decrypts and verifies
    every record first.  The new file must open under ``new`` before it replaces the old
    one (atomically); its modification time is kept by default so that workflow tools do
    not treat the (unchanged) records as new data.  Returns the old and new KEK ids (hex).
    """
    engine = get_engine("pycryptodome")
    with ContainerReader(path, old, engine) as reader:
        header = reader.header
        if verify_records:
            for _ in reader.read_span(0, len(reader)):
                pass
        block = _wrap_dek(new, reader._dek, header.digest, engine, rng)
        st = os.fstat(reader._fd)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as dst:
                dst.write(header.raw + block.to_bytes())
                for chunk in reader.records_bytes("rotated"):
                    dst.write(chunk)
            with ContainerReader(tmp, new, engine):  # the new key block unwraps before anything is replaced
                pass
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    return header.key_block.kek_id.hex(), block.kek_id.hex()


def inspect(path: str | os.PathLike) -> dict:
    """Public facts about a container (no key needed, nothing secret).  Not authenticated: names and counts are what
    the header claims (``cryptomed verify`` checks them with the key).  Strict JSON values only."""
    hdr = read_header(path)
    kb = hdr.key_block
    return {
        "path": str(path), "format_version": VERSION, "algorithm": "AES-256-GCM", "dataset": hdr.dataset,
        "records": hdr.n_records, "split_counts": hdr.split_counts(), "image_shape": list(hdr.shape),
        "file_id": hdr.file_id.hex(), "data_key_id": hdr.dek_id.hex(),
        "kek_kind": {KIND_RAW: "raw", KIND_SCRYPT: "scrypt"}[kb.kind], "kek_id": kb.kek_id.hex(), "kdf": kb.params,
        "bytes": Path(path).stat().st_size,
    }


__all__ = ["ContainerReader", "CryptoError", "DecryptedRecord", "check_verification_record", "decrypt_records",
           "decrypt_to_arrays", "encrypt_records", "inspect", "printable", "read_header", "rotate",
           "verification_record", "verify_container"]
