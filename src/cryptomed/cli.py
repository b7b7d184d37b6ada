"""Keys and sharing from the command line: ``python -m cryptomed`` (or the ``cryptomed`` console script).

    cryptomed keygen .secrets/new.key                      new random AES-256 KEK file (0600), prints its key id
    cryptomed inspect data/encrypted/*.cmed                public header facts as JSON (no key needed)
    cryptomed verify data/encrypted/*.cmed                 decrypt and verify every record; compare with dvc.lock's
                                                           md5 and the decrypt rule's record when present
    cryptomed rotate data/encrypted/*.cmed --old-key-file .secrets/cryptomed.key --new-key-file .secrets/new.key
    cryptomed rotate data/encrypted/*.cmed --old-key-file OLD --new-passphrase-env MY_PASSPHRASE

    cryptomed audit-remote ../cryptomed-dvc-remote --images data/preprocessed/*/images.npz --key-file .secrets/cryptomed.key
    cryptomed pull                                          dvc pull + check + mark outputs up to date for Snakemake
    cryptomed docs [--check]                                result tables in README.md and docs/*.md from results/
    cryptomed dataset check my_xrays                        what a custom dataset of params.yaml holds, and its problems
    cryptomed dataset check --format folder --path DIR      the same for a folder (or CSV) not yet in the config

``rotate`` re-wraps each container's data key under the new KEK; image records are not
re-encrypted (copied byte for byte) and the file's modification time is kept, so
Snakemake does not rerun anything.  Key bytes and passphrases are never printed.
Every CryptoError (and a missing or unreadable file) is one line on stderr and exit
status 1, never a traceback; text from a container is escaped before it is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .crypto import (
    CryptoError,
    Passphrase,
    RawKey,
    generate_key_file,
    inspect,
    key_id,
    printable,
    read_key_file,
    rotate,
)

DEFAULT_KEY_FILE = ".secrets/cryptomed.key"  # crypto.key_file of the default configuration


def _kek(args, which: str):
    prefix = f"{which}_" if which else ""
    flag = f"--{which}-" if which else "--"
    key_file, env = getattr(args, f"{prefix}key_file"), getattr(args, f"{prefix}passphrase_env")
    if bool(key_file) == bool(env):
        raise SystemExit(f"cryptomed {args.command}: give exactly one of {flag}key-file or {flag}passphrase-env")
    if key_file:
        return RawKey(read_key_file(key_file), description=key_file)
    if not os.environ.get(env):
        raise SystemExit(f"cryptomed {args.command}: environment variable {env} is not set")
    return Passphrase(os.environ[env], description=f"${env}")


def _configured_key_file() -> str:
    """crypto.key_file of params.yaml (config.yaml) in the current directory, else the default path."""
    for name in ("params.yaml", "config.yaml"):
        if os.path.isfile(name):
            try:
                import yaml

                value = (yaml.safe_load(open(name)) or {}).get("crypto", {}).get("key_file")
            except Exception:  # noqa: BLE001 - an unreadable config: fall back to the default path
                value = None
            if isinstance(value, str) and value:
                return value
    return DEFAULT_KEY_FILE


def dvc_locked_md5(lock_path: str, container: str) -> str | None:
    """The md5 that ``dvc.lock`` records for ``container`` (a path relative to the lock file's directory), if any."""
    import yaml

    lock = yaml.safe_load(open(lock_path)) or {}
    base = os.path.dirname(os.path.abspath(lock_path))
    target = os.path.relpath(os.path.abspath(container), base)
    for stage in (lock.get("stages") or {}).values():
        for out in (stage or {}).get("outs") or []:
            if isinstance(out, dict) and os.path.normpath(str(out.get("path"))) == target:
                return out.get("md5")
    return None


def _file_md5(path: str) -> str:
    import hashlib

    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(args) -> int:
    """Decrypt and verify every record of each container; compare with dvc.lock and the decrypt rule's record."""
    from .crypto import load_kek, verify_container

    if args.key_file or args.passphrase_env:
        kek = _kek(args, "")
    else:
        kek = load_kek(_configured_key_file())
    lock = args.dvc_lock if args.dvc_lock else ("dvc.lock" if os.path.isfile("dvc.lock") else None)
    failed = 0
    for path in args.containers:
        result, _, _ = verify_container(path, kek, workers=args.workers)
        n = result["records"]
        lines = [f"{path}: all {n} records verified ({', '.join(f'{printable(k)} {v}' for k, v in result['split_counts'].items())}); "
                 f"file id {result['file_id']}, content sha256 {result['content_sha256']}"]
        if lock:
            locked = dvc_locked_md5(lock, path)
            if locked is None:
                lines.append(f"  {lock}: no entry for {path} (not compared)")
            elif locked != (md5 := _file_md5(path)):
                failed += 1
                lines.append(f"  MISMATCH: md5 {md5} but {lock} records {printable(locked)}: the container is not "
                             "the one DVC recorded (edited, replaced or rolled back; or rotated without `dvc commit`)")
            else:
                lines.append(f"  md5 {locked} matches {lock}")
        record = args.record or os.path.join("results", os.path.basename(str(path)).removesuffix(".cmed"),
                                             "container_verified.json")
        if os.path.isfile(record):
            try:
                expected = json.load(open(record))
            except ValueError:
                expected = {}
            if not isinstance(expected, dict) or expected.get("content_sha256") != result["content_sha256"]:
                failed += 1
                lines.append(f"  MISMATCH: {record} (the decrypt rule's record) names another container or content")
            else:
                lines.append(f"  matches {record} (what the decrypt rule verified)")
        elif args.record:
            raise SystemExit(f"cryptomed verify: {args.record} not found")
        print("\n".join(lines))
    if failed:
        print(f"cryptomed verify: {failed} mismatch(es)", file=sys.stderr)
        return 1
    return 0


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


def _dataset_check(args) -> int:
    """Counts per class and split, sizes, formats and problems of a custom dataset; exit 1 on any problem."""
    import yaml

    from .custom import check, check_text

    if args.path:
        name, entry = args.name or "custom", {"format": args.format, "path": args.path}
        if args.classes:
            entry["classes"] = args.classes
    else:
        if not args.name:
            raise SystemExit("cryptomed dataset check: give a dataset name or --path")
        config = yaml.safe_load(open(args.config)) or {}
        name, entry = args.name, (config.get("custom_datasets") or {}).get(args.name)
        if not isinstance(entry, dict):
            raise SystemExit(f"cryptomed dataset check: {name} is not under custom_datasets in {args.config}")
    report = check(name, entry, threads=args.threads)
    print(check_text(report))
    return 1 if report["problems"] else 0


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
    p = sub.add_parser("verify", help="decrypt and verify every record; compare with dvc.lock and the decrypt rule's record")
    p.add_argument("containers", nargs="+")
    p.add_argument("--key-file", help="KEK file (default: $CRYPTOMED_KEY, $CRYPTOMED_PASSPHRASE, then crypto.key_file "
                   "of params.yaml)")
    p.add_argument("--passphrase-env", metavar="VAR", help="name of an environment variable holding the passphrase")
    p.add_argument("--dvc-lock", help="dvc.lock to compare md5s with (default: ./dvc.lock when present)")
    p.add_argument("--record", help="the decrypt rule's container_verified.json (default: results/<name>/... when present)")
    p.add_argument("--workers", type=int, default=1, help="processes decrypting (default 1)")
    p = sub.add_parser("rotate", help="re-wrap containers' data keys under a new key-encryption key")
    p.add_argument("containers", nargs="+")
    for which in ("old", "new"):
        p.add_argument(f"--{which}-key-file")
        p.add_argument(f"--{which}-passphrase-env", metavar="VAR", help="name of an environment variable holding the passphrase")
    p.add_argument("--touch", action="store_true", help="update modification times (default: keep them)")
    p.add_argument("--verify-records", action="store_true",
                   help="decrypt and verify every record before re-wrapping (the header is always verified)")
    p = sub.add_parser("audit-remote", help="scan a DVC remote for plaintext image windows and key material")
    p.add_argument("remote", help="the remote's directory")
    p.add_argument("--images", nargs="+", required=True, metavar="NPZ", help="preprocessed images.npz files")
    p.add_argument("--key-file", nargs="*", default=[], help="key files whose bytes must not be in the remote")
    sub.add_parser("pull", help="dvc pull, check against dvc.lock, mark pulled outputs up to date for Snakemake")
    p = sub.add_parser("dataset", help="check one of your own datasets before anything is encrypted")
    p.add_argument("action", choices=["check"])
    p.add_argument("name", nargs="?", help="a name under custom_datasets of --config")
    p.add_argument("--config", default="params.yaml", help="configuration holding custom_datasets (default params.yaml)")
    p.add_argument("--path", help="a folder or CSV to check without a configuration entry")
    p.add_argument("--format", choices=["folder", "csv"], default="folder", help="with --path (default folder)")
    p.add_argument("--classes", nargs="+", help="with --path: the expected classes, in label order")
    p.add_argument("--threads", type=int, default=2, help="threads decoding (default 2)")
    sub.add_parser("docs", help="regenerate (or --check) the result blocks of README.md and docs/*.md from results/")
    args = ap.parse_args(argv)
    try:
        if args.command == "keygen":
            if os.path.exists(args.path):
                raise SystemExit(f"cryptomed keygen: {args.path} exists; refusing to overwrite a key")
            print(f"created {args.path}, key id {key_id(generate_key_file(args.path)).hex()}")
        elif args.command == "inspect":
            print(json.dumps([inspect(p) for p in args.containers], indent=2, allow_nan=False))
        elif args.command == "verify":
            return _verify(args)
        elif args.command == "audit-remote":
            return _audit(args)
        elif args.command == "dataset":
            return _dataset_check(args)
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
                old_id, new_id = rotate(path, old, new, keep_mtime=not args.touch, verify_records=args.verify_records)
                print(f"{path}: {'records verified, ' if args.verify_records else ''}data key re-wrapped, "
                      f"KEK id {old_id} -> {new_id}")
    except CryptoError as exc:
        print(f"cryptomed {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a missing or unreadable file: one line, no traceback
        print(f"cryptomed {args.command}: {type(exc).__name__}: {printable(str(exc), 300)}", file=sys.stderr)
        return 1
    return 0
