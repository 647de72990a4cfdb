"""The BiGAN detector: adversarial training that stays stable, scored as Zenati et al. do."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from ad_core import load_detector, make_detector
from ad_core.data import load_table
from ad_core.detectors.bigan import BiGANModel, bigan_losses


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
    """Register bigan for these tests (the shared registry lists it once the lead adds it)."""
    from ad_core import detectors

    monkeypatch.setitem(detectors._REGISTRY, "bigan", "ad_core.detectors.bigan:BiGAN")


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5)).astype(np.float32)
    return X


def test_each_loss_reaches_only_its_own_networks():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = BiGANModel(5, [16], 3)
        x = torch.randn(32, 5)
    loss_d, loss_eg = bigan_losses(model, x, torch.Generator().manual_seed(1), 0.2)
    d_params = list(model.discriminator.parameters())
    eg_params = [*model.encoder.parameters(), *model.generator.parameters()]
    d_grads = torch.autograd.grad(loss_d, d_params + eg_params, allow_unused=True)
    assert all(g is not None and g.abs().sum() > 0 for g in d_grads[: len(d_params)])
    assert all(g is None for g in d_grads[len(d_params) :])
    eg_grads = torch.autograd.grad(loss_eg, d_params + eg_params, allow_unused=True)
    assert all(g is None for g in eg_grads[: len(d_params)])
    assert all(g is not None and g.abs().sum() > 0 for g in eg_grads[len(d_params) :])


def test_the_score_is_alpha_reconstruction_plus_the_rest_discriminator_features(blobs):
    X = blobs
    det = make_detector("bigan", epochs=2, random_state=0)
    assert det.fit(X) is det and det.decision_scores_.shape == (len(X),)
    assert det.hidden_dims_ == [128, 64] and det.rep_dim_ == 4  # fixed layers, derived code
    m = det.model_
    with torch.no_grad():
        x = torch.from_numpy(X)
        z = m.encoder(x)
        rebuilt = m.generator(z)
        gap = m.discriminator(x, z)[1] - m.discriminator(rebuilt, z)[1]
    # default: the L2 norm of both distances
    rec, feat = (x - rebuilt).norm(dim=1).numpy(), gap.norm(dim=1).numpy()
    np.testing.assert_allclose(det.decision_function(X), 0.9 * rec + 0.1 * feat, rtol=1e-5)
    only_rec = make_detector("bigan", epochs=2, random_state=0, alpha=1.0).fit(X)
    np.testing.assert_allclose(only_rec.decision_function(X), rec, rtol=1e-5)
    np.testing.assert_allclose(det.transform(X), z.numpy(), rtol=1e-6)  # codes are E(x)
    # the paper's L1 norm: sums of absolute differences, on the same model
    l1 = make_detector("bigan", epochs=2, random_state=0, norm="l1").fit(X)
    rec1, feat1 = (x - rebuilt).abs().sum(1).numpy(), gap.abs().sum(1).numpy()
    np.testing.assert_allclose(l1.decision_function(X), 0.9 * rec1 + 0.1 * feat1, rtol=1e-5)


@pytest.mark.parametrize("keep_best", [True, False])
def test_the_kept_weights_are_those_of_the_epoch_that_rebuilds_the_training_rows_best(
    blobs, keep_best
):
    from ad_core.detectors.bigan import reconstruction_error

    x = torch.from_numpy(blobs)
    det = make_detector("bigan", epochs=12, lr=1e-2, random_state=1, keep_best=keep_best)
    errors = []

    def record(event):
        errors.append(float(reconstruction_error(det.model_, x, "l2").mean()))

    det.fit(blobs, callback=record)
    final = float(reconstruction_error(det.model_, x, "l2").mean())
    late = errors[6:]  # only the second half of the 12 epochs competes
    assert len(set(np.round(late, 6))) > 1  # the epochs differ, so the choice matters
    chosen = 7 + int(np.argmin(late)) if keep_best else len(errors)
    assert det.best_epoch_ == chosen and (chosen < 12) == keep_best
    assert final == pytest.approx(errors[chosen - 1], rel=1e-6)
    if keep_best:  # not the first epoch's nearly constant output, though it rebuilds best
        assert final == pytest.approx(min(late), rel=1e-6) and final > min(errors)


def test_an_unknown_norm_is_refused_with_the_choices(blobs):
    from ad_core.detectors.base import ParameterError

    with pytest.raises(ParameterError, match="l1"):
        make_detector("bigan", epochs=1, norm="l3").fit(blobs)


def test_dropout_draws_from_the_detectors_generator_not_the_global_one(blobs):
    before = torch.get_rng_state()
    a = make_detector("bigan", epochs=2, random_state=4).fit(blobs)
    assert torch.equal(before, torch.get_rng_state())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(99)  # another global state must not change the model
        b = make_detector("bigan", epochs=2, random_state=4).fit(blobs)
    np.testing.assert_array_equal(a.decision_function(blobs), b.decision_function(blobs))
    c = make_detector("bigan", epochs=2, random_state=5).fit(blobs)
    assert not np.array_equal(a.decision_function(blobs), c.decision_function(blobs))


def test_saved_bigan_scores_identically(blobs, tmp_path):
    det = make_detector("bigan", epochs=2, random_state=0).fit(blobs)
    det.save(tmp_path / "m")
    loaded = load_detector(tmp_path / "m")
    np.testing.assert_array_equal(det.decision_function(blobs), loaded.decision_function(blobs))
    np.testing.assert_array_equal(det.transform(blobs), loaded.transform(blobs))
    assert loaded.best_epoch_ == det.best_epoch_


def _odds(shared_data, name: str) -> tuple[np.ndarray, np.ndarray]:
    file = {"thyroid": "thyroid.npz"}.get(name, f"{name}.mat")
    frame = load_table(shared_data / "odds" / file)
    y = frame.pop("label").to_numpy().astype(int)
    return frame.to_numpy(np.float64), y


@pytest.mark.slow
@pytest.mark.parametrize("name", ["thyroid", "cardio"])
def test_training_is_stable_on_thyroid_and_cardio_over_three_seeds(shared_data, name):
    """Default settings, 60/40 splits, unsupervised (training anomalies kept): beats chance."""
    X, y = _odds(shared_data, name)
    aurocs = []
    for seed in range(3):
        train, test = train_test_split(
            np.arange(len(y)), test_size=0.4, stratify=y, random_state=seed
        )
        mean, std = X[train].mean(0), X[train].std(0)
        std[std == 0] = 1.0
        det = make_detector("bigan", random_state=seed).fit((X[train] - mean) / std)
        losses = [h["loss"] for h in det.history_]
        assert np.isfinite(losses).all()
        aurocs.append(roc_auc_score(y[test], det.decision_function((X[test] - mean) / std)))
    assert min(aurocs) > 0.8, aurocs  # every seed well above chance (0.5)
