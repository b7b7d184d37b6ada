"""The key-management CLI, run as a user would (a subprocess)."""

import json
import os
import subprocess
import sys

import numpy as np
from conftest import REPO
from crypto_helpers import KEY, make_records, write_container

from cryptomed.crypto import Passphrase, RawKey, decrypt_to_arrays, read_key_file


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "cryptomed", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src"), **(env or {})})


def test_keygen_inspect_rotate(tmp_path):
    old, new = tmp_path / "old.key", tmp_path / "new.key"
    old.write_text(KEY.hex())
    old.chmod(0o600)
    r = cli("keygen", new)
    assert r.returncode == 0 and "key id" in r.stdout and (new.stat().st_mode & 0o777) == 0o600
    new_key = read_key_file(new)
    assert new_key.hex() not in r.stdout + r.stderr
    assert cli("keygen", new).returncode != 0  # never overwrites

    records = make_records()
    a = write_container(tmp_path / "a.cmed", records=records)
    b = write_container(tmp_path / "b.cmed", dataset="brain_mri", records=records)
    r = cli("inspect", a, b)
    assert r.returncode == 0 and [i["dataset"] for i in json.loads(r.stdout)] == ["chest_xray", "brain_mri"]

    r = cli("rotate", a, b, "--old-key-file", old, "--new-key-file", new)
    assert r.returncode == 0, r.stderr
    for path in (a, b):
        np.testing.assert_array_equal(decrypt_to_arrays(path, RawKey(new_key))[0]["images"], records[0])

    r = cli("rotate", a, "--old-key-file", new, "--new-passphrase-env", "NEW_PASS", env={"NEW_PASS": "a long passphrase"})
    assert r.returncode == 0 and "a long passphrase" not in r.stdout + r.stderr
    decrypt_to_arrays(a, Passphrase("a long passphrase"))


def test_rotate_with_the_wrong_key_exits_non_zero_and_says_so(tmp_path):
    wrong = tmp_path / "wrong.key"
    wrong.write_text(bytes(range(2, 34)).hex())
    wrong.chmod(0o600)
    a = write_container(tmp_path / "a.cmed")
    before = a.read_bytes()
    r = cli("rotate", a, "--old-key-file", wrong, "--new-key-file", wrong)
    assert r.returncode == 1 and "WrongKeyError" in r.stderr and str(a) in r.stderr
    assert a.read_bytes() == before
