"""The PCA detector: distance from (and within) the principal subspace, scikit-learn inside."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA as SkPCA
from sklearn.metrics import roc_auc_score

from ad_core import load_detector, make_detector
from ad_core.data import DataError, load_sample


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
    """Register pca for these tests (the shared registry lists it once the lead adds it)."""
    from ad_core import detectors

    monkeypatch.setitem(detectors._REGISTRY, "pca", "ad_core.detectors.pca:PCA")


@pytest.fixture(scope="module")
def plane():
    """300 rows near a 2-D plane in 5-D, and 10 rows off the plane."""
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(5, 5)))[0]
    inside = rng.normal(size=(300, 2)) * [3.0, 2.0]
    X = inside @ basis[:, :2].T + 0.05 * rng.normal(size=(300, 5))
    off = rng.normal(size=(10, 2)) @ basis[:, :2].T + 1.5 * basis[:, 2]
    return X, off, basis


def test_reconstruction_score_and_codes_agree_with_scikit_learn(plane):
    X, off, _ = plane
    det = make_detector("pca", n_components=2, score="reconstruction").fit(X)
    sk = SkPCA(n_components=2, svd_solver="full").fit(X)
    both = np.r_[X, off]
    expected = np.sum((both - sk.inverse_transform(sk.transform(both))) ** 2, axis=1)
    np.testing.assert_allclose(det.decision_function(both), expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(det.transform(both), sk.transform(both), rtol=1e-9, atol=1e-12)
    assert det.decision_function(off).min() > det.decision_scores_.max()  # off the plane


def test_the_automatic_number_of_components_explains_90_percent_and_leaves_a_residual(plane):
    X, _, _ = plane
    assert make_detector("pca").fit(X).n_components_ == 2  # the plane holds > 99 %
    rng = np.random.default_rng(1)
    iso = rng.normal(size=(400, 6))  # no structure: needs 6 for 90 %, gets at most 5
    assert make_detector("pca").fit(iso).n_components_ == 5


def test_rows_far_along_the_subspace_need_the_combined_score(plane):
    """Reconstruction error cannot see a row far out along the plane; T² can."""
    X, _, basis = plane
    far = 12.0 * basis[:, :1].T + np.zeros((5, 5))  # on the plane, four sigmas out
    truth = np.r_[np.zeros(len(X)), np.ones(5)]
    rows = np.r_[X, far]
    reconstruction = make_detector("pca", n_components=2, score="reconstruction").fit(X)
    combined = make_detector("pca", n_components=2).fit(X)
    assert roc_auc_score(truth, reconstruction.decision_function(rows)) < 0.8
    assert roc_auc_score(truth, combined.decision_function(rows)) > 0.99
    # Each part is scaled to mean 1 on the training rows.
    assert combined.decision_scores_.mean() == pytest.approx(2.0)


def test_too_many_components_is_a_clear_error(plane):
    X, _, _ = plane
    with pytest.raises(DataError, match="6 components were asked for.*at most 5"):
        make_detector("pca", n_components=6).fit(X)


def test_saved_pca_scores_identically_without_pickle(plane, tmp_path):
    X, off, _ = plane
    det = make_detector("pca").fit(X)
    det.save(tmp_path / "m")
    assert not list(tmp_path.glob("m/*.pkl")) and (tmp_path / "m" / "arrays.npz").is_file()
    loaded = load_detector(tmp_path / "m")
    both = np.r_[X, off]
    np.testing.assert_array_equal(det.decision_function(both), loaded.decision_function(both))
    np.testing.assert_array_equal(det.transform(both), loaded.transform(both))
    assert loaded.n_components_ == det.n_components_


def test_pca_ranks_abnormal_ecg5000_beats_high():
    """Quality on real beats: the bundled ECG5000 sample, fitted on normal beats."""
    frame = load_sample("ecg5000")
    X = frame[[c for c in frame.columns if c.startswith("t")]].to_numpy(np.float64)
    abnormal = (frame["label"].to_numpy() != 1).astype(int)
    order = np.random.default_rng(0).permutation(len(X))
    train, test = order[:500], order[500:]
    det = make_detector("pca").fit(X[train[abnormal[train] == 0]])
    assert roc_auc_score(abnormal[test], det.decision_function(X[test])) > 0.95
