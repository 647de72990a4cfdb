"""The README's walkthrough, through the app's forms: the ECG sample reaches what it promises."""

from __future__ import annotations

from ad_core.runs import TRAIN_ON
from ad_core.store import Workspace
from ad_studio_ui import training
from ad_studio_ui.apptest import open_page, problems
from ad_studio_ui.labels import label_rows


def _train(at, train_on: str) -> None:
    dataset_id = at.session_state["dataset_id"]
    at.radio(key=f"train_on.{dataset_id}").set_value(train_on)
    # on by default: the sample has ground truth
    assert at.checkbox(key=f"train_holdout_on.{dataset_id}").value
    at.get("form_submit_button")[0].click().run()
    assert not problems(at), problems(at)
    job = training.get_job(at.session_state["training_run_id"])
    assert job.wait(timeout=180) and job.status == "done", job.error
    at.run()


def _auroc(at) -> float:
    assert any("held-out rows the model never saw" in m.value for m in at.markdown)
    return float(next(m.value for m in at.metric if m.label == "AUROC"))


def test_readme_walkthrough_reaches_its_held_out_auroc(app):
    app.button(key="sample_ecg5000").click().run()
    at = open_page(app, "train")
    assert at.selectbox(key="train_detector").value == "ensemble"  # the default detector
    at.selectbox(key="train_detector").set_value("autoencoder").run()  # as the README says
    # The page says why training on every beat is a poor idea here.
    assert any("ground truth is normal" in w.value for w in at.warning)
    _train(at, "truth_normal")
    # ... and, once it trains on the normal beats, no longer asks for what was done
    assert not any("ground truth is normal" in w.value for w in at.warning)
    assert any("you train on the rows whose ground truth is normal" in c.value for c in at.caption)
    at = open_page(open_page(at, "runs"), "train")  # the choice survives a visit elsewhere
    assert not any("ground truth is normal" in w.value for w in at.warning)
    at = open_page(at, "scores")
    assert not problems(at), problems(at)
    assert _auroc(at) >= 0.90


def test_training_on_every_beat_is_worse_than_chance_and_the_page_says_why(app):
    app.button(key="sample_ecg5000").click().run()
    at = open_page(app, "train")
    at.selectbox(key="train_detector").set_value("autoencoder").run()
    _train(at, "all")
    at = open_page(at, "scores")
    assert _auroc(at) < 0.5
    assert any("worse than chance" in w.value for w in at.warning)


def test_training_on_rows_labelled_normal_is_offered_once_there_are_some(app):
    app.button(key="sample_ecg5000").click().run()
    at = open_page(app, "train")
    dataset_id = at.session_state["dataset_id"]
    offered = TRAIN_ON["labelled_normal"]
    assert offered not in at.radio(key=f"train_on.{dataset_id}").options  # nothing to train on yet
    ws = Workspace()
    keys = [str(k) for k in ws.load_dataset_frame(dataset_id)["beat_id"].iloc[:40]]
    label_rows(ws, dataset_id, keys, 0, "tester")
    at.run()
    assert offered in at.radio(key=f"train_on.{dataset_id}").options
    _train(at, "labelled_normal")
    run = ws.get_run(at.session_state["run_id"])
    assert run.metrics["n_train"] == 40 and run.metrics["train_on"] == "labelled_normal"
