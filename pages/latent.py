"""Latent space: a 2-D map of the run's codes; select points with box or lasso and label them."""

import time

import numpy as np
import streamlit as st

from ad_core import maps as core_maps
from ad_core.maps import METHODS, display_rows, hole_message, queue_key
from ad_core.plots import latent_map_figure
from ad_core.runs import percentiles
from ad_core.series import window_labels
from ad_core.store import LABEL_NAMES
from ad_core.thresholds import flag
from ad_studio_ui import state
from ad_studio_ui.frame import flash, guarded, inside_app, page_link, require_dataset, require_run
from ad_studio_ui.labels import label_rows, selected_row_keys, view_key_scheme
from ad_studio_ui.maps import map_available, map_job, run_holes, run_map, start_map_job
from ad_studio_ui.review import request_queue
from ad_studio_ui.series_ui import run_series, series_times, time_text
from ad_studio_ui.workspace import get_workspace, label_array, run_scores, run_title

MAX_POINTS = 15_000
#: customdata of a window's point on the map of a series run
WINDOW_KEY = "window "
inside_app()
ws = get_workspace()
st.title("Latent space")
view = require_dataset()
run = require_run()
scores = run_scores(run)
threshold = state.current_threshold(run, scores)
labels = label_array(view)
st.caption(run_title(run))
series = run_series(run)
if series is None:  # the map's points are the dataset's rows
    unit_scores, unit_labels, unit_truth, unit_keys = scores, labels, view.truth, view.keys
    unit_word = "rows"
else:  # the map's points are the windows the detector saw
    units = core_maps.map_units(ws, run.id)
    unit_scores = units.scores
    unit_labels = window_labels(labels, series.window)
    unit_truth = None if view.truth is None else window_labels(view.truth, series.window)
    unit_keys = np.array([f"{WINDOW_KEY}{w}" for w in range(units.n)], dtype=object)
    unit_times = series_times(view, series)[units.starts]
    unit_word = "windows"
    st.caption(
        f"A series: each point of the map is a window of {series.window.length:,} points "
        "(labels and ground truth per window: anomalous when a point in it is)."
    )

c1, c2, c3 = st.columns([1, 2, 1])
method = c1.radio(
    "Map",
    list(METHODS),
    format_func=METHODS.get,
    horizontal=True,
    key="latent_method",
    help="PCA is immediate. UMAP keeps neighbourhoods better; it takes a while the first time "
    "and is then saved with the run.",
)
color_options = (
    ["score", "flag", "your labels"]
    + (["ground truth"] if unit_truth is not None else [])
    + (["time"] if series is not None else [])
)
color_by = c2.radio("Colour by", color_options, horizontal=True, key="latent_color")
show_holes = c3.toggle("Shade holes", value=True, key="latent_holes")

if method != "pca" and not map_available(run, method):
    job = map_job(run, method)
    if job is not None and job.status == "running":

        @st.fragment(run_every=2.0)
        def wait_for_map() -> None:
            if job.status == "running":
                st.info(
                    f"Computing the {METHODS[method]} map in the background "
                    f"({time.time() - job.started:.0f} s so far). The first UMAP in a server "
                    "also compiles UMAP (about a minute); other pages stay usable."
                )
            else:
                st.rerun(scope="app")

        wait_for_map()
        st.stop()
    if job is not None and job.status == "failed":
        st.error(f"The {METHODS[method]} map could not be computed: {job.error}")
    st.info(f"The {METHODS[method]} map of this run has not been computed yet.")
    st.button(
        f"Compute the {METHODS[method]} map",
        key="compute_umap",
        type="primary",
        on_click=guarded(start_map_job, run, method),
        help="Runs in the background; the map is saved with the run.",
    )
    st.stop()
try:
    with st.spinner(f"Computing the {METHODS[method]} map (saved with the run)..."):
        rmap = run_map(run, method)
except Exception as exc:
    st.error(f"The map could not be computed: {exc}")
    st.stop()

rows = rmap.rows
found, hole_problem = None, None
if show_holes:
    try:
        found = run_holes(run, rmap, view.n_rows)
    except Exception as exc:  # said on the page, the map still shows
        hole_problem = f"Holes could not be looked for on this map: {exc}"
holes = None if found is None else found.holes.to_dict(points=False)
in_hole = None if found is None else found.in_hole
flag_rows = flag(unit_scores[rows], threshold)
label_rows_map = unit_labels[rows]
priority = flag_rows | (label_rows_map != -1)
if in_hole is not None:
    priority |= in_hole
shown = display_rows(rows.size, priority, max_points=MAX_POINTS)
if shown.size < rows.size:
    st.caption(
        f"Showing {shown.size:,} of {rows.size:,} mapped {unit_word}: every flagged, labelled "
        "and in-hole one, and a random sample of the others."
    )
if rmap.source != "latent codes":
    st.caption("This detector has no latent space: the map shows the preprocessed features.")

pos = rows[shown]
keys = unit_keys[pos]
color_title = "score<br>percentile"
if color_by == "score":
    color, kind = percentiles(unit_scores, pos), "score"
elif color_by == "flag":
    color, kind = flag_rows[shown].astype(int), "flag"
elif color_by == "your labels":
    color, kind = unit_labels[pos], "label"
elif color_by == "time":
    color, kind, color_title = pos.astype(np.float64), "score", "window<br>number"
else:
    color, kind = unit_truth[pos], "label"
#: what a window's label means in words (window_labels: 1 holds a point labelled anomaly, 0 is
#: at least half labelled normal)
WINDOW_LABEL_TEXT = {
    1: "holds a point labelled anomaly",
    0: "labelled normal (half or more)",
    -1: "unlabelled",
}
if series is None:
    hover = [
        f"row {k}<br>score {s:.4g}<br>{LABEL_NAMES.get(int(lab), 'unlabelled')}"
        for k, s, lab in zip(keys, scores[pos], labels[pos], strict=True)
    ]
else:
    hover = [
        f"window from {time_text(t)}<br>score {s:.4g}<br>{WINDOW_LABEL_TEXT.get(int(lab), 'unlabelled')}"
        for t, s, lab in zip(unit_times[pos], unit_scores[pos], unit_labels[pos], strict=True)
    ]
fig = latent_map_figure(
    rmap.coords[shown],
    keys,
    color=color,
    color_kind=kind,
    hover=hover,
    holes=holes,
    in_hole=None if in_hole is None else in_hole[shown],
    axis_names=(f"{METHODS[method]} 1", f"{METHODS[method]} 2"),
    color_title=color_title,
)
st.caption(f"{METHODS[method]} of the {rmap.source}, {rows.size:,} {unit_word}.")
map_key = f"latent_map_{run.id}_{method}"
event = st.plotly_chart(
    fig,
    key=map_key,
    on_select="rerun",
    selection_mode=("box", "lasso"),
    config={"displaylogo": False},
)
selected = selected_row_keys((event or {}).get("selection"))

# --- label the selection ------------------------------------------------------------------
st.markdown(
    "**Label the selected rows** (draw a box or a lasso on the map)"
    if series is None
    else "**Label the points of the selected windows** (draw a box or a lasso on the map)"
)


def point_keys(selected_keys: list[str]) -> list[str]:
    """Return the row keys a selection names: rows, or every point of the selected windows."""
    if series is None:
        return selected_keys
    picked = [int(k[len(WINDOW_KEY) :]) for k in selected_keys if k.startswith(WINDOW_KEY)]
    out: dict[str, None] = {}
    for w in picked:
        start = int(units.starts[w])
        out.update(dict.fromkeys(view.keys[start : start + units.length].tolist()))
    return list(out)


def label_selection(label: int) -> None:
    # Read the selection when the button is pressed, not when this script last ran: a newer
    # lasso may have replaced it since, and the label must go to what the user sees selected.
    chart_state = st.session_state.get(map_key) or {}
    keys_ = point_keys(selected_row_keys(chart_state.get("selection")))
    n = label_rows(
        ws, view.dataset_id, keys_, label, state.annotator(), key_scheme=view_key_scheme(ws, view)
    )
    name = {1: "anomalous", 0: "normal", -1: "unlabelled"}[label]
    flash("success", f"Labelled {n:,} {'row(s)' if series is None else 'point(s)'} {name}.")


b = st.columns([2, 1, 1, 1])
b[0].metric(f"Selected {unit_word}", f"{len(selected):,}")
b[1].button(
    "Label normal",
    key="map_label_normal",
    disabled=not selected,
    on_click=guarded(label_selection, 0),
    icon=":material/check_circle:",
)
b[2].button(
    "Label anomaly",
    key="map_label_anomaly",
    disabled=not selected,
    on_click=guarded(label_selection, 1),
    type="primary",
    icon=":material/warning:",
)
b[3].button(
    "Clear labels",
    key="map_label_clear",
    disabled=not selected,
    on_click=guarded(label_selection, -1),
)

# --- holes --------------------------------------------------------------------------------
if show_holes:
    if hole_problem is not None:
        st.warning(hole_problem)
    elif found is None:
        st.caption(
            "Holes are looked for among the training rows on the map, and this map has too "
            "few of them."
        )
    else:
        # Only rows still to label: the review queue passes labelled rows over, so sending
        # them would send an empty queue.
        if series is None:
            hole_rows = rows[in_hole]
            hole_keys = view.keys[hole_rows[labels[hole_rows] == -1]].tolist()
            n_done = int(hole_rows.size) - len(hole_keys)
        else:  # each window in a hole is reviewed at its highest-scoring unlabelled point
            picked: dict[int, None] = {}
            n_done = 0
            for w in rows[in_hole]:
                start = int(units.starts[w])
                open_points = start + np.flatnonzero(labels[start : start + units.length] == -1)
                if open_points.size:
                    picked[int(open_points[np.argmax(scores[open_points])])] = None
                else:
                    n_done += 1  # every point of the window is labelled
            hole_keys = view.keys[list(picked)].tolist() if picked else []
        st.markdown(hole_message(found))
        done_note = (
            f" {n_done:,} {'row' if series is None else 'window'}(s) in holes are labelled "
            "already and were left out."
            if n_done
            else ""
        )
        if series is not None:
            n_open = int(rows[in_hole].size) - n_done
            if n_open > len(hole_keys):  # overlapping windows peak at the same point
                done_note += (
                    f" The {n_open:,} windows still to label share {len(hole_keys):,} "
                    "highest-scoring points: each point is sent once."
                )

        def send_holes() -> None:
            ws.set_setting(queue_key(view.dataset_id), hole_keys)
            # The Label page's queue picker: show this queue there, not the last one picked.
            request_queue("map")
            flash(
                "success",
                f"Sent {len(hole_keys):,} row(s) in holes to the review queue: the Label page "
                "now shows them one by one." + done_note,
            )

        st.button(
            "Send the points in holes to the review queue",
            key="send_holes",
            disabled=not hole_keys,
            on_click=guarded(send_holes),
        )
        if n_done and not hole_keys:
            st.caption(
                f"Every {'row' if series is None else 'window'} in a hole is labelled already: "
                "nothing is left to send to the review queue."
            )
queued = ws.get_setting(queue_key(view.dataset_id)) or []
if not queued:
    page_link("label", "Review rows one by one")
elif st.button(
    f"Review the {len(queued):,} row(s) sent from the map",
    key="review_sent",
    icon=":material/label:",
    help="Opens the Label page on the queue sent from the map.",
):
    request_queue("map")
    st.switch_page("pages/label.py")
