"""A sensor series from upload to a labelled event, through the real pages and buttons."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from ad_core.data.samples import SAMPLE_DIR
from ad_core.series_runs import load_settings, settings_key
from ad_core.store import Workspace
from ad_studio_ui import training
from ad_studio_ui.apptest import open_page, problems

SERIES_CSV = SAMPLE_DIR / "machine_series.csv"


def _upload(app, name: str, data: bytes):
    app.file_uploader(key="upload").set_value((name, data, "text/csv")).run()
    assert not problems(app), problems(app)
    return app


def _train(at, detector: str = "autoencoder") -> int:
    at.selectbox(key="train_detector").set_value(detector).run()
    at.get("form_submit_button")[0].click().run()
    assert not problems(at), problems(at)
    run_id = at.session_state["training_run_id"]
    job = training.get_job(run_id)
    assert job.wait(timeout=240) and job.status == "done", job.error
    at.run()
    return run_id


def _shaded(at, title: str) -> tuple[list[dict], list[dict]]:
    """Return (event shading, label band) of the shown series chart whose title starts so.

    The shapes as the browser gets them (the chart's JSON spec); every end must be a time the
    date axis reads, inside the series (an integer of nanoseconds is read as milliseconds).
    """
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    spec = next(s for s in specs if s["layout"]["title"]["text"].startswith(title))
    rects = [s for s in spec["layout"].get("shapes", []) if s["type"] == "rect"]
    first, last = pd.Timestamp("2026-03-02"), pd.Timestamp("2026-03-30")  # the sample's days
    for rect in rects:
        for end in ("x0", "x1"):
            assert isinstance(rect[end], str) and first <= pd.Timestamp(rect[end]) < last, rect
    band = [r for r in rects if r["xref"] == "x2" and r["y1"] == 0.05]
    return [r for r in rects if r not in band], band


def test_a_series_from_upload_to_a_labelled_event(app):
    at = _upload(app, "machine.csv", SERIES_CSV.read_bytes())
    dataset_id = at.session_state["dataset_id"]
    # The Data page recognises the series and proposes a window from its daily cycle.
    assert any("analysed as a series" in i.value for i in at.info), [i.value for i in at.info]
    assert at.toggle(key=f"series_on_{dataset_id}").value
    ws = Workspace()
    settings = load_settings(ws, dataset_id)
    assert settings is not None and settings.value_columns == ("temperature", "fan_speed")
    assert 280 <= settings.window.length <= 290  # one day of 5-minute points
    assert any("repeat every" in c.value for c in at.caption)
    at = open_page(at, "train")
    assert any("analysed as a series" in i.value for i in at.info)

    at = open_page(at, "train")
    run_id = _train(at)
    run = ws.get_run(run_id)
    assert run.metrics["series"] and run.metrics["n_windows"] > 1000

    at = open_page(at, "scores")
    assert not problems(at), problems(at)
    assert any(s.value == "The series over time" for s in at.subheader)
    assert len(at.get("plotly_chart")) >= 1
    events = int(next(m.value for m in at.metric if m.label == "Events").replace(",", ""))
    assert events >= 1
    hit = next(m.value for m in at.metric if m.label == "True anomaly stretches hit")
    assert int(hit.split(" of ")[0]) >= 1 and hit.endswith("of 5")
    table = next(d for d in at.dataframe if d.key == f"events_table.{run_id}").value
    assert len(table) == events and {"start", "end", "points", "peak score"} <= set(table.columns)
    shading, band = _shaded(at, "The series")
    assert len(shading) == 2 * min(events, 300) and not band  # each event on both panels

    # Without a name there is no label, and a sentence says so.
    at.session_state[f"events_table.{run_id}"] = {"selection": {"rows": [0], "columns": []}}
    at.run()
    at.button(key="event_label_1").click().run()
    assert any("Annotator" in e.value for e in [*at.error, *at.warning, *at.toast]), (
        "no name, no label"
    )
    assert not ws.labels(dataset_id)

    at.sidebar.text_input(key="annotator").input("ana").run()
    at.session_state[f"events_table.{run_id}"] = {"selection": {"rows": [0], "columns": []}}
    at.run()
    at.button(key="event_label_1").click().run()
    assert not problems(at), problems(at)
    labels = ws.labels(dataset_id)
    first = table.iloc[0]
    assert len(labels) == int(first["points"]) and set(labels.values()) == {1}
    table = next(d for d in at.dataframe if d.key == f"events_table.{run_id}").value
    assert table.iloc[0]["your label"] == "anomaly"
    shading, band = _shaded(at, "The series")
    assert len(band) == 1 and pd.Timestamp(band[0]["x0"]) == pd.Timestamp(first["start"])

    # Undo takes the whole event back.
    at.button(key="event_undo").click().run()
    assert not ws.labels(dataset_id)


def test_a_series_with_problems_is_fixed_into_a_new_dataset_never_silently(app):
    lines = SERIES_CSV.read_text().splitlines()
    header, rows = lines[0], lines[1:600]
    rows = rows[:100] + rows[100:200][::-1] + rows[200:]  # 100 rows out of order
    rows[300] = rows[300].split(",")[0] + ",,1000,0"  # a missing temperature
    at = _upload(app, "messy.csv", ("\n".join([header, *rows]) + "\n").encode())
    original = at.session_state["dataset_id"]
    assert any("say what to do" in w.value for w in at.warning)
    ws = Workspace()
    assert ws.get_setting(settings_key(original)) is None  # nothing chosen, nothing changed
    at.get("form_submit_button")[0].click().run()  # sort + interpolate, the defaults
    assert not problems(at), problems(at)
    fixed = at.session_state["dataset_id"]
    assert fixed != original
    frame = ws.load_dataset_frame(fixed)
    times = frame["timestamp"].tolist()
    assert times == sorted(times) and frame["temperature"].notna().all()
    assert len(frame) == len(rows)
    assert ws.load_dataset_frame(original)["temperature"].isna().sum() == 1  # untouched
    assert any("Sorted the rows" in s.value for s in at.success)
    assert load_settings(ws, fixed) is not None  # the fixed copy is analysed as a series


def test_a_series_shorter_than_its_window_is_refused_in_words(app):
    lines = SERIES_CSV.read_text().splitlines()[:21]
    app.file_uploader(key="upload").set_value(
        ("short.csv", ("\n".join(lines) + "\n").encode(), "text/csv")
    ).run()
    assert any("too few to analyse in windows" in e.value for e in app.error)
    assert load_settings(Workspace(), app.session_state["dataset_id"]) is None  # plain rows


@pytest.mark.parametrize("how", ["max", "mean"])
def test_the_window_form_changes_what_the_next_training_uses(app, how):
    at = _upload(app, "machine.csv", SERIES_CSV.read_bytes())
    dataset_id = at.session_state["dataset_id"]
    form = [n for n in at.number_input if n.label.startswith("Window length")][0]
    form.set_value(48)
    [n for n in at.number_input if n.label.startswith("Stride")][0].set_value(6)
    [r for r in at.radio if r.label == "A point's score"][0].set_value(how)
    next(b for b in at.get("form_submit_button") if "Apply window" in b.label).click().run()
    assert not problems(at), problems(at)
    settings = load_settings(Workspace(), dataset_id)
    assert (settings.window.length, settings.window.stride, settings.how) == (48, 6, how)


def test_the_latent_map_of_a_series_shows_windows_coloured_by_time_and_labels_their_points(app):
    at = _upload(app, "machine.csv", SERIES_CSV.read_bytes())
    dataset_id = at.session_state["dataset_id"]
    at = open_page(at, "train")
    run_id = _train(at, "autoencoder")
    n_windows = Workspace().get_run(run_id).metrics["n_windows"]
    at.sidebar.text_input(key="annotator").input("ana").run()
    at = open_page(at, "latent")
    assert not problems(at), problems(at)
    assert any(f"{n_windows:,} windows" in c.value for c in at.caption)
    at.radio(key="latent_color").set_value("time").run()
    assert not problems(at), problems(at)
    map_key = f"latent_map_{run_id}_pca"
    at.session_state[map_key] = {
        "selection": {
            "points": [{"customdata": "window 10"}, {"customdata": "window 11"}],
            "point_indices": [],
            "box": [],
            "lasso": [],
        }
    }
    at.run()
    assert not problems(at), problems(at)
    at.button(key="map_label_anomaly").click().run()
    assert not problems(at), problems(at)
    labels = Workspace().labels(dataset_id)
    settings = load_settings(Workspace(), dataset_id)
    stride, length = settings.window.stride, settings.window.length
    # windows 10 and 11 cover points 10*stride .. 11*stride + length - 1
    assert len(labels) == stride + length and set(labels.values()) == {1}


def test_the_label_queue_shows_a_stretch_of_the_series_and_labels_it_whole(app):
    at = _upload(app, "machine.csv", SERIES_CSV.read_bytes())
    dataset_id = at.session_state["dataset_id"]
    at = open_page(at, "train")
    run_id = _train(at, "autoencoder")
    at.sidebar.text_input(key="annotator").input("ana").run()
    at = open_page(at, "label")
    at.radio(key="queue_mode").set_value("highest").run()
    assert not problems(at), problems(at)
    chart = at.get("plotly_chart")
    assert chart, "the queued point is shown in its stretch of the series"
    shading, _ = _shaded(at, "Point ")
    assert len(shading) == 2  # the stretch the buttons label, on both panels
    first_header = next(m.value for m in at.markdown if m.value.startswith("**Row "))
    said = next(c.value for c in at.caption if "label the shaded stretch" in c.value)
    # times as a person writes them: "2026-03-02 08:15", not numpy's "...T08:15:00.000000000"
    assert re.search(r"from \d{4}-\d\d-\d\d \d\d:\d\d to \d{4}-\d\d-\d\d \d\d:\d\d\.", said)
    button = at.button(key="review_anomaly")
    n = int(button.label.split("(")[1].split(" ")[0].replace(",", ""))
    button.click().run()
    assert not problems(at), problems(at)
    labels = Workspace().labels(dataset_id)
    assert len(labels) == n and set(labels.values()) == {1}
    # The highest-scoring point was flagged, so its stretch is its whole event.
    scores = Workspace().load_scores(run_id)["score"].to_numpy()
    top = int(np.argmax(scores))
    keys = Workspace().load_scores(run_id)["row_key"].astype(str).tolist()
    assert labels.get(keys[top]) == 1
    assert any("Labelled the stretch" in s.value for s in at.success)
    # the row shown first was the top score: rank 1, its ties said (points share windows)
    ties = int((scores == scores.max()).sum()) - 1
    header = f"(rank 1 of {scores.size:,}" + (f", tied with {ties:,} other row" if ties else ")")
    assert header in first_header, first_header


def test_an_unflagged_point_is_labelled_as_the_window_it_scored_highest_in(app):
    at = _upload(app, "machine.csv", SERIES_CSV.read_bytes())
    dataset_id = at.session_state["dataset_id"]
    at = open_page(at, "train")
    _train(at, "pca")
    at.sidebar.text_input(key="annotator").input("ana").run()
    at = open_page(at, "label")
    at.radio(key="queue_mode").set_value("random").run()
    button = at.button(key="review_normal")
    settings = load_settings(Workspace(), dataset_id)
    n = int(button.label.split("(")[1].split(" ")[0].replace(",", ""))
    button.click().run()
    assert not problems(at), problems(at)
    labels = Workspace().labels(dataset_id)
    assert len(labels) == n and set(labels.values()) == {0}
    # A stretch labelled normal makes at least one whole window normal for Deep SAD.
    from ad_core.series import window_labels

    point_labels = np.full(8064, -1)
    frame_keys = Workspace().load_scores(at.session_state["run_id"])["row_key"].astype(str)
    point_labels[[i for i, k in enumerate(frame_keys) if k in labels]] = 0
    assert (window_labels(point_labels, settings.window) == 0).any()


def test_turning_the_series_off_trains_on_unrelated_rows(app):
    at = _upload(app, "machine.csv", SERIES_CSV.read_bytes())
    dataset_id = at.session_state["dataset_id"]
    at.toggle(key=f"series_on_{dataset_id}").set_value(False).run()
    assert load_settings(Workspace(), dataset_id) is None
    assert any("analysed one by one" in c.value for c in at.caption)
    at = open_page(at, "train")
    assert not any("analysed as a series" in i.value for i in at.info)
    run_id = _train(at, "pca")
    assert "series" not in Workspace().get_run(run_id).metrics


def test_the_diverse_queue_and_a_stale_event_selection_work_on_a_series(app):
    at = _upload(app, "machine.csv", SERIES_CSV.read_bytes())
    at = open_page(at, "train")
    run_id = _train(at, "autoencoder")
    at = open_page(at, "label")
    at.radio(key="queue_mode").set_value("diverse").run()
    assert not problems(at), problems(at)  # codes of windows, not of single points
    at = open_page(at, "scores")
    table = next(d for d in at.dataframe if d.key == f"events_table.{run_id}").value
    at.session_state[f"events_table.{run_id}"] = {
        "selection": {"rows": [len(table) - 1], "columns": []}
    }
    at.run()
    # Just under the highest peak: one event is left, the selected row number is gone.
    top = float(table["peak score"].max())
    at.number_input(key="threshold_number").set_value(top - 1e-6 * abs(top)).run()
    assert not problems(at), problems(at)
    left = next(d for d in at.dataframe if d.key == f"events_table.{run_id}").value
    assert 1 <= len(left) < len(table)
    assert at.button(key="event_label_1").disabled  # the old selection was dropped
