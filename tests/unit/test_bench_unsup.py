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
    rows += [_fit_rows(s, "pca", 0.5, seconds=0.01) for s in sets]  # the map of a shallow pick
    pool = [unsup.Candidate((d,), "rank") for d in quality]
    choice = unsup.leave_one_set_out(rows, sets, pool)
    picks = {f["held_out"]: f["pick"].members for f in choice["folds"]}
    # c held out: picked on a and b, whatever c says. a or b held out: kNN has the better mean
    # rank there but falls below the median detector on c, so ecod, never below it, is picked.
    assert picks == {"a": ("ecod",), "b": ("ecod",), "c": ("knn",)}
    fold_a = next(f for f in choice["folds"] if f["held_out"] == "a")
    assert fold_a["n_never_below"] == 1 < fold_a["n_eligible"] == 2
    held_c = next(f for f in choice["folds"] if f["held_out"] == "c")
    assert held_c["held_out_auroc"] < 0.3  # the held-out figure is the pick's, not the best
    assert held_c["held_out_below_median"]
    assert choice["default"] == unsup.Candidate(("ecod",), "rank")  # picked by two folds of three


def test_candidates_over_the_cost_limit_are_not_eligible_and_the_maps_pca_counts():
    sets = ["a", "b", "c"]
    rows = [_fit_rows(s, "autoencoder", 0.6, seconds=1.0) for s in sets]
    rows += [_fit_rows(s, "deep_svdd", 0.95, seconds=3.5) for s in sets]  # 3.5x the AE
    rows += [_fit_rows(s, "ecod", 0.7, seconds=0.1) for s in sets]
    rows += [_fit_rows(s, "pca", 0.5, seconds=0.1) for s in sets]
    pool = unsup.candidates(("autoencoder", "deep_svdd", "ecod"), ("rank",), min_members=1)
    choice = unsup.leave_one_set_out(rows, sets, pool)
    assert all("deep_svdd" not in f["pick"].members for f in choice["folds"])
    # autoencoder, ecod (+ the map's PCA), autoencoder + ecod at each of its weightings
    assert {f["n_eligible"] for f in choice["folds"]} == {5}
    # A slow PCA makes ECOD alone, which needs it for the map, too dear.
    slow = [r if r["detector"] != "pca" else {**r, "fit_seconds": 3.0} for r in rows]
    choice = unsup.leave_one_set_out(slow, sets, pool)
    assert {f["n_eligible"] for f in choice["folds"]} == {4}


def test_candidates_are_ensembles_with_weights_and_forests_where_they_matter():
    members = ("autoencoder", "knn", "isolation_forest", "ecod")
    pool = unsup.candidates(members, ("zscore", "max"))
    assert pool and all(len(c.members) >= 2 for c in pool)
    assert len(set(pool)) == len(pool)
    for c in pool:
        assert c.weights is None or (c.combination != "max" and len(c.members) <= 3)
        assert c.weights is None or len(set(c.weights)) > 1  # equal weights only once
        if "isolation_forest" not in c.members:
            assert c.forest_trees == unsup.FOREST_TREES[0]
    # 6 pairs, 4 triples, 1 quadruple; pairs 2 and triples 6 unequal weightings of {1, 2};
    # the 3 pairs, 3 triples and 1 quadruple with the forest at two sizes.
    per_combination = {"zscore": (6 * 3 + 4 * 7 + 1), "max": (6 + 4 + 1)}
    with_forest = {"zscore": 3 * 3 + 3 * 7 + 1, "max": 3 + 3 + 1}
    for combination in ("zscore", "max"):
        n = sum(c.combination == combination for c in pool)
        assert n == per_combination[combination] + with_forest[combination]
    knn_forest = unsup.Candidate(("knn", "isolation_forest"), "zscore", (1.0, 2.0), 500)
    assert knn_forest in pool
    assert knn_forest.row("isolation_forest") == "isolation_forest[n_estimators=500]"
    assert knn_forest.rows_fitted() == ("knn", "isolation_forest[n_estimators=500]", "pca")
    params = knn_forest.params()
    assert params["isolation_forest_weight"] == 2.0 and params["forest_trees"] == 500
    assert params["autoencoder_weight"] == 0.0


def test_the_ensembles_defaults_are_a_candidate_of_the_pool():
    from ad_core.detectors.ensemble import COMBINATIONS, MEMBERS

    default = unsup.default_candidate()
    assert default in unsup.candidates(MEMBERS, COMBINATIONS)
    assert make_default_params(default) == default.params()


def make_default_params(candidate) -> dict:
    from ad_core.detectors import get_detector_info

    info = {p.name: p.default for p in get_detector_info("ensemble").params}
    return {k: info[k] for k in candidate.params()}


def test_fast_auroc_is_the_metrics_auroc_ties_included():
    from ad_core.metrics import auroc

    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.1).astype(int)
    scores = np.round(rng.normal(size=300) + y, 1)  # many ties
    assert unsup.fast_auroc(y, scores) == pytest.approx(auroc(y, scores), abs=1e-12)
    assert np.isnan(unsup.fast_auroc(np.zeros(5, int), np.arange(5.0)))


def test_a_cached_fit_is_read_back_and_a_changed_setting_is_fitted_anew(tmp_path):
    task = unsup.Task("cardio_sample", 0, "ecod", "unused", max_train=300)
    first = unsup.run_task(task, str(tmp_path))
    again = unsup.run_task(task, str(tmp_path))
    assert not first["cached"] and again["cached"]
    for key in ("train_scores", "test_scores", "y_test"):
        np.testing.assert_array_equal(again[key], first[key])
    assert again["auroc"] == first["auroc"] and again["detector"] == "ecod"
    variant = unsup.Task(
        "cardio_sample", 0, "ecod", "unused", max_train=300, params=(("aggregate", "three_sums"),)
    )
    other = unsup.run_task(variant, str(tmp_path))
    assert not other["cached"] and other["detector"] == "ecod[aggregate=three_sums]"
    assert len(list(tmp_path.glob("*.npz"))) == 2
    assert unsup.code_fingerprint("ecod") != unsup.code_fingerprint("knn")


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
    # Variants fitted for the selection are reported apart, never ranked with the detectors.
    assert "## Variants (not ranked)" in text
    assert "isolation_forest[n_estimators=500]" not in auroc_table
    assert "ecod[aggregate=three_sums]" in text.split("## Variants")[1]


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


def test_goal_lines_say_which_goals_are_met():
    sets, selection = ["a", "b", "u"], ["a", "b"]
    auroc = {
        "ensemble": {"a": 0.9, "b": 0.6, "u": 0.85},  # ranks 1, 3, 1: first, 1.67
        "x": {"a": 0.8, "b": 0.9, "u": 0.5},  # 2, 1, 4
        "y": {"a": 0.7, "b": 0.8, "u": 0.6},  # 3, 2, 3
        "w": {"a": 0.6, "b": 0.5, "u": 0.7},  # 4, 4, 2
    }
    fit = {"ensemble": dict.fromkeys(sets, 1.0), "autoencoder": dict.fromkeys(sets, 2.0)}
    ranks = unsup.mean_ranks(auroc, sets)
    order = sorted(auroc, key=lambda d: (ranks[d], d))
    record = {"name": "z", "auroc": {"a": 0.95, "b": 0.95, "u": 0.95}}
    text = "\n".join(unsup.goal_lines(auroc, fit, ranks, sets, selection, order, record))
    assert "First in mean rank: met; the ensemble is 1 of 4 (1.67; best ensemble 1.67)" in text
    assert "not met on b (0.600 < median 0.700)" in text
    assert "on the sets never used for choosing (u): met, the ensemble 0.850" in text
    assert "Cost at most 3x the autoencoder's: met, 0.50x" in text
    assert "(z), ranked as if it joined the table: 1 of 5" in text


@pytest.mark.parametrize("name", ["breast_cancer", "wine", "digits"])
def test_fresh_sets_are_one_class_against_a_tenth_of_the_others(name):
    frame, _, truth = unsup.load_set(name, "unused: bundled with scikit-learn")
    assert 0.09 < truth.mean() < 0.11
    import sklearn.datasets

    loader, normal = unsup.SKLEARN_SETS[name]
    bunch = getattr(sklearn.datasets, loader)()
    assert len(frame) == round(np.isin(bunch.target, normal).sum() / 0.9)
    # the same seed draws the same rows: the set cannot change between runs
    again, _, truth_again = unsup.load_set.__wrapped__(name, "x")
    assert np.array_equal(frame.to_numpy(), again.to_numpy())
    assert np.array_equal(truth, truth_again)


def test_fresh_sets_are_reported_apart_and_never_choose(tmp_path):
    out = tmp_path / "unsup.md"
    argv = ["--quick", "--no-pyod", "--out", str(out)]
    argv += ["--sets", "cardio_sample", "ecg5000_sample", "wine"]
    assert unsup.main(argv) == 0
    text = out.read_text()
    main_part, fresh_part = text.split("## Fresh sets")
    assert "on the 2 sets cardio_sample, ecg5000_sample only" in main_part
    assert "| wine |" not in main_part and " wine " not in main_part.split("## AUROC")[1]
    table = fresh_part.split("### AUROC")[1].split("### AUPRC")[0]
    assert "| detector | wine | mean | mean rank |" in table
    assert "| **ensemble** |" in table and "The ensemble:" in fresh_part
    # only fresh sets: nothing to choose on, said in a sentence
    assert unsup.main(["--quick", "--no-pyod", "--sets", "wine", "--out", str(out)]) == 2
