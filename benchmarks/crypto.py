"""AES-GCM speed of cryptomed against the paper and against OpenSSL, measured side by side in one run.

Prints, for both engines (PyCryptodome = reference, OpenSSL via `cryptography`):
  * per-image encrypt / decrypt time through the real container code (fresh nonce, associated data,
    label + pixels) at 128x128 and 224x224, and the ratio to the paper's 12 ms / 15 ms;
  * throughput at 1 MiB messages against `openssl speed -evp aes-256-gcm` run in the same process tree;
  * container encrypt + decrypt throughput with 2 worker processes against 1 (target >= 1.8x on 2 cores),
    at 64x64 (the default pipeline's size) and 128x128.
Targets: per image >= 500x faster than the paper; 1 MiB throughput within 2x of `openssl speed`.

    python benchmarks/crypto.py [--images 3000] [--repeats 3]
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from cryptomed.crypto import RawKey, decrypt_to_arrays, encrypt_records, get_engine  # noqa: E402

PAPER_ENCRYPT_S, PAPER_DECRYPT_S = 12e-3, 15e-3
KEK = RawKey(os.urandom(32), "benchmark key")


def dataset(n, size, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
    return images, rng.integers(0, 2, n), np.array([f"{i:06d}" for i in range(n)]), np.array(["test"] * n)


def per_image(engine, size, n, repeats, tmp):
    """Median per-record seconds inside the cipher call, best of ``repeats`` runs, one process."""
    data = dataset(n, size)
    enc, dec = [], []
    for _ in range(repeats):
        enc.append(np.median(encrypt_records(tmp / "b.cmed", "bench", *data, KEK, engine=engine)))
        dec.append(np.median(decrypt_to_arrays(tmp / "b.cmed", KEK, engine=engine)[1]))
    return min(enc), min(dec)


def mib_throughput(engine_name, repeats, seconds=1.0):
    engine, key, msg = get_engine(engine_name), os.urandom(32), os.urandom(1 << 20)
    best = 0.0
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            engine.encrypt(key, os.urandom(12), msg, b"")
            n += 1
        best = max(best, n * len(msg) / (time.perf_counter() - t0))
    return best


def openssl_speed():
    out = subprocess.run(["openssl", "speed", "-evp", "aes-256-gcm", "-bytes", str(1 << 20), "-seconds", "2"],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"^aes-256-gcm\s+([\d.]+)k", out, re.M | re.I)
    return float(m.group(1)) * 1000 if m else None


def scaling(engine, size, n, repeats, tmp):
    """Container encrypt + decrypt wall time with 1 and 2 worker processes, run alternately.

    Returns the best wall time per worker count and the median of the paired ratios (1 process / 2
    processes, each pair run back to back): on a noisy machine the pairing cancels slow phases.
    """
    data = dataset(n, size)
    wall, ratios = {1: [], 2: []}, []
    for _ in range(repeats):
        pair = {}
        for workers in (1, 2):
            (tmp / "s.cmed").unlink(missing_ok=True)  # freeing the old file's pages is not encryption work
            t0 = time.perf_counter()
            encrypt_records(tmp / "s.cmed", "bench", *data, KEK, engine=engine, workers=workers)
            decrypt_to_arrays(tmp / "s.cmed", KEK, engine=engine, workers=workers)
            pair[workers] = time.perf_counter() - t0
            wall[workers].append(pair[workers])
        ratios.append(pair[1] / pair[2])
    return {w: min(t) for w, t in wall.items()}, float(np.median(ratios))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=3000, help="images per measurement")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cryptomed-bench-"))
    print(f"machine: {os.cpu_count()} CPUs; {subprocess.run(['openssl', 'version'], capture_output=True, text=True).stdout.strip()}")
    print(f"paper: {PAPER_ENCRYPT_S * 1e3:.0f} ms encrypt / {PAPER_DECRYPT_S * 1e3:.0f} ms decrypt per image\n")
    print("per image, one process (median inside the cipher call, best of repeats):")
    print(f"{'engine':14s}{'size':>9s}{'encrypt us':>12s}{'decrypt us':>12s}{'x paper enc':>13s}{'x paper dec':>13s}  >=500x")
    for engine in ("pycryptodome", "openssl"):
        for size in (128, 224):
            enc, dec = per_image(engine, size, args.images, args.repeats, tmp)
            ok = min(PAPER_ENCRYPT_S / enc, PAPER_DECRYPT_S / dec) >= 500
            print(f"{engine:14s}{f'{size}x{size}':>9s}{enc * 1e6:12.1f}{dec * 1e6:12.1f}"
                  f"{PAPER_ENCRYPT_S / enc:13.0f}{PAPER_DECRYPT_S / dec:13.0f}  {'yes' if ok else 'NO'}")
    ref = openssl_speed()
    print(f"\n1 MiB messages (encrypt, one thread): openssl speed -evp aes-256-gcm = {ref / 1e6:.0f} MB/s")
    for engine in ("pycryptodome", "openssl"):
        mbs = mib_throughput(engine, args.repeats)
        print(f"  {engine:14s}{mbs / 1e6:8.0f} MB/s   openssl speed / this = {ref / mbs:.2f}x  "
              f"(target <= 2x: {'yes' if ref / mbs <= 2 else 'NO'})")
    print(f"\nworker processes: container encrypt + decrypt, 1 vs 2 processes run alternately {args.repeats} times:")
    for size, n in ((64, 2 * args.images), (128, args.images)):
        for engine in ("pycryptodome", "openssl"):
            wall, ratio = scaling(engine, size, n, args.repeats, tmp)
            mb = n * size * size * 2 / 1e6
            print(f"  {engine:14s}{n} x {size}x{size}: best 1 process {mb / wall[1]:6.0f} MB/s, 2 processes "
                  f"{mb / wall[2]:6.0f} MB/s; median paired speed-up {ratio:.2f}x "
                  f"(target >= 1.8x on 2 cores: {'yes' if ratio >= 1.8 else 'NO'})")

if __name__ == "__main__":
    main()
