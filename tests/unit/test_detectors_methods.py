"""Method-specific checks: Deep SAD's paper details, the classic detectors' array scorers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.ensemble import IsolationForest as SkIsolationForest
from sklearn.svm import OneClassSVM as SkOneClassSVM

from ad_core import make_detector
from ad_core.detectors.deep_sad import DeepSADModel, semi_targets
from ad_core.nn import MLP, TrainConfig, fit_module, make_generator, widths_for


def _two_kinds_of_anomaly(seed=0):
    """Normals on a 2-D plane in 10-D, plus anomalies of two kinds off the plane."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(2, 10))
    normal = rng.normal(size=(600, 2)) @ basis + 0.05 * rng.normal(size=(600, 10))
    anomalies = rng.normal(size=(40, 2)) @ basis + rng.normal(scale=1.2, size=(40, 10))
    X = np.vstack([normal, anomalies]).astype(np.float32)
    X = (X - X.mean(0)) / X.std(0)
    return X, np.r_[np.zeros(600, int), np.ones(40, int)]


def test_labelled_anomalies_score_higher_after_training_with_labels():
    X, truth = _two_kinds_of_anomaly()
    y = np.full(len(X), -1)
    labelled = np.flatnonzero(truth)[:15]
    y[labelled] = 1
    params = dict(epochs=30, pretrain_epochs=20, lr=1e-3, pretrain_lr=1e-3, random_state=0)
    without = make_detector("deep_sad", **params).fit(X).decision_function(X)
    with_labels = make_detector("deep_sad", **params).fit(X, y).decision_function(X)
    rank = lambda s: s.argsort().argsort() / (len(s) - 1)  # noqa: E731
    assert rank(with_labels)[labelled].mean() > rank(without)[labelled].mean()
    assert np.median(rank(with_labels)[labelled]) > 0.9


def test_label_mapping_follows_the_paper():
    y = np.array([-1, 0, 1, -1])
    np.testing.assert_array_equal(semi_targets(y, 4), [0.0, 1.0, -1.0, 0.0])
    np.testing.assert_array_equal(semi_targets(None, 2), [0.0, 0.0])


def test_deep_sad_network_is_bias_free_with_non_affine_batchnorm():
    model = DeepSADModel(12, [32, 16], 8)
    for module in model.encoder.modules():
        if isinstance(module, torch.nn.Linear):
            assert module.bias is None
        if isinstance(module, torch.nn.BatchNorm1d):
            assert not module.affine


def test_center_coordinates_are_kept_away_from_zero():
    X, _ = _two_kinds_of_anomaly()
    det = make_detector("deep_sad", epochs=2, pretrain_epochs=2, random_state=0).fit(X)
    c = det.model_.c
    assert (c.abs() >= det.center_eps - 1e-9).all()


def test_deep_svdd_equals_deep_sad_without_labels():
    X, _ = _two_kinds_of_anomaly()
    common = dict(epochs=3, pretrain_epochs=3, random_state=1)
    svdd = make_detector("deep_svdd", **common).fit(X).decision_function(X)
    sad = make_detector("deep_sad", **common).fit(X).decision_function(X)
    np.testing.assert_array_equal(svdd, sad)


def test_widths_are_derived_from_the_data_like_the_reference_networks():
    assert widths_for(274) == ([128, 64], 32)  # arrhythmia_mlp
    assert widths_for(21) == ([32, 16], 8)  # cardio_mlp
    assert widths_for(36) == ([32, 16], 8)  # satellite / satimage-2
    assert widths_for(9) == ([32, 16], 8)  # shuttle_mlp
    assert widths_for(6) == ([32, 16], 4)  # thyroid_mlp


def test_training_loop_does_not_touch_the_global_seed():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    make_detector("autoencoder", epochs=2, random_state=0).fit(np.random.rand(50, 4))
    np.testing.assert_array_equal(torch.rand(3), expected)


def test_training_loop_lowers_the_loss():
    gen = make_generator(0)
    X = torch.randn(256, 5, generator=gen)
    model = MLP(5, [16], 5)
    losses = fit_module(
        model,
        lambda m, x: ((m(x) - x) ** 2).mean(),
        (X,),
        TrainConfig(epochs=30, batch_size=32, lr=1e-2, lr_milestones=(10,)),
        generator=gen,
    )
    assert losses[-1] < 0.5 * losses[0]


def test_learning_rate_drops_tenfold_at_each_milestone(monkeypatch):
    rates = []
    original_step = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        rates.append(self.param_groups[0]["lr"])
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    X = torch.randn(64, 3)
    fit_module(
        MLP(3, [4], 3),
        lambda m, x: ((m(x) - x) ** 2).mean(),
        (X,),
        TrainConfig(epochs=6, batch_size=64, lr=1.0, lr_milestones=(2, 4)),
        generator=make_generator(0),
    )
    np.testing.assert_allclose(rates, [1.0, 1.0, 0.1, 0.1, 0.01, 0.01])


def test_a_trailing_single_row_batch_does_not_break_batchnorm():
    X = np.random.default_rng(0).normal(size=(129, 5)).astype(np.float32)
    det = make_detector("deep_sad", epochs=1, pretrain_epochs=1, batch_size=128, random_state=0)
    assert np.isfinite(det.fit(X).decision_scores_).all()


def test_isolation_forest_array_scorer_matches_scikit_learn():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(500, 7))
    ours = make_detector("isolation_forest", n_estimators=50, random_state=5).fit(X)
    sk = SkIsolationForest(n_estimators=50, max_samples=256, random_state=5).fit(X)
    Xq = rng.normal(size=(300, 7)) * 2
    np.testing.assert_allclose(ours.decision_function(Xq), -sk.score_samples(Xq), rtol=1e-12)


def test_ocsvm_array_scorer_matches_scikit_learn():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(300, 5))
    ours = make_detector("ocsvm", nu=0.2).fit(X)
    sk = SkOneClassSVM(nu=0.2, gamma="scale").fit(X)
    Xq = rng.normal(size=(100, 5)) * 2
    np.testing.assert_allclose(ours.decision_function(Xq), -sk.decision_function(Xq), atol=1e-9)


def test_knn_training_scores_exclude_the_row_itself():
    X = np.array([[0.0], [1.0], [3.0], [10.0]])
    det = make_detector("knn", n_neighbors=1).fit(X)
    np.testing.assert_allclose(det.decision_scores_, [1.0, 1.0, 2.0, 7.0])
    np.testing.assert_allclose(det.decision_function(np.array([[2.0]])), [1.0])


@pytest.mark.parametrize("name", ["autoencoder", "deep_sad"])
def test_auto_device_trains_on_cuda_when_present_else_cpu(name):
    det = make_detector(name, epochs=1, random_state=0)  # device="auto"
    if "pretrain_epochs" in det.get_params():
        det.set_params(pretrain_epochs=1)
    det.fit(np.random.rand(40, 3))
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert next(det.model_.parameters()).device.type == expected
    assert det.decision_function(np.random.rand(5, 3)).shape == (5,)


@pytest.mark.parametrize(
    "device, message",
    [("gpu", "must be 'auto', 'cpu' or 'cuda'"), ("cuda", "has no CUDA GPU")],
)
def test_a_device_that_cannot_be_used_is_refused_in_a_sentence(device, message):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU, so 'cuda' is a usable device here")
    det = make_detector("autoencoder", epochs=1, device=device)
    with pytest.raises(ValueError, match=message):
        det.fit(np.random.rand(40, 3))


def test_vae_score_of_a_row_does_not_depend_on_the_rows_scored_with_it():
    X = np.random.default_rng(0).normal(size=(300, 6)).astype(np.float32)
    det = make_detector("vae", epochs=2, random_state=0).fit(X)
    whole = det.decision_function(X)
    np.testing.assert_allclose(det.decision_function(X[5:10]), whole[5:10], rtol=1e-5)
    np.testing.assert_allclose(det.decision_function(X[7:8]), whole[7:8], rtol=1e-5)
    np.testing.assert_allclose(det.decision_scores_, whole, rtol=1e-5)
