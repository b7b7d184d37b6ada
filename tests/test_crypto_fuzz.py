"""Property-based fuzzing of the container reader: any mutation gives a clean CryptoError or the original data.

Byte-level mutations (flips, truncation, insertion...) and structure-aware mutations of the JSON fields (header
metadata, KDF parameters, record AADs: non-finite and huge numbers, wrong types, nesting depth, lengths), with the
framing lengths fixed up or not.  A read that succeeds must return the original pixels, and a filtered read
exactly the original test records.  CI runs a few hundred cases; ``benchmarks/fuzz_container.py`` runs 10,000+.
"""

import os
import random
import tempfile
from pathlib import Path

from crypto_helpers import (
    KEK,
    MUTATIONS,
    json_mutate,
    json_mutate_authenticated,
    make_records,
    mutate,
    read_mutated,
    seeded_rng,
    write_container,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cryptomed.crypto import ContainerReader, Passphrase

EXAMPLES = int(os.environ.get("CRYPTOMED_FUZZ_EXAMPLES", "300"))
_DIR = Path(tempfile.mkdtemp(prefix="cryptomed-fuzz-"))
RECORDS = make_records(n=4, shape=(6, 6))
ORIGINAL = write_container(_DIR / "original.cmed", records=RECORDS, rng=seeded_rng(3)).read_bytes()
PASSPHRASE = Passphrase("correct horse battery", n=2**10)
ORIGINAL_PP = write_container(_DIR / "original_pp.cmed", records=RECORDS, kek=PASSPHRASE, rng=seeded_rng(4)).read_bytes()

ops = st.lists(st.tuples(st.sampled_from(MUTATIONS), st.integers(0, 2**16), st.integers(0, 255)), min_size=1, max_size=4)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops)
def test_mutated_containers_fail_cleanly(ops):
    read_mutated(_DIR / "mutated.cmed", mutate(ORIGINAL, ops), RECORDS[0], original_splits=RECORDS[3])


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), passphrase=st.booleans(), rounds=st.integers(1, 3))
def test_hostile_json_values_fail_cleanly(seed, passphrase, rounds):
    rnd, data = random.Random(seed), ORIGINAL_PP if passphrase else ORIGINAL
    for _ in range(rounds):
        data, _ = json_mutate(data, rnd)
    read_mutated(_DIR / "json.cmed", data, RECORDS[0], kek=PASSPHRASE if passphrase else KEK,
                 original_splits=RECORDS[3])


with ContainerReader(_DIR / "original.cmed", KEK) as _reader:
    DEK, AAD_PREFIX = _reader._dek, _reader._aad_prefix


@settings(max_examples=max(50, EXAMPLES // 3), deadline=None)
@given(seed=st.integers(0, 2**32))
def test_hostile_authenticated_record_aads_fail_cleanly(seed):
    """A record AAD that a key holder wrote wrongly (its tag verifies): still a clean error, or the original data."""
    data, _ = json_mutate_authenticated(ORIGINAL, DEK, AAD_PREFIX, random.Random(seed))
    read_mutated(_DIR / "auth.cmed", data, RECORDS[0], original_splits=RECORDS[3])


@settings(max_examples=max(50, EXAMPLES // 3), deadline=None)
@given(data=st.binary(max_size=600))
def test_arbitrary_bytes_fail_cleanly(data):
    read_mutated(_DIR / "arbitrary.cmed", data, RECORDS[0])


@settings(max_examples=max(50, EXAMPLES // 3), deadline=None)
@given(prefix_len=st.integers(0, len(ORIGINAL)), tail=st.binary(max_size=64))
def test_valid_prefix_then_garbage_fails_cleanly(prefix_len, tail):
    read_mutated(_DIR / "prefix.cmed", ORIGINAL[:prefix_len] + tail, RECORDS[0])
