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
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ad_core.runs import (  # noqa: F401  (the app's names for what ad_core.runs owns)
    MAX_TRAIN_ROWS,
    TrainResult,
    _step_flops,
    run_setup,
    setup_key,
    train_run,
)
from ad_core.store import Workspace

#: what the progress bar calls a detector's training stages
STAGE_TEXT = {
    "pretrain": "Pretraining (autoencoder)",
    "train": "Training",
    "fine_tune": "Fine-tuning (warm start)",
}
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


def _duration(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


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
    from ad_core.runs import error_message

    return error_message(exc, located=True)


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
