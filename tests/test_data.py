import csv
import io
import tarfile

import numpy as np
import pytest

from conftest import png_bytes, random_image
from cryptomed.data import CorruptImageError, PreprocessSettings, decode_grayscale, preprocess, resize
from cryptomed.datasets import get_dataset

SPEC = get_dataset("chest_xray")


def make_raw(tmp_path, items):
    """items: list of (member, split, class_name, bytes) -> (tar, manifest) like download's output."""
    tar_path, manifest_path = tmp_path / "images.tar", tmp_path / "manifest.csv"
    with tarfile.open(tar_path, "w") as tf:
        for member, _, _, data in items:
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    with open(manifest_path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "split", "class_name", "label", "sha256"])
        for member, split, cls, _ in items:
            w.writerow([member, split, cls, SPEC.classes.index(cls), "-"])
    return tar_path, manifest_path


@pytest.fixture
def raw(tmp_path):
    rng = np.random.default_rng(1)
    items = []
    test_imgs = {}
    for split, n in (("train", 20), ("test", 6)):
        for cls in SPEC.classes:
            for i in range(n):
                img = random_image(rng)
                if split == "test":
                    test_imgs[(cls, i)] = img
                items.append((f"r/{split}/{cls}/{cls}_{i}.png", split, cls, png_bytes(img)))
    # leakage: a train copy of a test image, and a within-train duplicate
    items.append(("r/train/NORMAL/leak.png", "train", "NORMAL", png_bytes(test_imgs[("NORMAL", 0)])))
    items.append(("r/train/PNEUMONIA/dup.png", "train", "PNEUMONIA", items[0][3]))
    return make_raw(tmp_path, items)


def test_decode_rejects_corrupt_bytes_naming_the_file():
    with pytest.raises(CorruptImageError, match="weird.jpeg"):
        decode_grayscale(b"\xff\xd8 not really a jpeg", "archive.tar:weird.jpeg")


def test_decode_converts_rgb_to_gray():
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (5, 4), (10, 200, 30)).save(buf, format="PNG")
    px = decode_grayscale(buf.getvalue(), "x")
    assert px.shape == (4, 5) and px.dtype == np.uint8


@pytest.mark.parametrize("aspect", ["pad", "center_crop", "stretch"])
def test_resize_policies_give_square_output(aspect):
    img = np.full((30, 60), 255, np.uint8)
    out = resize(img, 16, aspect)
    assert out.shape == (16, 16)
    if aspect == "pad":  # black bars top and bottom, nothing cropped
        assert out[0].max() < 50 and out[8].min() > 200
    else:
        assert out.min() > 200


def test_preprocess_drops_leakage_keeps_test_whole_and_stratifies_val(raw):
    tar, manifest = raw
    arrays, rows, report, dropped, _ = preprocess(SPEC, tar, manifest,
                                                  PreprocessSettings(image_size=12, val_fraction=0.2, seed=3))
    assert report["dropped"]["train_copies_of_test"] == 1
    assert report["near_copies"]["train_copies_of_test_dropped"]["by_kind"]["exact"] == 1
    assert {d["source_path"]: d["reason"] for d in dropped} == {
        "r/train/NORMAL/leak.png": "copy_of_test", "r/train/PNEUMONIA/dup.png": "duplicate_within_train"}
    assert "leak.png" not in str(report)  # the report (results/) holds counts, not file names
    assert report["dropped"]["train_duplicates_within_train"] == 1
    assert report["counts"]["test"]["total"] == 12  # untouched
    assert report["counts"]["val"] == {"NORMAL": 4, "PNEUMONIA": 4, "total": 8}
    assert report["counts"]["train"]["total"] == 32
    assert arrays["images"].shape == (52, 12, 12)
    # opaque ids in a shuffled order: ids reveal neither source name nor class
    assert all(len(i) == 6 and i.isdigit() for i in arrays["ids"])
    assert not all(np.diff(arrays["labels"]) >= 0)
    sources = {r["source_path"] for r in rows}
    assert "r/train/NORMAL/leak.png" not in sources


def test_preprocess_is_deterministic(raw):
    tar, manifest = raw
    a1 = preprocess(SPEC, tar, manifest, PreprocessSettings(image_size=12)).arrays
    a2 = preprocess(SPEC, tar, manifest, PreprocessSettings(image_size=12), threads=3).arrays
    for k in a1:
        np.testing.assert_array_equal(a1[k], a2[k])


def test_corrupt_image_errors_or_is_skipped_and_counted(tmp_path):
    rng = np.random.default_rng(2)
    items = [(f"r/{s}/{c}/{i}.png", s, c, png_bytes(random_image(rng)))
             for s in ("train", "test") for c in SPEC.classes for i in range(4)]
    items.append(("r/train/NORMAL/broken.jpeg", "train", "NORMAL", b"\xff\xd8\xff\xe0 truncated"))
    tar, manifest = make_raw(tmp_path, items)
    with pytest.raises(CorruptImageError, match="broken.jpeg"):
        preprocess(SPEC, tar, manifest, PreprocessSettings(image_size=8))
    result = preprocess(SPEC, tar, manifest, PreprocessSettings(image_size=8, on_corrupt="skip"))
    assert result.report["dropped"]["corrupt_skipped"] == 1
    assert [d["source_path"] for d in result.dropped if d["reason"] == "corrupt"] == ["r/train/NORMAL/broken.jpeg"]


def test_subset_per_class(raw):
    tar, manifest = raw
    report = preprocess(SPEC, tar, manifest, PreprocessSettings(image_size=8, max_per_class=5)).report
    assert report["source_images"] == 20


def test_settings_are_validated():
    with pytest.raises(ValueError, match="aspect"):
        PreprocessSettings(aspect="squash")


def test_preprocess_test_like_validation_keeps_groups_and_class_shares(raw):
    tar, manifest = raw
    result = preprocess(SPEC, tar, manifest,
                        PreprocessSettings(image_size=16, val_fraction=0.2, seed=3, test_like_validation=True))
    report, splits, labels = result.report, result.arrays["splits"], result.arrays["labels"]
    assert report["validation"]["method"].startswith("test_like")
    assert 0.0 <= report["validation"]["domain_auc_train_vs_test"] <= 1.0
    assert (splits == "test").sum() == 12  # the test split is untouched
    for k in range(len(SPEC.classes)):  # round(0.2 * class size) of each class's training images
        n = ((splits != "test") & (labels == k)).sum()
        assert ((splits == "val") & (labels == k)).sum() == round(0.2 * n)
    assert report["near_copies"]["check"]["val_images_with_a_copy_in_train"] == 0
    default = preprocess(SPEC, tar, manifest, PreprocessSettings(image_size=16, val_fraction=0.2, seed=3)).report
    assert default["validation"]["method"].startswith("random")


def _split_manifest(tmp_path, rows):
    import pandas as pd

    path = tmp_path / "split_manifest.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_source_images_are_the_preprocessed_records_at_another_size(raw, tmp_path):
    from cryptomed.data import source_images

    tar, manifest = raw
    arrays, rows, *_ = preprocess(SPEC, tar, manifest, PreprocessSettings(image_size=12))
    split_manifest = _split_manifest(tmp_path, rows)
    ids = arrays["ids"][::-1]  # any order: the result follows the ids given
    same = source_images(tar, split_manifest, ids, 12)
    np.testing.assert_array_equal(same, arrays["images"][::-1])
    larger = source_images(tar, split_manifest, ids[:5], 24, threads=2)
    assert larger.shape == (5, 24, 24) and larger.dtype == np.uint8
    with tarfile.open(tar) as tf:
        first = [r for r in rows if r["id"] == ids[0]][0]
        pixels = decode_grayscale(tf.extractfile(first["source_path"]).read(), "x")
    np.testing.assert_array_equal(larger[0], resize(pixels, 24))


def test_source_images_refuse_unknown_records_and_changed_sources(raw, tmp_path):
    from cryptomed import CryptomedError
    from cryptomed.data import source_images

    tar, manifest = raw
    arrays, rows, *_ = preprocess(SPEC, tar, manifest, PreprocessSettings(image_size=12))
    split_manifest = _split_manifest(tmp_path, rows)
    with pytest.raises(CryptomedError, match="999999"):
        source_images(tar, split_manifest, ["999999"], 12)
    # a source file replaced after preprocessing: the record is named, nothing returned
    changed = [dict(r) for r in rows]
    changed[0]["pixel_sha256"] = "0" * 64
    with pytest.raises(CryptomedError, match=f"record {changed[0]['id']}: .*{changed[0]['source_path']}"):
        source_images(tar, _split_manifest(tmp_path, changed), [changed[0]["id"]], 12)
    gone = [dict(r) for r in rows]
    gone[0]["source_path"] = "r/train/NORMAL/missing.png"
    with pytest.raises(CryptomedError, match="missing.png"):
        source_images(tar, _split_manifest(tmp_path, gone), [gone[0]["id"]], 12)
