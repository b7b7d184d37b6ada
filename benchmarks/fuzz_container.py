"""Fuzz the container reader with >= 10,000 seeded random mutations of a valid container.

Every case must end in a cryptomed CryptoError (counted by type) or, when the mutation happens to
be a no-op, in the original pixels.  Any other exception is a bug: it is printed with the seed and
the mutations that reproduce it, and the script exits 1.

    python benchmarks/fuzz_container.py [--cases 10000] [--seed 0]
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

from crypto_helpers import MUTATIONS, make_records, mutate, read_mutated, seeded_rng, write_container  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    records = make_records(n=4, shape=(6, 6))
    tmp = Path(tempfile.mkdtemp(prefix="cryptomed-fuzz-"))
    original = write_container(tmp / "original.cmed", records=records, rng=seeded_rng(args.seed)).read_bytes()
    rnd = random.Random(args.seed)
    outcomes, t0, failures = collections.Counter(), time.perf_counter(), 0
    for case in range(args.cases):
        ops = [(rnd.choice(MUTATIONS), rnd.randrange(len(original) + 8), rnd.randrange(256))
               for _ in range(rnd.randint(1, 4))]
        try:
            outcomes[read_mutated(tmp / "mutated.cmed", mutate(original, ops), records[0])] += 1
        except Exception:  # noqa: BLE001 - that is what we are hunting
            failures += 1
            print(f"case {case} (seed {args.seed}) ops={ops}:\n{traceback.format_exc()}", file=sys.stderr)
    elapsed = time.perf_counter() - t0
    print(f"{args.cases} mutated containers in {elapsed:.1f} s; container {len(original)} bytes")
    for name, count in outcomes.most_common():
        print(f"  {name:28s} {count}")
    print(f"  {'other exceptions (bugs)':28s} {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
