import numpy as np
import pandas as pd
import pytest

from cryptomed.metrics import evaluate
from cryptomed.reporting import comparison_figure, comparison_frame, comparison_markdown, mcnemar, paired_tests

PAPER = {"source": "test", "methods": {"aes_cnn": {"accuracy": 0.965}}, "aes_time_per_image_s": {"encrypt": 0.012, "decrypt": 0.015}}
Y = np.random.default_rng(0).integers(0, 2, 100)


def run(method, title, seed):
    rng = np.random.default_rng(seed)
    pred = np.where(rng.random(100) < 0.8, Y, 1 - Y)
    p = np.stack([1 - pred * 0.8 - 0.1, pred * 0.8 + 0.1], 1)
    r = evaluate(Y, p, ["N", "P"], "P", n_boot=20)
    r.update(method=method, method_title=title, timing_per_image_s={"inference": 0.001, "total": 0.001})
    preds = pd.DataFrame({"id": [f"{i:03d}" for i in range(100)], "label": Y, "predicted": pred})
    return r, preds


def test_table_has_every_column_one_row_per_method_and_paired_tests(tmp_path):
    (a, pa), (b, pb), (c, pc) = run("aes_cnn", "Proposed", 1), run("plain_cnn", "Plain", 1), run("he", "HE", 2)
    frame = comparison_frame([a, b, c], PAPER, {"aes_cnn": pa, "plain_cnn": pb, "he": pc})
    assert list(frame["Method"]) == ["Proposed", "Plain", "HE"]
    assert frame.loc[0, "Paper Accuracy"] == 0.965 and pd.isna(frame.loc[1, "Paper Accuracy"])
    assert frame.loc[1, "identical predictions to proposed"] and frame.loc[1, "McNemar p vs proposed"] == 1.0
    md = comparison_markdown(frame, "Chest", PAPER, [{"name": "Ref", "accuracy": 0.9, "source": "x"}])
    header = md.splitlines()[2]
    for col in ("Accuracy", "Precision", "Recall", "F1", "Specificity", "AUC", "Paper Accuracy", "McNemar"):
        assert col in header
    assert "| Proposed | " in md and "0.965" in md and "identical predictions" in md and "Ref: accuracy 0.9" in md
    comparison_figure(frame, "Chest", PAPER, tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"


def test_mcnemar_exact_values():
    a = np.array([1] * 10 + [0] * 2 + [1] * 20, bool)
    b = np.array([0] * 10 + [1] * 2 + [1] * 20, bool)
    r = mcnemar(a, b)
    assert (r["only_proposed_correct"], r["only_baseline_correct"]) == (10, 2)
    assert r["p_value"] == pytest.approx(0.0385742, abs=1e-6)  # 2 * P(X <= 2), X ~ Bin(12, 0.5)
    assert mcnemar(a, a)["p_value"] == 1.0


def test_paired_tests_match_by_id_not_row_order():
    (_, pa), (_, pb) = run("aes_cnn", "P", 1), run("x", "X", 1)
    shuffled = pb.sample(frac=1, random_state=0)
    assert paired_tests({"aes_cnn": pa, "x": shuffled})["x"]["identical_predictions"]


def test_lossless_proof_compares_every_array_the_models_use():
    import numpy as np

    from cryptomed.pipeline import lossless_proof

    rng = np.random.default_rng(0)
    plain = {"images": rng.integers(0, 256, (5, 4, 4), dtype=np.uint8), "labels": np.arange(5, dtype=np.int64),
             "ids": np.array([f"{i:06d}" for i in range(5)]), "splits": np.array(["train"] * 3 + ["test"] * 2)}
    order = np.array([3, 0, 4, 1, 2])  # the container may hold the records in another order
    dec = {k: (np.array(v[order].tolist()) if k == "ids" else v[order]) for k, v in plain.items()}
    proof = lossless_proof(plain, dec)
    assert proof["identical"] and proof["records"] == 5
    dec["images"] = dec["images"].copy()
    dec["images"][0, 0, 0] ^= 1  # one bit of one pixel
    proof = lossless_proof(plain, dec)
    assert not proof["identical"]
    assert proof["digests"]["images"]["preprocessed"] != proof["digests"]["images"]["decrypted"]
    assert proof["digests"]["labels"]["preprocessed"] == proof["digests"]["labels"]["decrypted"]


def test_provenance_names_cpu_flags_versions_backend_and_threads():
    from cryptomed.provenance import provenance

    p = provenance(2, "tensorflow")
    assert p["threads"] == 2 and p["backend"] == "tensorflow"
    assert p["versions"]["numpy"] and p["versions"]["keras"] and p["cpu"]["machine"]
    assert isinstance(p["cpu"]["flags"], list)


def test_provenance_records_tensorflow_threads_in_effect_when_a_request_was_not_honoured():
    tf = pytest.importorskip("tensorflow")
    from cryptomed.provenance import provenance

    current = tf.config.threading.get_intra_op_parallelism_threads()  # fixed once TensorFlow has run
    assert provenance(current + 3, "tensorflow")["threads_in_effect"] == current
    assert "threads_in_effect" not in provenance(current or None, "tensorflow")
