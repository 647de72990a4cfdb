"""Choosing on the expert's labels: ranking, intervals, "too few to tell", refusals (issue 10)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from ad_core import FitCancelled, augment, selection
from ad_core.data.errors import DataError
from ad_core.selection import (
    SelectionError,
    augmentation_candidates,
    bootstrap_auprc,
    bootstrap_auroc,
    rank_candidates,
    train_candidates,
)


def _case(n_anomalies: int, n_normals: int, seed: int = 0):
    """Return (scores per candidate, labels): 'sharp' separates the labelled classes well,
    'blunt' a little, 'noise' not at all; every other row is unlabelled (-1)."""
    rng = np.random.default_rng(seed)
    n = n_anomalies + n_normals + 200
    truth = np.zeros(n, dtype=int)
    truth[:n_anomalies] = 1
    labels = np.full(n, -1)
    labels[:n_anomalies] = 1
    labels[n_anomalies : n_anomalies + n_normals] = 0
    scores = {
        "noise": rng.normal(size=n),
        "blunt": truth * 0.8 + rng.normal(size=n),
        "sharp": truth * 4.0 + rng.normal(size=n),
    }
    return scores, labels


def test_candidates_are_ranked_by_auroc_on_the_labelled_rows_only():
    scores, labels = _case(20, 100)
    # Unlabelled rows where "noise" would look perfect must not count.
    scores["noise"][labels == -1] = np.where(np.arange((labels == -1).sum()) % 2, 9.0, -9.0)
    ranking = rank_candidates(scores, labels, n_boot=200)
    assert [r.name for r in ranking.results] == ["sharp", "blunt", "noise"]
    assert ranking.leader == "sharp" and [r.rank for r in ranking.results] == [1, 2, 3]
    known = labels != -1
    for r in ranking.results:
        assert r.auroc == pytest.approx(roc_auc_score(labels[known], scores[r.name][known]))
        assert r.auprc == pytest.approx(
            average_precision_score(labels[known], scores[r.name][known])
        )
        assert r.auroc_low <= r.auroc <= r.auroc_high
        assert r.auprc_low <= r.auprc <= r.auprc_high
    assert ranking.n_labelled == 120 and ranking.n_anomalies == 20 and ranking.n_normals == 100


def test_many_labels_tell_a_sharp_candidate_from_noise_and_say_so():
    scores, labels = _case(40, 200)
    ranking = rank_candidates(scores, labels, n_boot=300)
    noise = ranking.result("noise")
    assert noise.distinguishable and noise.gap_low > 0
    assert ranking.too_close_to_call == []
    assert "enough to tell the leader from every other candidate" in ranking.statement
    assert "Ranked on 240 labelled rows (40 anomalies, 200 normal)" in ranking.statement


def test_two_labels_cannot_tell_close_candidates_apart_and_the_statement_says_so():
    scores, labels = _case(3, 6)
    scores["sharp_too"] = scores["sharp"] + np.random.default_rng(5).normal(0, 0.3, len(labels))
    ranking = rank_candidates(scores, labels, n_boot=300)
    close = set(ranking.too_close_to_call)
    assert {"sharp", "sharp_too"} & close  # the runner-up of the two is too close to call
    text = ranking.statement
    assert "Ranked on 9 labelled rows (3 anomalies, 6 normal)" in text
    # below MIN_TO_TELL anomalies no gap is called, however large it looks
    assert "Too few labels to tell any two candidates apart" in text
    assert ranking.too_close_to_call == [r.name for r in ranking.results[1:]]
    assert all(np.isnan(r.gap_low) for r in ranking.results[1:])


def test_with_enough_labels_close_candidates_are_too_close_to_call():
    scores, labels = _case(12, 40)
    scores["sharp_too"] = scores["sharp"] + np.random.default_rng(5).normal(0, 0.3, len(labels))
    ranking = rank_candidates(scores, labels, n_boot=300)
    assert {"sharp", "sharp_too"} & set(ranking.too_close_to_call)
    assert "too few to tell the leader from" in ranking.statement
    runner_up = ranking.results[1]
    assert runner_up.gap_low <= 0 <= runner_up.gap_high


@pytest.mark.parametrize("n_anomalies", [5, 10, 20])
def test_equally_good_candidates_are_seldom_told_apart(n_anomalies):
    """The false-claim rate: of two equally good candidates, scored on 200 simulated label
    sets, "told apart" at most about the 5 % the 95 % interval allows (the bootstrap of the
    gap said so in 15 % of sets at 5 anomalies, 11 % at 10)."""
    rng = np.random.default_rng(n_anomalies)
    y = np.r_[np.ones(n_anomalies, int), np.zeros(50, int)]
    claims = 0
    for r in range(200):
        signal = y * 1.0
        scores = {k: signal + rng.normal(size=y.size) for k in ("a", "b", "c")}
        ranking = rank_candidates(scores, y, n_boot=20, random_state=r)
        claims += any(x.distinguishable for x in ranking.results)
    assert claims / 200 <= 0.07


def test_the_gap_interval_is_paired_so_a_constant_shift_is_no_difference():
    scores, labels = _case(10, 50)
    scores["shifted"] = scores["blunt"] + 100.0  # same ranking of every row
    ranking = rank_candidates(scores, labels, n_boot=200)
    shifted, blunt = ranking.result("shifted"), ranking.result("blunt")
    assert shifted.auroc == blunt.auroc
    assert (shifted.auroc_low, shifted.auroc_high) == (blunt.auroc_low, blunt.auroc_high)
    # ties are broken by AUPRC and then by the order given: "blunt" came first
    assert ranking.results.index(blunt) < ranking.results.index(shifted)


def test_the_bootstrap_is_seeded_and_stratified():
    scores, labels = _case(5, 25)
    a = rank_candidates(scores, labels, n_boot=100, random_state=1).to_frame()
    b = rank_candidates(scores, labels, n_boot=100, random_state=1).to_frame()
    c = rank_candidates(scores, labels, n_boot=100, random_state=2).to_frame()
    assert a.equals(b) and not a.equals(c)
    # every resample keeps 5 anomalies and 25 normals: AUROC is defined in all of them
    assert np.isfinite(a[["auroc_low", "auroc_high", "gap_low", "gap_high"]].to_numpy()).all()


@pytest.mark.parametrize("pairwise_limit", [20_000, 0], ids=["pairs", "ranks"])
def test_vectorised_bootstrap_metrics_match_scikit_learn_with_ties(pairwise_limit, monkeypatch):
    monkeypatch.setattr(selection, "PAIRWISE_LIMIT", pairwise_limit)
    rng = np.random.default_rng(0)
    for _ in range(50):
        pos = rng.integers(0, 4, size=rng.integers(1, 6)).astype(float)
        neg = rng.integers(0, 4, size=rng.integers(1, 15)).astype(float)
        y = np.r_[np.ones(pos.size), np.zeros(neg.size)]
        s = np.r_[pos, neg]
        assert bootstrap_auroc(pos[None], neg[None])[0] == pytest.approx(roc_auc_score(y, s))
        assert bootstrap_auprc(pos[None], neg[None])[0] == pytest.approx(
            average_precision_score(y, s)
        )


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.r_[np.zeros(30), -np.ones(10)], "No row is labelled as an anomaly yet"),
        (np.r_[np.ones(30), -np.ones(10)], "No row is labelled as normal yet"),
        (-np.ones(40), "No row is labelled as an anomaly yet"),
    ],
)
def test_refuses_without_a_labelled_anomaly_or_a_labelled_normal(labels, message):
    scores = {"a": np.arange(40.0), "b": np.arange(40.0)[::-1]}
    with pytest.raises(SelectionError, match=message):
        rank_candidates(scores, labels)


def test_refuses_scores_that_do_not_cover_the_same_rows_or_are_not_finite():
    labels = np.r_[1, 0, 0, -1]
    with pytest.raises(SelectionError, match="cover 3 rows"):
        rank_candidates({"a": np.zeros(4), "b": np.zeros(3)}, labels)
    with pytest.raises(SelectionError, match="missing or infinite"):
        rank_candidates({"a": np.array([0.0, np.nan, 1.0, 2.0])}, labels)
    with pytest.raises(SelectionError, match="one value per row"):
        rank_candidates({"a": np.zeros(5)}, labels)
    with pytest.raises(SelectionError, match="found \\[2\\]"):
        rank_candidates({"a": np.zeros(4)}, np.r_[1, 0, 2, -1])
    nan_is_unlabelled = rank_candidates({"a": np.arange(4.0)}, np.r_[1.0, 0.0, 0.0, np.nan])
    assert nan_is_unlabelled.n_labelled == 3


def test_candidates_cover_every_applicable_augmentation_and_the_baseline():
    tables = augmentation_candidates(n_features=21, base_params={"random_state": 3, "epochs": 2})
    names = [c.name for c in tables]
    table_augs = [a.name for a in augment.AUGMENTATIONS.values() if a.kind == "table"]
    expected = [augment.format_augmentation(a) for a in table_augs]
    assert [c.augmentation for c in tables[:-1]] == expected
    assert names[-1] == "autoencoder" and tables[-1].params == {"random_state": 3, "epochs": 2}
    images = augmentation_candidates(n_features=784, extra_detectors=["goad", "autoencoder"])
    assert len(images) == len(augment.AUGMENTATIONS) + 2
    assert [c.name for c in images[-2:]] == ["autoencoder", "goad"]
    declared = augmentation_candidates(n_features=21, image_shape="3x7", baseline=None)
    assert len(declared) == len(augment.AUGMENTATIONS)
    assert declared[-1].params["image_shape"] == (3, 7)
    assert len(augmentation_candidates(n_features=784, image_shape="28,28")) == len(images) - 1
    with pytest.raises(DataError, match="has 25 pixels, but the rows have 21"):
        augmentation_candidates(n_features=21, image_shape="5x5")
    with pytest.raises(DataError, match="two whole numbers"):
        augmentation_candidates(n_features=21, image_shape="wide")
    with pytest.raises(ValueError, match="has no augmentation setting"):
        augmentation_candidates("goad")
    with pytest.raises(ValueError, match="Unknown detector"):
        augmentation_candidates(extra_detectors=["nope"])


def test_training_candidates_reports_progress_records_failures_and_can_be_cancelled():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 5)).astype(np.float32)  # 5 features: not a square image
    cands = augmentation_candidates(base_params={"random_state": 0, "epochs": 2})[:2]
    cands += augmentation_candidates(base_params={"epochs": 1})[5:6]  # rotate: not images
    events: list[dict] = []
    trained = train_candidates(cands, X, progress=events.append)
    assert list(trained.scores) == [cands[0].name, cands[1].name]
    assert all(s.shape == (80,) for s in trained.scores.values())
    assert "Rotation is an image augmentation" in trained.errors[cands[2].name]
    stages = [(e["candidate"], e["stage"]) for e in events if e["stage"] in ("done", "failed")]
    assert stages == [(cands[0].name, "done"), (cands[1].name, "done"), (cands[2].name, "failed")]
    assert any(e.get("epoch") == 2 and e["index"] == 1 for e in events)
    # a progress callback returning False stops everything
    seen: list[str] = []

    def stop_in_second(event):
        seen.append(event["candidate"])
        return event["index"] < 1

    with pytest.raises(FitCancelled):
        train_candidates(cands, X, progress=stop_in_second)
    assert cands[2].name not in seen
    # a custom fit (e.g. through saved runs) replaces the default training
    custom = train_candidates(cands[:1], fit=lambda cand, callback: np.arange(5.0))
    np.testing.assert_array_equal(custom.scores[cands[0].name], np.arange(5.0))


def test_labels_choose_the_aligned_augmentation_end_to_end():
    """Dependency anomalies: 20 labelled anomalies pick the permutation over the others."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=(500, 3))
    normal = np.repeat(base, 2, axis=1) + 0.1 * rng.normal(size=(500, 6))
    anomalies = np.column_stack([rng.choice(normal[:, j], 50) for j in range(6)])
    X = np.vstack([normal, anomalies]).astype(np.float32)
    labels = np.full(len(X), -1)
    labels[500:520] = 1
    labels[:50] = 0
    cands = augmentation_candidates(
        n_features=6, base_params={"random_state": 0, "epochs": 15}, baseline=None
    )
    cands = [c for c in cands if c.augmentation.split("-")[0] in {"permute", "local_scale"}]
    ranking = rank_candidates(train_candidates(cands, X).scores, labels, n_boot=200)
    assert ranking.leader == "ssl_classifier permute-1"
    assert ranking.result("ssl_classifier local_scale-1").distinguishable
