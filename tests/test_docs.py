"""README.md and docs/*.md carry the numbers of results/ (generated blocks, `python -m cryptomed docs`), nothing
typed by hand, and README stays short."""

import io
import json
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from conftest import REPO

from cryptomed import docs


def test_readme_and_docs_match_the_results_files():
    out = io.StringIO()
    rc = docs.run(REPO, check=True, out=out)
    assert rc == 0, "README/docs differ from results/ — run `python -m cryptomed docs`:\n" + out.getvalue()[-6000:]


def test_every_page_has_its_generated_blocks():
    readme = (REPO / "README.md").read_text()
    for ds in ("chest_xray", "brain_mri"):
        assert f"<!-- BEGIN generated: headline:{ds} -->" in readme
        assert f"<!-- BEGIN generated: comparison:{ds} -->" in (REPO / "docs/results.md").read_text()
    assert "<!-- BEGIN generated: aes-timing -->" in (REPO / "docs/performance.md").read_text()


def test_readme_is_short():
    assert len((REPO / "README.md").read_bytes()) <= 12 * 1024
    assert "make test" in (REPO / "README.md").read_text()  # .ci/run runs README's test command


def test_committed_rulegraph_shows_every_rule():
    """docs/rulegraph.svg (`make rulegraph`) names exactly the workflow's rules."""
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--rulegraph"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rules = set(re.findall(r'label = "(\w+)"', proc.stdout))
    svg = (REPO / "docs/rulegraph.svg").read_text()
    shown = set(re.findall(r"<title>\s*\d+\s*</title>.*?>(\w+)</text>", svg, re.S)) or set(
        re.findall(r">(\w+)</text>", svg))
    assert rules and shown == rules, f"run `make rulegraph`: {sorted(rules ^ shown)}"


@pytest.fixture
def results(tmp_path):
    """A copy of the checkout's results of one dataset (the files the generators read) in a temporary project."""
    root = tmp_path / "proj"
    ds = root / "results/chest_xray"
    for rel in ("comparison.csv", "comparison.md", "data_report.json", "paired_tests.json", "timing", "training",
                "metrics"):
        src = REPO / "results/chest_xray" / rel
        ds.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, ds / rel)
    (root / "workflow/resources").mkdir(parents=True)
    shutil.copy2(REPO / docs.PAPER_FILE, root / docs.PAPER_FILE)
    return root


def page(root, *names, extra=""):
    text = "# page\n\n" + "".join(f"<!-- BEGIN generated: {n} -->\n<!-- END generated: {n} -->\n\n" for n in names)
    path = root / "page.md"
    path.write_text(text + extra)
    return path


def test_a_changed_result_makes_the_check_fail_until_regenerated(results):
    doc = page(results, "headline:chest_xray", "findings:chest_xray", "comparison:chest_xray", "aes-timing")
    assert docs.run(results, documents=[doc], out=io.StringIO()) == 0
    written = doc.read_text()
    frame = pd.read_csv(results / "results/chest_xray/comparison.csv")
    proposed = frame[frame["method_key"] == "aes_cnn"].iloc[0]
    old_time = docs.ftime(proposed["Processing time (s)"])
    assert docs.ci(proposed, "Accuracy") in written and old_time in written and "Paper's claim" in written
    assert docs.run(results, documents=[doc], check=True, out=io.StringIO()) == 0

    new_time = 0.0041 if old_time != "4.10e-03" else 0.0052
    frame.loc[frame["method_key"] == "aes_cnn", "Processing time (s)"] = new_time
    frame.to_csv(results / "results/chest_xray/comparison.csv", index=False)
    out = io.StringIO()
    assert docs.run(results, documents=[doc], check=True, out=out) == 1
    assert f"-| **{proposed['Method']}** | {docs.ci(proposed, 'Accuracy')}" in out.getvalue()
    assert docs.ftime(new_time) in out.getvalue()
    assert doc.read_text() == written  # --check writes nothing
    assert docs.run(results, documents=[doc], out=io.StringIO()) == 0
    assert docs.ftime(new_time) in doc.read_text()
    assert docs.run(results, documents=[doc], check=True, out=io.StringIO()) == 0


def test_a_number_typed_outside_a_block_fails_the_check(results):
    doc = page(results, "aes-timing", extra="The paper claims 0.965; we measured 0.817 and 3.18e-03 s.\n")
    docs.run(results, documents=[doc], out=io.StringIO())
    out = io.StringIO()
    assert docs.run(results, documents=[doc], check=True, out=out) == 1
    text = out.getvalue()
    assert re.search(r"page.md:\d+: 0.817 typed outside", text) and "3.18e-03 typed outside" in text
    assert "0.965" not in text  # the paper's number (workflow/resources/paper_reported.yaml) may be quoted


def test_every_removal_count_of_the_data_report_is_shown(results):
    path = results / "results/chest_xray/data_report.json"
    report = json.loads(path.read_text())
    report["dropped"] = {"train_duplicates_within_train": 26, "near_copies_of_test": 17, "corrupt_skipped": 0}
    report["test_duplicates_kept"] = 6
    report["near_copies"] = {"threshold": 0.1, "thumbnail": 16, "test_images_with_a_train_copy": 12,
                             "train_copies_of_test_dropped": {"total": 17, "by_kind": {"exact": 5, "flipped": 12},
                                                              "by_class": {"NORMAL": 9, "PNEUMONIA": 8}},
                             "distance_histogram": {"edges": [0, 1], "train_to_nearest_test": [3]},
                             "check": {"test_images_with_a_copy_in_train_or_val": 0, "patients_in_train_and_val": 0}}
    report["patients"] = {"id_source": "upstream file name", "train_val_patients": 1234}
    path.write_text(json.dumps(report))
    text = docs.generate("data:chest_xray", docs.Results(results / "results", results))
    for shown in ("near copies of test: 17", "train duplicates within train: 26", "test duplicates kept: 6",
                  "near copies / test images with a train copy: 12", "near copies / train copies of test dropped: 17",
                  "near copies / train copies of test dropped / flipped: 12",
                  "near copies / check / patients in train and val: 0", "patients / train val patients: 1,234"):
        assert shown in text, shown
    assert "thumbnail" not in text and "NORMAL" not in text and "histogram" not in text


@pytest.mark.parametrize("text,message", [
    ("<!-- BEGIN generated: nonsense -->\n<!-- END generated: nonsense -->\n", "unknown generated block"),
    ("<!-- BEGIN generated: aes-timing -->\nno end\n", "has no END marker"),
    ("<!-- END generated: aes-timing -->\n", "without its BEGIN"),
    ("<!-- BEGIN generated: headline:mnist -->\n<!-- END generated: headline:mnist -->\n", "is missing"),
])
def test_bad_blocks_are_reported(results, text, message):
    doc = results / "bad.md"
    doc.write_text(text)
    with pytest.raises(docs.DocsError, match=message):
        docs.run(results, documents=[doc], out=io.StringIO())


def test_cli_check(results):
    doc = page(results, "aes-timing")
    run = lambda *a: subprocess.run([sys.executable, "-m", "cryptomed", "docs", *a, "--root", str(results), str(doc)],
                                    capture_output=True, text=True, cwd=results,
                                    env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"})
    assert run("--check").returncode == 1
    assert run().returncode == 0
    assert run("--check").returncode == 0


def test_the_verdict_follows_the_comparison_file(results):
    """The sentence on who wins is generated: raise a baseline above the proposed method and it says so."""
    path = results / "results/chest_xray/comparison.csv"
    frame = pd.read_csv(path)
    res = lambda: docs.generate("verdict", docs.Results(results / "results", results))  # noqa: E731
    proposed = frame.index[frame["method_key"] == "aes_cnn"][0]
    shallow = frame.index[frame["method_key"] == "shallow_cnn"][0]
    frame.loc[frame["method_key"] != "aes_cnn", "Accuracy"] = 0.5
    frame.loc[proposed, "Accuracy"] = 0.9
    frame.to_csv(path, index=False)
    assert "the proposed method is the most accurate (0.900)" in res()
    classical = frame.index[frame["method_key"] == "aes_classical"][0]
    frame.loc[[shallow, classical], "Accuracy"] = 0.6  # two methods tied for next best: both named
    frame.to_csv(path, index=False)
    line = [t for t in res().splitlines() if "chest" in t.lower()][0]
    assert "; next best, tied at 0.600: " in line and "Conventional shallow CNN without AES (" in line
    assert "AES-256-GCM + classical features (HOG/LBP) + scikit-learn (" in line
    frame.loc[classical, "Accuracy"] = 0.5
    frame.loc[shallow, ["Accuracy", "McNemar p vs proposed"]] = [0.95, 0.01]
    frame.to_csv(path, index=False)
    line = [t for t in res().splitlines() if "chest" in t.lower()][0]
    assert "the proposed method (0.900) is below Conventional shallow CNN without AES 0.950" in line
    assert "(McNemar p = 0.010, significant)" in line
    assert "; it is above the other methods, the best of them " in line and line.count(" 0.500 (") == 1
    frame.loc[shallow, ["Accuracy", "McNemar p vs proposed"]] = [0.9, float("nan")]  # a tie, no paired test
    frame.to_csv(path, index=False)
    line = [t for t in res().splitlines() if "chest" in t.lower()][0]
    assert "the proposed method is the most accurate (0.900)" in line
    assert "tied with Conventional shallow CNN without AES (no paired test)" in line


def test_the_native_input_verdict_follows_the_rule(tmp_path):
    """tuning-native: each input at its C of lowest validation loss; native adopted only if its loss is lower and
    its accuracy not lower."""
    def write(native_loss, native_acc):
        rows = [{"dataset": "d", "image_size": 64, "input": source, "C": c, "val_accuracy": acc,
                 "val_balanced_accuracy": acc, "val_roc_auc": 0.9, "val_loss": loss, "device": "cpu"}
                for source, c, loss, acc in (("upsampled", 0.1, 0.30, 0.90), ("upsampled", 1.0, 0.40, 0.95),
                                             ("native", 0.1, native_loss, native_acc), ("native", 1.0, 0.50, 0.99))]
        (tmp_path / "tuning").mkdir(exist_ok=True)
        pd.DataFrame(rows).to_csv(tmp_path / "tuning/native_input.csv", index=False)
        return docs.tuning_native(docs.Results(tmp_path), None)

    assert "**adopted**" in write(0.20, 0.90)  # accuracy equal at the best C: adopted
    assert "**not adopted**" in write(0.20, 0.89)  # lower accuracy (the C=1.0 row's 0.99 does not count)
    assert "**not adopted**" in write(0.30, 0.95)  # loss not lower
    pd.DataFrame([{"dataset": "d", "image_size": 64, "input": "native", "C": 1.0, "val_accuracy": 1.0,
                   "val_balanced_accuracy": 1.0, "val_roc_auc": 1.0, "val_loss": 0.1, "device": "cpu"}]).to_csv(
        tmp_path / "tuning/native_input.csv", index=False)
    with pytest.raises(docs.DocsError, match="no upsampled rows"):
        docs.tuning_native(docs.Results(tmp_path), None)


def test_the_finetune_verdict_follows_the_rule_and_the_budget(tmp_path):
    """tuning-finetune: the fine-tuned top against the frozen head at its C of lowest loss; adopted only if the loss
    is lower, the accuracy not lower and the adopted datasets' training fits the budget together."""
    def write(loss, acc, seconds=100.0, datasets=("d",)):
        rows = [{"dataset": ds, "image_size": 64, "arm": arm, "C": c, "val_accuracy": a, "val_balanced_accuracy": a,
                 "val_roc_auc": 0.9, "val_loss": lo, "epochs_run": 5 if arm == "finetune" else 0, "best_epoch": 3,
                 "train_seconds": seconds if arm == "finetune" else 1.0, "device": "cpu"}
                for ds in datasets
                for arm, c, lo, a in (("frozen", 0.1, 0.30, 0.90), ("frozen", 1.0, 0.40, 0.95),
                                      ("finetune", float("nan"), loss, acc))]
        (tmp_path / "tuning").mkdir(exist_ok=True)
        pd.DataFrame(rows).to_csv(tmp_path / "tuning/finetune.csv", index=False)
        return docs.tuning_finetune(docs.Results(tmp_path), None)

    assert "**adopted**" in write(0.20, 0.90)  # equal accuracy at the frozen head's best C
    assert "**not adopted**" in write(0.20, 0.89)  # lower accuracy (the C=1.0 row's 0.95 does not count)
    assert "**not adopted**" in write(0.30, 0.95)  # loss not lower
    over = write(0.20, 0.95, seconds=300.0, datasets=("a", "b"))  # each passes, together over 9 minutes
    assert over.count("**not adopted** (training 600 s over the 9-minute budget)") == 2
    rows = pd.read_csv(tmp_path / "tuning/finetune.csv")
    rows.loc[(rows["dataset"] == "b") & (rows["arm"] == "finetune"), "val_loss"] = 0.5  # b fails on loss
    rows.to_csv(tmp_path / "tuning/finetune.csv", index=False)
    one = docs.tuning_finetune(docs.Results(tmp_path), None)  # only a's 300 s count against the budget
    assert "- a: " in one and one.count("**adopted**") == 1 and one.count("**not adopted**.") == 1
    pd.DataFrame([{"dataset": "d", "arm": "frozen"}]).to_csv(tmp_path / "tuning/finetune.csv", index=False)
    with pytest.raises(docs.DocsError, match="needs frozen and finetune rows"):
        docs.tuning_finetune(docs.Results(tmp_path), None)


def test_the_testlike_brain_diagnostic_reads_both_files(tmp_path):
    (tmp_path / "tuning/testlike").mkdir(parents=True)
    (tmp_path / "tuning/adapt").mkdir(parents=True)
    (tmp_path / "tuning/testlike/shift_brain_mri.json").write_text(json.dumps(
        {"domain_auc_train_vs_test": 0.66, "domain_auc_old_val_vs_test": 0.74, "domain_auc_new_val_vs_test": 0.51,
         "n_val": 370, "overlap_with_old_val": 37}))
    rows = [{"seed": s, "adapted": a, "val_accuracy": acc, "val_balanced_accuracy": acc, "val_roc_auc": 0.9,
             "val_loss": loss, "machine": "cpu"}
            for s, a, acc, loss in ((42, False, 0.60, 1.0), (42, True, 0.58, 0.9), (43, False, 0.7, 0.8),
                                    (43, True, 0.7, 0.7))]
    pd.DataFrame(rows).to_csv(tmp_path / "tuning/adapt/testlike_brain_mri.csv", index=False)
    text = docs.tuning_testlike_brain(docs.Results(tmp_path), None)
    assert "| test-like validation split vs test | 0.510 |" in text
    assert "mean loss 0.900 → 0.800, accuracy 0.650 → 0.640: it would not adopt" in text


def test_subgroups_block_counts_the_errors_of_thin_groups(tmp_path):
    (tmp_path / "d").mkdir()
    pd.DataFrame([{"class_name": "a", "source": "x", "test_images": 100, "train_val_kept": 500,
                   "dropped_as_copy_of_test": 0, "accuracy_aes_cnn": 0.9},
                  {"class_name": "b", "source": "y", "test_images": 50, "train_val_kept": 10,
                   "dropped_as_copy_of_test": 40, "accuracy_aes_cnn": 0.6}]).to_csv(tmp_path / "d/subgroups.csv",
                                                                                   index=False)
    text = docs.subgroups(docs.Results(tmp_path), "d")
    assert "| b | y | 50 | 10 | 40 | 0.600 |" in text
    assert "hold 20 of the proposed CNN's 30 test errors, on 50 of the 150 test images." in text


def test_the_aspect_verdict_follows_the_rule_on_the_common_seeds(tmp_path):
    """tuning-aspect: the candidate against the default recipe, means over their common seeds; adopted only if the
    mean loss is lower, the mean accuracy not lower and the mean training time at most 1.5 times the default's."""
    (tmp_path / "tuning/aspect").mkdir(parents=True)

    def verdict(rows):
        frame = pd.DataFrame([{"dataset": "chest_xray", "image_size": 64, "candidate": cand, "seed": seed,
                               "val_accuracy": acc, "val_balanced_accuracy": acc, "val_roc_auc": 0.9, "val_loss": loss,
                               "epochs_run": 5, "train_seconds": secs, "images_per_second": 100, "device": "cpu"}
                              for cand, seed, acc, loss, secs in rows])
        frame.to_csv(tmp_path / "tuning/aspect/tuning.csv", index=False)
        return docs.tuning_aspect(docs.Results(tmp_path), None)

    base = [("J_stride2_long", 42, 0.90, 0.30, 100.0), ("J_stride2_long", 43, 0.92, 0.20, 100.0)]
    assert "**adopted**" in verdict(base + [("L_J_aspect", 42, 0.91, 0.25, 120.0), ("L_J_aspect", 43, 0.91, 0.20, 120.0)])
    assert "**not adopted**" in verdict(base + [("L_J_aspect", 42, 0.89, 0.10, 100.0),  # lower loss, lower accuracy
                                                ("L_J_aspect", 43, 0.92, 0.10, 100.0)])
    assert "**not adopted**" in verdict(base + [("L_J_aspect", 42, 0.95, 0.10, 160.0),  # over 1.5x the time
                                                ("L_J_aspect", 43, 0.95, 0.10, 160.0)])
    # only the rule's seeds (42 and 43) count: another seed is left out of both means
    assert "**adopted**" in verdict(base + [("L_J_aspect", 42, 0.91, 0.25, 100.0), ("L_J_aspect", 43, 0.91, 0.20, 100.0),
                                            ("L_J_aspect", 44, 0.10, 9.00, 999.0)])
    with pytest.raises(docs.DocsError, match=r"J_stride2_long lacks seed\(s\) \[43\]"):
        verdict(base[:1] + [("L_J_aspect", 42, 0.91, 0.25, 100.0), ("L_J_aspect", 43, 0.91, 0.25, 100.0)])


def test_the_distill_verdict_compares_the_two_arms_means_on_brain_mri(tmp_path):
    """tuning-distill: adopted only if the distilled networks' mean has a lower validation loss than the default's
    mean and an accuracy not lower; member rows and chest X-ray rows do not count; a missing mean is an error."""
    (tmp_path / "tuning").mkdir()

    def verdict(rows):
        pd.DataFrame([{"dataset": ds, "arm": arm, "setting": setting, "val_accuracy": acc, "val_balanced_accuracy": acc,
                       "val_roc_auc": 0.9, "val_loss": loss, "epochs_run": None, "train_seconds": 10.0,
                       "device": "cpu"} for ds, arm, setting, acc, loss in rows]).to_csv(tmp_path / "tuning/distill.csv",
                                                                                       index=False)
        return docs.tuning_distill(docs.Results(tmp_path), None)

    mean = "mean of seeds 42, 43, 44"
    base = [("brain_mri", "default", mean, 0.90, 0.30), ("brain_mri", "default", "seed 42", 0.10, 9.0)]
    assert "**adopted**" in verdict(base + [("brain_mri", "distill", mean, 0.90, 0.29)])
    assert "**not adopted**" in verdict(base + [("brain_mri", "distill", mean, 0.90, 0.30)])  # loss not lower
    assert "**not adopted**" in verdict(base + [("brain_mri", "distill", mean, 0.89, 0.10)])  # accuracy lower
    text = verdict(base + [("brain_mri", "distill", mean, 0.95, 0.20), ("chest_xray", "distill", mean, 0.10, 9.0)])
    assert "**adopted**" in text and "0.300 (default) → 0.200 (distill)" in text
    with pytest.raises(docs.DocsError, match="brain_mri has 0 rows"):
        verdict(base)


def test_the_finetune_cpu_block_compares_the_two_runs_record_by_record(tmp_path):
    """finetune-cpu: the config/finetune.yaml run's transfer and ensemble rows beside the default run's, the rule's
    record, McNemar against the proposed CNN and between the runs' transfer predictions (matched by id, in any
    order, labels checked); finetune-cpu-line: README's sentence."""
    root = tmp_path / "results"  # the default run it is compared with: the snapshot in default_run/
    for run in ("finetune_cpu/chest_xray/default_run", "finetune_cpu/chest_xray"):
        for rel in ("metrics", "predictions", "paired_tests.json"):
            (shutil.copytree if rel != "paired_tests.json" else shutil.copy2)(
                REPO / "results/finetune_cpu/chest_xray/default_run" / rel, root / run / rel)
    new = root / "finetune_cpu/chest_xray"
    record = {"chosen": "fine_tuned", "epochs_run": 9, "best_epoch": 5, "train_seconds": 1234.4,
              "frozen_head_C_lowest_loss": 0.1, "validation_loss_frozen_head": 0.2, "validation_loss_fine_tuned": 0.1,
              "validation_accuracy_frozen_head": 0.9, "validation_accuracy_fine_tuned": 0.95}
    path = new / "metrics/efficientnet_lite0_transfer.json"
    metrics = json.loads(path.read_text())
    default_acc = metrics["accuracy"]["value"]
    metrics["transfer"]["finetune"] = record
    metrics["accuracy"] = {"value": 0.9123, "ci95": [0.9, 0.93]}  # this run's number differs from the default's
    path.write_text(json.dumps(metrics))
    (new / "training").mkdir()
    (new / "training/efficientnet_lite0_finetune.json").write_text(json.dumps(
        {"provenance": {"cpu": {"logical_cpus": 2, "model_name": "AMD EPYC"}, "backend": "tensorflow", "threads": 2}}))
    paired = json.loads((new / "paired_tests.json").read_text())  # this run's McNemar against the proposed CNN
    paired["efficientnet_lite0_transfer"] = {"only_proposed_correct": 5, "only_baseline_correct": 9, "p_value": 0.42}
    (new / "paired_tests.json").write_text(json.dumps(paired))
    (new / "benchmarks").mkdir()
    (new / "benchmarks/finetune_efficientnet.tsv").write_text("s\th:m:s\n1320.0\t0:22:00\n")
    preds = new / "predictions/efficientnet_lite0_transfer.csv"
    frame = pd.read_csv(preds, dtype={"id": str})
    right = frame.index[frame["predicted"] == frame["label"]][:3]
    frame.loc[right, "predicted"] = 1 - frame.loc[right, "label"]  # three images the default got right, now wrong
    frame.iloc[::-1].to_csv(preds, index=False)  # another order: matched by id
    text = docs.finetune_cpu(docs.Results(root), None)
    assert "9 epochs (best 5) in 1,234 s of training (1,320 s for the whole job)" in text
    assert "**fine-tuned network kept**" in text and "2-core AMD EPYC CPU, tensorflow, 2 threads" in text
    assert f"| chest_xray | transfer | {docs.f3(default_acc)} → **0.912** [0.900, 0.930] |" in text  # default first
    transfer_row = next(r for r in text.splitlines() if r.startswith("| chest_xray | transfer |"))
    assert transfer_row.endswith("→ 0.420 (5 / 9) | 0.250 (3 / 0) |")  # against the CNN (default run first), and
    # between the runs: only the default right, on three
    line = docs.finetune_cpu_line(docs.Results(root), None)  # README's sentence: the kept network's test accuracy
    cnn = docs.f3(json.loads((root / "finetune_cpu/chest_xray/default_run/metrics/aes_cnn.json").read_text())[
        "accuracy"]["value"])
    assert "+22 min" in line
    assert f"chest X-ray test accuracy: transfer 0.912 (proposed CNN {cnn}, McNemar p = 0.420)" in line
    record["chosen"] = "frozen_head"
    path.write_text(json.dumps({**metrics, "transfer": {**metrics["transfer"], "finetune": record}}))
    assert "nothing changes; chest X-ray kept the frozen head" in docs.finetune_cpu_line(docs.Results(root), None)
    frame.iloc[1:].to_csv(preds, index=False)  # a test record missing from this run
    with pytest.raises(docs.DocsError, match="test records differ from the earlier run's"):
        docs.finetune_cpu(docs.Results(root), None)
    frame.assign(label=1 - frame["label"]).to_csv(preds, index=False)
    with pytest.raises(docs.DocsError, match="labels differ"):
        docs.finetune_cpu(docs.Results(root), None)
    path.write_text(json.dumps({**metrics, "transfer": {}}))  # a run without fine-tuning
    with pytest.raises(docs.DocsError, match="no transfer.finetune record"):
        docs.finetune_cpu_line(docs.Results(root), None)
    for generator in (docs.finetune_cpu, docs.finetune_cpu_line):
        with pytest.raises(docs.DocsError, match="holds no dataset"):
            generator(docs.Results(tmp_path / "empty"), None)
