"""The self-supervised detectors: the aligned augmentation wins, GOAD and NeuTraL-AD find what
they are built for, settings that cannot fit the data are refused in words (issue 10)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score

from ad_core import augment, load_detector, make_detector
from ad_core.data.errors import DataError
from ad_core.detectors import ParameterError
from ad_core.detectors.neutral_ad import contrastive_loss


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dependency_case():
    """600 rows of four strongly correlated feature pairs; 60 anomalies whose features are
    drawn independently from the normal marginals (every value plausible, the pairs broken)."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=(600, 4))
    normal = np.repeat(base, 2, axis=1) + 0.1 * rng.normal(size=(600, 8))
    anomalies = np.column_stack([rng.choice(normal[:, j], 60) for j in range(8)])
    X = np.vstack([normal, anomalies]).astype(np.float32)
    return X, np.r_[np.zeros(600), np.ones(60)]


@pytest.fixture(scope="module")
def rotated_digits():
    """1200 of scikit-learn's 8 x 8 digits, and 120 other digits turned a quarter."""
    digits = load_digits().data / 16.0
    order = np.random.default_rng(0).permutation(len(digits))
    turned = augment.augment(digits[order[1200:1320]], "rotate", 90, rng=0)
    X = np.vstack([digits[order[:1200]], turned]).astype(np.float32)
    return X, np.r_[np.zeros(1200), np.ones(120)]


@pytest.fixture(scope="module")
def plane_case():
    """400 rows near a 2-D plane in 6-D, and 40 rows off the plane (twice the spread)."""
    rng = np.random.default_rng(0)
    A = rng.normal(size=(2, 6))
    normal = rng.normal(size=(400, 2)) @ A + 0.05 * rng.normal(size=(400, 6))
    off = rng.normal(size=(40, 6)) * normal.std(axis=0) * 2.0
    X = np.vstack([normal, off]).astype(np.float32)
    return X, np.r_[np.zeros(400), np.ones(40)]


def _auroc(name: str, X, y, **params) -> float:
    det = make_detector(name, **params).fit(X)
    return roc_auc_score(y, det.decision_function(X))


@pytest.mark.parametrize("seed", [0, 1])
def test_the_aligned_augmentation_beats_a_misaligned_one_on_dependency_anomalies(
    dependency_case, seed
):
    X, y = dependency_case
    aligned = _auroc("ssl_classifier", X, y, augmentation="permute", epochs=20, random_state=seed)
    misaligned = _auroc(
        "ssl_classifier", X, y, augmentation="local_scale", epochs=20, random_state=seed
    )
    assert aligned > 0.95
    assert aligned - misaligned > 0.2


def test_rotation_finds_turned_digits_where_blur_does_no_better_than_chance(rotated_digits):
    X, y = rotated_digits
    aligned = _auroc("ssl_classifier", X, y, augmentation="rotate", epochs=20, random_state=0)
    misaligned = _auroc("ssl_classifier", X, y, augmentation="blur", epochs=20, random_state=0)
    baseline = _auroc("autoencoder", X, y, epochs=20, random_state=0)
    assert aligned > 0.97
    assert misaligned < 0.65  # Yoo et al.: a misaligned augmentation can fall below...
    assert misaligned < baseline < aligned  # ... no self-supervision at all


def test_the_score_is_the_log_odds_that_a_row_is_augmented(dependency_case):
    X, _ = dependency_case
    det = make_detector("ssl_classifier", augmentation="permute", epochs=20, random_state=0)
    det.fit(X)
    real = det.decision_function(X[:600])
    fake = det.decision_function(det.augmented(X[:600]))
    assert np.median(fake) > 0 > np.median(real)  # logit above 0 = "augmented" more likely
    assert det.augmentation_name_ == "permute-1"


def test_an_image_augmentation_on_table_rows_is_refused_before_training():
    X = np.random.default_rng(0).normal(size=(50, 21)).astype(np.float32)
    events: list = []
    det = make_detector("ssl_classifier", augmentation="rotate", epochs=1)
    with pytest.raises(DataError) as caught:
        det.fit(X, callback=events.append)
    assert str(caught.value).startswith("Rotation is an image augmentation.")
    assert "21 features" in str(caught.value) and events == []
    with pytest.raises(DataError, match=r"image shape 7 x 7 has 49 pixels"):
        make_detector("ssl_classifier", augmentation="cutout", image_shape=(7, 7)).fit(X)
    # declared as 3 x 7 images, the same rows train
    make_detector("ssl_classifier", augmentation="flip", image_shape=(3, 7), epochs=1).fit(X)


def test_a_strength_outside_the_augmentation_s_own_range_is_refused():
    X = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    det = make_detector("ssl_classifier", augmentation="mask", strength=2.0, epochs=1)
    with pytest.raises(ParameterError) as caught:
        det.fit(X)
    assert str(caught.value).startswith(
        "Self-supervised classifier: Feature masking: the strength must be a number from 0 to 1;"
    )
    fitted = make_detector("ssl_classifier", augmentation="noise", strength=2.0, epochs=1).fit(X)
    assert fitted.strength_ == 2.0


@pytest.mark.parametrize(
    ("name", "params", "at_least"),
    [
        ("goad", {"n_transforms": 32, "epochs": 25}, 0.9),  # fewer maps: a fast test
        ("neutral_ad", {"epochs": 15}, 0.95),
    ],
)
def test_goad_and_neutral_ad_find_rows_off_the_normal_plane(name, params, at_least, plane_case):
    X, y = plane_case
    assert _auroc(name, X, y, random_state=0, **params) > at_least


def test_goad_scores_are_minus_the_log_likelihood_of_the_right_transformation(plane_case):
    X, _ = plane_case
    det = make_detector("goad", n_transforms=16, epochs=3, random_state=0).fit(X)
    model = det.model_
    with torch.no_grad():
        x = torch.from_numpy(X[:5])
        feats = model.features(x)  # (5, M, rep)
        # the centres are the training rows' mean feature per transformation
        all_feats = model.features(torch.from_numpy(X))
        torch.testing.assert_close(model.centres, all_feats.mean(dim=0), rtol=1e-4, atol=1e-5)
        d2 = ((feats[:, :, None, :] - model.centres[None, None]) ** 2).sum(-1)
        expected = -torch.log_softmax(-d2, dim=2).diagonal(dim1=1, dim2=2).sum(1)
    np.testing.assert_allclose(det.decision_function(X[:5]), expected.numpy(), rtol=1e-4)


def test_goad_draws_its_transformations_from_the_seed_and_saves_them(plane_case, tmp_path):
    X, _ = plane_case
    a = make_detector("goad", n_transforms=8, epochs=1, random_state=3).fit(X)
    b = make_detector("goad", n_transforms=8, epochs=1, random_state=4).fit(X)
    assert a.model_.maps.shape == (8, 6, 32)
    assert not torch.equal(a.model_.maps, b.model_.maps)
    a.save(tmp_path / "goad")
    loaded = load_detector(tmp_path / "goad")
    assert torch.equal(loaded.model_.maps, a.model_.maps)
    assert torch.equal(loaded.model_.centres, a.model_.centres)


def test_the_contrastive_loss_is_the_paper_s_formula():
    gen = torch.Generator().manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(7, 6, 5, generator=gen), dim=-1)
    tau, k = 0.1, 5
    h = torch.exp(z @ z.transpose(1, 2) / tau)
    expected = torch.zeros(7)
    for j in range(1, k + 1):
        others = sum(h[:, j, m] for m in range(1, k + 1) if m != j)
        expected -= torch.log(h[:, j, 0] / (h[:, j, 0] + others))
    expected /= abs(k * np.log(1.0 / k))
    torch.testing.assert_close(contrastive_loss(z, tau), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["residual", "multiplicative", "feedforward"])
def test_neutral_ad_views_follow_the_transformation_type(kind, plane_case):
    X, _ = plane_case
    det = make_detector("neutral_ad", transform_type=kind, n_transforms=3, epochs=1).fit(X)
    x = torch.from_numpy(X[:4])
    with torch.no_grad():
        raw = det.model_.transforms(x.repeat(1, 3).unsqueeze(-1)).view(4, 3, 6)
        views = det.model_.views(x)
    expected = {
        "residual": x[:, None] + raw,
        "multiplicative": torch.sigmoid(raw) * x[:, None],
        "feedforward": raw,
    }[kind]
    torch.testing.assert_close(views, expected)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("ssl_classifier", {"augmentation": "local_scale"}),
        ("ssl_classifier", {"augmentation": "rotate"}),
        ("goad", {"n_transforms": 8}),
        ("neutral_ad", {"transform_type": "multiplicative"}),
    ],
)
def test_saved_and_loaded_scores_and_codes_are_equal(name, params, rotated_digits, tmp_path):
    X = rotated_digits[0][:300]
    det = make_detector(name, epochs=2, random_state=0, **params).fit(X)
    det.save(tmp_path / name)
    loaded = load_detector(tmp_path / name)
    np.testing.assert_array_equal(det.decision_function(X), loaded.decision_function(X))
    np.testing.assert_array_equal(det.transform(X[:9]), loaded.transform(X[:9]))
    assert loaded.get_params() == det.get_params()
