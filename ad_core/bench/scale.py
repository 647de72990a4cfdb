"""``python -m ad_core.bench scale``: scoring 1M rows with the local engine and with Dask.

    python -m ad_core.bench scale [--rows 1000000] [--features 32] [--out benchmarks/scale.md]

Data: a synthetic table (a low-rank Gaussian plus noise, 1 % of the rows shifted as
anomalies), written as CSV and as Parquet. Two runs are trained through ``ad_core.runs`` on a
50,000-row sample of it (the app's sample size): an autoencoder and Deep SAD, 5 epochs each
(this measures scoring, not training). Each run then scores the whole table through the
command line, ``ad-studio score``, in a child process:

- ``--engine local``: the streaming engine, one part at a time;
- ``--engine dask``: a LocalCluster of 2 single-threaded worker processes (started and
  stopped by the command, and counted in its time).

Figures per job: wall seconds of the child (Python start, imports and, for Dask, the cluster
included), rows/s from that, and peak resident memory of the whole process tree (the client
plus Dask's scheduler, nannies and workers), sampled every 20 ms with psutil. Both engines'
scores are compared (max difference).

Then the app's path with a 1M-row upload, in a child process: ``add_file`` (read the CSV,
infer the roles, store it), ``load_dataset_frame``, and ``train_run`` (the sample, the fit and
scoring every row), each with its time and its peak memory above the process's memory before
the step, as a multiple of the table's size in memory.

Goals on 2 cores: local scoring of the 1M-row CSV in <= 60 s with peak RSS <= 1.5 GB; Dask
within 1.5x of local on one machine; no app step holding the table more than twice.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

GOAL_LOCAL_SECONDS = 60.0
GOAL_LOCAL_RSS = 1.5 * 2**30
GOAL_DASK_RATIO = 1.5
GOAL_TABLE_COPIES = 2.0
DETECTORS = {
    "autoencoder": {"epochs": 5, "random_state": 0},
    "deep_sad": {"epochs": 5, "random_state": 0},
}


def synthetic_frame(rows: int, features: int, seed: int = 0):
    """Return a frame of ``features`` float columns x0.. and a ``label`` (1 = anomaly)."""
    import pandas as pd

    from ad_core.bench.speed import synthetic_table

    X = synthetic_table(rows, features, seed).astype(np.float64)
    rng = np.random.default_rng(seed + 1)
    label = np.zeros(rows, dtype=np.int8)
    anomalies = rng.choice(rows, size=max(1, rows // 100), replace=False)
    X[anomalies] += rng.normal(0, 3, size=(len(anomalies), features))
    label[anomalies] = 1
    frame = pd.DataFrame(np.round(X, 5), columns=[f"x{i}" for i in range(features)])
    frame["label"] = label
    return frame


class TreeMemory:
    """Sample the summed RSS of a process and its descendants until stopped; keep the peak."""

    def __init__(self, pid: int, every: float = 0.02) -> None:
        import psutil

        self.root = psutil.Process(pid)
        self.every = every
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            total = 0
            for proc in procs:
                try:
                    total += proc.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            self.peak = max(self.peak, total)
            time.sleep(self.every)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def _child_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["AD_STUDIO_HOME"] = str(home)
    env.pop("AD_STUDIO_DEBUG", None)
    return env


def score_job(home: Path, run_id: int, data: Path, out: Path, engine: str) -> dict:
    """Run ``ad-studio score`` in a child; return its seconds, peak tree RSS and output."""
    command = [
        sys.executable,
        "-m",
        "ad_core",
        "score",
        str(run_id),
        str(data),
        "--out",
        str(out),
        "--engine",
        engine,
        "--quiet",
    ]
    start = time.perf_counter()
    proc = subprocess.Popen(
        command, env=_child_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    memory = TreeMemory(proc.pid)
    stdout, stderr = proc.communicate()
    seconds = time.perf_counter() - start
    peak = memory.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {stderr.strip()}")
    return {"seconds": seconds, "peak_rss": peak, "stdout": stdout.strip()}


_APP_STEPS = r"""
import json, sys, threading, time
import psutil
import torch, sklearn.ensemble  # loaded before the steps: their memory is not the table's
import ad_core.detectors
from pathlib import Path
from ad_core.store import Workspace
from ad_core.runs import add_file, train_run, DEFAULT_PREPROCESSING

path, home, detector, params = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
me = psutil.Process()
state = {"peak": 0, "stop": False}

def sample():
    while not state["stop"]:
        state["peak"] = max(state["peak"], me.memory_info().rss)
        time.sleep(0.01)

threading.Thread(target=sample, daemon=True).start()
steps = []

def step(name, fn):
    time.sleep(0.05)
    before = me.memory_info().rss
    state["peak"] = before
    start = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - start
    time.sleep(0.05)
    steps.append({"step": name, "seconds": seconds, "before": before, "peak": state["peak"]})
    return value

ws = Workspace(home)
data = step("read the file's bytes (the upload)", lambda: Path(path).read_bytes())
dataset_id, _ = step("add_file: read the CSV, infer roles, store Parquet",
                     lambda: add_file(ws, Path(path).name, data))
del data
frame = step("load_dataset_frame (what every page reads)", lambda: ws.load_dataset_frame(dataset_id))
table_bytes = int(frame.memory_usage(deep=True).sum())
rows = len(frame)
del frame
run_id = ws.create_run(dataset_id, detector, params, dict(DEFAULT_PREPROCESSING))
result = step("train_run: sample 50k, fit, score every row, save",
              lambda: train_run(ws, run_id))
state["stop"] = True
print(json.dumps({"steps": steps, "table_bytes": table_bytes, "rows": rows,
                  "auroc": result.metrics.get("auroc")}))
"""


def app_steps(path: Path, home: Path, detector: str, params: dict) -> dict:
    """Run the app's upload-train-score path in a child; return its per-step figures."""
    proc = subprocess.run(
        [sys.executable, "-c", _APP_STEPS, str(path), str(home), detector, json.dumps(params)],
        env=_child_env(home),
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"the app steps failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MB"


def _verdict(ok: bool) -> str:
    return "meets the goal" if ok else "**misses the goal**"


def run(
    rows: int,
    features: int,
    workdir: Path,
    engines: tuple[str, ...] = ("local", "dask"),
    app: bool = True,
    detectors: tuple[str, ...] = tuple(DETECTORS),
) -> dict:
    """Measure everything; return the figures (also used by the test with small sizes)."""
    from ad_core.batch import read_scores
    from ad_core.runs import DEFAULT_PREPROCESSING, add_file, train_run
    from ad_core.store import Workspace

    workdir.mkdir(parents=True, exist_ok=True)
    frame = synthetic_frame(rows, features)
    csv_path, parquet_path = workdir / "table.csv", workdir / "table.parquet"
    start = time.perf_counter()
    frame.to_csv(csv_path, index=False)
    frame.to_parquet(parquet_path, index=False, row_group_size=100_000)
    written = time.perf_counter() - start
    sample = frame.sample(n=min(rows, 50_000), random_state=0)

    home = workdir / "workspace"
    ws = Workspace(home)
    dataset_id, _ = add_file(ws, "sample.csv", sample.to_csv(index=False).encode())
    runs = {}
    for name in detectors:
        params = DETECTORS[name]
        run_id = ws.create_run(dataset_id, name, params, dict(DEFAULT_PREPROCESSING))
        train_run(ws, run_id)
        runs[name] = run_id
    ws.close()
    del frame, sample

    jobs = []
    for name, run_id in runs.items():
        for fmt, data in (("CSV", csv_path), ("Parquet", parquet_path)):
            outputs = {}
            for engine in engines:
                out = (
                    workdir
                    / f"out-{name}-{fmt}-{engine}"
                    / ("scores.parquet" if engine == "local" else "parts")
                )
                job = score_job(home, run_id, data, out, engine)
                outputs[engine] = read_scores(out)["score"].to_numpy()
                jobs.append({"detector": name, "format": fmt, "engine": engine, **job})
            if len(outputs) == 2:
                jobs[-1]["max_diff"] = float(np.max(np.abs(outputs["local"] - outputs["dask"])))
            assert all(len(v) == rows for v in outputs.values())

    app_figures = (
        app_steps(csv_path, workdir / "app_workspace", "autoencoder", DETECTORS["autoencoder"])
        if app
        else None
    )
    return {
        "rows": rows,
        "features": features,
        "csv_bytes": csv_path.stat().st_size,
        "parquet_bytes": parquet_path.stat().st_size,
        "write_seconds": written,
        "jobs": jobs,
        "app": app_figures,
    }


def report(figures: dict, command: str, load: tuple[float, float]) -> str:
    rows = figures["rows"]
    lines = [
        "# Scoring at scale",
        "",
        f"Command: `{command}`",
        "",
        f"Data: {rows:,} rows x {figures['features']} features (synthetic, 1 % anomalies): "
        f"CSV {_mb(figures['csv_bytes'])}, Parquet {_mb(figures['parquet_bytes'])} (row groups "
        f"of 100,000). Runs trained on a 50,000-row sample, 5 epochs. Machine: "
        f"{platform.machine()} with {os.cpu_count()} CPU cores, Python {platform.python_version()}; "
        f"load average {load[0]:.1f} before and {load[1]:.1f} after (the machine is shared).",
        "",
        "Each job is `ad-studio score RUN DATA --out OUT --engine ENGINE` in a child process: "
        "time from start to exit (imports and, for Dask, starting and stopping a LocalCluster "
        "of 2 worker processes included); peak memory is the summed RSS of the process tree.",
        "",
        "| detector | input | engine | seconds | rows/s | peak RSS | vs local | goal | |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    local_times = {
        (j["detector"], j["format"]): j["seconds"]
        for j in figures["jobs"]
        if j["engine"] == "local"
    }
    for job in figures["jobs"]:
        base = local_times.get((job["detector"], job["format"]))
        ratio = job["seconds"] / base if base else float("nan")
        if job["engine"] == "local" and job["format"] == "CSV":
            ok = job["seconds"] <= GOAL_LOCAL_SECONDS and job["peak_rss"] <= GOAL_LOCAL_RSS
            goal = f"<= {GOAL_LOCAL_SECONDS:.0f} s, <= 1.5 GB"
            verdict = _verdict(ok)
        elif job["engine"] == "dask":
            goal, verdict = f"<= {GOAL_DASK_RATIO}x local", _verdict(ratio <= GOAL_DASK_RATIO)
        else:
            goal, verdict = "", ""
        lines.append(
            f"| {job['detector']} | {job['format']} | {job['engine']} | {job['seconds']:.1f} | "
            f"{rows / job['seconds']:,.0f} | {_mb(job['peak_rss'])} | {ratio:.2f}x | {goal} | "
            f"{verdict} |"
        )
    diffs = [j["max_diff"] for j in figures["jobs"] if "max_diff" in j]
    if diffs:
        lines += ["", f"Largest difference between the engines' scores: {max(diffs):.2e}."]
    app = figures.get("app")
    if app:
        table = app["table_bytes"]
        lines += [
            "",
            "## The app with a 1M-row upload",
            "",
            f"The same CSV through the app's path in one process (`ad_core.runs.add_file`, "
            f"`Workspace.load_dataset_frame`, `ad_core.runs.train_run` with the autoencoder, "
            f"5 epochs): the table is {_mb(table)} in memory. Peak is the process's RSS above "
            "its RSS before the step.",
            "",
            "| step | seconds | peak above before | x table | goal | |",
            "|---|---|---|---|---|---|",
        ]
        for step in app["steps"]:
            extra = step["peak"] - step["before"]
            copies = extra / table
            lines.append(
                f"| {step['step']} | {step['seconds']:.1f} | {_mb(extra)} | {copies:.2f} | "
                f"<= {GOAL_TABLE_COPIES:.0f}x | {_verdict(copies <= GOAL_TABLE_COPIES)} |"
            )
        if app.get("auroc") is not None:
            lines += ["", f"AUROC of that run on its held-out rows: {app['auroc']:.3f}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ad_core.bench scale",
        description="Score 1M rows as CSV and Parquet with the local engine and Dask; "
        "time the app's path with a 1M-row upload.",
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--out", default="benchmarks/scale.md")
    parser.add_argument("--no-app", action="store_true", help="skip the app's upload path")
    parser.add_argument("--workdir", help="keep the data and outputs here (default: a temp dir)")
    args = parser.parse_args(argv)
    command = "python -m ad_core.bench scale" + (" " + shlex.join(argv) if argv else "")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="ad_scale_") as tmp:
        workdir = Path(args.workdir) if args.workdir else Path(tmp)
        figures = run(args.rows, args.features, workdir, app=not args.no_app)
    text = report(figures, command, (load_before, os.getloadavg()[0]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
