"""The whole loop through the app: sample -> autoencoder -> threshold -> labels -> Deep SAD."""

from __future__ import annotations

import numpy as np
import pytest

from ad_core.runs import percentiles
from ad_core.store import Workspace
from ad_studio_ui import training
from ad_studio_ui.apptest import open_page, problems
from ad_studio_ui.labels import label_rows


def _train_from_form(at, epochs: dict[str, int]) -> int:
    """Set epoch fields of the Train form, submit, wait for the thread; return the run id."""
    for box in at.number_input:
        for suffix, value in epochs.items():
            if box.key and box.key.endswith(f"_{suffix}"):
                box.set_value(value)
    at.get("form_submit_button")[0].click().run()
    assert not problems(at), problems(at)
    run_id = at.session_state["training_run_id"]
    job = training.get_job(run_id)
    assert job.wait(timeout=120), "training did not finish in time"
    assert job.status == "done", job.error
    at.run()  # the page adopts the finished run
    return run_id


def _scores(ws: Workspace, run_id: int) -> np.ndarray:
    return ws.load_scores(run_id)["score"].to_numpy()


def test_labels_raise_anomalies_and_lower_normals_after_deep_sad(app):
    # 1. one click loads the ECG sample
    app.button(key="sample_ecg5000").click().run()
    assert not problems(app), problems(app)
    ws = Workspace()
    dataset_id = app.session_state["dataset_id"]

    # 2. train an autoencoder with few epochs through the Train page (picked: the page's
    # default detector may be another)
    at = open_page(app, "train")
    at.selectbox(key="train_detector").set_value("autoencoder").run()
    ae_run = _train_from_form(at, {"epochs": 3})
    assert at.session_state["run_id"] == ae_run

    # 3. set a threshold on the Scores page (the number box, as a keyboard user would)
    at = open_page(at, "scores")
    ae_scores = _scores(ws, ae_run)
    threshold = float(np.quantile(ae_scores, 0.8))
    at.number_input(key="threshold_number").set_value(threshold).run()
    assert not problems(at), problems(at)
    flagged = next(m.value for m in at.metric if m.label == "Flagged rows")
    assert flagged == f"{int((ae_scores > threshold).sum()):,}"

    # 4. label 5 rows through the function the map's box/lasso buttons call: three true
    # anomalies the autoencoder ranks lowest, two normal beats it flags (false positives
    # between the 80th and 95th percentile, just above the threshold)
    keys = ws.load_scores(ae_run)["row_key"].to_numpy()
    truth = _truth(ws, dataset_id)
    order = np.argsort(ae_scores)
    rank = percentiles(ae_scores, np.arange(ae_scores.size))
    anomalies = [i for i in order if truth[i] == 1][:3]
    normals = [i for i in order[::-1] if truth[i] == 0 and 80 < rank[i] <= 95][:2]
    assert label_rows(ws, dataset_id, keys[anomalies], 1, "tester") == 3
    assert label_rows(ws, dataset_id, keys[normals], 0, "tester") == 2
    assert ws.labels(dataset_id) == {
        **{str(keys[i]): 1 for i in anomalies},
        **{str(keys[i]): 0 for i in normals},
    }

    # 5. retrain Deep SAD with the labels from the Label & retrain page
    at = open_page(at, "label")
    assert not problems(at), problems(at)
    # the form starts from the base run's settings (its 3 epochs), each changeable
    assert at.number_input(key=f"retrain{ae_run}_deep_sad_epochs").value == 3
    at.number_input(key=f"retrain{ae_run}_deep_sad_pretrain_epochs").set_value(5)
    at.number_input(key=f"retrain{ae_run}_deep_sad_epochs").set_value(20)
    at.number_input(key=f"retrain{ae_run}_deep_sad_eta").set_value(20.0)
    at.get("form_submit_button")[0].click().run()
    assert not problems(at), problems(at)
    sad_run = at.session_state["training_run_id"]
    job = training.get_job(sad_run)
    assert job.wait(timeout=120) and job.status == "done", job.error
    at.run()
    assert not problems(at), problems(at)
    assert at.session_state["run_id"] == sad_run
    assert ws.get_run(sad_run).detector == "deep_sad"
    assert ws.get_run(sad_run).metrics["parent_run"] == ae_run
    assert any("Mean percentile of labelled anomalies" in m.label for m in at.metric)
    # the before/after names what differs besides the labels
    differs = next(m.value for m in at.markdown if "What differs besides the labels" in m.value)
    assert "detector: Autoencoder → Deep SAD" in differs and "epochs: 3 → 20" in differs
    # its AUROC is on the held-out rows neither run trained on, the labelled rows left out
    from ad_core.metrics import auroc

    shown = next(m for m in at.metric if m.label == "AUROC on ground truth")
    roles = np.load(ws.run_dir(sad_run) / "row_roles.npy")
    fair = np.flatnonzero(roles == 1)
    assert fair.size and not set(fair) & set(anomalies + normals)
    assert (np.load(ws.run_dir(ae_run) / "row_roles.npy")[fair] == 1).all()
    assert shown.value == f"{auroc(truth[fair], _scores(ws, sad_run)[fair]):.3f}"

    # 6. relative to the rest, labelled anomalies rank higher and labelled normals lower
    sad_scores = _scores(ws, sad_run)
    before_a, after_a = (
        percentiles(ae_scores, np.array(anomalies)),
        percentiles(sad_scores, np.array(anomalies)),
    )
    before_n, after_n = (
        percentiles(ae_scores, np.array(normals)),
        percentiles(sad_scores, np.array(normals)),
    )
    assert after_a.mean() > before_a.mean() + 20, (before_a, after_a)
    assert after_n.mean() < before_n.mean() - 20, (before_n, after_n)
    assert np.all(after_a > before_a), (before_a, after_a)
    assert np.all(after_n < before_n), (before_n, after_n)


def _truth(ws: Workspace, dataset_id: str) -> np.ndarray:
    from ad_core.data import Schema, ground_truth

    record = ws.get_dataset(dataset_id)
    return ground_truth(ws.load_dataset_frame(dataset_id), Schema.from_dict(record.schema))


@pytest.mark.parametrize("label", [1, 0])
def test_map_selection_labels_are_committed_at_once(app, label):
    from ad_studio_ui.labels import selected_row_keys

    app.button(key="sample_cardio").click().run()
    ws = Workspace()
    dataset_id = app.session_state["dataset_id"]
    selection = {
        "points": [
            {"customdata": "5", "point_index": 0, "curve_number": 0},
            {"customdata": ["7"], "point_index": 3, "curve_number": 1},
            {"customdata": "5", "point_index": 0, "curve_number": 2},  # same row, other trace
            {"point_index": 9, "curve_number": 3},  # a trace without row keys
        ]
    }
    keys = selected_row_keys(selection)
    assert keys == ["5", "7"]
    assert label_rows(ws, dataset_id, keys, label, "tester") == 2
    assert Workspace().labels(dataset_id) == {"5": label, "7": label}


# --- the warm retrain, through the Label page's button --------------------------------------


@pytest.fixture(scope="module")
def sad_home(tmp_path_factory):
    """Return a workspace: the ECG sample, a Deep SAD run (30 % held out), 10 expert labels.

    The labels are the 10 rows the default queue shows first, answered with the ground truth.
    """
    from ad_core.maps import run_codes
    from ad_core.runs import (
        DEFAULT_HOLDOUT,
        DEFAULT_PREPROCESSING,
        DEFAULT_QUEUE_MODE,
        TrainingSetup,
        review_queue,
    )
    from ad_studio_ui.datasets import add_sample

    home = tmp_path_factory.mktemp("sad_workspace")
    ws = Workspace(home)
    dataset_id = add_sample(ws, "ecg5000")
    base = ws.create_run(dataset_id, "deep_sad", {"random_state": 0}, DEFAULT_PREPROCESSING)
    result = training.train_run(ws, base, setup=TrainingSetup("all", DEFAULT_HOLDOUT, 0))
    ws.set_setting("last_dataset_id", dataset_id)
    truth = _truth(ws, dataset_id)
    queue = review_queue(
        DEFAULT_QUEUE_MODE,
        result.scores,
        np.full(truth.size, -1),
        threshold=result.threshold,
        codes=lambda rows: run_codes(ws, base, rows),
        n=10,
    )
    keys = ws.load_scores(base)["row_key"].astype(str).to_numpy()
    for value in (0, 1):
        picked = queue.positions[truth[queue.positions] == value]
        if picked.size:
            label_rows(ws, dataset_id, keys[picked], value, "expert")
    ws.close()
    return home


def _finish(at, run_id: int) -> None:
    job = training.get_job(run_id)
    assert job.wait(timeout=120) and job.status == "done", job.error
    at.run()
    assert not problems(at), problems(at)


def test_the_retrain_of_a_deep_sad_run_is_warm_faster_and_no_worse(sad_home, monkeypatch):
    from ad_core.detectors.deep_sad import FINE_TUNE_EPOCHS
    from ad_core.metrics import auroc
    from ad_core.runs import comparison_rows, learning_curve, run_setup
    from ad_studio_ui.apptest import app_test, navigation_mode

    monkeypatch.setenv("AD_STUDIO_HOME", str(sad_home))
    with navigation_mode():
        at = open_page(app_test(timeout=60).run(), "label")
        assert not problems(at), problems(at)
        ws = Workspace(sad_home)
        base = at.session_state["run_id"]
        dataset_id = at.session_state["dataset_id"]
        assert len(ws.labels(dataset_id)) == 10

        # 1. the default for a Deep SAD run: warm, FINE_TUNE_EPOCHS epochs, no pretraining
        assert at.checkbox(key="retrain_start_over").value is False
        assert at.number_input(key=f"retrain{base}warm_deep_sad_epochs").value == FINE_TUNE_EPOCHS
        assert not [b for b in at.number_input if b.key and "pretrain" in b.key]
        assert any(m.value.startswith("**Warm start**") for m in at.markdown)
        button = at.get("form_submit_button")[0]
        assert button.label == "Fine-tune with 10 labels"
        button.click().run()
        warm = at.session_state["training_run_id"]
        _finish(at, warm)
        assert at.session_state["run_id"] == warm
        # the next warm retrain fine-tunes the base's network again, not the fine-tuned one
        assert any(
            m.value.startswith(f"**Warm start**: fine-tunes run #{base}'s network")
            for m in at.markdown
        )

        # 2. back to the base run; "start over" trains from scratch
        at.session_state["run_id"] = base
        at.run()
        at.checkbox(key="retrain_start_over").check().run()
        assert [b for b in at.number_input if b.key and b.key.endswith("_pretrain_epochs")]
        button = at.get("form_submit_button")[0]
        assert button.label == "Retrain with 10 labels"
        button.click().run()
        cold = at.session_state["training_run_id"]
        _finish(at, cold)

        # 3. warm: continued from the base, fine-tune epochs only, faster, AUROC no worse
        warm_run, cold_run = ws.get_run(warm), ws.get_run(cold)
        assert warm_run.metrics["warm_from"] == base and run_setup(ws, warm).warm_from == base
        assert "warm_from" not in cold_run.metrics and run_setup(ws, cold).warm_from is None
        assert warm_run.metrics["parent_run"] == cold_run.metrics["parent_run"] == base
        assert warm_run.fit_seconds < cold_run.fit_seconds
        assert warm_run.fit_seconds <= 5.0
        truth = _truth(ws, dataset_id)
        keys = ws.load_scores(base)["row_key"].astype(str).to_numpy()
        given = ws.labels(dataset_id)
        labels = np.array([given.get(k, -1) for k in keys])
        rows, where = comparison_rows(np.load(ws.run_dir(warm) / "row_roles.npy"), labels)
        assert "held-out" in where
        a_warm = auroc(truth[rows], _scores(ws, warm)[rows])
        a_cold = auroc(truth[rows], _scores(ws, cold)[rows])
        a_base = auroc(truth[rows], _scores(ws, base)[rows])
        assert a_warm >= a_cold, (a_warm, a_cold)
        assert a_warm > a_base, (a_warm, a_base)  # the labels helped

        # 4. the Runs page draws the learning curve of the chain of retrains
        at = open_page(at, "runs")
        assert not problems(at), problems(at)
        at.selectbox(key="runs_pick").set_value(warm).run()
        table = next(d.value for d in at.dataframe if "retrain" in d.value.columns)
        assert table["run"].tolist() == [base, warm]
        assert table["labels"].tolist() == [0, 10]
        assert table["retrain"].tolist() == ["first run", "warm (fine-tuned)"]
        points, _ = learning_curve(ws, warm, truth, labels)
        assert table["AUROC"].tolist() == [round(p["auroc"], 4) for p in points]
        assert table["AUROC"].iloc[1] == round(a_warm, 4)  # on the same rows as above
        assert any("the same" in c.value and "held-out" in c.value for c in at.caption)
        at.selectbox(key="runs_pick").set_value(base).run()
        assert any("was not retrained from another run" in c.value for c in at.caption)
