"""End to end: the Snakemake workflow on a small real subset of ../shared/data, and its failure paths.

Runs in temporary directories (a copy of the workflow), never in the checkout.
"""

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from workflow_helpers import planned_jobs, snakemake

pytestmark = pytest.mark.e2e

RULES = ("download", "preprocess", "encrypt", "decrypt", "train", "evaluate", "baseline_aes_classical",
         "baseline_he_linear", "convert_efficientnet", "transfer_features", "finetune_efficientnet",
         "baseline_efficientnet_transfer", "baseline_ensemble", "compare_baselines", "plot_results")
METHODS = ("aes_cnn", "plain_cnn", "shallow_cnn", "aes_classical", "he_linear", "efficientnet_lite0_transfer",
           "ensemble")
CNN_METHODS = ("aes_cnn", "plain_cnn", "shallow_cnn")


def test_every_artefact_is_written(run):
    wd, _ = run
    for ds in ("chest_xray", "brain_mri"):
        for rel in (f"data/raw/{ds}/images.tar", f"data/raw/{ds}/manifest.csv", f"data/raw/{ds}/download.json",
                    f"data/preprocessed/{ds}/images.npz", f"data/preprocessed/{ds}/split_manifest.csv",
                    f"results/{ds}/data_report.json", f"data/encrypted/{ds}.cmed",
                    f"results/{ds}/timing/encrypt.csv", f"results/{ds}/timing/decrypt.csv",
                    f"results/{ds}/comparison.csv", f"results/{ds}/comparison.md",
                    f"results/{ds}/comparison.png", f"results/{ds}/paired_tests.json",
                    *(f"results/{ds}/figures/{f}.png" for f in ("training_curves", "confusion_matrices", "roc_curves",
                                                                "timing"))):
            assert (wd / rel).is_file(), rel
        for m in METHODS:
            rels = [f"results/{ds}/metrics/{m}.json", f"results/{ds}/metrics/{m}.csv", f"results/{ds}/predictions/{m}.csv"]
            if m in CNN_METHODS:
                rels += [f"results/{ds}/models/{m}.keras", f"results/{ds}/training/{m}_history.csv",
                         f"results/{ds}/training/{m}_training.json"]
            for rel in rels:
                assert (wd / rel).is_file(), rel
    # nothing decrypted is ever written: the only arrays on disk are the preprocessed plaintext and the frozen
    # EfficientNet features computed from it (transfer_features reads the plaintext, as the other plaintext baselines)
    assert sorted(p.relative_to(wd).as_posix() for p in wd.rglob("*.npz")) == [
        "data/preprocessed/brain_mri/images.npz", "data/preprocessed/chest_xray/images.npz",
        "results/brain_mri/features/efficientnet_lite0.npz", "results/chest_xray/features/efficientnet_lite0.npz",
        "results/chest_xray/features/efficientnet_lite0_finetuned.npz"]  # probabilities of the fine-tuned network
    for rule in RULES:  # one file per job in a folder per rule, or one file for a rule without wildcards
        assert list((wd / "results/benchmarks" / rule).glob("*.tsv")) or (wd / f"results/benchmarks/{rule}.tsv").is_file(), rule
        assert list((wd / "logs" / rule).glob("*.log")) or (wd / f"logs/{rule}.log").is_file(), rule
    for rel in ("per_image.csv", "summary.csv", "summary.md", "modes.png", "histograms.png"):
        assert (wd / "results/security" / rel).is_file(), rel
    assert (wd / "results/benchmarks/security_analysis.tsv").is_file() and (wd / "logs/security_analysis.log").is_file()


def test_security_analysis_separates_ecb_from_gcm(run):
    import pandas as pd

    wd, _ = run
    summary = pd.read_csv(wd / "results/security/summary.csv")
    assert set(summary["dataset"]) == {"chest_xray", "brain_mri"} and (summary["images"] == 2).all()
    by_mode = summary.groupby("mode")[["npcr", "uaci", "entropy", "horizontal"]].mean()
    assert by_mode.loc["ECB", "npcr"] < 1 and by_mode.loc["GCM, fresh nonce (cryptomed)", "npcr"] > 99
    assert by_mode.loc["Plain image", "horizontal"] > 0.8 > abs(by_mode.loc["GCM, fresh nonce (cryptomed)", "horizontal"])
    assert "Wu, Noonan & Agaian" in (wd / "results/security/summary.md").read_text()


def test_metrics_have_every_field(run):
    wd, _ = run
    for ds, n_classes in (("chest_xray", 2), ("brain_mri", 4)):
        report = json.loads((wd / f"results/{ds}/data_report.json").read_text())
        assert report["counts"]["test"]["total"] == 60 * n_classes  # test split kept whole (per-class subset)
        assert report["counts"]["val"]["total"] > 0
        # config/test.yaml: chest X-ray's validation split is the test-like one (cryptomed.shift), brain MRI's random
        assert report["validation"]["method"].split(":")[0] == ("test_like" if ds == "chest_xray" else "random")
        near = report["near_copies"]  # leakage measured on the final splits of the real subset
        assert near["threshold"] == 0.15 and set(near["train_copies_of_test_dropped"]["by_kind"]) == {
            "exact", "near", "flipped_or_rotated"}
        assert near["check"]["test_images_with_a_copy_in_train_or_val"] == 0
        assert near["check"]["val_images_with_a_copy_in_train"] == 0
        assert near["check"]["patients_in_train_and_val"] == 0
        assert "source_path" not in json.dumps(report) and "person" not in json.dumps(report)  # counts only
        for m in METHODS:
            r = json.loads((wd / f"results/{ds}/metrics/{m}.json").read_text())
            n_test = 40 if m == "he_linear" else 60 * n_classes  # config/test.yaml caps the HE test images
            assert r["n_test"] == n_test and r["dataset"] == ds and r["method"] == m
            for k in ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc"):
                assert 0.0 <= r[k]["value"] <= 1.0, (ds, m, k)
                lo, hi = r[k]["ci95"]
                assert lo <= r[k]["value"] <= hi
            assert len(r["confusion_matrix"]) == n_classes and len(r["per_class"]) == n_classes
            assert r["timing_per_image_s"]["inference"] > 0
            assert r["timing_per_image_s"]["total"] >= r["timing_per_image_s"]["inference"]
            if m in ("aes_cnn", "aes_classical"):
                assert 0 < r["timing_per_image_s"]["encrypt"] < 0.012  # the paper's 12 ms
                assert 0 < r["timing_per_image_s"]["decrypt"] < 0.015
        table = (wd / f"results/{ds}/comparison.md").read_text()
        for title in ("AES-256-GCM + deep CNN (proposed)", "Deep CNN without AES", "Conventional shallow CNN",
                      "classical features", "Homomorphic encryption (CKKS)"):
            assert title in table, title
        assert "Paper Accuracy" in table and "0.965" in table and "McNemar" in table and "Specificity" in table


def test_no_upstream_file_name_or_patient_id_reaches_results(run):
    """Record ids stay opaque: results/ (committed to git, shown in the report) holds no upstream file name, patient
    id (chest: person12_, IM-0115, NORMAL2-IM-0135) or brain MRI name (Tr-gl_0001, Te-me_0002)."""
    import re

    wd, _ = run
    pattern = re.compile(rb"person\d+_|IM-\d{4}|T[re]-[a-z]{2}[A-Za-z]*_\d|\.jpe?g\b|_bacteria_|_virus_")
    scanned = 0
    for path in (wd / "results").rglob("*"):
        if path.is_file() and path.suffix in (".json", ".csv", ".md", ".tsv", ".txt", ".html"):
            hit = pattern.search(path.read_bytes())
            assert hit is None, f"{path.relative_to(wd)}: {hit.group(0)!r}"
            scanned += 1
    assert scanned > 20
    dropped = (wd / "data/preprocessed/chest_xray/dropped.csv").read_text()  # the local list may name files
    assert dropped.startswith("source_path,")


def test_aes_changes_no_prediction_and_baselines_are_real(run):
    """AES-GCM is lossless: the deep CNN on decrypted and on plaintext images predicts identically (CPU, same seed)."""
    import numpy as np
    import pandas as pd

    wd, _ = run
    for ds in ("chest_xray", "brain_mri"):
        a = (wd / f"results/{ds}/predictions/aes_cnn.csv").read_bytes()
        assert a == (wd / f"results/{ds}/predictions/plain_cnn.csv").read_bytes()
        tests = json.loads((wd / f"results/{ds}/paired_tests.json").read_text())
        assert tests["plain_cnn"]["identical_predictions"] and tests["plain_cnn"]["p_value"] == 1.0
        # config/test.yaml: the proposed CNN is a mean of two seeds, with test-time flips on brain MRI only; the
        # shallow baseline stays one network
        info = json.loads((wd / f"results/{ds}/training/aes_cnn_training.json").read_text())
        assert [m["seed"] for m in info["members"]] == [42, 43] and info["flip_tta"] == (ds == "brain_mri")
        hist = pd.read_csv(wd / f"results/{ds}/training/aes_cnn_history.csv")
        assert sorted(set(hist["seed"])) == [42, 43] and 0 <= info["val_accuracy"] <= 1
        assert "members" not in json.loads((wd / f"results/{ds}/training/shallow_cnn_training.json").read_text())
        # config/test.yaml: label-free batch-norm adaptation to the test images on brain MRI only, for every CNN
        for method in ("aes_cnn", "plain_cnn", "shallow_cnn"):
            m = json.loads((wd / f"results/{ds}/metrics/{method}.json").read_text())
            assert ("test_time_adaptation" in m) == (ds == "brain_mri"), (ds, method)
            if ds == "brain_mri":
                tta = m["test_time_adaptation"]
                assert tta["images"] == m["n_test"] and tta["batchnorm_layers"] > 0
                assert tta["mirrored_views"] == (method != "shallow_cnn")
        if ds == "brain_mri":  # the predictions written are the adapted network's, not the trained one's
            from cryptomed.adapt import adapt_batchnorm
            from cryptomed.data import load_arrays
            from cryptomed.models import as_model_input, configure_backend, load_model, predict_proba

            configure_backend(None, 1)
            arrays = load_arrays(wd / f"data/preprocessed/{ds}/images.npz")
            test = arrays["splits"] == "test"
            pred = pd.read_csv(wd / f"results/{ds}/predictions/aes_cnn.csv", dtype={"id": str})
            assert pred["id"].tolist() == arrays["ids"][test].tolist()
            model, x = load_model(wd / f"results/{ds}/models/aes_cnn.keras"), as_model_input(arrays["images"][test])
            written = pred[[c for c in pred.columns if c.startswith("p_")]].to_numpy()
            trained, _ = predict_proba(model, x)
            adapt_batchnorm(model, x)
            adapted, _ = predict_proba(model, x)
            np.testing.assert_allclose(written, adapted, atol=1e-5)
            assert np.abs(written - trained).max() > 1e-3
        assert set(tests) == {"plain_cnn", "shallow_cnn", "aes_classical", "he_linear", "efficientnet_lite0_transfer",
                             "ensemble"}
        transfer = json.loads((wd / f"results/{ds}/metrics/efficientnet_lite0_transfer.json").read_text())["transfer"]
        frozen_head = transfer.get("frozen_head", transfer)  # where the fine-tuned network was kept, nested
        assert transfer["weights"] == "imagenet" and frozen_head["C"] in (0.01, 1.0)  # real ImageNet weights, offline
        # brain MRI (native_input): the source images resized to 64 px; chest X-ray: the 32-px arrays upsampled
        assert transfer["input"] == {"brain_mri": "source images resized to 64 px",
                                     "chest_xray": "32-px preprocessed arrays resized to 64 px"}[ds]
        if ds == "brain_mri":  # the cached features are those of the source images, record by record
            from cryptomed.data import source_images
            from cryptomed.transfer import efficientnet_features

            with np.load(wd / f"results/{ds}/features/efficientnet_lite0.npz") as cached:
                ids, feats = cached["ids"][:3], cached["features"][:3]
            images = source_images(wd / f"data/raw/{ds}/images.tar", wd / f"data/preprocessed/{ds}/split_manifest.csv",
                                   ids, 64)
            again, _ = efficientnet_features(str(wd / "results/pretrained/efficientnet_lite0_imagenet.weights.h5"),
                                             images, 64, taps=tuple(transfer["taps"]))
            np.testing.assert_allclose(again, feats, rtol=1e-4, atol=1e-4)
        # fine-tuned on chest X-ray only (config/test.yaml): kept or not by validation loss, both losses recorded
        assert ("finetune" in transfer) == (ds == "chest_xray")
        if ds == "chest_xray":
            ft = transfer["finetune"]  # the rule of docs/tuning.md: lower loss and accuracy not lower
            kept = (ft["validation_loss_fine_tuned"] < ft["validation_loss_frozen_head"]
                    and ft["validation_accuracy_fine_tuned"] >= ft["validation_accuracy_frozen_head"])
            assert ft["chosen"] == ("fine_tuned" if kept else "frozen_head")
            assert ft["from_stage"] == 6 and 1 <= ft["best_epoch"] <= ft["epochs_run"] <= 2
            assert transfer["backbone_frozen"] == (ft["chosen"] == "frozen_head")
            title = json.loads((wd / f"results/{ds}/metrics/efficientnet_lite0_transfer.json").read_text())[
                "method_title"]  # the table says which network it is
            assert ("(frozen, ImageNet weights)" in title) == transfer["backbone_frozen"], title
            with np.load(wd / f"results/{ds}/features/efficientnet_lite0_finetuned.npz") as tuned:
                assert set(tuned["splits"]) == {"val", "test"}  # no probabilities of training images
                test = tuned["splits"] == "test"
                tuned_test = dict(zip(tuned["ids"][test], tuned["probabilities"][test]))
            pred = pd.read_csv(wd / f"results/{ds}/predictions/efficientnet_lite0_transfer.csv", dtype={"id": str})
            ours = np.stack([tuned_test[i] for i in pred["id"]])
            written = pred[[c for c in pred.columns if c.startswith("p_")]].to_numpy()
            assert np.allclose(written, ours, atol=1e-9) == (ft["chosen"] == "fine_tuned")
        # LP-FT on brain MRI only (config/test.yaml): the mean with the frozen head kept or not by the same rule
        assert ("lpft" in transfer) == (ds == "brain_mri")
        if ds == "brain_mri":
            from cryptomed.transfer import logistic_head

            lp = transfer["lpft"]
            kept = (lp["validation_loss_mean"] < lp["validation_loss_frozen_head"]
                    and lp["validation_accuracy_mean"] >= lp["validation_accuracy_frozen_head"])
            assert lp["chosen"] == ("mean" if kept else "frozen_head") and lp["probe_C"] in (0.01, 1.0)
            assert lp["recipe"]["after_stage"] == 6 and 1 <= lp["best_epoch"] <= lp["epochs_run"] <= 2
            with np.load(wd / f"results/{ds}/features/efficientnet_lite0.npz") as cached:
                data = {k: cached[k] for k in ("features", "labels", "splits", "ids", "lpft_probabilities")}
            assert data["lpft_probabilities"].shape == (len(data["ids"]), 4)
            np.testing.assert_allclose(data["lpft_probabilities"].sum(axis=1), 1.0, atol=1e-9)
            tr, te = data["splits"] == "train", data["splits"] == "test"
            head = logistic_head(lp["frozen_head_C_lowest_loss"]).fit(data["features"][tr], data["labels"][tr])
            mean = (head.predict_proba(data["features"][te]) + data["lpft_probabilities"][te]) / 2
            mean = dict(zip(data["ids"][te], mean))
            pred = pd.read_csv(wd / f"results/{ds}/predictions/efficientnet_lite0_transfer.csv", dtype={"id": str})
            written = pred[[c for c in pred.columns if c.startswith("p_")]].to_numpy()
            assert np.allclose(written, np.stack([mean[i] for i in pred["id"]]), atol=1e-9) == kept
            title = json.loads((wd / f"results/{ds}/metrics/efficientnet_lite0_transfer.json").read_text())[
                "method_title"]
            assert ("(frozen + LP-FT top, ImageNet weights)" in title) == kept, title
        assert (wd / "results/pretrained/efficientnet_lite0_imagenet.weights.h5").is_file()
        table = (wd / f"results/{ds}/comparison.md").read_text()  # ResNet50 has no ImageNet weights here: said so
        assert "Transfer learning: ResNet50 — not run: no ImageNet weights" in table
        assert not (wd / f"results/{ds}/metrics/resnet50_transfer.json").exists()
        he = json.loads((wd / f"results/{ds}/metrics/he_linear.json").read_text())["he"]
        assert he["agreement_with_plaintext_model"] >= 0.95 and he["max_abs_logit_error"] < 1e-2
        assert he["ciphertext_bytes_per_image"] > 10_000 and he["scheme"] == "CKKS"
        classical = json.loads((wd / f"results/{ds}/metrics/aes_classical.json").read_text())
        assert classical["classifier"] in classical["validation_balanced_accuracy"]
        pred = pd.read_csv(wd / f"results/{ds}/predictions/aes_classical.csv")
        assert pred["predicted"].nunique() > 1  # not a constant predictor
        # the ensemble: the mean of its members' probabilities, image by image; their inference times added, AES once
        members = ("aes_cnn", "efficientnet_lite0_transfer")
        frames = [pd.read_csv(wd / f"results/{ds}/predictions/{m}.csv", dtype={"id": str}) for m in (*members, "ensemble")]
        cols = [c for c in frames[0].columns if c.startswith("p_")]
        assert list(frames[2]["id"]) == list(frames[0]["id"]) and list(frames[2]["label"]) == list(frames[0]["label"])
        np.testing.assert_allclose(frames[2][cols].to_numpy(), (frames[0][cols].to_numpy() + frames[1][cols].to_numpy()) / 2,
                                   rtol=1e-12)
        assert list(frames[2]["predicted"]) == list(frames[2][cols].to_numpy().argmax(1))
        times = {m: json.loads((wd / f"results/{ds}/metrics/{m}.json").read_text())["timing_per_image_s"]
                 for m in (*members, "ensemble")}
        assert times["ensemble"]["inference"] == pytest.approx(times["aes_cnn"]["inference"] +
                                                               times["efficientnet_lite0_transfer"]["inference"])
        assert times["ensemble"]["decrypt"] == times["aes_cnn"]["decrypt"]


def _raw_without_test(wd, dataset: str, raw):
    """A copy of the run's downloaded tar of ``dataset`` under ``raw``, without the test split's source files (a
    benchmark that runs on it never reads a test image)."""
    import tarfile

    import pandas as pd

    manifest = pd.read_csv(wd / f"data/preprocessed/{dataset}/split_manifest.csv", dtype={"id": str})
    test_files = set(manifest.loc[manifest["split"] == "test", "source_path"])
    assert test_files
    (raw / dataset).mkdir(parents=True)
    with tarfile.open(wd / f"data/raw/{dataset}/images.tar") as src, \
            tarfile.open(raw / dataset / "images.tar", "w") as dst:
        for member in src:
            if member.name not in test_files:
                dst.addfile(member, src.extractfile(member) if member.isfile() else None)


def test_native_input_benchmark_scores_both_inputs_on_validation(run, tmp_path):
    """benchmarks/tune_native_input.py on the run's chest X-ray (arrays upsampled in the test config): it reuses the
    cached upsampled features, computes the source images' own, writes rows for both and prints the verdict; it
    runs on a tar without the test images (it never decodes them); a feature file of source images is refused as
    the upsampled arm."""
    import pandas as pd

    wd, _ = run
    _raw_without_test(wd, "chest_xray", tmp_path / "raw")
    script = REPO / "benchmarks/tune_native_input.py"
    common = [sys.executable, str(script), "--config", "config.yaml", "config/test.yaml", "--limit", "40",
              "--out", str(tmp_path), "--weights", "results/pretrained/efficientnet_lite0_imagenet.weights.h5"]
    proc = subprocess.run([*common, "--dataset", "chest_xray", "--raw", str(tmp_path / "raw"), "--upsampled-features",
                           "results/chest_xray/features/efficientnet_lite0.npz"], cwd=wd, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = pd.read_csv(tmp_path / "native_input.csv")
    assert sorted(set(rows["input"])) == ["native", "upsampled"] and set(rows["C"]) == {0.01, 1.0}
    assert (rows["val_images"] > 0).all() and rows["val_loss"].notna().all()
    assert re.search(r"^chest_xray: validation loss .*: (not )?adopted$", proc.stdout, re.M), proc.stdout[-2000:]
    refused = subprocess.run([*common, "--dataset", "brain_mri", "--upsampled-features",
                              "results/brain_mri/features/efficientnet_lite0.npz"], cwd=wd, capture_output=True,
                             text=True, timeout=600)
    assert refused.returncode != 0 and "computed from the source images" in refused.stderr


def test_finetune_benchmark_scores_both_arms_on_validation_without_the_test_images(run, tmp_path):
    """benchmarks/tune_finetune.py on the run's brain MRI (source images in the test config), on a tar without the
    test images: rows for the frozen head (each C) and the fine-tuned top (random, images, LP-FT), and the verdicts."""
    import pandas as pd

    wd, _ = run
    _raw_without_test(wd, "brain_mri", tmp_path / "raw")

    def tune(*arm):
        proc = subprocess.run([sys.executable, str(REPO / "benchmarks/tune_finetune.py"), "--config", "config.yaml",
                               "config/test.yaml", "--epochs", "1", "--out", str(tmp_path), *arm,
                               "--dataset", "brain_mri", "--raw", str(tmp_path / "raw"), "--threads", "1"],
                              cwd=wd, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    proc = tune()
    rows = pd.read_csv(tmp_path / "finetune.csv")
    assert sorted(set(rows["arm"])) == ["finetune", "frozen"] and set(rows["C"].dropna()) == {0.01, 1.0}
    assert (rows["val_images"] > 0).all() and rows["val_loss"].notna().all()
    assert re.search(r"^brain_mri: validation loss .*: (not )?adopted$", proc.stdout, re.M), proc.stdout[-2000:]
    # --arm images: the pipeline's own fine-tuning (the GPU configurations' recipe) against the same frozen head
    proc = tune("--arm", "images")
    images = pd.read_csv(tmp_path / "finetune_images.csv")
    assert sorted(set(images["arm"])) == ["finetune_images", "frozen"] and (images["epochs_run"] <= 1).all()
    assert "from_stage=6" in images["recipe"].dropna().iloc[0]
    assert re.search(r"^brain_mri: validation loss .*: (not )?kept$", proc.stdout, re.M), proc.stdout[-2000:]
    assert "over the budget" not in proc.stdout  # the pipeline's choice has no time condition
    # --arm lpft: the top started from the linear probe, and its mean with the frozen head at its C of lowest loss
    proc = tune("--arm", "lpft")
    lpft = pd.read_csv(tmp_path / "lpft.csv")
    assert sorted(set(lpft["arm"])) == ["frozen", "lpft", "lpft_average"] and lpft["val_loss"].notna().all()
    frozen = lpft[lpft["arm"] == "frozen"]
    assert lpft.loc[lpft["arm"] == "lpft_average", "C"].item() == frozen.loc[frozen["val_loss"].idxmin(), "C"]
    assert "probe_C=" in lpft.loc[lpft["arm"] == "lpft", "recipe"].item()
    assert re.search(r"^brain_mri: frozen C=.* -> adopted: (lpft|lpft_average|nothing)", proc.stdout, re.M), \
        proc.stdout[-2000:]


def test_key_material_never_leaves_the_key_file(run):
    wd, _ = run
    key_file = wd / ".secrets/cryptomed.key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    key_hex = key_file.read_text().strip()
    key = bytes.fromhex(key_hex)
    for path in wd.rglob("*"):
        if path.is_file() and ".secrets" not in path.parts:
            data = path.read_bytes()
            assert key not in data and key_hex.encode() not in data, path


def test_report_has_every_figure_with_its_caption(report):
    html = report.read_text()  # `snakemake --report` of the shared run (tests/conftest.py)
    for name in ("training_curves.png", "confusion_matrices.png", "roc_curves.png", "timing.png", "comparison.png",
                 "comparison.md", "data_report.json", "modes.png", "histograms.png", "summary.md"):
        assert name in html, name
    for caption in ("micro-average of one-vs-rest", "row) predicted as each class", "ECB"):
        assert caption in html, caption


@pytest.mark.parametrize("profile", ["default", "gpu", "slurm"])
def test_profiles_plan_the_workflow(run, profile):
    wd, _ = run
    proc = snakemake(wd, extra=["--profile", f"profiles/{profile}", "-n"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    if profile != "gpu":  # the GPU profile's config switches the Keras backend: training would rerun
        assert "Nothing to be done" in proc.stdout + proc.stderr


def test_pipeline_benchmark_reads_the_run(run):
    wd, _ = run
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks/pipeline.py"), "--results", str(wd / "results")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for rule in ("train", "encrypt", "decrypt", "compare_baselines"):
        assert f"  {rule} " in proc.stdout, rule
    assert "share of the pipeline" in proc.stdout and "training consumes" in proc.stdout


def test_nothing_to_do_after_a_complete_run(run):
    wd, _ = run
    proc = snakemake(wd, extra=["-n"])
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr


@pytest.mark.parametrize("override,expected", [
    ("train:\n  epochs: 3\n", {"train", "evaluate", "baseline_ensemble", "compare_baselines", "plot_results", "all"}),
    ("preprocess:\n  image_size: 24\n",
     {"preprocess", "encrypt", "decrypt", "train", "evaluate", "baseline_aes_classical", "baseline_he_linear",
      "transfer_features", "finetune_efficientnet", "baseline_efficientnet_transfer", "baseline_ensemble", "compare_baselines", "plot_results",
      "all"}),
    ("preprocess:\n  near_copy_threshold: 0.1\n",  # leakage policy: preprocess onward, nothing before it
     {"preprocess", "encrypt", "decrypt", "train", "evaluate", "baseline_aes_classical", "baseline_he_linear",
      "transfer_features", "finetune_efficientnet", "baseline_efficientnet_transfer", "baseline_ensemble", "compare_baselines", "plot_results",
      "all"}),
    ("evaluate:\n  bootstrap_resamples: 50\n",
     {"evaluate", "baseline_aes_classical", "baseline_he_linear", "baseline_efficientnet_transfer", "baseline_ensemble",
      "compare_baselines", "plot_results", "all"}),
    ("baselines:\n  he_linear:\n    input_size: 4\n", {"baseline_he_linear", "compare_baselines", "plot_results", "all"}),
    ("baselines:\n  transfer:\n    efficientnet_lite0:\n      image_size: 48\n",  # brain MRI's: not fine-tuned
     {"transfer_features", "baseline_efficientnet_transfer", "baseline_ensemble", "compare_baselines", "plot_results",
      "all"}),
    ("baselines:\n  transfer:\n    efficientnet_lite0:\n      native_input: [brain_mri, chest_xray]\n",
     {"transfer_features", "finetune_efficientnet", "baseline_efficientnet_transfer", "baseline_ensemble", "compare_baselines", "plot_results",
      "all"}),
    ("baselines:\n  transfer:\n    efficientnet_lite0:\n      taps: [head]\n",  # the frozen features' layers only
     {"transfer_features", "baseline_efficientnet_transfer", "baseline_ensemble", "compare_baselines", "plot_results",
      "all"}),
    # the C grid: the heads, and the LP-FT dataset's features rule too (its probe's C comes from this grid)
    ("baselines:\n  transfer:\n    efficientnet_lite0:\n      C: [0.1]\n",
     {"transfer_features", "baseline_efficientnet_transfer", "baseline_ensemble", "compare_baselines", "plot_results",
      "all"}),
])
def test_config_change_reruns_only_what_it_affects(run, override, expected):
    wd, _ = run
    (wd / "config/change.yaml").write_text(override)
    proc = snakemake(wd, extra=["-n"], configs=["config/test.yaml", "config/change.yaml"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert set(planned_jobs(proc)) == expected


@pytest.mark.parametrize("native,dataset", [("[brain_mri, chest_xray]", "chest_xray"), ("[]", "brain_mri")])
def test_native_input_reruns_only_the_dataset_it_changes(run, native, dataset):
    wd, _ = run
    (wd / "config/change.yaml").write_text(f"baselines:\n  transfer:\n    efficientnet_lite0:\n      native_input: {native}\n")
    proc = snakemake(wd, extra=["-n"], configs=["config/test.yaml", "config/change.yaml"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert planned_jobs(proc)["transfer_features"] == 1
    assert f"results/{dataset}/features/efficientnet_lite0.npz" in proc.stdout + proc.stderr


@pytest.mark.parametrize("change,jobs,features,dataset", [
    # brain MRI moved from LP-FT to fine-tuning: only it is fine-tuned, and its features rerun without the LP-FT top
    ("finetune: {datasets: [chest_xray, brain_mri]}\n      lpft: {datasets: []}", 1, 1, "brain_mri"),
    ("finetune: {epochs: 3}", 1, 0, "chest_xray"),  # the recipe changed: the fine-tuned dataset again
    ("finetune: {datasets: []}", 0, 0, "chest_xray"),  # none: the chest X-ray baseline goes back to its frozen head
    ("lpft: {epochs: 3}", 0, 1, "brain_mri"),  # the LP-FT recipe changed: only the LP-FT dataset's features rule
])
def test_finetune_reruns_only_the_dataset_it_changes(run, change, jobs, features, dataset):
    wd, _ = run
    (wd / "config/change.yaml").write_text(f"baselines:\n  transfer:\n    efficientnet_lite0:\n      {change}\n")
    proc = snakemake(wd, extra=["-n"], configs=["config/test.yaml", "config/change.yaml"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    planned = planned_jobs(proc)
    assert planned.get("finetune_efficientnet", 0) == jobs and planned["baseline_efficientnet_transfer"] == 1
    assert f"results/{dataset}/metrics/efficientnet_lite0_transfer.json" in proc.stdout + proc.stderr
    assert planned.get("transfer_features", 0) == features
    if features:
        assert f"results/{dataset}/features/efficientnet_lite0.npz" in proc.stdout + proc.stderr


@contextlib.contextmanager
def preserved(*paths: Path):
    """Restore these files (bytes, mode and mtime) afterwards, so a test leaves the shared run up to date (and the
    key file 0600: a group-readable key file is refused)."""
    saved = {p: (p.read_bytes(), os.stat(p)) for p in paths}
    try:
        yield
    finally:
        for p, (data, st) in saved.items():
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
            os.chmod(p, st.st_mode & 0o7777)
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))


def decrypt(wd: Path, dataset: str, **kwargs):
    """Rerun the decrypt rule (verify every record) for one dataset."""
    return snakemake(wd, f"results/{dataset}/timing/decrypt.csv", extra=["--forcerun", "decrypt"], **kwargs)


def test_tampered_record_stops_decrypt_naming_the_record(run):
    wd, _ = run
    container = wd / "data/encrypted/chest_xray.cmed"
    timing = wd / "results/chest_xray/timing/decrypt.csv"
    with preserved(container, timing):
        data = bytearray(container.read_bytes())
        data[len(data) // 2] ^= 0x40
        container.write_bytes(bytes(data))
        proc = decrypt(wd, "chest_xray")
        assert proc.returncode != 0
        log = (wd / "logs/decrypt/chest_xray.log").read_text()
        assert "RecordAuthenticationError" in log and "record" in log
        assert not timing.exists()


def test_missing_key_stops_decrypt(run):
    wd, _ = run
    key_file = wd / ".secrets/cryptomed.key"
    timing = wd / "results/brain_mri/timing/decrypt.csv"
    with preserved(key_file, timing):
        key_file.unlink()
        proc = decrypt(wd, "brain_mri")
        assert proc.returncode != 0
        log = (wd / "logs/decrypt/brain_mri.log").read_text()
        assert "KeyMissingError" in log and "cryptomed.key" in log
        assert not timing.exists()
        assert not key_file.exists()  # decrypt never invents a key


def test_wrong_key_stops_decrypt_as_a_wrong_key(run):
    wd, _ = run
    timing = wd / "results/brain_mri/timing/decrypt.csv"
    with preserved(timing):
        proc = decrypt(wd, "brain_mri", env_extra={"CRYPTOMED_KEY": "11" * 32})
        assert proc.returncode != 0
        log = (wd / "logs/decrypt/brain_mri.log").read_text()
        assert "WrongKeyError" in log and "11" * 32 not in log
        assert not timing.exists()


def test_rotating_the_key_reruns_nothing_and_the_new_key_decrypts(run, tmp_path):
    wd, _ = run
    env = {**os.environ, "PYTHONPATH": str(wd / "src")}
    new_key = tmp_path / "new.key"
    old_key = wd / ".secrets/cryptomed.key"
    containers = [wd / f"data/encrypted/{ds}.cmed" for ds in ("chest_xray", "brain_mri")]
    with preserved(*containers, old_key, wd / "results/brain_mri/timing/decrypt.csv"):
        subprocess.run([sys.executable, "-m", "cryptomed", "keygen", str(new_key)], check=True, env=env, capture_output=True)
        r = subprocess.run([sys.executable, "-m", "cryptomed", "rotate", *map(str, containers), "--old-key-file",
                            str(old_key), "--new-key-file", str(new_key)], env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        shutil.copy2(new_key, old_key)  # the configured key file now holds the new KEK
        proc = snakemake(wd, extra=["-n"])
        assert "Nothing to be done" in proc.stdout + proc.stderr
        proc = decrypt(wd, "brain_mri")
        assert proc.returncode == 0, proc.stderr[-2000:]
