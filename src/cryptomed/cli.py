"""Keys and sharing from the command line: ``python -m cryptomed`` (or the ``cryptomed`` console script).

    cryptomed keygen .secrets/new.key                      new random AES-256 KEK file (0600), prints its key id
    cryptomed inspect data/encrypted/*.cmed                public header facts as JSON (no key needed)
    cryptomed rotate data/encrypted/*.cmed --old-key-file .secrets/cryptomed.key --new-key-file .secrets/new.key
    cryptomed rotate data/encrypted/*.cmed --old-key-file OLD --new-passphrase-env MY_PASSPHRASE

    cryptomed audit-remote ../cryptomed-dvc-remote --images data/preprocessed/*/images.npz --key-file .secrets/cryptomed.key
    cryptomed pull                                          dvc pull + check + mark outputs up to date for Snakemake
    cryptomed docs [--check]                                result tables in README.md and docs/*.md from results/

``rotate`` re-wraps each container's data key under the new KEK; image records are not
re-encrypted (copied byte for byte) and the file's modification time is kept, so
Snakemake does not rerun anything.  Key bytes and passphrases are never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .crypto import CryptoError, Passphrase, RawKey, generate_key_file, inspect, key_id, read_key_file, rotate


def _kek(args, which: str):
    key_file, env = getattr(args, f"{which}_key_file"), getattr(args, f"{which}_passphrase_env")
    if bool(key_file) == bool(env):
        raise SystemExit(f"cryptomed rotate: give exactly one of --{which}-key-file or --{which}-passphrase-env")
    if key_file:
        return RawKey(read_key_file(key_file), description=key_file)
    if not os.environ.get(env):
        raise SystemExit(f"cryptomed rotate: environment variable {env} is not set")
    return Passphrase(os.environ[env], description=f"${env}")


def _audit(args) -> int:
    from .data import load_arrays
    from .sharing import audit_remote

    if not os.path.isdir(args.remote):
        raise SystemExit(f"cryptomed audit-remote: {args.remote} is not a directory")
    images = [im for npz in args.images for im in load_arrays(npz)["images"]]
    result = audit_remote(args.remote, images, [read_key_file(k) for k in args.key_file])
    print(f"{result['objects']} objects, {result['bytes']} bytes scanned against {result['images']} images "
          f"({result['image_blocks_indexed']} informative 32-byte blocks) and {result['key_forms']} key spellings")
    for leak in result["leaks"][:20]:
        print(f"LEAK {leak}")
    if result["leaks"]:
        print(f"{len(result['leaks'])} leaks", file=sys.stderr)
        return 1
    print("no plaintext image window and no key material found")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["docs"]:  # its own parser (cryptomed.docs)
        from .docs import main as docs_main

        return docs_main(argv[1:])
    ap = argparse.ArgumentParser(prog="cryptomed", description="cryptomed key management")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("keygen", help="create a new random AES-256 key file (mode 0600); never overwrites")
    p.add_argument("path")
    p = sub.add_parser("inspect", help="print the public header of containers as JSON")
    p.add_argument("containers", nargs="+")
    p = sub.add_parser("rotate", help="re-wrap containers' data keys under a new key-encryption key")
    p.add_argument("containers", nargs="+")
    for which in ("old", "new"):
        p.add_argument(f"--{which}-key-file")
        p.add_argument(f"--{which}-passphrase-env", metavar="VAR", help="name of an environment variable holding the passphrase")
    p.add_argument("--touch", action="store_true", help="update modification times (default: keep them)")
    p = sub.add_parser("audit-remote", help="scan a DVC remote for plaintext image windows and key material")
    p.add_argument("remote", help="the remote's directory")
    p.add_argument("--images", nargs="+", required=True, metavar="NPZ", help="preprocessed images.npz files")
    p.add_argument("--key-file", nargs="*", default=[], help="key files whose bytes must not be in the remote")
    sub.add_parser("pull", help="dvc pull, check against dvc.lock, mark pulled outputs up to date for Snakemake")
    sub.add_parser("docs", help="regenerate (or --check) the result blocks of README.md and docs/*.md from results/")
    args = ap.parse_args(argv)
    try:
        if args.command == "keygen":
            if os.path.exists(args.path):
                raise SystemExit(f"cryptomed keygen: {args.path} exists; refusing to overwrite a key")
            print(f"created {args.path}, key id {key_id(generate_key_file(args.path)).hex()}")
        elif args.command == "inspect":
            print(json.dumps([inspect(p) for p in args.containers], indent=2))
        elif args.command == "audit-remote":
            return _audit(args)
        elif args.command == "pull":
            from .sharing import PullError, pull

            try:
                result = pull()
            except PullError as exc:
                print(f"cryptomed pull: {exc}", file=sys.stderr)
                return 1
            print(f"pulled; never-pushed plaintext not present: {len(result['missing_plaintext'])} paths; "
                  "outputs marked up to date (snakemake --touch)")
        else:
            old, new = _kek(args, "old"), _kek(args, "new")
            for path in args.containers:
                old_id, new_id = rotate(path, old, new, keep_mtime=not args.touch)
                print(f"{path}: data key re-wrapped, KEK id {old_id} -> {new_id}")
    except CryptoError as exc:
        print(f"cryptomed {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0
