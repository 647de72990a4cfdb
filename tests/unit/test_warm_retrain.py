"""Warm retraining: Deep SAD fine-tunes its fitted network on new labels instead of starting over."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from ad_core import load_detector, make_detector
from ad_core.data import DataError
from ad_core.detectors.base import NotFittedError


def _data(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Normal rows near 0; 10 % anomalies shifted in two features."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6)).astype(np.float32)
    y = np.zeros(n, dtype=np.int64)
    y[: n // 10] = 1
    X[: n // 10, :2] += 2.5
    return X, y


def _fitted(X, **kw):
    return make_detector("deep_sad", random_state=0, pretrain_epochs=5, epochs=10, **kw).fit(X)


def test_fine_tune_keeps_the_network_and_centre_and_skips_pretraining():
    X, y = _data()
    det = _fitted(X)
    centre = det.model_.c.clone()
    before = {k: v.clone() for k, v in det.model_.encoder.state_dict().items()}
    history = list(det.history_)
    labels = np.full(y.size, -1)
    labels[:5], labels[-5:] = 1, 0
    assert det.fine_tune(X, labels, epochs=4) is det
    assert torch.equal(det.model_.c, centre)
    stages = [e["stage"] for e in det.history_]
    assert det.history_[: len(history)] == history  # the first fit's history is kept
    assert stages[len(history) :] == ["fine_tune"] * 4  # no pretraining, 4 epochs
    changed = any(not torch.equal(before[k], v) for k, v in det.model_.encoder.state_dict().items())
    assert changed
    np.testing.assert_allclose(det.decision_scores_, det.decision_function(X), rtol=1e-5)
    assert det.threshold_ == pytest.approx(np.quantile(det.decision_scores_, 0.9), rel=1e-3)


def test_fine_tune_pushes_labelled_anomalies_out_and_normals_in():
    X, y = _data()
    det = _fitted(X)
    labels = np.full(y.size, -1)
    anomalies, normals = np.arange(10), np.arange(y.size - 10, y.size)
    labels[anomalies], labels[normals] = 1, 0
    rank = lambda s, rows: (np.argsort(np.argsort(s))[rows] / s.size).mean()  # noqa: E731
    before = det.decision_scores_.copy()
    det.set_params(eta=10.0).fine_tune(X, labels, epochs=30)
    assert rank(det.decision_scores_, anomalies) > rank(before, anomalies)
    assert rank(det.decision_scores_, normals) < rank(before, normals)


def test_a_saved_model_fine_tunes_like_the_one_in_memory(tmp_path):
    X, y = _data()
    det = _fitted(X)
    det.save(tmp_path / "m")
    loaded = load_detector(tmp_path / "m")
    labels = np.where(np.arange(y.size) < 8, y, -1)
    a = det.fine_tune(X, labels, epochs=3).decision_scores_
    b = loaded.fine_tune(X, labels, epochs=3).decision_scores_
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_fine_tune_refuses_an_unfitted_detector_and_other_features():
    X, _ = _data()
    with pytest.raises(NotFittedError):
        make_detector("deep_sad").fine_tune(X)
    det = _fitted(X)
    with pytest.raises(DataError, match="trained on 6 features"):
        det.fine_tune(X[:, :4])


# --- through train_run: what the Label page's retrain calls ---------------------------------


@pytest.fixture
def workspace_with_base(tmp_path):
    from ad_core.data import infer_schema
    from ad_core.runs import TrainingSetup, train_run
    from ad_core.store import Workspace

    X, y = _data(600)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    frame["truth"] = y
    schema = infer_schema(frame).with_role("truth", "label").with_normal_values([0])
    ws = Workspace(tmp_path)
    dataset_id = ws.add_dataset("t", frame, schema.to_dict())
    params = {"random_state": 0, "pretrain_epochs": 40, "epochs": 40}
    setup = TrainingSetup("all", 0.3, 0)
    base = ws.create_run(dataset_id, "deep_sad", params, {})
    train_run(ws, base, setup=setup)
    yield ws, dataset_id, base, params, setup, y
    ws.close()


def test_a_warm_run_continues_the_base_run_and_is_faster_than_from_scratch(workspace_with_base):
    from ad_core.runs import load_run, train_run

    ws, dataset_id, base, params, setup, y = workspace_with_base
    labels = np.full(y.size, -1)
    labels[:10], labels[-10:] = 1, 0
    warm_id = ws.create_run(dataset_id, "deep_sad", {**params, "epochs": 10}, {})
    warm = train_run(ws, warm_id, labels=labels, setup=replace(setup, warm_from=base))
    cold_id = ws.create_run(dataset_id, "deep_sad", params, {})
    train_run(ws, cold_id, labels=labels, setup=setup)
    assert warm.metrics["warm_from"] == base
    assert "warm_from" not in ws.get_run(cold_id).metrics
    saved_warm, saved_base = load_run(ws.run_dir(warm_id)), load_run(ws.run_dir(base))
    # the base run's preprocessor and centre are kept; the history ends with 10 fine-tunes
    assert saved_warm.preprocessor.to_dict() == saved_base.preprocessor.to_dict()
    assert torch.equal(saved_warm.detector.model_.c, saved_base.detector.model_.c)
    stages = [e["stage"] for e in saved_warm.detector.history_]
    assert stages.count("fine_tune") == 10 and stages.count("pretrain") == 40
    assert saved_warm.detector.fit_seconds_ < saved_base.detector.fit_seconds_
    assert ws.get_run(warm_id).fit_seconds < ws.get_run(cold_id).fit_seconds
    from ad_core.runs import run_setup

    assert run_setup(ws, warm_id).warm_from == base


def test_a_warm_start_from_a_run_that_cannot_continue_says_what_to_do(workspace_with_base):
    from ad_core.runs import train_run

    ws, dataset_id, base, params, setup, y = workspace_with_base
    ae = ws.create_run(dataset_id, "autoencoder", {"epochs": 2, "random_state": 0}, {})
    train_run(ws, ae, setup=setup)
    labels = np.full(y.size, -1)
    labels[:3] = 1
    run_id = ws.create_run(dataset_id, "deep_sad", params, {})
    with pytest.raises(DataError, match="only a deep_sad run can be continued"):
        train_run(ws, run_id, labels=labels, setup=replace(setup, warm_from=ae))
    assert ws.get_run(run_id).status == "failed"
    run_id = ws.create_run(dataset_id, "deep_sad", {**params, "rep_dim": 3}, {})
    with pytest.raises(DataError, match="rep dim"):
        train_run(ws, run_id, labels=labels, setup=replace(setup, warm_from=base))
    run_id = ws.create_run(dataset_id, "deep_sad", params, {})
    with pytest.raises(DataError, match="no longer has a trained model"):
        train_run(ws, run_id, labels=labels, setup=replace(setup, warm_from=999))


def test_the_settings_comparison_names_the_warm_start():
    from ad_core.runs import TrainingSetup, run_settings, setting_differences, setting_text

    a = run_settings("deep_sad", {}, {}, TrainingSetup())
    b = run_settings("deep_sad", {}, {}, TrainingSetup(warm_from=4))
    assert setting_differences(a, b) == {"training.warm_from": (None, 4)}
    assert setting_text("training.warm_from", 4) == "run #4 (warm start)"
    assert TrainingSetup.from_dict(TrainingSetup(warm_from=4).to_dict()).warm_from == 4
    assert TrainingSetup.from_dict({"train_on": "all"}).warm_from is None  # older runs
