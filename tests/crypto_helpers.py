"""Shared fixtures for the crypto tests: a small container and byte positions inside it."""

import json
import random
import struct

import numpy as np

from cryptomed.crypto import RawKey, encrypt_records, read_header

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
KEK = RawKey(KEY, "test key")
OTHER_KEK = RawKey(OTHER_KEY, "other test key")


def make_records(n=5, shape=(8, 8), seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    labels = np.arange(n) % 2
    ids = np.array([f"{i:06d}" for i in range(n)])
    splits = np.array((["train", "train", "val", "test", "test"] * n)[:n])
    return images, labels, ids, splits


def seeded_rng(seed=0):
    return random.Random(seed).randbytes


def write_container(path, dataset="chest_xray", records=None, kek=KEK, **kw):
    encrypt_records(path, dataset, *(records or make_records()), kek, **kw)
    return path


def layout(path):
    """Byte positions in a container: header fields, key block fields, record parts."""
    h = read_header(path)
    meta_start = 38
    kb = len(h.raw) + 4  # key block body
    pos = {
        "magic": 0, "version": 4, "algorithm": 5, "file_id": 6, "data_key_id": 22, "record_count": 30,
        "meta": meta_start + len(b'{"dataset":"'), "index": len(h.raw) - h.n_records - 8 * (h.n_records + 1) + 15,
        "split_table": len(h.raw) - h.n_records,
        "kek_kind": kb, "kek_id": kb + 1, "wrapped_dek": h.records_start - 20,
    }
    data = path.read_bytes()
    records = []
    for i in range(h.n_records):
        start, end = h.records_start + int(h.offsets[i]), h.records_start + int(h.offsets[i + 1])
        aad_len = int.from_bytes(data[start + 4 : start + 6], "big")
        records.append({"start": start, "end": end, "aad": start + 6, "nonce": start + 6 + aad_len,
                        "ciphertext": start + 6 + aad_len + 12 + 3, "tag": end - 1})
    return h, pos, records


def flip(path, pos, bit=0x01):
    data = bytearray(path.read_bytes())
    data[pos] ^= bit
    path.write_bytes(bytes(data))


# --------------------------------------------------------------------------- fuzzing

MUTATIONS = ("flip", "set", "truncate", "insert", "delete", "duplicate")


def mutate(data: bytes, ops) -> bytes:
    """Apply ``ops`` = [(kind, position, value)] to ``data``; positions wrap around the current length."""
    buf = bytearray(data)
    for kind, position, value in ops:
        pos = position % (len(buf) + 1)
        if kind == "flip" and buf:
            buf[pos % len(buf)] ^= 1 << (value % 8)
        elif kind == "set" and buf:
            buf[pos % len(buf)] = value % 256
        elif kind == "truncate":
            del buf[pos:]
        elif kind == "insert":
            buf[pos:pos] = bytes([value % 256]) * (1 + value % 7)
        elif kind == "delete":
            del buf[pos : pos + 1 + value % 64]
        elif kind == "duplicate":
            buf[pos:pos] = buf[pos : pos + 1 + value % 64]
    return bytes(buf)


def read_mutated(path, data: bytes, original_images, kek=KEK, original_splits=None):
    """Read a mutated container; return the error type name, or 'ok' if it still decrypts to the original.

    Anything other than a cryptomed CryptoError -- or a successful read that returns different
    pixels -- is a bug, raised as AssertionError.  With ``original_splits`` a filtered read
    (test split only) is tried too: it must fail cleanly or return exactly the original test images.
    """
    import json as json_module

    from cryptomed.crypto import CryptoError, decrypt_to_arrays, inspect

    path.write_bytes(data)
    try:
        json_module.dumps(inspect(path), allow_nan=False)  # strict JSON, as the CLI prints it
        if original_splits is not None:
            test, _ = decrypt_to_arrays(path, kek, splits=("test",))
            assert np.array_equal(test["images"], original_images[original_splits == "test"]), \
                "a mutated container's filtered read returned other records or pixels"
        arrays, _ = decrypt_to_arrays(path, kek)
    except CryptoError as exc:
        return type(exc).__name__
    assert np.array_equal(arrays["images"], original_images), "a mutated container decrypted to different pixels"
    return "ok"


# --------------------------------------------------------------------------- structure-aware fuzzing of the JSON


class Raw(str):
    """A JSON token written as is (1e999, Infinity, NaN, 10**400 digits...): what json.dumps will not produce."""


def to_json(value) -> str:
    """Serialise like canonical JSON, but Raw tokens verbatim and dict items in their given order (duplicates kept
    when given as a list of pairs under the key ``"__pairs__"``)."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        pairs = value["__pairs__"] if "__pairs__" in value else sorted(value.items())
        return "{" + ",".join(f"{json.dumps(k)}:{to_json(v)}" for k, v in pairs) + "}"
    if isinstance(value, list):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    return json.dumps(value)


HOSTILE_VALUES = (
    Raw("1e999"), Raw("-1e999"), Raw("Infinity"), Raw("-Infinity"), Raw("NaN"), Raw("1.5"), Raw("-0.0"), Raw("1E3"),
    0, -1, 1, 2, 255, 256, 2**16, 2**31, 2**32, 2**63, 2**64, 10**400, Raw("9" * 4400), True, False, None,
    "", "x", "test", "train", "val", "\x1b[31mred\x1b[0m", "\u202e", "\ud800", "a" * 300, "b" * 70000,
    [], {}, [8], [8, 8, 8], [0, 0], [8.5, 8], ["8", "8"], [[8], [8]], {"a": 1}, [None] * 300,
)


def _paths(value, prefix=()):
    """Every position in a parsed JSON document: (path, value)."""
    yield prefix, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


def _replace(doc, path, new):
    if not path:
        return new
    out = dict(doc) if isinstance(doc, dict) else list(doc)
    out[path[0]] = _replace(doc[path[0]], path[1:], new)
    return out


def mutate_json_text(raw: bytes, rnd) -> bytes:
    """:func:`_mutate_json_text`; a document nested too deep for this helper's recursion becomes a hostile token."""
    try:
        return _mutate_json_text(raw, rnd)
    except RecursionError:
        return to_json(rnd.choice(HOSTILE_VALUES)).encode()


def _mutate_json_text(raw: bytes, rnd) -> bytes:
    """One structure-aware mutation of a JSON document: a value (anywhere in it) replaced by a hostile one (non-finite
    or huge numbers, wrong types, long strings, deep nesting), a key deleted, added or duplicated, or the whole
    document replaced."""
    try:
        doc = json.loads(raw)  # after an earlier round it may be cut or too deep: then a whole new document
    except (ValueError, RecursionError):
        return to_json(rnd.choice(HOSTILE_VALUES)).encode()
    kind = rnd.choice(("value", "value", "value", "deep", "delete", "add", "duplicate", "document", "long"))
    paths = [p for p, _ in _paths(doc)]
    path = rnd.choice(paths)
    if kind == "value":
        doc = _replace(doc, path, rnd.choice(HOSTILE_VALUES))
    elif kind == "deep":
        depth = rnd.choice((2, 10, 100, 999, 1000, 1500, 5000, 20000))
        nested = "[" * depth + "]" * depth if rnd.random() < 0.5 else '{"a":' * depth + "1" + "}" * depth
        doc = _replace(doc, path, Raw(nested))
    elif kind == "long":
        doc = _replace(doc, path, [rnd.choice(HOSTILE_VALUES[:30]) for _ in range(rnd.choice((3, 100, 5000)))])
    elif kind in ("delete", "add", "duplicate") and isinstance(doc, dict) and doc:
        key = rnd.choice(sorted(doc))
        if kind == "delete":
            doc = {k: v for k, v in doc.items() if k != key}
        elif kind == "add":
            doc = {**doc, rnd.choice(("x", "label", "kdf", "__proto__", "")): rnd.choice(HOSTILE_VALUES)}
        else:
            doc = {"__pairs__": sorted(doc.items()) + [(key, rnd.choice(HOSTILE_VALUES))]}
    else:
        doc = rnd.choice(HOSTILE_VALUES)
    return to_json(doc).encode()  # ASCII: json.dumps escapes, Raw tokens are ASCII


def json_fields(data: bytes):
    """(name, start, end) of every JSON field of a container: header metadata, KDF parameters, each record's AAD."""
    fields = []
    (n,) = struct.unpack_from(">I", data, 30)
    (m,) = struct.unpack_from(">I", data, 34)
    fields.append(("meta", 38, 38 + m))
    kb = 38 + m + 9 * n + 8
    (kb_len,) = struct.unpack_from(">I", data, kb)
    (p_len,) = struct.unpack_from(">H", data, kb + 4 + 9)
    if p_len:
        fields.append(("params", kb + 4 + 11, kb + 4 + 11 + p_len))
    records_start = kb + 4 + kb_len
    offsets = struct.unpack_from(f">{n + 1}Q", data, 38 + m)
    for i in range(n):
        start = records_start + offsets[i]
        (a,) = struct.unpack_from(">H", data, start + 4)
        fields.append((f"aad{i}", start + 6, start + 6 + a))
    return fields


def replace_json_field(data: bytes, field, new: bytes, fix_lengths: bool) -> bytes:
    """``data`` with one JSON field replaced.  ``fix_lengths``: update the length fields that frame it (meta length;
    parameter and key block lengths; AAD and record lengths and every later index entry), so the structure stays
    consistent and the reader reaches the value checks; else keep the field's length (pad with JSON whitespace or
    cut), so nothing else moves."""
    name, start, end = field
    if not fix_lengths:
        new = new[: end - start].ljust(end - start, b" ")
        return data[:start] + new + data[end:]
    delta = len(new) - (end - start)
    buf = bytearray(data[:start] + new + data[end:])
    (n,) = struct.unpack_from(">I", data, 30)
    (m,) = struct.unpack_from(">I", data, 34)
    if name == "meta":
        struct.pack_into(">I", buf, 34, min(len(new), 2**32 - 1))
    elif name == "params":
        kb = 38 + m + 9 * n + 8
        (kb_len,) = struct.unpack_from(">I", data, kb)
        struct.pack_into(">I", buf, kb, max(0, kb_len + delta))
        struct.pack_into(">H", buf, kb + 4 + 9, min(len(new), 2**16 - 1))
    else:
        i = int(name[3:])
        rec = start - 6
        (length,) = struct.unpack_from(">I", data, rec)
        struct.pack_into(">I", buf, rec, max(0, length + delta))
        struct.pack_into(">H", buf, rec + 4, min(len(new), 2**16 - 1))
        offsets = list(struct.unpack_from(f">{n + 1}Q", data, 38 + m))
        offsets[i + 1 :] = [max(0, o + delta) for o in offsets[i + 1 :]]
        struct.pack_into(f">{n + 1}Q", buf, 38 + m, *offsets)
    return bytes(buf)


def json_mutate(data: bytes, rnd) -> tuple[bytes, str]:
    """One structure-aware mutation of a container's JSON; returns the new bytes and a description (the bytes
    unchanged when an earlier mutation left no framing to find the fields by)."""
    try:
        fields = [f for f in json_fields(data) if 0 <= f[1] <= f[2] <= len(data)]
    except (struct.error, ValueError, OverflowError):
        fields = []
    if not fields:
        return data, "no JSON field found"
    field = rnd.choice(fields)
    new = mutate_json_text(data[field[1] : field[2]], rnd)
    fix = rnd.random() < 0.7
    return replace_json_field(data, field, new, fix), f"{field[0]} {'fixed lengths' if fix else 'same length'}: {new[:80]!r}"


def json_mutate_authenticated(data: bytes, dek: bytes, aad_prefix: bytes, rnd) -> tuple[bytes, str]:
    """A record's AAD mutated (same length) and the record re-encrypted so that its tag verifies: what only a key
    holder could write.  Exercises the checks a reader makes after authentication (the AAD must still agree with
    the header and the record's place)."""
    from cryptomed.crypto import get_engine

    engine = get_engine("pycryptodome")
    field = rnd.choice([f for f in json_fields(data) if f[0].startswith("aad")])
    _, start, end = field
    old = data[start:end]
    new = mutate_json_text(old, rnd)[: end - start].ljust(end - start, b" ")
    (length,) = struct.unpack_from(">I", data, start - 6)
    nonce, sealed_end = data[end : end + 12], start - 6 + 4 + length
    plaintext = engine.decrypt(dek, nonce, data[end + 12 : sealed_end], aad_prefix + old)
    sealed = engine.encrypt(dek, nonce, plaintext, aad_prefix + new)
    return data[:start] + new + nonce + sealed + data[sealed_end:], f"{field[0]} re-authenticated: {new[:80]!r}"
