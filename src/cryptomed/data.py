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
import hashlib
import io
import logging
import tarfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from . import CryptomedError
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

    def __post_init__(self):
        if self.aspect not in ASPECT_POLICIES:
            raise ValueError(f"aspect must be one of {ASPECT_POLICIES}, got {self.aspect!r}")
        if self.resample not in RESAMPLING:
            raise ValueError(f"resample must be one of {sorted(RESAMPLING)}, got {self.resample!r}")
        if self.on_corrupt not in ("error", "skip"):
            raise ValueError(f"on_corrupt must be 'error' or 'skip', got {self.on_corrupt!r}")
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


def preprocess(spec: DatasetSpec, raw_tar: str | Path, raw_manifest: str | Path,
               settings: PreprocessSettings, threads: int = 1):
    """Return ``(arrays, manifest_rows, report)`` for one dataset; pure apart from reading input."""
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
        digest = hashlib.sha256(f"{pixels.shape}".encode() + pixels.tobytes()).hexdigest()
        return row, digest, pixels.shape, resize(pixels, settings.image_size, settings.aspect, settings.resample)

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        results = list(progress(pool.map(work, rows), len(rows), f"{spec.name}: decode and resize"))

    corrupt = [r["path"] for r, d, _, _ in results if d is None]
    decoded = [(r, d, shape, img) for r, d, shape, img in results if d is not None]
    for path in corrupt:
        log.warning("skipped corrupt image %s (on_corrupt=skip)", path)

    test_hashes = {d for r, d, _, _ in decoded if r["split"] == "test"}
    kept, dup_of_test, dup_within_train = [], [], []
    seen_train: set[str] = set()
    test_dups_within = Counter(d for r, d, _, _ in decoded if r["split"] == "test")
    for item in decoded:
        r, d = item[0], item[1]
        if r["split"] == "train":
            if d in test_hashes:
                dup_of_test.append(r["path"])
                continue
            if d in seen_train:
                dup_within_train.append(r["path"])
                continue
            seen_train.add(d)
        kept.append(item)

    # Stratified validation split from train, seeded.
    rng = np.random.default_rng(settings.seed)
    split_of = {}
    train_items = [it for it in kept if it[0]["split"] == "train"]
    by_class: dict[int, list] = {}
    for it in train_items:
        by_class.setdefault(it[0]["label"], []).append(it[0]["path"])
    for label, paths in sorted(by_class.items()):
        order = rng.permutation(len(paths))
        n_val = int(round(settings.val_fraction * len(paths)))
        if len(paths) >= 2:
            n_val = min(max(n_val, 1), len(paths) - 1)
        else:
            n_val = 0
        for rank, i in enumerate(order):
            split_of[paths[i]] = "val" if rank < n_val else "train"
    for it in kept:
        if it[0]["split"] == "test":
            split_of[it[0]["path"]] = "test"

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
        "settings": {
            "image_size": settings.image_size, "aspect": settings.aspect, "resample": settings.resample,
            "val_fraction": settings.val_fraction, "seed": settings.seed, "on_corrupt": settings.on_corrupt,
            "max_per_class": settings.max_per_class,
        },
        "source_images": len(rows),
        "counts": counts,
        "total": n,
        "dropped": {
            "train_duplicates_of_test": len(dup_of_test),
            "train_duplicates_within_train": len(dup_within_train),
            "corrupt_skipped": len(corrupt),
        },
        "test_duplicates_kept": int(sum(c - 1 for c in test_dups_within.values() if c > 1)),
        "corrupt_files": corrupt,
        "dropped_files": {"duplicates_of_test": dup_of_test, "duplicates_within_train": dup_within_train},
    }
    arrays = {"images": images, "labels": labels, "ids": ids, "splits": splits,
              "classes": np.array(spec.classes)}
    return arrays, manifest, report


def save_arrays(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def run_preprocess(spec: DatasetSpec, raw_tar, raw_manifest, out_npz, out_manifest, out_report,
                   settings: PreprocessSettings, threads: int = 1) -> dict:
    arrays, manifest, report = preprocess(spec, raw_tar, raw_manifest, settings, threads)
    import pandas as pd

    save_arrays(out_npz, arrays)
    write_csv(out_manifest, pd.DataFrame(manifest))
    write_json(out_report, report)
    return report
