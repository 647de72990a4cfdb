"""What the Scores page shows, computed once per run and cached; a threshold change only masks.

The computations are :mod:`ad_core.evaluation` and :mod:`ad_core.plots`; this module caches
them. A rerun after a threshold change recomputes nothing here but the flagged mask, the
counts at the threshold and the rows of the flagged table: histogram bins (per grouping and
score axis), ROC/PR curves (per subset of rows: held-out or training rows, without the rows
that carry an expert label) and the feature contributions are cached per run.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from ad_core import evaluation
from ad_core.plots import histogram_data
from ad_core.store import RunRecord
from ad_studio_ui.workspace import DatasetView, get_workspace, label_array, run_scores

TABLE_ROWS = 200
METHOD_TEXT = {
    "reconstruction": "share of the row's reconstruction error",
    "zscore": "share of the row's squared z-scores against the training rows",
}


@st.cache_resource(show_spinner=False, max_entries=32)
def _histogram(
    home: str, run_id: int, groups_key: str, log: bool, x_range: str, _scores, _groups
) -> dict:
    return histogram_data(_scores, _groups, log_count=log, x_range=x_range)


def histogram(
    run: RunRecord,
    scores: np.ndarray,
    groups: np.ndarray | None,
    groups_key: str,
    log: bool,
    x_range: str = "bulk",
) -> dict:
    """Return the histogram bins of a run's scores, stacked by ``groups`` (cached).

    ``groups_key`` identifies the groups (e.g. the labels' digest) in the cache key;
    ``x_range`` is one of ``ad_core.plots.HISTOGRAM_RANGES``.
    """
    return _histogram(
        str(get_workspace().home), int(run.id), groups_key, bool(log), x_range, scores, groups
    )


@st.cache_resource(show_spinner=False, max_entries=16)
def _curves(
    home: str, run_id: int, truth_key: str, rows_key: str, _truth, _scores, _rows
) -> dict[str, Any]:
    return evaluation.curves(_truth, _scores, _rows)


def curves(
    run: RunRecord,
    view: DatasetView,
    scores: np.ndarray,
    rows: np.ndarray | None = None,
    rows_key: str = "all",
) -> dict[str, Any]:
    """Return ROC and PR curve points and areas of a run against ground truth (cached).

    ``rows`` (positions, with known ground truth) restricts every figure to those rows;
    ``rows_key`` identifies them in the cache key. See :func:`ad_core.evaluation.curves`.
    """
    return _curves(
        str(get_workspace().home),
        int(run.id),
        view.schema_key,
        rows_key,
        view.truth,
        scores,
        rows,
    )


@st.cache_resource(show_spinner=False, max_entries=16)
def _explained(home: str, run_id: int) -> dict[str, Any]:
    return evaluation.saved_contributions(get_workspace().run_dir(run_id))


def explained_rows(run: RunRecord) -> dict[str, Any]:
    """Return the stored feature contributions of the run's highest-scoring rows."""
    return _explained(str(get_workspace().home), int(run.id))


@st.cache_resource(show_spinner=False, max_entries=16)
def _top_table(
    home: str,
    run_id: int,
    labels_key: str,
    max_rows: int,
    max_value_columns: int,
    _view: DatasetView,
    _scores: np.ndarray,
    _order: np.ndarray,
    _labels: np.ndarray,
    _explained: dict[str, Any],
) -> pd.DataFrame:
    return evaluation.top_rows_table(
        _view.frame,
        _view.schema.feature_columns,
        _view.keys,
        _scores,
        _order,
        _labels,
        _view.truth,
        _explained,
        max_rows=max_rows,
        max_value_columns=max_value_columns,
    )


def flagged_table(
    view: DatasetView,
    run: RunRecord,
    scores: np.ndarray,
    order: np.ndarray,
    n_flagged: int,
    labels: np.ndarray,
    labels_key: str,
    explained: dict[str, Any],
    *,
    max_rows: int = TABLE_ROWS,
    max_value_columns: int = 12,
) -> pd.DataFrame:
    """Return the highest-scoring flagged rows: key, score, labels, top features, values.

    The table of the run's top ``max_rows`` rows is built once per run and label state; a
    threshold change only takes its first rows (the flagged ones).
    """
    top = _top_table(
        str(get_workspace().home),
        int(run.id),
        f"{labels_key}|{view.schema_key}",
        max_rows,
        max_value_columns,
        view,
        scores,
        order,
        labels,
        explained,
    )
    return top.head(min(n_flagged, max_rows))


def scores_csv(view: DatasetView, run: RunRecord, threshold: float) -> bytes:
    """Return the run's scores and flags (and labels) as CSV bytes, one line per row."""
    out = evaluation.scores_table(
        view.keys, run_scores(run), threshold, label_array(view), view.truth
    )
    buf = io.StringIO()
    out.to_csv(buf, index=False)
    return buf.getvalue().encode()
