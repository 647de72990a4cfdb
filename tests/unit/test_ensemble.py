"""The ensemble: members trained once through their own code, combined, saved, explained."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ad_core import FitCancelled, load_detector, make_detector
from ad_core.detectors import ParameterError
from ad_core.detectors.ensemble import MEMBERS, combine, rank_scale, zscore_scale
from ad_core.nn.threads import usable_cores

FAST = {"epochs": 3, "random_state": 0}
#: four members of four kinds, whatever the defaults are
FOUR = {
    "autoencoder_weight": 1.0,
    "deep_svdd_weight": 0.0,
    "knn_weight": 1.0,
    "isolation_forest_weight": 1.0,
    "ecod_weight": 1.0,
    **FAST,
}


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
    # A member whose training scores do not vary adds a shift, never a division by zero.
    assert np.isfinite(zscore_scale(np.ones(4), np.array([1.0, 3.0]))).all()
    mixed = combine([ref, 10 * ref], [np.array([4.0]), np.array([10.0])], [3.0, 1.0], "rank")
    assert mixed[0] == pytest.approx((3 * 1.0 + 1 * 0.25) / 4)


@pytest.mark.parametrize("combination", ["rank", "zscore"])
def test_score_is_the_weighted_mean_of_members_on_their_training_scale(data, combination):
    det = make_detector(
        "ensemble", **{**FOUR, "combination": combination, "knn_weight": 2.0, "ecod_weight": 0.5}
    ).fit(data)
    assert det.members_ == ["autoencoder", "knn", "isolation_forest", "ecod"]
    own = det.member_scores(data[:40])
    scale = rank_scale if combination == "rank" else zscore_scale
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


def test_members_are_trained_through_their_own_code(data):
    # One torch thread for both fits: a member trained in a thread of its own and the same
    # detector fitted with the process's threads sum in another order (float32 noise).
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _check_members_match_standalone_fits(data)
    finally:
        torch.set_num_threads(threads)


def _check_members_match_standalone_fits(data):
    det = make_detector("ensemble", **FOUR).fit(data)
    for member in det.members_:
        alone = make_detector(member, **det.member_params(member)).fit(data)
        np.testing.assert_array_equal(
            det.estimators_[member].decision_function(data), alone.decision_function(data)
        )


def test_a_zero_weight_leaves_a_member_out_and_all_zero_is_refused(data):
    det = make_detector("ensemble", **{**FOUR, "knn_weight": 0.0, "isolation_forest_weight": 0.0})
    assert det.fit(data).members_ == ["autoencoder", "ecod"]
    zeros = {f"{m}_weight": 0.0 for m in MEMBERS}
    with pytest.raises(ParameterError, match="at least one member"):
        make_detector("ensemble", **zeros).fit(data)
    with pytest.raises(ParameterError, match="'knn_weight' must be a number from 0 to 10"):
        make_detector("ensemble", knn_weight=-1.0).fit(data)
    with pytest.raises(ParameterError, match="'combination' must be one of rank, zscore"):
        make_detector("ensemble", combination="max").fit(data)


@pytest.mark.parametrize("combination", ["rank", "zscore"])
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
    shallow = make_detector("ensemble", **{**FOUR, "autoencoder_weight": 0.0})
    with pytest.raises(ParameterError, match="autoencoder or Deep SVDD a weight above 0"):
        shallow.fit(data)  # no member with a latent space: the map would have none


def test_progress_counts_every_members_epochs_once(data):
    events = []
    params = dict(FOUR, deep_svdd_weight=1.0)
    make_detector("ensemble", **params).fit(data, callback=events.append)
    # autoencoder 3 epochs, Deep SVDD 3 + 3, kNN, Isolation Forest and ECOD one step each
    assert [e["epoch"] for e in events] == list(range(1, 13))
    assert {e["n_epochs"] for e in events} == {12} and {e["stage"] for e in events} == {"train"}
    assert {e["member"] for e in events} == {"autoencoder", "deep_svdd", *MEMBERS[2:]}


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


def test_a_failing_member_reports_its_own_error_not_the_cancel_it_caused(two_threads):
    rows = np.random.default_rng(0).normal(size=(5, 3))  # kNN needs more than 5 rows
    det = make_detector("ensemble", **{**FOUR, "n_jobs": 2, "epochs": 200})
    with pytest.raises(ValueError, match="'n_neighbors' \\(5\\) must be smaller"):
        det.fit(rows)
