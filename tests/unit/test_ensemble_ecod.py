"""ECOD (Li et al., TKDE 2022) against a computation by hand, and PyOD's ECOD where installed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ad_core import load_detector, make_detector
from ad_core.detectors.ecod import sample_skewness

#: three rows, two features: feature 0 is skewed right (one large value), feature 1 left
X = np.array([[1.0, 5.0], [2.0, 4.0], [9.0, -3.0]])


def test_skewness_sign_picks_the_tail_of_each_feature():
    skew = sample_skewness(X)
    # feature 0: deviations -3, -2, 5 -> m3 = (-27 - 8 + 125) / 3 = 30 > 0
    assert skew[0] > 0 and skew[1] < 0
    m2 = np.mean([9.0, 4.0, 25.0])
    assert skew[0] == pytest.approx(30.0 / m2**1.5)
    assert sample_skewness(np.ones((4, 1)))[0] == 0.0  # no spread, no skew


#: in-sample tail ECDFs of X (n = 3): F_left = #{<= x} / 3, F_right = #{>= x} / 3.
#: feature 0 values 1, 2, 9: F_left 1/3, 2/3, 1;  F_right 1, 2/3, 1/3
#: feature 1 values 5, 4, -3: F_left 1, 2/3, 1/3; F_right 1/3, 2/3, 1
LEFT = np.array([[1 / 3, 1.0], [2 / 3, 2 / 3], [1.0, 1 / 3]])
RIGHT = np.array([[1.0, 1 / 3], [2 / 3, 2 / 3], [1 / 3, 1.0]])


def test_training_scores_of_three_sums_are_the_printed_algorithm():
    det = make_detector("ecod", aggregate="three_sums").fit(X)
    o_left, o_right = -np.log(LEFT).sum(axis=1), -np.log(RIGHT).sum(axis=1)
    # skew: feature 0 right tail, feature 1 left tail
    o_auto = -np.log(RIGHT[:, 0]) - np.log(LEFT[:, 1])
    expected = np.maximum.reduce([o_left, o_right, o_auto])
    np.testing.assert_allclose(det.decision_scores_, expected)
    # Row 3 (9, -3) is extreme in both features' skewed tails: the largest score.
    assert det.decision_scores_[2] == pytest.approx(2 * math.log(3))
    assert np.argmax(det.decision_scores_) == 2


def test_per_feature_sums_each_features_more_extreme_tail():
    det = make_detector("ecod").fit(X)
    assert det.aggregate == "per_feature"  # the default: the authors' code
    expected = np.maximum(-np.log(LEFT), -np.log(RIGHT)).sum(axis=1)
    np.testing.assert_allclose(det.decision_scores_, expected)
    # Row 1 (1, 5) is low in feature 0 and high in feature 1: the one-sided sums count one
    # of the two tails each, the per-feature sum counts both.
    assert det.decision_scores_[0] == pytest.approx(2 * math.log(3))
    three = make_detector("ecod", aggregate="three_sums").fit(X)
    assert three.decision_scores_[0] == pytest.approx(math.log(3))
    # Each feature's larger tail is never below any one-sided sum's term.
    rng = np.random.default_rng(3)
    data, new = rng.gamma(2.0, size=(100, 4)) * [1, -1, 1, -1], rng.normal(size=(20, 4))
    per, sums = make_detector("ecod").fit(data), make_detector("ecod", aggregate="three_sums")
    sums.fit(data)
    assert np.all(per.decision_function(new) >= sums.decision_function(new) - 1e-12)
    assert np.any(per.decision_function(new) > sums.decision_function(new) + 1e-6)


def test_a_new_row_joins_the_ecdf_it_is_scored_against():
    # (20, 0): feature 0 beyond every training value, feature 1 between -3 and 4.
    # F_left = (#{<=} + 1) / 4, F_right = (#{>=} + 1) / 4
    f0_left, f0_right = (3 + 1) / 4, (0 + 1) / 4
    f1_left, f1_right = (1 + 1) / 4, (2 + 1) / 4
    o_left = -math.log(f0_left) - math.log(f1_left)
    o_right = -math.log(f0_right) - math.log(f1_right)
    o_auto = -math.log(f0_right) - math.log(f1_left)
    row = np.array([[20.0, 0.0]])
    (score,) = make_detector("ecod", aggregate="three_sums").fit(X).decision_function(row)
    assert score == pytest.approx(max(o_left, o_right, o_auto))
    (score,) = make_detector("ecod").fit(X).decision_function(row)
    assert score == pytest.approx(-math.log(f0_right) - math.log(f1_left))
    assert np.isfinite(score)  # never log 0, however far out


def test_ecod_scores_do_not_depend_on_the_batch_and_survive_a_save(tmp_path):
    rng = np.random.default_rng(0)
    train, new = rng.gamma(2.0, size=(200, 4)), rng.gamma(2.0, size=(30, 4))
    det = make_detector("ecod").fit(train)
    whole = det.decision_function(new)
    one_by_one = np.concatenate([det.decision_function(new[i : i + 1]) for i in range(30)])
    np.testing.assert_array_equal(whole, one_by_one)
    det.save(tmp_path / "ecod")
    np.testing.assert_array_equal(load_detector(tmp_path / "ecod").decision_function(new), whole)


def test_per_feature_is_pyods_ecod_and_three_sums_never_above_it():
    ecod = pytest.importorskip("pyod.models.ecod")
    rng = np.random.default_rng(1)
    data = rng.gamma(2.0, size=(300, 5))
    data[:, 2] = np.round(data[:, 2])  # ties
    data[:, 3] *= -1  # a left-skewed feature
    peer = ecod.ECOD().fit(data)
    det = make_detector("ecod").fit(data)
    neg_left, neg_right = det._tail_logs(data, in_sample=True)
    np.testing.assert_allclose(neg_left, peer.U_l)
    np.testing.assert_allclose(neg_right, peer.U_r)
    # The authors' code: the same training scores.
    np.testing.assert_allclose(det.decision_scores_, peer.decision_scores_)
    # New rows: PyOD re-estimates the ECDFs with the batch, here the row joins the training
    # ECDF; on a batch small beside the training rows the two rank the rows alike.
    new = rng.gamma(2.0, size=(10, 5)) * [1, 1, 1, -1, 1]
    ours, theirs = det.decision_function(new), peer.decision_function(new)
    assert np.corrcoef(ours, theirs)[0, 1] > 0.99
    three = make_detector("ecod", aggregate="three_sums").fit(data)
    assert np.all(peer.decision_scores_ >= three.decision_scores_ - 1e-9)
