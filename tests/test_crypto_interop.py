"""AES-256-GCM known answers and interoperability with an independent implementation (OpenSSL via `cryptography`).

Known answers: test cases 13 and 14 of McGrew & Viega, "The Galois/Counter Mode of Operation (GCM)" (the
AES-256 cases with a zero key and IV). The full NIST CAVP sets are tracked in issue #3.
"""

import numpy as np
import pytest
from Crypto.Cipher import AES

from cryptomed import crypto

AESGCM = pytest.importorskip("cryptography.hazmat.primitives.ciphers.aead").AESGCM

KNOWN = [
    (bytes(32), bytes(12), b"", b"", "530f8afbc74536b9a963b4f1c4cb738b"),
    (bytes(32), bytes(12), bytes(16), bytes.fromhex("cea7403d4d606b6e074ec5d3baf39d18"), "d0d1c8a799996bf0265b98b5d48ab919"),
]


@pytest.mark.parametrize("key,nonce,plaintext,ciphertext,tag", KNOWN)
def test_known_answers(key, nonce, plaintext, ciphertext, tag):
    ct, t = AES.new(key, AES.MODE_GCM, nonce=nonce).encrypt_and_digest(plaintext)
    assert ct == ciphertext and t.hex() == tag


def test_records_decrypt_with_an_independent_implementation(tmp_path):
    key = bytes(range(32))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 6, 5), dtype=np.uint8)
    path = tmp_path / "x.cmed"
    crypto.encrypt_records(path, "brain_mri", images, np.array([3, 0, 2]), np.array(["a", "b", "c"]),
                           np.array(["train", "val", "test"]), key)
    with open(path, "rb") as fh:
        header, _, meta = crypto.read_header(fh, path)
        for i in range(meta["records"]):
            body = fh.read(int.from_bytes(fh.read(4), "big"))
            aad_len = int.from_bytes(body[:2], "big")
            aad, rest = body[2 : 2 + aad_len], body[2 + aad_len :]
            plaintext = AESGCM(key).decrypt(rest[:12], rest[12:], header + aad)
            assert int.from_bytes(plaintext[:2], "big") == [3, 0, 2][i]
            assert plaintext[2:] == images[i].tobytes()
