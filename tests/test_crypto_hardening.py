"""Issue 15 (crypto hardening, round 2): each finding of the independent attack, refused cleanly.

1. split claims: a filtered read selects by the authenticated header, never by a record's unauthenticated claim
2. later stages check the container is the one the decrypt rule verified (in-place edit, rollback); `verify`
3. hostile header / key block values (non-finite, huge, wrong types, nesting) -> documented CryptoError types
4. the cost of opening any container before the key is checked is capped (scrypt bounds)
5. key file permissions, $CRYPTOMED_KEY format, escaped messages, rotate verifies first, strict JSON from inspect
"""

import json
import os
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import REPO
from crypto_helpers import KEK, KEY, OTHER_KEK, layout, make_records, write_container

from cryptomed.crypto import (
    ContainerFormatError,
    ContainerMismatchError,
    ContainerReader,
    CryptoError,
    HeaderAuthenticationError,
    InvalidKeyError,
    Passphrase,
    RecordAuthenticationError,
    WrongKeyError,
    decrypt_to_arrays,
    inspect,
    load_kek,
    load_key,
    read_header,
    read_key_file,
    rotate,
    verification_record,
)


def cli(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "cryptomed", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "PYTHONPATH": str(REPO / "src"), **(env or {})})


def key_file(tmp_path, key=KEY, mode=0o600):
    path = tmp_path / "k.key"
    path.write_text(key.hex() + "\n")
    path.chmod(mode)
    return path


# --------------------------------------------------------------------------- 1. no silent omission


def _edit_every(path, old: bytes, new: bytes) -> int:
    data = path.read_bytes()
    assert len(old) == len(new)
    path.write_bytes(data.replace(old, new))
    return data.count(old)


@pytest.mark.parametrize("new_claim", [b'"split":"tesx"', b'"split":"val"}', b'"split":"trai'])
def test_an_edited_split_claim_is_never_skipped_silently(tmp_path, new_claim):
    records = make_records(n=10)
    path = write_container(tmp_path / "d.cmed", records=records)
    old = b'"split":"test"' if new_claim.startswith(b'"split":"te') else b'"split":"test"}'[: len(new_claim)]
    assert _edit_every(path, old, new_claim) == 4  # every test record claims another split now
    first_test = int(np.flatnonzero(records[3] == "test")[0])
    with pytest.raises(RecordAuthenticationError, match=rf"record {first_test}\b.*does not verify"):
        decrypt_to_arrays(path, KEK, splits=("test",))
    with ContainerReader(path, KEK) as reader, pytest.raises(RecordAuthenticationError, match=f"record {first_test}"):
        list(reader.read_span(0, len(reader), splits={"test"}))
    # records the authenticated header puts elsewhere are exactly what a train/val read returns
    arrays, _ = decrypt_to_arrays(path, KEK, splits=("train", "val"))
    assert list(arrays["ids"]) == list(records[2][records[3] != "test"])


def test_a_claim_moved_into_a_wanted_split_does_not_add_a_record(tmp_path):
    records = make_records(n=5)  # splits: train train val test test
    path = write_container(tmp_path / "d.cmed", records=records)
    data = path.read_bytes()
    rec = layout(path)[2][2]  # the val record claims test now
    aad = data[rec["aad"] : rec["nonce"]]
    path.write_bytes(data[: rec["aad"]] + aad.replace(b'"split":"val"', b'"split":"tst"') + data[rec["nonce"] :])
    arrays, _ = decrypt_to_arrays(path, KEK, splits=("test",))
    assert list(arrays["ids"]) == ["000003", "000004"]  # exactly the records the authenticated header lists
    with pytest.raises(RecordAuthenticationError, match="record 2 .*split tst"):
        decrypt_to_arrays(path, KEK, splits=("val",))


@pytest.mark.parametrize("value", [0, 1, 2, 200])
def test_an_edited_split_table_fails_header_authentication(tmp_path, value):
    path = write_container(tmp_path / "d.cmed")
    pos = layout(path)[1]["split_table"] + 3
    data = bytearray(path.read_bytes())
    if data[pos] == value:
        value = (value + 1) % 3
    data[pos] = value
    path.write_bytes(bytes(data))
    error = ContainerFormatError if value >= 3 else HeaderAuthenticationError
    with pytest.raises(error, match="split table is not valid|header or key block was modified"):
        decrypt_to_arrays(path, KEK, splits=("test",))


def test_split_counts_are_in_the_header_and_checked(tmp_path):
    path = write_container(tmp_path / "d.cmed", records=make_records(n=11))
    assert inspect(path)["split_counts"] == {"test": 4, "train": 5, "val": 2}
    with ContainerReader(path, KEK) as reader:
        assert list(reader.header.records_of({"test"})) == [3, 4, 8, 9]


# --------------------------------------------------------------------------- 2. later stages verify what they use


class Named(list):
    def __init__(self, **kw):
        super().__init__(kw.values())
        self.__dict__.update(kw)

    def items(self):
        return dict(self.__dict__).items()

    def keys(self):
        return self.__dict__.keys()


def _decrypt_rule(tmp_path, container, kf):
    from cryptomed.pipeline import decrypt_stage

    out = tmp_path / "results"
    smk = Named(input=Named(container=str(container)),
                output=Named(timing=str(out / "timing.csv"), verified=str(out / "container_verified.json")),
                params=Named(key_file=str(kf), engine="pycryptodome"), threads=1,
                wildcards=Named(dataset="chest_xray"))
    smk = type("Smk", (), dict(input=smk.input, output=smk.output, params=smk.params, threads=1,
                               wildcards=smk.wildcards))
    decrypt_stage(smk)
    return out / "container_verified.json"


def _evaluate_reads(container, kf, verified, splits=("test",)):
    """What evaluate (and train, with other splits) does to read its images: pipeline._model_arrays."""
    from cryptomed.pipeline import _model_arrays

    smk = type("Smk", (), dict(input=Named(container=str(container), verified=str(verified)),
                               wildcards=Named(dataset="chest_xray")))
    return _model_arrays(smk, {"key_file": str(kf), "engine": "pycryptodome"}, splits=splits)


def test_the_decrypt_rule_records_what_it_verified_and_later_stages_check_it(tmp_path):
    records = make_records(n=10)
    container = write_container(tmp_path / "d.cmed", records=records)
    kf = key_file(tmp_path)
    verified = _decrypt_rule(tmp_path, container, kf)
    record = json.loads(verified.read_text())
    assert record["records"] == 10 and record["split_counts"] == {"test": 4, "train": 4, "val": 2}
    assert KEY.hex() not in verified.read_text()
    arrays = _evaluate_reads(container, kf, verified)
    assert list(arrays["ids"]) == list(records[2][records[3] == "test"])

    # rotation rewrites the key block only: still the verified content
    rotate(container, KEK, OTHER_KEK)
    rotate(container, OTHER_KEK, KEK)
    _evaluate_reads(container, kf, verified)


@pytest.mark.parametrize("splits", [("test",), ("train", "val")])
def test_an_in_place_edit_after_the_decrypt_rule_stops_train_and_evaluate(tmp_path, splits):
    container = write_container(tmp_path / "d.cmed", records=make_records(n=10))
    kf = key_file(tmp_path)
    verified = _decrypt_rule(tmp_path, container, kf)
    # an edit of a record the stage does not even read, keeping size and modification time (invisible to make-style
    # tools): the content digest still differs
    st = container.stat()
    rec = layout(container)[2][3 if splits != ("test",) else 0]
    data = bytearray(container.read_bytes())
    data[rec["tag"]] ^= 1
    container.write_bytes(bytes(data))
    os.utime(container, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(ContainerMismatchError, match="modified since the decrypt rule verified it"):
        _evaluate_reads(container, kf, verified, splits)


def test_a_rollback_to_an_older_valid_container_stops_train_and_evaluate(tmp_path):
    records = make_records(n=10)
    older = write_container(tmp_path / "older.cmed", records=records)
    container = write_container(tmp_path / "d.cmed", records=records)
    kf = key_file(tmp_path)
    verified = _decrypt_rule(tmp_path, container, kf)
    st = container.stat()
    os.replace(older, container)
    os.utime(container, ns=(st.st_atime_ns, st.st_mtime_ns))
    decrypt_to_arrays(container, KEK)  # a perfectly valid container on its own
    for splits in (("test",), ("train", "val"), None):
        with pytest.raises(ContainerMismatchError, match="not the container the decrypt rule verified.*rolled back"):
            _evaluate_reads(container, kf, verified, splits)


def test_the_aes_baselines_check_the_record_too(tmp_path):
    from cryptomed.pipeline import _container_arrays

    container = write_container(tmp_path / "d.cmed", records=make_records(n=10))
    kf = key_file(tmp_path)
    verified = _decrypt_rule(tmp_path, container, kf)
    smk = type("Smk", (), dict(input=Named(container=str(container), verified=str(verified)),
                               params=Named(key_file=str(kf), engine="pycryptodome")))
    _container_arrays(smk)
    write_container(container, records=make_records(n=10))  # replaced by another valid container
    with pytest.raises(ContainerMismatchError):
        _container_arrays(smk)


def test_cli_verify_checks_every_record_dvc_lock_and_the_decrypt_record(tmp_path):
    project = tmp_path / "project"
    (project / "data/encrypted").mkdir(parents=True)
    container = write_container(project / "data/encrypted/chest_xray.cmed")
    kf = key_file(tmp_path)
    import hashlib

    md5 = hashlib.md5(container.read_bytes()).hexdigest()
    (project / "dvc.lock").write_text(textwrap.dedent(f"""\
        schema: '2.0'
        stages:
          encrypt@chest_xray:
            outs:
            - path: data/encrypted/chest_xray.cmed
              hash: md5
              md5: {md5}
              size: {container.stat().st_size}
        """))
    r = cli("verify", "data/encrypted/chest_xray.cmed", "--key-file", kf, cwd=project)
    assert r.returncode == 0, r.stderr
    assert "all 5 records verified" in r.stdout and f"md5 {md5} matches dvc.lock" in r.stdout
    (project / "results/chest_xray").mkdir(parents=True)
    with ContainerReader(container, KEK) as reader:
        (project / "results/chest_xray/container_verified.json").write_text(json.dumps(verification_record(reader)))
    r = cli("verify", "data/encrypted/chest_xray.cmed", "--key-file", kf, cwd=project)
    assert r.returncode == 0 and "what the decrypt rule verified" in r.stdout, r.stdout + r.stderr

    older = write_container(tmp_path / "older.cmed")  # rollback: valid, but not what DVC and the rule recorded
    os.replace(older, container)
    r = cli("verify", "data/encrypted/chest_xray.cmed", "--key-file", kf, cwd=project)
    assert r.returncode == 1 and "all 5 records verified" in r.stdout
    assert r.stdout.count("MISMATCH") == 2 and "mismatch" in r.stderr

    data = bytearray(container.read_bytes())
    data[layout(container)[2][4]["tag"]] ^= 1
    container.write_bytes(bytes(data))
    r = cli("verify", "data/encrypted/chest_xray.cmed", "--key-file", kf, cwd=project)
    assert r.returncode == 1 and "RecordAuthenticationError" in r.stderr and "record 4" in r.stderr
    assert "Traceback" not in r.stderr


# --------------------------------------------------------------------------- 3. hostile header values


def _with_meta(path, meta: bytes):
    """The container at ``path`` with its header metadata replaced (length field fixed up; not re-authenticated)."""
    data = path.read_bytes()
    (m,) = struct.unpack_from(">I", data, 34)
    path.write_bytes(data[:34] + struct.pack(">I", len(meta)) + meta + data[38 + m :])


def _with_params(path, params: bytes):
    """The container at ``path`` with its KDF parameters replaced (key block lengths fixed up)."""
    h = read_header(path)
    data = path.read_bytes()
    kb_start = len(h.raw)
    (kb_len,) = struct.unpack_from(">I", data, kb_start)
    body = data[kb_start + 4 : kb_start + 4 + kb_len]
    (p_len,) = struct.unpack_from(">H", body, 9)
    new_body = body[:9] + struct.pack(">H", len(params)) + params + body[11 + p_len :]
    path.write_bytes(data[:kb_start] + struct.pack(">I", len(new_body)) + new_body + data[kb_start + 4 + kb_len :])


META = {"dataset": '"chest_xray"', "shape": "[8,8]", "splits": '["test","train","val"]'}
HOSTILE_META = {
    "shape 1e999": {"shape": "[1e999,8]"}, "shape Infinity": {"shape": "[Infinity,8]"}, "shape NaN": {"shape": "[NaN,8]"},
    "shape -Infinity": {"shape": "[8,-Infinity]"}, "shape float": {"shape": "[8.0,8]"}, "shape huge": {"shape": f"[{10**400},8]"},
    "shape 2^64": {"shape": f"[{2**64},8]"}, "shape too many digits": {"shape": "[" + "9" * 5000 + ",8]"},
    "shape zero": {"shape": "[0,8]"}, "shape negative": {"shape": "[-8,8]"}, "shape bools": {"shape": "[true,true]"},
    "shape strings": {"shape": '["8","8"]'}, "shape null": {"shape": "null"}, "shape three": {"shape": "[8,8,8]"},
    "shape object": {"shape": '{"h":8}'}, "shape nested": {"shape": "[[8],[8]]"}, "shape deep": {"shape": "[" * 5000 + "]" * 5000},
    "dataset number": {"dataset": "5"}, "dataset list": {"dataset": '["x"]'}, "dataset empty": {"dataset": '""'},
    "dataset long": {"dataset": '"' + "x" * 5000 + '"'}, "dataset Infinity": {"dataset": "Infinity"},
    "splits not a list": {"splits": '"test"'}, "splits unsorted": {"splits": '["train","test","val"]'},
    "splits duplicate": {"splits": '["test","test","val"]'}, "splits numbers": {"splits": "[1,2,3]"},
    "splits deep": {"splits": "[" * 3000 + "]" * 3000}, "missing key": {"splits": None}, "extra key": {"x": "1"},
    "not canonical (whitespace)": {"shape": "[8, 8]"}, "not canonical (escape)": {"dataset": '"chest\\u005fxray"'},
}


def _meta_bytes(change: dict) -> bytes:
    fields = {**META, **change}
    return ("{" + ",".join(f'"{k}":{v}' for k, v in sorted(fields.items()) if v is not None) + "}").encode()


@pytest.mark.parametrize("case", list(HOSTILE_META))
def test_hostile_header_metadata_is_a_format_error_everywhere(tmp_path, case):
    path = write_container(tmp_path / "d.cmed")
    _with_meta(path, _meta_bytes(HOSTILE_META[case]))
    for read in (read_header, inspect, lambda p: decrypt_to_arrays(p, KEK), lambda p: decrypt_to_arrays(p, KEK, splits=("test",))):
        with pytest.raises(ContainerFormatError, match="header metadata is not valid|do not fit"):
            read(path)


def test_the_untouched_metadata_is_accepted(tmp_path):
    path = write_container(tmp_path / "d.cmed")
    _with_meta(path, _meta_bytes({}))
    decrypt_to_arrays(path, KEK)  # the builder above is right: only the changed values are refused


GOOD_PARAMS = {"kdf": '"scrypt"', "n": "1024", "p": "1", "r": "8"}
HOSTILE_PARAMS = {
    "n 1e999": {"n": "1e999"}, "n Infinity": {"n": "Infinity"}, "n NaN": {"n": "NaN"}, "n float": {"n": "1024.0"},
    "n string": {"n": '"1024"'}, "n bool": {"n": "true"}, "n huge": {"n": str(2**4000)}, "n not a power of two": {"n": "1000"},
    "n one": {"n": "1"}, "n 2^21": {"n": str(2**21)}, "r zero": {"r": "0"}, "r 17": {"r": "17"}, "p 5": {"p": "5"},
    "p negative": {"p": "-1"}, "issue: n 2^19 r 15 p 4": {"n": str(2**19), "r": "15", "p": "4"},
    "memory above 256 MiB": {"n": str(2**19), "r": "8"}, "work above 2^21": {"n": str(2**18), "r": "8", "p": "2"},
    "RFC 7914: n >= 2^(16 r)": {"n": str(2**16), "r": "1"},
    "documented old maximum": {"n": str(2**20), "r": "16"}, "salt number": {"salt": "5"}, "salt short": {"salt": '"abcd"'},
    "salt not hex": {"salt": '"' + "zz" * 16 + '"'}, "kdf other": {"kdf": '"argon2"'}, "missing n": {"n": None},
    "extra key": {"q": "1"}, "deep": {"n": "[" * 1900 + "]" * 1900}, "not canonical": {"n": " 1024"},
}


def _params_bytes(change: dict, salt: str) -> bytes:
    fields = {**GOOD_PARAMS, "salt": f'"{salt}"', **change}
    return ("{" + ",".join(f'"{k}":{v}' for k, v in sorted(fields.items()) if v is not None) + "}").encode()


@pytest.fixture(scope="module")
def passphrase_container(tmp_path_factory):
    path = tmp_path_factory.mktemp("pp") / "p.cmed"
    write_container(path, kek=Passphrase("correct horse battery", n=1024))
    return path.read_bytes(), inspect(path)["kdf"]["salt"]


@pytest.mark.parametrize("case", list(HOSTILE_PARAMS))
def test_hostile_kdf_parameters_are_a_format_error_before_any_derivation(tmp_path, passphrase_container, case):
    data, salt = passphrase_container
    path = tmp_path / "p.cmed"
    path.write_bytes(data)
    _with_params(path, _params_bytes(HOSTILE_PARAMS[case], salt))
    kek = Passphrase("correct horse battery", n=1024)
    for read in (read_header, inspect, lambda p: decrypt_to_arrays(p, kek)):
        with pytest.raises(ContainerFormatError, match="key block parameters are not valid"):
            read(path)
    assert kek._cache == {}  # nothing was derived


def test_the_untouched_kdf_parameters_are_accepted(tmp_path, passphrase_container):
    data, salt = passphrase_container
    path = tmp_path / "p.cmed"
    path.write_bytes(data)
    _with_params(path, _params_bytes({}, salt))
    decrypt_to_arrays(path, Passphrase("correct horse battery"))


def test_raw_key_blocks_have_no_parameters(tmp_path):
    path = write_container(tmp_path / "d.cmed")
    _with_params(path, b'{"n":1e999}')
    with pytest.raises(ContainerFormatError, match="key block parameters are not valid"):
        inspect(path)


@pytest.mark.parametrize("case", ["shape 1e999", "shape Infinity", "shape deep"])
def test_cli_inspect_and_verify_of_a_hostile_header_is_one_line_no_traceback(tmp_path, case):
    path = write_container(tmp_path / "d.cmed")
    _with_meta(path, _meta_bytes(HOSTILE_META[case]))
    for args in (("inspect", path), ("verify", path, "--key-file", key_file(tmp_path))):
        r = cli(*args, cwd=tmp_path)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.count("\n") == 1 and "ContainerFormatError" in r.stderr


def test_cli_inspect_prints_strict_json(tmp_path):
    path = write_container(tmp_path / "d.cmed")
    r = cli("inspect", path)
    assert r.returncode == 0

    def refuse(name):
        raise ValueError(name)

    info = json.loads(r.stdout, parse_constant=refuse)
    assert info[0]["split_counts"] == {"test": 2, "train": 2, "val": 1}


def test_cli_errors_on_missing_files_are_one_line(tmp_path):
    r = cli("inspect", tmp_path / "absent.cmed")
    assert r.returncode == 1 and "Traceback" not in r.stderr and "absent.cmed" in r.stderr


# --------------------------------------------------------------------------- 4. cost ceiling


def test_passphrase_costs_outside_the_bounds_are_refused_when_writing():
    for cost in ({"n": 2**19, "r": 8}, {"n": 2**18, "r": 8, "p": 2}, {"n": 2**20, "r": 16}, {"n": 1000},
                 {"n": 2**16, "r": 1}, {"n": 2**20, "r": 1, "p": 2}):  # RFC 7914: n < 2^(16 r)
        with pytest.raises(InvalidKeyError, match="outside the bounds"):
            Passphrase("correct horse battery", **cost)


# Peak memory of this process image from /proc (ru_maxrss would carry the pytest parent's peak over fork + exec).
_PEAK = "int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])"
_OPEN_COST = """
import sys, time
sys.path.insert(0, {src!r})
from cryptomed.crypto import Passphrase, WrongKeyError, decrypt_to_arrays
before = {peak}
t0 = time.perf_counter()
try:
    decrypt_to_arrays({path!r}, Passphrase("not the right passphrase"))
except WrongKeyError:
    pass
print(time.perf_counter() - t0, {peak} - before)
"""


@pytest.mark.parametrize("cost", [{"n": 2**18, "r": 8, "p": 1}, {"n": 2**20, "r": 2, "p": 1}, {"n": 2**16, "r": 8, "p": 4}])
def test_the_documented_maximum_cost_works_within_the_ceiling(tmp_path, cost):
    """The worst header a reader accepts: ~256 MiB and about 1-2 s on this 2-core VM before the key is checked.

    Measured in a fresh process (peak RSS, wall time); the bounds asserted leave room for a busy machine.
    """
    kek = Passphrase("correct horse battery", **cost)
    path = write_container(tmp_path / "p.cmed", kek=kek)
    assert inspect(path)["kdf"]["n"] == cost["n"]
    decrypt_to_arrays(path, kek)  # the documented maximum works (cached derivation: same salt, same cost)
    r = subprocess.run([sys.executable, "-c", _OPEN_COST.format(src=str(REPO / "src"), path=str(path), peak=_PEAK)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    seconds, extra_kib = map(float, r.stdout.split())
    extra_mib = extra_kib / 1024
    print(f"open cost {cost}: {seconds:.2f} s, +{extra_mib:.0f} MiB peak RSS")
    expected_mib = 128 * cost["n"] * cost["r"] / 2**20  # scrypt's V array: the measurement sees it
    assert 0.9 * expected_mib < extra_mib < 256 + 40, extra_mib
    assert seconds < 6, seconds  # ~1.0-1.3 s measured on an idle 2-core VM


# --------------------------------------------------------------------------- 5. smaller findings


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o666])
def test_group_or_world_accessible_key_files_are_refused_with_the_fix(tmp_path, mode):
    kf = key_file(tmp_path, mode=mode)
    for read in (read_key_file, load_key, load_kek):
        with pytest.raises(InvalidKeyError, match=f"mode 0{mode:o}.*chmod 600 {kf}"):
            read(kf)
    kf.chmod(0o600)
    assert read_key_file(kf) == KEY and load_key(kf) == KEY


def test_cli_refuses_a_readable_key_file(tmp_path):
    path = write_container(tmp_path / "d.cmed")
    kf = key_file(tmp_path, mode=0o644)
    r = cli("verify", path, "--key-file", kf, cwd=tmp_path)
    assert r.returncode == 1 and "chmod 600" in r.stderr and "Traceback" not in r.stderr and KEY.hex() not in r.stderr


@pytest.mark.parametrize("value", [" ".join(f"{b:02x}" for b in KEY), KEY.hex() + "\n", " " + KEY.hex(), KEY.hex() + "00",
                                   KEY.hex()[:-1], "0x" + KEY.hex()[2:], KEY.hex()[:-1] + "g"])
def test_the_key_environment_variable_is_exactly_64_hex_digits(monkeypatch, value):
    monkeypatch.setenv("CRYPTOMED_KEY", value)
    with pytest.raises(InvalidKeyError, match="exactly 64 hex digits") as exc:
        load_kek(None)
    assert KEY.hex() not in str(exc.value)
    monkeypatch.setenv("CRYPTOMED_KEY", KEY.hex().upper())
    assert load_kek(None).derive({}) == KEY


@pytest.mark.parametrize("content", ["{k}\n", "{k}", "{k}\r\n"])
def test_key_files_may_end_in_one_newline(tmp_path, content):
    kf = tmp_path / "k.key"
    kf.write_bytes(content.format(k=KEY.hex()).encode())
    kf.chmod(0o600)
    assert read_key_file(kf) == KEY
    kf.write_text(f"{KEY.hex()} \n")
    with pytest.raises(InvalidKeyError):
        read_key_file(kf)


def test_unauthenticated_text_is_escaped_in_messages(tmp_path):
    images, labels, _, splits = make_records(n=5)
    ids = np.array([f"\x1b[31m{i}\x07\u202e" for i in range(5)])  # ANSI colour, bell, right-to-left override
    path = write_container(tmp_path / "d.cmed", records=(images, labels, ids, splits))
    data = bytearray(path.read_bytes())
    data[layout(path)[2][3]["tag"]] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(RecordAuthenticationError) as exc:
        decrypt_to_arrays(path, KEK)
    message = str(exc.value)
    assert "\x1b" not in message and "\x07" not in message and "\u202e" not in message
    assert r"\x1b[31m3\x07\u202e" in message
    r = cli("verify", path, "--key-file", key_file(tmp_path), cwd=tmp_path)
    assert r.returncode == 1 and "\x1b" not in r.stderr + r.stdout and r"\x1b[31m3" in r.stderr


def test_rotate_verifies_the_header_first_and_records_when_asked(tmp_path):
    path = write_container(tmp_path / "d.cmed")
    data = bytearray(path.read_bytes())
    data[layout(path)[2][2]["tag"]] ^= 1
    path.write_bytes(bytes(data))
    before = path.read_bytes()
    with pytest.raises(RecordAuthenticationError, match="record 2"):
        rotate(path, KEK, OTHER_KEK, verify_records=True)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["d.cmed"]
    r = cli("rotate", path, "--old-key-file", key_file(tmp_path), "--new-key-file", key_file(tmp_path / "..", OTHER_KEK.derive({})),
            "--verify-records")
    assert r.returncode == 1 and "RecordAuthenticationError" in r.stderr and path.read_bytes() == before

    header_edit = write_container(tmp_path / "h.cmed")
    data = bytearray(header_edit.read_bytes())
    data[layout(header_edit)[1]["split_table"]] ^= 1
    header_edit.write_bytes(bytes(data))
    before = header_edit.read_bytes()
    with pytest.raises(HeaderAuthenticationError):
        rotate(header_edit, KEK, OTHER_KEK)
    assert header_edit.read_bytes() == before


def test_every_error_is_a_crypto_error():
    for error in (ContainerFormatError, ContainerMismatchError, HeaderAuthenticationError, InvalidKeyError,
                  RecordAuthenticationError, WrongKeyError):
        assert issubclass(error, CryptoError)


def test_unreadable_verification_record_or_an_absent_split_is_a_clear_error(tmp_path):
    from cryptomed import CryptomedError

    container = write_container(tmp_path / "d.cmed", records=make_records(n=10))
    kf = key_file(tmp_path)
    verified = _decrypt_rule(tmp_path, container, kf)
    with pytest.raises(CryptomedError, match="no record of split"):
        _evaluate_reads(container, kf, verified, splits=("holdout",))
    verified.write_text("{not json")
    with pytest.raises(ContainerMismatchError, match="unreadable"):
        _evaluate_reads(container, kf, verified)


def test_a_container_shortened_while_it_is_read_is_a_format_error(tmp_path):
    """content_digest and rotate read the records section in chunks through one descriptor: a file truncated
    under them is named, not hashed or copied short."""
    path = write_container(tmp_path / "c.cmc")
    with ContainerReader(path, KEK) as reader:
        full = reader.content_digest()
        os.truncate(path, reader.header.records_start + 3)
        with pytest.raises(ContainerFormatError, match="changed while it was read"):
            reader.content_digest()
    assert len(full) == 64
