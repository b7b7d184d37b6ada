"""Fuzz the container reader with >= 10,000 seeded random mutations of valid containers.

Two kinds of case, alternating: byte-level mutations (flip, set, truncate, insert, delete, duplicate) of a
raw-key container, and structure-aware mutations of the JSON fields (header metadata, KDF parameters of a
passphrase container, record AADs): non-finite and huge numbers, wrong types, nesting depth, long values, deleted,
added and duplicated keys, with the framing lengths fixed up (so the reader gets past the structure checks to the
value checks) or kept; and record AADs mutated and re-encrypted with the data key (json-auth: what only a key holder
could write, for the checks made after a tag verifies).  Every case must end in a cryptomed CryptoError (counted by type) or, when the mutation
happens to change nothing that matters, in the original pixels (whole and test-split reads).  Any other exception
is a bug: it is printed with the seed and what reproduces it, and the script exits 1.

    python benchmarks/fuzz_container.py [--cases 10000] [--seed 0] [--kinds bytes,json,json-auth]
"""

import argparse
import collections
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from crypto_helpers import (  # noqa: E402
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

from cryptomed.crypto import ContainerReader, Passphrase  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kinds", default="bytes,json,json-auth",
                    help="comma-separated, alternating: bytes, json, json-auth (a record's AAD mutated and the record "
                         "re-encrypted with the data key: the reader's checks after authentication)")
    args = ap.parse_args()
    kinds = args.kinds.split(",")
    records = make_records(n=4, shape=(6, 6))
    tmp = Path(tempfile.mkdtemp(prefix="cryptomed-fuzz-"))
    passphrase = Passphrase("correct horse battery", n=2**10)
    originals = {
        "raw": (write_container(tmp / "original.cmed", records=records, rng=seeded_rng(args.seed)).read_bytes(), KEK),
        "scrypt": (write_container(tmp / "original_pp.cmed", records=records, kek=passphrase,
                                   rng=seeded_rng(args.seed + 1)).read_bytes(), passphrase),
    }
    with ContainerReader(tmp / "original.cmed", KEK) as reader:
        dek, aad_prefix = reader._dek, reader._aad_prefix
    rnd = random.Random(args.seed)
    outcomes, t0, failures = collections.Counter(), time.perf_counter(), 0
    for case in range(args.cases):
        kind = kinds[case % len(kinds)]
        try:
            if kind == "bytes":
                original, kek = originals["raw"]
                ops = [(rnd.choice(MUTATIONS), rnd.randrange(len(original) + 8), rnd.randrange(256))
                       for _ in range(rnd.randint(1, 4))]
                what, data = f"ops={ops}", mutate(original, ops)
            elif kind == "json-auth":
                (original, kek), what = originals["raw"], ""
                data, what = json_mutate_authenticated(original, dek, aad_prefix, rnd)
            else:
                original, kek = originals[rnd.choice(("raw", "scrypt"))]
                data, what = original, []
                for _ in range(rnd.randint(1, 3)):
                    data, described = json_mutate(data, rnd)
                    what.append(described)
            outcomes[(kind, read_mutated(tmp / "mutated.cmed", data, records[0], kek=kek,
                                         original_splits=records[3]))] += 1
        except Exception:  # noqa: BLE001 - that is what we are hunting
            failures += 1
            print(f"case {case} (seed {args.seed}, {kind}) {what}:\n{traceback.format_exc()}", file=sys.stderr)
    elapsed = time.perf_counter() - t0
    print(f"{args.cases} mutated containers in {elapsed:.1f} s ({', '.join(kinds)}); "
          f"containers {len(originals['raw'][0])} and {len(originals['scrypt'][0])} bytes")
    for (kind, name), count in sorted(outcomes.items()):
        print(f"  {kind:9s} {name:28s} {count}")
    print(f"  {'other exceptions (bugs)':38s} {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
