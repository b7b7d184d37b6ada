import os
import stat

import numpy as np
import pytest

from cryptomed import crypto
from cryptomed.crypto import (
    ContainerFormatError,
    KeyMissingError,
    InvalidKeyError,
    RecordAuthenticationError,
    WrongKeyError,
    decrypt_records,
    decrypt_to_arrays,
    encrypt_records,
    key_id,
    load_key,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


@pytest.fixture
def records():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 8, 8), dtype=np.uint8)
    labels = np.array([0, 1, 1, 0, 1])
    ids = np.array([f"{i:06d}" for i in range(5)])
    splits = np.array(["train", "train", "val", "test", "test"])
    return images, labels, ids, splits


@pytest.fixture
def container(tmp_path, records):
    path = tmp_path / "d.cmed"
    encrypt_records(path, "chest_xray", *records, KEY)
    return path


def _offsets(path):
    """Byte offsets (start, end) of each record body in a container."""
    data = path.read_bytes()
    with open(path, "rb") as fh:
        header, _, meta = crypto.read_header(fh, path)
    pos, out = len(header), []
    for _ in range(meta["records"]):
        n = int.from_bytes(data[pos : pos + 4], "big")
        out.append((pos, pos + 4 + n))
        pos += 4 + n
    return data, header, out


def test_round_trip_restores_pixels_labels_ids_and_splits(container, records):
    images, labels, ids, splits = records
    arrays, seconds = decrypt_to_arrays(container, KEY)
    np.testing.assert_array_equal(arrays["images"], images)
    np.testing.assert_array_equal(arrays["labels"], labels)
    assert list(arrays["ids"]) == list(ids)
    assert list(arrays["splits"]) == list(splits)
    assert len(seconds) == 5 and (seconds > 0).all()


def test_label_and_pixels_are_not_in_the_clear(container, records):
    images = records[0]
    data = container.read_bytes()
    assert images[0].tobytes() not in data
    assert b"label" not in data  # the label lives inside the ciphertext, not in the associated data


def test_fresh_nonce_per_record_and_per_run(tmp_path, records):
    a, b = tmp_path / "a.cmed", tmp_path / "b.cmed"
    encrypt_records(a, "chest_xray", *records, KEY)
    encrypt_records(b, "chest_xray", *records, KEY)
    assert a.read_bytes() != b.read_bytes()
    data, _, offs = _offsets(a)
    nonces = set()
    for start, _ in offs:
        aad_len = int.from_bytes(data[start + 4 : start + 6], "big")
        nonces.add(data[start + 6 + aad_len : start + 6 + aad_len + 12])
    assert len(nonces) == len(offs)


def test_wrong_key_is_reported_as_wrong_key_not_tampering(container):
    with pytest.raises(WrongKeyError, match="wrong key"):
        next(decrypt_records(container, OTHER_KEY))


@pytest.mark.parametrize("where", ["ciphertext", "tag", "nonce"])
def test_bit_flip_fails_authentication_naming_the_record(container, where):
    data, _, offs = _offsets(container)
    start, end = offs[3]
    aad_len = int.from_bytes(data[start + 4 : start + 6], "big")
    pos = {"ciphertext": start + 6 + aad_len + 12 + 5, "tag": end - 1, "nonce": start + 6 + aad_len}[where]
    buf = bytearray(data)
    buf[pos] ^= 0x01
    container.write_bytes(bytes(buf))
    with pytest.raises(RecordAuthenticationError, match=r"record 3 .*id 000003"):
        list(decrypt_records(container, KEY))


def test_edited_associated_data_fails_authentication(container):
    data = container.read_bytes()
    tampered = data.replace(b'"split":"test"', b'"split":"tset"', 1)
    assert tampered != data
    container.write_bytes(tampered)
    with pytest.raises(RecordAuthenticationError, match="record 3"):
        list(decrypt_records(container, KEY))


def test_swapped_records_fail_authentication(container):
    data, header, offs = _offsets(container)
    (s0, e0), (s1, e1) = offs[0], offs[1]
    swapped = data[:s0] + data[s1:e1] + data[s0:e0] + data[e1:]
    container.write_bytes(swapped)
    with pytest.raises(RecordAuthenticationError, match="record 0"):
        list(decrypt_records(container, KEY))


def test_record_moved_to_another_dataset_fails(tmp_path, records):
    a, b = tmp_path / "a.cmed", tmp_path / "b.cmed"
    encrypt_records(a, "chest_xray", *records, KEY)
    encrypt_records(b, "brain_mri", *records, KEY)
    da, _, offa = _offsets(a)
    db, _, offb = _offsets(b)
    s, e = offb[2]
    sa, ea = offa[2]
    a.write_bytes(da[:sa] + db[s:e] + da[ea:])
    with pytest.raises(RecordAuthenticationError, match="record 2"):
        list(decrypt_records(a, KEY))


def test_truncated_container_is_a_format_error(container):
    data = container.read_bytes()
    container.write_bytes(data[:-7])
    with pytest.raises(ContainerFormatError, match="truncated"):
        list(decrypt_records(container, KEY))


@pytest.mark.parametrize("content", [b"", b"garbage" * 10, b"CMED"])
def test_not_a_container(tmp_path, content):
    p = tmp_path / "x.cmed"
    p.write_bytes(content)
    with pytest.raises(ContainerFormatError):
        list(decrypt_records(p, KEY))


def test_trailing_bytes_are_rejected(container):
    container.write_bytes(container.read_bytes() + b"x")
    with pytest.raises(ContainerFormatError, match="trailing"):
        list(decrypt_records(container, KEY))


def test_failed_encrypt_leaves_no_partial_file(tmp_path, records):
    images, labels, ids, splits = records
    path = tmp_path / "out.cmed"
    with pytest.raises(ValueError):
        encrypt_records(path, "chest_xray", images, labels[:3], ids, splits, KEY)
    assert list(tmp_path.iterdir()) == []


def test_key_file_created_0600_only_when_asked(tmp_path):
    path = tmp_path / "secrets" / "k.key"
    with pytest.raises(KeyMissingError, match="not found"):
        load_key(path)
    key = load_key(path, create=True)
    assert len(key) == 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_key(path) == key


def test_key_from_environment_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("CRYPTOMED_KEY", KEY.hex())
    assert load_key(tmp_path / "absent.key") == KEY


@pytest.mark.parametrize("bad", ["abc", "zz" * 32, "00" * 16])
def test_malformed_key_is_rejected_without_echoing_it(monkeypatch, bad):
    monkeypatch.setenv("CRYPTOMED_KEY", bad)
    with pytest.raises(InvalidKeyError) as exc:
        load_key(None)
    assert bad not in str(exc.value)


def test_key_id_is_a_fingerprint_not_the_key():
    kid = key_id(KEY)
    assert len(kid) == 8 and kid not in KEY and kid != key_id(OTHER_KEY)


def test_outputs_get_ordinary_permissions(container):
    assert stat.S_IMODE(os.stat(container).st_mode) == 0o666 & ~_umask()


def _umask():
    old = os.umask(0)
    os.umask(old)
    return old


def test_concurrent_first_use_agrees_on_one_key(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "k.key"
    with ThreadPoolExecutor(8) as pool:
        keys = list(pool.map(lambda _: load_key(path, create=True), range(16)))
    assert len(set(keys)) == 1 and load_key(path) == keys[0]
    assert [p.name for p in tmp_path.iterdir()] == ["k.key"]  # no temporary files left
