"""COPOD (Li et al., ICDM 2020) against a computation by hand, and PyOD's COPOD where installed."""

from __future__ import annotations

import numpy as np
import pytest

from ad_core import load_detector, make_detector

#: three rows, two features: feature 0 is skewed right (one large value), feature 1 left
X = np.array([[1.0, 5.0], [2.0, 4.0], [9.0, -3.0]])
#: in-sample tail ECDFs of X (n = 3), as in tests/unit/test_ensemble_ecod.py
LEFT = np.array([[1 / 3, 1.0], [2 / 3, 2 / 3], [1.0, 1 / 3]])
RIGHT = np.array([[1.0, 1 / 3], [2 / 3, 2 / 3], [1 / 3, 1.0]])


def test_training_scores_are_the_authors_per_feature_rule():
    det = make_detector("copod").fit(X)
    u_left, u_right = -np.log(LEFT), -np.log(RIGHT)
    # skew: feature 0 right tail, feature 1 left tail
    auto = np.column_stack([u_right[:, 0], u_left[:, 1]])
    expected = np.maximum(auto, (u_left + u_right) / 2).sum(axis=1)
    np.testing.assert_allclose(det.decision_scores_, expected)
    assert int(np.argmax(det.decision_scores_)) == 2  # (9, -3): far out in both skewed tails


def test_it_differs_from_ecod_in_the_tail_the_skew_does_not_point_to():
    rng = np.random.default_rng(0)
    data = rng.gamma(2.0, size=(400, 1))  # skewed right: the left tail is the unexpected one
    low = np.array([[data.min() - 0.01]])  # beyond every value on the left
    copod, ecod = make_detector("copod").fit(data), make_detector("ecod").fit(data)
    # ECOD counts the left tail in full; COPOD half of both tails
    neg_left, neg_right = ecod._tail_logs(low, in_sample=False)
    assert ecod.decision_function(low)[0] == pytest.approx(neg_left[0, 0])
    assert copod.decision_function(low)[0] == pytest.approx((neg_left[0, 0] + neg_right[0, 0]) / 2)


def test_scores_do_not_depend_on_the_batch_and_survive_a_save(tmp_path):
    rng = np.random.default_rng(2)
    det = make_detector("copod").fit(rng.normal(size=(200, 4)))
    new = rng.normal(size=(30, 4))
    whole = det.decision_function(new)
    parts = np.concatenate([det.decision_function(new[:7]), det.decision_function(new[7:])])
    np.testing.assert_array_equal(whole, parts)
    det.save(tmp_path / "copod")
    np.testing.assert_array_equal(load_detector(tmp_path / "copod").decision_function(new), whole)


def test_training_scores_equal_pyods_copod():
    copod = pytest.importorskip("pyod.models.copod")
    rng = np.random.default_rng(1)
    data = rng.gamma(2.0, size=(300, 5))
    data[:, 2] = np.round(data[:, 2])  # ties
    data[:, 3] *= -1  # a left-skewed feature
    peer = copod.COPOD().fit(data)
    det = make_detector("copod").fit(data)
    np.testing.assert_allclose(det.decision_scores_, peer.decision_scores_)
