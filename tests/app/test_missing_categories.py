"""Empty cells of a categorical column, through the app: said on the Data page, a choice
there, and "colour is missing" in the explanations on the Scores page."""

from __future__ import annotations

import numpy as np

from ad_core.store import Workspace
from ad_studio_ui import state
from ad_studio_ui.apptest import app_test, open_page, problems
from ad_studio_ui.training import train_run

EMPTY_ROWS = (7, 23, 41)


def _colours_csv(n: int = 60) -> bytes:
    rng = np.random.default_rng(0)
    lines = ["id,x,colour"]
    for i in range(n):
        colour = "" if i in EMPTY_ROWS else ("red" if i % 3 else "blue")
        lines.append(f"r{i},{rng.normal():.4f},{colour}")
    return ("\n".join(lines) + "\n").encode()


def _upload(app):
    app.file_uploader(key="upload").set_value(("colours.csv", _colours_csv(), "text/csv")).run()
    assert not problems(app), problems(app)
    return app.session_state["dataset_id"]


def _features_kept(at) -> str:
    return next(m.value for m in at.metric if m.label == "Features kept")


def test_data_page_names_the_empty_cells_and_offers_to_fill_them(app):
    dataset_id = _upload(app)
    warning = next(w.value for w in app.warning if "Empty cells" in w.value)
    assert "'colour' (3 of 60 cells empty)" in warning
    assert "'colour is missing'" in warning and "most frequent" in warning
    # x, colour=red, colour=blue, colour is missing, colour=(other)
    assert _features_kept(app) == "5"
    choice = app.selectbox(key=f"catmissing_{dataset_id}")
    assert choice.value == "own_category"

    choice.set_value("most_frequent").run()
    assert not problems(app), problems(app)
    warning = next(w.value for w in app.warning if "Empty cells" in w.value)
    assert "filled with 'red'" in warning
    assert _features_kept(app) == "4"  # no "colour is missing" column
    assert Workspace().get_setting(f"prep.{dataset_id}")["categorical_missing"] == "most_frequent"

    reloaded = app_test().run()  # the choice is kept across a reload
    assert reloaded.selectbox(key=f"catmissing_{dataset_id}").value == "most_frequent"


def test_scores_page_explains_an_empty_cell_as_missing(app):
    dataset_id = _upload(app)
    ws = Workspace()
    # The app's stored choices lack the new key: the Preprocessor's default applies.
    prep = {**state.DEFAULT_PREPROCESSING}
    run_id = ws.create_run(dataset_id, "isolation_forest", {"random_state": 0}, prep)
    train_run(ws, run_id)
    at = open_page(app, "scores")
    at.number_input(key="threshold_number").set_value(-1e9).run()  # flag every row
    assert not problems(at), problems(at)
    table = next(d.value for d in at.dataframe if "top features" in d.value.columns)
    explained = dict(zip(table["row"], table["top features"], strict=True))
    for i in EMPTY_ROWS:
        assert explained[f"r{i}"].startswith("colour is missing ("), explained[f"r{i}"]
    assert not any("(missing)" in text for text in explained.values())
