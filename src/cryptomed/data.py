"""Preprocessing: decode, grayscale, resize, de-duplicate and split.

The official test split is kept whole.  A stratified validation split is carved
from the training images with a fixed seed, after dropping training images whose
decoded pixels duplicate a test image (leakage) or another training image.

Records get opaque ids (``000000``, ``000001``, ...) in a seeded random order, so
neither an id nor a record's position in the encrypted container reveals the
diagnosis (upstream file names do: ``person1_bacteria_1``, ``Te-gl_0001``).  The
mapping back to source files lives only in the local split manifest.
"""

from __future__ import annotations

import csv
import dataclasses
import re
import hashlib
import io
import logging
import tarfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from . import CryptomedError, dedup
from .datasets import DatasetSpec
from .files import atomic_path, write_csv, write_json
from .progress import progress

log = logging.getLogger(__name__)

RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}
ASPECT_POLICIES = ("pad", "center_crop", "stretch")
SPLITS = ("train", "val", "test")


class CorruptImageError(CryptomedError):
    """An image file cannot be decoded."""


@dataclass(frozen=True)
class PreprocessSettings:
    image_size: int = 64
    aspect: str = "pad"  # pad to a centred square with black, then resize
    resample: str = "lanczos"
    val_fraction: float = 0.1
    seed: int = 42
    on_corrupt: str = "error"  # or "skip" (skipped images are counted in the report)
    max_per_class: int | None = None  # subset per (split, class), for tests and quick runs
    # A training image within this distance of a test image is the same picture (see cryptomed.dedup and
    # docs/leakage.md: chosen from the distance distribution on the real data). None: exact copies only.
    near_copy_threshold: float | None = 0.15
    near_copy_thumbnail: int = 16  # side of the normalised thumbnails compared
    group_by_patient: bool = True  # validation split grouped by the patient id in upstream file names
    # Validation = the training groups most like the test images, per class (cryptomed.shift; pixels only, no test
    # label); False: a stratified, grouped random split.
    test_like_validation: bool = False

    def __post_init__(self):
        if self.aspect not in ASPECT_POLICIES:
            raise ValueError(f"aspect must be one of {ASPECT_POLICIES}, got {self.aspect!r}")
        if self.resample not in RESAMPLING:
            raise ValueError(f"resample must be one of {sorted(RESAMPLING)}, got {self.resample!r}")
        if self.on_corrupt not in ("error", "skip"):
            raise ValueError(f"on_corrupt must be 'error' or 'skip', got {self.on_corrupt!r}")
        if self.near_copy_threshold is not None and not 0.0 <= self.near_copy_threshold < 1.0:
            raise ValueError(f"near_copy_threshold must be in [0, 1) or null, got {self.near_copy_threshold}")
        if not 4 <= self.near_copy_thumbnail <= 64:
            raise ValueError(f"near_copy_thumbnail must be in [4, 64], got {self.near_copy_thumbnail}")
        if not isinstance(self.test_like_validation, bool):  # the config's list becomes a per-dataset yes/no
            raise ValueError(f"test_like_validation must be true or false, got {self.test_like_validation!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")


def decode_grayscale(data: bytes, name: str) -> np.ndarray:
    """Decode image bytes to an 8-bit grayscale array; raise :class:`CorruptImageError` naming ``name``."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.mode in ("RGBA", "LA", "P"):
                im = im.convert("RGBA").convert("RGB")
            return np.asarray(im.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise CorruptImageError(f"cannot decode image {name}: {exc}") from exc


def resize(pixels: np.ndarray, size: int, aspect: str = "pad", resample: str = "lanczos") -> np.ndarray:
    """Resize a grayscale image to ``size``×``size`` under an explicit aspect-ratio policy.

    ``pad``: pad the shorter side with black to a centred square, then resize (nothing is cropped).
    ``center_crop``: crop the longer side to a centred square, then resize.
    ``stretch``: resize directly (distorts non-square images).
    """
    h, w = pixels.shape
    if aspect == "pad" and h != w:
        side = max(h, w)
        canvas = np.zeros((side, side), dtype=np.uint8)
        top, left = (side - h) // 2, (side - w) // 2
        canvas[top : top + h, left : left + w] = pixels
        pixels = canvas
    elif aspect == "center_crop" and h != w:
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        pixels = pixels[top : top + side, left : left + side]
    if pixels.shape == (size, size):
        return pixels.copy()
    im = Image.fromarray(pixels).resize((size, size), RESAMPLING[resample])
    return np.asarray(im, dtype=np.uint8)


def read_raw_manifest(path: str | Path, spec: DatasetSpec) -> list[dict]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        if row["class_name"] not in spec.classes:
            raise CryptomedError(f"{path}: member {row['path']} has unknown class {row['class_name']!r}")
        row["label"] = spec.classes.index(row["class_name"])
    return rows


def _subset(rows: list[dict], max_per_class: int | None, seed: int) -> list[dict]:
    if not max_per_class:
        return rows
    rng = np.random.default_rng(seed)
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["split"], row["class_name"]), []).append(row)
    kept = []
    for key in sorted(groups):
        group = groups[key]
        idx = np.sort(rng.permutation(len(group))[:max_per_class])
        kept.extend(group[i] for i in idx)
    return kept



class Preprocessed(NamedTuple):
    arrays: dict
    manifest: list[dict]  # local only: record id -> source file
    report: dict  # counts only, goes to results/
    dropped: list[dict]  # local only: dropped file, reason, kind, the test image it copies
    samples: list[dict]  # test image beside its dropped training copy, for the figure


KINDS = ("exact", "near", "flipped_or_rotated")
EXACT_DISTANCE = 1e-3  # identical pictures measure up to ~7e-4 (float32 rounding of the normalised thumbnails)
SAMPLES_PER_KIND = 3


def patient_id(spec: DatasetSpec, source_path: str) -> str | None:
    """The patient id in an upstream file name (``person12_virus_3.jpeg`` -> ``person12``), or None."""
    if not spec.patient_pattern:
        return None
    m = re.match(spec.patient_pattern, source_path.rsplit("/", 1)[-1])
    return m.group(1) if m else None


def row_patient(spec: DatasetSpec, row: dict) -> str | None:
    """The patient of a raw manifest row: a custom dataset's opaque ``patient_group`` (cryptomed.custom), else
    the id in the upstream file name."""
    if "patient_group" in row:
        return f"group {row['patient_group']}" if row["patient_group"] != "" else None
    return patient_id(spec, row["path"])


def _patient_source(spec: DatasetSpec, rows) -> str | None:
    if spec.patient_pattern:
        return "upstream file name"
    return "patient_group (your dataset's patient_id column or DICOM PatientID)" if any(
        row.get("patient_group", "") != "" for row in rows) else None


def _stack(items, size: int) -> np.ndarray:
    return np.stack([it[3] for it in items]) if items else np.zeros((0, size, size), np.uint8)


def _drop_leakage(spec: DatasetSpec, decoded, settings: PreprocessSettings):
    """Drop training images that copy a test image (exact, near, flipped or rotated) and exact duplicates inside
    train; group the rest by near-copy and by patient so that no group straddles train and validation."""
    thr, size, px = settings.near_copy_threshold, settings.near_copy_thumbnail, settings.image_size
    test = [it for it in decoded if it[0]["split"] == "test"]
    train = [it for it in decoded if it[0]["split"] == "train"]
    test_hash = {}
    for j, it in enumerate(test):
        test_hash.setdefault(it[1], j)
    dist, ref, trans = dedup.nearest(_stack(train, px), _stack(test, px), size)

    kept_train, dropped, candidates, seen = [], [], [], {}
    by_kind = {k: Counter() for k in KINDS}
    for k, it in enumerate(train):
        row = it[0]
        exact = it[1] in test_hash
        if exact or (thr is not None and dist[k] <= thr):
            j = test_hash[it[1]] if exact else int(ref[k])
            if exact:
                kind, t_name = "exact", "identity"
            elif trans[k] == 0 or dedup.distance(it[3], test[j][3], size) <= thr:  # a copy as it is
                kind, t_name = "near", "identity"
            else:
                kind, t_name = "flipped_or_rotated", dedup.TRANSFORMS[trans[k]]
            by_kind[kind][row["class_name"]] += 1
            dropped.append({"source_path": row["path"], "class_name": row["class_name"], "reason": "copy_of_test",
                            "kind": kind, "copy_of": test[j][0]["path"], "distance": round(float(dist[k]), 4),
                            "transform": t_name})
            candidates.append((kind, j, it, float(dist[k]), t_name))
            continue
        if it[1] in seen:
            dropped.append({"source_path": row["path"], "class_name": row["class_name"],
                            "reason": "duplicate_within_train", "kind": "exact", "copy_of": seen[it[1]],
                            "distance": 0.0, "transform": "identity"})
            continue
        seen[it[1]] = row["path"]
        kept_train.append(it)

    samples = []  # a few pairs per kind, spread over the list (which is in class order)
    for kind in KINDS:
        of_kind = [c for c in candidates if c[0] == kind]
        for i in sorted(set(np.linspace(0, len(of_kind) - 1, SAMPLES_PER_KIND).round().astype(int).tolist())
                        if of_kind else []):
            _, j, it, d, t_name = of_kind[i]
            samples.append({"test": test[j][3], "copy": it[3], "kind": kind, "distance": d, "transform": t_name,
                            "class_name": it[0]["class_name"]})

    # Groups that must stay on one side of the train/validation split: near-copies and images of one patient.
    links = dedup.pairs_within(_stack(kept_train, px), thr, size) if thr is not None else []
    n_near_pairs = len(links)
    pids = [row_patient(spec, it[0]) if settings.group_by_patient else None for it in kept_train]
    first_of: dict[str, int] = {}
    for i, pid in enumerate(pids):
        if pid is not None:
            links.append((first_of.setdefault(pid, i), i))
    group = dedup.groups(len(kept_train), links)
    near_groups = dedup.groups(len(kept_train), links[:n_near_pairs])
    sizes = Counter(near_groups.tolist())

    borderline = int(((dist > thr) & (dist <= 1.5 * thr)).sum()) if thr is not None else 0
    # Per test image: the distance to its nearest official training image (the quantity the policy acts on per
    # test image; counts every test image with a copy, also when the test split holds copies of one another).
    d_test, _, _ = dedup.nearest(_stack(test, px), _stack(train, px), size)
    train_hashes = {it[1] for it in train}
    test_with_copy = sum(1 for j, it in enumerate(test)
                         if it[1] in train_hashes or (thr is not None and d_test[j] <= thr))
    edges = np.round(np.arange(0.0, 1.02, 0.02), 2)
    hist = np.histogram(np.minimum(dist[np.isfinite(dist)], 1.0), bins=edges)[0]
    hist_test = np.histogram(np.minimum(d_test[np.isfinite(d_test)], 1.0), bins=edges)[0]
    train_pids = {row_patient(spec, it[0]) for it in train} - {None}
    test_pids = {row_patient(spec, it[0]) for it in test} - {None}
    id_source = _patient_source(spec, [it[0] for it in decoded])
    report = {
        "method": "normalised thumbnails, nearest neighbour over the 8 flips and rotations (cryptomed.dedup)",
        "threshold": thr,
        "thumbnail": size,
        "test_images_with_a_train_copy": test_with_copy,
        "train_copies_of_test_dropped": {
            "total": sum(sum(c.values()) for c in by_kind.values()),
            "by_kind": {k: sum(by_kind[k].values()) for k in KINDS},
            "by_class": {c: sum(by_kind[k][c] for k in KINDS) for c in spec.classes},
            "by_kind_and_class": {k: {c: by_kind[k][c] for c in spec.classes} for k in KINDS},
        },
        "borderline_kept": {"range": [thr, round(1.5 * thr, 6)] if thr is not None else None,
                            "train_images": borderline},
        "train_val_near_copy_pairs": n_near_pairs,
        "train_val_images_in_near_copy_groups": int(sum(n for n in sizes.values() if n > 1)),
        "train_val_near_copy_groups": int(sum(1 for n in sizes.values() if n > 1)),
        "distance_histogram": {"edges": edges.tolist(), "test_to_nearest_train": hist_test.tolist(),
                               "train_to_nearest_test": hist.tolist()},
    }
    patients = {
        "id_source": id_source if settings.group_by_patient else None,
        "train_val_patients": len({p for p in pids if p is not None}),
        "train_val_images_without_patient_id": sum(p is None for p in pids) if id_source else None,
        "official_train_test_patients_shared": len(train_pids & test_pids) if id_source else None,
    }
    kept_paths = {it[0]["path"] for it in kept_train}
    kept = [it for it in decoded if it[0]["split"] == "test" or it[0]["path"] in kept_paths]
    groups_of = {it[0]["path"]: int(g) for it, g in zip(kept_train, group)}
    return kept, dropped, {"report": report, "patients": patients, "samples": samples, "groups": groups_of}


def _validation_split(kept, settings: PreprocessSettings, leak, spec_name: str = "dataset") -> dict[str, str]:
    """Stratified by class, grouped by near-copy group and patient (scikit-learn's StratifiedGroupKFold): the
    first of ``round(1 / val_fraction)`` folds is validation."""
    from sklearn.model_selection import StratifiedGroupKFold

    split_of = {it[0]["path"]: "test" for it in kept if it[0]["split"] == "test"}
    train = [it for it in kept if it[0]["split"] == "train"]
    y = np.array([it[0]["label"] for it in train])
    g = np.array([leak["groups"][it[0]["path"]] for it in train])
    n_splits = min(max(2, int(round(1.0 / settings.val_fraction))), len(set(g.tolist())),
                   max(Counter(y.tolist()).values(), default=0))
    val = set()
    if settings.test_like_validation and train:
        from .shift import validation_like_test

        test = [it for it in kept if it[0]["split"] == "test"]
        both = train + test
        mask, leak["validation"] = validation_like_test(
            _stack(both, settings.image_size), np.arange(len(both)) >= len(train),
            [it[0]["label"] for it in both], [leak["groups"].get(it[0]["path"], -1) for it in both],
            [it[1] for it in both], settings.val_fraction, name=spec_name)
        val = set(np.flatnonzero(mask).tolist())
    elif n_splits >= 2:
        import warnings

        with warnings.catch_warnings():  # "least populated class has only N members": fine for tiny subsets
            warnings.simplefilter("ignore", UserWarning)
            folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=settings.seed)
            _, val_idx = next(folds.split(np.zeros(len(y)), y, g))
        val = set(val_idx.tolist())
    if not train:
        raise CryptomedError("preprocess: no training image is left after removing copies of test images "
                             f"(near_copy_threshold={settings.near_copy_threshold}); lower the threshold")
    if not val or len(val) == len(train):
        raise CryptomedError(f"preprocess: cannot carve a validation split from {len(train)} training images in "
                             f"{len(set(g.tolist()))} groups (val_fraction={settings.val_fraction}); use more images")
    sides: dict[int, set] = {}
    for i in range(len(train)):
        sides.setdefault(int(g[i]), set()).add(i in val)
    if any(len(s) > 1 for s in sides.values()):  # a patient or near-copy group on both sides: a bug, never a result
        raise CryptomedError(f"preprocess {spec_name}: a patient or near-copy group straddles train and validation")
    empty = [int(c) for c in np.unique(y) if all(i in val for i in np.flatnonzero(y == c))]
    if empty:
        raise CryptomedError(f"preprocess {spec_name}: class label(s) {empty} would have no training image left "
                             f"(val_fraction={settings.val_fraction}, one large patient group); use more images")
    for i, it in enumerate(train):
        split_of[it[0]["path"]] = "val" if i in val else "train"
    return split_of


def _leakage_check(spec: DatasetSpec, kept, split_of, settings: PreprocessSettings) -> dict:
    """Measured on the final splits: test images with a near-copy in train or validation, validation images with
    one in train (both at the configured threshold, or at 0.001 -- an exact copy up to float rounding -- when the
    threshold is off), patients in both train and validation, and the smallest test distance."""
    px, size = settings.image_size, settings.near_copy_thumbnail
    thr = settings.near_copy_threshold if settings.near_copy_threshold is not None else EXACT_DISTANCE
    part = {s: [it for it in kept if split_of[it[0]["path"]] == s] for s in SPLITS}
    d_test, _, _ = dedup.nearest(_stack(part["test"], px), _stack(part["train"] + part["val"], px), size)
    d_val, _, _ = dedup.nearest(_stack(part["val"], px), _stack(part["train"], px), size)
    pid = {s: {row_patient(spec, it[0]) for it in part[s]} - {None} for s in ("train", "val")}
    finite = d_test[np.isfinite(d_test)]
    return {
        "criterion_distance": thr,
        "test_images_with_a_copy_in_train_or_val": int((d_test <= thr).sum()),
        "val_images_with_a_copy_in_train": int((d_val <= thr).sum()),
        "patients_in_train_and_val": len(pid["train"] & pid["val"]),
        "min_distance_test_to_train_or_val": round(float(finite.min()), 4) if len(finite) else None,
    }


def preprocess(spec: DatasetSpec, raw_tar: str | Path, raw_manifest: str | Path,
               settings: PreprocessSettings, threads: int = 1):
    """Decode, resize, remove leakage and split one dataset; pure apart from reading input.

    Returns a :class:`Preprocessed`: the arrays, the local split manifest (record id -> source file), the data
    report (counts only: no file name or patient id, it goes to ``results/``), the dropped files with the
    reason (local), and sample pairs of a test image beside its dropped training copy (for the figure).
    """
    rows = _subset(read_raw_manifest(raw_manifest, spec), settings.max_per_class, settings.seed)
    wanted = {r["path"]: r for r in rows}
    blobs: dict[str, bytes] = {}
    with tarfile.open(raw_tar) as tf:
        for member in tf:
            if member.isfile() and member.name in wanted:
                blobs[member.name] = tf.extractfile(member).read()
    missing = sorted(set(wanted) - set(blobs))
    if missing:
        raise CryptomedError(f"{raw_tar}: {len(missing)} manifest members are missing, first: {missing[0]}")

    def work(row):
        name = f"{raw_tar}:{row['path']}"
        try:
            pixels = decode_grayscale(blobs[row["path"]], name)
        except CorruptImageError:
            if settings.on_corrupt == "skip":
                return row, None, None, None
            raise
        digest = pixel_digest(pixels)
        return row, digest, pixels.shape, resize(pixels, settings.image_size, settings.aspect, settings.resample)

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        results = list(progress(pool.map(work, rows), len(rows), f"{spec.name}: decode and resize"))

    corrupt = [r["path"] for r, d, _, _ in results if d is None]
    decoded = [(r, d, shape, img) for r, d, shape, img in results if d is not None]
    for path in corrupt:
        log.warning("skipped corrupt image %s (on_corrupt=skip)", path)

    kept, dropped, leak = _drop_leakage(spec, decoded, settings)
    split_of = _validation_split(kept, settings, leak, spec.name)
    rng = np.random.default_rng(settings.seed)

    # Opaque ids in a seeded random order (ids and positions do not reveal the class).
    order = rng.permutation(len(kept))
    kept = [kept[i] for i in order]
    n = len(kept)
    images = np.stack([it[3] for it in kept]) if n else np.zeros((0, settings.image_size, settings.image_size), np.uint8)
    labels = np.array([it[0]["label"] for it in kept], dtype=np.int64)
    ids = np.array([f"{i:06d}" for i in range(n)])
    splits = np.array([split_of[it[0]["path"]] for it in kept])
    manifest = [
        {"id": ids[i], "split": splits[i], "class_name": it[0]["class_name"], "label": int(labels[i]),
         "source_path": it[0]["path"], "source_height": it[2][0], "source_width": it[2][1], "pixel_sha256": it[1]}
        for i, it in enumerate(kept)
    ]

    counts = {s: {c: int(((splits == s) & (labels == k)).sum()) for k, c in enumerate(spec.classes)} for s in SPLITS}
    for s in SPLITS:
        counts[s]["total"] = int((splits == s).sum())
    report = {
        "dataset": spec.name,
        "title": spec.title,
        "classes": list(spec.classes),
        "settings": dataclasses.asdict(settings),
        "source_images": len(rows),
        "counts": counts,
        # StratifiedGroupKFold gives 1 / round(1 / val_fraction) of the groups, stratified: the share it reached
        "val_fraction_achieved": round(counts["val"]["total"] / max(1, counts["train"]["total"] + counts["val"]["total"]), 4),
        "total": n,
        "dropped": {
            "train_copies_of_test": sum(d["reason"] == "copy_of_test" for d in dropped),
            "train_duplicates_within_train": sum(d["reason"] == "duplicate_within_train" for d in dropped),
            "corrupt_skipped": len(corrupt),
        },
        "test_duplicates_kept": int(sum(c - 1 for c in Counter(
            d for r, d, _, _ in decoded if r["split"] == "test").values() if c > 1)),
        "near_copies": leak["report"],
        "patients": leak["patients"],
        "validation": leak.get("validation") or {"method": "random: stratified by class, grouped by patient and "
                                                           "near-copy group (StratifiedGroupKFold)"},
    }
    report["near_copies"]["check"] = _leakage_check(spec, kept, split_of, settings)
    arrays = {"images": images, "labels": labels, "ids": ids, "splits": splits,
              "classes": np.array(spec.classes)}
    dropped += [{"source_path": p, "class_name": "", "reason": "corrupt", "kind": "", "copy_of": "",
                 "distance": "", "transform": ""} for p in corrupt]
    return Preprocessed(arrays, manifest, report, dropped, leak["samples"])


def pixel_digest(pixels: np.ndarray) -> str:
    """SHA-256 of decoded source pixels (shape included): the split manifest's ``pixel_sha256``."""
    return hashlib.sha256(f"{pixels.shape}".encode() + pixels.tobytes()).hexdigest()


def source_images(raw_tar: str | Path, split_manifest: str | Path, ids, size: int, aspect: str = "pad",
                  resample: str = "lanczos", threads: int = 1) -> np.ndarray:
    """The source images of records ``ids`` (in that order) decoded again from the downloaded tar and resized
    directly to ``size`` px: the same records as the preprocessed arrays, at another resolution.

    Each record's source file comes from the local split manifest, and its decoded pixels must match the SHA-256
    the preprocessing recorded, so a tar or manifest changed since preprocessing is an error naming the record,
    never a silent mix of images."""
    with open(split_manifest, newline="") as fh:
        rows = {r["id"]: r for r in csv.DictReader(fh)}
    ids = [str(i) for i in ids]
    unknown = [i for i in ids if i not in rows]
    if unknown:
        raise CryptomedError(f"{split_manifest}: {len(unknown)} record ids are not in the split manifest, "
                             f"first: {unknown[0]}")
    wanted = {rows[i]["source_path"] for i in ids}
    blobs: dict[str, bytes] = {}
    with tarfile.open(raw_tar) as tf:
        for member in tf:
            if member.isfile() and member.name in wanted:
                blobs[member.name] = tf.extractfile(member).read()
    missing = sorted(wanted - set(blobs))
    if missing:
        raise CryptomedError(f"{raw_tar}: {len(missing)} source files of the split manifest are missing, "
                             f"first: {missing[0]}")

    def work(record_id):
        row = rows[record_id]
        pixels = decode_grayscale(blobs[row["source_path"]], f"{raw_tar}:{row['source_path']}")
        if pixel_digest(pixels) != row["pixel_sha256"]:
            raise CryptomedError(f"record {record_id}: {raw_tar}:{row['source_path']} no longer decodes to the pixels "
                                 f"preprocessed (SHA-256 differs from {split_manifest}): the file or the image decoder (Pillow) changed since; "
                                 "rerun preprocessing (snakemake --forcerun preprocess)")
        return resize(pixels, size, aspect, resample)

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        images = list(progress(pool.map(work, ids), len(ids), f"source images at {size} px"))
    return np.stack(images) if images else np.zeros((0, size, size), np.uint8)


def save_arrays(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def run_preprocess(spec: DatasetSpec, raw_tar, raw_manifest, out_npz, out_manifest, out_report,
                   settings: PreprocessSettings, threads: int = 1, out_dropped=None, out_pairs_figure=None,
                   out_distance_figure=None) -> dict:
    """Preprocess one dataset and write its outputs (each atomically): arrays, local manifests, the data report
    and, when asked, the figures of sample near-copy pairs and of the distance distribution."""
    import pandas as pd

    result = preprocess(spec, raw_tar, raw_manifest, settings, threads)
    save_arrays(out_npz, result.arrays)
    write_csv(out_manifest, pd.DataFrame(result.manifest))
    if out_dropped:
        columns = ["source_path", "class_name", "reason", "kind", "copy_of", "distance", "transform"]
        write_csv(out_dropped, pd.DataFrame(result.dropped, columns=columns))
    if out_pairs_figure or out_distance_figure:
        from .figures import near_copy_distances, near_copy_pairs

        if out_pairs_figure:
            near_copy_pairs(result.samples, spec.title, out_pairs_figure)
        if out_distance_figure:
            near_copy_distances(result.report["near_copies"], spec.title, out_distance_figure)
    write_json(out_report, result.report)
    return result.report
