"""Property-based fuzzing of the container reader: any mutation gives a clean CryptoError or the original data.

CI runs a few hundred cases; ``benchmarks/fuzz_container.py`` runs 10,000 or more.
"""

import os
import tempfile
from pathlib import Path

from crypto_helpers import MUTATIONS, make_records, mutate, read_mutated, seeded_rng, write_container
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("CRYPTOMED_FUZZ_EXAMPLES", "300"))
_DIR = Path(tempfile.mkdtemp(prefix="cryptomed-fuzz-"))
RECORDS = make_records(n=4, shape=(6, 6))
ORIGINAL = write_container(_DIR / "original.cmed", records=RECORDS, rng=seeded_rng(3)).read_bytes()

ops = st.lists(st.tuples(st.sampled_from(MUTATIONS), st.integers(0, 2**16), st.integers(0, 255)), min_size=1, max_size=4)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops)
def test_mutated_containers_fail_cleanly(ops):
    read_mutated(_DIR / "mutated.cmed", mutate(ORIGINAL, ops), RECORDS[0])


@settings(max_examples=max(50, EXAMPLES // 3), deadline=None)
@given(data=st.binary(max_size=600))
def test_arbitrary_bytes_fail_cleanly(data):
    read_mutated(_DIR / "arbitrary.cmed", data, RECORDS[0])


@settings(max_examples=max(50, EXAMPLES // 3), deadline=None)
@given(prefix_len=st.integers(0, len(ORIGINAL)), tail=st.binary(max_size=64))
def test_valid_prefix_then_garbage_fails_cleanly(prefix_len, tail):
    read_mutated(_DIR / "prefix.cmed", ORIGINAL[:prefix_len] + tail, RECORDS[0])
