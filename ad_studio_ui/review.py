"""The Label page's cached view of typical feature ranges (the queue order is ad_core.runs)."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import streamlit as st

from ad_core.store import RunRecord
from ad_studio_ui.workspace import DatasetView, get_workspace

#: rows labelled normal needed before they, not the low-scoring half, define "typical"
MIN_NORMAL_LABELS = 30


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
