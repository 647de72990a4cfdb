"""The Runs page compares two runs on every setting, in words, never 'null'."""

from __future__ import annotations

from ad_core.store import Workspace
from ad_studio_ui.apptest import open_page, problems
from ad_studio_ui.datasets import add_sample
from ad_studio_ui.training import train_run

PREP = {"scaling": "standard", "impute": "median", "max_categories": 20}


def test_settings_of_two_detectors_compare_without_nulls(app):
    ws = Workspace()
    dataset_id = add_sample(ws, "cardio")
    ws.set_setting("last_dataset_id", dataset_id)
    first = ws.create_run(dataset_id, "autoencoder", {"epochs": 2, "random_state": 0}, PREP)
    train_run(ws, first)
    # a retrain as the Label page records it: only some settings given
    second = ws.create_run(dataset_id, "deep_sad", {"epochs": 2, "pretrain_epochs": 1}, PREP)
    train_run(ws, second)

    at = open_page(app, "runs")
    assert not problems(at), problems(at)
    (table,) = [d.value for d in at.dataframe if "setting" in d.value.columns]
    by_name = {row["setting"]: row for _, row in table.iterrows()}
    cells = table.drop(columns=["setting", "differs"]).to_numpy().ravel().tolist()
    assert not any(c in ("null", "None", None) for c in cells), cells
    assert by_name["detector"][f"#{first}"] == "Autoencoder"
    assert by_name["detector"][f"#{second}"] == "Deep SAD"
    assert by_name["rep dim"][f"#{first}"] == "automatic"  # left to the detector
    assert by_name["eta"][f"#{first}"] == "(not a setting of Autoencoder)"
    assert by_name["eta"][f"#{second}"] == "1.0"  # Deep SAD's default, filled in
    assert bool(by_name["epochs"]["differs"]) is False
