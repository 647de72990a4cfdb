"""The Label page's retrain offers every detector that learns from labels, through its form."""

from __future__ import annotations

import numpy as np
import pytest

from ad_core import list_detectors
from ad_core.data import Schema, ground_truth
from ad_core.metrics import auroc
from ad_core.store import Workspace
from ad_studio_ui import training
from ad_studio_ui.apptest import open_page, problems
from ad_studio_ui.labels import label_rows

RETRAINERS = [d.name for d in list_detectors() if d.uses_labels == "both"]
FAST = {"deep_sad": {"epochs": 10, "pretrain_epochs": 10}}


def _cardio_with_a_forest_run(app):
    """Return (page, workspace, dataset, run): cardio loaded, an Isolation Forest trained
    through the Train page's form."""
    app.button(key="sample_cardio").click().run()
    ws = Workspace()
    dataset_id = app.session_state["dataset_id"]
    at = open_page(app, "train")
    at.selectbox(key="train_detector").set_value("isolation_forest").run()
    at.get("form_submit_button")[0].click().run()
    base = at.session_state["training_run_id"]
    assert training.get_job(base).wait(timeout=120)
    return at, ws, dataset_id, base


def test_every_label_learning_detector_is_offered_deep_sad_first():
    assert "deep_sad" in RETRAINERS and "xgbod" in RETRAINERS


@pytest.mark.parametrize("retrainer", RETRAINERS)
def test_retrain_with_labels_through_the_form(app, retrainer):
    at, ws, dataset_id, base = _cardio_with_a_forest_run(app)
    at.run()
    # 30 labels, with the ground truth: the anomalies the base run ranks highest, and
    # normal rows, as an expert answering the queue would give.
    frame = ws.load_dataset_frame(dataset_id)
    truth = ground_truth(frame, Schema.from_dict(ws.get_dataset(dataset_id).schema))
    keys = ws.load_scores(base)["row_key"].astype(str).to_numpy()
    rng = np.random.default_rng(0)
    picked = np.r_[
        rng.choice(np.flatnonzero(truth == 1), 10, replace=False),
        rng.choice(np.flatnonzero(truth == 0), 20, replace=False),
    ]
    for value in (0, 1):
        rows = picked[truth[picked] == value]
        label_rows(ws, dataset_id, keys[rows], value, "tester")

    at = open_page(at, "label")
    at.radio(key="retrain_detector").set_value(retrainer).run()
    assert not problems(at), problems(at)
    for box in at.number_input:
        for name, value in FAST.get(retrainer, {}).items():
            if box.key and box.key.endswith(f"_{retrainer}_{name}"):
                box.set_value(value)
    submit = next(b for b in at.get("form_submit_button") if "with 30 labels" in b.label)
    submit.click().run()
    assert not problems(at), problems(at)
    run_id = at.session_state["training_run_id"]
    job = training.get_job(run_id)
    assert job.wait(timeout=180) and job.status == "done", job.error
    at.run()
    assert any(f"Run #{run_id} is trained and scored" in s.value for s in at.success)
    run = ws.get_run(run_id)
    assert run.detector == retrainer and run.metrics["n_labels"] == 30
    assert ws.get_setting(f"run_parent.{run_id}") == base
    scores = ws.load_scores(run_id)["score"].to_numpy()
    unlabelled = np.setdiff1d(np.arange(len(frame)), picked)
    assert auroc(truth[unlabelled], scores[unlabelled]) > 0.7
    assert any(s.value.startswith(f"Before (#{base})") for s in at.subheader)


@pytest.mark.parametrize("retrainer", RETRAINERS)
def test_normal_labels_alone_retrain_only_what_learns_from_them(app, retrainer):
    """XGBOD learns from labelled anomalies only: with normal labels alone its retrain is
    disabled and the page says why; Deep SAD learns from normal rows too and may retrain."""
    at, ws, dataset_id, base = _cardio_with_a_forest_run(app)
    keys = ws.load_scores(base)["row_key"].astype(str).to_numpy()
    label_rows(ws, dataset_id, keys[:5], 0, "tester")
    at = open_page(at, "label")
    at.radio(key="retrain_detector").set_value(retrainer).run()
    assert not problems(at), problems(at)
    # the first run's "trained and scored" box belongs to the Train page, not here
    assert not any("is trained and scored" in s.value for s in at.success)
    submit = next(b for b in at.get("form_submit_button") if "with 5 labels" in b.label)
    needs = list_detectors()[[d.name for d in list_detectors()].index(retrainer)]
    says_why = any("learns only from labelled anomalies" in c.value for c in at.caption)
    assert submit.disabled == says_why == needs.needs_anomaly_label
