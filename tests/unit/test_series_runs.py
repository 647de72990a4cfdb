"""Series through a run: which windows train, scores per point, reload, labels per window."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ad_core import runs
from ad_core.batch import score_file
from ad_core.data import DataError, Schema, infer_schema
from ad_core.metrics import auroc
from ad_core.series import WindowSpec
from ad_core.series_runs import (
    WINDOW_FILE,
    SeriesSettings,
    load_settings,
    propose,
    save_settings,
    series_roles,
)
from ad_core.store import Workspace


def _series(n: int = 1200, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """A sine with period 50, noise, and two injected bumps (the ground truth)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    value = np.sin(2 * np.pi * t / 50) + rng.normal(0, 0.05, n)
    truth = np.zeros(n, dtype=np.int64)
    for a in (400, 900):
        value[a : a + 10] += 2.5
        truth[a : a + 10] = 1
    frame = pd.DataFrame(
        {
            "timestamp": pd.date_range("2026-01-01", periods=n, freq="min").astype(str),
            "value": value,
            "truth": truth,
        }
    )
    return frame, truth


def _workspace(tmp_path, frame) -> tuple[Workspace, str]:
    ws = Workspace(tmp_path / "ws")
    schema = infer_schema(frame).with_role("truth", "label").with_normal_values([0])
    dataset_id = ws.add_dataset("series", frame, schema.to_dict())
    found = propose(frame, Schema.from_dict(ws.get_dataset(dataset_id).schema))
    save_settings(ws, dataset_id, found.settings)
    return ws, dataset_id


def test_roles_hold_out_the_last_stretch_and_no_training_window_reaches_into_it():
    window = WindowSpec(20, 5)
    roles, train = series_roles(200, window, holdout=0.25)
    assert (roles[150:] == runs.ROLE_HELDOUT).all()
    assert (roles[:150] != runs.ROLE_HELDOUT).all()
    starts = np.arange(0, 181, 5)
    assert (starts[train] + 19 < 150).all()
    assert (roles[:150] == runs.ROLE_TRAIN).all()  # every earlier point is in some window


def test_roles_follow_the_training_set_choice_per_window():
    window = WindowSpec(10, 10)
    labels = np.full(100, -1)
    labels[25] = 1  # window 2 (points 20..29) holds a labelled anomaly
    _, train = series_roles(100, window, train_on="not_anomalous", labels=labels)
    assert 2 not in train and len(train) == 9
    _, train = series_roles(100, window, train_on="not_anomalous", labels=labels, learn_labels=True)
    assert 2 in train  # Deep SAD learns from it
    labels[:30] = 0
    labels[25] = 0
    _, train = series_roles(100, window, train_on="labelled_normal", labels=labels)
    assert train.tolist() == [0, 1, 2]
    with pytest.raises(DataError, match="window"):
        series_roles(100, window, train_on="labelled_normal", labels=np.full(100, -1))
    with pytest.raises(DataError, match="fewer than one window"):
        series_roles(100, window, holdout=0.95)


def test_a_series_run_scores_every_point_finds_the_bumps_and_reloads(tmp_path):
    frame, truth = _series()
    ws, dataset_id = _workspace(tmp_path, frame)
    settings = load_settings(ws, dataset_id)
    assert settings.window.length == 50  # the period
    run_id = ws.create_run(dataset_id, "autoencoder", {"epochs": 30, "random_state": 0})
    result = runs.train_run(ws, run_id, setup=runs.TrainingSetup(holdout=0.3))
    assert result.scores.shape == (len(frame),)
    assert auroc(truth, result.scores) > 0.85
    assert result.metrics["series"] and result.metrics["n_windows"] > 20
    roles = np.load(ws.run_dir(run_id) / runs.ROW_ROLES_FILE)
    assert (roles[-360:] == runs.ROLE_HELDOUT).all()
    assert result.metrics["evaluated_on"] == "unlabelled held-out rows"
    # Explanations name a step of the window: the top point's is inside a bump.
    explained = json.loads((ws.run_dir(run_id) / runs.EXPLAIN_FILE).read_text())
    name, share, _ = next(iter(explained["rows"].values()))[0]
    assert name.startswith("value @ step ") and name.endswith("/50") and 0 < share <= 1
    # The run folder records its windows; reloading scores the series the same way.
    recorded = json.loads((ws.run_dir(run_id) / WINDOW_FILE).read_text())
    assert recorded["length"] == 50 and recorded["n_channels"] == 1
    saved = runs.load_run(ws.run_dir(run_id))
    assert saved.series.window.length == 50
    again = runs.score(saved, ws.load_dataset_frame(dataset_id))
    # Training windows keep their training scores in the run; everything else is equal.
    held = roles == runs.ROLE_HELDOUT
    np.testing.assert_allclose(again[held], result.scores[held], rtol=1e-5)
    # A series shorter than the window is refused in words.
    with pytest.raises(DataError, match="fewer than one window"):
        runs.score(saved, ws.load_dataset_frame(dataset_id).iloc[:30])


def test_batch_scoring_refuses_a_series_run_instead_of_cutting_its_windows(tmp_path):
    frame, _ = _series(400)
    ws, dataset_id = _workspace(tmp_path, frame)
    run_id = ws.create_run(dataset_id, "pca", {})
    runs.train_run(ws, run_id)
    path = tmp_path / "new.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match="windows of a series"):
        score_file(ws.run_dir(run_id), path, tmp_path / "out.parquet")


def test_deep_sad_learns_from_labels_given_per_point_through_window_labels(tmp_path):
    frame, truth = _series(seed=1)
    ws, dataset_id = _workspace(tmp_path, frame)
    labels = np.full(len(frame), -1)
    labels[400:410] = 1  # the first bump labelled; the second is left to find
    labels[100:200] = 0
    params = {"epochs": 20, "pretrain_epochs": 20, "random_state": 0}
    run_id = ws.create_run(dataset_id, "deep_sad", params)
    result = runs.train_run(ws, run_id, labels=labels)
    assert result.metrics["n_labelled_anomalies"] == 10
    unl = labels == -1
    assert auroc(truth[unl], result.scores[unl]) > 0.8


def test_seq2seq_is_told_the_number_of_channels_of_a_multichannel_series(tmp_path):
    frame, _ = _series(600)
    frame["other"] = np.cos(np.arange(600) / 8.0)
    ws, dataset_id = _workspace(tmp_path, frame[["timestamp", "value", "other", "truth"]])
    settings = load_settings(ws, dataset_id)
    save_settings(
        ws,
        dataset_id,
        SeriesSettings(settings.time_column, settings.value_columns, WindowSpec(20, 10), "mean"),
    )
    run_id = ws.create_run(dataset_id, "seq2seq", {"epochs": 2, "random_state": 0})
    result = runs.train_run(ws, run_id)
    assert result.metrics["n_channels"] == 2
    det = runs.load_run(ws.run_dir(run_id)).detector
    assert det.get_params()["n_channels"] == 2
    assert np.isfinite(result.scores).all()


def test_a_dataset_without_series_settings_trains_on_rows_as_before(tmp_path):
    frame, _ = _series(300)
    ws = Workspace(tmp_path / "ws")
    schema = infer_schema(frame).with_role("truth", "label").with_normal_values([0])
    dataset_id = ws.add_dataset("rows", frame, schema.to_dict())
    run_id = ws.create_run(dataset_id, "pca", {})
    result = runs.train_run(ws, run_id)
    assert "series" not in result.metrics
    assert not (ws.run_dir(run_id) / WINDOW_FILE).exists()
    assert runs.load_run(ws.run_dir(run_id)).series is None


def test_a_series_run_flags_the_expected_share_of_points_not_of_windows(tmp_path):
    frame, _ = _series()
    ws, dataset_id = _workspace(tmp_path, frame)
    run_id = ws.create_run(dataset_id, "pca", {"contamination": 0.05})
    result = runs.train_run(ws, run_id)
    flagged = float((result.scores > result.threshold).mean())
    assert 0.03 <= flagged <= 0.07  # max over 50-point windows would flag far more
    assert runs.load_run(ws.run_dir(run_id)).threshold == pytest.approx(result.threshold)


def test_a_labelled_window_in_the_held_out_stretch_trains_and_leaves_the_held_out_figures():
    window = WindowSpec(10, 10)
    labels = np.full(100, -1)
    labels[85] = 1  # in the last 30 %, the held-out stretch
    roles, train = series_roles(100, window, holdout=0.3, labels=labels, learn_labels=True)
    assert 8 in train  # window 8 covers points 80..89
    assert (roles[80:90] == runs.ROLE_TRAIN).all() and (roles[90:] == runs.ROLE_HELDOUT).all()
    roles, train = series_roles(100, window, holdout=0.3)
    assert 8 not in train and (roles[70:] == runs.ROLE_HELDOUT).all()


def test_share_threshold_flags_the_share_asked_for_despite_ties():
    from ad_core.series_runs import share_threshold
    from ad_core.thresholds import contamination_threshold

    # Point scores in flat runs, as the max rule makes them: 70 tied points at the 90 % cut.
    scores = np.r_[np.zeros(880), np.full(70, 1.0), np.linspace(2, 3, 50)]
    plain = contamination_threshold(scores, 0.1)
    assert (scores > plain).mean() == pytest.approx(0.05)  # the tied run is lost
    t = share_threshold(scores, 0.1)
    assert (scores > t).mean() == pytest.approx(0.12)  # the nearest share to 10 % there is
    assert t == 0.0  # 12 % flagged is nearer 10 % than 5 %
