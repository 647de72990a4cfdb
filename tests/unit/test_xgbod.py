"""XGBOD (issue 12): unsupervised scores beside the features, boosted trees on the labels."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from ad_core import load_detector, make_detector
from ad_core.data.errors import DataError
from ad_core.detectors import ParameterError
from ad_core.detectors.xgbod import TreeArrays, hbos_score


@pytest.fixture(scope="module")
def data():
    """600 normal rows around 0 and 40 anomalies scattered around them in every direction at
    radius 4 to 6 (ADBench's "global" kind), 6 features."""
    rng = np.random.default_rng(3)
    normal = rng.normal(size=(600, 6))
    direction = rng.normal(size=(40, 6))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    anomalies = direction * rng.uniform(4, 6, size=(40, 1))
    X = np.concatenate([normal, anomalies])
    truth = np.r_[np.zeros(600, int), np.ones(40, int)]
    order = rng.permutation(len(X))
    return X[order], truth[order]


def few_labels(truth: np.ndarray, n_anomalies: int, n_normals: int, seed: int = 0) -> np.ndarray:
    """Return labels: a few of each class labelled with their truth, the rest -1."""
    rng = np.random.default_rng(seed)
    labels = np.full(truth.size, -1)
    labels[rng.choice(np.flatnonzero(truth == 1), n_anomalies, replace=False)] = 1
    labels[rng.choice(np.flatnonzero(truth == 0), n_normals, replace=False)] = 0
    return labels


def test_few_labels_beat_a_boosted_classifier_on_the_labels_alone(data):
    X, truth = data
    labels = few_labels(truth, 2, 8)
    open_ = labels == -1
    det = make_detector("xgbod", random_state=0).fit(X, labels)
    ours = roc_auc_score(truth[open_], det.decision_scores_[open_])
    known = labels != -1
    clf = HistGradientBoostingClassifier(min_samples_leaf=1, random_state=0)
    alone = clf.fit(X[known], labels[known]).predict_proba(X[open_])[:, 1]
    assert ours > roc_auc_score(truth[open_], alone) + 0.1
    assert ours > 0.9
    assert 0 < det.blend_weight_ < 1 and det.n_labelled_ == 10


def test_without_labels_the_score_is_the_unsupervised_prior(data):
    X, truth = data
    plain = make_detector("xgbod", random_state=0).fit(X)
    assert plain.blend_weight_ == 0.0 and plain.classifier_ == "none"
    new = X[:50] + 0.1
    np.testing.assert_array_equal(plain.decision_function(new), plain.prior_scores(new))
    # the prior ranks as the pool's detectors do: anomalies on top
    assert roc_auc_score(truth, plain.decision_scores_) > 0.9
    # no label at all and every row unlabelled are the same model
    unlabelled = make_detector("xgbod", random_state=0).fit(X, np.full(len(X), -1))
    np.testing.assert_array_equal(plain.decision_scores_, unlabelled.decision_scores_)


def test_labels_of_one_class_fall_back_to_the_prior_or_learn_against_the_unlabelled(data):
    X, truth = data
    plain = make_detector("xgbod", random_state=0).fit(X)
    normals_only = few_labels(truth, 0, 30)
    det = make_detector("xgbod", random_state=0).fit(X, normals_only)
    np.testing.assert_array_equal(det.decision_scores_, plain.decision_scores_)
    anomalies_only = few_labels(truth, 4, 0)
    # no unlabelled row as a normal: nothing to contrast the anomalies with, the prior alone
    alone = make_detector("xgbod", random_state=0, unlabelled_weight=0.0).fit(X, anomalies_only)
    assert alone.classifier_ == "none"
    np.testing.assert_array_equal(alone.decision_scores_, plain.decision_scores_)
    # unlabelled rows as presumed normals: a classifier, and (the classifier alone, no
    # prior) the hidden anomalies still rank high on the rows it trained on: each is scored
    # by a fold model that never saw it
    pu = make_detector("xgbod", random_state=0, unlabelled_weight=1.0, prior_strength=0.0).fit(
        X, anomalies_only
    )
    assert pu.classifier_ == "cross-fitted" and pu.blend_weight_ == 1.0
    open_ = anomalies_only == -1
    assert set(pu.train_model_[open_]) == set(range(pu.n_folds))
    assert (pu.train_model_[~open_] == -1).all()
    assert roc_auc_score(truth[open_], pu.decision_scores_[open_]) > 0.9


#: every detector the pool can hold: their state is rebuilt or read back on load
FULL_POOL = {
    "knn_neighbors": (1, 10),
    "lof_neighbors": (5, 20),
    "ecod": True,
    "hbos_bins": (5, 10),
}


def test_the_fallback_policy_presumes_normals_only_while_no_normal_is_labelled(data):
    X, truth = data
    both = few_labels(truth, 4, 10)
    fallback = {"presume_normal": "fallback", "unlabelled_weight": 0.5, "random_state": 0}
    det = make_detector("xgbod", **fallback).fit(X, both)
    assert det.classifier_ == "labelled rows" and (det.train_model_ == -1).all()
    always = make_detector("xgbod", **{**fallback, "presume_normal": "always"}).fit(X, both)
    assert always.classifier_ == "cross-fitted"
    assert not np.array_equal(det.decision_scores_, always.decision_scores_)
    anomalies_only = few_labels(truth, 4, 0)
    det = make_detector("xgbod", **fallback).fit(X, anomalies_only)
    assert det.classifier_ == "cross-fitted"


def test_save_and_load_keep_the_trees_and_give_identical_scores(data, tmp_path):
    X, truth = data
    labels = few_labels(truth, 5, 20)
    det = make_detector("xgbod", random_state=1, **FULL_POOL).fit(X, labels)
    assert det.tos_names_ == [
        "knn_1",
        "knn_10",
        "lof_5",
        "lof_20",
        "iforest",
        "ecod",
        "hbos_5",
        "hbos_10",
    ]
    det.save(tmp_path / "model")
    loaded = load_detector(tmp_path / "model")
    new = X[::3] * 1.05
    np.testing.assert_array_equal(det.decision_function(new), loaded.decision_function(new))
    np.testing.assert_array_equal(det.decision_scores_, loaded.decision_scores_)
    assert loaded.threshold_ == det.threshold_ and loaded.get_params() == det.get_params()
    # nothing pickled: every array reads back without pickle
    with np.load(tmp_path / "model" / "arrays.npz", allow_pickle=False) as npz:
        assert "tree_value" in npz.files and npz["tree_value"].dtype == np.float64
    # the loaded model retrains warm like the original
    more = few_labels(truth, 8, 30, seed=1)
    a = det.fine_tune(X, more).decision_scores_
    b = loaded.fine_tune(X, more).decision_scores_
    np.testing.assert_array_equal(a, b)


def test_fine_tune_on_the_same_rows_is_the_full_fit_and_other_rows_refit(data):
    X, truth = data
    labels = few_labels(truth, 4, 16)
    full = make_detector("xgbod", random_state=0).fit(X, labels)
    warm = make_detector("xgbod", random_state=0).fit(X).fine_tune(X, labels)
    np.testing.assert_array_equal(full.decision_scores_, warm.decision_scores_)
    np.testing.assert_array_equal(full.decision_function(X[:20]), warm.decision_function(X[:20]))
    other = X[:400]
    moved = make_detector("xgbod", random_state=0).fit(X).fine_tune(other, labels[:400])
    fresh = make_detector("xgbod", random_state=0).fit(other, labels[:400])
    np.testing.assert_array_equal(moved.decision_scores_, fresh.decision_scores_)


def test_tree_arrays_score_exactly_as_scikit_learn():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 5))
    y = (X[:, 0] + X[:, 1] ** 2 + rng.normal(size=500) > 2).astype(int)
    models = [
        HistGradientBoostingClassifier(
            max_iter=30, max_depth=d, max_leaf_nodes=None, min_samples_leaf=1, random_state=0
        ).fit(X, y)
        for d in (2, 4)
    ]
    trees = TreeArrays.from_sklearn(models)
    new = rng.normal(size=(300, 5)) * 1.5
    expected = np.stack([m.predict_proba(new)[:, 1] for m in models], axis=1)
    np.testing.assert_allclose(trees.proba(new), expected, rtol=1e-12, atol=1e-15)


def test_hbos_scores_rare_bins_and_values_outside_the_range_higher():
    from ad_core.detectors.xgbod import hbos_counts

    X = np.r_[np.zeros(90), np.ones(10)][:, None]
    low, high, counts = hbos_counts(X, 2)
    s = hbos_score(np.array([[0.0], [1.0], [5.0]]), low, high, counts)
    assert s[0] < s[1] < s[2]


def test_bad_settings_are_refused_in_plain_sentences(data):
    X, _ = data
    with pytest.raises(ParameterError, match="pool of unsupervised detectors is empty"):
        make_detector(
            "xgbod", knn_neighbors=(), lof_neighbors=(), n_estimators=0, ecod=False, hbos_bins=()
        ).fit(X)
    with pytest.raises(ParameterError, match="'hbos_bins' must be whole numbers of at least 2"):
        make_detector("xgbod", hbos_bins=(1,)).fit(X)
    with pytest.raises(ParameterError, match="'n_folds' must be a whole number from 2 to 10"):
        make_detector("xgbod", n_folds=1).fit(X)
    with pytest.raises(ParameterError, match="'blend_space' must be one of rank, probability"):
        make_detector("xgbod", blend_space="logit").fit(X)
    with pytest.raises(DataError, match="Labels must be -1"):
        make_detector("xgbod").fit(X, np.full(len(X), 2))


def test_a_few_rows_train_with_every_k_capped(data):
    X, _ = data
    det = make_detector(
        "xgbod", random_state=0, knn_neighbors=(1, 5, 10, 50), lof_neighbors=(10, 20)
    ).fit(X[:6])
    assert det.knn_k_ == [1, 5] and det.lof_k_ == [5]
    assert np.isfinite(det.decision_function(X[:3])).all()
