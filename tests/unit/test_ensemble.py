"""The ensemble: members trained once through their own code, combined, saved, explained."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ad_core import FitCancelled, load_detector, make_detector
from ad_core.detectors import ParameterError, get_detector_info
from ad_core.detectors.ensemble import (
    COMBINATIONS,
    MEMBERS,
    combine,
    rank_scale,
    robust_scale,
    zscore_scale,
)
from ad_core.metrics import auroc
from ad_core.nn.threads import usable_cores

FAST = {"epochs": 3, "forest_trees": 20, "random_state": 0}
#: four members of four kinds, whatever the defaults are
FOUR = {
    **{f"{m}_weight": 0.0 for m in MEMBERS},
    "autoencoder_weight": 1.0,
    "knn_weight": 1.0,
    "isolation_forest_weight": 1.0,
    "ecod_weight": 1.0,
    **FAST,
}
SCALES = {"rank": rank_scale, "zscore": zscore_scale, "robust": robust_scale}


@pytest.fixture(scope="module")
def data():
    """300 rows in a correlated cloud plus 15 rows off it, 6 features."""
    rng = np.random.default_rng(5)
    base = rng.normal(size=(315, 3))
    X = np.hstack([base, base @ rng.normal(size=(3, 3))]) + 0.1 * rng.normal(size=(315, 6))
    X[:15] += rng.choice([-4.0, 4.0], size=(15, 6))
    return X.astype(np.float32)


@pytest.fixture
def two_threads():
    """Let this process use two torch threads (the tests run with one), then restore."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_scales_put_scores_on_the_training_scores_footing():
    ref = np.array([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(rank_scale(ref, np.array([0.0, 2.0, 2.5, 9.0])), [0, 0.5, 0.5, 1])
    np.testing.assert_allclose(zscore_scale(ref, ref), (ref - 2.5) / ref.std())
    # Median 3 and quartiles 2 and 4 whatever the one huge training score: (s - 3) / 2.
    skewed = np.array([1.0, 2.0, 3.0, 4.0, 1000.0])
    np.testing.assert_allclose(robust_scale(skewed, np.array([3.0, 7.0])), [0.0, 2.0])
    # A member whose training scores do not vary adds a shift, never a division by zero.
    assert np.isfinite(zscore_scale(np.ones(4), np.array([1.0, 3.0]))).all()
    assert np.isfinite(robust_scale(np.ones(4), np.array([1.0, 3.0]))).all()
    # More than half the training scores equal: the IQR is 0, the standard deviation steps in.
    ties = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 5.0])
    np.testing.assert_allclose(robust_scale(ties, np.array([5.0])), [5.0 / ties.std()])
    mixed = combine([ref, 10 * ref], [np.array([4.0]), np.array([10.0])], [3.0, 1.0], "rank")
    assert mixed[0] == pytest.approx((3 * 1.0 + 1 * 0.25) / 4)
    # max: the larger z-score; a member of weight 0 takes no part, whatever its score.
    top = combine(
        [ref, ref, ref], [np.array([4.0]), np.array([1.0]), np.array([99.0])], [1, 5, 0], "max"
    )
    assert top[0] == pytest.approx((4.0 - 2.5) / ref.std())


@pytest.mark.parametrize("combination", ["rank", "zscore", "robust"])
def test_score_is_the_weighted_mean_of_members_on_their_training_scale(data, combination):
    det = make_detector(
        "ensemble", **{**FOUR, "combination": combination, "knn_weight": 2.0, "ecod_weight": 0.5}
    ).fit(data)
    assert det.members_ == ["autoencoder", "knn", "isolation_forest", "ecod"]
    own = det.member_scores(data[:40])
    scale = SCALES[combination]
    weights = {"autoencoder": 1.0, "knn": 2.0, "isolation_forest": 1.0, "ecod": 0.5}
    expected = sum(
        w * scale(det.estimators_[m].decision_scores_, own[m]) for m, w in weights.items()
    ) / sum(weights.values())
    np.testing.assert_allclose(det.decision_function(data[:40]), expected)
    # Training scores come from the members' own training scores (kNN: no self-neighbour).
    train = sum(
        w * scale(det.estimators_[m].decision_scores_, det.estimators_[m].decision_scores_)
        for m, w in weights.items()
    ) / sum(weights.values())
    np.testing.assert_allclose(det.decision_scores_, train)


def test_max_takes_each_rows_largest_member_z_score(data):
    det = make_detector("ensemble", **{**FOUR, "combination": "max", "knn_weight": 3.0}).fit(data)
    own = det.member_scores(data)
    z = np.array([zscore_scale(det.estimators_[m].decision_scores_, own[m]) for m in own])
    np.testing.assert_allclose(det.decision_function(data), z.max(axis=0))
    assert len(set(z.argmax(axis=0))) > 1  # different members lead on different rows


def test_the_default_is_the_weighted_z_score_mean_of_its_members(data):
    det = make_detector("ensemble", random_state=0).fit(data)
    info = {p.name: p.default for p in get_detector_info("ensemble").params}
    weights = {m: info[f"{m}_weight"] for m in MEMBERS if info[f"{m}_weight"] > 0}
    assert det.members_ == list(weights) and len(weights) >= 2  # an ensemble, not one detector
    assert det.weights_ == list(weights.values())
    scale = SCALES[info["combination"]]
    own = det.member_scores(data)
    expected = sum(
        w * scale(det.estimators_[m].decision_scores_, own[m]) for m, w in weights.items()
    ) / sum(weights.values())
    np.testing.assert_allclose(det.decision_function(data), expected)
    forest = det.estimators_.get("isolation_forest")
    if forest is not None:
        assert forest.n_estimators == info["forest_trees"]


def _two_kinds_of_anomaly(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return rows on a ring in two features plus 4 noise features, and 0/1 truth.

    Half the anomalies are far out in one noise feature (extreme values: what ECOD and the
    forest see), half sit inside the ring (every value ordinary, yet far from every neighbour:
    what kNN sees and ECOD cannot).
    """
    rng = np.random.default_rng(seed)
    n = 400
    angle = rng.uniform(0, 2 * np.pi, n)
    ring = 3 * np.c_[np.cos(angle), np.sin(angle)] + 0.15 * rng.normal(size=(n, 2))
    X = np.hstack([ring, rng.normal(size=(n, 4))])
    y = np.zeros(n, dtype=np.int64)
    far = rng.choice(n, 12, replace=False)
    X[far, 2 + rng.integers(0, 4, 12)] += rng.choice([-5.0, 5.0], 12)
    inside = rng.choice(np.setdiff1d(np.arange(n), far), 12, replace=False)
    X[inside, :2] = 0.3 * rng.normal(size=(12, 2))
    y[far] = y[inside] = 1
    return X.astype(np.float32), y


def test_the_default_beats_its_weakest_member_where_members_see_different_anomalies():
    X, y = _two_kinds_of_anomaly()
    det = make_detector("ensemble", random_state=0).fit(X)
    members = {m: auroc(y, s) for m, s in det.member_scores(X).items()}
    ensemble = auroc(y, det.decision_function(X))
    assert ensemble > min(members.values()) + 0.1, (ensemble, members)


def test_members_are_trained_through_their_own_code(data):
    # One torch thread for both fits: a member trained in a thread of its own and the same
    # detector fitted with the process's threads sum in another order (float32 noise).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        det = make_detector("ensemble", **FOUR).fit(data)
        assert det.member_params("isolation_forest")["n_estimators"] == FOUR["forest_trees"]
        for member in det.members_:
            alone = make_detector(member, **det.member_params(member)).fit(data)
            np.testing.assert_array_equal(
                det.estimators_[member].decision_function(data), alone.decision_function(data)
            )
    finally:
        torch.set_num_threads(threads)


def test_a_zero_weight_leaves_a_member_out_and_all_zero_is_refused(data):
    det = make_detector("ensemble", **{**FOUR, "knn_weight": 0.0, "isolation_forest_weight": 0.0})
    assert det.fit(data).members_ == ["autoencoder", "ecod"]
    zeros = {f"{m}_weight": 0.0 for m in MEMBERS}
    with pytest.raises(ParameterError, match="at least one member"):
        make_detector("ensemble", **zeros).fit(data)
    with pytest.raises(ParameterError, match="'knn_weight' must be a number from 0 to 10"):
        make_detector("ensemble", knn_weight=-1.0).fit(data)
    with pytest.raises(ParameterError, match="'combination' must be one of rank, zscore"):
        make_detector("ensemble", combination="mean").fit(data)
    with pytest.raises(ParameterError, match="'latent_member' must be one of auto"):
        make_detector("ensemble", latent_member="knn").fit(data)


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_a_row_scores_the_same_alone_as_in_a_batch(data, combination):
    det = make_detector("ensemble", **{**FOUR, "combination": combination}).fit(data)
    batch = det.decision_function(data[:25])
    alone = np.concatenate([det.decision_function(data[i : i + 1]) for i in range(25)])
    # Ranked within the batch, a lone row would always rank first. Float32 noise of the
    # autoencoder's batched scores may move a rank by one step of the training scores.
    np.testing.assert_allclose(alone, batch, rtol=1e-5, atol=1.01 / len(data))
    assert np.ptp(alone) > 0.5


@pytest.mark.skipif(usable_cores() < 2, reason="needs two cores")
def test_parallel_members_give_the_same_scores_as_one_at_a_time(data, two_threads):
    params = dict(FOUR, deep_svdd_weight=1.0)
    one = make_detector("ensemble", n_jobs=1, **params).fit(data)
    two = make_detector("ensemble", n_jobs=2, **params).fit(data)
    assert two._workers(len(two.members_)) == (2, 2)
    np.testing.assert_array_equal(one.decision_function(data), two.decision_function(data))
    assert torch.get_num_threads() == 2  # the thread budget is put back after the fit


def test_no_more_members_run_at_once_than_the_thread_budget(data):
    torch_threads = torch.get_num_threads()
    det = make_detector("ensemble", n_jobs=8, **FOUR)
    workers, budget = det._workers(4)
    assert budget <= torch_threads and workers <= budget


def test_saved_ensemble_is_config_plus_member_folders_without_pickle(data, tmp_path):
    det = make_detector("ensemble", **FOUR).fit(data)
    det.save(tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["detector"] == "ensemble"
    assert config["state"]["members_"] == det.members_
    for member in det.members_:
        assert (tmp_path / "model" / "members" / member / "config.json").is_file()
    with np.load(tmp_path / "model" / "arrays.npz", allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["decision_scores_"], det.decision_scores_)
    loaded = load_detector(tmp_path / "model")
    np.testing.assert_array_equal(loaded.decision_function(data), det.decision_function(data))
    np.testing.assert_array_equal(loaded.transform(data[:5]), det.transform(data[:5]))


def test_the_maps_pca_is_saved_and_loaded_with_the_members(data, tmp_path):
    det = make_detector("ensemble", random_state=0).fit(data)
    det.save(tmp_path / "model")
    loaded = load_detector(tmp_path / "model")
    assert loaded.latent_member_ == det.latent_member_
    assert (tmp_path / "model" / "members" / det.latent_member_ / "config.json").is_file()
    np.testing.assert_array_equal(loaded.transform(data[:9]), det.transform(data[:9]))
    np.testing.assert_array_equal(loaded.decision_function(data), det.decision_function(data))


def test_a_member_folder_of_the_wrong_kind_is_refused(data, tmp_path):
    det = make_detector("ensemble", **FOUR).fit(data)
    det.save(tmp_path / "model")
    members = tmp_path / "model" / "members"
    make_detector("ecod").fit(data).save(members / "spare")
    (members / "knn").rename(tmp_path / "knn_saved")
    (members / "spare").rename(members / "knn")
    with pytest.raises(ValueError, match="holds a ecod, not the knn member"):
        load_detector(tmp_path / "model")


def test_latent_space_and_explanations_come_from_the_autoencoder_member(data):
    det = make_detector("ensemble", **FOUR).fit(data)
    assert det.latent_member_ == "autoencoder"
    ae = det.explanation_member()
    assert ae is det.estimators_["autoencoder"]
    np.testing.assert_array_equal(det.transform(data[:7]), ae.transform(data[:7]))
    svdd = make_detector("ensemble", **{**FOUR, "autoencoder_weight": 0.0, "deep_svdd_weight": 1.0})
    svdd.fit(data)
    assert svdd.latent_member_ == "deep_svdd"
    assert svdd.explanation_member() is svdd  # no reconstruction member: z-scores instead
    np.testing.assert_array_equal(
        svdd.transform(data[:7]), svdd.estimators_["deep_svdd"].transform(data[:7])
    )
    vae = make_detector("ensemble", **{**FOUR, "autoencoder_weight": 0.0, "vae_weight": 1.0})
    vae.fit(data)
    assert vae.latent_member_ == "vae" and vae.explanation_member() is vae.estimators_["vae"]


def test_without_a_latent_member_a_pca_makes_the_map_and_does_not_score(data):
    shallow = {**FOUR, "autoencoder_weight": 0.0}
    det = make_detector("ensemble", **shallow).fit(data)
    assert det.latent_member_ == "pca" and "pca" not in det.members_
    pca = det.estimators_["pca"]
    np.testing.assert_array_equal(det.transform(data[:7]), pca.transform(data[:7]))
    assert det.explanation_member() is det
    # Its weight is 0: the score is the combination of the other members alone.
    own = det.member_scores(data)
    assert set(own) == {"knn", "isolation_forest", "ecod"}
    expected = np.mean(
        [zscore_scale(det.estimators_[m].decision_scores_, own[m]) for m in own], axis=0
    )
    np.testing.assert_allclose(det.decision_function(data), expected)
    # A latent member named with weight 0 is trained for the map only.
    named = make_detector("ensemble", **{**shallow, "latent_member": "autoencoder"}).fit(data)
    assert named.latent_member_ == "autoencoder" and "autoencoder" not in named.members_
    np.testing.assert_allclose(named.decision_function(data), det.decision_function(data))
    assert (
        named.transform(data[:3]).shape
        == named.estimators_["autoencoder"].transform(data[:3]).shape
    )
    assert named.explanation_member() is named  # it does not score, so it does not explain


def test_progress_counts_every_members_epochs_once(data):
    events = []
    params = dict(FOUR, deep_svdd_weight=1.0)
    make_detector("ensemble", **params).fit(data, callback=events.append)
    # autoencoder 3 epochs, Deep SVDD 3 + 3, kNN, Isolation Forest and ECOD one step each
    assert [e["epoch"] for e in events] == list(range(1, 13))
    assert {e["n_epochs"] for e in events} == {12} and {e["stage"] for e in events} == {"train"}
    assert {e["member"] for e in events} == {
        "autoencoder",
        "deep_svdd",
        "knn",
        "isolation_forest",
        "ecod",
    }
    events.clear()
    make_detector("ensemble", random_state=0).fit(data, callback=events.append)
    # The default's shallow members and the map's PCA: one step each.
    det = make_detector("ensemble")
    assert len(events) == len(det._chosen()[0]) + 1
    assert events[-1]["member"] in MEMBERS


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_a_cancel_stops_every_member(data, two_threads, n_jobs):
    seen = []

    def cancel_on_third(event):
        seen.append(event)
        return len(seen) < 3

    det = make_detector("ensemble", **{**FOUR, "n_jobs": n_jobs, "deep_svdd_weight": 1.0})
    det.set_params(epochs=50)
    with pytest.raises(FitCancelled):
        det.fit(data, callback=cancel_on_third)
    assert len(seen) == 3  # no member reported again once one was told to stop
    assert not hasattr(det, "threshold_")


def test_a_failing_member_reports_its_own_error_not_the_cancel_it_caused(two_threads, monkeypatch):
    from ad_core.detectors.classic import KNN

    def broken(self, X, y, callback):
        raise ValueError("the kNN member broke")

    monkeypatch.setattr(KNN, "_fit", broken)
    rows = np.random.default_rng(0).normal(size=(40, 3))
    det = make_detector("ensemble", **{**FOUR, "n_jobs": 2, "epochs": 200})
    with pytest.raises(ValueError, match="the kNN member broke"):
        det.fit(rows)


def test_too_few_rows_for_the_knn_member_are_said_before_any_member_trains():
    from ad_core.data import DataError

    rows = np.random.default_rng(0).normal(size=(5, 3))
    with pytest.raises(DataError, match="needs at least 6 training rows; there are 5"):
        make_detector("ensemble").fit(rows)
    # without the kNN member the same rows train
    assert make_detector("ensemble", knn_weight=0.0).fit(rows).decision_function(rows).shape == (5,)
