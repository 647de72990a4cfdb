"""Training-set choices, the held-out split, run settings, and the per-job thread count."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ad_core.data import DataError
from ad_core.nn.threads import job_threads
from ad_core.runs import (
    NOT_A_SETTING,
    ROLE_HELDOUT,
    ROLE_TRAIN,
    ROLE_UNUSED,
    TrainingSetup,
    comparison_rows,
    holdout_rows,
    row_roles,
    run_settings,
    setting_differences,
    setting_text,
    setting_title,
)


def _truth(n=1000, rate=0.4, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random(n) < rate).astype(np.int64)


def test_holdout_is_stratified_and_seeded():
    truth = _truth()
    held = holdout_rows(truth.size, 0.3, seed=0, truth=truth)
    assert held.size == pytest.approx(300, abs=2)
    assert truth[held].mean() == pytest.approx(truth.mean(), abs=0.01)
    np.testing.assert_array_equal(held, holdout_rows(truth.size, 0.3, seed=0, truth=truth))
    assert not np.array_equal(held, holdout_rows(truth.size, 0.3, seed=1, truth=truth))


def test_truth_normal_trains_on_normal_rows_and_holds_out_both_classes():
    truth = _truth()
    roles = row_roles(truth.size, TrainingSetup("truth_normal", 0.3), truth=truth)
    assert (truth[roles == ROLE_TRAIN] == 0).all()
    assert set(truth[roles == ROLE_HELDOUT]) == {0, 1}
    assert (truth[roles == ROLE_UNUSED] == 1).all()  # anomalies outside the held-out share


def test_labelled_rows_are_never_held_out_and_label_choices_filter():
    truth = _truth()
    labels = np.full(truth.size, -1)
    labels[:50] = 1
    labels[50:100] = 0
    roles = row_roles(truth.size, TrainingSetup("all", 0.5), labels=labels, truth=truth)
    assert (roles[:100] == ROLE_TRAIN).all()
    roles = row_roles(truth.size, TrainingSetup("not_anomalous"), labels=labels)
    assert (roles[:50] == ROLE_UNUSED).all() and (roles[50:] == ROLE_TRAIN).all()
    roles = row_roles(truth.size, TrainingSetup("labelled_normal"), labels=labels)
    np.testing.assert_array_equal(np.flatnonzero(roles == ROLE_TRAIN), np.arange(50, 100))
    # a detector that learns from labels keeps the labelled anomalies as training rows
    roles = row_roles(
        truth.size, TrainingSetup("truth_normal"), labels=labels, truth=truth, learn_labels=True
    )
    assert (roles[:100] == ROLE_TRAIN).all()


@pytest.mark.parametrize(
    ("setup", "kwargs", "message"),
    [
        (TrainingSetup("truth_normal"), {}, "ground-truth column"),
        (TrainingSetup("labelled_normal"), {"labels": np.full(10, -1)}, "label rows as normal"),
        (TrainingSetup("all", 0.9), {}, "leaves 1 row"),
    ],
)
def test_impossible_choices_say_what_to_do(setup, kwargs, message):
    with pytest.raises(DataError, match=message):
        row_roles(10, setup, **kwargs)


def test_run_settings_fill_defaults_and_name_differences():
    a = run_settings("autoencoder", {"epochs": 3}, {"scaling": "standard"}, TrainingSetup())
    b = run_settings("deep_sad", {"epochs": 20, "eta": 2.0}, {"scaling": "standard"})
    assert a["lr"] is not None and a["training.train_on"] == "all"
    diff = setting_differences(a, b)
    assert diff["detector"] == ("autoencoder", "deep_sad")
    assert diff["epochs"] == (3, 20)
    assert diff["eta"] == (NOT_A_SETTING, 2.0)  # autoencoder has no eta
    assert "preprocessing.scaling" not in diff
    assert "preprocessing.categorical_missing" not in diff  # defaults filled for old runs
    assert setting_text("eta", diff["eta"][0]) == "(not a setting of this detector)"
    assert setting_text("rep_dim", None) == "automatic"
    assert setting_text("detector", "deep_sad") == "Deep SAD"
    assert setting_title("training.holdout") == "held-out share"


def test_comparison_rows_leave_labelled_rows_out():
    roles = np.array([ROLE_TRAIN, ROLE_HELDOUT, ROLE_HELDOUT, ROLE_TRAIN])
    labels = np.array([-1, 1, -1, -1])
    rows, where = comparison_rows(roles, labels)
    assert rows.tolist() == [2] and "held-out" in where
    rows, where = comparison_rows(np.zeros(4, dtype=np.int8), labels)
    assert rows.tolist() == [0, 2, 3] and where == "unlabelled rows"


def test_concurrent_jobs_divide_the_cores_and_small_networks_use_one_thread():
    assert job_threads(1, cores=2) == 2
    assert job_threads(2, cores=2) == 1
    assert job_threads(3, cores=2) == 1
    assert job_threads(1, cores=8, step_flops=1e5) == 1
    assert job_threads(2, cores=8, step_flops=1e12) == 4


def test_a_saved_run_scores_new_rows_like_the_run_did(tmp_path):
    from ad_core.data import infer_schema
    from ad_core.runs import load_run, score, train_run
    from ad_core.store import Workspace

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(400, 5)), columns=list("abcde"))
    ws = Workspace(tmp_path)
    dataset_id = ws.add_dataset("t", frame, infer_schema(frame).to_dict())
    run_id = ws.create_run(dataset_id, "autoencoder", {"epochs": 3, "random_state": 0}, {})
    result = train_run(ws, run_id, setup=TrainingSetup("all", 0.25))
    saved = load_run(ws.run_dir(run_id))
    np.testing.assert_allclose(score(saved, frame, chunk_rows=64), result.scores, rtol=1e-5)
    assert saved.threshold == pytest.approx(result.threshold)
    with pytest.raises(FileNotFoundError, match="no trained run"):
        load_run(tmp_path / "nothing")
