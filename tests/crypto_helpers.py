"""Shared fixtures for the crypto tests: a small container and byte positions inside it."""

import random

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


def read_mutated(path, data: bytes, original_images):
    """Read a mutated container; return the error type name, or 'ok' if it still decrypts to the original.

    Anything other than a cryptomed CryptoError -- or a successful read that returns different
    pixels -- is a bug, raised as AssertionError.
    """
    from cryptomed.crypto import CryptoError, decrypt_to_arrays, inspect

    path.write_bytes(data)
    try:
        inspect(path)
        arrays, _ = decrypt_to_arrays(path, KEK)
    except CryptoError as exc:
        return type(exc).__name__
    assert np.array_equal(arrays["images"], original_images), "a mutated container decrypted to different pixels"
    return "ok"
