"""Fetch a dataset's raw images, verify them, and lay them out for preprocessing.

Whatever the source, the result is the same three files in ``out_dir``:

``images.tar``     the image files, members named ``<root>/<split>/<class>/<file>``
``manifest.csv``   one row per member: ``path, split, class_name, label, sha256``
``download.json``  where the bytes came from and every checksum that was checked

Sources
-------
mirror    a local copy laid out like ``../shared/data`` (tar + manifest.csv with a
          sha256 per file, optional SHA256SUMS): every member is verified.
kaggle    the Kaggle dataset API (needs ``KAGGLE_USERNAME``/``KAGGLE_KEY`` or
          ``~/.kaggle/kaggle.json``); Kaggle publishes no checksums, so the sha256
          of every file seen is recorded instead.
zenodo    PneumoniaMNIST ``.npz`` from Zenodo, checked against its published MD5.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from . import CryptomedError
from .datasets import DatasetSpec, UpstreamSource
from .files import atomic_path, file_digest, write_json

log = logging.getLogger(__name__)

KAGGLE_API = os.environ.get("CRYPTOMED_KAGGLE_API", "https://www.kaggle.com/api/v1")
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "train", "test": "test", "testing": "test"}
MANIFEST_COLUMNS = ["path", "split", "class_name", "label", "sha256"]


class ChecksumError(CryptomedError):
    """A file's bytes do not match the checksum it is supposed to have."""


class SourceError(CryptomedError):
    """A source is missing, unreachable, or laid out unexpectedly."""


# --------------------------------------------------------------------------- mirror


def fetch_from_mirror(spec: DatasetSpec, mirror_root: str | os.PathLike, out_dir: str | os.PathLike) -> dict:
    """Copy ``spec``'s tar from a local mirror and verify every member against its manifest."""
    mirror_root = Path(mirror_root)
    src_dir = mirror_root / spec.mirror_dir
    src_tar = src_dir / spec.mirror_tar
    src_manifest = src_dir / "manifest.csv"
    for p in (src_tar, src_manifest):
        if not p.is_file():
            raise SourceError(f"mirror file not found: {p} (is DATA_MIRROR / download.mirror pointing at a copy of shared/data?)")

    sums = _read_sha256sums(mirror_root / "SHA256SUMS")
    whole_files = {}
    for p in (src_tar, src_manifest):
        digest = file_digest(p)
        rel = p.relative_to(mirror_root).as_posix()
        expected = sums.get(rel)
        if expected is not None and expected != digest:
            raise ChecksumError(f"{p}: sha256 {digest} does not match SHA256SUMS ({expected})")
        whole_files[rel] = {"sha256": digest, "listed_in_SHA256SUMS": expected is not None}

    rows = _read_manifest(src_manifest, spec)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "images.tar") as tmp_tar:
        shutil.copyfile(src_tar, tmp_tar)
        _verify_tar_against_manifest(tmp_tar, rows, label=str(src_tar))
        with atomic_path(out_dir / "manifest.csv") as tmp_manifest:
            _write_manifest(tmp_manifest, rows.values())
    report = {
        "dataset": spec.name,
        "source": "mirror",
        "mirror": str(mirror_root.resolve()),
        "files": whole_files,
        "members_verified": len(rows),
        "checksum": "sha256 of every tar member matched the mirror's manifest.csv",
    }
    write_json(out_dir / "download.json", report)
    return report


def _read_sha256sums(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    sums = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.lstrip("*").strip()] = digest.lower()
    return sums


def _read_manifest(path: Path, spec: DatasetSpec) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = set(MANIFEST_COLUMNS) - set(reader.fieldnames or [])
        if missing:
            raise SourceError(f"{path}: manifest lacks columns {sorted(missing)}")
        for lineno, row in enumerate(reader, start=2):
            cls = row["class_name"]
            if cls not in spec.classes:
                raise SourceError(f"{path}:{lineno}: class {cls!r} is not one of {spec.classes}")
            if int(row["label"]) != spec.classes.index(cls):
                raise SourceError(f"{path}:{lineno}: label {row['label']} does not match class {cls!r}")
            split = row["split"]
            if split not in ("train", "test"):
                raise SourceError(f"{path}:{lineno}: split {split!r} is neither 'train' nor 'test'")
            rows[row["path"]] = {k: row[k] for k in MANIFEST_COLUMNS}
    if not rows:
        raise SourceError(f"{path}: manifest is empty")
    return rows


def _verify_tar_against_manifest(tar_path: Path, rows: dict[str, dict], label: str) -> None:
    seen = set()
    try:
        with tarfile.open(tar_path) as tf:
            for member in tf:
                if not member.isfile():
                    continue
                row = rows.get(member.name)
                if row is None:
                    raise ChecksumError(f"{label}: member {member.name} is not listed in the manifest")
                digest = hashlib.sha256(tf.extractfile(member).read()).hexdigest()
                if digest != row["sha256"]:
                    raise ChecksumError(
                        f"{label}: member {member.name} has sha256 {digest}, manifest says {row['sha256']}"
                    )
                seen.add(member.name)
    except tarfile.TarError as exc:
        raise SourceError(f"{label}: not a readable tar archive ({exc})") from exc
    missing = sorted(set(rows) - seen)
    if missing:
        raise ChecksumError(f"{label}: {len(missing)} manifest entries missing from the tar, first: {missing[0]}")


def _write_manifest(path: Path, rows, columns=MANIFEST_COLUMNS) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row[k] for k in columns})


# --------------------------------------------------------------------------- upstream


def fetch_from_upstream(spec: DatasetSpec, source: str, out_dir: str | os.PathLike) -> dict:
    """Download ``spec`` from one of its real upstream sources and lay it out like the mirror."""
    try:
        up = spec.upstream[source]
    except KeyError:
        raise SourceError(f"dataset {spec.name} has no upstream source {source!r}; known: {sorted(spec.upstream)}") from None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".download-") as tmp:
        archive = Path(tmp) / "archive"
        if up.kind == "kaggle":
            url = f"{KAGGLE_API}/datasets/download/{up.identifier}"
            http_download(url, archive, headers=_kaggle_auth_header())
            rows = _tar_from_zip(spec, archive, out_dir)
            checksum = "Kaggle publishes no checksums: the sha256 of every file is recorded in manifest.csv"
        elif up.kind == "zenodo":
            http_download(up.identifier, archive)
            md5 = file_digest(archive, "md5")
            if up.md5 and md5 != up.md5:
                raise ChecksumError(f"{up.identifier}: MD5 {md5} does not match the published {up.md5}")
            rows = _tar_from_medmnist_npz(spec, archive, out_dir)
            checksum = f"MD5 {md5} matched the published value"
        else:  # pragma: no cover - specs are static
            raise SourceError(f"unknown upstream kind {up.kind!r}")
        archive_sha256 = file_digest(archive)
    report = {
        "dataset": spec.name,
        "source": source,
        "identifier": up.identifier,
        "archive_sha256": archive_sha256,
        "members": rows,
        "checksum": checksum,
        "note": up.note,
    }
    write_json(out_dir / "download.json", report)
    return report


def _kaggle_auth_header() -> dict[str, str]:
    user, key = os.environ.get("KAGGLE_USERNAME"), os.environ.get("KAGGLE_KEY")
    if not (user and key):
        cfg = Path(os.environ.get("KAGGLE_CONFIG_DIR", Path.home() / ".kaggle")) / "kaggle.json"
        if not cfg.is_file():
            raise SourceError(
                "Kaggle credentials not found: set KAGGLE_USERNAME and KAGGLE_KEY or create "
                f"{cfg}; offline, point DATA_MIRROR at a local mirror instead"
            )
        creds = json.loads(cfg.read_text())
        user, key = creds["username"], creds["key"]
    token = base64.b64encode(f"{user}:{key}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def http_download(url: str, dest: Path, headers: dict[str, str] | None = None, timeout: float = 60.0) -> None:
    req = urllib.request.Request(url, headers={"User-Agent": "cryptomed", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp, open(dest, "wb") as fh:
            shutil.copyfileobj(resp, fh, length=1 << 20)
    except OSError as exc:  # URLError, HTTPError and socket errors are all OSErrors
        raise SourceError(f"download of {url} failed: {exc}; offline, set DATA_MIRROR to a local mirror") from exc


def _tar_from_zip(spec: DatasetSpec, zip_path: Path, out_dir: Path) -> int:
    """Re-pack a Kaggle zip as ``<dataset>/<split>/<class>/<file>`` members, recording sha256s."""
    class_lookup = {c.lower(): c for c in spec.classes}
    entries: dict[str, tuple[dict, bytes]] = {}
    try:
        zf = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as exc:
        raise SourceError(f"{zip_path}: downloaded archive is not a zip file ({exc})") from exc
    with zf:
        for info in zf.infolist():
            p = PurePosixPath(info.filename)
            if info.is_dir() or "__MACOSX" in p.parts or p.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            split = cls = None
            for a, b in zip(p.parts, p.parts[1:]):
                if a.lower() in SPLIT_ALIASES and b.lower() in class_lookup:
                    split, cls = SPLIT_ALIASES[a.lower()], class_lookup[b.lower()]
            if split is None:
                raise SourceError(f"{zip_path}: cannot tell split and class of member {info.filename}")
            data = zf.read(info)
            member = f"{spec.name}/{split}/{cls}/{p.name}"
            row = {
                "path": member,
                "split": split,
                "class_name": cls,
                "label": spec.classes.index(cls),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
            if member in entries:  # Kaggle's chest zip holds the data set twice (chest_xray/chest_xray/...)
                if entries[member][0]["sha256"] != row["sha256"]:
                    raise SourceError(f"{zip_path}: two different files map to {member}")
                continue
            entries[member] = (row, data)
    if not entries:
        raise SourceError(f"{zip_path}: no images found")
    _write_tar_and_manifest(out_dir, entries)
    return len(entries)


def _tar_from_medmnist_npz(spec: DatasetSpec, npz_path: Path, out_dir: Path) -> int:
    import numpy as np
    from PIL import Image

    entries: dict[str, tuple[dict, bytes]] = {}
    with np.load(npz_path) as npz:
        for source_split in ("train", "val", "test"):
            images, labels = npz[f"{source_split}_images"], npz[f"{source_split}_labels"].reshape(-1)
            split = SPLIT_ALIASES[source_split]
            for i, (img, label) in enumerate(zip(images, labels)):
                cls = spec.classes[int(label)]
                buf = io.BytesIO()
                Image.fromarray(img).convert("L").save(buf, format="PNG")
                data = buf.getvalue()
                member = f"{spec.name}/{split}/{cls}/{source_split}_{i:05d}.png"
                row = {"path": member, "split": split, "class_name": cls, "label": int(label),
                       "sha256": hashlib.sha256(data).hexdigest()}
                entries[member] = (row, data)
    _write_tar_and_manifest(out_dir, entries)
    return len(entries)


def _write_tar_and_manifest(out_dir: Path, entries: dict[str, tuple[dict, bytes]], columns=MANIFEST_COLUMNS) -> None:
    with atomic_path(out_dir / "images.tar") as tmp_tar, atomic_path(out_dir / "manifest.csv") as tmp_manifest:
        with tarfile.open(tmp_tar, "w", format=tarfile.USTAR_FORMAT) as tf:
            for member in sorted(entries):
                data = entries[member][1]
                info = tarfile.TarInfo(member)
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                tf.addfile(info, io.BytesIO(data))
        _write_manifest(tmp_manifest, (entries[m][0] for m in sorted(entries)), columns)


# --------------------------------------------------------------------------- entry point


def fetch(spec: DatasetSpec, out_dir: str | os.PathLike, mirror: str | None = None, source: str = "kaggle") -> dict:
    """Fetch ``spec`` into ``out_dir``: from ``mirror`` when given, otherwise from ``source`` upstream."""
    if mirror:
        log.info("dataset %s: verifying local mirror %s", spec.name, mirror)
        return fetch_from_mirror(spec, mirror, out_dir)
    log.info("dataset %s: downloading from upstream source %s", spec.name, source)
    return fetch_from_upstream(spec, source, out_dir)
