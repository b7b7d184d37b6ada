"""A custom DICOM dataset through the whole workflow (docs/datasets.md): a small run on config/test.yaml's
settings in a git + DVC project, `dvc commit` + `dvc push` and the HTML report; then no DICOM patient field is in
any file of the project, `.snakemake/` or the DVC remote, and an edit of the dataset's entry reruns its import."""

import json

import pytest
import yaml

from dicom_helpers import PATIENT, dicom_folder
from workflow_helpers import BIN, directly_stale_rules, make_project, planned_jobs, sh, snakemake, tool_env

pytestmark = pytest.mark.e2e

ENTRY = {"format": "folder", "path": "../my_dicoms", "positive_class": "lesion"}
TARGETS = ("download", "preprocess", "encrypt", "decrypt", "train_aes_cnn", "evaluate_aes_cnn", "train_shallow_cnn",
           "evaluate_shallow_cnn", "baseline_aes_classical", "baseline_he_linear", "convert_efficientnet",
           "transfer_features", "baseline_efficientnet_transfer", "baseline_ensemble", "compare_baselines", "plot_results",
           "security_analysis")


@pytest.fixture(scope="module")
def custom_run(tmp_path_factory):
    """24 tiny DICOM images of 12 patients, 2 classes, outside the project; the workflow with every baseline that
    runs offline (VGG16/ResNet50 have no weights here), then dvc commit, dvc push and the report."""
    root = tmp_path_factory.mktemp("custom")
    dicom_folder(root / "my_dicoms", n_patients=12, per_patient=2, size=24)
    wd = make_project(root / "project", root / "remote")
    config = yaml.safe_load((wd / "config.yaml").read_text())
    config["datasets"], config["custom_datasets"] = ["scans"], {"scans": ENTRY}
    config["baselines"]["plain_cnn"] = False
    config["baselines"]["transfer"]["architectures"] = ["efficientnet_lite0"]
    (wd / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    sh(wd, "git", "commit", "-qam", "custom DICOM dataset")
    proc = snakemake(wd, configs=())
    assert proc.returncode == 0, proc.stderr[-4000:]
    env = tool_env()
    sh(wd, BIN / "dvc", "commit", "--force", *TARGETS, env=env)
    sh(wd, BIN / "dvc", "push", env=env)
    report = snakemake(wd, configs=(), extra=("--report", "results/report.html"))
    assert report.returncode == 0, report.stderr[-3000:]
    return root, wd


def test_the_custom_dataset_goes_through_every_stage(custom_run):
    _, wd = custom_run
    data = json.loads((wd / "results/scans/data_report.json").read_text())
    assert data["classes"] == ["lesion", "normal"] and data["total"] == 24
    assert data["patients"]["id_source"].startswith("patient_group") and data["near_copies"]["check"][
        "patients_in_train_and_val"] == 0
    imported = json.loads((wd / "data/raw/scans/download.json").read_text())
    assert imported["test_split"]["grouped_by"] == "DICOM PatientID" and imported["patients_in_train_and_test"] == 0
    table = (wd / "results/scans/comparison.md").read_text()
    for title in ("AES-256-GCM + deep CNN (proposed)", "shallow CNN", "HOG/LBP", "CKKS", "EfficientNet-Lite0"):
        assert title in table
    assert "0.965" not in table.split("Paper columns")[0]  # the paper's claim is about its data, not these images
    assert (wd / "results/report.html").stat().st_size > 10_000
    assert sorted(p.name for p in (wd / "results/scans/metrics").glob("*.json")) == sorted(
        f"{m}.json" for m in ("aes_cnn", "shallow_cnn", "aes_classical", "he_linear", "efficientnet_lite0_transfer",
                              "ensemble"))


def test_no_dicom_patient_field_appears_in_any_output_snakemake_metadata_or_the_dvc_remote(custom_run):
    root, wd = custom_run
    remote = root / "remote"
    assert any(p.is_file() for p in remote.rglob("*"))  # the ciphertext and models were pushed
    needles = [v.encode() for v in PATIENT.values()] + [b"Zyxwvut", b"Quintessa", b"PID-QX"]
    names = [b"0001.dcm", b"0013.dcm"]  # file names: only Snakemake's own record of the import's inputs has them
    source = next((root / "my_dicoms").rglob("*.dcm")).read_bytes()
    assert all(n in source for n in needles[:2])  # the search finds them where they are
    tracked = set(sh(wd, "git", "ls-files").stdout.split())  # the project's code and config, not outputs
    scanned, found = 0, []
    for path in [*wd.rglob("*"), *remote.rglob("*")]:
        rel = path.relative_to(wd).as_posix() if path.is_relative_to(wd) else None
        if path.is_file() and not path.is_symlink() and rel not in tracked and ".git" not in path.parts:
            data, scanned = path.read_bytes(), scanned + 1
            found += [(str(path), n) for n in needles if n in data]
            if ".snakemake" not in path.parts:
                found += [(str(path), n) for n in names if n in data]
    assert scanned > 100 and (wd / ".snakemake/metadata").is_dir()
    assert not found, found


def test_an_edit_of_the_entry_reruns_its_import_and_what_depends_on_it(custom_run):
    _, wd = custom_run
    assert not planned_jobs(snakemake(wd, configs=(), extra=("-n",)))  # up to date after the run
    config = yaml.safe_load((wd / "config.yaml").read_text())
    config["custom_datasets"]["scans"]["dicom"] = {"voi": "minmax"}
    edited = wd / "config" / "edited.yaml"
    edited.write_text(yaml.safe_dump(config, sort_keys=False))
    proc = snakemake(wd, configs=(str(edited),), extra=("-n",))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert directly_stale_rules(proc) == {"download"}
    assert planned_jobs(proc)["download"] == 1 and "convert_efficientnet" not in planned_jobs(proc)
