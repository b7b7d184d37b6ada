"""AES-GCM speed of cryptomed against the paper and against OpenSSL, measured side by side in one run.

Prints, for both engines (PyCryptodome = reference, OpenSSL via `cryptography`):
  * per-image encrypt / decrypt time through the real container code (fresh nonce, associated data,
    label + pixels) at 128x128 and 224x224, and the ratio to the paper's 12 ms / 15 ms;
  * throughput at 1 MiB messages against `openssl speed -evp aes-256-gcm` run in the same process tree;
  * container encrypt and decrypt throughput with 2 worker processes against 1 (target >= 1.8x on 2 cores),
    at 64x64 (the default pipeline's size) and 128x128, each beside a control: pure-Python work through the
    same fork helper, which shows the speed-up the machine itself gives at that moment.
Targets: per image >= 500x faster than the paper; 1 MiB throughput within 2x of `openssl speed`.

    python benchmarks/crypto.py [--images 3000] [--repeats 3] [--pairs 9] [--sections per-image mib scaling]
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
from cryptomed.crypto.parallel import run_spans  # noqa: E402

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


def _control_span(job, start, stop):
    """Pure-Python work with no shared state: what 2 processes can give at best on this machine right now."""
    x = 0
    for i in range(start, stop):
        for j in range(job):
            x += (i * j) & 7
    return x


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    del out  # outside the timing: freeing the decrypted arrays is the caller's business
    return seconds


def scaling(engine, size, n, repeats, tmp):
    """Encrypt and decrypt wall time of a container with 1 and 2 worker processes, paired with a control.

    Each repeat runs, back to back: encrypt and decrypt with 1 process and with 2
    processes, then the control (pure-Python work of about the same length through the
    same fork helper) with 1 and with 2; every other repeat runs 2 before 1, so neither
    always goes first.  On a machine whose speed drifts, the ratio of a pair run back to
    back cancels slow phases, and the control says what speed-up the machine gave at that
    moment.  Returns the per-repeat speed-ups (1-process time over 2-process time) for
    encrypt, decrypt, both, and the control.
    """
    data = dataset(n, size)
    out = {"encrypt": [], "decrypt": [], "both": [], "control": []}
    path = tmp / "s.cmed"
    units = None
    for repeat in range(repeats):
        t, order = {}, (1, 2) if repeat % 2 == 0 else (2, 1)
        for workers in order:
            path.unlink(missing_ok=True)  # freeing the old file's pages is not encryption work
            t["encrypt", workers] = _timed(lambda: encrypt_records(path, "bench", *data, KEK, engine=engine, workers=workers))
            t["decrypt", workers] = _timed(lambda: decrypt_to_arrays(path, KEK, engine=engine, workers=workers))
        if units is None:  # size the control like the crypto work (1-process time)
            probe = _timed(lambda: _control_span(100, 0, n))
            units = max(1, int(100 * (t["encrypt", 1] + t["decrypt", 1]) / probe))
        for workers in order:
            t["control", workers] = _timed(lambda: run_spans(_control_span, units, n, workers, "control"))
        for part in ("encrypt", "decrypt", "control"):
            out[part].append(t[part, 1] / t[part, 2])
        out["both"].append((t["encrypt", 1] + t["decrypt", 1]) / (t["encrypt", 2] + t["decrypt", 2]))
    return out


def _quartiles(values):
    q1, med, q3 = np.percentile(values, [25, 50, 75])
    return f"{med:.2f}x [{q1:.2f}, {q3:.2f}]"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=3000, help="images per measurement")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of the per-image and 1 MiB measurements")
    ap.add_argument("--pairs", type=int, default=9, help="paired 1-vs-2-process runs per scaling measurement")
    ap.add_argument("--sections", nargs="+", choices=("per-image", "mib", "scaling"),
                    default=["per-image", "mib", "scaling"])
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cryptomed-bench-"))
    print(f"machine: {os.cpu_count()} CPUs; {subprocess.run(['openssl', 'version'], capture_output=True, text=True).stdout.strip()}")
    print(f"paper: {PAPER_ENCRYPT_S * 1e3:.0f} ms encrypt / {PAPER_DECRYPT_S * 1e3:.0f} ms decrypt per image\n")
    if "per-image" in args.sections:
        per_image_section(args, tmp)
    if "mib" in args.sections:
        mib_section(args)
    if "scaling" in args.sections:
        scaling_section(args, tmp)


def per_image_section(args, tmp):
    print("per image, one process (median inside the cipher call, best of repeats):")
    print(f"{'engine':14s}{'size':>9s}{'encrypt us':>12s}{'decrypt us':>12s}{'x paper enc':>13s}{'x paper dec':>13s}  >=500x")
    for engine in ("pycryptodome", "openssl"):
        for size in (128, 224):
            enc, dec = per_image(engine, size, args.images, args.repeats, tmp)
            ok = min(PAPER_ENCRYPT_S / enc, PAPER_DECRYPT_S / dec) >= 500
            print(f"{engine:14s}{f'{size}x{size}':>9s}{enc * 1e6:12.1f}{dec * 1e6:12.1f}"
                  f"{PAPER_ENCRYPT_S / enc:13.0f}{PAPER_DECRYPT_S / dec:13.0f}  {'yes' if ok else 'NO'}")


def mib_section(args):
    ref = openssl_speed()
    print(f"\n1 MiB messages (encrypt, one thread): openssl speed -evp aes-256-gcm = {ref / 1e6:.0f} MB/s")
    for engine in ("pycryptodome", "openssl"):
        mbs = mib_throughput(engine, args.repeats)
        print(f"  {engine:14s}{mbs / 1e6:8.0f} MB/s   openssl speed / this = {ref / mbs:.2f}x  "
              f"(target <= 2x: {'yes' if ref / mbs <= 2 else 'NO'})")


def scaling_section(args, tmp):
    print(f"\nworker processes: container encrypt / decrypt with 2 processes against 1, {args.pairs} pairs run back to "
          "back,\neach with a control pair (pure-Python work of the same length through the same fork helper);"
          "\nmedian speed-up [quartiles]; target >= 1.8x on 2 cores:")
    print(f"{'engine':14s}{'images':>16s}{'encrypt':>22s}{'decrypt':>22s}{'both':>22s}{'control':>22s}"
          f"{'both/control':>14s}  >=1.8x")
    for size, n in ((64, 2 * args.images), (128, args.images)):
        for engine in ("pycryptodome", "openssl"):
            r = scaling(engine, size, n, args.pairs, tmp)
            both = float(np.median(r["both"]))
            rel = float(np.median(np.array(r["both"]) / np.array(r["control"])))
            print(f"{engine:14s}{f'{n} x {size}x{size}':>16s}" + "".join(f"{_quartiles(r[k]):>22s}" for k in
                  ("encrypt", "decrypt", "both", "control")) + f"{rel:14.2f}  {'yes' if both >= 1.8 else 'NO'}",
                  flush=True)


if __name__ == "__main__":
    main()
