"""``python -m ad_core.bench loop``: the label loop, measured with a simulated expert.

    python -m ad_core.bench loop [--quick] [--seeds 3] [--datasets ...] [--jobs 2]

Per data set and seed: preprocess as the app does (standard scaling, one-hot categories),
train Deep SAD without labels, then run the loop once per queue strategy (highest scores,
nearest the threshold, diverse among the top, random: :func:`ad_core.runs.review_queue`).
Each round the expert answers the ``--batch`` rows the queue shows (their ground truth is
revealed as the label) and Deep SAD is retrained warm (:meth:`DeepSAD.fine_tune` of the
first run's network with every label so far, what the Label page does after new labels;
``--warm-from previous`` chains fine-tunes instead). After 0, 10, 20, 50 and 100 labels,
AUROC and AUPRC on the rows not labelled yet, for:

- ``deep_sad``: the warm-retrained Deep SAD of the loop (the rows it shows are its own);
- ``deep_sad_cold``: Deep SAD trained from scratch (pretraining and all) on the same labels;
- ``xgbod``: XGBOD (ours: the unsupervised pool's scores beside the features, boosted trees
  on the labels; :mod:`ad_core.detectors.xgbod`, its defaults) on the same labels: fitted
  once without labels, then warm-retrained (:meth:`XGBOD.fine_tune`: the pool kept, the
  trees refitted) on every label so far; at 0 labels its unsupervised prior;
- ``hgb``: scikit-learn's HistGradientBoostingClassifier on the labelled rows alone;
- ``iforest``: Isolation Forest, no labels (fitted once; the rows it is judged on shrink);
- ``deepod_dsad``: DeepOD's DeepSAD on the same labels where the package imports (it
  learns from labelled anomalies only and needs one; "-" before the first).

Each set is trained transductively, like the app: every row is a training row; a labelled
row counts in no figure from then on. Sets with more than ``--max-rows`` rows are cut to a
seeded, stratified sample of that many (the same rows for every strategy of a seed).

Also, the warm retrain against a full retrain through the app's own path
(:func:`ad_core.runs.train_run` on the bundled ECG5000 sample, the Train page's default
set-up with 30 % held out): time and AUROC on the held-out rows after 10 labels.

Writes ``--out`` (Markdown: the command, tables, the plot) and, beside it, the raw rows
(``.csv``) and the plot (``.png``, with matplotlib; without it the Markdown keeps the
tables only and says so).
"""

from __future__ import annotations

import argparse
import copy
import csv
import os
import platform
import shlex
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ad_core.bench.odds import DATASETS as ODDS_SETS
from ad_core.bench.odds import default_data_dir as odds_dir

SETS = (*ODDS_SETS, "ecg5000", "kddcup99")
QUICK_SETS = ("ecg5000_sample", "cardio_sample")
STRATEGIES = ("highest", "threshold", "diverse", "random")
METHODS = ("deep_sad", "deep_sad_cold", "xgbod", "hgb", "iforest", "deepod_dsad")
METHOD_TITLES = {
    "deep_sad": "Deep SAD, warm retrain (ours)",
    "deep_sad_cold": "Deep SAD, full retrain",
    "xgbod": "XGBOD on the labels (ours)",
    "hgb": "HistGradientBoosting on the labels",
    "iforest": "Isolation Forest (no labels)",
    "deepod_dsad": "DeepOD DeepSAD",
}
CHECKPOINTS = (0, 10, 20, 50, 100)
FIELDS = (
    "dataset",
    "seed",
    "strategy",
    "method",
    "n_labels",
    "n_labelled_anomalies",
    "auroc",
    "auprc",
    "seconds",
    "n_rows",
)


@dataclass(frozen=True)
class Settings:
    """What one loop task runs with (the command line's choices)."""

    strategies: tuple[str, ...] = STRATEGIES
    checkpoints: tuple[int, ...] = CHECKPOINTS
    batch: int = 10
    max_rows: int = 5000
    pretrain_epochs: int = 150
    epochs: int = 150
    warm_epochs: int | None = None  # None: FINE_TUNE_EPOCHS, the app's default
    deepod_epochs: int = 20
    cold_strategies: tuple[str, ...] = STRATEGIES
    deepod_strategies: tuple[str, ...] = STRATEGIES
    #: what each warm retrain fine-tunes: "first" (the unsupervised run's network, as the
    #: Label page does) or "previous" (the last retrain's, a chain of fine-tunes)
    warm_from: str = "first"
    data_dir: str = field(default_factory=lambda: str(odds_dir().parent))


def shared_data_dir() -> Path:
    """Return ../shared/data beside the repository (the project's benchmark data)."""
    return odds_dir().parent


def load_set(name: str, data_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """Return (features as the app preprocesses them (float32), ground truth 0/1) of a set.

    ``*_sample`` names are the bundled sample sets (no shared data needed).
    """
    import pandas as pd

    from ad_core.data import (
        Preprocessor,
        ground_truth,
        infer_schema,
        load_sample,
        load_table,
        sample_schema,
    )
    from ad_core.runs import DEFAULT_PREPROCESSING

    root = Path(data_dir)
    if name.endswith("_sample") or name == "kddcup99":
        sample = name.removesuffix("_sample")
        frame = load_sample(sample)
        schema = sample_schema(sample, frame)
        y = ground_truth(frame, schema)
    else:
        if name == "ecg5000":
            frame = load_table(root / "ecg5000" / "ecg5000.csv")
            y = (frame.pop("label").to_numpy() != 1).astype(np.int64)
            frame = frame.drop(columns=["split"])
        else:
            from ad_core.bench.odds import _FILES

            frame = load_table(root / "odds" / _FILES[name])
            y = frame.pop("label").to_numpy().astype(np.int64)
        frame = pd.DataFrame(frame.to_numpy(dtype=np.float64), columns=list(frame.columns))
        schema = infer_schema(frame)
        for column in frame.columns:  # every column is a numeric feature, whatever it looks like
            schema = schema.with_role(column, "numeric")
    X = Preprocessor(**DEFAULT_PREPROCESSING).fit_transform(frame, schema)
    return np.ascontiguousarray(X, dtype=np.float32), np.asarray(y, dtype=np.int64)


def available_sets(data_dir: str) -> list[str]:
    """Return the shared sets whose files exist under ``data_dir``."""
    from ad_core.bench.odds import _FILES

    root = Path(data_dir)
    found = [s for s in ODDS_SETS if (root / "odds" / _FILES[s]).is_file()]
    if (root / "ecg5000" / "ecg5000.csv").is_file():
        found.append("ecg5000")
    return [*found, "kddcup99"]  # the KDD Cup sample is bundled


def stratified_rows(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Return sorted positions of a seeded sample of ``n`` rows with ``y``'s class shares."""
    if y.size <= n:
        return np.arange(y.size)
    rng = np.random.default_rng(seed)
    picked = []
    for value in (0, 1):
        members = np.flatnonzero(y == value)
        k = max(1, int(round(n * members.size / y.size)))
        picked.append(rng.choice(members, size=min(k, members.size), replace=False))
    return np.sort(np.concatenate(picked))


def _deep_sad(settings: Settings, seed: int):
    from ad_core import make_detector

    return make_detector(
        "deep_sad",
        random_state=seed,
        pretrain_epochs=settings.pretrain_epochs,
        epochs=settings.epochs,
        device="cpu",
    )


def _figures(y: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    from ad_core.metrics import auprc, auroc

    return float(auroc(y, scores)), float(auprc(y, scores))


def _hgb_scores(X, labels, seed, rows) -> np.ndarray:
    """Return P(anomaly) of ``rows`` from a boosted classifier fitted on the labelled rows."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    known = np.flatnonzero(labels != -1)
    if known.size == 0 or np.unique(labels[known]).size < 2:
        return np.zeros(rows.size)  # one class seen: every row alike (AUROC 0.5)
    # min_samples_leaf 20 (the default) allows no split below 40 labels: 1 lets it learn.
    clf = HistGradientBoostingClassifier(random_state=seed, min_samples_leaf=1)
    clf.fit(X[known], labels[known])
    return clf.predict_proba(X[rows])[:, 1]


def deepod_available() -> bool:
    """Return whether DeepOD's DeepSAD imports here (``pip install --no-deps deepod``)."""
    try:
        from deepod.models.tabular import DeepSAD  # noqa: F401
    except Exception:  # not installed, or a dependency it needs is missing
        return False
    return True


def _deepod_scores(X, labels, seed, rows, epochs) -> np.ndarray | None:
    """Return DeepOD DeepSAD's scores of ``rows``, or None before any labelled anomaly."""
    import contextlib
    import io

    from deepod.models.tabular import DeepSAD

    if not (labels == 1).any():
        return None
    model = DeepSAD(epochs=epochs, device="cpu", verbose=0, random_state=seed)
    with contextlib.redirect_stdout(io.StringIO()):
        model.fit(X, (labels == 1).astype(np.int64))
        return np.asarray(model.decision_function(X[rows]), dtype=np.float64)


def run_task(dataset: str, seed: int, settings: Settings) -> list[dict]:
    """Run the loop of every strategy on one set and seed; return one row per figure."""
    from ad_core import make_detector
    from ad_core.detectors.deep_sad import FINE_TUNE_EPOCHS
    from ad_core.runs import review_queue

    warm_epochs = FINE_TUNE_EPOCHS if settings.warm_epochs is None else settings.warm_epochs
    X, y = load_set(dataset, settings.data_dir)
    keep = stratified_rows(y, settings.max_rows, seed)
    X, y = np.ascontiguousarray(X[keep]), y[keep]
    rows: list[dict] = []

    def add(strategy, method, labels, scores, seconds, where):
        auroc, auprc = _figures(y[where], scores) if scores is not None else (None, None)
        rows.append(
            {
                "dataset": dataset,
                "seed": seed,
                "strategy": strategy,
                "method": method,
                "n_labels": int((labels != -1).sum()),
                "n_labelled_anomalies": int((labels == 1).sum()),
                "auroc": auroc,
                "auprc": auprc,
                "seconds": seconds,
                "n_rows": int(y.size),
            }
        )

    start = time.perf_counter()
    base = _deep_sad(settings, seed).fit(X)
    base_seconds = time.perf_counter() - start
    start = time.perf_counter()
    iforest = make_detector("isolation_forest", random_state=seed).fit(X)
    iforest_seconds = time.perf_counter() - start
    start = time.perf_counter()
    xgbod = make_detector("xgbod", random_state=seed).fit(X)  # no label: its prior
    xgbod_seconds = time.perf_counter() - start
    use_deepod = deepod_available()
    for strategy in settings.strategies:
        det = copy.deepcopy(base)
        labels = np.full(y.size, -1, dtype=np.int64)
        everything = np.arange(y.size)
        add(strategy, "deep_sad", labels, det.decision_scores_, base_seconds, everything)
        add(strategy, "iforest", labels, iforest.decision_scores_, iforest_seconds, everything)
        add(strategy, "xgbod", labels, xgbod.decision_scores_, xgbod_seconds, everything)
        for n_labels in range(settings.batch, max(settings.checkpoints) + 1, settings.batch):
            queue = review_queue(
                strategy,
                det.decision_scores_,
                labels,
                threshold=det.threshold_,
                codes=lambda r, det=det: det.transform(X[r]),
                n=settings.batch,
                seed=seed,
            )
            labels[queue.positions] = y[queue.positions]  # the expert answers
            start = time.perf_counter()
            if settings.warm_from == "first":
                det = copy.deepcopy(base)
            det.fine_tune(X, labels, epochs=warm_epochs)
            warm_seconds = time.perf_counter() - start
            if n_labels not in settings.checkpoints:
                continue
            open_ = np.flatnonzero(labels == -1)
            add(strategy, "deep_sad", labels, det.decision_scores_[open_], warm_seconds, open_)
            add(strategy, "iforest", labels, iforest.decision_scores_[open_], 0.0, open_)
            start = time.perf_counter()
            retrained = copy.deepcopy(xgbod).fine_tune(X, labels)  # the pool kept
            seconds = time.perf_counter() - start
            add(strategy, "xgbod", labels, retrained.decision_scores_[open_], seconds, open_)
            start = time.perf_counter()
            hgb = _hgb_scores(X, labels, seed, open_)
            add(strategy, "hgb", labels, hgb, time.perf_counter() - start, open_)
            if strategy in settings.cold_strategies:
                start = time.perf_counter()
                cold = _deep_sad(settings, seed).fit(X, labels)
                cold_seconds = time.perf_counter() - start
                add(
                    strategy,
                    "deep_sad_cold",
                    labels,
                    cold.decision_scores_[open_],
                    cold_seconds,
                    open_,
                )
            if use_deepod and strategy in settings.deepod_strategies:
                start = time.perf_counter()
                scores = _deepod_scores(X, labels, seed, open_, settings.deepod_epochs)
                add(strategy, "deepod_dsad", labels, scores, time.perf_counter() - start, open_)
    return rows


def read_rows(path: Path) -> list[dict]:
    """Return the rows of a raw results file written before (empty when there is none)."""
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        for name in ("seed", "n_labels", "n_labelled_anomalies", "n_rows"):
            r[name] = int(r[name])
        for name in ("auroc", "auprc", "seconds"):
            r[name] = None if r[name] == "" else float(r[name])
    return rows


def _write_rows(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: tuple(str(r[k]) for k in FIELDS[:5])))


def _init_worker() -> None:
    import torch
    from threadpoolctl import threadpool_limits

    global _LIMITS
    torch.set_num_threads(1)  # small MLPs: one thread per process beats two threads on one
    _LIMITS = threadpool_limits(1)  # scikit-learn's pools (boosting, neighbours) alike


_LIMITS = None


def _task_job(args: tuple) -> list[dict]:
    return run_task(*args)


# --- warm against full retrain through the app's path ---------------------------------------


def app_retrain(seeds: list[int], pretrain_epochs: int | None, epochs: int | None) -> list[dict]:
    """Return the warm and the full retrain after 10 labels on the ECG5000 sample, per seed.

    As the app does it: a Deep SAD base run (the Train page's default set-up: all rows, 30 %
    held out), 10 rows labelled by the queue's default strategy with their ground truth, then
    ``train_run`` twice from the base: warm (``TrainingSetup.warm_from``, FINE_TUNE_EPOCHS
    epochs) and from scratch (the base run's settings). Each row: seed, way, seconds (the
    whole ``train_run``: load, preprocess, fit, score, save), fit seconds, AUROC on the
    unlabelled held-out rows.
    """
    from dataclasses import replace

    from ad_core.detectors.deep_sad import FINE_TUNE_EPOCHS
    from ad_core.runs import (
        DEFAULT_HOLDOUT,
        DEFAULT_PREPROCESSING,
        DEFAULT_QUEUE_MODE,
        TrainingSetup,
        load_run,
        review_queue,
        train_run,
    )
    from ad_core.store import Workspace

    out = []
    for seed in seeds:
        ws = Workspace(tempfile.mkdtemp(prefix="loop_bench_"))
        dataset_id, truth = _add_ecg_sample(ws)
        params = {"random_state": seed}
        if pretrain_epochs is not None:
            params["pretrain_epochs"] = pretrain_epochs
        if epochs is not None:
            params["epochs"] = epochs
        setup = TrainingSetup("all", DEFAULT_HOLDOUT, 0)
        base_id = ws.create_run(dataset_id, "deep_sad", params, DEFAULT_PREPROCESSING)
        base = train_run(ws, base_id, setup=setup)
        labels = np.full(truth.size, -1, dtype=np.int64)
        queue = review_queue(
            DEFAULT_QUEUE_MODE,
            base.scores,
            labels,
            threshold=base.threshold,
            codes=_codes_of(ws, base_id),
            n=10,
            seed=seed,
        )
        labels[queue.positions] = truth[queue.positions]
        for way, run_params, run_setup in (
            ("warm", {**params, "epochs": FINE_TUNE_EPOCHS}, replace(setup, warm_from=base_id)),
            ("full", params, setup),
        ):
            run_id = ws.create_run(dataset_id, "deep_sad", run_params, DEFAULT_PREPROCESSING)
            ws.set_setting(f"run_parent.{run_id}", base_id)
            start = time.perf_counter()
            result = train_run(ws, run_id, labels=labels, setup=run_setup)
            seconds = time.perf_counter() - start
            fitted = load_run(ws.run_dir(run_id)).detector
            out.append(
                {
                    "seed": seed,
                    "way": way,
                    "seconds": seconds,
                    "fit_seconds": float(fitted.fit_seconds_),
                    "auroc": result.metrics.get("auroc"),
                    "base_auroc": base.metrics.get("auroc"),
                    "n_evaluated": result.metrics.get("n_evaluated"),
                    "n_labelled_anomalies": int((labels == 1).sum()),
                }
            )
        ws.close()
    return out


def _add_ecg_sample(ws) -> tuple[str, np.ndarray]:
    from ad_core.data import ground_truth, load_sample, sample_schema

    frame = load_sample("ecg5000")
    schema = sample_schema("ecg5000", frame)
    frame.attrs = {}
    dataset_id = ws.add_dataset("ECG5000 sample", frame, schema.to_dict())
    return dataset_id, ground_truth(frame, schema)


def _codes_of(ws, run_id: int):
    from ad_core.maps import run_codes

    return lambda rows: run_codes(ws, run_id, rows)


# --- the report -----------------------------------------------------------------------------


def _mean_std(values: list[float]) -> str:
    values = [v for v in values if v is not None and v == v]
    if not values:
        return "–"
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def _select(rows, **where) -> list[dict]:
    return [r for r in rows if all(r[k] == v for k, v in where.items())]


def _value(row: dict, metric: str) -> float | None:
    """Return a row's figure, None where it is undefined (no anomaly left unlabelled)."""
    value = row[metric]
    if value in (None, ""):
        return None
    value = float(value)
    return None if value != value else value


def curve(rows, dataset, strategy, method, metric, checkpoints) -> list[list[float]]:
    """Return per checkpoint the values over seeds of one method's learning curve."""
    return [
        [
            v
            for r in _select(rows, dataset=dataset, strategy=strategy, method=method, n_labels=c)
            if (v := _value(r, metric)) is not None
        ]
        for c in checkpoints
    ]


def strategy_ranking(
    rows, datasets, strategies, checkpoints
) -> tuple[list[tuple[str, float, float, float]], int]:
    """Return (strategy, mean AUROC, mean AUPRC, share of labels that were anomalies) of warm
    Deep SAD, best AUROC first, and the number of (set, label count) pairs averaged.

    The pairs: every set and label count after the first labels where every strategy has a
    figure (a strategy that labelled every anomaly of a set leaves none to rank, so that
    pair is left out for all strategies alike). Each pair is the mean over seeds.
    """
    pairs = []
    for dataset in datasets:
        for i, _ in enumerate(checkpoints[1:]):
            means = {}
            for strategy in strategies:
                au = curve(rows, dataset, strategy, "deep_sad", "auroc", checkpoints[1:])[i]
                pr = curve(rows, dataset, strategy, "deep_sad", "auprc", checkpoints[1:])[i]
                if au and pr:
                    means[strategy] = (np.mean(au), np.mean(pr))
            if len(means) == len(strategies):
                pairs.append(means)
    out = []
    for strategy in strategies:
        mine = [r for r in rows if r["strategy"] == strategy and r["method"] == "deep_sad"]
        found = [r["n_labelled_anomalies"] / r["n_labels"] for r in mine if r["n_labels"]]
        out.append(
            (
                strategy,
                float(np.mean([p[strategy][0] for p in pairs])) if pairs else float("nan"),
                float(np.mean([p[strategy][1] for p in pairs])) if pairs else float("nan"),
                float(np.mean(found)) if found else float("nan"),
            )
        )
    return sorted(out, key=lambda t: -t[1]), len(pairs)


def found_table(rows, datasets, strategies, checkpoints) -> str:
    """Return per strategy the anomalies the expert had labelled at each label count (mean
    over seeds, summed over the sets) and how many sets had none left to find."""
    out = [
        "| queue | " + " | ".join(f"{c} labels" for c in checkpoints[1:]) + " |",
        "|---|" + "---|" * len(checkpoints[1:]),
    ]
    for strategy in strategies:
        cells = []
        for c in checkpoints[1:]:
            total, exhausted = 0.0, 0
            for dataset in datasets:
                mine = _select(
                    rows, dataset=dataset, strategy=strategy, method="deep_sad", n_labels=c
                )
                if mine:
                    total += np.mean([r["n_labelled_anomalies"] for r in mine])
                    exhausted += all(_value(r, "auroc") is None for r in mine)
            cells.append(f"{total:.0f}" + (f" ({exhausted} set(s): all)" if exhausted else ""))
        out.append(f"| {strategy} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def tables(rows, datasets, strategies, methods, checkpoints, metric) -> str:
    """Return one Markdown table per set: method x strategy rows, a column per label count."""
    out = []
    for dataset in datasets:
        sub = _select(rows, dataset=dataset)
        if not sub:
            continue
        out.append(f"\n#### {dataset} ({sub[0]['n_rows']:,} rows), {metric.upper()}\n")
        out.append("| method | queue | " + " | ".join(f"{c} labels" for c in checkpoints) + " |")
        out.append("|---|---|" + "---|" * len(checkpoints))
        for method in methods:
            for strategy in strategies:
                vals = curve(rows, dataset, strategy, method, metric, checkpoints)
                ran = [
                    bool(
                        _select(rows, dataset=dataset, strategy=strategy, method=method, n_labels=c)
                    )
                    for c in checkpoints
                ]
                if not any(ran):
                    continue
                cells = [
                    _mean_std(v) if v or not r else "none left" if method != "deepod_dsad" else "–"
                    for v, r in zip(vals, ran, strict=True)
                ]
                out.append(f"| {METHOD_TITLES[method]} | {strategy} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def mean_table(rows, datasets, strategies, methods, checkpoints, metric) -> str:
    """Return the mean over sets (of the mean over seeds) per method x strategy."""
    out = [
        "| method | queue | " + " | ".join(f"{c} labels" for c in checkpoints) + " |",
        "|---|---|" + "---|" * len(checkpoints),
    ]
    for method in methods:
        for strategy in strategies:
            cells = []
            for i, _ in enumerate(checkpoints):
                per_set = [
                    np.mean(v[i])
                    for d in datasets
                    if (v := curve(rows, d, strategy, method, metric, checkpoints))[i]
                ]
                n_sets = len(per_set)
                cells.append(
                    "–"
                    if not per_set
                    else f"{np.mean(per_set):.3f}"
                    + ("" if n_sets == len(datasets) else f" ({n_sets} sets)")
                )
            if any(c != "–" for c in cells):
                out.append(f"| {METHOD_TITLES[method]} | {strategy} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def versus_table(rows, datasets, strategies, checkpoints, ours="xgbod", peer="hgb") -> str:
    """Return, per queue and label count, ours minus the peer in mean AUROC over the sets
    (each the mean over seeds) and on how many sets ours is above."""
    out = [
        "| queue | " + " | ".join(f"{c} labels" for c in checkpoints[1:]) + " |",
        "|---|" + "---|" * len(checkpoints[1:]),
    ]
    for strategy in strategies:
        cells = []
        for i, _ in enumerate(checkpoints[1:]):
            gaps = []
            for d in datasets:
                a = curve(rows, d, strategy, ours, "auroc", checkpoints[1:])[i]
                b = curve(rows, d, strategy, peer, "auroc", checkpoints[1:])[i]
                if a and b:
                    gaps.append(np.mean(a) - np.mean(b))
            cells.append(
                f"{np.mean(gaps):+.3f} ({sum(g > 0 for g in gaps)}/{len(gaps)})" if gaps else "–"
            )
        out.append(f"| {strategy} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def plot(rows, datasets, strategies, checkpoints, path: Path) -> str | None:
    """Write the learning curves as a PNG (matplotlib); return how, or None without it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    n = len(datasets)
    cols = min(4, n)
    fig, axes = plt.subplots(
        (n + cols - 1) // cols, cols, figsize=(4 * cols, 3.2 * ((n + cols - 1) // cols))
    )
    axes = np.atleast_1d(axes).ravel()
    colours = dict(zip(STRATEGIES, ("C0", "C1", "C2", "C3"), strict=True))
    for ax, dataset in zip(axes, datasets, strict=False):
        for strategy in strategies:
            for method, style in (("deep_sad", "-"), ("xgbod", "-."), ("hgb", ":")):
                vals = curve(rows, dataset, strategy, method, "auroc", checkpoints)
                xs = [c for c, v in zip(checkpoints, vals, strict=True) if v]
                ys = [np.mean(v) for v in vals if v]
                if xs:
                    short = {"deep_sad": "Deep SAD", "xgbod": "XGBOD", "hgb": "HGB"}[method]
                    label = f"{short} {strategy}"
                    ax.plot(xs, ys, style, marker="o", ms=3, color=colours[strategy], label=label)
        vals = curve(rows, dataset, strategies[0], "iforest", "auroc", checkpoints)
        ax.plot(
            [c for c, v in zip(checkpoints, vals, strict=True) if v],
            [np.mean(v) for v in vals if v],
            "--",
            color="grey",
            label="Isolation Forest",
        )
        ax.set_title(dataset)
        ax.set_xlabel("labels")
        ax.set_ylabel("AUROC, unlabelled rows")
        ax.grid(alpha=0.3)
    for ax in axes[n:]:
        ax.axis("off")
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(5, len(names)), fontsize=8)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return f"matplotlib {matplotlib.__version__}"


def retrain_table(rows: list[dict]) -> str:
    """Return the warm-against-full retrain table (medians over seeds, every value too)."""
    out = [
        "| retrain | time (whole `train_run`) | fit (the detector) | AUROC, held-out unlabelled rows | "
        "every seed (s / AUROC) |",
        "|---|---|---|---|---|",
    ]
    for way, title in (("warm", "warm: fine-tune the base run"), ("full", "full: from scratch")):
        sub = [r for r in rows if r["way"] == way]
        if not sub:
            continue
        each = ", ".join(f"{r['seconds']:.2f} s / {r['auroc']:.3f}" for r in sub)
        out.append(
            f"| {title} | {np.median([r['seconds'] for r in sub]):.2f} s | "
            f"{np.median([r['fit_seconds'] for r in sub]):.2f} s | "
            f"{np.mean([r['auroc'] for r in sub]):.3f} | {each} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ad_core.bench loop",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run on the bundled samples (2 sets, 1 seed, few epochs, 20 labels)",
    )
    parser.add_argument("--datasets", nargs="+", default=None)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--batch", type=int, default=10, help="rows the expert answers a round")
    parser.add_argument("--max-rows", type=int, default=5000)
    parser.add_argument("--pretrain-epochs", type=int, default=150)
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument(
        "--warm-epochs", type=int, default=None, help="fine-tune epochs (default: the app's)"
    )
    parser.add_argument("--deepod-epochs", type=int, default=20)
    parser.add_argument(
        "--cold-strategies",
        nargs="*",
        default=None,
        help="strategies whose labels also get a full Deep SAD retrain (default: all)",
    )
    parser.add_argument(
        "--deepod-strategies",
        nargs="*",
        default=None,
        help="strategies whose labels DeepOD's DeepSAD also learns from (default: all)",
    )
    parser.add_argument(
        "--warm-from",
        choices=("first", "previous"),
        default="first",
        help="each warm retrain fine-tunes the first (unsupervised) run's network (default, "
        "as the app does) or the previous retrain's",
    )
    parser.add_argument("--no-app-retrain", action="store_true")
    parser.add_argument("--data-dir", type=Path, default=shared_data_dir())
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="default benchmarks/loop.md (--quick: benchmarks/loop_quick.md)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the (set, seed) tasks already in the .csv beside --out; run the others",
    )
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = Path("benchmarks/loop_quick.md" if args.quick else "benchmarks/loop.md")

    strategies = tuple(args.strategies)
    if args.quick:
        datasets = list(args.datasets or QUICK_SETS)
        seeds = [0]
        settings = Settings(
            strategies=strategies,
            checkpoints=(0, 10, 20),
            batch=args.batch,
            max_rows=min(args.max_rows, 400),
            pretrain_epochs=3,
            epochs=3,
            warm_epochs=3,
            deepod_epochs=2,
            cold_strategies=strategies[:1],
            deepod_strategies=(),
            data_dir=str(args.data_dir),
        )
    else:
        datasets = list(args.datasets or available_sets(str(args.data_dir)))
        seeds = list(range(args.seeds))
        settings = Settings(
            strategies=strategies,
            batch=args.batch,
            max_rows=args.max_rows,
            pretrain_epochs=args.pretrain_epochs,
            epochs=args.epochs,
            warm_epochs=args.warm_epochs,
            deepod_epochs=args.deepod_epochs,
            cold_strategies=strategies
            if args.cold_strategies is None
            else tuple(args.cold_strategies),
            deepod_strategies=strategies
            if args.deepod_strategies is None
            else tuple(args.deepod_strategies),
            warm_from=args.warm_from,
            data_dir=str(args.data_dir),
        )
    missing = [d for d in datasets if d not in (*SETS, *QUICK_SETS)]
    if missing:
        print(f"unknown data set(s): {', '.join(missing)}", file=sys.stderr)
        return 2
    skipped = sorted(set(SETS) - set(datasets)) if not args.quick else []

    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    weight = {"shuttle": 4, "kddcup99": 4, "ecg5000": 5, "satellite": 3, "satimage-2": 3}
    tasks = sorted(
        ((d, s, settings) for s in seeds for d in datasets),
        key=lambda t: -weight.get(t[0], 1),
    )
    raw = args.out.with_suffix(".csv")
    rows = read_rows(raw) if args.resume else []
    done = {(r["dataset"], r["seed"]) for r in rows}
    tasks = [t for t in tasks if (t[0], t[1]) not in done]
    rows = [r for r in rows if r["dataset"] in datasets and r["seed"] in seeds]
    if args.jobs > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(max_workers=args.jobs, initializer=_init_worker) as pool:
            futures = {pool.submit(_task_job, t): t for t in tasks}
            for i, fut in enumerate(as_completed(futures), 1):
                rows.extend(fut.result())
                _write_rows(raw, rows)
                d, s, _ = futures[fut]
                print(f"[{i}/{len(tasks)}] {d} seed {s} done", flush=True)
    else:
        _init_worker()
        for i, t in enumerate(tasks, 1):
            rows.extend(_task_job(t))
            _write_rows(raw, rows)
            print(f"[{i}/{len(tasks)}] {t[0]} seed {t[1]} done", flush=True)
    loop_seconds = time.perf_counter() - started

    retrain: list[dict] = []
    if not args.no_app_retrain:
        _init_worker()
        retrain = app_retrain(
            seeds,
            settings.pretrain_epochs if args.quick else None,
            settings.epochs if args.quick else None,
        )
    elapsed = time.perf_counter() - started

    _write_rows(raw, rows)
    png = args.out.with_suffix(".png")
    ordered = [d for d in (*SETS, *QUICK_SETS) if d in datasets]
    how = plot(rows, ordered, strategies, settings.checkpoints, png)
    ranking, n_pairs = strategy_ranking(rows, ordered, strategies, settings.checkpoints)
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    from ad_core.detectors.deep_sad import FINE_TUNE_EPOCHS
    from ad_core.runs import DEFAULT_QUEUE_MODE

    # run as a module of its own (python -m ad_core.bench.loop) argv is None; through the
    # dispatcher (python -m ad_core.bench loop) it is the list after the name
    prefix = "python -m ad_core.bench.loop" if argv is None else "python -m ad_core.bench loop"
    shown = sys.argv[1:] if argv is None else argv
    command = f"{prefix} {shlex.join(shown)}".strip()
    text = [
        "# The label loop, measured",
        "",
        f"Command: `{command}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores (shared with other "
        f"work: load average {load_before:.1f} at the start), {args.jobs} worker process(es) "
        f"with 1 torch thread each, Python {platform.python_version()}; wall time "
        f"{elapsed / 60:.1f} min ({loop_seconds / 60:.1f} min the loops).  ",
        f"Raw rows: `{raw.name}`.",
        "",
        "Protocol (the docstring of `ad_core/bench/loop.py`): per set and seed, Deep SAD "
        f"without labels ({settings.pretrain_epochs} pretraining + {settings.epochs} "
        "training epochs, the other settings its defaults), then per queue strategy rounds "
        f"of {settings.batch} rows: the simulated expert labels the rows the queue shows with "
        "their ground truth, Deep SAD is retrained warm ("
        f"{settings.warm_epochs or FINE_TUNE_EPOCHS} fine-tune epochs with every label so "
        + (
            "far, from the first run's network, as the Label page does"
            if settings.warm_from == "first"
            else "far, from the previous round's network (a chain of fine-tunes)"
        )
        + ") and the next round's queue comes from the new scores. Figures on the rows not labelled yet, mean ± std over "
        f"{len(seeds)} seed(s); sets cut to at most {settings.max_rows:,} rows "
        "(seeded, stratified). The peers learn from the same labels (those the strategy "
        "named in the row gathered): XGBOD (ours, its defaults: the unsupervised pool "
        "fitted once without labels, its trees refitted on every label so far; at 0 labels "
        "its unsupervised prior), HistGradientBoostingClassifier (min_samples_leaf=1: "
        "the default 20 cannot split below 40 labels; a classifier that has seen one class "
        "only ranks every row alike, AUROC 0.5), Isolation Forest (no labels), and the full "
        "Deep SAD retrain (pretraining and all, same epochs as the first run)"
        + (
            f" on the labels of {', '.join(settings.cold_strategies)}"
            if set(settings.cold_strategies) != set(strategies)
            else ""
        )
        + ". "
        + (
            f"DeepOD's DeepSAD (deepod 0.4.1, its defaults but {settings.deepod_epochs} epochs "
            "and the CPU; it learns from labelled anomalies only, so its figures start at the "
            "first labelled anomaly)"
            + (
                f" on the labels of {', '.join(settings.deepod_strategies)}."
                if set(settings.deepod_strategies) != set(strategies)
                else "."
            )
            if any(r["method"] == "deepod_dsad" for r in rows)
            else "DeepOD's DeepSAD: not run ("
            + ("deepod does not import here" if not deepod_available() else "not asked for")
            + ")."
        ),
        "",
    ]
    if skipped:
        text += [f"Sets not in this run: {', '.join(skipped)}.", ""]
    text += [
        "## Which queue: warm Deep SAD, mean over sets and label counts after the first",
        "",
        "| queue | mean AUROC | mean AUPRC | labels that were anomalies |",
        "|---|---|---|---|",
        *[f"| {s} | {a:.3f} | {p:.3f} | {f:.0%} |" for s, a, p, f in ranking],
        "",
        f"Means over {n_pairs} (set, label count) pairs: every set and count of "
        f"{', '.join(str(c) for c in settings.checkpoints[1:])} labels where every strategy "
        "left an anomaly unlabelled to rank (a strategy that labels every anomaly of a set "
        "leaves AUROC undefined there: 'none left' in the tables). Figures on the rows not "
        "labelled yet, so a strategy is not credited with the rows it had answered.",
        "",
        f"Best here by AUROC: **{ranking[0][0]}**. The Label page's default queue "
        f"(`ad_core.runs.DEFAULT_QUEUE_MODE`) is **{DEFAULT_QUEUE_MODE}**.",
        "",
        "Anomalies the expert had found (labelled), summed over the sets (mean over seeds); "
        "'all': sets where every anomaly was labelled:",
        "",
        found_table(rows, ordered, strategies, settings.checkpoints),
        "",
        "## XGBOD against the boosted classifier on the same labels",
        "",
        "Mean over the sets of XGBOD's AUROC minus HistGradientBoosting's (both on the labels "
        "the queue gathered, on the rows not labelled yet), and on how many sets XGBOD is "
        "above. Goal (issue 12): above at every label count.",
        "",
        versus_table(rows, ordered, strategies, settings.checkpoints),
        "",
        "## Learning curves",
        "",
    ]
    if how:
        text += [f"![AUROC against labels]({png.name})", "", f"Plot: `{png.name}` ({how}).", ""]
    else:
        text += ["No plot: matplotlib is not installed here; the tables hold the curves.", ""]
    text += [
        "### Mean over the sets (AUROC)",
        "",
        mean_table(rows, ordered, strategies, methods, settings.checkpoints, "auroc"),
        "",
        "### Mean over the sets (AUPRC)",
        "",
        mean_table(rows, ordered, strategies, methods, settings.checkpoints, "auprc"),
        "",
        "### Per set",
        tables(rows, ordered, strategies, methods, settings.checkpoints, "auroc"),
        tables(rows, ordered, strategies, methods, settings.checkpoints, "auprc"),
        "",
    ]
    if retrain:
        text += [
            "## Warm against full retrain, the app's path (ECG5000 sample, 10 labels)",
            "",
            "A Deep SAD base run on the bundled ECG5000 sample (1,000 beats; the Train page's "
            "default set-up: all rows, 30 % held out), 10 rows labelled from the "
            f"'{DEFAULT_QUEUE_MODE}' queue with their ground truth, then `train_run` from "
            f"the base: warm (`TrainingSetup(warm_from=base)`, {FINE_TUNE_EPOCHS} fine-tune "
            "epochs) and full (pretraining and training from scratch, the base's settings"
            + (
                f": {settings.pretrain_epochs} + {settings.epochs} epochs"
                if args.quick
                else ", Deep SAD's defaults"
            )
            + "). Time: the whole `train_run` (load, preprocess, fit, score, save); median over "
            f"seeds {', '.join(str(s) for s in seeds)} (random_state). Goal: warm <= 5 s with "
            "an AUROC no worse than the full retrain.",
            "",
            retrain_table(retrain),
            "",
        ]
    args.out.write_text("\n".join(text))
    print(
        f"wrote {args.out}, {raw.name}" + (f", {png.name}" if how else "") + f" in {elapsed:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
