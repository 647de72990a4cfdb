"""The Runs page's tables, comparisons and exports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ad_core.store import RunRecord
from ad_studio_ui.training import get_job

#: the runs table's figures, as measured when each run finished training (``run.metrics``)
TRAINING_FIGURES = {
    "auroc": "AUROC at training",
    "auprc": "AUPRC at training",
    "f1": "F1 at training",
}
#: what a missing cell of the Runs page's tables reads (never "None")
MISSING = "–"


def run_status(run: RunRecord) -> str:
    """Return the run's status, saying "interrupted" for a run no thread is training."""
    if run.status == "running":
        job = get_job(run.id)
        return "training" if job is not None and job.running else "interrupted"
    return run.status


def _trained_on(metrics: dict[str, Any]) -> str | None:
    from ad_core.runs import TRAIN_ON

    if "train_on" not in metrics:
        return None
    text = TRAIN_ON.get(metrics["train_on"], metrics["train_on"]).lower()
    if metrics.get("n_heldout"):
        text += f", {metrics['n_heldout']:,} held out"
    return text


def _flagged_at_training(metrics: dict[str, Any]) -> str | None:
    """Return "41 of 300 unlabelled held-out rows": the flagged count and the rows it is of."""
    n = metrics.get("n_flagged")
    if n is None:
        return None
    if not metrics.get("n_evaluated"):
        return f"{int(n):,}"
    return f"{int(n):,} of {int(metrics['n_evaluated']):,} {metrics.get('evaluated_on', 'rows')}"


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return str(round(value, 4))
    return str(value)


def _detector_title(name: str) -> str:
    """Return a detector's title from the registry ("Isolation Forest"), else its name."""
    from ad_core import get_detector_info

    try:
        return get_detector_info(name).title
    except (KeyError, ValueError):
        return name  # a detector no longer installed: its run still lists


def settings_text(params: dict[str, Any]) -> str:
    """Return settings as "epochs 100 · lr 0.001", unset ones (None) left out."""
    parts = []
    for name in sorted(params):
        value = params[name]
        if value is None:
            continue
        if isinstance(value, list | tuple):
            value = ", ".join(str(v) for v in value)
        parts.append(f"{name} {value}")
    return " · ".join(parts) or "defaults"


def runs_table(runs: list[RunRecord]) -> pd.DataFrame:
    """Return one row per run: id, detector, status, time, figures at training and settings.

    The figures are those stored when the run finished training: on its held-out rows that
    had no label then (every unlabelled row when nothing was held out), at the threshold it
    was trained with; "flagged at training" names those rows. A column with a missing cell
    is text, the cell reading :data:`MISSING`; a complete column keeps its numbers.
    """
    rows = []
    for run in runs:
        metrics = run.metrics or {}
        row: dict[str, Any] = {
            "run": run.id,
            "detector": _detector_title(run.detector),
            "status": run_status(run),
            "created (UTC)": run.created[:19].replace("T", " "),
            "fit seconds": None if run.fit_seconds is None else round(run.fit_seconds, 1),
        }
        for name, title in TRAINING_FIGURES.items():
            value = metrics.get(name)
            row[title] = None if value is None else round(float(value), 4)
        row["flagged at training"] = _flagged_at_training(metrics)
        row["training rows"] = metrics.get("n_train")
        row["labels trained with"] = metrics.get("n_labels")
        parent = metrics.get("parent_run")
        row["retrained from"] = None if parent is None else f"#{parent}"
        row["trained on"] = _trained_on(metrics)
        row["settings"] = settings_text(run.params or {})
        row["why it failed"] = metrics.get("error") if run.status != "done" else None
        rows.append(row)
    if rows and all(row["why it failed"] is None for row in rows):
        for row in rows:
            del row["why it failed"]
    for name in rows[0] if rows else ():
        if any(row[name] is None for row in rows):
            for row in rows:
                row[name] = _cell(row[name])
    return pd.DataFrame(rows)


def threshold_now(run: RunRecord, scores: np.ndarray) -> float:
    """Return the threshold the Scores page uses for ``run`` in this session (no side effect).

    The session's threshold when it belongs to ``run`` (``state.current_threshold``), else
    the one saved in the workspace, else the run's default.
    """
    import streamlit as st

    from ad_studio_ui import state

    ss = st.session_state
    if ss.get(state.THRESHOLD_RUN) == run.id and ss.get(state.THRESHOLD) is not None:
        return float(ss[state.THRESHOLD])
    return state.saved_threshold(run, scores)


def figures_now(
    view: Any, run: RunRecord, scores: np.ndarray, threshold: float, labels: np.ndarray
) -> dict[str, Any]:
    """Return a run's figures as the Scores page shows them by default, with the labels now.

    ``n_flagged``: rows of all ``n_rows`` scoring above ``threshold`` (the Scores page's
    "Flagged rows"). ``auroc``, ``auprc``, ``precision``, ``recall``, ``f1`` (None without
    them): on the run's held-out rows with known ground truth and no label of yours (every
    such row when nothing was held out); ``on`` says which rows, how many, and how many
    labelled rows were left out.
    """
    from ad_core.evaluation import evaluation_rows, role_counts
    from ad_core.metrics import prf_at
    from ad_core.thresholds import flag
    from ad_studio_ui.score_views import curves
    from ad_studio_ui.workspace import ROLE_HELDOUT, run_row_roles

    out: dict[str, Any] = {
        "threshold": float(threshold),
        "n_rows": int(scores.size),
        "n_flagged": int(np.count_nonzero(flag(scores, threshold))),
        "auroc": None,
        "auprc": None,
        "precision": None,
        "recall": None,
        "f1": None,
        "n_evaluated": 0,
        "on": "no ground truth",
    }
    truth = view.truth
    if truth is not None and not ((truth == 1).any() and (truth == 0).any()):
        only = "anomalies" if (truth == 1).any() else "normal rows"
        out["on"] = f"a ground truth of {only} only (AUROC needs both)"
        return out
    if truth is None:
        return out
    roles = run_row_roles(run, view.n_rows)
    role = ROLE_HELDOUT if role_counts(roles, truth)[ROLE_HELDOUT] else None
    ev = evaluation_rows(roles, truth, labels, role)
    where = (
        "held-out rows the model never saw"
        if role is not None
        else "rows, training rows included (nothing held out: optimistic)"
    )
    apart = f" ({ev.labelled.size:,} labelled rows left out)" if ev.labelled.size else ""
    if ev.rows.size == 0:
        out["on"] = f"0 {where}{apart}"
        return out
    cv = curves(run, view, scores, ev.rows, ev.key)
    prf = prf_at(cv["truth"], cv["scores"], threshold)
    out.update(
        auroc=cv["auroc"],
        auprc=cv["auprc"],
        precision=prf["precision"],
        recall=prf["recall"],
        f1=prf["f1"],
        n_evaluated=int(cv["n_rows"]),
        on=f"{cv['n_rows']:,} {where}{apart}",
    )
    return out


def figure_text(value: float | None) -> str:
    """Return a quality figure as the Scores page writes it (3 decimals, "n/a" when undefined)."""
    if value is None:
        return MISSING
    return "n/a" if value != value else f"{value:.3f}"


def settings_diff(a: RunRecord, b: RunRecord) -> pd.DataFrame:
    """Return every setting of two runs side by side (defaults filled in), differing first.

    A setting only one run's detector has reads "(not a setting of <detector>)"; one left
    to the detector reads "automatic", never null.
    """
    from ad_core.runs import run_settings, setting_text, setting_title
    from ad_studio_ui.training import run_setup
    from ad_studio_ui.workspace import get_workspace

    ws = get_workspace()
    sa, sb = (
        run_settings(r.detector, r.params, r.preprocessing, run_setup(ws, r.id)) for r in (a, b)
    )
    keys = list(dict.fromkeys([*sa, *sb]))

    def value(settings: dict, run: RunRecord, key: str) -> str:
        if key not in settings:
            return f"(not a setting of {setting_text('detector', run.detector)})"
        return setting_text(key, settings[key])

    table = pd.DataFrame(
        {
            "setting": [setting_title(k) for k in keys],
            f"#{a.id}": [value(sa, a, k) for k in keys],
            f"#{b.id}": [value(sb, b, k) for k in keys],
        }
    )
    table["differs"] = table[f"#{a.id}"] != table[f"#{b.id}"]
    return table.sort_values("differs", ascending=False, kind="stable").reset_index(drop=True)


def export_zip(run: RunRecord, folder: Path) -> bytes:
    """Return the Runs page's zip of a run: ``ad_core.runs.run_zip`` under ``run<id>/``."""
    from ad_core.runs import run_zip

    return run_zip(run, folder, prefix=f"run{run.id}/")


def loop_curve(view: Any, run: RunRecord, labels: Any) -> tuple[list[dict[str, Any]], str]:
    """Return the learning curve of the retrains that led to ``run`` (``ad_core.runs``)."""
    from ad_core.runs import learning_curve
    from ad_studio_ui.workspace import get_workspace, run_scores

    ws = get_workspace()
    return learning_curve(
        ws, run.id, view.truth, labels, scores_of=lambda rid: run_scores(ws.get_run(rid))
    )


def loop_curve_table(points: list[dict[str, Any]]) -> pd.DataFrame:
    """Return the learning curve as the Runs page lists it: one row per retrain."""
    return pd.DataFrame(
        {
            "run": [p["run"] for p in points],
            "detector": [p["detector"] for p in points],
            "labels": [p["n_labels"] for p in points],
            "retrain": [
                "first run" if i == 0 else "warm (fine-tuned)" if p["warm"] else "from scratch"
                for i, p in enumerate(points)
            ],
            "AUROC": [round(p["auroc"], 4) for p in points],
            "AUPRC": [round(p["auprc"], 4) for p in points],
        }
    )
