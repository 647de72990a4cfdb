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
    assert "Too few labels to tell any two candidates apart" in statement
    table = _ranking(at)
    assert (table["told apart from the leader"].iloc[1:] == "no: too few labels").all()
    # two anomalies resample to a few sets only: no interval pretends to be exact
    assert (table["AUROC 95% interval"] == "too few labels").all()


def test_image_rows_keep_every_pixel_and_one_scale_for_the_image_augmentations(app):
    """Digits (8 x 8) have blank pixels in every image: the Data page's default sets them
    aside, which breaks the picture; treated as images, every pixel trains, one scale for all."""
    import io
    import time

    import pandas as pd
    from sklearn.datasets import load_digits

    from ad_studio_ui import training

    digits = load_digits()
    frame = pd.DataFrame(digits.data[:400], columns=[f"p{i}" for i in range(64)])
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    app.file_uploader(key="upload").set_value(
        ("digits.csv", buffer.getvalue().encode(), "text/csv")
    )
    app.run()
    assert not problems(app), problems(app)
    ws = Workspace()
    dataset_id = app.session_state["dataset_id"]
    at = open_page(app, "choose")
    assert not problems(at), problems(at)
    # blank pixels set aside: no image augmentation yet, and the page says where to fix it
    assert any("Treat rows as images" in i.value for i in at.info)
    box = next(m for m in at.multiselect if m.key.startswith("choose_augmentations."))
    assert not any("rotate" in o for o in box.options)
    at = open_page(at, "data")
    assert any("look like 8 x 8 images" in i.value for i in at.info)
    at.checkbox(key=f"indicators_{dataset_id}").check().run()  # would add columns to the grid
    at.button(key=f"as_images_{dataset_id}").click().run()
    assert not problems(at), problems(at)
    assert any("Rows are read as 8 x 8 images" in c.value for c in at.caption)
    assert at.selectbox(key=f"scaling_{dataset_id}").value == "global"
    assert not at.checkbox(key=f"indicators_{dataset_id}").value
    at = open_page(at, "choose")
    box = next(m for m in at.multiselect if m.key.startswith("choose_augmentations."))
    rotate = [o for o in box.options if "rotate" in o]
    assert rotate, box.options  # the 64 pixels are an image, blank ones included
    box.set_value(rotate[:1]).run()
    assert any("read as images of 64 pixels" in c.value for c in at.caption)
    at.button(key="choose_start").click().run()
    job = choice_job(ws, dataset_id)
    try:
        deadline = time.time() + 60
        while not job.runs and time.time() < deadline:
            time.sleep(0.1)
        first = ws.get_run(next(iter(job.runs.values())))
        assert first.preprocessing["keep_constant"] is True
        assert first.preprocessing["scaling"] == "global"
        assert first.params["augmentation"].startswith("rotate")
    finally:
        job.cancel()
        job.wait(timeout=120)
    assert job.status == "cancelled"
    assert training.get_job(first.id) is None or not training.get_job(first.id).running
