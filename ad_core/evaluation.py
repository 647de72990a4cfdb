"""What a run is judged on, and what its scores say against the ground truth and the labels.

A run's rows each have a role (:mod:`ad_core.runs`: trained on, held out, left out), saved in
its folder (:func:`saved_row_roles`). The figures against the ground truth cover the rows of
one role that carry no expert label (:func:`evaluation_rows`): a label can leak into the model
or the threshold, so labelled rows are reported apart. :func:`curves` gives the ROC and PR
curves and areas of such a subset; :func:`rule_warning` says when a threshold rule flags most
rows; :func:`top_rows_table` and :func:`scores_table` are the tables of scores a person reads
or downloads::

    from ad_core import evaluation
    roles = evaluation.saved_row_roles(ws.run_dir(run_id), len(frame))
    ev = evaluation.evaluation_rows(roles, truth, labels, ROLE_HELDOUT)
    evaluation.curves(truth, scores, ev.rows)["auroc"]
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ad_core.runs import (
    EXPLAIN_FILE,
    ROLE_NAMES,
    ROLE_TRAIN,
    ROLE_UNUSED,
    ROW_ROLES_FILE,
    TRAIN_ROWS_FILE,
)

#: how the tables write a label or a ground-truth value
LABEL_TEXT = {-1: "", 0: "normal", 1: "anomaly"}
#: points drawn per ROC / PR curve (thinned evenly; the areas use every point)
CURVE_POINTS = 500
#: a threshold rule that flags more than this share of the rows gets a warning
SUSPICIOUS_SHARE = 0.5


def saved_row_roles(folder: Path, n_rows: int) -> np.ndarray:
    """Return per dataset row what it was to the run saved in ``folder`` (int8 roles).

    ``ROLE_TRAIN``, ``ROLE_HELDOUT`` or ``ROLE_UNUSED``, from the folder's ``row_roles.npy``.
    Runs saved before the evaluation split existed have no roles file: their rows are training
    rows where ``train_rows.npy`` says so (all rows when it is absent) and unused otherwise.
    """
    folder = Path(folder)
    path = folder / ROW_ROLES_FILE
    if path.exists():
        roles = np.load(path, allow_pickle=False).astype(np.int8)
        if roles.size == n_rows:
            return roles
    train_file = folder / TRAIN_ROWS_FILE
    train = np.load(train_file, allow_pickle=False) if train_file.exists() else slice(None)
    roles = np.full(n_rows, ROLE_UNUSED, dtype=np.int8)
    roles[train] = ROLE_TRAIN
    return roles


def labels_digest(labels: np.ndarray) -> str:
    """Return a short fingerprint of a label array (a cache key for label-dependent views)."""
    idx = np.flatnonzero(labels != -1)
    h = hashlib.sha1(idx.tobytes())
    h.update(labels[idx].tobytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class EvaluationRows:
    """The rows of one role that the figures against the ground truth cover, and those apart.

    ``rows``: positions with known ground truth and no expert label (the figures);
    ``labelled``: positions with known ground truth that carry an expert label (reported
    apart, since a label can reach the model or the threshold); ``key``: a fingerprint of
    both (a cache key).
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


def curves(truth: np.ndarray, scores: np.ndarray, rows: np.ndarray | None = None) -> dict[str, Any]:
    """Return ROC and PR curve points and areas of ``scores`` against ``truth`` on ``rows``.

    ``rows``: positions with known ground truth (default: every such row). Keys: ``roc``,
    ``pr`` (:func:`ad_core.metrics.roc_points` / ``pr_points``, ``CURVE_POINTS`` each),
    ``auroc``, ``auprc``, ``base_rate`` (None without rows), ``n_rows``, ``n_anomalies``, and
    the subset's own ``truth`` and ``scores``, so a threshold change only counts.
    """
    from ad_core.metrics import auprc, auroc, pr_points, roc_points

    if rows is None:
        rows = np.flatnonzero(truth != -1)
    truth = truth[rows]
    scores = scores[rows]
    return {
        "roc": roc_points(truth, scores, max_points=CURVE_POINTS),
        "pr": pr_points(truth, scores, max_points=CURVE_POINTS),
        "auroc": auroc(truth, scores),
        "auprc": auprc(truth, scores),
        "base_rate": float(truth.mean()) if truth.size else None,
        "n_rows": int(truth.size),
        "n_anomalies": int(truth.sum()),
        "truth": truth,
        "scores": scores,
    }


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
    from ad_core.metrics import prf_at
    from ad_core.thresholds import flag

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


# --- tables of scores -----------------------------------------------------------------------


def saved_contributions(folder: Path) -> dict[str, Any]:
    """Return the feature contributions of the run's highest-scoring rows, from its folder.

    ``{"method": "reconstruction" | "zscore" | None, "rows": {row key: [[feature, share],
    ...]}}``, as :func:`ad_core.runs.train_run` saved them (no rows for an older run).
    """
    path = Path(folder) / EXPLAIN_FILE
    if not path.exists():
        return {"method": None, "rows": {}}
    return json.loads(path.read_text())


def top_rows_table(
    frame: Any,
    feature_columns: list[str],
    keys: np.ndarray,
    scores: np.ndarray,
    order: np.ndarray,
    labels: np.ndarray,
    truth: np.ndarray | None,
    contributions: dict[str, Any],
    *,
    max_rows: int,
    max_value_columns: int,
) -> Any:
    """Return the ``max_rows`` highest-scoring rows as a DataFrame, highest first.

    Columns: rank, row (key), score, your label, ground truth (when ``truth`` is given), top
    features (from ``contributions``, :func:`saved_contributions`), then the values of the
    first ``max_value_columns`` feature columns. ``order``: row positions by descending score.
    """
    import pandas as pd

    from ad_core.explain import describe_top

    top = order[:max_rows]
    top_keys = keys[top]
    rows = contributions.get("rows", {})
    table = pd.DataFrame(
        {
            "rank": np.arange(1, top.size + 1),
            "row": top_keys,
            "score": scores[top],
            "your label": [LABEL_TEXT[int(v)] for v in labels[top]],
        }
    )
    if truth is not None:
        table["ground truth"] = [LABEL_TEXT[int(v)] for v in truth[top]]
    table["top features"] = [
        describe_top([tuple(f) for f in rows[k]]) if k in rows else "" for k in top_keys
    ]
    values = frame.iloc[top][feature_columns[:max_value_columns]].reset_index(drop=True)
    return pd.concat([table, values], axis=1)


def scores_table(
    keys: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    labels: np.ndarray,
    truth: np.ndarray | None = None,
) -> Any:
    """Return a DataFrame of one line per row: row_key, score, flagged (0/1), label, and
    ground_truth when ``truth`` is given."""
    import pandas as pd

    from ad_core.thresholds import flag

    out = pd.DataFrame(
        {
            "row_key": keys,
            "score": scores,
            "flagged": flag(scores, threshold).astype(int),
            "label": labels,
        }
    )
    if truth is not None:
        out["ground_truth"] = truth
    return out
