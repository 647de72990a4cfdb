"""The Label page's queue picker, cached view of typical feature ranges and diverse codes.

The queue order itself is :func:`ad_core.runs.review_queue`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np
import streamlit as st

from ad_core.store import RunRecord
from ad_studio_ui.workspace import DatasetView, get_workspace

#: rows labelled normal needed before they, not the low-scoring half, define "typical"
MIN_NORMAL_LABELS = 30

#: the key of the Label page's queue picker (a radio)
QUEUE_WIDGET = "queue_mode"
#: where another page leaves the queue the Label page should open on (see request_queue)
QUEUE_REQUEST = "_queue_request"


def request_queue(mode: str) -> None:
    """Make the Label page open on the queue ``mode`` the next time it is drawn.

    Not by setting the picker's own key from another page: a value given to a widget's key
    in a run that does not draw the widget reaches the script, but not the browser (Streamlit
    sends it to the browser only when the value is set in the run that draws the widget).
    The page would then work on that queue while its radio showed another one; see
    :func:`take_queue_request`.
    """
    st.session_state[QUEUE_REQUEST] = mode


def take_queue_request(modes: list[str]) -> None:
    """Before the queue picker is drawn: give it the queue another page asked for, if any.

    Set in the run that draws the radio, the value reaches the browser too, so the radio
    shows the queue the page works on. A request for a queue not offered is dropped.
    """
    requested = st.session_state.pop(QUEUE_REQUEST, None)
    if requested in modes:
        st.session_state[QUEUE_WIDGET] = requested


@st.cache_resource(show_spinner=False, max_entries=8)
def _typical(
    home: str, run_id: int, basis: str, _view: DatasetView, _rows: np.ndarray
) -> dict[str, Any]:
    columns = _view.schema.numeric_columns
    values = _view.frame.iloc[_rows][columns].to_numpy(dtype=np.float64)
    with np.errstate(all="ignore"):
        low, median, high = np.nanpercentile(values, [5, 50, 95], axis=0)
    return {"columns": columns, "low": low, "median": median, "high": high, "basis": basis}


def typical_ranges(
    view: DatasetView, run: RunRecord, scores: np.ndarray, labels: np.ndarray
) -> dict[str, Any]:
    """Return the 5 / 50 / 95 % of each numeric feature over "normal" rows.

    Normal rows are those labelled normal once there are MIN_NORMAL_LABELS of them, else the
    half of the rows with the lowest scores.
    """
    normal = np.flatnonzero(labels == 0)
    if normal.size >= MIN_NORMAL_LABELS:
        basis = "rows labelled normal"
        digest = hashlib.sha1(normal.tobytes()).hexdigest()[:12]
        rows = normal
    else:
        basis = "the half of the rows with the lowest scores"
        digest = "lowhalf"
        rows = np.argsort(scores, kind="stable")[: max(1, scores.size // 2)]
    return _typical(str(get_workspace().home), int(run.id), f"{basis}|{digest}", view, rows)


def queue_codes(view: DatasetView, run: RunRecord) -> Callable[[np.ndarray], np.ndarray]:
    """Return a function of row positions giving the rows' codes for the diverse queue.

    The run's latent codes when its detector has a latent space, else its preprocessed
    features: what the Latent space page maps (for a series, of each point's best window). Only the rows asked for are computed (the
    queue's pool and the labelled rows), from the cached model and preprocessor.
    """
    from ad_core.maps import codes, has_latent, map_units
    from ad_core.series_runs import best_window, read_run_settings
    from ad_studio_ui.workspace import get_workspace, run_detector, run_features, run_preprocessor

    prep = run_preprocessor(run.id)
    detector = run_detector(run.id) if has_latent(run.detector) else None
    ws = get_workspace()
    series = read_run_settings(ws.run_dir(run.id))
    if series is not None:
        # A point of a series is compared by the window the detector judged it in: the
        # highest-scoring window covering it (as ad_core.maps.run_codes does).
        from ad_core.series import make_windows

        X = run_features(run)
        units = map_units(ws, run.id)

        def window_codes(rows: np.ndarray) -> np.ndarray:
            best = [best_window(int(p), units.scores, units.starts, units.length) for p in rows]
            W = make_windows(X, series.window, rows=np.asarray(best, dtype=np.int64))
            return W if detector is None else codes(detector, W)

        return window_codes

    def codes_of(rows: np.ndarray) -> np.ndarray:
        X = prep.transform(view.frame.iloc[np.asarray(rows, dtype=np.int64)])
        return X if detector is None else codes(detector, X)

    return codes_of
