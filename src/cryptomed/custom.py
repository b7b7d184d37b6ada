"""Your own images as a dataset: a folder of class sub-folders or a CSV; PNG / JPEG / TIFF or DICOM.

A custom dataset is an entry of ``custom_datasets:`` in the configuration (docs/datasets.md)::

    my_xrays: {format: folder, path: data/my_xrays, classes: [normal, pneumonia]}

:func:`ingest` lays it out exactly like a downloaded dataset (:mod:`cryptomed.download`), so preprocessing and
everything after it run unchanged: ``images.tar`` of 8-bit grayscale PNGs with opaque member names
``<name>/<split>/<class>/<index>.png``, ``manifest.csv`` and ``download.json`` (counts and settings only).

No patient information is written: DICOM headers are read here, in memory; only the pixels are kept. The patient
id (the CSV's ``patient_id`` column, else DICOM ``PatientID``) is used in memory to keep one patient's images on
one side of the test split and, as an opaque group number (``patient_group``: order of first appearance), of the
validation split. No file name is written either (names of exported DICOM files are often UIDs or patient names):
a record can be traced to its file through ``source_sha256``, the sha256 of the file's bytes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from . import CryptomedError
from .data import CorruptImageError, decode_grayscale
from .datasets import DATASETS, DatasetSpec
from .download import MANIFEST_COLUMNS, _write_tar_and_manifest
from .files import write_json
from .progress import progress

log = logging.getLogger(__name__)

FORMATS = ("folder", "csv")
IMAGE_SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}
DICOM_SUFFIXES = {".dcm", ".dicom"}
VOI_POLICIES = ("header", "minmax", "percentile")  # 12/16-bit -> 8-bit (docs/datasets.md)
MULTIFRAME_POLICIES = ("error", "first", "middle")
DEFAULTS = {"test_fraction": 0.2, "seed": 42, "dicom": {"voi": "header", "multiframe": "error"}}
COLUMNS = MANIFEST_COLUMNS + ["patient_group", "source_sha256"]
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")


class DatasetError(CryptomedError):
    """A custom dataset's entry, layout or files are not usable; the message names the file or line."""


@dataclass(frozen=True)
class Source:
    path: Path  # the image file: read here only, never written anywhere
    class_name: str
    split: str | None  # "train" / "test" as given; None: carved by ingest
    patient: str | None  # the CSV's patient_id (DICOM PatientID is read while decoding)
    origin: str  # where it was listed, for messages: the file, or "<csv>:<line>"


def check_name(name: str) -> None:
    if not (name and name[0].isalpha() and set(name) <= NAME_CHARS and len(name) <= 40):
        raise DatasetError(f"dataset name {name!r}: use lower-case letters, digits and '_', starting with a letter")
    if name in DATASETS:
        raise DatasetError(f"dataset name {name!r} is a built-in dataset; choose another name")


MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # the SOP class of a DICOMDIR (an index: no pixels)


def _has_dicm_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:  # the "DICM" magic after the 128-byte preamble
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def is_dicom(path: Path) -> bool:
    """A ``.dcm`` / ``.dicom`` file, or any file without a known image suffix (none, or a UID's last number
    such as ``1.2.840.113619.2.55.0``) that has the DICM magic."""
    suffix = path.suffix.lower()
    if suffix in DICOM_SUFFIXES:
        return True
    if suffix in IMAGE_SUFFIXES:
        return False
    return _has_dicm_magic(path)


def is_dicomdir(path: Path) -> bool:
    """A DICOMDIR (a media index, no pixel data): named so, or with the Media Storage Directory SOP class."""
    if path.name.upper() == "DICOMDIR":
        return True
    if path.suffix.lower() in DICOM_SUFFIXES or not _has_dicm_magic(path):
        return False
    from pydicom.filereader import read_file_meta_info

    try:
        return str(read_file_meta_info(path).get("MediaStorageSOPClassUID", "")) == MEDIA_STORAGE_DIRECTORY
    except Exception:  # noqa: BLE001 - an unreadable header: decoding names the file
        return False


def _images_under(folder: Path) -> tuple[list[Path], list[Path]]:
    """(image files, other files) under ``folder``, recursively, sorted; hidden files and folders ignored, and
    a DICOMDIR counted as another file."""
    images, other = [], []
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(folder).parts):
            continue
        image = p.suffix.lower() in IMAGE_SUFFIXES or (is_dicom(p) and not is_dicomdir(p))
        (images if image else other).append(p)
    return images, other


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def scan_folder(root: Path) -> tuple[list[Source], list[Path]]:
    """``root/<class>/...`` or ``root/train/<class>/...`` + ``root/test/<class>/...``."""
    if not root.is_dir():
        raise DatasetError(f"{root}: folder not found")
    top = _subdirs(root)
    names = {p.name for p in top}
    split_layout = bool(names & {"train", "test"})
    if split_layout and not names <= {"train", "test"}:
        raise DatasetError(f"{root}: holds train/ or test/ beside other folders ({', '.join(sorted(names))}); use "
                           "either <class>/ folders or train/<class>/ and test/<class>/")
    if split_layout and "test" not in names:
        raise DatasetError(f"{root}: has train/ but no test/ folder (leave both out to have a test split carved)")
    if split_layout and "train" not in names:
        raise DatasetError(f"{root}: has test/ but no train/ folder")
    sources, ignored = [], []
    for split_dir in top if split_layout else [root]:
        classes = _subdirs(split_dir)
        if not classes:
            raise DatasetError(f"{split_dir}: no class sub-folders (expected {split_dir}/<class>/<image files>)")
        for class_dir in classes:
            images, other = _images_under(class_dir)
            if not images:
                raise DatasetError(f"{class_dir}: class folder holds no image files")
            ignored += other
            sources += [Source(p, class_dir.name, split_dir.name if split_layout else None, None, str(p))
                        for p in images]
    return sources, ignored


def scan_csv(csv_path: Path) -> list[Source]:
    """Columns ``path, label`` (paths relative to the CSV's folder), optional ``split`` and ``patient_id``."""
    if not csv_path.is_file():
        raise DatasetError(f"{csv_path}: CSV file not found")
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:  # -sig: a BOM (Excel) is not part of a name
        reader = csv.DictReader(fh)
        missing = {"path", "label"} - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(f"{csv_path}: lacks the column(s) {sorted(missing)} (columns: path, label, "
                               "optional split, patient_id)")
        sources = []
        for line, row in enumerate(reader, start=2):
            where = f"{csv_path}:{line}"
            path = csv_path.parent / (row["path"] or "").strip()
            if not (row["path"] or "").strip() or not path.is_file():
                raise DatasetError(f"{where}: image file {path} not found")
            split = (row.get("split") or "").strip() or None if "split" in row else None
            if "split" in row and split not in ("train", "test"):
                raise DatasetError(f"{where}: split {row.get('split')!r} must be 'train' or 'test' (leave the "
                                   "column out to have a test split carved)")
            label = (row["label"] or "").strip()
            if not label:
                raise DatasetError(f"{where}: empty label")
            sources.append(Source(path, label, split, (row.get("patient_id") or "").strip() or None, where))
    return sources


def scan(name: str, entry: dict) -> tuple[DatasetSpec, list[Source], list[Path]]:
    """The dataset's spec, its image files and the files ignored; raises :class:`DatasetError` on a missing
    file, an unknown label, a class without images, an empty train or test split."""
    check_name(name)
    fmt, root = entry.get("format"), Path(entry.get("path", ""))
    if fmt not in FORMATS:
        raise DatasetError(f"dataset {name}: format must be one of {FORMATS}, got {fmt!r}")
    sources, ignored = scan_folder(root) if fmt == "folder" else (scan_csv(root), [])
    if not sources:
        raise DatasetError(f"dataset {name}: no image files under {root}")
    found = sorted({s.class_name for s in sources})
    classes = tuple(entry.get("classes") or found)
    if len(classes) < 2:
        raise DatasetError(f"dataset {name}: a classifier needs at least 2 classes; {root} has "
                           f"{len(classes)} ({', '.join(classes)})")
    for s in sources:
        if s.class_name not in classes:
            raise DatasetError(f"{s.origin}: label {s.class_name!r} is not one of the classes {list(classes)}")
    counts = Counter((s.split, s.class_name) for s in sources)
    for c in classes:
        if not sum(n for (_, cls), n in counts.items() if cls == c):
            raise DatasetError(f"dataset {name}: class {c!r} has no images under {root}")
    given = {s.split for s in sources}
    if given != {None} and None in given:
        raise DatasetError(f"dataset {name}: some rows of {root} give a split and some do not")
    for split in ("train", "test") if given != {None} else ():
        if not sum(n for (sp, _), n in counts.items() if sp == split):
            raise DatasetError(f"dataset {name}: the {split} split of {root} is empty")
        for c in classes:  # a class missing from a split: its metrics would be undefined (NaN)
            if not counts[(split, c)]:
                raise DatasetError(f"dataset {name}: class {c!r} has no images in the {split} split of {root}; "
                                   "every class needs images in both train and test")
    positive = entry.get("positive_class")
    if positive is not None and (positive not in classes or len(classes) != 2):
        raise DatasetError(f"dataset {name}: positive_class {positive!r} needs two classes, one of them it "
                           f"(classes: {list(classes)})")
    return spec_of(name, {**entry, "classes": list(classes)}), sources, ignored


def workflow_inputs(datasets: list[str], custom: dict) -> dict[str, list[str]]:
    """For the workflow (common.smk): each custom dataset of ``datasets`` -> the files its import reads (its
    images, and its CSV); raises :class:`DatasetError` for a name neither built in nor under ``custom`` and for
    an entry :func:`scan` refuses (the message prefixed ``custom_datasets.<name>:``)."""
    inputs = {}
    for name in datasets:
        if name not in DATASETS and name not in custom:
            raise DatasetError(f"dataset {name!r} is neither built in ({', '.join(DATASETS)}) nor defined under "
                               "custom_datasets")
        if name in custom:
            try:
                _, sources, _ = scan(name, custom[name])
            except DatasetError as exc:
                raise DatasetError(f"custom_datasets.{name}: {exc}") from None
            inputs[name] = sorted({str(s.path) for s in sources} |
                                  ({custom[name]["path"]} if custom[name]["format"] == "csv" else set()))
    return inputs


def spec_of(name: str, entry: dict) -> DatasetSpec:
    """The spec of a custom dataset; its classes are the entry's, else (scanning the files) the names found."""
    if not entry.get("classes"):
        return scan(name, entry)[0]
    check_name(name)
    return DatasetSpec(name=name, title=entry.get("title") or f"{name} (your own images)",
                       classes=tuple(entry["classes"]), positive_class=entry.get("positive_class"),
                       mirror_dir="", mirror_tar="")


# --------------------------------------------------------------------------- decoding


def _to_uint8(values: np.ndarray, lo: float, hi: float, invert: bool = False) -> np.ndarray:
    unit = np.clip((values - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros(values.shape)
    return np.round((1.0 - unit if invert else unit) * 255.0).astype(np.uint8)


def _range(values: np.ndarray, voi: str) -> tuple[float, float]:
    if voi == "percentile":
        lo, hi = np.percentile(values, (0.5, 99.5))
        return float(lo), float(hi)
    return float(values.min()), float(values.max())


def decode_dicom(path: Path, voi: str = "header", multiframe: str = "error") -> tuple[np.ndarray, str | None, str]:
    """(8-bit grayscale pixels, PatientID or None, a description of the format) of one DICOM file.

    Monochrome: modality LUT (rescale slope and intercept), then the VOI LUT or the first window of the header
    (``voi: header``; min-max where the header has none), or the image's own min-max / 0.5-99.5 percentiles;
    mapped linearly to 0-255; MONOCHROME1 inverted. Colour: ITU-R 601 luma. The PatientID returned must stay in
    memory (grouping only)."""
    import pydicom

    # pydicom's warnings and log lines may quote header values (an invalid date, a name): they must not reach logs
    warnings.filterwarnings("ignore", module="pydicom")
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:  # noqa: BLE001 - InvalidDicomError, truncated files, bad elements ...
        raise CorruptImageError(f"cannot read DICOM file {path}: {exc}") from exc
    try:
        return _dicom_pixels(ds, path, voi, multiframe)
    except CorruptImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - a malformed header value (WindowCenter 'abcde', ...) and the like
        # the exception's text is not quoted: it may hold a header value, and headers hold patient information
        raise CorruptImageError(f"DICOM file {path}: malformed header value or pixel data ({type(exc).__name__}; "
                                "the value is not shown)") from None


def _dicom_pixels(ds, path: Path, voi: str, multiframe: str) -> tuple[np.ndarray, str | None, str]:
    from pydicom.multival import MultiValue
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    if "PixelData" not in ds:
        raise CorruptImageError(f"DICOM file {path} holds no pixel data")
    syntax = ds.file_meta.get("TransferSyntaxUID")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1 and multiframe == "error":
        raise CorruptImageError(f"DICOM file {path} has {frames} frames; set dicom.multiframe to 'first' or "
                                "'middle' in the dataset's entry to use one of them")
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - pydicom names the missing decoder plugins
        name = f"{syntax.name} ({syntax})" if syntax else "unknown"
        raise CorruptImageError(f"DICOM file {path}: cannot decode pixel data in transfer syntax {name}: "
                                f"{' '.join(str(exc).split())} (compressed syntaxes need a decoder plugin, e.g. "
                                "pylibjpeg with pylibjpeg-libjpeg / -openjpeg)") from exc
    if frames > 1:
        pixels = pixels[0 if multiframe == "first" else frames // 2]
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    kind = f"DICOM {photometric} {int(ds.get('BitsStored', 8))}-bit" + (f", {frames} frames" if frames > 1 else "")
    kind += f", {syntax.name}" if syntax and syntax.is_compressed else ""
    if pixels.ndim == 3:  # colour (pydicom converts YBR to RGB)
        luma = pixels[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        top = float(2 ** int(ds.get("BitsStored", 8)) - 1)
        return _to_uint8(luma, 0.0, top), ds.get("PatientID") or None, kind
    values = np.asarray(apply_modality_lut(pixels, ds), dtype=np.float64)
    if voi == "header" and "VOILUTSequence" in ds:
        values = np.asarray(apply_voi_lut(values, ds, index=0, prefer_lut=True), dtype=np.float64)
        lo, hi = 0.0, float(2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1)
        kind += ", VOI LUT"
    elif voi == "header" and "WindowCenter" in ds and "WindowWidth" in ds:
        center, width = (float(v[0] if isinstance(v, MultiValue) else v) for v in (ds.WindowCenter, ds.WindowWidth))
        lo, hi = center - width / 2.0, center + width / 2.0
        kind += ", window"
    else:
        lo, hi = _range(values, voi)
        kind += ", percentiles" if voi == "percentile" else ", min-max"
    return _to_uint8(values, lo, hi, invert=photometric == "MONOCHROME1"), ds.get("PatientID") or None, kind


def decode_file(path: Path, dicom: dict | None = None) -> tuple[np.ndarray, str | None, str]:
    """(8-bit grayscale pixels, DICOM PatientID or None, format) of an image file; raises CorruptImageError (naming
    the file) whatever goes wrong."""
    dicom = {**DEFAULTS["dicom"], **(dicom or {})}
    try:
        if is_dicom(path):
            return decode_dicom(path, dicom["voi"], dicom["multiframe"])
        return _decode_image(path, dicom)
    except CorruptImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - an unreadable file, a decompression bomb, ...
        raise CorruptImageError(f"cannot decode image {path}: {type(exc).__name__}: {exc}") from exc


def _decode_image(path: Path, dicom: dict) -> tuple[np.ndarray, str | None, str]:
    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit / float PNG and TIFF
                values = np.asarray(im, dtype=np.float64)
                policy = "percentile" if dicom["voi"] == "percentile" else "minmax"
                return _to_uint8(values, *_range(values, policy)), None, f"{im.format} 16-bit"
            fmt = im.format
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise CorruptImageError(f"cannot decode image {path}: {exc}") from exc
    return decode_grayscale(data, str(path)), None, fmt


# --------------------------------------------------------------------------- splits and ingest


def carve_test_split(labels: list[int], groups: list[int], fraction: float, seed: int) -> np.ndarray:
    """A boolean mask of test images: stratified by class, grouped (scikit-learn's StratifiedGroupKFold, first of
    ``round(1 / fraction)`` folds), seeded."""
    from sklearn.model_selection import StratifiedGroupKFold

    y, g = np.asarray(labels), np.asarray(groups)
    per_class = Counter(labels)
    n_splits = min(max(2, int(round(1.0 / fraction))), len(set(groups)), max(per_class.values()))
    if n_splits < 2 or min(per_class.values()) < 2:
        raise DatasetError(f"cannot carve a test split from {len(labels)} images of {len(set(groups))} patients "
                           f"(images per class: {sorted(per_class.values())}); add images or give the split")
    with warnings.catch_warnings():  # "least populated class has only N members": fine for small sets
        warnings.simplefilter("ignore", UserWarning)
        folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        _, test_idx = next(folds.split(np.zeros(len(y)), y, g))
    mask = np.zeros(len(y), dtype=bool)
    mask[test_idx] = True
    if mask.all() or not mask.any():
        raise DatasetError(f"the carved test split of {len(labels)} images is {'everything' if mask.all() else 'empty'}")
    return mask


def assign_splits(name: str, spec: DatasetSpec, sources: list[Source], groups: list[int],
                  entry: dict) -> list[str]:
    """The split of each source: as given, else carved (:func:`carve_test_split` with the entry's test_fraction
    and seed). Raises :class:`DatasetError` when a class would have no image in the carved train or test split
    (its metrics would be undefined)."""
    if sources and sources[0].split is not None:
        return [s.split for s in sources]
    fraction, seed = split_settings(entry)
    labels = [spec.classes.index(s.class_name) for s in sources]
    test = carve_test_split(labels, groups, fraction, seed)
    splits = ["test" if t else "train" for t in test]
    for c in spec.classes:
        n = {sp: sum(1 for s, x in zip(sources, splits) if s.class_name == c and x == sp) for sp in ("train", "test")}
        for sp in ("test", "train"):
            if not n[sp]:
                raise DatasetError(
                    f"dataset {name}: the carved {sp} split (test_fraction {fraction}, seed {seed}) holds no image "
                    f"of class {c!r} ({n['train'] + n['test']} images); "
                    + ("raise test_fraction, " if sp == "test" else "lower test_fraction, ")
                    + f"add images of {c!r}, or give the split (train/ and test/ folders, or a split column)")
    return splits


def split_settings(entry: dict) -> tuple[float, int]:
    return (float(entry.get("test_fraction", DEFAULTS["test_fraction"])),
            int(entry.get("seed", DEFAULTS["seed"])))


def _decode_all(sources: list[Source], dicom: dict, threads: int, problems: list | None):
    """Decode every source; on a bad file raise (``problems`` None) or record the message and go on."""
    def work(s: Source):
        try:
            return decode_file(s.path, dicom)
        except CorruptImageError as exc:
            if problems is None:
                raise
            problems.append(str(exc))
            return None

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        return list(progress(pool.map(work, sources), len(sources), "decode your images"))


def _patient_groups(sources: list[Source], decoded) -> tuple[list[int], int, str | None]:
    """An opaque group number per image (order of first appearance; an image without a patient id is its own
    group, numbered after the patients), the number of patients and where the ids came from. The ids themselves
    are dropped here."""
    ids = [s.patient or (d[1] if d else None) for s, d in zip(sources, decoded)]
    first: dict[str, int] = {}
    groups = [first.setdefault(pid, len(first)) if pid is not None else -1 for pid in ids]
    n = len(first)
    groups = [g if g >= 0 else n + i for i, g in enumerate(groups)]
    origin = ("patient_id column" if any(s.patient for s in sources) else
              "DICOM PatientID" if any(d and d[1] for d in decoded) else None)
    return groups, n, origin


def ingest(name: str, entry: dict, out_dir: str | Path, threads: int = 1) -> dict:
    """Decode a custom dataset and write ``images.tar``, ``manifest.csv`` and ``download.json`` into ``out_dir``
    (atomically; nothing is written when a file is bad: the error names it)."""
    spec, sources, ignored = scan(name, entry)
    decoded = _decode_all(sources, entry.get("dicom") or {}, threads, None)
    groups, n_patients, origin = _patient_groups(sources, decoded)
    labels = [spec.classes.index(s.class_name) for s in sources]
    carved = sources[0].split is None
    fraction, seed = split_settings(entry)
    splits = assign_splits(name, spec, sources, groups, entry)
    entries = {}
    for i, (s, (pixels, _, _), split, label, group) in enumerate(zip(sources, decoded, splits, labels, groups)):
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="PNG")  # pixels only: no header, no metadata
        data = buf.getvalue()
        member = f"{name}/{split}/{s.class_name}/{i:06d}.png"
        entries[member] = ({"path": member, "split": split, "class_name": s.class_name, "label": label,
                            "sha256": hashlib.sha256(data).hexdigest(),
                            "patient_group": group if group < n_patients else "",
                            "source_sha256": hashlib.sha256(s.path.read_bytes()).hexdigest()}, data)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_tar_and_manifest(out_dir, entries, COLUMNS)
    train_groups = {g for g, sp in zip(groups, splits) if sp == "train"}
    report = {
        "dataset": name,
        "source": "custom",
        "format": entry["format"],
        "classes": list(spec.classes),
        "images": len(sources),
        "files_ignored": len(ignored),
        "formats": dict(sorted(Counter(d[2] for d in decoded).items())),
        "counts": {sp: {c: sum(1 for x, y in zip(splits, sources) if x == sp and y.class_name == c)
                        for c in spec.classes} for sp in ("train", "test")},
        "test_split": ({"carved": True, "fraction": fraction, "seed": seed, "stratified_by": "class",
                        "grouped_by": origin or "image"} if carved else {"carved": False}),
        "patient_id_source": origin,
        "patients_in_train_and_test": len({g for g in train_groups if g < n_patients} &
                                          {g for g, sp in zip(groups, splits) if sp == "test"}) if origin else None,
        "dicom": {**DEFAULTS["dicom"], **(entry.get("dicom") or {})},
        "checksum": "sha256 of every PNG member in manifest.csv; source_sha256: of each source file",
    }
    write_json(out_dir / "download.json", report)
    return report


SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


def validate_entry(name: str, entry) -> list[str]:
    """The problems of a ``custom_datasets`` entry under the workflow's JSON schema (unknown or misspelled keys,
    values outside an enum or range), each as ``custom_datasets.<name>.<key>: <what is wrong>``."""
    import jsonschema
    import yaml

    if not SCHEMA.is_file():  # an installed package without the workflow: nothing to validate against
        return []
    full = yaml.safe_load(SCHEMA.read_text())
    schema = full["properties"]["custom_datasets"]
    # the draft the schema declares (as Snakemake), references resolved against the whole schema
    validator = jsonschema.validators.validator_for(full)(full).evolve(schema=schema)
    config = {"custom_datasets": {name: entry}}
    return [f"{'.'.join(['custom_datasets', *map(str, e.absolute_path)])}: {e.message}"
            for e in sorted(validator.iter_errors(config["custom_datasets"]),
                            key=lambda e: list(map(str, e.absolute_path)))]


def check(name: str, entry: dict, threads: int = 1) -> dict:
    """What :func:`ingest` would find, without writing anything: the entry checked against the workflow's schema,
    counts per split (the test split carved as ingest carves it) and class, image sizes, formats, and every problem
    (a bad file does not stop the check)."""
    problems = validate_entry(name, entry)
    if problems:
        return {"dataset": name, "problems": problems}
    try:
        spec, sources, ignored = scan(name, entry)
    except DatasetError as exc:
        return {"dataset": name, "problems": [str(exc)]}
    decoded = _decode_all(sources, entry.get("dicom") or {}, threads, problems)
    good = [(s, d) for s, d in zip(sources, decoded) if d is not None]
    groups, n_patients, origin = _patient_groups([s for s, _ in good], [d for _, d in good])
    carved = sources[0].split is None
    splits = ["to carve"] * len(good)
    if good:
        try:  # the split ingest would give the decoded images
            splits = assign_splits(name, spec, [s for s, _ in good], groups, entry)
        except DatasetError as exc:
            problems.append(str(exc))
    counts = Counter((sp, s.class_name) for sp, (s, _) in zip(splits, good))
    shapes = [d[0].shape for _, d in good]
    if origin and sources[0].split is not None:
        by_split = {sp: {g for g, (s, _) in zip(groups, good) if s.split == sp} for sp in ("train", "test")}
        shared = {g for g in by_split["train"] & by_split["test"] if g < n_patients}
        if shared:
            problems.append(f"{len(shared)} patients have images in both the train "
                            "and the test split (leakage)")
    return {
        "dataset": name,
        "classes": list(spec.classes),
        "counts": {sp: {c: counts[(sp, c)] for c in spec.classes}
                   for sp in ("train", "test", "to carve") if sp in {x for x, _ in counts}},
        "test_split": ({"carved": True, "fraction": split_settings(entry)[0], "seed": split_settings(entry)[1]}
                       if carved else {"carved": False}),
        "images": len(sources),
        "decoded": len(good),
        "patients": n_patients if origin else None,
        "patient_id_source": origin,
        "formats": dict(sorted(Counter(d[2] for _, d in good).items())),
        "height": [min(s[0] for s in shapes), max(s[0] for s in shapes)] if shapes else None,
        "width": [min(s[1] for s in shapes), max(s[1] for s in shapes)] if shapes else None,
        "files_ignored": [str(p) for p in ignored],
        "problems": problems,
    }


def check_text(report: dict) -> str:
    """:func:`check`'s report as the lines ``cryptomed dataset check`` prints."""
    lines = [f"dataset {report['dataset']}"]
    if "counts" in report:
        classes = report["classes"]
        lines[0] += f": {report['images']} image files, {report['decoded']} decoded; classes {', '.join(classes)}"
        width = max(len(c) for c in classes + ["split", "to carve"]) + 2
        lines.append("  " + "split".ljust(10) + "".join(c.rjust(width) for c in classes + ["total"]))
        for split, counts in report["counts"].items():
            lines.append("  " + split.ljust(10) + "".join(str(counts[c]).rjust(width) for c in classes) +
                         str(sum(counts.values())).rjust(width))
        lines.append("formats: " + "; ".join(f"{k}: {v}" for k, v in report["formats"].items()))
        if report["height"]:
            lines.append(f"sizes: height {report['height'][0]}-{report['height'][1]} px, width "
                         f"{report['width'][0]}-{report['width'][1]} px")
        lines.append(f"patients: {report['patients']} ({report['patient_id_source']})" if report["patient_id_source"]
                     else "patients: no patient ids (each image is its own group)")
        split = report["test_split"]
        lines.append(f"test split: carved (test_fraction {split['fraction']}, seed {split['seed']}, stratified by "
                     f"class, grouped by {report['patient_id_source'] or 'image'})" if split["carved"] else "test split: given")
        ignored = report["files_ignored"]
        if ignored:
            lines.append(f"ignored (not an image, or a DICOMDIR): {len(ignored)} files")
            lines += [f"  {p}" for p in ignored[:10]] + ([f"  ... and {len(ignored) - 10} more"] if len(ignored) > 10 else [])
    lines.append(f"problems: {len(report['problems'])}" if report["problems"] else "problems: none")
    lines += [f"  {p}" for p in report["problems"]]
    return "\n".join(lines)
