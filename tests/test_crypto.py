"""The container: round trip, random access, envelope keys, rotation, nonces, and the bad-input matrix."""

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pytest
from crypto_helpers import KEK, KEY, OTHER_KEK, OTHER_KEY, flip, layout, make_records, seeded_rng, write_container

from cryptomed.crypto import (
    ContainerFormatError,
    ContainerReader,
    HeaderAuthenticationError,
    InvalidKeyError,
    KeyMissingError,
    NonceReuseError,
    Passphrase,
    RawKey,
    RecordAuthenticationError,
    WrongKeyError,
    check_nonces_unique,
    decrypt_records,
    decrypt_to_arrays,
    encrypt_records,
    inspect,
    key_id,
    load_kek,
    load_key,
    rotate,
)


@pytest.fixture
def records():
    return make_records()


@pytest.fixture
def container(tmp_path, records):
    return write_container(tmp_path / "d.cmed", records=records)


# --------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("engine", ["pycryptodome", "openssl"])
@pytest.mark.parametrize("workers", [1, 2])
def test_round_trip_restores_pixels_labels_ids_and_splits(tmp_path, engine, workers, monkeypatch):
    from cryptomed.crypto import container as container_mod

    monkeypatch.setattr(container_mod, "MIN_RECORDS_PER_WORKER", 2)  # fork even for a small test set
    records = make_records(n=11)
    path = write_container(tmp_path / "d.cmed", records=records, engine=engine, workers=workers)
    arrays, seconds = decrypt_to_arrays(path, KEK, engine=engine, workers=workers)
    images, labels, ids, splits = records
    np.testing.assert_array_equal(arrays["images"], images)
    np.testing.assert_array_equal(arrays["labels"], labels)
    assert list(arrays["ids"]) == list(ids) and list(arrays["splits"]) == list(splits)
    assert len(seconds) == 11 and (seconds > 0).all()


def test_random_access_and_split_filter(container, records):
    images, labels, ids, splits = records
    with ContainerReader(container, KEK) as reader:
        assert len(reader) == 5
        rec, _ = reader.read(3)
        assert (rec.index, rec.id, rec.split, rec.label) == (3, ids[3], splits[3], labels[3])
        np.testing.assert_array_equal(rec.pixels, images[3])
        with pytest.raises(IndexError):
            reader.read(5)
    arrays, seconds = decrypt_to_arrays(container, KEK, splits=("test",))
    assert list(arrays["ids"]) == list(ids[splits == "test"]) and len(seconds) == 2
    np.testing.assert_array_equal(arrays["images"], images[splits == "test"])


def test_label_and_pixels_are_not_in_the_clear(container, records):
    data = container.read_bytes()
    assert records[0][0].tobytes() not in data
    assert b"label" not in data  # the label lives inside the ciphertext, not in the associated data
    assert KEY not in data and KEY.hex().encode() not in data


def test_inspect_needs_no_key_and_shows_no_secret(container):
    info = inspect(container)
    assert info["records"] == 5 and info["dataset"] == "chest_xray" and info["kek_id"] == key_id(KEY).hex()
    assert info["kek_kind"] == "raw" and info["format_version"] == 3 and info["image_shape"] == [8, 8]
    assert info["split_counts"] == {"test": 2, "train": 2, "val": 1}


def test_fresh_nonce_per_record_and_per_run_and_a_fresh_data_key_per_file(tmp_path, records):
    a = write_container(tmp_path / "a.cmed", records=records)
    b = write_container(tmp_path / "b.cmed", records=records)
    assert a.read_bytes() != b.read_bytes()
    assert inspect(a)["data_key_id"] != inspect(b)["data_key_id"]
    nonces = []
    for path in (a, b):
        data = path.read_bytes()
        nonces += [data[r["nonce"] : r["nonce"] + 12] for r in layout(path)[2]]
    assert len(set(nonces)) == len(nonces) == 10


def test_nonce_reuse_is_refused_before_anything_is_written(tmp_path, records):
    counter = iter(range(10**6))

    def repeating_rng(n):  # the same 12 bytes for every nonce: a broken random source
        return bytes(n) if n % 12 == 0 and n >= 12 else next(counter).to_bytes(n, "big")

    path = tmp_path / "d.cmed"
    with pytest.raises(NonceReuseError, match="records 0 and 1 would share a nonce"):
        encrypt_records(path, "chest_xray", *records, KEK, rng=repeating_rng)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(NonceReuseError):
        check_nonces_unique([b"a" * 12, b"b" * 12, b"a" * 12], "x")


def test_fast_record_aad_formatting_equals_canonical_json():
    from cryptomed.crypto.container import _RecordAADs
    from cryptomed.crypto.keys import canonical_json

    ids = ["a", 'q"uote', "\u00e9t\u00e9", "x\\y", "007", "\U0001f600"] * 2
    splits = ["train", "val", "test", "tr\nain", "val", "test"] * 2
    aads = _RecordAADs("br\u00e4in", ids, splits, (64, 48))
    fast = [aads[i] for i in range(len(aads))]
    assert fast == [canonical_json({"dataset": "br\u00e4in", "index": i, "id": r, "split": s, "shape": [64, 48]})
                    for i, (r, s) in enumerate(zip(ids, splits))]
    assert list(aads.lengths()) == [len(a) for a in fast]
    many = _RecordAADs("x", ["id"] * 10_001, ["train"] * 10_001, (8, 8))  # index digits 1 to 5
    assert list(many.lengths()) == [len(many[i]) for i in range(10_001)]


def test_seeded_writes_are_reproducible(tmp_path, records):
    a = write_container(tmp_path / "a.cmed", records=records, rng=seeded_rng(1))
    b = write_container(tmp_path / "b.cmed", records=records, rng=seeded_rng(1))
    assert a.read_bytes() == b.read_bytes()


# --------------------------------------------------------------------------- keys


def test_passphrase_kek_round_trip_and_wrong_passphrase(tmp_path, records):
    kek = Passphrase("correct horse battery", n=2**10)
    path = write_container(tmp_path / "p.cmed", records=records, kek=kek)
    info = inspect(path)
    assert info["kek_kind"] == "scrypt" and info["kdf"]["n"] == 2**10 and len(info["kdf"]["salt"]) == 32
    arrays, _ = decrypt_to_arrays(path, Passphrase("correct horse battery"))  # cost comes from the file
    np.testing.assert_array_equal(arrays["images"], records[0])
    with pytest.raises(WrongKeyError, match="wrong key"):
        decrypt_to_arrays(path, Passphrase("incorrect horse battery"))
    with pytest.raises(WrongKeyError, match="passphrase"):
        decrypt_to_arrays(path, KEK)
    assert b"correct horse" not in path.read_bytes()


def test_scrypt_parameters_from_a_file_are_bounded(tmp_path, records):
    path = write_container(tmp_path / "p.cmed", records=records, kek=Passphrase("correct horse battery", n=2**10))
    data = path.read_bytes().replace(b'"n":1024', b'"n":2048', 1)  # still a power of two: derives a different KEK
    path.write_bytes(data)
    with pytest.raises(WrongKeyError):
        decrypt_to_arrays(path, Passphrase("correct horse battery"))
    path.write_bytes(data.replace(b'"n":2048', b'"n":4096', 1).replace(b'"p":1', b'"p":9', 1))
    with pytest.raises(ContainerFormatError, match="scrypt|outside the bounds"):
        decrypt_to_arrays(path, Passphrase("correct horse battery"))


def test_rotation_rewraps_the_data_key_without_touching_records(container):
    before = container.read_bytes()
    _, _, recs_before = layout(container)
    mtime = container.stat().st_mtime_ns
    old_id, new_id = rotate(container, KEK, OTHER_KEK)
    assert (old_id, new_id) == (key_id(KEY).hex(), key_id(OTHER_KEY).hex())
    after = container.read_bytes()
    _, _, recs_after = layout(container)
    assert before[recs_before[0]["start"] :] == after[recs_after[0]["start"] :]  # record bytes identical
    assert container.stat().st_mtime_ns == mtime
    with pytest.raises(WrongKeyError):
        decrypt_to_arrays(container, KEK)
    decrypt_to_arrays(container, OTHER_KEK)
    rotate(container, OTHER_KEK, Passphrase("a long passphrase", n=2**10))  # raw -> passphrase
    assert inspect(container)["kek_kind"] == "scrypt"
    decrypt_to_arrays(container, Passphrase("a long passphrase"))


def test_rotation_with_the_wrong_old_key_changes_nothing(container):
    before = container.read_bytes()
    with pytest.raises(WrongKeyError):
        rotate(container, OTHER_KEK, KEK)
    assert container.read_bytes() == before and [p.name for p in container.parent.iterdir()] == ["d.cmed"]


def test_key_file_created_0600_only_when_asked(tmp_path):
    path = tmp_path / "secrets" / "k.key"
    with pytest.raises(KeyMissingError, match="not found"):
        load_key(path)
    key = load_key(path, create=True)
    assert len(key) == 32 and stat.S_IMODE(os.stat(path).st_mode) == 0o600 and load_key(path) == key


def test_key_sources_in_order(tmp_path, monkeypatch):
    monkeypatch.delenv("CRYPTOMED_KEY", raising=False)
    monkeypatch.setenv("CRYPTOMED_PASSPHRASE", "from the environment")
    assert isinstance(load_kek(tmp_path / "absent.key"), Passphrase)
    monkeypatch.setenv("CRYPTOMED_KEY", KEY.hex())
    kek = load_kek(tmp_path / "absent.key")
    assert isinstance(kek, RawKey) and kek.derive({}) == KEY and KEY.hex() not in repr(kek)


@pytest.mark.parametrize("bad", ["abc", "zz" * 32, "00" * 16])
def test_malformed_key_is_rejected_without_echoing_it(monkeypatch, bad):
    monkeypatch.setenv("CRYPTOMED_KEY", bad)
    with pytest.raises(InvalidKeyError) as exc:
        load_kek(None)
    assert bad not in str(exc.value)


def test_raw_bytes_are_not_accepted_as_a_kek(tmp_path, records):
    with pytest.raises(InvalidKeyError, match="KeyEncryptionKey"):
        encrypt_records(tmp_path / "x.cmed", "chest_xray", *records, KEY)


def test_key_id_is_a_fingerprint_not_the_key():
    kid = key_id(KEY)
    assert len(kid) == 8 and kid not in KEY and kid != key_id(OTHER_KEY)


def test_concurrent_first_use_agrees_on_one_key(tmp_path):
    path = tmp_path / "k.key"
    with ThreadPoolExecutor(8) as pool:
        keys = list(pool.map(lambda _: load_key(path, create=True), range(16)))
    assert len(set(keys)) == 1 and load_key(path) == keys[0]
    assert [p.name for p in tmp_path.iterdir()] == ["k.key"]


def test_failed_encrypt_leaves_no_partial_file(tmp_path, records):
    images, labels, ids, splits = records
    with pytest.raises(ValueError):
        encrypt_records(tmp_path / "out.cmed", "chest_xray", images, labels[:3], ids, splits, KEK)
    assert list(tmp_path.iterdir()) == []


def test_outputs_get_ordinary_permissions(container):
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(container).st_mode) == 0o666 & ~umask


# --------------------------------------------------------------------------- the bad-input matrix


def _splice_record(path, index, other_path):
    """Replace record ``index`` of ``path`` by the same-position record of ``other_path``."""
    _, _, mine = layout(path)
    _, _, theirs = layout(other_path)
    data, other = path.read_bytes(), other_path.read_bytes()
    r, o = mine[index], theirs[index]
    path.write_bytes(data[: r["start"]] + other[o["start"] : o["end"]] + data[r["end"] :])


def _swap(path):
    _, _, recs = layout(path)
    data = path.read_bytes()
    a, b = recs[0], recs[1]
    path.write_bytes(data[: a["start"]] + data[b["start"] : b["end"]] + data[a["start"] : a["end"]] + data[b["end"] :])


def _field(name):
    return lambda path: flip(path, layout(path)[1][name])


def _record(part, index=3):
    return lambda path: flip(path, layout(path)[2][index][part])


def _truncate(path):
    r = layout(path)[2][3]
    path.write_bytes(path.read_bytes()[: r["start"] + 10])


def _other_file(dataset=None, split=None):
    def mutate(path):
        records = make_records()
        # An attacker splices a record of the same size (the authenticated index fixes every record's size):
        # one character less in dataset or split is made up by one more in the id.
        if split:
            records[3][3] = split
        if dataset or split:
            ids = records[2].astype(object)
            ids[3] = "0" + ids[3]
            records = (records[0], records[1], ids, records[3])
        other = write_container(path.with_name("other.cmed"), dataset=dataset or "chest_xray", records=records)
        _splice_record(path, 3, other)

    return mutate


def _edit_split(path):
    path.write_bytes(path.read_bytes().replace(b'"split":"test"', b'"split":"tset"', 1))


def _rewrite(content):
    return lambda path: path.write_bytes(content)


MATRIX = {
    # case: (mutation, error type, message pattern)
    "header magic bit flip": (_field("magic"), ContainerFormatError, "not a cryptomed container"),
    "header version bit flip": (_field("version"), ContainerFormatError, "unsupported container version"),
    "header algorithm bit flip": (_field("algorithm"), ContainerFormatError, "unsupported algorithm"),
    "header file id bit flip": (_field("file_id"), HeaderAuthenticationError, "header or key block was modified"),
    "header data key id bit flip": (_field("data_key_id"), HeaderAuthenticationError, "was modified"),
    "header dataset bit flip": (_field("meta"), HeaderAuthenticationError, "was modified"),
    "header record index bit flip": (_field("index"), HeaderAuthenticationError, "was modified"),
    "header record count bit flip": (_field("record_count"), ContainerFormatError, "do not fit|not valid|truncated"),
    "key block KEK id bit flip": (_field("kek_id"), WrongKeyError, "wrong key"),
    "key block KEK kind bit flip": (_field("kek_kind"), ContainerFormatError, "key block is not valid"),
    "key block wrapped key bit flip": (_field("wrapped_dek"), HeaderAuthenticationError, "does not unwrap"),
    "record nonce bit flip": (_record("nonce"), RecordAuthenticationError, r"record 3 .*id 000003.*does not verify"),
    "record ciphertext bit flip": (_record("ciphertext"), RecordAuthenticationError, r"record 3 .*id 000003.*does not verify"),
    "record tag bit flip": (_record("tag"), RecordAuthenticationError, r"record 3 .*id 000003.*does not verify"),
    "record length bit flip": (_record("start"), RecordAuthenticationError, r"record 3: length field"),
    "record associated data edited": (_edit_split, RecordAuthenticationError, r"record 3 .*split tset.*does not verify"),
    "records swapped within the file": (_swap, RecordAuthenticationError, r"record 0 .*id 000001"),
    "record moved from another file": (_other_file(), RecordAuthenticationError, r"record 3 .*does not verify"),
    "record moved from another dataset": (_other_file("brain_mri"), RecordAuthenticationError, r"record 3 .*brain_mri"),
    "record moved from another split": (_other_file(split="val"), RecordAuthenticationError, r"record 3 .*split val"),
    "truncated inside a record": (_truncate, ContainerFormatError, r"truncated: record 3 of 5"),
    "trailing bytes": (lambda p: p.write_bytes(p.read_bytes() + b"x"), ContainerFormatError, "trailing bytes"),
    "file written under another key": (lambda p: write_container(p, kek=OTHER_KEK), WrongKeyError, "wrong key"),
    "empty file": (_rewrite(b""), ContainerFormatError, "empty file"),
    "random garbage": (_rewrite(os.urandom(4096)), ContainerFormatError, "bad magic"),
    "magic then garbage": (_rewrite(b"CMED" + os.urandom(200)), ContainerFormatError, "unsupported|truncated|do not fit"),
    "earlier format version 2": (lambda p: flip(p, 4, 0x01), ContainerFormatError,
                                 "version 2; this cryptomed reads version 3 only .*earlier cryptomed format.*re-run encrypt"),
    "earlier format version 1": (lambda p: flip(p, 4, 0x02), ContainerFormatError, "version 1;.*earlier cryptomed format"),
}


@pytest.mark.parametrize("case", list(MATRIX))
def test_bad_input_matrix(container, case):
    mutate, error, pattern = MATRIX[case]
    mutate(container)
    with pytest.raises(error, match=pattern):
        decrypt_to_arrays(container, KEK)


def test_wrong_key_is_told_apart_from_tampering(container):
    with pytest.raises(WrongKeyError, match=f"key id {key_id(KEY).hex()}.*has id {key_id(OTHER_KEY).hex()}"):
        list(decrypt_records(container, OTHER_KEK))


def _stage_args(tmp_path, container, key_file):
    class Named(list):
        def __init__(self, **kw):
            super().__init__(kw.values())
            self.__dict__.update(kw)

        def items(self):
            return {k: v for k, v in self.__dict__.items()}.items()

        def keys(self):
            return self.__dict__.keys()

    out = tmp_path / "out"
    return SimpleNamespace(input=Named(container=str(container)),
                           output=Named(npz=str(out / "d.npz"), timing=str(out / "timing.csv")),
                           params=Named(key_file=str(key_file), engine="pycryptodome"), log=[str(tmp_path / "d.log")],
                           wildcards=Named(dataset="chest_xray"), threads=1), out


@pytest.mark.parametrize("case", ["record tag bit flip", "truncated inside a record", "file written under another key",
                                  "empty file", "header file id bit flip"])
def test_decrypt_stage_exits_non_zero_naming_the_problem_and_writes_nothing(tmp_path, container, case, monkeypatch):
    from cryptomed.pipeline import decrypt_stage, run_stage

    monkeypatch.delenv("CRYPTOMED_KEY", raising=False)
    monkeypatch.delenv("CRYPTOMED_PASSPHRASE", raising=False)
    key_file = tmp_path / "k.key"
    key_file.write_text(KEY.hex())
    key_file.chmod(0o600)
    MATRIX[case][0](container)
    smk, out = _stage_args(tmp_path, container, key_file)
    with pytest.raises(SystemExit) as exc:
        run_stage(smk, decrypt_stage)
    assert exc.value.code == 1
    assert not out.exists() or list(out.iterdir()) == []
    log = (tmp_path / "d.log").read_text()
    assert MATRIX[case][1].__name__ in log and KEY.hex() not in log


def test_decrypt_stage_without_a_key_is_a_missing_key(tmp_path, container, monkeypatch):
    from cryptomed.pipeline import decrypt_stage, run_stage

    monkeypatch.delenv("CRYPTOMED_KEY", raising=False)
    monkeypatch.delenv("CRYPTOMED_PASSPHRASE", raising=False)
    smk, out = _stage_args(tmp_path, container, tmp_path / "absent.key")
    with pytest.raises(SystemExit):
        run_stage(smk, decrypt_stage)
    assert "KeyMissingError" in (tmp_path / "d.log").read_text() and not out.exists()


def _rewrite_aad(path, record, text: bytes):
    _, _, records = layout(path)
    start, nonce = records[record]["aad"], records[record]["nonce"]
    data = bytearray(path.read_bytes())
    assert len(text) == nonce - start
    data[start:nonce] = text
    path.write_bytes(bytes(data))


def test_hostile_associated_data_gives_the_clean_error(tmp_path):
    """Unauthenticated AAD is parsed before the tag is checked: nesting too deep and odd types stay clean errors."""
    images, labels, ids, splits = make_records(n=4)
    ids = np.array([f"{i:04d}" + "x" * 2100 for i in range(4)])
    path = write_container(tmp_path / "d.cmed", records=(images, labels, ids, splits))
    length = layout(path)[2][1]["nonce"] - layout(path)[2][1]["aad"]
    _rewrite_aad(path, 1, b"[" * length)
    with pytest.raises(RecordAuthenticationError, match="record 1: authentication tag does not verify"):
        decrypt_to_arrays(path, KEK)
    path = write_container(tmp_path / "e.cmed", records=(images, labels, ids, splits))
    odd = b'{"split":["test"],"id":"' + b"y" * (length - 28) + b'"}'
    _rewrite_aad(path, 2, odd)  # record 2 is in "val" (the authenticated split table says so)
    arrays, _ = decrypt_to_arrays(path, KEK, splits=("train",))  # not asked for: not read, the same 2 records
    assert list(arrays["ids"]) == list(ids[splits == "train"])
    for wanted in (("val",), None):
        with pytest.raises(RecordAuthenticationError, match=r"record 2 \(dataset <NoneType>, split <list>, id y+\.\.\.\).*does not verify"):
            decrypt_to_arrays(path, KEK, splits=wanted)


@pytest.mark.parametrize("part", ["header metadata", "key block parameters"])
def test_json_nested_too_deep_in_the_header_is_a_format_error(tmp_path, part):
    import struct as st

    from cryptomed.crypto.container import _FIXED, ALG_AES_256_GCM, MAGIC, VERSION

    deep = b"[" * 3000
    meta = deep if part == "header metadata" else b'{"dataset":"x","shape":[8,8],"splits":[]}'
    params = deep if part == "key block parameters" else b""
    key_block = st.pack(">B8sH", 1, b"k" * 8, len(params)) + params + b"n" * 12 + b"w" * 48
    data = (_FIXED.pack(MAGIC, VERSION, ALG_AES_256_GCM, b"f" * 16, b"d" * 8, 0, len(meta)) + meta + bytes(8)
            + st.pack(">I", len(key_block)) + key_block)
    (tmp_path / "deep.cmed").write_bytes(data)
    with pytest.raises(ContainerFormatError, match=f"{part} (are|is) not valid"):
        decrypt_to_arrays(tmp_path / "deep.cmed", KEK)
