"""Series in the app: the Data page's series section, the Scores page's view over time.

The library does the work (:mod:`ad_core.series`, :mod:`ad_core.series_runs`); this module
holds the widgets, and the caches keyed on what the results depend on.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from ad_core.data import DataError
from ad_core.plots import series_figure, stretches
from ad_core.runs import notes_key
from ad_core.series import NORMALISATIONS, WindowSpec, events, fix_series, window_starts
from ad_core.series_runs import (
    POINT_RULES,
    WINDOW_SCORES_FILE,
    SeriesSettings,
    best_window,
    load_settings,
    propose,
    read_run_settings,
    save_settings,
    series_points,
    settings_key,
)
from ad_core.store import Workspace
from ad_core.thresholds import flag
from ad_studio_ui import state
from ad_studio_ui.frame import flash, guarded
from ad_studio_ui.labels import label_rows, undo_last, view_key_scheme
from ad_studio_ui.workspace import DatasetView, _dataset_view, get_workspace

NORMALISE_TEXT = {
    "none": "none (keep the level: a shift of level is an anomaly)",
    "demean": "remove each window's mean (shapes, not levels)",
    "zscore": "z-score each window (shapes only, not level or amplitude)",
}
HOW_TEXT = {"max": "highest window score", "mean": "mean window score"}
#: most events shaded on the chart (the table lists them all)
MAX_SHADED_EVENTS = 300


def accept_key(dataset_id: str) -> str:
    """Return the setting holding the series problems the user accepted (gaps, irregular)."""
    return f"series_accept.{dataset_id}"


@st.cache_resource(show_spinner="Looking at the series...", max_entries=8)
def _proposal(home: str, dataset_id: str, schema_json: str, accept: tuple[str, ...]) -> Any:
    view = _dataset_view(home, dataset_id, schema_json)
    return propose(view.frame, view.schema, accept=accept)


def proposal(ws: Workspace, view: DatasetView, accept: tuple[str, ...]) -> Any:
    """Return the cached :class:`ad_core.series_runs.SeriesProposal` of a dataset view."""
    schema_json = json.dumps(ws.get_dataset(view.dataset_id).schema, sort_keys=True)
    return _proposal(str(ws.home), view.dataset_id, schema_json, tuple(accept))


# --- the Data page -------------------------------------------------------------------------


def series_section(ws: Workspace, view: DatasetView) -> None:
    """Render the Data page's series section: problems and their fixes, or the windows."""
    dataset_id = view.dataset_id
    accept = tuple(ws.get_setting(accept_key(dataset_id)) or ())
    found = proposal(ws, view, accept)
    stored = ws.get_setting(settings_key(dataset_id))
    if found.spec is None:
        if stored and stored.get("enabled"):
            save_settings(ws, dataset_id, None)
            st.info(
                "This table was analysed as a series, but with the column roles as they are "
                "now it has no timestamp column or no numeric one: its rows are analysed as "
                "unrelated rows. Give a column the role 'timestamp' to analyse it as a series."
            )
        return
    st.markdown("**Series**")
    st.info(found.spec.reason, icon=":material/timeline:")
    if found.blocking:
        _fix_form(ws, view, found, accept)
        return
    if found.error:
        st.error(found.error, icon=":material/error:")
        st.caption("Until then its rows are analysed one by one, as unrelated rows.")
        return
    if accept:
        st.caption(
            "Accepted as they are: "
            + ", ".join({"gaps": "the gaps", "irregular": "the irregular steps"}[a] for a in accept)
            + " (windows join the points on either side)."
        )
    proposed: SeriesSettings = found.settings
    if stored is None:
        # First look at a series: the proposal is the dataset's setting until changed.
        save_settings(ws, dataset_id, proposed)
        stored = ws.get_setting(settings_key(dataset_id))
    current = load_settings(ws, dataset_id)
    if current is not None and (
        current.value_columns != proposed.value_columns
        or current.time_column != proposed.time_column
        or current.accept != proposed.accept
    ):
        # The column roles changed: the columns follow them, the window choice stays.
        current = SeriesSettings(
            proposed.time_column, proposed.value_columns, current.window, current.how, accept
        )
        save_settings(ws, dataset_id, current)

    def toggle() -> None:
        on = bool(st.session_state[f"series_on_{dataset_id}"])
        save_settings(ws, dataset_id, (current or proposed) if on else None)

    st.toggle(
        "Analyse as a series: windows of consecutive points are the rows a detector sees",
        value=current is not None,
        key=f"series_on_{dataset_id}",
        on_change=guarded(toggle),
        help="Off: every row is judged on its own, as in a table of unrelated records.",
    )
    if current is None:
        st.caption("Rows are analysed one by one, without their neighbours in time.")
        return
    _window_form(ws, view, current, proposed)


def _window_form(
    ws: Workspace, view: DatasetView, current: SeriesSettings, proposed: SeriesSettings
) -> None:
    dataset_id = view.dataset_id
    n = view.n_rows
    w = current.window
    st.caption(f"Proposed: {proposed.window.reason}")
    with st.form(f"series_window_{dataset_id}", border=True):
        c1, c2, c3, c4 = st.columns(4)
        length = c1.number_input(
            "Window length (points)",
            min_value=2,
            max_value=max(2, n),
            value=min(w.length, max(2, n)),
            step=1,
            help="How many consecutive points a detector sees at once. One cycle of a "
            "repeating pattern is a good start.",
        )
        stride = c2.number_input(
            "Stride (points)",
            min_value=1,
            max_value=max(1, n),
            value=min(w.stride, max(1, n)),
            step=1,
            help="A new window starts every this many points. 1 is the finest; larger "
            "strides train faster.",
        )
        normalise = c3.selectbox(
            "Normalise each window",
            NORMALISATIONS,
            index=NORMALISATIONS.index(w.normalise),
            format_func=NORMALISE_TEXT.get,
        )
        how = c4.radio(
            "A point's score",
            list(POINT_RULES),
            index=list(POINT_RULES).index(current.how),
            format_func=HOW_TEXT.get,
            help="max: one anomalous window raises all its points (nothing missed, events "
            "grow by up to a window). mean: events sit closer to the anomaly, short ones "
            "are diluted.",
        )
        a, b = st.columns([1, 1])
        apply = a.form_submit_button("Apply window settings", type="primary")
        reset = b.form_submit_button("Use the proposal")
    if apply or reset:
        try:
            chosen = (
                proposed
                if reset
                else SeriesSettings(
                    current.time_column,
                    current.value_columns,
                    WindowSpec(int(length), int(stride), str(normalise), "chosen by you"),
                    str(how),
                    current.accept,
                )
            )
            window_starts(n, chosen.window)
        except (DataError, ValueError) as exc:
            st.error(str(exc), icon=":material/error:")
        else:
            save_settings(ws, dataset_id, chosen)
            current = chosen
            st.success(f"The next training uses {chosen.describe()}.")
    count = len(window_starts(n, current.window)) if current.window.length <= n else 0
    st.caption(
        f"The next training uses {current.describe()}: {count:,} windows of "
        f"{current.window.length:,} points x {len(current.value_columns)} column(s)."
    )


def _fix_form(ws: Workspace, view: DatasetView, found: Any, accept: tuple[str, ...]) -> None:
    problems = found.problems
    spec = found.spec
    st.warning(
        "Before the series can be cut into windows, say what to do about:\n\n- "
        + "\n- ".join(problems.messages(found.blocking)),
        icon=":material/warning:",
    )
    kinds = set(found.blocking)
    dataset_id = view.dataset_id
    with st.form(f"series_fix_{dataset_id}", border=True):
        drop = sort = False
        duplicates = gaps = missing = None
        if "unreadable_times" in kinds:
            drop = st.checkbox("Drop the rows whose time cannot be read", value=True)
        if "unsorted" in kinds:
            sort = st.checkbox("Sort the rows by time", value=True)
        if "duplicates" in kinds:
            duplicates = st.radio(
                "Rows with the same time",
                ["first", "mean"],
                format_func={"first": "keep the first", "mean": "average their values"}.get,
                horizontal=True,
            )
        if kinds & {"gaps", "irregular"}:
            gaps = st.radio(
                "Gaps and irregular steps",
                ["accept", "resample"],
                format_func={
                    "accept": "accept them (windows join the points on either side)",
                    "resample": "resample to the usual step (the added points are filled as "
                    "chosen under 'Missing values')",
                }.get,
                horizontal=True,
            )
        if "missing" in kinds or kinds & {"gaps", "irregular"}:
            missing = st.radio(
                "Missing values",
                ["interpolate", "drop"],
                format_func={
                    "interpolate": "interpolate (linear in time)",
                    "drop": "drop the rows",
                }.get,
                horizontal=True,
                help="Also used for the points a resampling adds (when you resample).",
            )
        submitted = st.form_submit_button("Apply", type="primary")
    st.caption(
        "Fixes make a new dataset beside this one (labels and runs of this one stay with it); "
        "accepting changes nothing in the data."
    )
    if not submitted:
        return
    if "missing" not in kinds and gaps != "resample":
        missing = None  # the choice matters only for values missing now or after resampling
    new_accept = tuple(sorted(set(accept) | (kinds & {"gaps", "irregular"})))
    if gaps != "accept":
        new_accept = tuple(accept)
    changes_data = drop or sort or duplicates is not None or gaps == "resample" or missing
    if not changes_data:
        ws.set_setting(accept_key(dataset_id), list(new_accept))
        flash("info", "Accepted: the windows join the points on either side of each gap.")
        st.rerun()
    record = ws.get_dataset(dataset_id)
    frame = view.frame
    try:
        fixed, notes = fix_series(
            frame,
            spec,
            drop_unreadable=drop,
            sort=sort,
            duplicates=duplicates,
            resample_step="usual" if gaps == "resample" else None,
            missing=missing,
        )
        fixed = fixed.reset_index(drop=True)
        new_id = ws.add_dataset(f"{record.name} (series fixed)", fixed, record.schema)
    except (DataError, ValueError) as exc:
        st.error(f"The fixes could not be applied: {exc}", icon=":material/error:")
        return
    id_column = view.schema.id_column
    if gaps == "resample" and id_column is not None:
        notes.append(
            f"The id column '{id_column}' is empty on the points the resampling added, so the "
            "new dataset's rows are identified by their number."
        )
    kept = [f"Made from '{record.name}' with these changes: " + " ".join(notes)]
    ws.set_setting(notes_key(new_id), kept)
    if gaps == "accept":
        ws.set_setting(accept_key(new_id), list(new_accept))
    state.set_current_dataset(new_id)
    flash("success", " ".join(notes) or "The series was fixed.")
    st.rerun()


# --- runs on a series ----------------------------------------------------------------------


def run_series(run: Any) -> SeriesSettings | None:
    """Return the series settings a run was trained with, or None for a run on rows."""
    ws = get_workspace()
    return read_run_settings(ws.run_dir(run.id))


@st.cache_resource(show_spinner=False, max_entries=8)
def _series_times(home: str, dataset_id: str, schema_json: str, settings_json: str) -> np.ndarray:
    view = _dataset_view(home, dataset_id, schema_json)
    settings = SeriesSettings.from_dict(json.loads(settings_json))
    times = series_points(view.frame, settings).times
    out = np.arange(view.n_rows) if times is None else np.asarray(times)
    out.flags.writeable = False
    return out


def time_text(value: Any) -> str:
    """Return a point's time as a person writes it ("2026-03-26 12:20"), or its position."""
    if isinstance(value, np.datetime64 | pd.Timestamp):
        stamp = pd.Timestamp(value)
        if pd.isna(stamp):
            return "no time"
        return stamp.strftime("%Y-%m-%d %H:%M:%S" if stamp.second else "%Y-%m-%d %H:%M")
    return f"{value:,}" if isinstance(value, int | np.integer) else str(value)


def series_times(view: DatasetView, settings: SeriesSettings) -> np.ndarray:
    """Return each point's time as the library reads it (its position for ordered rows)."""
    ws = get_workspace()
    schema_json = json.dumps(ws.get_dataset(view.dataset_id).schema, sort_keys=True)
    return _series_times(
        str(ws.home),
        view.dataset_id,
        schema_json,
        json.dumps(settings.to_dict(), sort_keys=True),
    )


def event_table(
    view: DatasetView,
    times: np.ndarray,
    found: pd.DataFrame,
    labels: np.ndarray,
    truth: np.ndarray | None,
) -> pd.DataFrame:
    """Return the events as the page lists them: times, length, peak, labels, ground truth."""
    starts, ends = found["start"].to_numpy(), found["end"].to_numpy()
    cum_anom = np.r_[0, np.cumsum(labels == 1)]
    cum_norm = np.r_[0, np.cumsum(labels == 0)]

    def label_text(a: int, b: int) -> str:
        k = b - a + 1
        an, no = cum_anom[b + 1] - cum_anom[a], cum_norm[b + 1] - cum_norm[a]
        if an == k:
            return "anomaly"
        if no == k:
            return "normal"
        if an or no:
            return f"partly ({an} anomaly, {no} normal of {k})"
        return ""

    table = pd.DataFrame(
        {
            "event": np.arange(1, len(found) + 1),
            "start": times[starts] if len(found) else [],
            "end": times[ends] if len(found) else [],
            "points": found["length"].to_numpy(),
            "peak": times[found["peak"].to_numpy()] if len(found) else [],
            "peak score": found["peak_score"].to_numpy(),
            "your label": [label_text(int(a), int(b)) for a, b in zip(starts, ends, strict=True)],
        }
    )
    if truth is not None:
        cum_true = np.r_[0, np.cumsum(truth == 1)]
        table["true anomalies inside"] = [
            int(cum_true[b + 1] - cum_true[a]) for a, b in zip(starts, ends, strict=True)
        ]
    return table


def truth_stretches_found(truth: np.ndarray, found: pd.DataFrame) -> tuple[int, int]:
    """Return (ground-truth anomaly stretches overlapped by an event, stretches in all)."""
    true = stretches(truth == 1)
    if not true:
        return 0, 0
    covered = np.zeros(truth.size + 1, dtype=np.int64)
    np.add.at(covered, found["start"].to_numpy(), 1)
    np.add.at(covered, found["end"].to_numpy() + 1, -1)
    flagged = np.cumsum(covered[:-1]) > 0
    hit = sum(bool(flagged[a : b + 1].any()) for a, b in true)
    return hit, len(true)


def series_scores_view(
    view: DatasetView,
    run: Any,
    settings: SeriesSettings,
    scores: np.ndarray,
    threshold: float,
    labels: np.ndarray,
) -> None:
    """Render the Scores page for a series: the chart over time, the events, their labels."""
    ws = get_workspace()
    times = series_times(view, settings)
    st.subheader("The series over time")
    c1, c2 = st.columns([1, 3])
    min_gap = c1.number_input(
        "Join events at most this many points apart",
        min_value=0,
        max_value=max(0, view.n_rows),
        value=0,
        step=1,
        key=f"series_min_gap.{run.id}",
        help="Flagged points with at most this many unflagged points between them form one "
        "event (0: only flagged points in a row).",
    )
    found = events(scores, threshold, min_gap=int(min_gap))
    truth = view.truth if view.truth is not None and (view.truth == 1).any() else None
    shaded = list(zip(found["start"].tolist(), found["end"].tolist(), strict=True))
    values = {c: view.frame[c].to_numpy(dtype=np.float64) for c in settings.value_columns}
    labelled = {"anomaly": stretches(labels == 1), "normal": stretches(labels == 0)}
    fig = series_figure(
        times,
        values,
        scores,
        threshold,
        events=shaded[:MAX_SHADED_EVENTS],
        labelled=labelled,
        x_title=settings.time_column or "point",
    )
    c2.caption(
        f"{settings.describe().capitalize()}. Shaded: flagged events; the band under the "
        "scores: your labels (red anomaly, grey normal). Drag the slider under the chart "
        "to zoom in time."
        + (
            f" The first {MAX_SHADED_EVENTS} of {len(shaded):,} events are shaded."
            if len(shaded) > MAX_SHADED_EVENTS
            else ""
        )
    )
    st.plotly_chart(fig, key="series_chart")
    m = st.columns(3)
    m[0].metric("Events", f"{len(found):,}")
    m[1].metric("Flagged points", f"{int(np.count_nonzero(flag(scores, threshold))):,}")
    if truth is not None:
        hit, total = truth_stretches_found(truth, found)
        m[2].metric(
            "True anomaly stretches hit",
            f"{hit} of {total}",
            help="Stretches of ground-truth anomalies that overlap a flagged event.",
        )

    st.subheader("Flagged events")
    if not len(found):
        st.info("No point is above the threshold. Move the threshold down to flag events.")
        return
    table = event_table(view, times, found, labels, truth)
    # A selection is of row numbers: when the events change (threshold, join), it is cleared
    # so that it can neither point past the table nor at other events.
    table_key = f"events_table.{run.id}"
    digest = hash((tuple(found["start"]), tuple(found["end"])))
    if st.session_state.get(f"_events_digest.{run.id}") != digest:
        st.session_state[f"_events_digest.{run.id}"] = digest
        st.session_state.pop(table_key, None)
    picked = st.dataframe(
        table,
        hide_index=True,
        height=min(400, 38 + 35 * len(table)),
        key=table_key,
        on_select="rerun",
        selection_mode="multi-row",
        column_config={"peak score": st.column_config.NumberColumn(format="%.4g")},
    )
    rows = [r for r in ((picked or {}).get("selection") or {}).get("rows") or [] if r < len(found)]
    chosen = found.iloc[rows] if rows else found.iloc[:0]
    n_points = int(chosen["length"].sum()) if len(chosen) else 0
    st.caption(
        "Select events in the table (click the boxes on the left), then label them: "
        "labelling an event labels each of its points."
        + (f" Selected: {len(chosen)} event(s), {n_points:,} points." if len(chosen) else "")
    )

    def keys_of(selected: pd.DataFrame) -> list[str]:
        out: list[str] = []
        for a, b in zip(selected["start"], selected["end"], strict=True):
            out.extend(view.keys[int(a) : int(b) + 1].tolist())
        return out

    def give(label: int, selected: pd.DataFrame) -> None:
        keys = keys_of(selected)
        n = label_rows(
            ws,
            view.dataset_id,
            keys,
            label,
            state.annotator(),
            key_scheme=view_key_scheme(ws, view),
        )
        what = {1: "anomalous", 0: "normal", -1: "unlabelled"}[label]
        flash("success", f"Labelled {len(selected)} event(s), {n:,} points, {what}.")

    b = st.columns(4)
    for col, (title, label) in zip(
        b[:3],
        [("Label anomalous", 1), ("Label normal", 0), ("Clear their labels", -1)],
        strict=True,
    ):
        col.button(
            title,
            key=f"event_label_{label}",
            disabled=not len(chosen),
            on_click=guarded(give, label, chosen),
            width="stretch",
        )
    b[3].button(
        "Undo my last label",
        key="event_undo",
        on_click=guarded(lambda: flash("info", undo_last(ws, view.dataset_id, state.annotator()))),
        width="stretch",
    )


def stretch_around(
    pos: int,
    scores: np.ndarray,
    threshold: float,
    settings: SeriesSettings,
    window_scores: np.ndarray,
) -> tuple[int, int, str]:
    """Return the stretch a queued point belongs to (first, last, what it is).

    A flagged point belongs to its event (flagged points in a row); a point under the
    threshold to the highest-scoring window covering it, the very stretch the detector
    judged, so labelling it labels that window whole.
    """
    found = events(scores, threshold)
    inside = found[(found["start"] <= pos) & (found["end"] >= pos)]
    if len(inside):
        a, b = int(inside["start"].iloc[0]), int(inside["end"].iloc[0])
        return a, b, f"the flagged event it is part of ({b - a + 1:,} points)"
    starts = window_starts(scores.size, settings.window)
    w = best_window(int(pos), window_scores, starts, settings.window.length)
    a = int(starts[w])
    b = a + settings.window.length - 1
    return a, b, f"the window of {b - a + 1:,} points it scored highest in (not flagged)"


def queue_stretch(
    view: DatasetView,
    run: Any,
    settings: SeriesSettings,
    scores: np.ndarray,
    threshold: float,
    labels: np.ndarray,
    pos: int,
) -> tuple[int, int]:
    """Render a queued point of a series in its stretch, with context; return the stretch.

    The Label page's Normal and Anomaly buttons then label the whole stretch.
    """
    ws = get_workspace()
    window_scores = np.load(ws.run_dir(run.id) / WINDOW_SCORES_FILE, allow_pickle=False)
    a, b, what = stretch_around(pos, scores, threshold, settings, window_scores)
    context = max(b - a + 1, settings.window.length)
    lo, hi = max(0, a - context), min(scores.size - 1, b + context)
    times = series_times(view, settings)
    part = slice(lo, hi + 1)
    fig = series_figure(
        times[part],
        {c: view.frame[c].to_numpy(dtype=np.float64)[part] for c in settings.value_columns},
        scores[part],
        threshold,
        events=[(a - lo, b - lo)],
        labelled={
            "anomaly": stretches(labels[part] == 1),
            "normal": stretches(labels[part] == 0),
        },
        x_title=settings.time_column or "point",
        title=f"Point {view.keys[pos]}: {what}, shaded, with {context:,} points either side",
        height=420,
        range_slider=False,
        point=pos - lo,
    )
    st.plotly_chart(fig, key="review_stretch_plot")
    st.caption(
        f"Normal and Anomaly label the shaded stretch: {b - a + 1:,} points, from "
        f"{time_text(times[a])} to {time_text(times[b])}. The dotted line and the diamond "
        f"mark the queued point ({time_text(times[pos])})."
    )
    return a, b
