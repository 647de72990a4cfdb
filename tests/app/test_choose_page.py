"""Choosing the augmentation on the expert's labels, through the Choose page's buttons."""

from __future__ import annotations

import numpy as np

from ad_core.data import Schema, ground_truth
from ad_core.store import Workspace
from ad_studio_ui.apptest import open_page, problems
from ad_studio_ui.choose import choice_job, choice_key
from ad_studio_ui.labels import label_rows


def _label_from_truth(ws, dataset_id, n_anomalies, n_normal, seed=0):
    frame = ws.load_dataset_frame(dataset_id)
    truth = ground_truth(frame, Schema.from_dict(ws.get_dataset(dataset_id).schema))
    rng = np.random.default_rng(seed)
    keys = frame.index.astype(str).to_numpy()  # cardio has no id column: keys are row numbers
    anomalies = rng.choice(np.flatnonzero(truth == 1), n_anomalies, replace=False)
    normals = rng.choice(np.flatnonzero(truth == 0), n_normal, replace=False)
    label_rows(ws, dataset_id, keys[anomalies], 1, "expert")
    label_rows(ws, dataset_id, keys[normals], 0, "expert")


def _ranking(at):
    """Return the ranking table the page shows (the dataframe with a candidate column)."""
    return next(d.value for d in at.dataframe if "candidate" in d.value.columns)


def test_without_labels_the_page_says_what_it_needs(app):
    app.button(key="sample_cardio").click().run()
    at = open_page(app, "choose")
    assert not problems(at), problems(at)
    assert any("needs labelled anomalies and labelled normal rows" in i.value for i in at.info)


def test_candidates_train_in_the_background_rank_on_labels_and_the_leader_becomes_current(app):
    app.button(key="sample_cardio").click().run()
    ws = Workspace()
    dataset_id = app.session_state["dataset_id"]
    _label_from_truth(ws, dataset_id, 10, 50)
    at = open_page(app, "choose")
    assert not problems(at), problems(at)
    augmentations = at.multiselect(key="choose_augmentations.ssl_classifier.21")
    offered = list(augmentations.options)
    # Tables get the table augmentations only (cardio's 21 features are no image).
    assert any(o.startswith("ssl_classifier permute") for o in offered)
    assert not any("rotate" in o for o in offered)
    keep = [o for o in offered if "permute" in o or "noise" in o][:2]
    augmentations.set_value(keep).run()
    start = at.button(key="choose_start")
    assert start.label == "Train 3 candidates in the background"
    start.click().run()
    assert not problems(at), problems(at)
    job = choice_job(ws, dataset_id)
    assert job is not None and job.wait(timeout=240) and job.status == "done", job.failed
    at.run()
    assert not problems(at), problems(at)
    stored = ws.get_setting(choice_key(dataset_id))
    assert [e["name"] for e in stored] == [*keep, "autoencoder"]
    table = _ranking(at)
    assert len(table) == 3 and list(table["rank"]) == [1, 2, 3]
    assert set(table["candidate"]) == {*keep, "autoencoder"}
    assert "AUROC on ground truth (unlabelled rows)" in table.columns
    statement = next(m.value for m in at.markdown if m.value.startswith("Ranked on "))
    assert "Ranked on 60 labelled rows (10 anomalies, 50 normal)" in statement
    leader = table.iloc[0]["candidate"]
    leader_run = int(table.iloc[0]["run"].lstrip("#"))
    at.button(key="choose_make_current").click().run()
    assert not problems(at), problems(at)
    assert at.session_state["run_id"] == leader_run
    assert ws.get_run(leader_run).detector == (
        "autoencoder" if leader == "autoencoder" else "ssl_classifier"
    )


def test_too_few_labels_are_said_plainly(app):
    app.button(key="sample_cardio").click().run()
    ws = Workspace()
    dataset_id = app.session_state["dataset_id"]
    _label_from_truth(ws, dataset_id, 2, 4, seed=1)
    at = open_page(app, "choose")
    at.multiselect(key="choose_augmentations.ssl_classifier.21").set_value(
        [at.multiselect(key="choose_augmentations.ssl_classifier.21").options[0]]
    ).run()
    at.button(key="choose_start").click().run()
    job = choice_job(ws, dataset_id)
    assert job.wait(timeout=240) and job.status == "done", job.failed
    at.run()
    statement = next(m.value for m in at.markdown if m.value.startswith("Ranked on "))
    assert "Ranked on 6 labelled rows" in statement
    assert "too few to tell" in statement
    table = _ranking(at)
    assert (table["told apart from the leader"].iloc[1:] == "no: too few labels").all()
