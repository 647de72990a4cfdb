"""Compact VAE (Glazunov & Zarras 2023): Lipschitz bound, sphere codes, hole indicator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ad_core import load_detector, make_detector
from ad_core.detectors import compact_vae as cv
from ad_core.metrics import auroc
from ad_core.nn import init_module, make_generator


def plane_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return rows near a 2-D plane in 10-D, the plane's basis, and its orthogonal complement."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    basis, normal = q[:, :2], q[:, 2:]
    X = 1.5 * rng.normal(size=(n, 2)) @ basis.T + 0.05 * rng.normal(size=(n, 10))
    return X.astype(np.float32), basis, normal


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny networks train faster on one thread; on a shared CPU, OpenMP spinning costs 10x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def plane():
    return plane_data(400)[0]


def _max_ratio(f, dim: int, M: float, seed: int = 0) -> float:
    """Return max ||f(a) - f(b)||_inf / ||a - b||_inf over random pairs at several scales."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(3000, dim, generator=g) * 3.0
    step = torch.randn(3000, dim, generator=g)
    scale = 10.0 ** torch.empty(3000, 1).uniform_(-3, 1, generator=g)
    b = a + step * scale
    with torch.no_grad():
        num = (f(a) - f(b)).abs().amax(dim=1)
    return float((num / (a - b).abs().amax(dim=1)).max()) / M


@pytest.mark.parametrize("network,dim", [("mlp", 10), ("conv", 784)])
def test_untrained_lipschitz_encoder_respects_its_bound(network, dim):
    M = 3.0
    model = cv.CompactVAEModel(dim, [32, 16], 4, compactness="lipschitz", network=network,
                               likelihood="gaussian", lipschitz_constant=M)  # fmt: skip
    # Default initialisation: rows far outside the L1 ball, so the projection must act.
    init_module(model, make_generator(0))
    lin = [m for m in model.modules() if isinstance(m, cv.LipschitzLinear)][0]
    assert lin.weight.abs().sum(dim=1).max() > 1.0
    assert lin.effective_weight().abs().sum(dim=1).max() <= 1.0 + 1e-5
    assert _max_ratio(model.encoder_net, dim, M) <= 1.0 + 1e-4


def test_trained_lipschitz_encoder_respects_its_bound_and_uses_it(plane):
    M = 2.0
    det = make_detector("compact_vae", lipschitz_constant=M, epochs=15, rep_dim=2,
                        random_state=0).fit(plane)  # fmt: skip
    ratio = _max_ratio(det.model_.encoder_net, plane.shape[1], M)
    assert ratio <= 1.0 + 1e-4
    assert ratio > 0.05  # a bound that holds because the encoder is constant would mean nothing


def test_projection_onto_the_l1_ball_is_exact():
    w = torch.tensor([[3.0, -1.0, 0.0], [0.2, 0.3, -0.1], [0.5, 0.5, 0.5]])
    p = cv.project_rows_l1(w)
    torch.testing.assert_close(p[0], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(p[1], w[1])  # inside the ball: unchanged
    torch.testing.assert_close(p[2], torch.full((3,), 1.0 / 3.0))


def test_groupsort_sorts_pairs_and_keeps_values():
    x = torch.tensor([[1.0, -2.0, 3.0, 0.5]])
    out = cv.GroupSort()(x)
    torch.testing.assert_close(out, torch.tensor([[3.0, 0.5, 1.0, -2.0]]))


def test_log_bessel_matches_scipy():
    from scipy.special import ive

    k = torch.tensor([0.01, 0.7, 5.0, 49.0, 51.0, 400.0, 3000.0], dtype=torch.float64)
    for v in (0.0, 0.5, 1.5, 3.0, 7.0):
        ours = cv.log_bessel_iv(v, k).numpy()
        ref = np.log(ive(v, k.numpy())) + k.numpy()
        np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-10)


def test_vmf_samples_are_unit_vectors_with_the_right_mean_resultant():
    gen = make_generator(0)
    mu = torch.nn.functional.normalize(torch.randn(20000, 3, generator=gen), dim=1)
    kappa = torch.full((20000,), 10.0)
    z = cv.sample_vmf(mu, kappa, gen)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(20000))
    # For m = 3, E[mu . z] = coth(kappa) - 1/kappa.
    expected = 1.0 / math.tanh(10.0) - 0.1
    assert abs(float((mu * z).sum(1).mean()) - expected) < 0.005


def test_kl_to_the_uniform_prior_vanishes_for_a_flat_vmf_and_grows_with_kappa():
    kl = cv.kl_vmf_to_uniform(torch.tensor([1e-4, 1.0, 10.0, 100.0]), 3)
    assert abs(float(kl[0])) < 1e-6
    assert torch.all(kl[1:] > kl[:-1])
    # m = 3: KL = kappa coth(kappa) - 1 + log(kappa / sinh(kappa)) in closed form.
    k = 10.0
    closed = k / math.tanh(k) - 1.0 + math.log(k / math.sinh(k))
    assert abs(float(kl[2]) - closed) < 1e-9


def test_sphere_codes_have_unit_norm(plane):
    det = make_detector("compact_vae", compactness="sphere", rep_dim=3, epochs=5,
                        random_state=0).fit(plane)  # fmt: skip
    Z = det.transform(plane)
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1.0, atol=1e-5)
    assert np.isfinite(det.decision_function(plane)).all()


@pytest.mark.parametrize("compactness,least", [("lipschitz", 0.9), ("sphere", 0.85)])
def test_hole_scores_rank_off_manifold_points_above_on_manifold_ones(compactness, least):
    X, basis, normal = plane_data(900, seed=1)
    train, on = X[:600], X[600:]
    rng = np.random.default_rng(2)
    off = on[:150] + (2.0 * rng.normal(size=(150, 8)) @ normal.T).astype(np.float32)
    det = make_detector("compact_vae", compactness=compactness, rep_dim=3, epochs=10,
                        random_state=0).fit(train)  # fmt: skip
    h_on, h_off = det.hole_indicator(on), det.hole_indicator(off)
    assert np.isfinite(h_on).all() and np.isfinite(h_off).all()
    y = np.r_[np.zeros(len(on)), np.ones(len(off))]
    assert auroc(y, np.r_[h_on, h_off]) > least


def test_plain_setting_trains_exactly_like_the_vae(plane):
    common = dict(epochs=3, hidden_dims=(16, 8), rep_dim=2, random_state=3)
    vae = make_detector("vae", **common).fit(plane)
    plain = make_detector("compact_vae", compactness="none", likelihood="unit_gaussian",
                          network="mlp", **common).fit(plane)  # fmt: skip
    assert [h["loss"] for h in plain.history_] == [h["loss"] for h in vae.history_]
    for name, value in vae.model_.state_dict().items():
        torch.testing.assert_close(plain.model_.state_dict()[name], value, rtol=0, atol=0)
    np.testing.assert_allclose(plain.transform(plane), vae.transform(plane))
    # Importance sampling bounds log p(x) more tightly than the ELBO (the VAE's score is -ELBO).
    many = make_detector("vae", n_samples=64, **common).fit(plane)
    neg_elbo = many.decision_function(plane)
    neg_log_px = -plain.set_params(n_samples=64).log_likelihood(plane)
    assert neg_log_px.mean() < neg_elbo.mean()


def test_same_random_state_gives_the_same_model_and_another_differs(plane):
    kw = dict(epochs=3, rep_dim=2)
    a = make_detector("compact_vae", random_state=5, **kw).fit(plane).decision_function(plane)
    b = make_detector("compact_vae", random_state=5, **kw).fit(plane).decision_function(plane)
    c = make_detector("compact_vae", random_state=6, **kw).fit(plane).decision_function(plane)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("compactness", ["lipschitz", "sphere", "none"])
def test_save_and_load_give_identical_scores_and_codes(compactness, plane, tmp_path):
    det = make_detector("compact_vae", compactness=compactness, score="log_likelihood",
                        rep_dim=3, epochs=2, random_state=0).fit(plane)  # fmt: skip
    det.save(tmp_path / "m")
    loaded = load_detector(tmp_path / "m")
    assert loaded.likelihood_ == det.likelihood_ == "gaussian"
    np.testing.assert_array_equal(loaded.decision_function(plane), det.decision_function(plane))
    np.testing.assert_array_equal(loaded.hole_indicator(plane), det.hole_indicator(plane))
    np.testing.assert_array_equal(loaded.transform(plane), det.transform(plane))


def test_hole_score_is_the_hole_indicator_and_latent_helper_returns_it(plane):
    from ad_core import latent

    det = make_detector("compact_vae", epochs=2, rep_dim=2, random_state=0).fit(plane)
    h = det.hole_indicator(plane)
    np.testing.assert_array_equal(det.decision_function(plane), h)
    np.testing.assert_array_equal(latent.hole_indicator(det, plane), h)
    both = det.monte_carlo_scores(plane)
    np.testing.assert_array_equal(both["hole"], h)
    np.testing.assert_array_equal(both["log_likelihood"], det.log_likelihood(plane))


def test_settings_are_checked_with_clear_messages(plane):
    from ad_core.data import DataError

    with pytest.raises(ValueError, match="'compactness' must be one of lipschitz, sphere, none"):
        make_detector("compact_vae", compactness="cube", epochs=1).fit(plane)
    with pytest.raises(DataError, match="784"):
        make_detector("compact_vae", network="conv", epochs=1).fit(plane)
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        make_detector("compact_vae", likelihood="bernoulli", epochs=1).fit(plane)
    with pytest.raises(ValueError, match="'n_samples' must be a whole number from 2 to 512"):
        make_detector("compact_vae", n_samples=1, epochs=1).fit(plane)


def test_images_get_the_conv_network_and_a_bernoulli_decoder():
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(64, 784)).astype(np.float32)
    det = make_detector("compact_vae", epochs=1, rep_dim=2, n_samples=2,
                        random_state=0).fit(X)  # fmt: skip
    assert det.network_ == "conv" and det.likelihood_ == "bernoulli"
    assert any(isinstance(m, cv.LipschitzConv2d) for m in det.model_.modules())
    assert np.isfinite(det.decision_function(X[:5] * 15.0)).all()


def test_bench_quick_smoke_run_writes_its_tables(shared_data, tmp_path):
    from ad_core.bench import holes

    out = tmp_path / "holes.md"
    mnist = str(shared_data / "mnist")
    code = holes.main(["--quick", "--threads", "1", "--out", str(out), "--mnist-dir", mnist])
    assert code == 0
    text = out.read_text()
    assert "python -m ad_core.bench holes --quick --threads 1" in text
    assert "## Table 5" in text and "## Table 6" in text
    assert "| MNIST: 0s and 1s vs the other digits held out | plain VAE | hole indicator |" in text
    assert "| Lipschitz VAE, M=2 (ours) |" in text


def ring_with_an_empty_middle(seed: int, n_train: int = 1000, n_test: int = 300):
    """Return (training rows, held-out normal rows, rows in the middle) of a ring in 2-D.

    The normal class is a ring of radius 2 (noise 0.1); the test points sit in its empty
    middle (within about 0.6 of the centre), the obvious vacant hole of the class.
    """
    rng = np.random.default_rng(seed)
    t = rng.uniform(0.0, 2.0 * np.pi, n_train + n_test)
    X = 2.0 * np.c_[np.cos(t), np.sin(t)] + 0.1 * rng.normal(size=(n_train + n_test, 2))
    middle = 0.3 * rng.normal(size=(n_test, 2))
    return (X[:n_train].astype(np.float32), X[n_train:].astype(np.float32),
            middle.astype(np.float32))  # fmt: skip


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_hole_score_ranks_points_in_a_vacant_hole_above_normal_points(seed):
    from ad_core import latent

    train, normal, middle = ring_with_an_empty_middle(seed)
    det = make_detector("compact_vae", random_state=seed).fit(train)  # defaults: score="hole"
    assert det.score == "hole" and det.rep_dim_ == 2
    # The middle's codes do land in a vacant hole of the training codes' (2-D) latent map...
    holes = latent.find_holes(det.transform(train), det.transform(np.r_[normal, middle]))
    assert holes.in_hole[len(normal) :].mean() >= 0.9
    assert holes.in_hole[: len(normal)].mean() <= 0.02
    # ...and the default score ranks them above the held-out normal points.
    y = np.r_[np.zeros(len(normal)), np.ones(len(middle))]
    assert auroc(y, det.decision_function(np.r_[normal, middle])) >= 0.9


def test_kl_warm_up_is_for_the_calibrated_decoder_only(plane):
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(64, 784)).astype(np.float32)
    kw = dict(epochs=4, rep_dim=2, random_state=0, batch_size=100)
    table = make_detector("compact_vae", **kw).fit(plane)  # 400 rows: 4 steps per epoch
    assert table.likelihood_ == "gaussian" and table._warmup_steps(400) == 8  # half of 16
    bern = make_detector("compact_vae", n_samples=2, **kw).fit(images)
    assert bern.likelihood_ == "bernoulli" and bern._warmup_steps(64) == 0  # the paper's
    unit = make_detector("compact_vae", likelihood="unit_gaussian", **kw).fit(plane)
    assert unit._warmup_steps(400) == 0  # the plain VAE's decoder, trained like the vae
