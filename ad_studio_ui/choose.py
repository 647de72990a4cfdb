"""Choosing on the expert's labels: candidates trained in the background, ranked on labels.

Each candidate (a self-supervised detector with one augmentation, the autoencoder baseline,
any detector the user ticks) is trained as an ordinary run through the app's training
processes (:func:`ad_studio_ui.training.start_training`), one after the other, so every
candidate is a saved run the Runs page lists and one click can make current. The ranking is
:func:`ad_core.selection.rank_candidates` on the labels as they are when the page draws.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ad_core.runs import TrainingSetup
from ad_core.selection import Candidate
from ad_core.store import Workspace
from ad_studio_ui.training import get_job, start_training

logger = logging.getLogger(__name__)

#: the workspace setting holding a dataset's last candidate set: [{name, run, detector}]
CHOICE_KEY = "choice_runs.{dataset_id}"


def choice_key(dataset_id: str) -> str:
    """Return the setting holding the candidate runs of a dataset's last comparison."""
    return CHOICE_KEY.format(dataset_id=dataset_id)


@dataclass
class ChoiceJob:
    """Candidates being trained one after another; the thread writes, the page reads."""

    dataset_id: str
    names: list[str]
    runs: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    current: str | None = None
    status: str = "running"  # running | done | cancelled | failed
    #: why the comparison itself stopped (status "failed"), in words
    error: str | None = None
    started: float = field(default_factory=time.time)
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.status == "running"

    def _current_job(self) -> Any:
        job = get_job(self.runs.get(self.current)) if self.current else None
        return job if job is not None and job.running else None

    def progress(self) -> float:
        """Return the share of candidates finished, counting the current one's epochs."""
        current = self._current_job()
        finished = len(self.runs) + len(self.failed) - (current is not None)
        within = current.progress() if current is not None else 0.0
        return min(1.0, (finished + within) / max(1, len(self.names)))

    def text(self) -> str:
        """Return what the progress bar says: candidates done, and the current one's epoch."""
        current = self._current_job()
        finished = len(self.runs) + len(self.failed) - (current is not None)
        now = f" · {self.current}: {current.progress_text()}" if current is not None else ""
        return f"{finished} of {len(self.names)} candidates trained{now}"

    def cancel(self) -> None:
        self.cancel_requested.set()
        job = get_job(self.runs.get(self.current)) if self.current else None
        if job is not None:
            job.cancel()

    def wait(self, timeout: float | None = None) -> bool:
        if self.thread is not None:
            self.thread.join(timeout)
        return not self.running


_JOBS: dict[tuple[str, str], ChoiceJob] = {}
_LOCK = threading.Lock()


def choice_job(ws: Workspace, dataset_id: str) -> ChoiceJob | None:
    """Return the comparison of a dataset started in this server, if any."""
    with _LOCK:
        return _JOBS.get((str(ws.home), dataset_id))


def start_choice(
    ws: Workspace,
    dataset_id: str,
    candidates: list[Candidate],
    preprocessing: dict[str, Any],
) -> ChoiceJob:
    """Train the candidates one after another in the background; return the job to poll.

    Candidates train without labels (the labels judge them, so they must not train them)
    on every row, none held out, as a first unsupervised run does. The finished set is
    stored under :func:`choice_key` so the ranking survives a reload.
    """
    job = ChoiceJob(dataset_id, [c.name for c in candidates])
    with _LOCK:
        old = _JOBS.get((str(ws.home), dataset_id))
        if old is not None and old.running:
            raise ValueError("A comparison of this dataset is already running; wait or cancel it.")
        _JOBS[(str(ws.home), dataset_id)] = job
    home = ws.home

    def work() -> None:
        local = Workspace(home)
        try:
            for cand in candidates:
                if job.cancel_requested.is_set():
                    job.status = "cancelled"
                    return
                job.current = cand.name
                train = start_training(
                    local,
                    dataset_id,
                    cand.detector,
                    dict(cand.params),
                    preprocessing,
                    setup=TrainingSetup(),
                )
                job.runs[cand.name] = train.run_id
                if job.cancel_requested.is_set():  # a cancel before the run was known
                    train.cancel()
                train.wait()
                if train.status == "cancelled":
                    job.status = "cancelled"
                    return
                if train.status != "done":
                    job.failed[cand.name] = train.error or train.status
                    del job.runs[cand.name]
            local.set_setting(
                choice_key(dataset_id),
                [
                    {"name": c.name, "run": job.runs[c.name], "detector": c.detector}
                    for c in candidates
                    if c.name in job.runs
                ],
            )
            job.status = "done"
        except Exception as exc:  # the comparison itself (not one candidate) broke
            job.status = "failed"
            job.error = f"{type(exc).__name__}: {exc}"
            logger.exception("the comparison of dataset %s stopped", dataset_id)
        finally:
            if job.status == "running":
                job.status = "cancelled"
            local.close()

    job.thread = threading.Thread(target=work, name=f"choice-{dataset_id}", daemon=True)
    job.thread.start()
    return job


def stored_choice(ws: Workspace, dataset_id: str) -> list[dict[str, Any]]:
    """Return the last finished comparison's candidates whose runs still exist."""
    out = []
    for entry in ws.get_setting(choice_key(dataset_id)) or []:
        try:
            if ws.get_run(int(entry["run"])).status == "done":
                out.append(entry)
        except KeyError:
            continue  # the run was deleted on the Runs page
    return out


def ranking_table(ranking: Any, runs: dict[str, int], truth_auroc: dict[str, float]) -> Any:
    """Return the ranking as the page lists it: intervals as text, the gap, the verdict."""
    import pandas as pd

    pct = f"{ranking.confidence:.0%}"
    enough = ranking.enough_labels  # else the intervals would look exact
    rows = []
    for r in ranking.results:
        row = {
            "rank": r.rank,
            "candidate": r.name,
            "run": f"#{runs[r.name]}",
            "AUROC on your labels": round(r.auroc, 3),
            f"AUROC {pct} interval": f"{r.auroc_low:.3f} to {r.auroc_high:.3f}"
            if enough
            else "too few labels",
            "AUPRC on your labels": round(r.auprc, 3),
            f"AUPRC {pct} interval": f"{r.auprc_low:.3f} to {r.auprc_high:.3f}"
            if enough
            else "too few labels",
            "behind the leader": "leader"
            if r.rank == 1
            else f"{r.gap:.3f} ({r.gap_low:.3f} to {r.gap_high:.3f})"
            if r.gap_low == r.gap_low  # NaN: too few labels for an interval
            else f"{r.gap:.3f} (too few labels for an interval)",
            "told apart from the leader": "-"
            if r.rank == 1
            else ("yes" if r.distinguishable else "no: too few labels"),
        }
        if truth_auroc:
            value = truth_auroc.get(r.name, float("nan"))
            row["AUROC on ground truth (unlabelled rows)"] = (
                None if value != value else round(value, 3)
            )
        rows.append(row)
    return pd.DataFrame(rows)


def truth_aurocs(
    scores: dict[str, np.ndarray], truth: np.ndarray | None, labels: np.ndarray
) -> dict[str, float]:
    """Return each candidate's AUROC on the ground truth of the rows nobody labelled."""
    from ad_core.metrics import auroc

    if truth is None:
        return {}
    rows = np.flatnonzero((labels == -1) & (truth != -1))
    t = truth[rows]
    if not ((t == 1).any() and (t == 0).any()):
        return {}
    return {name: float(auroc(t, s[rows])) for name, s in scores.items()}
