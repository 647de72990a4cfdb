"""What the Scores page shows, computed once per run and cached; a threshold change only masks.

A rerun after a threshold change recomputes nothing here but the flagged mask, the counts
at the threshold and the rows of the flagged table: histogram bins (per grouping and score
axis), ROC/PR curves (per subset of rows: held-out or training rows, without the rows that
carry an expert label) and the feature contributions are cached per run.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from ad_core.explain import describe_top
from ad_core.metrics import auprc, auroc, pr_points, prf_at, roc_points
from ad_core.plots import histogram_data
from ad_core.store import RunRecord
from ad_core.thresholds import flag
from ad_studio_ui.workspace import (
    EXPLAIN_FILE,
    ROLE_NAMES,
    DatasetView,
    get_workspace,
    label_array,
    run_scores,
)

TABLE_ROWS = 200
LABEL_TEXT = {-1: "", 0: "normal", 1: "anomaly"}


def labels_digest(labels: np.ndarray) -> str:
    """Return a short fingerprint of a label array (cache key for label-dependent views)."""
    idx = np.flatnonzero(labels != -1)
    h = hashlib.sha1(idx.tobytes())
    h.update(labels[idx].tobytes())
    return h.hexdigest()[:16]


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


# --- which rows the figures against the ground truth cover -------------------------------


@dataclass(frozen=True)
class EvaluationRows:
    """The rows of one role that the figures against the ground truth cover, and those apart.

    ``rows``: positions with known ground truth and no expert label (the figures);
    ``labelled``: positions with known ground truth that carry an expert label (reported
    apart, since a label can reach the model or the threshold); ``key``: cache key of both.
    """

    role: int
    rows: np.ndarray
    labelled: np.ndarray
    key: str


def evaluation_rows(
    roles: np.ndarray, truth: np.ndarray, labels: np.ndarray, role: int | None
) -> EvaluationRows:
    """Return the rows of ``role`` (ROLE_HELDOUT, ROLE_TRAIN, or None: every row) to evaluate
    a run on; rows with an expert label are set apart."""
    in_role = (roles == role if role is not None else np.ones(roles.size, bool)) & (truth != -1)
    labelled = labels != -1
    rows = np.flatnonzero(in_role & ~labelled)
    apart = np.flatnonzero(in_role & labelled)
    h = hashlib.sha1(rows.astype(np.int64).tobytes())
    h.update(b"|")
    h.update(apart.astype(np.int64).tobytes())
    name = "all" if role is None else str(int(role))
    return EvaluationRows(
        -1 if role is None else int(role), rows, apart, f"{name}|{h.hexdigest()[:16]}"
    )


def role_counts(roles: np.ndarray, truth: np.ndarray | None = None) -> dict[int, int]:
    """Return how many rows have each role (only rows with known ground truth if given)."""
    known = np.ones(roles.size, dtype=bool) if truth is None else truth != -1
    return {role: int(np.count_nonzero((roles == role) & known)) for role in ROLE_NAMES}


#: points drawn per ROC / PR curve (thinned evenly; the areas use every point)
CURVE_POINTS = 500


@st.cache_resource(show_spinner=False, max_entries=16)
def _curves(
    home: str, run_id: int, truth_key: str, rows_key: str, _truth, _scores, _rows
) -> dict[str, Any]:
    truth = _truth[_rows]
    scores = _scores[_rows]
    roc = roc_points(truth, scores, max_points=CURVE_POINTS)
    pr = pr_points(truth, scores, max_points=CURVE_POINTS)
    return {
        "roc": roc,
        "pr": pr,
        "auroc": auroc(truth, scores),
        "auprc": auprc(truth, scores),
        "base_rate": float(truth.mean()) if truth.size else None,
        "n_rows": int(truth.size),
        "n_anomalies": int(truth.sum()),
        # the subset itself, so a threshold change only counts (no indexing per rerun)
        "truth": truth,
        "scores": scores,
    }


def curves(
    run: RunRecord,
    view: DatasetView,
    scores: np.ndarray,
    rows: np.ndarray | None = None,
    rows_key: str = "all",
) -> dict[str, Any]:
    """Return ROC and PR curve points and areas of a run against ground truth (cached).

    ``rows`` (positions, with known ground truth) restricts every figure to those rows;
    ``rows_key`` identifies them in the cache key. Also returns the subset's ``truth`` and
    ``scores`` and its ``n_rows`` and ``n_anomalies``.
    """
    if rows is None:
        rows = np.flatnonzero(view.truth != -1)
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
    path = get_workspace().run_dir(run_id) / EXPLAIN_FILE
    if not path.exists():
        return {"method": None, "rows": {}}
    return json.loads(path.read_text())


def explained_rows(run: RunRecord) -> dict[str, Any]:
    """Return the stored feature contributions of the run's highest-scoring rows."""
    return _explained(str(get_workspace().home), int(run.id))


METHOD_TEXT = {
    "reconstruction": "share of the row's reconstruction error",
    "zscore": "share of the row's squared z-scores against the training rows",
}


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
    top = _order[:max_rows]
    keys = _view.keys[top]
    rows = _explained.get("rows", {})
    table = pd.DataFrame(
        {
            "rank": np.arange(1, top.size + 1),
            "row": keys,
            "score": _scores[top],
            "your label": [LABEL_TEXT[int(v)] for v in _labels[top]],
        }
    )
    if _view.truth is not None:
        table["ground truth"] = [LABEL_TEXT[int(v)] for v in _view.truth[top]]
    table["top features"] = [
        describe_top([tuple(f) for f in rows[k]]) if k in rows else "" for k in keys
    ]
    features = _view.schema.feature_columns[:max_value_columns]
    values = _view.frame.iloc[top][features].reset_index(drop=True)
    return pd.concat([table, values], axis=1)


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
    scores = run_scores(run)
    out = pd.DataFrame(
        {
            "row_key": view.keys,
            "score": scores,
            "flagged": flag(scores, threshold).astype(int),
            "label": label_array(view),
        }
    )
    if view.truth is not None:
        out["ground_truth"] = view.truth
    buf = io.StringIO()
    out.to_csv(buf, index=False)
    return buf.getvalue().encode()


#: a threshold rule that flags more than this share of the rows gets a warning
SUSPICIOUS_SHARE = 0.5


def rule_warning(
    title: str,
    scores: np.ndarray,
    threshold: float,
    labels: np.ndarray | None = None,
    labels_name: str = "the rows you labelled",
) -> str | None:
    """Return why a rule's threshold is suspicious when it flags most rows, else None.

    ``labels`` are the labels the rule was computed from (best F1), or None;
    ``labels_name`` says in words which rows carry them ("the rows you labelled").
    """
    n_rows = int(scores.size)
    n_flagged = int(np.count_nonzero(flag(scores, threshold)))
    share = n_flagged / n_rows if n_rows else 0.0
    if share <= SUSPICIOUS_SHARE:
        return None
    text = (
        f"'{title}' flags {share:.1%} of the rows ({n_flagged:,} of {n_rows:,}). That is "
        "suspicious: anomalies are meant to be the rare rows."
    )
    known = labels[labels != -1] if labels is not None else np.zeros(0)
    if known.size and 0 < int(known.sum()) < known.size:
        rate = float(known.mean())
        f1_all = 2 * rate / (1 + rate)
        f1_here = prf_at(labels, scores, threshold)["f1"]
        return text + (
            f" {rate:.0%} of {labels_name} are anomalies, so flagging every row already "
            f"scores F1 {f1_all:.2f}; the best cut reaches {f1_here:.2f}. When anomalies are "
            "this common, best F1 degenerates towards flagging everything, and a cut this low "
            "means the scores barely separate anomalies from normal rows. Check AUROC, try "
            "another detector or train on normal rows only, or take the threshold from the "
            "expected share."
        )
    return text + (
        " Check the rule's setting, and whether the scores separate anything at all (most "
        "rows scoring alike pushes a spread-based cut below the bulk)."
    )
