"""Every registered detector trains from the Train page's form, with every value of its choices.

Parametrised over the registry: a new detector is tested through the form without anyone
remembering to add it here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ad_core import augment, list_detectors
from ad_core.store import Workspace
from ad_studio_ui import training
from ad_studio_ui.apptest import open_page, problems
from ad_studio_ui.datasets import add_upload
from ad_studio_ui.forms import DEFAULT_DETECTOR, DEFAULT_DETECTOR_WHY

#: the fewest epochs each kind of setting accepts: keeps a form training to a second or two
FAST = {"epochs": 1, "pretrain_epochs": 1, "n_estimators": 10, "n_samples": 2}


def _cases() -> list[tuple[str, str | None, object]]:
    cases = []
    for info in list_detectors():
        choices = [p for p in info.params if p.kind == "choice"]
        if not choices:
            cases.append((info.name, None, None))
        for spec in choices:
            cases.extend((info.name, spec.name, value) for value in spec.choices)
    return cases


def _submit(at, detector: str, overrides: dict) -> int:
    at.selectbox(key="train_detector").set_value(detector).run()
    assert not problems(at), problems(at)
    for name, value in overrides.items():
        key = f"train_{detector}_{name}"
        widgets = [w for w in (*at.number_input, *at.selectbox, *at.text_input) if w.key == key]
        if widgets:
            widgets[0].set_value(value)
    at.get("form_submit_button")[0].click().run()
    assert not problems(at), problems(at)
    run_id = at.session_state["training_run_id"]
    job = training.get_job(run_id)
    assert job.wait(timeout=180), "training did not finish in time"
    assert job.status == "done", job.error
    at.run()
    return run_id


#: settings that only suit rows that are 28 x 28 images; tested on a small image table
IMAGE_ONLY = {("compact_vae", "network", "conv")} | {
    ("ssl_classifier", "augmentation", a["name"]) for a in augment.list_augmentations("image")
}
#: settings that need features in [0, 1]: the Data page's min-max scaling is chosen first
UNIT_RANGE = {("compact_vae", "likelihood", "bernoulli")}


def _load_images(at) -> None:
    """Upload a table of 120 random 28 x 28 images (784 pixel columns) and make it current."""
    rng = np.random.default_rng(0)
    pixels = np.clip(rng.normal(0.3, 0.2, size=(120, 784)), 0, 1).round(3)
    frame = pd.DataFrame(pixels, columns=[f"px{i:03d}" for i in range(784)])
    dataset_id, _ = add_upload(Workspace(), "images.csv", frame.to_csv(index=False).encode())
    at.session_state["dataset_id"] = dataset_id
    at.run()


@pytest.mark.parametrize(("detector", "param", "value"), _cases())
def test_every_detector_and_choice_trains_from_the_form(app, detector, param, value):
    if (detector, param, value) in IMAGE_ONLY:
        _load_images(app)
    else:
        app.button(key="sample_cardio").click().run()
    assert not problems(app), problems(app)
    if (detector, param, value) in UNIT_RANGE:  # what the Data page stores for "minmax"
        Workspace().set_setting(f"prep.{app.session_state['dataset_id']}", {"scaling": "minmax"})
    at = open_page(app, "train")
    overrides = dict(FAST)
    if param is not None:
        overrides[param] = value
    run_id = _submit(at, detector, overrides)

    run = Workspace().get_run(run_id)
    assert run.detector == detector
    if param is not None:
        assert run.params[param] == value  # the dropdown's value reached the detector
    at = open_page(at, "scores")
    assert not problems(at), problems(at)
    flagged = next(m.value for m in at.metric if m.label == "Flagged rows")
    scores = Workspace().load_scores(run_id)["score"].to_numpy()
    assert np.isfinite(scores).all()
    assert int(flagged.replace(",", "")) == int((scores > run.metrics["threshold"]).sum())


def test_detector_settings_survive_a_visit_to_another_page(app):
    app.button(key="sample_cardio").click().run()
    at = open_page(app, "train")
    at.selectbox(key="train_detector").set_value("knn").run()
    at.number_input(key="train_knn_n_neighbors").set_value(7)
    at.selectbox(key="train_knn_method").set_value("mean")
    at.get("form_submit_button")[0].click().run()
    job = training.get_job(at.session_state["training_run_id"])
    assert job.wait(timeout=120) and job.status == "done", job.error
    at = open_page(at, "data")
    at = open_page(at, "train")
    assert not problems(at), problems(at)
    assert at.selectbox(key="train_detector").value == "knn"
    assert at.number_input(key="train_knn_n_neighbors").value == 7
    assert at.selectbox(key="train_knn_method").value == "mean"


def test_train_page_shows_no_run_of_another_dataset(app):
    app.button(key="sample_cardio").click().run()
    at = open_page(app, "train")
    run_id = _submit(at, "isolation_forest", {"n_estimators": 10})
    assert any(f"Run #{run_id}" in m.value for m in at.markdown)
    at = open_page(at, "data")
    at.button(key="sample_ecg5000").click().run()
    at = open_page(at, "train")
    assert not problems(at), problems(at)
    assert not any(f"Run #{run_id}" in m.value for m in at.markdown)
    assert not at.get("plotly_chart")  # no loss curve of the other dataset's run


def test_the_form_proposes_the_ensemble_for_a_first_run_and_says_why(app):
    app.button(key="sample_cardio").click().run()
    at = open_page(app, "train")
    assert not problems(at), problems(at)
    assert at.selectbox(key="train_detector").value == DEFAULT_DETECTOR == "ensemble"
    assert DEFAULT_DETECTOR_WHY in [c.value for c in at.caption]
    at.selectbox(key="train_detector").set_value("knn").run()
    assert DEFAULT_DETECTOR_WHY not in [c.value for c in at.caption]  # only beside the default


def test_a_setting_the_library_refuses_is_said_in_plain_words(app):
    app.button(key="sample_cardio").click().run()
    at = open_page(app, "train")
    at.selectbox(key="train_detector").set_value("autoencoder").run()
    at.text_input(key="train_autoencoder_hidden_dims").set_value("32, 0")
    at.number_input(key="train_autoencoder_epochs").set_value(1)
    at.get("form_submit_button")[0].click().run()
    job = training.get_job(at.session_state["training_run_id"])
    assert job.wait(timeout=60) and job.status == "failed"
    at.run()
    (shown,) = [e.value for e in at.error if "Training failed" in e.value]
    assert "Autoencoder: 'hidden_dims' must be" in shown and "got [32, 0]" in shown
    assert "ValueError" not in shown and "(in " not in shown
