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
