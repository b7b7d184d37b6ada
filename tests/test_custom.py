"""Your own images (cryptomed.custom): folder and CSV layouts, DICOM decoding, the carved test split, errors,
`cryptomed dataset check`, and that no DICOM patient field reaches what ingest writes."""

import csv
import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from cryptomed import custom
from cryptomed.cli import main as cli_main
from cryptomed.data import CorruptImageError, PreprocessSettings, run_preprocess
from cryptomed.datasets import dataset_spec
from dicom_helpers import PATIENT, dicom_folder, write_dicom


def png_folder(root, classes=("cats", "dogs"), n=8, splits=None, seed=0):
    rng = np.random.default_rng(seed)
    for split in splits or [None]:
        for k, cls in enumerate(classes):
            folder = root / split / cls if split else root / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (20 + i, 24), dtype=np.uint8)).save(folder / f"img{i}.png")
    return root


def write_csv(path, rows, columns=("path", "label")):
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows(rows)
    return path


def test_folder_of_class_subfolders_gets_a_stratified_seeded_test_split(tmp_path):
    root = png_folder(tmp_path / "imgs", n=10)
    (root / "cats" / "notes.txt").write_text("not an image")
    entry = {"format": "folder", "path": str(root)}
    report = custom.ingest("pets", entry, tmp_path / "out")
    assert report["classes"] == ["cats", "dogs"] and report["files_ignored"] == 1
    assert report["counts"] == {"train": {"cats": 8, "dogs": 8}, "test": {"cats": 2, "dogs": 2}}
    assert report["test_split"] == {"carved": True, "fraction": 0.2, "seed": 42, "stratified_by": "class",
                                    "grouped_by": "image"}
    first = (tmp_path / "out" / "manifest.csv").read_text()
    custom.ingest("pets", entry, tmp_path / "again")
    assert (tmp_path / "again" / "manifest.csv").read_text() == first  # seeded: the same split again
    custom.ingest("pets", {**entry, "seed": 7}, tmp_path / "other")
    assert (tmp_path / "other" / "manifest.csv").read_text() != first
    with tarfile.open(tmp_path / "out" / "images.tar") as tf:
        names = tf.getnames()
    assert all(n.startswith("pets/") and n.endswith(".png") and "img" not in n for n in names)  # opaque names


def test_train_and_test_folders_are_kept_and_must_both_exist(tmp_path):
    root = png_folder(tmp_path / "imgs", splits=["train", "test"], n=3)
    report = custom.ingest("pets", {"format": "folder", "path": str(root)}, tmp_path / "out")
    assert report["test_split"] == {"carved": False}
    assert report["counts"] == {"train": {"cats": 3, "dogs": 3}, "test": {"cats": 3, "dogs": 3}}
    only_train = png_folder(tmp_path / "only", splits=["train"], n=2)
    with pytest.raises(custom.DatasetError, match="no test/ folder"):
        custom.scan("pets", {"format": "folder", "path": str(only_train)})


def test_folder_layout_errors_name_the_folder(tmp_path):
    mixed = png_folder(tmp_path / "mixed", classes=("train", "val"), n=1)
    with pytest.raises(custom.DatasetError, match=r"mixed: holds train/ or test/ beside other folders \(train, val\)"):
        custom.scan("pets", {"format": "folder", "path": str(mixed)})
    empty = png_folder(tmp_path / "empty", n=1)
    (empty / "ferrets").mkdir()
    with pytest.raises(custom.DatasetError, match=r"empty/ferrets: class folder holds no image files"):
        custom.scan("pets", {"format": "folder", "path": str(empty)})
    with pytest.raises(custom.DatasetError, match="no class sub-folders"):
        custom.scan("pets", {"format": "folder", "path": str(empty / "cats")})


def test_csv_with_split_and_patient_columns(tmp_path):
    png_folder(tmp_path, n=6)
    rows = [(f"{c}/img{i}.png", c, "test" if i < 2 else "train", f"p{i // 2}") for c in ("cats", "dogs")
            for i in range(6)]
    entry = {"format": "csv", "path": str(write_csv(tmp_path / "list.csv", rows,
                                                    ("path", "label", "split", "patient_id")))}
    report = custom.ingest("pets", entry, tmp_path / "out")
    assert report["counts"]["test"] == {"cats": 2, "dogs": 2} and report["patient_id_source"] == "patient_id column"
    manifest = list(csv.DictReader(open(tmp_path / "out" / "manifest.csv")))
    assert {r["patient_group"] for r in manifest} == {"0", "1", "2"}  # opaque numbers, not "p0".."p2"
    assert report["patients_in_train_and_test"] == 0


def test_carved_test_split_keeps_each_patient_on_one_side(tmp_path):
    png_folder(tmp_path, n=12)
    rows = [(f"{c}/img{i}.png", c, f"{c}-patient{i // 3}") for c in ("cats", "dogs") for i in range(12)]
    entry = {"format": "csv", "path": str(write_csv(tmp_path / "l.csv", rows, ("path", "label", "patient_id"))),
             "test_fraction": 0.25}
    custom.ingest("pets", entry, tmp_path / "out")
    manifest = list(csv.DictReader(open(tmp_path / "out" / "manifest.csv")))
    sides = {}
    for r in manifest:
        sides.setdefault(r["patient_group"], set()).add(r["split"])
    assert len(sides) == 8 and all(len(s) == 1 for s in sides.values())
    assert {r["split"] for r in manifest} == {"train", "test"}


@pytest.mark.parametrize("rows, columns, message", [
    ([("cats/img0.png", "cats"), ("cats/missing.png", "cats")], ("path", "label"), r"l\.csv:3: image file .*missing"),
    ([("cats/img0.png", "cats"), ("dogs/img0.png", "birds")], ("path", "label"), r"l\.csv:3: label 'birds'"),
    ([("cats/img0.png", "cats"), ("dogs/img0.png", "dogs")], ("path", "label"), "class 'ferrets' has no images"),
    ([("cats/img0.png", "cats", "train"), ("dogs/img0.png", "dogs", "train")], ("path", "label", "split"),
     "the test split .* is empty"),
    ([("cats/img0.png", "cats", "validation")], ("path", "label", "split"), r"l\.csv:2: split 'validation'"),
    ([("cats/img0.png",)], ("path",), r"lacks the column\(s\) \['label'\]"),
])
def test_bad_csv_entries_are_refused_naming_the_line_or_class(tmp_path, rows, columns, message):
    png_folder(tmp_path, n=1)
    entry = {"format": "csv", "path": str(write_csv(tmp_path / "l.csv", rows, columns))}
    entry["classes"] = ["cats", "dogs", "ferrets"] if "ferrets" in message else ["cats", "dogs"]
    with pytest.raises(custom.DatasetError, match=message):
        custom.ingest("pets", entry, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_a_single_class_is_refused(tmp_path):
    root = png_folder(tmp_path / "imgs", classes=("cats",), n=6)
    with pytest.raises(custom.DatasetError, match=r"at least 2 classes; .*imgs has 1 \(cats\)"):
        custom.ingest("pets", {"format": "folder", "path": str(root)}, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_class_missing_from_the_carved_test_split_is_refused_naming_it(tmp_path):
    root = png_folder(tmp_path / "imgs", classes=("cats",), n=12)
    png_folder(root, classes=("dogs",), n=2)  # seed 42 carves no test image of dogs from these
    with pytest.raises(custom.DatasetError, match=r"carved test split .*no image of class 'dogs'.*test_fraction.*"
                                                  r"add images.*give the split"):
        custom.ingest("pets", {"format": "folder", "path": str(root)}, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert cli_main(["dataset", "check", "--path", str(root)]) == 1  # dataset check carves too


def test_a_class_missing_from_the_given_test_folder_is_refused_naming_it(tmp_path):
    root = png_folder(tmp_path / "imgs", splits=["train"], n=3)
    png_folder(root / "test", classes=("cats",), n=2)
    with pytest.raises(custom.DatasetError, match=r"class 'dogs' has no images in the test split"):
        custom.scan("pets", {"format": "folder", "path": str(root)})


def test_a_csv_saved_with_a_byte_order_mark_is_read(tmp_path):
    png_folder(tmp_path, n=5)
    path = write_csv(tmp_path / "l.csv", [(f"{c}/img{i}.png", c) for c in ("cats", "dogs") for i in range(5)])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # as Excel writes "CSV UTF-8"
    assert custom.ingest("pets", {"format": "csv", "path": str(path)}, tmp_path / "out")["images"] == 10


def test_too_few_images_to_carve_a_test_split_is_a_clear_error(tmp_path):
    root = png_folder(tmp_path / "imgs", n=1)
    with pytest.raises(custom.DatasetError, match="cannot carve a test split from 2 images"):
        custom.ingest("pets", {"format": "folder", "path": str(root)}, tmp_path / "out")


def test_a_bad_image_stops_ingest_naming_it_and_writes_nothing(tmp_path):
    root = png_folder(tmp_path / "imgs", n=3)
    (root / "dogs" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(CorruptImageError, match="broken.png"):
        custom.ingest("pets", {"format": "folder", "path": str(root)}, tmp_path / "out")
    assert not list((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else True


@pytest.mark.parametrize("name", ["chest_xray", "My-Set", "1set", "a/b", ""])
def test_names_are_safe_and_do_not_clash_with_built_ins(name):
    with pytest.raises(custom.DatasetError, match="dataset name"):
        custom.check_name(name)


def test_dataset_spec_of_a_custom_entry(tmp_path):
    root = png_folder(tmp_path / "imgs", n=1)
    config = {"custom_datasets": {"pets": {"format": "folder", "path": str(root), "positive_class": "dogs"}}}
    spec = dataset_spec("pets", config)
    assert spec.classes == ("cats", "dogs") and spec.positive_class == "dogs" and spec.patient_pattern is None
    assert dataset_spec("chest_xray", config).classes == ("NORMAL", "PNEUMONIA")
    ordered = dataset_spec("pets", {"custom_datasets": {"pets": {**config["custom_datasets"]["pets"],
                                                                 "classes": ["dogs", "cats"]}}})
    assert ordered.classes == ("dogs", "cats")


# --------------------------------------------------------------------------- DICOM


def test_dicom_modality_rescale_window_and_monochrome1(tmp_path):
    ramp = (np.arange(256).reshape(16, 16) * 16).astype(np.uint16)  # 0 .. 4080, 12 bits
    pixels, pid, kind = custom.decode_file(write_dicom(tmp_path / "a.dcm", ramp, window=(2048, 4096)))
    assert pid == PATIENT["PatientID"] and kind == "DICOM MONOCHROME2 12-bit, window"
    assert np.array_equal(pixels.ravel(), np.round(np.arange(256) * 16 / 4096 * 255).astype(np.uint8))
    # slope 2, intercept -1000: pixel i holds 32 i - 1000; window 0 +- 1000 maps -1000 -> 0, >= 1000 -> 255 and
    # pixel 47 (504; 752 without the rescale) -> 192
    pixels, _, _ = custom.decode_file(write_dicom(tmp_path / "b.dcm", ramp, slope=2, intercept=-1000,
                                                  window=(0, 2000)))
    assert pixels.ravel()[0] == 0 and pixels.ravel()[63] == 255 and pixels.ravel()[47] == 192
    inverted, _, kind = custom.decode_file(write_dicom(tmp_path / "c.dcm", ramp, photometric="MONOCHROME1"))
    assert kind.endswith("min-max") and inverted.ravel()[0] == 255 and inverted.ravel()[-1] == 0
    plain, _, _ = custom.decode_file(tmp_path / "a.dcm", {"voi": "minmax"})
    assert plain.ravel()[-1] == 255 and plain.ravel()[0] == 0


def test_dicom_multiframe_is_refused_or_one_frame_per_the_config(tmp_path):
    frames = np.stack([np.full((8, 8), v) for v in (0, 1000, 2000)]).astype(np.uint16)
    frames[:, 0, 0], frames[:, 0, 1] = 4000, 0  # every frame spans 0..4000 (min-max per frame)
    path = write_dicom(tmp_path / "m.dcm", frames, frames=True)
    with pytest.raises(CorruptImageError, match=r"m\.dcm has 3 frames.*multiframe"):
        custom.decode_file(path)
    first, _, kind = custom.decode_file(path, {"multiframe": "first"})
    middle, _, _ = custom.decode_file(path, {"multiframe": "middle"})
    assert "3 frames" in kind and first[1, 1] == 0 and middle[1, 1] == round(1000 / 4000 * 255)


def test_dicom_test_data_of_pydicom(tmp_path):
    from pydicom.data import get_testdata_file

    mr, pid, _ = custom.decode_file(custom.Path(get_testdata_file("MR_small.dcm")))
    rle, _, kind = custom.decode_file(custom.Path(get_testdata_file("MR_small_RLE.dcm")))  # decoded by pydicom
    assert kind == "DICOM MONOCHROME2 16-bit, RLE Lossless, window"
    assert mr.shape == (64, 64) and mr.dtype == np.uint8 and np.array_equal(mr, rle) and pid
    jpeg_ls = get_testdata_file("MR_small_jpeg_ls_lossless.dcm")
    with pytest.raises(CorruptImageError, match=r"MR_small_jpeg_ls_lossless\.dcm.*JPEG-LS Lossless.*1\.2\.840\.10008"):
        custom.decode_file(custom.Path(jpeg_ls))
    rgb, _, kind = custom.decode_file(custom.Path(get_testdata_file("SC_rgb_small_odd.dcm")))
    assert rgb.ndim == 2 and kind.startswith("DICOM RGB")
    for name in ("MR_small.dcm", "CT_small.dcm"):  # found by the DICM magic without a suffix
        (tmp_path / name.split(".")[0]).write_bytes(open(get_testdata_file(name), "rb").read())
        assert custom.is_dicom(tmp_path / name.split(".")[0])


def test_dicom_files_named_by_uid_are_found_and_a_dicomdir_is_skipped(tmp_path, capsys):
    root = dicom_folder(tmp_path / "dicom", n_patients=6, per_patient=1)
    for path in sorted(root.rglob("*.dcm"))[::2]:  # exported files are often named by their instance UID
        path.rename(path.with_name(f"1.2.840.113619.2.55.{path.stem}"))
    write_dicom(root / "lesion" / "1.2.840.113619.2.55.99", np.zeros((8, 8)))
    for name in ("DICOMDIR", "1.2.840.113619.2.55.index"):  # an index (no pixels), by name or by SOP class
        index = write_dicom(root / "normal" / name, np.zeros((2, 2)))
        import pydicom

        ds = pydicom.dcmread(index)
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = custom.MEDIA_STORAGE_DIRECTORY
        del ds.PixelData
        ds.save_as(index, enforce_file_format=True)
    spec, sources, ignored = custom.scan("scans", {"format": "folder", "path": str(root)})
    assert len(sources) == 7 and sorted(p.name for p in ignored) == ["1.2.840.113619.2.55.index", "DICOMDIR"]
    report = custom.ingest("scans", {"format": "folder", "path": str(root)}, tmp_path / "raw")
    assert report["images"] == 7 and report["files_ignored"] == 2
    assert cli_main(["dataset", "check", "--path", str(root)]) == 0
    out = capsys.readouterr().out
    assert "ignored (not an image, or a DICOMDIR): 2 files" in out and "normal/DICOMDIR" in out


def test_a_malformed_dicom_header_value_is_an_error_naming_the_file_not_the_value(tmp_path, capsys):
    root = dicom_folder(tmp_path / "dicom", n_patients=4, per_patient=2)
    bad = sorted((root / "lesion").iterdir())[0]
    data = bad.read_bytes()
    tag = b"\x28\x00\x50\x10DS\x06\x00"  # WindowCenter, "2048.0"
    assert data.count(tag + b"2048.0") == 1
    bad.write_bytes(data.replace(tag + b"2048.0", tag + b"abcde "))
    with pytest.raises(CorruptImageError, match=rf"{bad.name}: malformed header value") as info:
        custom.ingest("scans", {"format": "folder", "path": str(root)}, tmp_path / "raw")
    assert "abcde" not in str(info.value) and not (tmp_path / "raw").exists()
    assert cli_main(["dataset", "check", "--path", str(root)]) == 1  # listed as a problem, no traceback
    out = capsys.readouterr().out
    assert f"{bad.name}: malformed header value" in out and "abcde" not in out


def test_dataset_check_validates_the_entry_against_the_workflow_schema(tmp_path, capsys):
    root = png_folder(tmp_path / "imgs", n=10)
    config = tmp_path / "params.yaml"
    entry = {"format": "folder", "path": str(root), "test_fration": 0.3, "dicom": {"voi": "minimaxx"}}
    config.write_text(json.dumps({"custom_datasets": {"pets": entry}}))
    assert cli_main(["dataset", "check", "pets", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert "custom_datasets.pets: Additional properties are not allowed ('test_fration' was unexpected)" in out
    assert "custom_datasets.pets.dicom.voi: 'minimaxx' is not one of" in out
    del entry["test_fration"], entry["dicom"]
    config.write_text(json.dumps({"custom_datasets": {"pets": entry}}))
    assert cli_main(["dataset", "check", "pets", "--config", str(config)]) == 0
    out = capsys.readouterr().out  # the carve ingest makes: 8 + 8 train, 2 + 2 test
    assert "problems: none" in out and "test split: carved (test_fraction 0.2, seed 42" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("  t")}
    assert rows == {"train": ["8", "8", "16"], "test": ["2", "2", "4"]}


def test_dicom_folder_ingest_writes_no_patient_field_and_groups_by_patient_id(tmp_path):
    root = dicom_folder(tmp_path / "dicom", n_patients=10, per_patient=3)
    report = custom.ingest("scans", {"format": "folder", "path": str(root)}, tmp_path / "raw")
    assert report["patient_id_source"] == "DICOM PatientID" and report["patients_in_train_and_test"] == 0
    assert report["test_split"]["grouped_by"] == "DICOM PatientID"
    manifest = list(csv.DictReader(open(tmp_path / "raw" / "manifest.csv")))
    sides = {}
    for r in manifest:
        sides.setdefault(r["patient_group"], set()).add(r["split"])
    assert len(sides) == 10 and all(len(s) == 1 for s in sides.values())
    with tarfile.open(tmp_path / "raw" / "images.tar") as tf:  # members are plain PNGs
        member = tf.extractfile(tf.getmembers()[0]).read()
    assert Image.open(io.BytesIO(member)).format == "PNG"
    out = tmp_path / "pre"
    preprocessed = run_preprocess(dataset_spec("scans", {"custom_datasets": {"scans": {
        "format": "folder", "path": str(root)}}}), tmp_path / "raw" / "images.tar", tmp_path / "raw" / "manifest.csv",
        out / "images.npz", out / "split_manifest.csv", out / "data_report.json",
        PreprocessSettings(image_size=16, val_fraction=0.25, near_copy_threshold=None), out_dropped=out / "d.csv")
    assert preprocessed["patients"]["id_source"].startswith("patient_group")
    assert preprocessed["near_copies"]["check"]["patients_in_train_and_val"] == 0
    assert preprocessed["patients"]["train_val_patients"] == sum(
        1 for s in sides.values() if "train" in s)
    needles = [v.encode() for v in PATIENT.values()] + [b"Zyxwvut", b"Quintessa", b"PID-QX", b".dcm"]
    for path in [*(tmp_path / "raw").iterdir(), *out.iterdir()]:
        data = path.read_bytes()
        assert not [n for n in needles if n in data], path


def test_dataset_check_prints_counts_formats_and_problems(tmp_path, capsys):
    root = dicom_folder(tmp_path / "dicom", n_patients=4, per_patient=1)
    write_dicom(root / "lesion" / "multi.dcm", np.zeros((2, 8, 8)), frames=True)
    assert cli_main(["dataset", "check", "--path", str(root)]) == 1
    out = capsys.readouterr().out
    assert "5 image files, 4 decoded; classes lesion, normal" in out and "test split: carved" in out
    assert "DICOM MONOCHROME2 12-bit, window: 4" in out and "patients: 4 (DICOM PatientID)" in out
    assert "problems: 1" in out and "multi.dcm has 2 frames" in out
    (root / "lesion" / "multi.dcm").unlink()
    config = tmp_path / "params.yaml"
    config.write_text(json.dumps({"custom_datasets": {"scans": {"format": "folder", "path": str(root)}}}))
    assert cli_main(["dataset", "check", "scans", "--config", str(config)]) == 0
    assert "problems: none" in capsys.readouterr().out
    assert cli_main(["dataset", "check", "--path", str(tmp_path / "nowhere")]) == 1
    assert "folder not found" in capsys.readouterr().out


@pytest.mark.parametrize("datasets, custom_datasets, message", [
    (["mine"], {"mine": {"format": "folder", "path": "nowhere"}}, "custom_datasets.mine: nowhere: folder not found"),
    (["mine"], {}, "dataset 'mine' is neither built in"),
    (["chest_xray"], {"chest_xray": {"format": "folder", "path": "imgs"}}, "custom_datasets"),
    (["mine"], {"mine": {"format": "zip", "path": "imgs"}}, "'zip' is not one of"),
])
def test_the_workflow_refuses_a_bad_custom_entry_before_any_job(tmp_path, datasets, custom_datasets, message):
    import subprocess
    import sys

    import yaml

    from workflow_helpers import copy_workflow, tool_env

    wd = copy_workflow(tmp_path / "wd")
    png_folder(wd / "imgs", n=2)
    (wd / "bad.yaml").write_text(yaml.safe_dump({"datasets": datasets, "custom_datasets": custom_datasets}))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", "bad.yaml"], cwd=wd,
                          env=tool_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and message in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-2000:]


def test_workflow_inputs_lists_each_custom_datasets_files_and_refuses_an_undefined_name(tmp_path):
    png_folder(tmp_path, n=5)
    path = write_csv(tmp_path / "l.csv", [(f"{c}/img{i}.png", c) for c in ("cats", "dogs") for i in range(5)])
    inputs = custom.workflow_inputs(["chest_xray", "pets"], {"pets": {"format": "csv", "path": str(path)}})
    assert list(inputs) == ["pets"] and len(inputs["pets"]) == 11 and str(path) in inputs["pets"]
    with pytest.raises(custom.DatasetError, match="'mine' is neither built in"):
        custom.workflow_inputs(["mine"], {})
    with pytest.raises(custom.DatasetError, match="custom_datasets.pets: .*folder not found"):
        custom.workflow_inputs(["pets"], {"pets": {"format": "folder", "path": str(tmp_path / "nowhere")}})
