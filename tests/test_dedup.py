"""Near-copy detection and the leakage policy of preprocess: flips, rotations, re-encoding and brightness changes
of a test image are caught; distinct real images are not; validation never shares a patient or a near-copy group
with train."""

import csv
import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from conftest import png_bytes
from cryptomed import dedup
from cryptomed.data import PreprocessSettings, patient_id, preprocess
from cryptomed.datasets import get_dataset
from test_data import make_raw

CHEST = get_dataset("chest_xray")


def real_images(shared_data, n, split="train", class_name="NORMAL"):
    """``n`` real chest X-rays (decoded to 8-bit grayscale) of one split and class, in manifest order."""
    folder = shared_data / "chest_xray_pneumonia"
    with open(folder / "manifest.csv", newline="") as fh:
        names = [r["path"] for r in csv.DictReader(fh) if r["split"] == split and r["class_name"] == class_name][:n]
    out = []
    with tarfile.open(folder / "chest_xray_pneumonia_224.tar") as tf:
        for name in names:
            with Image.open(io.BytesIO(tf.extractfile(name).read())) as im:
                out.append(np.asarray(im.convert("L"), dtype=np.uint8))
    return out


def jpeg(pixels, quality=75):
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def test_every_flip_and_rotation_is_found_with_its_transform(shared_data):
    imgs = np.stack([np.asarray(Image.fromarray(p).resize((64, 64))) for p in real_images(shared_data, 12)])
    variants = dedup.dihedral(imgs[:1])[:, 0]  # image 0 under each of the 8 transforms
    dist, ref, trans = dedup.nearest(variants, imgs)
    assert (ref == 0).all() and (dist < 1e-3).all()
    # the transform found maps the variant back to the reference (some are their own inverse, rotations are not)
    for k, t in enumerate(trans):
        np.testing.assert_array_equal(dedup.dihedral(variants[k:k + 1])[t, 0], imgs[0])
    # distinct real images of the same class are far apart
    d, _, _ = dedup.nearest(imgs, imgs, exclude_self=True)
    assert d.min() > 0.15


def test_brightness_contrast_and_flat_images():
    rng = np.random.default_rng(0)
    smooth = np.asarray(Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).resize((64, 64)), np.float64)
    brighter = np.clip(smooth * 0.9 + 12, 0, 255).astype(np.uint8)
    assert dedup.distance(smooth.astype(np.uint8), brighter) < 0.02
    flat = np.full((64, 64), 7, np.uint8)
    assert dedup.distance(flat, flat) == pytest.approx(2**0.5)  # no signal: never a match


def test_groups_are_connected_components():
    assert dedup.groups(5, [(0, 3), (3, 4)]).tolist() == [0, 1, 2, 0, 0]


def test_preprocess_drops_transformed_copies_of_test_and_keeps_distinct_real_images(shared_data, tmp_path):
    tests = real_images(shared_data, 4, split="test")
    others = real_images(shared_data, 30)
    items = [(f"r/test/NORMAL/t{i}.png", "test", "NORMAL", png_bytes(p)) for i, p in enumerate(tests)]
    items += [(f"r/test/PNEUMONIA/p{i}.png", "test", "PNEUMONIA", png_bytes(p))
              for i, p in enumerate(real_images(shared_data, 4, split="test", class_name="PNEUMONIA"))]
    copies = {
        "mirror": png_bytes(tests[0][:, ::-1]),
        "rot90": png_bytes(np.rot90(tests[1])),
        "jpeg": jpeg(tests[2], quality=50),  # re-encoded at another quality: pixels differ
        "brighter": png_bytes(np.clip(tests[3].astype(int) + 3, 0, 255)),
    }
    items += [(f"r/train/NORMAL/{name}.png", "train", "NORMAL", data) for name, data in copies.items()]
    items += [(f"r/train/NORMAL/o{i}.png", "train", "NORMAL", png_bytes(p)) for i, p in enumerate(others)]
    items += [(f"r/train/PNEUMONIA/q{i}.png", "train", "PNEUMONIA", png_bytes(p))
              for i, p in enumerate(real_images(shared_data, 30, class_name="PNEUMONIA"))]
    tar, manifest = make_raw(tmp_path, items)
    result = preprocess(CHEST, tar, manifest, PreprocessSettings(image_size=64))
    kinds = {d["source_path"].rsplit("/", 1)[1]: d["kind"] for d in result.dropped}
    assert kinds == {"mirror.png": "flipped_or_rotated", "rot90.png": "flipped_or_rotated",
                     "jpeg.png": "near", "brighter.png": "near"}
    near = result.report["near_copies"]
    assert near["train_copies_of_test_dropped"]["by_kind"] == {"exact": 0, "near": 2, "flipped_or_rotated": 2}
    assert near["test_images_with_a_train_copy"] == 4
    assert near["check"]["test_images_with_a_copy_in_train_or_val"] == 0
    assert result.report["counts"]["test"]["total"] == 8  # the test split stays whole
    assert len(result.samples) == 4


def test_validation_is_grouped_by_patient_and_near_copy_group():
    rng = np.random.default_rng(5)
    items = []
    for p in range(40):  # three films per patient, in both classes' naming schemes
        for k in range(3):
            items.append((f"r/train/PNEUMONIA/person{p}_bacteria_{k}.jpeg", "train", "PNEUMONIA",
                          png_bytes(rng.integers(0, 256, (16, 16), dtype=np.uint8))))
            items.append((f"r/train/NORMAL/NORMAL2-IM-{p:04d}-000{k}.jpeg", "train", "NORMAL",
                          png_bytes(rng.integers(0, 256, (16, 16), dtype=np.uint8))))
    twin = rng.integers(0, 256, (16, 16), dtype=np.uint8)  # a near-copy pair inside train, no patient id
    items += [("r/train/NORMAL/a.png", "train", "NORMAL", png_bytes(twin)),
              ("r/train/NORMAL/b.png", "train", "NORMAL", png_bytes(np.rot90(twin)))]
    items += [(f"r/test/{c}/t{i}.png", "test", c, png_bytes(rng.integers(0, 256, (16, 16), dtype=np.uint8)))
              for c in CHEST.classes for i in range(3)]
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        tar, manifest = make_raw(Path(tmp), items)
        for seed in range(4):
            result = preprocess(CHEST, tar, manifest, PreprocessSettings(image_size=16, seed=seed, val_fraction=0.2))
            split = {r["source_path"]: r["split"] for r in result.manifest}
            by_patient = {}
            for path, s in split.items():
                pid = patient_id(CHEST, path)
                if pid:
                    by_patient.setdefault(pid, set()).add(s)
            assert len(by_patient) == 80 and all(len(s) == 1 for s in by_patient.values())
            assert any("val" in s for s in by_patient.values()), "some patients must be in validation"
            assert split["r/train/NORMAL/a.png"] == split["r/train/NORMAL/b.png"]
            assert result.report["patients"]["train_val_patients"] == 80
            assert result.report["near_copies"]["check"]["patients_in_train_and_val"] == 0


def test_patient_ids_from_kermany_file_names():
    assert patient_id(CHEST, "x/person1234_virus_2099.jpeg") == "person1234"
    assert patient_id(CHEST, "x/IM-0115-0001.jpeg") == "IM-0115"
    assert patient_id(CHEST, "x/NORMAL2-IM-0135-0001-0002.jpeg") == "NORMAL2-IM-0135"
    assert patient_id(CHEST, "x/unknown.jpeg") is None
    assert patient_id(get_dataset("brain_mri"), "Tr-gl_0001.jpg") is None


def test_every_test_image_with_a_copy_is_counted_also_when_test_holds_copies_of_one_another(tmp_path):
    rng = np.random.default_rng(3)
    smooth = [np.asarray(Image.fromarray(rng.integers(0, 256, (6, 6), dtype=np.uint8)).resize((32, 32)))
              for _ in range(30)]
    items = [("r/test/NORMAL/a.png", "test", "NORMAL", png_bytes(smooth[0])),
             ("r/test/NORMAL/a_mirror.png", "test", "NORMAL", png_bytes(smooth[0][:, ::-1])),  # a copy inside test
             ("r/test/PNEUMONIA/b.png", "test", "PNEUMONIA", png_bytes(smooth[1])),
             ("r/train/NORMAL/copy.png", "train", "NORMAL", png_bytes(smooth[0]))]
    items += [(f"r/train/{c}/{i}.png", "train", c, png_bytes(smooth[2 + i + 14 * k]))
              for k, c in enumerate(CHEST.classes) for i in range(14)]
    tar, manifest = make_raw(tmp_path, items)
    report = preprocess(CHEST, tar, manifest, PreprocessSettings(image_size=32)).report
    assert report["near_copies"]["test_images_with_a_train_copy"] == 2  # a and its mirror
    assert report["near_copies"]["train_copies_of_test_dropped"]["total"] == 1
    assert sum(report["near_copies"]["distance_histogram"]["test_to_nearest_train"]) == 3


def test_exact_copies_are_checked_also_with_the_threshold_off(tmp_path, shared_data):
    tests = real_images(shared_data, 3, split="test")
    items = [(f"r/test/NORMAL/t{i}.png", "test", "NORMAL", png_bytes(p)) for i, p in enumerate(tests)]
    items += [("r/test/PNEUMONIA/p.png", "test", "PNEUMONIA", png_bytes(real_images(shared_data, 1, "test", "PNEUMONIA")[0])),
              ("r/train/NORMAL/mirror.png", "train", "NORMAL", png_bytes(tests[0][:, ::-1]))]
    items += [(f"r/train/{c}/o{i}.png", "train", c, png_bytes(p)) for c in CHEST.classes
              for i, p in enumerate(real_images(shared_data, 12, class_name=c))]
    tar, manifest = make_raw(tmp_path, items)
    check = preprocess(CHEST, tar, manifest, PreprocessSettings(image_size=32, near_copy_threshold=None)
                       ).report["near_copies"]["check"]
    assert check["criterion_distance"] == pytest.approx(1e-3)
    assert check["test_images_with_a_copy_in_train_or_val"] == 1  # the mirrored copy stays with the threshold off


def test_too_few_images_for_a_validation_split_is_a_clear_error(tmp_path):
    from cryptomed import CryptomedError

    rng = np.random.default_rng(4)
    items = [(f"r/{s}/{c}/{i}.png", s, c, png_bytes(rng.integers(0, 256, (8, 8), dtype=np.uint8)))
             for s in ("train", "test") for c in CHEST.classes for i in range(1)]
    tar, manifest = make_raw(tmp_path, items)
    with pytest.raises(CryptomedError, match="validation split"):
        preprocess(CHEST, tar, manifest, PreprocessSettings(image_size=8))


def test_empty_inputs_give_no_match():
    d, r, t = dedup.nearest(np.zeros((0, 16, 16), np.uint8), np.zeros((3, 16, 16), np.uint8))
    assert len(d) == 0
    d, r, t = dedup.nearest(np.zeros((2, 16, 16), np.uint8), np.zeros((0, 16, 16), np.uint8))
    assert np.isinf(d).all() and (r == -1).all()
