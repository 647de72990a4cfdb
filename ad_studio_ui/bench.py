"""Dashboard timings for ``python -m ad_core.bench app`` (the Streamlit side of the benchmark).

Three parts, each a section of benchmarks/app.md (``--only`` runs some of them and keeps the
other sections of the file):

- ``dashboard`` (:func:`run`, :func:`dashboard_section`): measured with AppTest, which runs
  the real app.py and pages in this process (no browser): the times are server-side script
  runs, as a browser session would trigger them, plus AppTest's own small overhead of reading
  the produced elements.
- ``training`` (:func:`run_training`, :func:`training_section`): two Deep SAD trainings at
  once through the app's own path (``ad_studio_ui.training.start_training``, as the Train
  page starts them), against each one alone; with the torch threads sized per job (now) and
  at the process default (before), and, to tell the causes apart, in a thread per job of one
  process (the app's path before a process per job).
- ``retrain`` (:func:`run_retrain`, :func:`retrain_section`): the Deep SAD retrain with labels
  on the ECG5000 sample, as the Label page starts it.
"""

from __future__ import annotations

import contextlib
import os
import re
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class AppTimings:
    """What the benchmark measured (seconds unless named otherwise)."""

    rows: int
    features: int
    train_seconds: float
    scores_open_cold: float
    scores_open_warm: float
    threshold_reruns: list[float] = field(default_factory=list)
    umap_rows: int = 0
    umap_seconds: float | None = None
    umap_compile_seconds: float | None = None
    umap_page_first: float | None = None
    umap_page_show: float | None = None
    umap_page_cached: float | None = None
    notes: list[str] = field(default_factory=list)
    load_before: float = 0.0
    load_after: float = 0.0


def synthetic_table(rows: int, features: int, seed: int = 0) -> pd.DataFrame:
    """Return a table of correlated Gaussian features with 1 % shifted anomalies and a label."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(rows, max(2, features // 4)))
    mixing = rng.normal(size=(latent.shape[1], features))
    X = latent @ mixing + 0.3 * rng.normal(size=(rows, features))
    label = np.zeros(rows, dtype=np.int64)
    anomalies = rng.choice(rows, rows // 100, replace=False)
    X[anomalies] += rng.normal(scale=3.0, size=(anomalies.size, features))
    label[anomalies] = 1
    frame = pd.DataFrame(X.astype(np.float32), columns=[f"f{i:02d}" for i in range(features)])
    frame["label"] = label
    return frame


@contextlib.contextmanager
def _server_script_cache():
    """Keep compiled page scripts between AppTest runs, as a server does.

    AppTest makes a new ScriptCache for every run, so each rerun would parse and compile
    app.py and the page again (about 25 ms here) - a cost the server pays once per file.
    """
    from streamlit.testing.v1 import app_test as app_test_module

    shared = app_test_module.ScriptCache()
    original = app_test_module.ScriptCache
    app_test_module.ScriptCache = lambda: shared
    try:
        yield
    finally:
        app_test_module.ScriptCache = original


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(
    home: Path,
    *,
    rows: int = 100_000,
    features: int = 32,
    umap_rows: int = 50_000,
    repeats: int = 10,
    with_umap: bool = True,
) -> AppTimings:
    """Build a workspace with a trained run on ``rows`` rows in ``home`` and time the app."""
    os.environ["AD_STUDIO_HOME"] = str(home)
    load_before = os.getloadavg()[0]
    import streamlit as st

    from ad_core import maps as core_maps
    from ad_core.data import infer_schema
    from ad_core.latent import project_2d
    from ad_core.store import Workspace
    from ad_studio_ui import maps, training
    from ad_studio_ui.apptest import app_test, navigation_mode, open_page, problems
    from ad_studio_ui.workspace import run_detector

    ws = Workspace(home)
    frame = synthetic_table(rows, features)
    schema = infer_schema(frame)
    dataset_id = ws.add_dataset(f"synthetic {rows:,} x {features}", frame, schema.to_dict())
    ws.set_setting("last_dataset_id", dataset_id)
    run_id = ws.create_run(
        dataset_id,
        "autoencoder",
        {"epochs": 2, "batch_size": 512, "random_state": 0},
        {"scaling": "standard", "impute": "median", "max_categories": 20},
    )
    train_seconds = _timed(lambda: training.train_run(ws, run_id))
    scores = ws.load_scores(run_id)["score"].to_numpy()

    with navigation_mode(), _server_script_cache():
        at = app_test(timeout=300).run()  # imports and the Data page
        st.cache_resource.clear()
        cold = _timed(lambda: open_page(at, "scores"))
        if problems(at):
            raise RuntimeError(f"the Scores page failed: {problems(at)}")
        fresh = app_test(timeout=300).run()  # a second browser session
        warm = _timed(lambda: open_page(fresh, "scores"))
        reruns = []
        for q in np.linspace(0.90, 0.995, repeats):
            value = float(np.quantile(scores, q))
            box = at.number_input(key="threshold_number").set_value(value)
            reruns.append(_timed(box.run))
            shown = next(m.value for m in at.metric if m.label == "Flagged rows")
            expected = int(np.count_nonzero(scores > value))
            if shown != f"{expected:,}":
                raise RuntimeError(f"flagged count {shown} after threshold {value}, not {expected}")
        timings = AppTimings(
            rows=rows,
            features=features,
            train_seconds=train_seconds,
            scores_open_cold=cold,
            scores_open_warm=warm,
            threshold_reruns=reruns,
            load_before=load_before,
        )
        if with_umap:
            run = ws.get_run(run_id)
            rep_dim = int(run_detector(run_id).rep_dim_)
            # UMAP's first call in a process compiles its numba code (pynndescent's from 4096
            # rows on): measured apart, on random points of the same width.
            rng = np.random.default_rng(0)
            timings.umap_compile_seconds = _timed(
                lambda: project_2d(rng.normal(size=(5000, rep_dim)), method="umap")
            )
            measured: dict[str, float] = {}
            original = core_maps.project

            def timed_project(Z, method):
                start = time.perf_counter()
                out = original(Z, method)
                measured["seconds"], measured["rows"] = time.perf_counter() - start, len(Z)
                return out

            core_maps.project = timed_project
            try:
                page = open_page(at, "latent")
                page.radio(key="latent_method").set_value("umap").run()
                start = time.perf_counter()
                page.button(key="compute_umap").click().run()
                job = maps.map_job(run, "umap")
                if job is None or not job.wait(timeout=1800) or job.status != "done":
                    raise RuntimeError(f"the UMAP map failed: {job and job.error}")
                timings.umap_page_first = time.perf_counter() - start
            finally:
                core_maps.project = original
            timings.umap_seconds = measured["seconds"]
            timings.umap_rows = int(measured["rows"])
            timings.umap_page_show = _timed(page.run)
            if problems(page):
                raise RuntimeError(f"the Latent page failed: {problems(page)}")
            st.cache_resource.clear()  # the saved map is read from the run folder
            again = app_test(timeout=300).run()
            open_page(again, "latent")
            again.radio(key="latent_method").set_value("umap")
            timings.umap_page_cached = _timed(again.run)
            if not maps.map_available(run, "umap") or problems(again):
                raise RuntimeError(f"the saved UMAP map was not shown: {problems(again)}")
    timings.load_after = os.getloadavg()[0]
    return timings


def _verdict(value: float | None, goal: float) -> str:
    if value is None:
        return "not measured"
    return "meets the goal" if value <= goal else "misses the goal"


def machine_text(load_before: float, load_after: float) -> str:
    """Return the machine a section was measured on, with the 1-minute load around it."""
    import platform

    return (
        f"{platform.machine()} with {os.cpu_count()} CPU cores, Python "
        f"{platform.python_version()}; load average {load_before:.1f} before and "
        f"{load_after:.1f} after (the machine is shared with other work)"
    )


def dashboard_section(t: AppTimings, command: str) -> str:
    """Return the dashboard section of benchmarks/app.md for the timings."""
    med = statistics.median(t.threshold_reruns)
    sampled = ", trained on a 50,000-row sample" if t.rows > 50_000 else ""
    machine = machine_text(t.load_before, t.load_after)
    worst = max(t.threshold_reruns)
    verdict = _verdict
    lines = [
        "## Threshold rerun, Scores page, UMAP",
        "",
        f"Command: `{command}`",
        "",
        f"Data: {t.rows:,} rows x {t.features} numeric features (synthetic, 1 % anomalies), "
        f"an autoencoder run (2 epochs{sampled}, every row scored: {t.train_seconds:.1f} s). "
        "Times are server-side script runs measured with Streamlit's AppTest in one process "
        "(the real app.py and pages, no browser; compiled page scripts are kept between runs, "
        f"as a server keeps them) on {machine}.",
        "",
        "| measure | time | goal | |",
        "|---|---|---|---|",
        f"| rerun after a threshold change (median of {len(t.threshold_reruns)}) | "
        f"{1000 * med:.0f} ms | <= 150 ms | {verdict(med, 0.150)} |",
        f"| rerun after a threshold change (slowest) | {1000 * worst:.0f} ms | <= 150 ms | "
        f"{verdict(worst, 0.150)} |",
        f"| open the Scores page, caches empty | {t.scores_open_cold:.2f} s | <= 1 s | "
        f"{verdict(t.scores_open_cold, 1.0)} |",
        f"| open the Scores page, another session | {t.scores_open_warm:.2f} s | <= 1 s | "
        f"{verdict(t.scores_open_warm, 1.0)} |",
    ]
    if t.umap_seconds is not None:
        lines += [
            f"| UMAP of {t.umap_rows:,} latent codes (`ad_core.latent.project_2d`) | "
            f"{t.umap_seconds:.1f} s | <= 30 s | {verdict(t.umap_seconds, 30.0)} |",
            f"| first UMAP in a server process (numba compilation, 5,000 random codes) | "
            f"{t.umap_compile_seconds:.1f} s | once | |",
            f"| Latent page: Compute UMAP, click to map saved (codes + UMAP, background) | "
            f"{t.umap_page_first:.1f} s | | |",
            f"| Latent page: show the new UMAP map (holes + figure) | "
            f"{t.umap_page_show:.2f} s | | |",
            f"| Latent page: UMAP again, new session, caches empty (read from the run folder) | "
            f"{t.umap_page_cached:.2f} s | cached | |",
        ]
    lines += [
        "",
        "What a threshold change recomputes: the flagged mask and count, the confusion counts "
        "at the threshold and the 200 rows of the flagged table. Histogram bins, ROC/PR "
        "curves, feature contributions and the sorted order are cached per run.",
        "",
        "UMAP runs single-threaded here: `ad_core.latent.project_2d` seeds it "
        "(`random_state`), and umap-learn then turns off its parallel code. The Latent page "
        "computes it in a background thread and saves the map with the run.",
    ]
    lines += [f"- {n}" for n in t.notes]
    return "\n".join(lines) + "\n"


# --- report file: one section per part ---------------------------------------------------

PARTS = ("dashboard", "training", "retrain")
REPORT_HEADER = (
    "# Dashboard timings\n\n"
    "Written by `python -m ad_core.bench app`. Each section names the command that measured it: "
    "`--only PART` (dashboard, training, retrain) measures that part alone and replaces only "
    "its section here.\n"
)


def _marks(part: str) -> tuple[str, str]:
    return f"<!-- bench app: {part} -->", f"<!-- /bench app: {part} -->"


def merge_report(existing: str | None, sections: dict[str, str]) -> str:
    """Return benchmarks/app.md: the new ``sections`` by part, the others kept from ``existing``."""
    kept: dict[str, str] = {}
    for part in PARTS:
        start, end = _marks(part)
        found = re.search(re.escape(start) + r"\n(.*?)\n?" + re.escape(end), existing or "", re.S)
        if found:
            kept[part] = found.group(1)
    kept.update(sections)
    out = [REPORT_HEADER]
    for part in PARTS:
        if part in kept:
            start, end = _marks(part)
            out.append(f"{start}\n{kept[part].strip()}\n{end}\n")
    return "\n".join(out)


def report(t: AppTimings, command: str) -> str:
    """Return benchmarks/app.md holding the dashboard section only."""
    return merge_report(None, {"dashboard": dashboard_section(t, command)})


# --- shared helpers of the training parts ------------------------------------------------

#: each of two trainings at once should take at most this many times its time alone
TOGETHER_GOAL = 2.5


def app_default_params(detector: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return the settings the app's form for ``detector`` submits when nothing is changed.

    ``overrides``: the form's starting values instead of the registry defaults (the Label
    page starts its retrain form from the base run's settings).
    """
    from ad_core import get_detector_info
    from ad_studio_ui.forms import params_from_widgets, widget_default

    info = get_detector_info(detector)
    overrides = overrides or {}
    values = {s.name: widget_default(s, overrides.get(s.name, s.default)) for s in info.params}
    return params_from_widgets(info, values)


def _with_epochs(params: dict[str, Any], epochs: int | None) -> dict[str, Any]:
    """Return ``params`` with every epoch count set to ``epochs`` (quick checks), or as is."""
    if epochs is None:
        return dict(params)
    return {
        k: (int(epochs) if k in ("epochs", "pretrain_epochs") else v) for k, v in params.items()
    }


def _finished(job: Any) -> float:
    """Wait for a training job; return its seconds from start to run saved."""
    job.wait()
    if job.status != "done":
        raise RuntimeError(f"training run {job.run_id} ended {job.status}: {job.error}")
    return float(job.finished - job.started)


def _cpu_seconds() -> float:
    """Return the CPU seconds this process (all its threads) has used."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _load() -> float:
    return os.getloadavg()[0]


def _settings_text(params: dict[str, Any]) -> str:
    shown = [f"{k} {v}" for k, v in params.items() if v is not None]
    return ", ".join(shown)


def _threads_text(counts: list[int]) -> str:
    """Return the thread counts a job was sized to, in order, repeats dropped: "1", "2 -> 1"."""
    distinct = [c for i, c in enumerate(counts) if i == 0 or c != counts[i - 1]]
    return " -> ".join(str(c) for c in distinct) or "?"


# --- two trainings at once ---------------------------------------------------------------

#: the ways two trainings are run, in the order they are reported; "before" and "after" of
#: the thread sizing are ``app_default`` and ``app``, the thread rows tell the causes apart
MODES = {
    "app": "app: a process per job, threads sized (now)",
    "app_default": "app: a process per job, default threads (before)",
    "threads": "a thread per job, threads sized (the path before processes)",
    "threads_default": "a thread per job, default threads (the issue report's path)",
}
#: a start together still running after this many times the slower job's time alone (and at
#: least STOP_AFTER_MIN_S) is cancelled and reported as "at least"
STOP_AFTER_RATIO = 10.0
STOP_AFTER_MIN_S = 60.0


@dataclass
class JobTiming:
    """One training job: seconds alone and beside the other job."""

    name: str
    alone: float
    together: float
    threads_alone: list[int]
    threads_together: list[int]
    cores_alone: float | None  #: CPU seconds / wall seconds while it ran alone
    load_alone: float
    stopped: bool = False  #: together was cancelled at the limit: ``together`` is a lower bound

    @property
    def ratio(self) -> float:
        """Return its time together over its time alone."""
        return self.together / self.alone


@dataclass
class ConcurrencyTimings:
    """The jobs alone, then started together, run one way (``mode``, a key of MODES)."""

    mode: str
    jobs: list[JobTiming]
    together_wall: float  #: from the first start to the last job saved
    together_cores: float | None  #: CPU seconds of the jobs / together_wall
    load_together: float


@dataclass
class JobSummary:
    """One job of one mode over the repeats."""

    name: str
    alone: float  #: median seconds
    together: float  #: median seconds
    ratios: list[float]  #: together / alone of every repeat
    stopped: list[bool]  #: whether each repeat's together was cancelled at the limit
    threads_alone: str
    threads_together: str
    threads_together_all: list[int]
    cores_alone: float | None

    @property
    def ratio(self) -> float:
        """Return the median of the repeats' ratios (a lower bound if repeats were stopped)."""
        return statistics.median(self.ratios)


@dataclass
class ModeSummary:
    """One mode over the repeats."""

    mode: str
    jobs: list[JobSummary]
    together_cores: float | None
    loads: list[float]
    repeats: int


def _median_or_none(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _distinct_text(texts: Any) -> str:
    return "; ".join(dict.fromkeys(texts))


@dataclass
class TrainingTimings:
    """What the two-trainings part measured."""

    rows: int
    features: int
    params: dict[str, Any]
    preprocessing: dict[str, Any]
    default_threads: int
    cores: int
    torch_info: str
    start_method: str = ""
    modes: list[ConcurrencyTimings] = field(default_factory=list)
    load_before: float = 0.0
    load_after: float = 0.0
    repeats: int = 1

    def summary(self, name: str) -> ModeSummary | None:
        """Return the measurements of one mode (a key of MODES) over the repeats, if any."""
        runs = [m for m in self.modes if m.mode == name]
        if not runs:
            return None
        jobs = []
        for i, first in enumerate(runs[0].jobs):
            each = [r.jobs[i] for r in runs]
            jobs.append(
                JobSummary(
                    name=first.name,
                    alone=statistics.median(j.alone for j in each),
                    together=statistics.median(j.together for j in each),
                    ratios=[j.ratio for j in each],
                    stopped=[j.stopped for j in each],
                    threads_alone=_distinct_text(_threads_text(j.threads_alone) for j in each),
                    threads_together=_distinct_text(
                        _threads_text(j.threads_together) for j in each
                    ),
                    threads_together_all=[c for j in each for c in j.threads_together],
                    cores_alone=_median_or_none([j.cores_alone for j in each]),
                )
            )
        loads = [x for r in runs for x in (*(j.load_alone for j in r.jobs), r.load_together)]
        return ModeSummary(
            mode=name,
            jobs=jobs,
            together_cores=_median_or_none([r.together_cores for r in runs]),
            loads=loads,
            repeats=len(runs),
        )


class _CpuMeter:
    """CPU seconds used during a block by this process and, optionally, its descendants.

    The app's training processes are children of its fork server, not of this process, so
    ``getrusage`` does not see them: ``descendants=True`` samples ``/proc`` every 0.2 s
    (Linux only; the last fraction of a second of a process that ends between two samples
    is missed). ``cores`` is None where ``/proc`` cannot be read.
    """

    def __init__(self, descendants: bool) -> None:
        self.descendants = descendants
        self.cores: float | None = None
        self._seen: dict[int, float] = {}
        self._stop = threading.Event()

    @staticmethod
    def _tree() -> dict[int, float] | None:
        """Return CPU seconds of every descendant of this process, by pid (None off Linux)."""
        tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        parent: dict[int, int] = {}
        used: dict[int, float] = {}
        try:
            names = os.listdir("/proc")
        except OSError:
            return None
        for name in names:
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            pid = int(name)
            parent[pid] = int(fields[1])
            used[pid] = (int(fields[11]) + int(fields[12])) / tick
        me, out, todo = os.getpid(), {}, [os.getpid()]
        children: dict[int, list[int]] = {}
        for pid, ppid in parent.items():
            children.setdefault(ppid, []).append(pid)
        while todo:
            for child in children.get(todo.pop(), []):
                if child != me:
                    out[child] = used[child]
                    todo.append(child)
        return out

    def _sample(self) -> bool:
        tree = self._tree()
        if tree is None:
            return False
        for pid, seconds in tree.items():
            self._seen[pid] = max(self._seen.get(pid, 0.0), seconds)
        return True

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            self._sample()

    def __enter__(self) -> _CpuMeter:
        self._start = time.perf_counter()
        self._self = _cpu_seconds()
        self._ok = True
        if self.descendants:
            self._ok = self._sample()
            self._initial = dict(self._seen)
            self._thread = threading.Thread(target=self._loop, name="bench-cpu", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        used = _cpu_seconds() - self._self
        if self.descendants:
            self._stop.set()
            self._thread.join()
            self._ok = self._sample() and self._ok
            used += sum(s - self._initial.get(pid, 0.0) for pid, s in self._seen.items())
        wall = time.perf_counter() - self._start
        self.cores = used / wall if self._ok and wall > 0 else None


@contextlib.contextmanager
def _job_thread_counts(default: int | None) -> Iterator[dict[str, list[int]]]:
    """Record the thread count every app training job is sized to, by the calling thread.

    ``default``: every job gets this count instead, the behaviour before the sizing.
    ``start_training`` imports ``job_threads`` from ``ad_core.nn.threads`` each time it is
    called, so replacing it there reaches the jobs started inside the block. A job is sized
    once by the caller of ``start_training``, then by its relay thread (named after the job).
    """
    from ad_core.nn import threads as nn_threads

    original = nn_threads.job_threads
    seen: dict[str, list[int]] = {}
    lock = threading.Lock()

    def recorded(n_jobs: int, **kwargs: Any) -> int:
        n = original(n_jobs, **kwargs) if default is None else default
        with lock:
            seen.setdefault(threading.current_thread().name, []).append(int(n))
        return n

    nn_threads.job_threads = recorded
    try:
        yield seen
    finally:
        nn_threads.job_threads = original


@dataclass
class _ThreadJob:
    """A training in a thread of this process, as the app ran them before (see _thread_job)."""

    run_id: int
    started: float = field(default_factory=time.time)
    finished: float | None = None
    status: str = "running"
    error: str | None = None
    threads: list[int] = field(default_factory=list)
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def cancel(self) -> None:
        self.cancel_requested.set()

    def wait(self, timeout: float | None = None) -> bool:
        if self.thread is not None:
            self.thread.join(timeout)
        return self.status != "running"


_THREAD_JOBS: set[int] = set()
_THREAD_JOBS_LOCK = threading.Lock()


def _thread_job(
    ws: Any, dataset_id: str, params: dict, prep: dict, features: int, default: int | None
) -> _ThreadJob:
    """Start a training in a thread of this process, as ``start_training`` did before a
    process per job: the thread sets its own torch threads (``job_threads`` of the jobs
    running, or ``default``) at its start and after every epoch, then runs ``train_run``."""
    import torch

    from ad_core import FitCancelled
    from ad_core.nn.threads import job_threads
    from ad_core.runs import TrainingSetup
    from ad_studio_ui.training import _step_flops, setup_key, train_run

    setup = TrainingSetup()
    run_id = ws.create_run(dataset_id, "deep_sad", params, dict(prep))
    ws.set_setting(setup_key(run_id), setup.to_dict())
    flops = _step_flops(max(1, features), params)
    job = _ThreadJob(run_id=run_id)

    def size_threads() -> None:
        with _THREAD_JOBS_LOCK:
            n_running = len(_THREAD_JOBS)
        n = default if default is not None else job_threads(max(1, n_running), step_flops=flops)
        job.threads.append(int(n))
        torch.set_num_threads(n)  # this thread's own count (OpenMP builds)

    def callback(event: dict) -> bool:
        size_threads()
        return not job.cancel_requested.is_set()

    def work() -> None:
        try:
            size_threads()
            train_run(ws, run_id, setup=setup, callback=callback)
            job.status = "done"
        except FitCancelled:
            job.status = "cancelled"
        except Exception as exc:
            job.error, job.status = f"{type(exc).__name__}: {exc}", "failed"
        finally:
            job.finished = time.time()
            with _THREAD_JOBS_LOCK:
                _THREAD_JOBS.discard(run_id)
            ws.close()

    with _THREAD_JOBS_LOCK:
        _THREAD_JOBS.add(run_id)
    job.thread = threading.Thread(target=work, name=f"bench-train-{run_id}", daemon=True)
    job.thread.start()
    return job


def _wait_all(jobs: list[Any], limit: float | None) -> bool:
    """Wait for the jobs; cancel the ones still running after ``limit`` s. Return True if so."""
    deadline = None if limit is None else time.perf_counter() + limit
    for job in jobs:
        job.wait(None if deadline is None else max(0.0, deadline - time.perf_counter()))
    late = [job for job in jobs if job.status == "running"]
    for job in late:
        job.cancel()
    for job in late:
        job.wait()
    for job in jobs:
        if job.status not in ("done", "cancelled") or (job.status == "cancelled" and not late):
            raise RuntimeError(f"training run {job.run_id} ended {job.status}: {job.error}")
    return bool(late)


def _measure(
    ws: Any,
    datasets: list[tuple[str, str]],
    params: dict,
    prep: dict,
    features: int,
    mode: str,
    default_threads: int,
) -> ConcurrencyTimings:
    """Time the jobs alone, then together, run one way (a key of MODES)."""
    from ad_studio_ui.training import start_training

    in_app = mode.startswith("app")
    default = default_threads if mode.endswith("_default") else None

    with _job_thread_counts(default if in_app else None) as seen:

        def start(dataset_id: str) -> Any:
            if not in_app:
                return _thread_job(ws, dataset_id, params, prep, features, default)
            job = start_training(ws, dataset_id, "deep_sad", params, prep)
            job.bench_threads = seen.pop("MainThread", [])  # sized by this thread first
            return job

        def counts(job: Any) -> list[int]:
            if not in_app:
                return list(job.threads)
            return [*job.bench_threads, *seen.get(job.thread.name, [])]

        alone = []
        for _, dataset_id in datasets:
            load = _load()
            with _CpuMeter(descendants=in_app) as meter:
                job = start(dataset_id)
                _wait_all([job], None)
            alone.append((float(job.finished - job.started), counts(job), meter.cores, load))
        limit = max(STOP_AFTER_MIN_S, STOP_AFTER_RATIO * max(a[0] for a in alone))
        load = _load()
        with _CpuMeter(descendants=in_app) as meter:
            wall = time.perf_counter()
            jobs = [start(dataset_id) for _, dataset_id in datasets]
            stopped = _wait_all(jobs, limit)
            wall = time.perf_counter() - wall
    return ConcurrencyTimings(
        mode=mode,
        jobs=[
            JobTiming(
                name,
                a[0],
                float(job.finished - job.started),
                a[1],
                counts(job),
                a[2],
                a[3],
                stopped=stopped and job.status == "cancelled",
            )
            for (name, _), a, job in zip(datasets, alone, jobs, strict=True)
        ],
        together_wall=wall,
        together_cores=meter.cores,
        load_together=load,
    )


def run_training(
    home: Path,
    *,
    rows: int = 4_800,
    features: int = 5,
    epochs: int | None = None,
    modes: tuple[str, ...] = tuple(MODES),
    repeats: int = 3,
) -> TrainingTimings:
    """Time two Deep SAD trainings at once against each alone, in the ways ``modes`` (MODES).

    Each way is measured ``repeats`` times, the ways taking turns so that drifting load from
    other work hits each alike; the report gives medians.
    """
    os.environ["AD_STUDIO_HOME"] = str(home)
    load_before = _load()
    import torch

    # Read before any job runs: a thread's first torch call takes the count last set by any
    # thread (torch keeps it in one global), so once a job has set 1, so would this thread.
    default_threads = torch.get_num_threads()
    from ad_core.data import infer_schema
    from ad_core.nn.threads import usable_cores
    from ad_core.store import Workspace
    from ad_studio_ui import training
    from ad_studio_ui.state import DEFAULT_PREPROCESSING

    ws = Workspace(home)
    params = _with_epochs(app_default_params("deep_sad"), epochs)
    prep = dict(DEFAULT_PREPROCESSING)
    datasets = []
    for name, seed in (("A", 0), ("B", 1)):
        frame = synthetic_table(rows, features, seed=seed).drop(columns="label")
        title = f"synthetic {rows:,} x {features} ({name})"
        datasets.append((name, ws.add_dataset(title, frame, infer_schema(frame).to_dict())))
    # A server has started its fork server (the Train page asks for it) and imported the
    # training code before a job starts: one short training of each kind pays those
    # first-call costs outside the clock.
    if hasattr(training, "prepare_processes"):
        training.prepare_processes()
    warm = _with_epochs(params, 1)
    _wait_all([training.start_training(ws, datasets[0][1], "deep_sad", warm, prep)], None)
    _wait_all([_thread_job(ws, datasets[0][1], warm, prep, features, None)], None)
    context = getattr(training, "_CONTEXT", None)

    parallel = torch.__config__.parallel_info()
    backend = re.search(r"ATen parallel backend: (\S+)", parallel)
    timings = TrainingTimings(
        rows=rows,
        features=features,
        params=params,
        preprocessing=prep,
        default_threads=default_threads,
        cores=usable_cores(),
        torch_info=f"{torch.__version__}, {backend.group(1) if backend else '?'} parallel backend",
        start_method=context.get_start_method() if context is not None else "",
        load_before=load_before,
        repeats=max(1, int(repeats)),
    )
    for _ in range(timings.repeats):
        for mode in (m for m in MODES if m in modes):
            timings.modes.append(
                _measure(ws, datasets, params, prep, features, mode, default_threads)
            )
    ws.close()
    timings.load_after = _load()
    return timings


def _ratios_text(j: JobSummary) -> str:
    return ", ".join(
        f"{'>=' if s else ''}{r:.2f}" for r, s in zip(j.ratios, j.stopped, strict=True)
    )


def _ratio_text(j: JobSummary) -> str:
    return f"{'>=' if any(j.stopped) else ''}{j.ratio:.2f}x"


def training_diagnosis(t: TrainingTimings) -> list[str]:
    """Return what the figures say about the two-at-once goal (sentences, from the figures)."""
    app, before = t.summary("app"), t.summary("app_default")
    threads, first = t.summary("threads"), t.summary("threads_default")
    out: list[str] = []

    def met(m: ModeSummary) -> bool:
        return all(j.ratio <= TOGETHER_GOAL and not any(j.stopped) for j in m.jobs)

    def mean(values: Any) -> float:
        return statistics.mean(values)

    if app is not None:
        worst = max(r for j in app.jobs for r in j.ratios)
        out.append(
            f"The app now (a process per job, threads sized): the jobs "
            f"{'meet' if met(app) else 'miss'} the goal, "
            f"{', '.join(_ratio_text(j) for j in app.jobs)} their time alone (median of "
            f"{app.repeats}; worst {worst:.2f}x; goal <= {TOGETHER_GOAL}x)."
        )
    if app is not None and before is not None:
        counts = sorted({c for j in before.jobs for c in j.threads_together_all})
        lower = any(any(j.stopped) for j in before.jobs)
        then = mean(j.together for j in before.jobs)
        now = mean(j.together for j in app.jobs)
        busy = (
            f", both keeping {before.together_cores:.2f} of {t.cores} cores busy"
            if before.together_cores is not None
            else ""
        )
        out.append(
            f"Before the sizing, same run: every job at {'/'.join(map(str, counts))} threads "
            f"took {'at least ' if lower else ''}{then:.1f} s together (mean of the medians; "
            f"{', '.join(_ratio_text(j) for j in before.jobs)} their time alone{busy}), "
            f"against {now:.1f} s sized: {'at least ' if lower else ''}{then / now:.1f}x "
            "faster now."
            + (
                f" {len(before.jobs) * max(counts)} OpenMP threads on {t.cores} cores wait on "
                "each other: an OpenMP thread spins while it waits for the rest of its team, "
                "and a team cannot go on while one of its threads is off its core, so the "
                "cores stay busy and little gets done."
                if counts and len(before.jobs) * max(counts) > t.cores and not met(before)
                else ""
            )
        )
    if threads is not None:
        sized_threads = sorted({c for j in threads.jobs for c in j.threads_together_all})
        text = (
            f"In threads of one process (the app's path before), with the threads sized "
            f"({'/'.join(map(str, sized_threads))} each, no more than the cores), the jobs "
            f"took {', '.join(_ratio_text(j) for j in threads.jobs)} their time alone"
        )
        alone = _median_or_none([j.cores_alone for j in threads.jobs])
        if alone is not None and threads.together_cores is not None:
            text += (
                f"; alone a job kept {alone:.2f} cores busy, both together "
                f"{threads.together_cores:.2f} of {t.cores}"
            )
        if app is not None and app.together_cores is not None:
            text += f" (in two processes: {app.together_cores:.2f})"
        out.append(text + ".")
        if (
            app is not None
            and met(app)
            and not met(threads)
            and threads.together_cores is not None
            and app.together_cores is not None
            and threads.together_cores < app.together_cores - 0.3
        ):
            out.append(
                "So in one process the jobs take turns on the GIL, which no thread count "
                "changes: a step of this small network is mostly Python (module calls, the "
                "optimiser, autograd bookkeeping), which holds the interpreter lock; torch "
                "lets it go only inside each op, for microseconds. Two training threads then "
                "run one at a time (2x their time alone at best) and lose more handing the "
                "lock over thousands of times a second (beyond 2x). In processes of their "
                "own, each has its own interpreter and core."
            )
    if first is not None:
        out.append(
            "The path of the issue report (threads of one process, every job at the process "
            f"default threads): {', '.join(_ratio_text(j) for j in first.jobs)} their time "
            f"alone, {mean(j.together for j in first.jobs):.1f} s together."
        )
    return out


def training_section(t: TrainingTimings, command: str) -> str:
    """Return the two-trainings section of benchmarks/app.md."""
    p = t.params
    method = f" (multiprocessing start method: {t.start_method})" if t.start_method else ""
    lines = [
        "## Two trainings at once (Deep SAD)",
        "",
        f"Command: `{command}`",
        "",
        f"Data: two synthetic tables of {t.rows:,} rows x {t.features} numeric features "
        "(`synthetic_table`, seeds 0 and 1, no label column, so the Train page's default "
        "set-up trains on every row). Deep SAD with the Train page's default settings "
        f"({p.get('pretrain_epochs')} pretraining + {p.get('epochs')} training epochs, batch "
        f"{p.get('batch_size')}, random_state {p.get('random_state')}). The app rows start "
        "each job with `ad_studio_ui.training.start_training` on a Workspace, as the Train "
        f"page does{method}; the thread rows run `train_run` in a thread per job, as "
        "`start_training` did before. A job's time runs from its start to its run saved "
        "(`finished - started` of the job: load, preprocess, fit, score, save, explain). "
        "Each job is timed alone, then both are started together; the goal is at most "
        f"{TOGETHER_GOAL}x its time alone. Every job at the process default threads (before "
        "the sizing) is `ad_core.nn.threads.job_threads` replaced to return that count. All "
        f"ways are measured in the same run, {t.repeats} time(s) each, taking turns. Torch "
        f"{t.torch_info}, {t.default_threads} threads by default; "
        f"{machine_text(t.load_before, t.load_after)}.",
        "",
        "| way | job | alone | together | together / alone (every time) | goal <= "
        f"{TOGETHER_GOAL}x | threads alone / together | cores busy alone / together | load |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def cores(value: float | None) -> str:
        return "?" if value is None else f"{value:.2f}"

    for mode in MODES:
        m = t.summary(mode)
        if m is None:
            continue
        low, high = min(m.loads), max(m.loads)
        for j in m.jobs:
            at_least = ">= " if any(j.stopped) else ""
            verdict = "misses the goal" if any(j.stopped) else _verdict(j.ratio, TOGETHER_GOAL)
            lines.append(
                f"| {MODES[mode]} | {j.name} | {j.alone:.1f} s | {at_least}{j.together:.1f} s | "
                f"{_ratio_text(j)} ({_ratios_text(j)}) | {verdict} | "
                f"{j.threads_alone} / {j.threads_together} | "
                f"{cores(j.cores_alone)} / {cores(m.together_cores)} (both) | "
                f"{low:.1f}-{high:.1f} |"
            )
    lines += [
        "",
        "Alone, together, cores busy: medians over the repeats; the ratio is the median of "
        'each repeat\'s ratio. ">=": both started together were still running after '
        f"{STOP_AFTER_RATIO:g}x the slower one's time alone (at least {STOP_AFTER_MIN_S:g} s) "
        "and were cancelled; the time is a lower bound. Threads: the counts each job was "
        "sized to (at its start and after every epoch). Cores busy: CPU seconds over wall "
        "seconds (together: of both jobs, over the time until the last one finished; the "
        "training processes sampled from /proc every 0.2 s). Load: the lowest and highest "
        "1-minute load average as the measurements started; it counts the benchmark's own "
        "jobs too (two at once, and the before rows' four OpenMP threads, which the average "
        "carries into the rows measured after them).",
        "",
    ]
    lines += training_diagnosis(t)
    return "\n".join(lines) + "\n"


# --- the Deep SAD retrain ----------------------------------------------------------------


@dataclass
class RetrainRun:
    """One run of the retrain part."""

    what: str
    detector: str
    params: dict[str, Any]
    seconds: float
    threads: int
    auroc: float | None
    evaluated_on: str | None
    load: float
    repeats: list[float] = field(default_factory=list)  #: every time measured (seconds)


@dataclass
class RetrainTimings:
    """What the retrain part measured."""

    dataset: str
    n_rows: int
    n_features: int
    setup: dict[str, Any]
    n_labels: int
    n_labelled_anomalies: int
    runs: list[RetrainRun] = field(default_factory=list)
    load_before: float = 0.0
    load_after: float = 0.0


def _timed_run(ws: Any, job: Any, what: str, params: dict, load: float) -> RetrainRun:
    seconds = _finished(job)
    metrics = ws.get_run(job.run_id).metrics or {}
    return RetrainRun(
        what=what,
        detector=job.detector,
        params=params,
        seconds=seconds,
        threads=int(job.threads),
        auroc=metrics.get("auroc"),
        evaluated_on=metrics.get("evaluated_on"),
        load=load,
    )


def run_retrain(
    home: Path,
    *,
    sample: str = "ecg5000",
    n_each: int = 5,
    epochs: int | None = None,
    with_prefilled: bool = True,
    repeats: int = 3,
) -> RetrainTimings:
    """Time a Deep SAD retrain with ``2 * n_each`` labels on a bundled sample, as the app runs it.

    An autoencoder base run with the Train page's defaults; then ``n_each`` anomalies and
    ``n_each`` normal rows labelled by their ground truth, the highest-scored of each class
    first (the Label page's "Highest scores" queue, answered by the ground truth); then the
    retrain with Deep SAD's default settings, and (``with_prefilled``) with the settings the
    Label page's retrain form starts with (the base run's, where Deep SAD shares them).
    Each retrain runs ``repeats`` times (a new run each time); the median is reported.
    """
    os.environ["AD_STUDIO_HOME"] = str(home)
    load_before = _load()
    from ad_core import get_detector_info
    from ad_core.data import Schema, ground_truth, row_keys
    from ad_core.runs import DEFAULT_HOLDOUT, TrainingSetup
    from ad_core.store import Workspace
    from ad_studio_ui import training
    from ad_studio_ui.datasets import add_sample
    from ad_studio_ui.forms import APP_RANDOM_STATE
    from ad_studio_ui.state import DEFAULT_PREPROCESSING
    from ad_studio_ui.training import run_setup, start_training

    if hasattr(training, "prepare_processes"):
        training.prepare_processes()  # as the Train page does when it opens
    ws = Workspace(home)
    dataset_id = add_sample(ws, sample)
    record = ws.get_dataset(dataset_id)
    frame = ws.load_dataset_frame(dataset_id)
    schema = Schema.from_dict(record.schema)
    truth = ground_truth(frame, schema)
    keys = np.asarray(row_keys(frame, schema)).astype(str)
    if truth is None or not ((truth == 1).any() and (truth == 0).any()):
        raise RuntimeError(f"the {sample} sample has no ground truth with both classes")
    # The Train page's defaults: every row, a held-out share when there is a ground truth.
    setup = TrainingSetup(train_on="all", holdout=DEFAULT_HOLDOUT, seed=APP_RANDOM_STATE)
    prep = dict(DEFAULT_PREPROCESSING)
    base_params = _with_epochs(app_default_params("autoencoder"), epochs)
    load = _load()
    base_job = start_training(ws, dataset_id, "autoencoder", base_params, prep, setup=setup)
    base = _timed_run(
        ws, base_job, "autoencoder base run, the Train page's defaults", base_params, load
    )

    stored = ws.load_scores(base_job.run_id)
    score_of = dict(zip(stored["row_key"].astype(str), stored["score"], strict=True))
    order = sorted(range(len(keys)), key=lambda i: -score_of[keys[i]])
    for value in (1, 0):
        chosen = [keys[i] for i in order if truth[i] == value][:n_each]
        ws.set_labels(dataset_id, chosen, value, "bench")
    position = {k: i for i, k in enumerate(keys)}
    labels = np.full(len(keys), -1, dtype=np.int64)
    for key, value in ws.labels(dataset_id).items():
        labels[position[key]] = value

    sad_names = {p.name for p in get_detector_info("deep_sad").params}
    base_record = ws.get_run(base_job.run_id)
    variants = [("Deep SAD retrain, Deep SAD's default settings", app_default_params("deep_sad"))]
    if with_prefilled:
        shared = {k: v for k, v in (base_record.params or {}).items() if k in sad_names}
        variants.append(
            (
                "Deep SAD retrain, the settings the Label page's form starts with",
                app_default_params("deep_sad", overrides=shared),
            )
        )
    timings = RetrainTimings(
        dataset=record.name,
        n_rows=len(frame),
        n_features=len(schema.feature_columns),
        setup=setup.to_dict(),
        n_labels=int((labels != -1).sum()),
        n_labelled_anomalies=int((labels == 1).sum()),
        runs=[base],
        load_before=load_before,
    )
    for what, params in variants:
        params = _with_epochs(params, epochs)
        measured = []
        for _ in range(max(1, int(repeats))):  # the same retrain again: a new run each time
            load = _load()
            job = start_training(
                ws,
                dataset_id,
                "deep_sad",
                params,
                base_record.preprocessing or prep,
                labels=labels,
                setup=run_setup(ws, base_job.run_id),
                parent_run=base_job.run_id,
            )
            measured.append(_timed_run(ws, job, what, params, load))
        middle = sorted(measured, key=lambda r: r.seconds)[(len(measured) - 1) // 2]
        middle.repeats = [r.seconds for r in measured]
        timings.runs.append(middle)
    ws.close()
    timings.load_after = _load()
    return timings


def retrain_section(t: RetrainTimings, command: str) -> str:
    """Return the retrain section of benchmarks/app.md."""
    held = (
        f"{t.setup.get('holdout', 0):.0%} held out" if t.setup.get("holdout") else "none held out"
    )
    lines = [
        "## Deep SAD retrain with labels",
        "",
        f"Command: `{command}`",
        "",
        f"Data: the {t.dataset} sample ({t.n_rows:,} rows x {t.n_features} features), the "
        f"Train page's default set-up (train on {t.setup.get('train_on')} rows, {held}, seed "
        f"{t.setup.get('seed')}). An autoencoder base run, then {t.n_labels} rows labelled by "
        f"their ground truth ({t.n_labelled_anomalies} anomalies, "
        f"{t.n_labels - t.n_labelled_anomalies} normal: the highest-scored of each class "
        "under the base run), then the retrain as the Label page starts it: "
        '`start_training(ws, dataset, "deep_sad", params, base preprocessing, labels=labels, '
        "setup=<the base run's>, parent_run=base)`, timed from its start to its run saved. "
        f"Measured on {machine_text(t.load_before, t.load_after)}.",
        "",
        "| run | settings | time | every time | torch threads | AUROC | load |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in t.runs:
        auroc = "-" if r.auroc is None else f"{r.auroc:.3f} ({r.evaluated_on})"
        every = ", ".join(f"{s:.2f}" for s in r.repeats) + " s" if len(r.repeats) > 1 else "-"
        lines.append(
            f"| {r.what} | {_settings_text(r.params)} | {r.seconds:.1f} s | {every} | "
            f"{r.threads} | {auroc} | {r.load:.1f} |"
        )
    lines += [
        "",
        "Time: the median of the retrains run (each a new run with the same labels and "
        "settings); the base run is timed once, and, being the first training in the "
        "process, includes first-call costs a running server has paid already (starting the "
        "fork server the training processes come from, imports). "
        "Load: the 1-minute load average when the run started. AUROC on the ground truth, "
        "unlabelled rows only.",
    ]
    return "\n".join(lines) + "\n"
