"""The session's current dataset, run, threshold and annotator: small ids, restored on reload.

``st.session_state`` holds the ids; each change is also written to the workspace settings, so
a browser reload or a server restart comes back to the same dataset, run and threshold.
Settings keys: ``last_dataset_id``, ``last_run.<dataset_id>``, ``threshold.<run_id>``,
``prep.<dataset_id>`` (preprocessing choices).

The annotator is the exception: a name belongs to the person at one browser, so it lives in
this session and in its URL (``?annotator=``, kept across reloads of that tab), never in the
workspace, where the next person to open the app would inherit it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from ad_core.runs import DEFAULT_PREPROCESSING  # noqa: F401  (one default: the library's)
from ad_core.store import RunRecord
from ad_studio_ui.workspace import get_workspace

DATASET = "dataset_id"
RUN = "run_id"
THRESHOLD = "threshold"
THRESHOLD_RUN = "threshold_run_id"
SLIDER = "threshold_slider"
NUMBER = "threshold_number"
ANNOTATOR = "annotator"
#: the URL query parameter that keeps the annotator's name across reloads of a browser tab
ANNOTATOR_PARAM = "annotator"
TRAINING = "training_run_id"

# --- dataset ------------------------------------------------------------------------------


def current_dataset_id() -> str | None:
    """Return the id of the dataset this session works on (restored from the workspace)."""
    ss = st.session_state
    ws = get_workspace()
    dataset_id = ss.get(DATASET)
    if dataset_id is None:
        dataset_id = ws.get_setting("last_dataset_id")
    if dataset_id is not None:
        try:
            ws.get_dataset(dataset_id)
        except KeyError:
            dataset_id = None
    ss[DATASET] = dataset_id
    return dataset_id


def set_current_dataset(dataset_id: str) -> None:
    """Make a dataset current for this session and remember it for the next visit."""
    st.session_state[DATASET] = dataset_id
    st.session_state.pop(RUN, None)
    get_workspace().set_setting("last_dataset_id", dataset_id)


def preprocessing_choices(dataset_id: str) -> dict[str, Any]:
    """Return the preprocessing settings chosen for a dataset (defaults until changed)."""
    stored = get_workspace().get_setting(f"prep.{dataset_id}") or {}
    return {**DEFAULT_PREPROCESSING, **stored}


def set_preprocessing_choices(dataset_id: str, choices: dict[str, Any]) -> None:
    """Remember the preprocessing settings of a dataset."""
    get_workspace().set_setting(f"prep.{dataset_id}", dict(choices))


# --- run ----------------------------------------------------------------------------------


def finished_runs(dataset_id: str) -> list[RunRecord]:
    """Return the dataset's successfully finished runs, newest first."""
    return [r for r in get_workspace().list_runs(dataset_id) if r.status == "done"]


def current_run() -> RunRecord | None:
    """Return the finished run this session looks at, or None (restored from the workspace)."""
    dataset_id = current_dataset_id()
    if dataset_id is None:
        return None
    ws = get_workspace()
    ss = st.session_state
    for candidate in (ss.get(RUN), ws.get_setting(f"last_run.{dataset_id}")):
        if candidate is None:
            continue
        try:
            run = ws.get_run(int(candidate))
        except KeyError:
            continue
        if run.dataset_id == dataset_id and run.status == "done":
            ss[RUN] = run.id
            return run
    runs = finished_runs(dataset_id)
    if not runs:
        ss[RUN] = None
        return None
    ss[RUN] = runs[0].id
    return runs[0]


def set_current_run(run_id: int) -> None:
    """Make a run current for this session and remember it for its dataset."""
    ws = get_workspace()
    run = ws.get_run(int(run_id))
    if st.session_state.get(DATASET) != run.dataset_id:
        set_current_dataset(run.dataset_id)
    st.session_state[RUN] = run.id
    ws.set_setting(f"last_run.{run.dataset_id}", run.id)


# --- threshold ----------------------------------------------------------------------------


def default_threshold(run: RunRecord, scores: np.ndarray) -> float:
    """Return the threshold a run starts with: the one saved at training, else the top 10 %."""
    stored = (run.metrics or {}).get("threshold")
    if stored is not None:
        return float(stored)
    from ad_core.thresholds import contamination_threshold

    return float(contamination_threshold(scores, 0.1))


def current_threshold(run: RunRecord, scores: np.ndarray) -> float:
    """Return the threshold of the current run (session, then workspace, then the default)."""
    ss = st.session_state
    if ss.get(THRESHOLD_RUN) == run.id and ss.get(THRESHOLD) is not None:
        value = float(ss[THRESHOLD])
    else:
        value = saved_threshold(run, scores)
    _remember_in_session(run.id, value)
    return value


def saved_threshold(run: RunRecord, scores: np.ndarray) -> float:
    """Return a run's threshold as saved in the workspace, else its default (no side effect)."""
    value = get_workspace().get_setting(f"threshold.{run.id}")
    return default_threshold(run, scores) if value is None else float(value)


def _remember_in_session(run_id: int, value: float) -> None:
    ss = st.session_state
    ss[THRESHOLD] = value
    ss[THRESHOLD_RUN] = run_id


def set_threshold(run_id: int, value: float) -> None:
    """Set the threshold of a run for this session and in the workspace (survives reloads)."""
    value = float(value)
    _remember_in_session(run_id, value)
    get_workspace().set_setting(f"threshold.{run_id}", value)


# --- annotator ----------------------------------------------------------------------------


def annotator() -> str:
    """Return the name this browser session labels under; "" until the person gives one.

    A new session (a reload, a deep link) takes the name from its URL's ``?annotator=``; a
    session without one has no name (the pages ask for it before the first label).
    """
    ss = st.session_state
    name = str(ss.get(ANNOTATOR) or "").strip()
    if not name and ANNOTATOR not in ss:  # a new session: its URL may carry the name
        name = str(st.query_params.get(ANNOTATOR_PARAM) or "").strip()
        if name:
            ss[ANNOTATOR] = name
    if name and st.query_params.get(ANNOTATOR_PARAM) != name:
        # Page changes may drop the query string; put the name back so a reload keeps it.
        st.query_params[ANNOTATOR_PARAM] = name
    return name


def set_annotator(name: str) -> None:
    """Make ``name`` this session's annotator and keep it in the URL (call from a callback)."""
    name = str(name or "").strip()
    st.session_state[ANNOTATOR] = name
    if name:
        st.query_params[ANNOTATOR_PARAM] = name
    elif ANNOTATOR_PARAM in st.query_params:
        del st.query_params[ANNOTATOR_PARAM]


def remember_annotator() -> None:
    """Keep the name typed in the sidebar for this browser session (in its URL)."""
    set_annotator(str(st.session_state.get(ANNOTATOR) or ""))


# --- widgets that keep their value while the user is on another page ------------------------

_KEPT = "_kept."


def kept_widget(key: str, default: Any) -> str:
    """Prepare the widget ``key`` so that its value survives a visit to another page.

    Streamlit forgets a widget's value when a run does not draw it (the user opened another
    page). Call this before drawing the widget, without passing it a value: the value comes
    from the session state, restored from a copy kept outside the widget (or ``default`` the
    first time); :func:`keep_widget_values` refreshes the copies after the widgets are drawn.
    """
    ss = st.session_state
    if key not in ss:
        ss[key] = ss.get(_KEPT + key, default)
    ss.setdefault("_kept_keys", set()).add(key)
    return key


def keep_widget_values() -> None:
    """Copy the current value of every :func:`kept_widget` of this session aside."""
    ss = st.session_state
    for key in ss.get("_kept_keys", ()):
        if key in ss:
            ss[_KEPT + key] = ss[key]
