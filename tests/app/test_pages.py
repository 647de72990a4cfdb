"""Every page renders, on an empty workspace and with a trained run; state survives a reload."""

from __future__ import annotations

import pytest

from ad_core.store import Workspace
from ad_studio_ui.apptest import PAGES, app_test, navigation_mode, open_page, problems


def assert_clean(at) -> None:
    assert not problems(at), problems(at)


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_on_a_fresh_workspace(app, page):
    at = open_page(app, page)
    assert_clean(at)
    assert at.title[0].value  # the page got as far as its title
    if page != "data":
        # Pages that need data say what to do instead of failing.
        assert at.info, f"{page} shows no guidance on an empty workspace"


EXPECTED = {
    "data": lambda at: any(m.label == "Rows" and m.value == "1,000" for m in at.metric),
    "train": lambda at: len(at.get("form_submit_button")) == 1,
    "scores": lambda at: any(m.label == "Flagged rows" for m in at.metric),
    "latent": lambda at: any(m.label == "Selected rows" for m in at.metric),
    "label": lambda at: any(b.key == "review_anomaly" for b in at.button),
    "runs": lambda at: any(b.key == "runs_open" for b in at.button),
    "choose": lambda at: any(b.key == "choose_start" for b in at.button),
}


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_with_a_trained_run(trained_app, page):
    at = open_page(trained_app, page)
    assert_clean(at)
    assert EXPECTED[page](at), f"{page} did not show its main content"
    # The sidebar offers the dataset and the run.
    assert at.sidebar.selectbox[0].value is not None
    assert at.sidebar.selectbox[1].value is not None


def test_threshold_widgets_stay_in_sync_and_survive_a_reload(trained_app, trained_home):
    at = open_page(trained_app, "scores")
    before = next(m.value for m in at.metric if m.label == "Flagged rows")
    slider = at.slider(key="threshold_slider")
    low, high = slider.min, slider.max
    new_value = low + 0.9 * (high - low)
    at.number_input(key="threshold_number").set_value(new_value).run()
    assert_clean(at)
    assert at.slider(key="threshold_slider").value == pytest.approx(new_value)
    after = next(m.value for m in at.metric if m.label == "Flagged rows")
    assert after != before

    # A new session (a browser reload) comes back to the same run and threshold.
    with navigation_mode():
        reloaded = open_page(app_test().run(), "scores")
    assert_clean(reloaded)
    assert reloaded.number_input(key="threshold_number").value == pytest.approx(new_value)
    assert next(m.value for m in reloaded.metric if m.label == "Flagged rows") == after
    ws = Workspace(trained_home)
    assert ws.get_setting(f"threshold.{reloaded.session_state['run_id']}") == pytest.approx(
        new_value
    )


def test_rule_button_flags_the_top_one_percent(trained_app):
    at = open_page(trained_app, "scores")
    next(b for b in at.button if b.label == "Top 1 %").click().run()
    assert_clean(at)
    flagged = next(m.value for m in at.metric if m.label == "Flagged rows")
    assert flagged == "10"  # 1 % of the 1000 heartbeats


def test_sample_button_loads_a_dataset_and_shows_its_summary(app):
    app.button(key="sample_cardio").click().run()
    assert_clean(app)
    assert any("Loaded the sample" in s.value for s in app.success)
    assert any(m.label == "Rows" and m.value == "1,831" for m in app.metric)
    assert app.sidebar.selectbox[0].value == app.session_state["dataset_id"]


def test_rows_sent_from_the_map_head_the_review_queue(trained_app, trained_home):
    ws = Workspace(trained_home)
    dataset_id = trained_app.session_state["dataset_id"]
    at = open_page(trained_app, "latent")
    assert_clean(at)
    keys = ws.load_scores(trained_app.session_state["run_id"])["row_key"].tolist()
    first, second = keys[42], keys[7]
    ws.set_setting(f"review_queue.{dataset_id}", [first, second])
    at = open_page(at, "label")
    at.sidebar.text_input(key="annotator").input("tester").run()
    at.radio(key="queue_mode").set_value("map").run()
    assert_clean(at)
    assert any(f"**Row {first}**" in m.value for m in at.markdown)
    at.button(key="review_anomaly").click().run()
    assert ws.labels(dataset_id).get(first) == 1
    assert any(f"**Row {second}**" in m.value for m in at.markdown)
    at.button(key="review_undo").click().run()
    assert first not in ws.labels(dataset_id)
    assert any("Undid labelling 1 row(s) as anomaly" in m.value for m in at.info)


def test_a_map_computed_in_the_background_is_saved_with_the_run(trained_app, trained_home):
    from ad_studio_ui import maps

    ws = Workspace(trained_home)
    run = ws.get_run(trained_app.session_state["run_id"])
    for path in ws.run_dir(run.id).glob("map_pca*.npy"):
        path.unlink()
    assert not maps.map_available(run, "pca")
    job = maps.start_map_job(run, "pca")
    assert job.wait(timeout=60) and job.status == "done", job.error
    assert maps.map_available(run, "pca")
    at = open_page(trained_app, "latent")
    assert_clean(at)
    assert any("PCA of the latent codes, 1,000 rows" in c.value for c in at.caption)


def test_runs_page_compares_two_runs_and_deletes_one(app):
    from ad_studio_ui.datasets import add_sample
    from ad_studio_ui.training import train_run

    ws = Workspace()
    dataset_id = add_sample(ws, "cardio")
    ws.set_setting("last_dataset_id", dataset_id)
    prep = {"scaling": "standard", "impute": "median", "max_categories": 20}
    first = ws.create_run(dataset_id, "isolation_forest", {"random_state": 0}, prep)
    train_run(ws, first)
    second = ws.create_run(dataset_id, "knn", {"n_neighbors": 5}, prep)
    train_run(ws, second)

    at = open_page(app, "runs")
    assert_clean(at)
    assert any(m.label == "Rank correlation (Spearman)" for m in at.metric)
    assert at.selectbox(key="cmp_a").value == first
    assert at.selectbox(key="cmp_b").value == second

    at.selectbox(key="runs_pick").set_value(first).run()
    at.button(key="runs_delete").click().run()
    at.button(key="runs_delete_confirm").click().run()
    assert_clean(at)
    assert [r.id for r in ws.list_runs(dataset_id)] == [second]
    assert any(f"Run #{first} was deleted" in s.value for s in at.success)


def test_large_maps_keep_normal_rows_beside_the_flagged_ones():
    import numpy as np

    from ad_studio_ui.maps import display_rows

    priority = np.zeros(200_000, dtype=bool)
    priority[:20_000] = True  # 10 % flagged, all at the top of the file
    shown = display_rows(priority.size, priority, max_points=15_000)
    assert shown.size == 15_000 and np.unique(shown).size == 15_000
    assert 0 < priority[shown].sum() <= 7_500  # flagged rows capped at half
    assert shown.max() > 150_000  # the sample reaches the end of the file
    few = np.zeros(200_000, dtype=bool)
    few[[5, 99_999]] = True
    assert set(np.flatnonzero(few)) <= set(display_rows(few.size, few, max_points=1_000))
