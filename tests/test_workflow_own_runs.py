"""Workflow tests that make runs of their own (dry runs and small mirrors), not the shared small run: a missing
backbone's weights, the config schema, a checksum mismatch, a corrupt image, `snakemake --lint`."""

import csv
import hashlib
import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from conftest import REPO
from workflow_helpers import copy_workflow, planned_jobs, snakemake

pytestmark = pytest.mark.e2e


def test_transfer_backbones_without_their_weights_are_not_run_and_say_why(tmp_path):
    """No ImageNet weights for ResNet50 offline (weights: auto), no second dataset for cross-dataset pretraining:
    the backbone is left out with a clear line, never replaced by a weak stand-in; EfficientNet-Lite0 still runs."""
    wd = copy_workflow(tmp_path / "wf")
    (wd / "config/one.yaml").write_text("datasets: [chest_xray]\n")
    env = {"KERAS_HOME": str(tmp_path / "empty_keras_home")}
    proc = snakemake(wd, extra=["-n"], configs=["config/test.yaml", "config/one.yaml"], env_extra=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "baselines.transfer: resnet50 not run: no ImageNet weights" in proc.stderr
    assert "baseline_efficientnet_transfer" in proc.stdout and "pretrain_backbone" not in proc.stdout
    (wd / "config/cross.yaml").write_text("baselines:\n  transfer:\n    weights: cross_dataset\n")
    proc = snakemake(wd, extra=["-n"], configs=["config/test.yaml", "config/one.yaml", "config/cross.yaml"],
                     env_extra=env)
    assert proc.returncode == 0 and "second dataset" in proc.stderr


def test_invalid_config_is_rejected_by_the_schema(tmp_path):
    wd = copy_workflow(tmp_path / "wf")
    (wd / "config/bad.yaml").write_text("preprocess:\n  image_size: big\n")
    proc = snakemake(wd, extra=["-n"], configs=["config/test.yaml", "config/bad.yaml"])
    assert proc.returncode != 0
    assert "image_size" in proc.stderr + proc.stdout
    # a per-dataset setting for a dataset that does not exist (a typo) is an error, not silently unused
    (wd / "config/typo.yaml").write_text(
        "baselines:\n  transfer:\n    efficientnet_lite0:\n      image_size_by_dataset: {chest-xray: 224}\n")
    proc = snakemake(wd, extra=["-n"], configs=["config/test.yaml", "config/typo.yaml"])
    assert proc.returncode != 0 and "'chest-xray' is neither a built-in dataset" in proc.stderr + proc.stdout
    # a dataset both fine-tuned and LP-FT'd: the transfer baseline can use one of them, so the run stops, naming it
    (wd / "config/both.yaml").write_text(
        "baselines:\n  transfer:\n    efficientnet_lite0:\n      lpft: {datasets: [chest_xray, brain_mri]}\n")
    proc = snakemake(wd, extra=["-n"], configs=["config/test.yaml", "config/both.yaml"])
    assert proc.returncode != 0
    assert "chest_xray listed under both finetune.datasets and lpft.datasets" in proc.stderr + proc.stdout
    # an ensemble member that is no method (a typo) stops the run, naming it; a member switched off does not: the
    # ensemble is a "not run" row then, saying why
    (wd / "config/member.yaml").write_text("baselines:\n  ensemble:\n    members: [aes_cnn, helinear]\n")
    proc = snakemake(wd, extra=["-n"], configs=["config/test.yaml", "config/member.yaml"])
    assert proc.returncode != 0 and "'helinear' is not one of" in proc.stderr + proc.stdout
    (wd / "config/member.yaml").write_text("baselines:\n  transfer:\n    enabled: false\n")
    proc = snakemake(wd, extra=["-n"], configs=["config/test.yaml", "config/member.yaml"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "baselines.ensemble not run: member efficientnet_lite0_transfer not run" in proc.stderr
    assert "baseline_ensemble" not in planned_jobs(proc)


@pytest.fixture
def small_mirror(tmp_path):
    """A mirror of 12 real chest X-rays per split and class, in the shared/data layout."""
    from conftest import SHARED_DATA

    src = SHARED_DATA / "chest_xray_pneumonia"
    if not (src / "manifest.csv").is_file():
        pytest.skip("real data mirror not found")
    rows = list(csv.DictReader(open(src / "manifest.csv")))
    keep, counts = [], {}
    for r in rows:
        k = (r["split"], r["class_name"])
        if counts.get(k, 0) < 12:
            counts[k] = counts.get(k, 0) + 1
            keep.append(r)
    wanted = {r["path"] for r in keep}
    blobs = {}
    with tarfile.open(src / "chest_xray_pneumonia_224.tar") as tf:
        for m in tf:
            if m.name in wanted:
                blobs[m.name] = tf.extractfile(m).read()

    def write(root: Path, blobs, rows):
        d = root / "chest_xray_pneumonia"
        d.mkdir(parents=True)
        with tarfile.open(d / "chest_xray_pneumonia_224.tar", "w") as tf:
            for name in sorted(blobs):
                info = tarfile.TarInfo(name)
                info.size = len(blobs[name])
                tf.addfile(info, io.BytesIO(blobs[name]))
        with open(d / "manifest.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        return root

    return keep, blobs, write


def _run_chest_only(tmp_path, write, blobs, rows, target):
    """Write a mirror from ``blobs``/``rows``, run the chest X-ray workflow up to ``target`` on all its images."""
    mirror = write(tmp_path / "mirror", blobs, rows)
    wd = copy_workflow(tmp_path / "wf")
    (wd / "config/chest.yaml").write_text("datasets: [chest_xray]\npreprocess:\n  max_per_class: null\n"
                                          "baselines:\n  transfer:\n    enabled: false\n")
    proc = snakemake(wd, target, configs=["config/test.yaml", "config/chest.yaml"], mirror=mirror)
    assert proc.returncode != 0
    return wd


def test_checksum_mismatch_stops_download_naming_the_file(small_mirror, tmp_path):
    keep, blobs, write = small_mirror
    victim = keep[5]["path"]
    bad = dict(blobs, **{victim: blobs[victim][:-1] + bytes([blobs[victim][-1] ^ 1])})  # one flipped bit
    wd = _run_chest_only(tmp_path, write, bad, keep, "data/raw/chest_xray/images.tar")
    log = (wd / "logs/download/chest_xray.log").read_text()
    assert "ChecksumError" in log and victim in log
    assert not (wd / "data/raw/chest_xray").exists() or not any((wd / "data/raw/chest_xray").iterdir())


def test_corrupt_image_stops_preprocess_naming_it(small_mirror, tmp_path):
    keep, blobs, write = small_mirror
    victim = keep[30]["path"]
    bad = dict(blobs, **{victim: b"\xff\xd8\xff\xe0" + b"\0" * 100})  # not a decodable JPEG
    rows = [dict(r, sha256=hashlib.sha256(bad[r["path"]]).hexdigest()) for r in keep]  # checksums agree
    wd = _run_chest_only(tmp_path, write, bad, rows, "data/preprocessed/chest_xray/images.npz")
    log = (wd / "logs/preprocess/chest_xray.log").read_text()
    assert "CorruptImageError" in log and victim in log
    assert not (wd / "data/preprocessed/chest_xray/images.npz").exists()
    assert not (wd / "results/chest_xray/data_report.json").exists()


def test_lint_is_clean():
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Lints for" not in proc.stdout + proc.stderr
