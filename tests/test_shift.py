import numpy as np
import pytest

from cryptomed import CryptomedError
from cryptomed.shift import domain_scores, split_like_test, thumbnails, validation_like_test


def images(rng, n, bright_top=False):
    x = rng.integers(60, 120, size=(n, 32, 32)).astype(np.uint8)
    if bright_top:  # an acquisition difference: the upper half brighter
        x[:, :16] += 80
    return x


def test_thumbnails_are_block_means_and_crop_the_remainder():
    x = np.arange(2 * 64 * 64, dtype=np.float64).reshape(2, 64, 64) % 256
    t = thumbnails(x.astype(np.uint8))
    assert t.shape == (2, 256)
    np.testing.assert_allclose(t[0, 0], x[0, :4, :4].mean() / 255, rtol=1e-6)
    assert thumbnails(np.zeros((1, 35, 35), np.uint8)).shape == (1, 256)  # 2-px blocks, 3 edge rows/cols left out
    with pytest.raises(ValueError, match="smaller than"):
        thumbnails(np.zeros((1, 8, 8), np.uint8))


def test_domain_auc_sees_a_shift_and_not_its_absence():
    rng = np.random.default_rng(0)
    train = images(rng, 120)
    same, shifted = images(rng, 40), images(rng, 40, bright_top=True)
    is_test = np.r_[np.zeros(120, bool), np.ones(40, bool)]
    _, auc_none = domain_scores(thumbnails(np.r_[train, same]), is_test)
    _, auc_shift = domain_scores(thumbnails(np.r_[train, shifted]), is_test)
    assert auc_none < 0.7 and auc_shift > 0.95


def test_domain_scores_do_not_depend_on_record_order_given_keys():
    rng = np.random.default_rng(1)
    x = np.r_[images(rng, 60), images(rng, 30, bright_top=True)]
    is_test = np.r_[np.zeros(60, bool), np.ones(30, bool)]
    keys = np.array([f"{i:04d}" for i in rng.permutation(90)])
    p1, a1 = domain_scores(thumbnails(x), is_test, keys)
    perm = rng.permutation(90)
    p2, a2 = domain_scores(thumbnails(x[perm]), is_test[perm], keys[perm])
    np.testing.assert_array_equal(p1[perm], p2)
    assert a1 == a2


def test_split_takes_whole_groups_of_highest_mean_score_per_class():
    scores = np.array([0.9, 0.1, 0.8, 0.7, 0.2, 0.3, 0.95, 0.05, 0.6, 0.4])
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    groups = np.array(["a", "b", "c", "c", "d", "e", "f", "g", "h", "h"])
    val = split_like_test(scores, labels, groups, 0.4)  # 2 of each class
    # class 0: group a (0.9) then c (mean 0.75, two images) -> 3 images, the group is not cut
    assert val[[0, 2, 3]].all() and not val[[1, 4]].any()
    # class 1: f (0.95), then h (mean 0.5) -> 3 images
    assert val[[6, 8, 9]].all() and not val[[5, 7]].any()


def test_a_group_spanning_classes_is_never_cut():
    scores = np.array([0.9, 0.8, 0.1, 0.2, 0.3, 0.7])
    labels = np.array([0, 0, 0, 1, 1, 1])
    groups = np.array(["p", "q", "r", "s", "t", "p"])  # patient p has an image of each class
    val = split_like_test(scores, labels, groups, 0.34)  # 1 of each class
    assert val[0] and val[5]  # p taken for class 0 brings its class-1 image along, and it counts for class 1
    assert val.sum() == 2
    sides = {}
    for g, v in zip(groups, val):
        sides.setdefault(g, set()).add(bool(v))
    assert all(len(s) == 1 for s in sides.values())


def test_ties_are_broken_by_content_key_not_group_name():
    scores = np.array([0.5, 0.5, 0.1, 0.1])
    labels = np.zeros(4, int)
    val = split_like_test(scores, labels, np.array([10, 2, 3, 4]), 0.25, keys=["a", "b", "c", "d"])
    assert val.tolist() == [True, False, False, False]
    val = split_like_test(scores, labels, np.array([10, 2, 3, 4]), 0.25, keys=["b", "a", "c", "d"])
    assert val.tolist() == [False, True, False, False]


def test_test_like_validation_picks_the_training_images_that_look_like_test():
    rng = np.random.default_rng(2)
    plain, like = images(rng, 150), images(rng, 30, bright_top=True)
    test = images(rng, 40, bright_top=True)
    x = np.r_[plain, like, test]
    is_test = np.r_[np.zeros(180, bool), np.ones(40, bool)]
    labels = np.r_[np.arange(180) % 2, np.arange(40) % 2]
    groups = np.arange(220)
    keys = [f"{i:05d}" for i in range(220)]
    val, report = validation_like_test(x, is_test, labels, groups, keys, 0.1)
    assert val.shape == (180,) and val.sum() == 18 and val[labels[:180] == 0].sum() == 9
    assert val[150:].sum() >= 15  # nearly all from the test-like 30 of 180
    assert report["domain_auc_train_vs_test"] > 0.6
    assert report["mean_test_likeness"]["val"] > report["mean_test_likeness"]["train"]


def test_too_few_test_images_is_a_clear_error():
    x = np.zeros((5, 16, 16), np.uint8)
    with pytest.raises(CryptomedError, match="my_set: test-like validation needs at least 2 training and 2 test"):
        validation_like_test(x, [0, 0, 0, 0, 1], [0, 1, 0, 1, 0], range(5), range(5), 0.2, name="my_set")


def test_each_feature_family_sees_its_own_kind_of_shift():
    """shift_by_feature: a border-only brightening is seen by the border and not the centre; blur by sharpness."""
    from cryptomed.shift import FEATURE_FAMILIES, feature_family, shift_by_feature

    rng = np.random.default_rng(1)
    train, test = images(rng, 120), images(rng, 40)
    test[:, :4] += 80  # the top border rows only
    is_test = np.r_[np.zeros(120, bool), np.ones(40, bool)]
    auc = shift_by_feature(np.r_[train, test], is_test)
    assert set(auc) == set(FEATURE_FAMILIES)
    assert auc["border"] > 0.95 and auc["thumbnail"] > 0.95 and auc["centre"] < 0.7
    blurred = images(rng, 40)
    blurred = ((blurred[:, :, 1:].astype(int) + blurred[:, :, :-1]) // 2).astype(np.uint8)
    blurred = np.concatenate([blurred, blurred[:, :, -1:]], axis=2)  # same size, half the pixel-to-pixel contrast
    assert shift_by_feature(np.r_[train, blurred], is_test, families=("sharpness",))["sharpness"] > 0.95
    assert feature_family(train, "histogram").shape == (120, 32) and feature_family(train, "profiles").shape == (120, 64)
    with pytest.raises(ValueError, match="unknown feature family 'colour'"):
        feature_family(train, "colour")


def test_test_likeness_by_class_reads_training_labels_only():
    from cryptomed.shift import test_likeness_by_class

    rng = np.random.default_rng(2)
    a, b, test = images(rng, 80), images(rng, 80, bright_top=True), images(rng, 40, bright_top=True)
    is_test = np.r_[np.zeros(160, bool), np.ones(40, bool)]
    labels = np.r_[np.zeros(80, int), np.ones(80, int), -np.ones(40, int)]  # the test labels blanked
    out = test_likeness_by_class(np.r_[a, b, test], is_test, labels, ["a", "b"])
    assert list(out) == ["training a", "training b", "test (all classes)"]
    assert [v["n"] for v in out.values()] == [80, 80, 40]
    assert out["training b"]["mean_test_likeness"] > out["training a"]["mean_test_likeness"]


def test_the_shift_features_block_lists_families_and_groups(tmp_path):
    import pandas as pd

    from cryptomed import docs

    folder = tmp_path / "results/tuning/testlike"
    folder.mkdir(parents=True)
    rows = [{"kind": "domain ROC-AUC", "name": "border", "value": 0.7261, "n": 5814},
            {"kind": "mean test-likeness", "name": "training NORMAL", "value": 0.0091, "n": 1340}]
    pd.DataFrame(rows).to_csv(folder / "shift_features_chest_xray.csv", index=False)
    text = docs.shift_features(docs.Results(tmp_path / "results"), "chest_xray")
    assert "| its border (outer ring of 2 blocks) | 0.726 |" in text and "| training NORMAL | 1,340 | 0.009 |" in text
    pd.DataFrame(rows[:1]).to_csv(folder / "shift_features_chest_xray.csv", index=False)
    with pytest.raises(docs.DocsError, match="needs domain ROC-AUC and mean test-likeness rows"):
        docs.shift_features(docs.Results(tmp_path / "results"), "chest_xray")
