"""Training runs in a background process: preprocess, fit, score, save. Never calls ``st.*``.

``start_training`` records a run in the workspace and starts a process; the page polls the
returned :class:`TrainingJob` from a fragment (progress, loss curve, Cancel). ``train_run``
is the whole job as a plain function, usable without a process (tests, benchmarks).

Which rows a run trains on and which it holds out for evaluation is its
:class:`ad_core.runs.TrainingSetup`, recorded with the run; the role of every row is saved in
the run folder (``row_roles.npy``). Large data: more than ``MAX_TRAIN_ROWS`` training rows
trains on a seeded random sample (labelled rows always included) and every row is scored, in
chunks. Training rows get the detector's own training scores (``decision_scores_``: kNN does
not count a row as its own neighbour), so sampled and unsampled rows score alike, and the
run's threshold is the detector's ``threshold_``: one threshold, from one place.

Each job trains in a process of its own (two jobs in threads of one process take turns on the
interpreter lock), with torch threads sized by the jobs running at once
(:func:`ad_core.nn.threads.job_threads`, re-checked every epoch), so two trainings do not
oversubscribe the cores.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ad_core.store import Workspace

MAX_TRAIN_ROWS = 50_000
#: what the progress bar calls a detector's training stages
STAGE_TEXT = {"pretrain": "Pretraining (autoencoder)", "train": "Training"}
SCORE_CHUNK_ROWS = 100_000
EXPLAIN_TOP_ROWS = 500
#: jobs of this server process, by (workspace folder, run id): run ids restart per workspace
_JOBS: dict[tuple[str, int], TrainingJob] = {}
_JOBS_LOCK = threading.Lock()


@dataclass
class TrainingJob:
    """A training run in progress; the thread writes, the page reads."""

    run_id: int
    dataset_id: str
    detector: str
    stage: str = "starting"
    status: str = "running"  # running | done | failed | cancelled
    events: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    notice: str | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    threads: int = 1  #: torch threads this job trains with
    process: Any = None  #: the training process (multiprocessing.Process)

    @property
    def running(self) -> bool:
        """Return True while the thread has not finished."""
        return self.status == "running"

    def progress(self) -> float:
        """Return the share of epochs done so far, 0..1 (pretraining and training together)."""
        if not self.events:
            return 0.0
        last = self.events[-1]
        n_epochs = max(1, int(last.get("n_epochs") or 1))
        stages = list(dict.fromkeys(e.get("stage", "train") for e in self.events))
        # Two-stage detectors (pretrain, then train) fill the bar half per stage.
        total_stages = 2 if "pretrain" in stages else 1
        done_stages = len(stages) - 1
        within = min(1.0, int(last.get("epoch") or 0) / n_epochs)
        return min(1.0, (done_stages + within) / total_stages)

    def progress_text(self, now: float | None = None) -> str:
        """Return what the progress bar says: stage, epoch n/N and the time left (estimated)."""
        text = self.stage
        if self.events and self.stage == "training":
            last = self.events[-1]
            stage = STAGE_TEXT.get(str(last.get("stage", "train")), str(last.get("stage")))
            text = (
                f"{stage}: epoch {int(last.get('epoch') or 0)} of {int(last.get('n_epochs') or 0)}"
            )
            done = self.progress()
            elapsed = (now or time.time()) - self.started
            if 0.02 <= done < 1.0 and elapsed > 1.0:
                left = elapsed * (1.0 - done) / done
                text += f" · about {_duration(left)} left"
        return text

    def cancel(self) -> None:
        """Ask the training to stop at the end of the current epoch."""
        self.cancel_requested.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the thread; return True when it has finished."""
        if self.thread is not None:
            self.thread.join(timeout)
        return not self.running


@dataclass
class TrainResult:
    """What ``train_run`` produced."""

    run_id: int
    scores: np.ndarray
    threshold: float
    metrics: dict[str, Any]


def _duration(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


def _sample_rows(candidates: np.ndarray, must_include: np.ndarray, seed: int) -> np.ndarray:
    """Return sorted positions: ``candidates``, or a seeded sample of MAX_TRAIN_ROWS of them.

    Rows in ``must_include`` (labelled rows among the candidates) are always kept.
    """
    if candidates.size <= MAX_TRAIN_ROWS:
        return candidates
    rng = np.random.default_rng(seed)
    chosen = rng.choice(candidates, size=MAX_TRAIN_ROWS, replace=False)
    return np.union1d(chosen, np.intersect1d(must_include, candidates)).astype(np.int64)


def _step_flops(n_features: int, params: dict[str, Any]) -> float:
    """Return the rough multiply-adds of one training step of a deep detector's network."""
    from ad_core.nn import widths_for

    hidden, rep = widths_for(max(1, n_features))
    if params.get("hidden_dims"):
        hidden = [int(h) for h in params["hidden_dims"]]
    if params.get("rep_dim"):
        rep = int(params["rep_dim"])
    dims = [n_features, *hidden, rep]
    weights = 2 * sum(a * b for a, b in zip(dims[:-1], dims[1:], strict=True))  # enc + dec
    return 3.0 * weights * float(params.get("batch_size") or 128)  # forward + backward


def _metrics_on(
    truth: np.ndarray | None, scores: np.ndarray, threshold: float, rows: np.ndarray
) -> dict[str, Any] | None:
    """Return AUROC, AUPRC and precision/recall/F1 on ``rows``, or None without both classes."""
    from ad_core.metrics import summary

    if truth is None or rows.size == 0:
        return None
    t = truth[rows]
    if not ((t == 1).any() and (t == 0).any()):
        return None
    full = summary(t, scores[rows], threshold)
    out: dict[str, Any] = {"n_rows": int(rows.size), "n_anomalies": int((t == 1).sum())}
    for name in ("auroc", "auprc", "precision", "recall", "f1", "n_flagged"):
        value = full[name]
        out[name] = None if value != value else value  # NaN -> None for JSON
    return out


def train_run(
    ws: Workspace,
    run_id: int,
    *,
    labels: np.ndarray | None = None,
    use_labels: bool = True,
    setup: Any = None,
    callback: Callable[[dict], Any] | None = None,
    on_stage: Callable[[str], None] | None = None,
    on_notice: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train, score and save the run ``run_id`` recorded by ``ws.create_run``.

    ``labels`` (one per dataset row, -1/0/1) choose rows for the training-set choices that
    name them and, with ``use_labels`` and a detector that learns from labels, are passed to
    it as ``y`` for its training rows. ``setup``: the :class:`ad_core.runs.TrainingSetup` (which rows to train on,
    the held-out share); default: the one recorded with the run, else all rows, none held
    out. On any error the run is marked failed (cancelled for FitCancelled) and re-raised.
    """
    from ad_core import FitCancelled, make_detector
    from ad_core.data import Preprocessor, Schema, ground_truth, row_keys
    from ad_core.explain import feature_contributions, reference_stats, top_features
    from ad_core.runs import ROLE_HELDOUT, ROLE_TRAIN, ROLE_UNUSED, TrainingSetup, row_roles
    from ad_studio_ui.workspace import (
        EXPLAIN_FILE,
        MODEL_DIR,
        PREPROCESSOR_FILE,
        REFERENCE_FILE,
        ROW_ROLES_FILE,
        TRAIN_ROWS_FILE,
    )

    stage = on_stage or (lambda s: None)
    start = time.perf_counter()
    run = ws.get_run(run_id)
    try:
        stage("loading the data")
        record = ws.get_dataset(run.dataset_id)
        frame = ws.load_dataset_frame(run.dataset_id)
        schema = Schema.from_dict(record.schema)
        keys = row_keys(frame, schema)
        truth = ground_truth(frame, schema)
        params = dict(run.params or {})
        seed = int(params.get("random_state") or 0)
        if setup is None:
            setup = TrainingSetup.from_dict(ws.get_setting(setup_key(run_id)))
        ws.set_setting(setup_key(run_id), setup.to_dict())
        from ad_core import get_detector_info

        learns = (
            use_labels
            and labels is not None
            and get_detector_info(run.detector).uses_labels != "no"
        )
        roles = row_roles(len(frame), setup, labels=labels, truth=truth, learn_labels=learns)
        labelled = (
            np.flatnonzero(labels != -1) if labels is not None else np.zeros(0, dtype=np.int64)
        )
        candidates = np.flatnonzero(roles == ROLE_TRAIN)
        sample = _sample_rows(candidates, labelled, seed)
        sampled = sample.size < candidates.size
        roles[np.setdiff1d(candidates, sample)] = ROLE_UNUSED
        train_frame = frame.iloc[sample]
        if sampled and on_notice is not None:
            on_notice(
                f"{candidates.size:,} rows are chosen for training: the model trains on a "
                f"random sample of {sample.size:,} of them (seed {seed}) and scores all rows."
            )

        stage("preprocessing")
        prep = Preprocessor(**(run.preprocessing or {}))
        X_train = prep.fit_transform(train_frame, schema)
        y_train = labels[sample] if learns else None

        stage("training")
        det = make_detector(run.detector, **params)
        det.fit(X_train, y_train, callback=callback)

        stage("scoring every row")
        scores = np.empty(len(frame), dtype=np.float64)
        for lo in range(0, len(frame), SCORE_CHUNK_ROWS):
            chunk = frame.iloc[lo : lo + SCORE_CHUNK_ROWS]
            scores[lo : lo + len(chunk)] = det.decision_function(prep.transform(chunk))
        # Training rows keep the scores the detector gave them in training: for kNN a row is
        # not its own neighbour there, so they compare with the rows it never saw.
        scores[sample] = det.decision_scores_
        threshold = float(det.threshold_)

        stage("saving")
        folder = ws.run_dir(run_id)
        det.save(folder / MODEL_DIR)
        prep.save(folder / PREPROCESSOR_FILE)
        reference = reference_stats(X_train)
        (folder / REFERENCE_FILE).write_text(json.dumps(reference.to_dict()))
        np.save(folder / TRAIN_ROWS_FILE, sample, allow_pickle=False)
        np.save(folder / ROW_ROLES_FILE, roles, allow_pickle=False)
        ws.save_scores(run_id, keys, scores)

        top = np.argsort(-scores, kind="stable")[:EXPLAIN_TOP_ROWS]
        contrib = feature_contributions(det, prep.transform(frame.iloc[top]), reference=reference)
        explained = {
            "method": contrib.method,
            "rows": {
                str(keys[i]): feats
                for i, feats in zip(
                    top, top_features(contrib, prep.feature_names_out_, k=3), strict=True
                )
            },
        }
        (folder / EXPLAIN_FILE).write_text(json.dumps(explained))

        held = np.flatnonzero(roles == ROLE_HELDOUT)
        metrics: dict[str, Any] = {
            "threshold": threshold,
            "n_rows": int(len(frame)),
            "n_train": int(sample.size),
            "n_heldout": int(held.size),
            "train_on": setup.train_on,
            "holdout": setup.holdout,
            "n_features": int(X_train.shape[1]),
            "sampled": bool(sampled),
        }
        if labels is not None:
            metrics["n_labels"] = int(labelled.size)
            metrics["n_labelled_anomalies"] = int((labels == 1).sum())
        parent = ws.get_setting(f"run_parent.{run_id}")
        if parent is not None:
            metrics["parent_run"] = parent
        # The headline figures are on the held-out rows when there are some (the rows the
        # model never saw), else on every row; "evaluated_on" says which.
        unlabelled = np.ones(len(frame), dtype=bool) if labels is None else labels == -1
        eval_rows = held[unlabelled[held]] if held.size else np.flatnonzero(unlabelled)
        headline = _metrics_on(truth, scores, threshold, eval_rows)
        if headline is not None:
            metrics.update({k: v for k, v in headline.items() if k not in ("n_rows",)})
            metrics["evaluated_on"] = (
                "unlabelled held-out rows" if held.size else "unlabelled rows (trained on)"
            )
            metrics["n_evaluated"] = int(eval_rows.size)
        on_train = _metrics_on(truth, scores, threshold, sample)
        if on_train is not None and held.size:
            metrics["train_auroc"] = on_train["auroc"]
        ws.finish_run(
            run_id,
            metrics,
            status="done",
            fit_seconds=time.perf_counter() - start,
            model_path=folder / MODEL_DIR,
        )
        return TrainResult(run_id, scores, threshold, metrics)
    except FitCancelled:
        ws.finish_run(
            run_id,
            {"error": "cancelled by the user"},
            status="cancelled",
            fit_seconds=time.perf_counter() - start,
        )
        raise
    except Exception as exc:
        ws.finish_run(
            run_id,
            {"error": f"{type(exc).__name__}: {exc}"},
            status="failed",
            fit_seconds=time.perf_counter() - start,
        )
        raise


def setup_key(run_id: int) -> str:
    """Return the settings key of a run's training set-up (``TrainingSetup.to_dict``)."""
    return f"run_setup.{int(run_id)}"


def run_setup(ws: Workspace, run_id: int) -> Any:
    """Return the :class:`ad_core.runs.TrainingSetup` a run was trained with."""
    from ad_core.runs import TrainingSetup

    return TrainingSetup.from_dict(ws.get_setting(setup_key(run_id)))


def _process_context() -> Any:
    """Return the multiprocessing context training processes start from (once per server).

    forkserver: each training forks from a server process that has already imported torch
    and ad_core, so a job starts in a fraction of a second instead of importing torch anew
    (spawn, the fallback where forkserver does not exist).
    """
    global _CONTEXT
    with _JOBS_LOCK:
        if _CONTEXT is None:
            import multiprocessing

            if "forkserver" in multiprocessing.get_all_start_methods():
                _CONTEXT = multiprocessing.get_context("forkserver")
                _CONTEXT.set_forkserver_preload(_PRELOAD)
            else:
                _CONTEXT = multiprocessing.get_context("spawn")
        return _CONTEXT


_CONTEXT: Any = None
#: imported once by the fork server, so that a training process starts with them loaded
_PRELOAD = [
    "torch",
    "torch._dynamo",  # imported by the first optimiser step: 0.7 s a process otherwise
    "sklearn.ensemble",
    "sklearn.neighbors",
    "sklearn.svm",
    "ad_core.detectors.autoencoder",
    "ad_core.detectors.deep_sad",
    "ad_core.detectors.classic",
    "ad_core.explain",
    "ad_studio_ui.workspace",
    __name__,
]


def prepare_processes() -> None:
    """Start the fork server in the background, so the first training starts at once."""

    def start() -> None:
        ctx = _process_context()
        if ctx.get_start_method() == "forkserver":
            from multiprocessing import forkserver

            forkserver.ensure_running()

    global _PREPARED
    with _JOBS_LOCK:
        if _PREPARED:
            return
        _PREPARED = True
    threading.Thread(target=start, name="ad-studio-forkserver", daemon=True).start()


_PREPARED = False


def _train_in_process(
    home: str,
    run_id: int,
    labels: np.ndarray | None,
    use_labels: bool,
    setup: Any,
    messages: Any,
    cancel: Any,
    threads: Any,
) -> None:
    """Run ``train_run`` in a training process; report to the server through ``messages``.

    ``cancel`` (an Event) asks the fit to stop; ``threads`` (a shared int) is the torch thread
    count the server gives this job, re-read after every epoch.
    """
    import torch

    from ad_core import FitCancelled

    applied = [0]

    from threadpoolctl import threadpool_limits

    def apply_threads() -> None:
        n = max(1, int(threads.value))
        if n != applied[0]:
            torch.set_num_threads(n)
            threadpool_limits(n)  # numpy's and scikit-learn's BLAS / OpenMP pools too
            applied[0] = n

    def callback(event: dict) -> bool:
        messages.put(("event", {**event, "threads": applied[0]}))
        apply_threads()
        return not cancel.is_set()

    apply_threads()
    ws = Workspace(home)
    try:
        train_run(
            ws,
            run_id,
            labels=labels,
            use_labels=use_labels,
            setup=setup,
            callback=callback,
            on_stage=lambda text: messages.put(("stage", text)),
            on_notice=lambda text: messages.put(("notice", text)),
        )
        messages.put(("status", "done", None))
    except FitCancelled:
        messages.put(("status", "cancelled", None))
    except Exception as exc:  # shown on the page; the process must not die silently
        messages.put(("status", "failed", _error_text(exc)))
    finally:
        ws.close()


def start_training(
    ws: Workspace,
    dataset_id: str,
    detector: str,
    params: dict[str, Any],
    preprocessing: dict[str, Any],
    *,
    labels: np.ndarray | None = None,
    use_labels: bool = True,
    setup: Any = None,
    parent_run: int | None = None,
) -> TrainingJob:
    """Record a run and train it in a process of its own; return the job to poll.

    A process, not a thread of the server: a small network's training step is mostly Python,
    which holds the interpreter lock, so two trainings in threads of one process take turns
    (3x slower each, measured by ``python -m ad_core.bench app``) and slow every page of the
    server down. A thread of the server relays the process's progress into the job.
    """
    from ad_core.data import Schema
    from ad_core.nn.threads import job_threads
    from ad_core.runs import TrainingSetup

    setup = setup or TrainingSetup()
    run_id = ws.create_run(dataset_id, detector, params, dict(preprocessing))
    ws.set_setting(setup_key(run_id), setup.to_dict())
    if parent_run is not None:
        ws.set_setting(f"run_parent.{run_id}", int(parent_run))
    job = TrainingJob(run_id=run_id, dataset_id=dataset_id, detector=detector)
    home = str(ws.home)
    n_features = len(Schema.from_dict(ws.get_dataset(dataset_id).schema).feature_columns)
    flops = _step_flops(max(1, n_features), params)

    ctx = _process_context()
    messages = ctx.Queue()
    cancel = ctx.Event()
    threads = ctx.Value("i", 1)

    def size_threads() -> None:
        with _JOBS_LOCK:
            n_running = sum(1 for j in _JOBS.values() if j.running)
        job.threads = job_threads(max(1, n_running), step_flops=flops)
        threads.value = job.threads

    def handle(message: tuple) -> None:
        kind = message[0]
        if kind == "event":
            job.events.append(message[1])
        elif kind == "stage":
            job.stage = message[1]
        elif kind == "notice":
            job.notice = message[1]
        elif kind == "status":
            job.error = message[2]
            job.status = message[1]

    def relay() -> None:
        import queue

        try:
            try:
                process.start()
            except Exception as exc:
                ws.finish_run(
                    run_id, {"error": f"could not start training: {exc}"}, status="failed"
                )
                raise
            sized = time.monotonic()
            while job.status == "running":
                if job.cancel_requested.is_set():
                    cancel.set()
                if time.monotonic() - sized > 0.5:  # a job started or ended: re-divide cores
                    size_threads()
                    sized = time.monotonic()
                try:
                    handle(messages.get(timeout=0.1))
                    continue
                except queue.Empty:
                    pass
                if not process.is_alive():
                    while job.status == "running":  # what it said before it ended
                        try:
                            handle(messages.get(timeout=0.5))
                        except queue.Empty:
                            break
                    break
            process.join()
            if job.status == "running":  # the process died without a word (killed, crashed)
                job.error = (
                    f"The training process stopped unexpectedly (exit code {process.exitcode}); "
                    "the machine may have run out of memory. Try fewer rows or a smaller model."
                )
                job.status = "failed"
                ws.finish_run(run_id, {"error": job.error}, status="failed")
        except Exception as exc:  # shown on the page; the thread must not die silently
            job.error = _error_text(exc)
            job.status = "failed"
        finally:
            job.finished = time.time()
            messages.close()
            ws.close()

    with _JOBS_LOCK:
        _JOBS[(home, run_id)] = job
    size_threads()
    process = ctx.Process(
        target=_train_in_process,
        args=(home, run_id, labels, use_labels, setup, messages, cancel, threads),
        name=f"ad-studio-train-{run_id}",
        daemon=True,
    )
    job.process = process
    job.thread = threading.Thread(target=relay, name=f"ad-studio-train-{run_id}", daemon=True)
    job.thread.start()
    return job


@atexit.register
def _stop_training_processes() -> None:
    """End the training processes still running when the server (or a test run) exits.

    Their runs stay recorded as running; the Runs page shows them as interrupted.
    """
    with _JOBS_LOCK:
        jobs = [j for j in _JOBS.values() if j.running and j.process is not None]
    for job in jobs:
        job.cancel()
        with contextlib.suppress(Exception):
            job.process.terminate()
    for job in jobs:
        with contextlib.suppress(Exception):
            job.process.join(timeout=5)


def _error_text(exc: Exception) -> str:
    from ad_core.data import DataError

    if isinstance(exc, DataError):
        return str(exc)
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (in {last[0].name})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


def get_job(run_id: int | None) -> TrainingJob | None:
    """Return the training job of a run started in this server process, if any."""
    if run_id is None:
        return None
    key = (_current_home(), int(run_id))
    with _JOBS_LOCK:
        return _JOBS.get(key)


def running_jobs() -> list[TrainingJob]:
    """Return the jobs still training in this server process."""
    home = _current_home()
    with _JOBS_LOCK:
        return [j for (h, _), j in _JOBS.items() if h == home and j.running]


def _current_home() -> str:
    from ad_studio_ui.workspace import get_workspace  # late: workspace imports this module

    return str(get_workspace().home)
