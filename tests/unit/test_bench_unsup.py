"""The unsupervised benchmark: its leave-one-set-out choice, and a quick run end to end."""

from __future__ import annotations

import time

import numpy as np
import pytest

from ad_core.bench import unsup
from ad_core.bench.__main__ import BENCHMARKS


def _fit_rows(dataset: str, detector: str, quality: float, seconds: float = 1.0) -> dict:
    """Return a benchmark row whose test scores rank the anomalies with AUROC ``quality``."""
    rng = np.random.default_rng(abs(hash((dataset, detector))) % 2**32)
    y = np.r_[np.zeros(200, int), np.ones(20, int)]
    # Anomalies score above a share `quality` of the normals: AUROC close to `quality`.
    normal = rng.random(200)
    anomalies = np.full(20, np.quantile(normal, quality))
    return {
        "dataset": dataset,
        "seed": 0,
        "detector": detector,
        "fit_seconds": seconds,
        "train_scores": rng.random(500),
        "test_scores": np.r_[normal, anomalies],
        "y_test": y,
        "auroc": quality,
        "auprc": quality,
    }


def test_each_fold_picks_without_seeing_its_held_out_set():
    sets = ["a", "b", "c"]
    # "knn" is best on a and b, "ecod" only on c: the fold holding out c must not pick ecod.
    quality = {"knn": {"a": 0.9, "b": 0.9, "c": 0.2}, "ecod": {"a": 0.6, "b": 0.6, "c": 0.99}}
    rows = [_fit_rows(s, d, quality[d][s]) for d in quality for s in sets]
    rows += [_fit_rows(s, "autoencoder", 0.5) for s in sets]
    pool = [unsup.Candidate((d,), "rank") for d in quality]
    choice = unsup.leave_one_set_out(rows, sets, pool)
    picks = {f["held_out"]: f["pick"].members for f in choice["folds"]}
    # c held out: picked on a and b, whatever c says; a or b held out: ecod's c lifts it.
    assert picks == {"a": ("ecod",), "b": ("ecod",), "c": ("knn",)}
    held_c = next(f for f in choice["folds"] if f["held_out"] == "c")
    assert held_c["held_out_auroc"] < 0.3  # the held-out figure is the pick's, not the best
    assert choice["default"] == unsup.Candidate(("ecod",), "rank")  # picked by two folds of three


def test_candidates_over_the_cost_limit_are_not_eligible():
    sets = ["a", "b", "c"]
    rows = [_fit_rows(s, "autoencoder", 0.6, seconds=1.0) for s in sets]
    rows += [_fit_rows(s, "deep_svdd", 0.95, seconds=3.5) for s in sets]  # 3.5x the AE
    rows += [_fit_rows(s, "ecod", 0.7, seconds=0.1) for s in sets]
    pool = unsup.candidates(("autoencoder", "deep_svdd", "ecod"), ("rank",), min_members=1)
    choice = unsup.leave_one_set_out(rows, sets, pool)
    assert all("deep_svdd" not in f["pick"].members for f in choice["folds"])
    assert {f["n_eligible"] for f in choice["folds"]} == {3}  # ae, ecod, ae + ecod


def test_candidates_are_ensembles_with_a_latent_member():
    pool = unsup.candidates(
        ("autoencoder", "deep_svdd", "knn", "ecod"), ("rank", "zscore"), need_one_of=("deep_svdd",)
    )
    assert pool and all(len(c.members) >= 2 and "deep_svdd" in c.members for c in pool)
    assert len(pool) == 2 * 7  # the subsets of the other three, each with deep_svdd added


def test_mean_ranks_rank_the_best_first_and_share_ties():
    auroc = {"x": {"a": 0.9, "b": 0.7}, "y": {"a": 0.8, "b": 0.7}, "z": {"a": 0.5, "b": 0.6}}
    ranks = unsup.mean_ranks(auroc, ["a", "b"])
    assert ranks == {"x": 1.25, "y": 1.75, "z": 3.0}


def test_the_quick_mode_writes_the_table_and_the_protocol_in_under_a_minute(tmp_path):
    assert "unsup" in BENCHMARKS
    out = tmp_path / "unsup.md"
    start = time.perf_counter()
    assert unsup.main(["--quick", "--no-pyod", "--out", str(out)]) == 0
    assert time.perf_counter() - start < 60
    text = out.read_text()
    assert "Quick smoke run" in text and "## Protocol" in text
    assert "leave one set out" in text and "Command: `python -m ad_core.bench unsup --quick" in text
    auroc_table = text.split("## AUROC")[1].split("## AUPRC")[0]
    for name in ("ensemble", "ecod", "autoencoder", "knn", "isolation_forest"):
        assert f"| {name} |" in auroc_table or f"| **{name}** |" in auroc_table, name
    for dataset in unsup.QUICK_SETS:
        assert dataset in auroc_table
    # every AUROC cell is a number in [0, 1]
    cells = [
        c.strip()
        for line in auroc_table.splitlines()
        if line.startswith("| ") and not line.startswith("| detector")
        for c in line.split("|")[2:-3]
    ]
    assert cells and all(0.0 <= float(c) <= 1.0 for c in cells)
    assert "Never below the median" in text


def test_mnist_one_vs_rest_has_one_normal_digit_and_a_tenth_anomalies(shared_data):
    X, y = unsup.mnist_one_vs_rest(shared_data / "mnist", digit=3)
    assert X.shape[1] == 784 and 0.09 < y.mean() < 0.11
    assert X.min() >= 0.0 and X.max() <= 1.0


@pytest.mark.parametrize("name", ["cardio", "ecg5000"])
def test_splits_are_stratified_and_the_training_split_is_capped(shared_data, name):
    frame, _, truth = unsup.load_set(name, str(shared_data))
    X_tr, X_te, y_te = unsup.prepared_split(name, 0, str(shared_data), 500)
    assert X_tr.shape[0] == 500  # 70 % of the rows is more than the cap
    assert abs(X_te.shape[0] - 0.3 * len(frame)) <= 1
    assert abs(y_te.mean() - truth.mean()) < 0.01
    full, _, _ = unsup.prepared_split(name, 0, str(shared_data), None)
    assert abs(full.shape[0] - 0.7 * len(frame)) <= 1
