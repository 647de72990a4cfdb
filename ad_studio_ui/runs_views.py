"""The Runs page's tables, comparisons and exports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from ad_core.store import RunRecord
from ad_studio_ui.training import get_job

METRIC_COLUMNS = ("auroc", "auprc", "f1", "n_flagged", "n_train", "n_labels")


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


def runs_table(runs: list[RunRecord]) -> pd.DataFrame:
    """Return one row per run: id, detector, status, time, metrics and settings."""
    rows = []
    for run in runs:
        metrics = run.metrics or {}
        row: dict[str, Any] = {
            "run": run.id,
            "detector": run.detector,
            "status": run_status(run),
            "created (UTC)": run.created[:19].replace("T", " "),
            "fit seconds": None if run.fit_seconds is None else round(run.fit_seconds, 1),
        }
        for name in METRIC_COLUMNS:
            row[name] = metrics.get(name)
        row["retrained from"] = metrics.get("parent_run")
        row["trained on"] = _trained_on(metrics)
        row["settings"] = json.dumps(run.params or {}, sort_keys=True)
        if metrics.get("error"):
            row["settings"] = f"{metrics['error']} | {row['settings']}"
        rows.append(row)
    return pd.DataFrame(rows)


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
