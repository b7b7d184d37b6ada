"""Known answers (NIST CAVP AES-GCM, 256-bit keys) and interoperability with an independent implementation.

The CAVP files (gcmEncryptExtIV256.rsp, gcmDecrypt256.rsp; NIST, public domain) come from the
``cryptography-vectors`` package, unmodified.  Every case runs through PyCryptodome (all IV, AAD, tag
and plaintext lengths); the cases with cryptomed's parameters (96-bit IV, 128-bit tag) also run
through both cryptomed engines.
"""

import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from Crypto.Cipher import AES
from crypto_helpers import KEK, KEY, make_records, seeded_rng, write_container

from cryptomed.crypto import decrypt_to_arrays, get_engine

vectors = pytest.importorskip("cryptography_vectors")
AESGCM = pytest.importorskip("cryptography.hazmat.primitives.ciphers.aead").AESGCM

GCM_DIR = Path(vectors.__file__).parent / "ciphers" / "AES" / "GCM"


def load_rsp(name):
    """Parse a CAVP .rsp file into a list of dicts (bytes values; 'fail' for expected failures)."""
    cases, case = [], None
    for line in (GCM_DIR / name).read_text().splitlines():
        line = line.strip()
        if line.startswith("Count"):
            case = {"fail": False}
            cases.append(case)
        elif case is not None and line == "FAIL":
            case["fail"] = True
        elif case is not None and not line.startswith("[") and (" = " in line or line.endswith(" =")):
            k, _, v = line.partition(" =")
            case[k.strip()] = bytes.fromhex(v.strip())
    return cases


ENCRYPT = load_rsp("gcmEncryptExtIV256.rsp")
DECRYPT = load_rsp("gcmDecrypt256.rsp")


def test_vector_files_are_the_full_sets():
    assert len(ENCRYPT) == len(DECRYPT) == 7875
    assert {len(c["IV"]) for c in ENCRYPT} >= {1, 12, 128} and {len(c["Tag"]) for c in ENCRYPT} >= {4, 12, 16}
    assert sum(c["fail"] for c in DECRYPT) > 1000


def test_cavp_encrypt_all_lengths_pycryptodome():
    for c in ENCRYPT:
        cipher = AES.new(c["Key"], AES.MODE_GCM, nonce=c["IV"], mac_len=len(c["Tag"]))
        cipher.update(c["AAD"])
        ct, tag = cipher.encrypt_and_digest(c["PT"])
        assert (ct, tag) == (c["CT"], c["Tag"]), c


def test_cavp_decrypt_all_lengths_pycryptodome():
    for c in DECRYPT:
        cipher = AES.new(c["Key"], AES.MODE_GCM, nonce=c["IV"], mac_len=len(c["Tag"]))
        cipher.update(c["AAD"])
        try:
            pt = cipher.decrypt_and_verify(c["CT"], c["Tag"])
        except ValueError:
            pt = None
        assert (pt is None) == c["fail"] and (pt is None or pt == c["PT"]), c


@pytest.mark.parametrize("engine", ["pycryptodome", "openssl"])
def test_cavp_cases_with_cryptomed_parameters_through_each_engine(engine):
    eng = get_engine(engine)
    enc = [c for c in ENCRYPT if len(c["IV"]) == 12 and len(c["Tag"]) == 16]
    dec = [c for c in DECRYPT if len(c["IV"]) == 12 and len(c["Tag"]) == 16]
    assert len(enc) == len(dec) == 375 and any(c["fail"] for c in dec)
    for c in enc:
        assert eng.encrypt(c["Key"], c["IV"], c["PT"], c["AAD"]) == c["CT"] + c["Tag"]
        out = bytearray(b"\xee" * (len(c["PT"]) + 20))  # into reused memory: exactly its bytes, nothing around
        eng.encrypt_into(c["Key"], c["IV"], c["PT"], c["AAD"], memoryview(out)[2 : 2 + len(c["PT"]) + 16])
        assert out == b"\xee" * 2 + c["CT"] + c["Tag"] + b"\xee" * 2
    for c in dec:
        pt = eng.decrypt(c["Key"], c["IV"], c["CT"] + c["Tag"], c["AAD"])
        assert (pt is None) == c["fail"] and (pt is None or pt == c["PT"])


def test_engines_write_byte_identical_containers_and_read_each_other(tmp_path):
    records = make_records(n=7)
    a = write_container(tmp_path / "a.cmed", records=records, engine="pycryptodome", rng=seeded_rng(7))
    b = write_container(tmp_path / "b.cmed", records=records, engine="openssl", rng=seeded_rng(7))
    assert a.read_bytes() == b.read_bytes()
    for path, engine in ((a, "openssl"), (b, "pycryptodome")):
        arrays, _ = decrypt_to_arrays(path, KEK, engine=engine)
        np.testing.assert_array_equal(arrays["images"], records[0])


def read_container_from_the_spec(path, kek: bytes, splits=None):
    """An independent reader written from docs/format.md with struct + OpenSSL's AESGCM only.

    With ``splits``, only the records that the header's split table puts in those splits are decrypted (the table
    is authenticated by the data key's unwrap, a record's split claim by its tag and a comparison with the table).
    """
    data = Path(path).read_bytes()
    magic, version, alg, file_id, dek_id, n, meta_len = struct.unpack_from(">4sBB16s8sII", data)
    assert (magic, version, alg) == (b"CMED", 3, 1)
    pos = 38 + meta_len
    meta = json.loads(data[38:pos])
    offsets = struct.unpack_from(f">{n + 1}Q", data, pos)
    pos += 8 * (n + 1)
    table = data[pos : pos + n]
    pos += n
    header_digest = hashlib.sha256(data[:pos]).digest()
    (kb_len,) = struct.unpack_from(">I", data, pos)
    kb = data[pos + 4 : pos + 4 + kb_len]
    records_start = pos + 4 + kb_len
    kind, kek_id, params_len = struct.unpack_from(">B8sH", kb)
    params = kb[11 : 11 + params_len]
    wrap_nonce, wrapped = kb[11 + params_len : 23 + params_len], kb[23 + params_len :]
    dek = AESGCM(kek).decrypt(wrap_nonce, wrapped, b"cryptomed/v3/dek-wrap\x00" + header_digest + bytes([kind]) + kek_id + params)
    out = []
    for i in range(n):
        split = meta["splits"][table[i]]
        if splits is not None and split not in splits:
            continue
        rec = data[records_start + offsets[i] : records_start + offsets[i + 1]]
        (aad_len,) = struct.unpack_from(">H", rec, 4)
        aad = rec[6 : 6 + aad_len]
        nonce, sealed = rec[6 + aad_len : 18 + aad_len], rec[18 + aad_len :]
        plaintext = AESGCM(dek).decrypt(nonce, sealed, b"cryptomed/v3/record\x00" + header_digest + aad)
        claims = json.loads(aad)
        assert claims["split"] == split and claims["index"] == i
        out.append((claims, int.from_bytes(plaintext[:2], "big"), plaintext[2:]))
    return meta, out


def test_an_independent_reader_following_the_spec_decrypts_cryptomed_records(tmp_path):
    records = make_records(n=6, shape=(5, 7))
    path = write_container(tmp_path / "x.cmed", dataset="brain_mri", records=records)
    meta, out = read_container_from_the_spec(path, KEY)
    assert meta == {"dataset": "brain_mri", "shape": [5, 7], "splits": ["test", "train", "val"]}
    images, labels, ids, splits = records
    for i, (aad, label, pixels) in enumerate(out):
        assert aad == {"dataset": "brain_mri", "index": i, "id": ids[i], "split": splits[i], "shape": [5, 7]}
        assert label == labels[i] and pixels == images[i].tobytes()
    _, test_only = read_container_from_the_spec(path, KEY, splits={"test"})
    assert [aad["id"] for aad, _, _ in test_only] == list(ids[splits == "test"])


def test_the_spec_reader_refuses_an_edited_split_claim(tmp_path):
    from cryptography.exceptions import InvalidTag

    path = write_container(tmp_path / "x.cmed", records=make_records(n=5))
    path.write_bytes(path.read_bytes().replace(b'"split":"test"', b'"split":"tesx"', 1))
    with pytest.raises(InvalidTag):
        read_container_from_the_spec(path, KEY, splits={"test"})
