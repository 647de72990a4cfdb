"""Background training: progress events, cancelling, large data on a sample, saved run files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ad_core import load_detector, runs
from ad_core.data import Preprocessor
from ad_core.explain import feature_contributions, reference_stats, top_features
from ad_core.store import Workspace
from ad_studio_ui import training
from ad_studio_ui.datasets import add_sample
from ad_studio_ui.workspace import EXPLAIN_FILE, MODEL_DIR, PREPROCESSOR_FILE, TRAIN_ROWS_FILE

PREP = {"scaling": "standard", "impute": "median", "max_categories": 20}


def test_training_thread_reports_progress_and_can_be_cancelled():
    ws = Workspace()
    dataset_id = add_sample(ws, "cardio")
    job = training.start_training(ws, dataset_id, "autoencoder", {"epochs": 500}, PREP)
    for _ in range(600):  # wait for the first epoch events
        if job.events:
            break
        job.thread.join(0.05)
    assert job.events and {"stage", "epoch", "n_epochs", "loss"} <= set(job.events[0])
    assert 0 < job.progress() < 1
    job.cancel()
    assert job.wait(timeout=60)
    assert job.status == "cancelled"
    assert ws.get_run(job.run_id).status == "cancelled"


def test_large_data_trains_on_a_seeded_sample_and_scores_every_row(monkeypatch):
    monkeypatch.setattr(runs, "MAX_TRAIN_ROWS", 300)
    ws = Workspace()
    dataset_id = add_sample(ws, "cardio")  # 1831 rows
    labels = np.full(1831, -1)
    labels[[3, 1500]] = 1
    run_id = ws.create_run(dataset_id, "isolation_forest", {"random_state": 0}, PREP)
    notices = []
    result = training.train_run(ws, run_id, labels=labels, on_notice=notices.append)
    assert notices and "sample of" in notices[0]
    run = ws.get_run(run_id)
    assert run.status == "done"
    assert 300 <= run.metrics["n_train"] <= 302  # the sample plus the labelled rows
    assert run.metrics["sampled"] is True
    assert len(ws.load_scores(run_id)) == 1831 == result.scores.size
    rows = np.load(ws.run_dir(run_id) / TRAIN_ROWS_FILE)
    assert {3, 1500} <= set(rows.tolist())


def test_a_run_folder_reloads_and_reproduces_its_scores():
    ws = Workspace()
    dataset_id = add_sample(ws, "cardio")
    run_id = ws.create_run(dataset_id, "autoencoder", {"epochs": 2, "random_state": 0}, PREP)
    training.train_run(ws, run_id)
    folder = ws.run_dir(run_id)
    det = load_detector(folder / MODEL_DIR)
    prep = Preprocessor.load(folder / PREPROCESSOR_FILE)
    frame = ws.load_dataset_frame(dataset_id)
    rescored = det.decision_function(prep.transform(frame))
    np.testing.assert_allclose(rescored, ws.load_scores(run_id)["score"], rtol=1e-5)
    explained = json.loads((folder / EXPLAIN_FILE).read_text())
    assert explained["method"] == "reconstruction"
    assert len(explained["rows"]) == 500


def test_reconstruction_contributions_sum_to_the_autoencoder_score():
    ws = Workspace()
    dataset_id = add_sample(ws, "cardio")
    run_id = ws.create_run(dataset_id, "autoencoder", {"epochs": 2, "random_state": 0}, PREP)
    training.train_run(ws, run_id)
    det = load_detector(ws.run_dir(run_id) / MODEL_DIR)
    prep = Preprocessor.load(ws.run_dir(run_id) / PREPROCESSOR_FILE)
    X = prep.transform(ws.load_dataset_frame(dataset_id).iloc[:50])
    contrib = feature_contributions(det, X)
    assert contrib.method == "reconstruction"
    np.testing.assert_allclose(
        (contrib.deviation**2).sum(axis=1), det.decision_function(X), rtol=1e-4
    )
    np.testing.assert_allclose(contrib.share.sum(axis=1), 1.0, rtol=1e-9)


def test_zscore_contributions_name_the_feature_that_is_off():
    X_train = np.random.default_rng(0).normal(size=(500, 4))
    row = np.array([[0.0, 0.0, 6.0, 0.0]])
    contrib = feature_contributions(None, row, reference=reference_stats(X_train))
    assert contrib.method == "zscore"
    ((first, *_),) = top_features(contrib, ["a", "b", "c", "d"], k=2)
    assert first[0] == "c" and first[1] > 0.9 and first[2] > 0
    with pytest.raises(ValueError, match="reference"):
        feature_contributions(None, row)


@pytest.mark.parametrize(
    ("detector", "params"),
    [
        ("knn", {"n_neighbors": 5}),
        ("knn", {"n_neighbors": 1}),
        ("isolation_forest", {"random_state": 0}),
        ("autoencoder", {"epochs": 20, "random_state": 0}),
    ],
)
def test_rows_in_the_training_sample_score_like_the_rest(monkeypatch, detector, params):
    """On i.i.d. rows, a model trained on a sample scores sampled and unsampled rows alike."""
    from scipy.stats import ks_2samp

    from ad_core.data import infer_schema

    monkeypatch.setattr(runs, "MAX_TRAIN_ROWS", 1000)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(3000, 6)), columns=[f"x{i}" for i in range(6)])
    ws = Workspace()
    dataset_id = ws.add_dataset("iid", frame, infer_schema(frame).to_dict())
    run_id = ws.create_run(dataset_id, detector, params, PREP)
    result = training.train_run(ws, run_id)
    rows = np.load(ws.run_dir(run_id) / TRAIN_ROWS_FILE)
    sampled = np.zeros(3000, dtype=bool)
    sampled[rows] = True
    assert sampled.sum() == 1000
    inside, outside = result.scores[sampled], result.scores[~sampled]
    assert (inside > 0).all()  # kNN with k=1: a row is not its own neighbour
    assert ks_2samp(inside, outside).pvalue > 0.01, (inside.mean(), outside.mean())
    # one threshold: the run's is the detector's own
    det = load_detector(ws.run_dir(run_id) / MODEL_DIR)
    assert ws.get_run(run_id).metrics["threshold"] == pytest.approx(det.threshold_)


def test_a_second_training_divides_the_cores_with_the_first():
    """Each training process applies the thread count the server gives it, re-divided when
    another job starts (a big network, so that it would use every core alone)."""
    from ad_core.nn.threads import job_threads

    ws = Workspace()
    dataset_id = add_sample(ws, "cardio")
    big = {"epochs": 1000, "hidden_dims": (1024, 1024), "batch_size": 256}
    flops = training._step_flops(21, big)
    alone, together = job_threads(1, step_flops=flops), job_threads(2, step_flops=flops)

    def wait_for(job, predicate, what):
        for _ in range(600):
            if any(predicate(e) for e in job.events):
                return
            job.thread.join(0.05)
        raise AssertionError(f"{what}: {[e.get('threads') for e in job.events][-5:]}")

    first = training.start_training(ws, dataset_id, "autoencoder", big, PREP)
    second = None
    try:
        wait_for(first, lambda e: e.get("threads") == alone, "the first job alone")
        n_before = len(first.events)
        second = training.start_training(ws, dataset_id, "autoencoder", big, PREP)
        wait_for(second, lambda e: e.get("threads") == together, "the second job")
        later = lambda e: first.events.index(e) >= n_before and e.get("threads") == together  # noqa: E731
        wait_for(first, later, "the first job after the second started")
    finally:
        for job in (first, second):
            if job is not None:
                job.cancel()
                assert job.wait(timeout=60)
    assert first.status == second.status == "cancelled"


def test_train_page_uses_labels_only_as_ticked(app):
    """Unticked 'Train with my labels': Deep SAD trains on the choice's rows, unlabelled."""
    from ad_core.runs import ROLE_TRAIN, ROLE_UNUSED
    from ad_studio_ui.apptest import open_page, problems
    from ad_studio_ui.labels import label_rows

    app.button(key="sample_cardio").click().run()
    ws = Workspace()
    dataset_id = app.session_state["dataset_id"]
    label_rows(ws, dataset_id, ["3", "4", "5"], 1, "tester")
    at = open_page(app, "train")
    at.selectbox(key="train_detector").set_value("deep_sad").run()
    at.number_input(key="train_deep_sad_epochs").set_value(2)
    at.number_input(key="train_deep_sad_pretrain_epochs").set_value(2)
    at.checkbox(key="train_use_labels_deep_sad").uncheck()
    at.radio(key=f"train_on.{dataset_id}").set_value("not_anomalous")
    at.get("form_submit_button")[0].click().run()
    assert not problems(at), problems(at)
    job = training.get_job(at.session_state["training_run_id"])
    assert job.wait(timeout=120) and job.status == "done", job.error
    from ad_core.data import Schema, row_keys

    frame = ws.load_dataset_frame(dataset_id)
    keys = row_keys(frame, Schema.from_dict(ws.get_dataset(dataset_id).schema))
    roles = np.load(ws.run_dir(job.run_id) / "row_roles.npy")
    labelled = np.flatnonzero(np.isin(np.asarray(keys).astype(str), ["3", "4", "5"]))
    assert labelled.size == 3 and (roles[labelled] == ROLE_UNUSED).all()
    assert (roles == ROLE_TRAIN).sum() > 1000


def test_progress_bar_says_the_stage_epoch_and_time_left():
    job = training.TrainingJob(run_id=1, dataset_id="d", detector="deep_sad", stage="training")
    job.started = 100.0
    job.events = [
        {"stage": "pretrain", "epoch": 10, "n_epochs": 10},
        {"stage": "train", "epoch": 5, "n_epochs": 10},
    ]
    # pretraining done and half of training: 3/4 of the work in 30 s, about 10 s left
    assert job.progress() == pytest.approx(0.75)
    assert job.progress_text(now=130.0) == "Training: epoch 5 of 10 · about 10 s left"
    job.events = [{"stage": "pretrain", "epoch": 3, "n_epochs": 150}]
    assert job.progress_text(now=101.5).startswith("Pretraining (autoencoder): epoch 3 of 150")
