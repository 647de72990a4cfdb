"""Unsupervised detectors across data sets, and how the ensemble's default was chosen.

    python -m ad_core.bench unsup [--seeds 3] [--jobs 2] [--quick] [--out benchmarks/unsup.md]

Data (``../shared/data``; see its README): the six ODDS sets of the Deep SAD paper
(arrhythmia, cardio, satellite, satimage-2, shuttle, thyroid), ECG5000 (all 5000 beats; label 1
normal, 2-5 anomalous), the bundled KDD Cup 1999 sample (``sample_data/kddcup99.csv``: 8000
connections, 2.5 % attacks; protocol, service and flag one-hot encoded) and MNIST's test
images with one digit as the normal class (``--mnist-digit``, default 0) against the other
digits, drawn to 10 % of the rows.

Protocol, per set and seed:
- a 70/30 train/test split stratified by the ground truth (ADBench's unsupervised set-up); a
  training split above ``--max-train`` rows (10,000; only shuttle's 34,000) is a stratified
  sample of that many, to keep the run under 25 minutes on two cores;
- the app's default preprocessing (``Preprocessor()``: median imputation, one-hot, standard
  scaling) fitted on the training split;
- every detector trains on the whole training split, anomalies included and no label seen
  (fully unsupervised), with its registry defaults and ``random_state=seed``;
- AUROC and AUPRC on the test split; fit seconds on one core (one torch thread per worker).
Detectors: every registered detector that learns without labels (Deep SAD is left out: without
labels it is Deep SVDD), the ensemble with its defaults, and PyOD's ECOD, COPOD, LOF, IForest
and KNN with theirs when PyOD is installed (``pip install -e .[bench]``; a peer only, never a
dependency of ad_core).

Choosing the ensemble (leave one set out, on the six ODDS sets only): a candidate is a subset
of at least two of the members {autoencoder, Deep SVDD, kNN, Isolation Forest, ECOD} that
includes the autoencoder or Deep SVDD (the app's latent map and explanations come from one of
them), equal weights, combined by rank or z-score averaging. Its scores are computed from the
standalone fits of its members (the same seeds and rows the ensemble trains its members on, so
they are the scores the ensemble would give; Deep SVDD standalone runs its own 150 + 150
epochs). For each ODDS set in turn, the candidate with the best mean AUROC on the other five is
picked (among those whose summed member fit time there is at most 3x the autoencoder's, the
issue's cost goal; ties go to fewer members) and scored on the held-out set. The default is the
candidate picked by most of the six folds; no set's figure comes from a pick that saw it.
ECG5000, KDD and MNIST are never used for choosing. The report also gives, for the record, what
the same protocol picks when single detectors may compete.

``--quick``: the three bundled samples (cardio, the 1000-beat ECG sample, KDD), one seed, deep
detectors at 2 epochs, in this process: a smoke run whose figures mean nothing.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import platform
import shlex
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np

from ad_core.bench.odds import DATASETS as ODDS_SETS

FULL_SETS = (*ODDS_SETS, "ecg5000", "kddcup99", "mnist")
QUICK_SETS = ("cardio_sample", "ecg5000_sample", "kddcup99")
#: PyOD's detectors measured beside ours: name -> (module, class)
PEERS = {
    "pyod_ecod": ("pyod.models.ecod", "ECOD"),
    "pyod_copod": ("pyod.models.copod", "COPOD"),
    "pyod_lof": ("pyod.models.lof", "LOF"),
    "pyod_iforest": ("pyod.models.iforest", "IForest"),
    "pyod_knn": ("pyod.models.knn", "KNN"),
}
#: the cost goal: an ensemble fits in at most this many times the autoencoder's time
COST_LIMIT = 3.0
#: an ensemble combines at least this many members (a single detector is no ensemble)
MIN_MEMBERS = 2
QUICK_EPOCHS = 2
MNIST_ANOMALY_SHARE = 0.10
#: training rows at most (shuttle's 34,000 are sampled to this), to keep the run short
MAX_TRAIN = 10_000


def default_data_dir() -> Path:
    """Return ../shared/data beside the repository."""
    return Path(__file__).resolve().parents[3] / "shared" / "data"


# -- data -------------------------------------------------------------------------------------
def _array_frame(X: np.ndarray, y: np.ndarray):
    """Return (frame, schema, truth) of a purely numeric array set."""
    import pandas as pd

    from ad_core.data import infer_schema

    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    schema = infer_schema(frame)
    for column in frame.columns:  # every column is a numeric feature, whatever it looks like
        schema = schema.with_role(column, "numeric")
    return frame, schema, np.asarray(y, dtype=np.int64)


def _sample_frame(name: str, n_rows: int | None = None, seed: int = 0):
    """Return (frame, schema, truth) of a bundled sample, optionally a stratified subsample."""
    from ad_core.data import ground_truth, load_sample, sample_schema

    frame = load_sample(name)
    schema = sample_schema(name, frame)
    truth = ground_truth(frame, schema)
    if n_rows is not None and n_rows < len(frame):
        from sklearn.model_selection import train_test_split

        keep, _ = train_test_split(
            np.arange(len(frame)), train_size=n_rows, stratify=truth, random_state=seed
        )
        keep = np.sort(keep)
        frame, truth = frame.iloc[keep].reset_index(drop=True), truth[keep]
    return frame, schema, truth


@functools.lru_cache(maxsize=4)
def load_set(name: str, data_dir: str) -> tuple[Any, Any, np.ndarray]:
    """Return (frame, schema, truth: 1 = anomaly) of the benchmark set ``name``."""
    root = Path(data_dir)
    if name in ODDS_SETS:
        from ad_core.bench.odds import _load

        return _array_frame(*_load(str(root / "odds"), name))
    if name == "ecg5000":
        import pandas as pd

        raw = pd.read_csv(root / "ecg5000" / "ecg5000.csv")
        y = (raw.pop("label").to_numpy() != 1).astype(np.int64)
        return _array_frame(raw.drop(columns=["split"]).to_numpy(np.float64), y)
    if name == "mnist":
        return _array_frame(*mnist_one_vs_rest(root / "mnist", MNIST_DIGIT))
    if name == "kddcup99":
        return _sample_frame("kddcup99")
    if name == "cardio_sample":
        return _sample_frame("cardio")
    if name == "ecg5000_sample":
        return _sample_frame("ecg5000")
    raise ValueError(f"unknown benchmark set {name!r}")


MNIST_DIGIT = 0


def mnist_one_vs_rest(directory: Path, digit: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return (pixels, truth): every test image of ``digit`` (normal) plus other digits
    drawn to ``MNIST_ANOMALY_SHARE`` of the rows (anomalies), in a seeded order."""
    from ad_core.bench.holes import load_images

    loaded = load_images(directory)
    if loaded is None:
        raise FileNotFoundError(f"MNIST t10k files not found in {directory}")
    X, labels = loaded
    rng = np.random.default_rng(seed)
    normal = np.flatnonzero(labels == digit)
    n_anomalies = int(round(MNIST_ANOMALY_SHARE / (1 - MNIST_ANOMALY_SHARE) * normal.size))
    anomalies = rng.choice(np.flatnonzero(labels != digit), n_anomalies, replace=False)
    rows = rng.permutation(np.concatenate([normal, anomalies]))
    return X[rows].astype(np.float64), (labels[rows] != digit).astype(np.int64)


@functools.lru_cache(maxsize=4)
def prepared_split(
    name: str, seed: int, data_dir: str, max_train: int | None = MAX_TRAIN
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (X_train, X_test, y_test): a 70/30 stratified split, preprocessed on train.

    A training split above ``max_train`` rows is a stratified sample of that many.
    """
    from sklearn.model_selection import train_test_split

    from ad_core.data import Preprocessor

    frame, schema, truth = load_set(name, data_dir)
    train, test = train_test_split(
        np.arange(len(frame)), test_size=0.3, stratify=truth, random_state=seed
    )
    if max_train is not None and train.size > max_train:
        train, _ = train_test_split(
            train, train_size=max_train, stratify=truth[train], random_state=seed
        )
    prep = Preprocessor().fit(frame.iloc[train], schema)
    return prep.transform(frame.iloc[train]), prep.transform(frame.iloc[test]), truth[test]


# -- one fit ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    dataset: str
    seed: int
    detector: str
    data_dir: str
    epochs: int | None = None
    max_train: int | None = MAX_TRAIN


def detector_params(name: str, seed: int, epochs: int | None) -> dict[str, Any]:
    """Return the settings of ``name`` in this benchmark: defaults, the seed, maybe epochs."""
    from ad_core.detectors import get_detector_info

    names = {p.name for p in get_detector_info(name).params}
    params: dict[str, Any] = {"random_state": seed}
    if epochs is not None:
        params.update({k: epochs for k in ("epochs", "pretrain_epochs") if k in names})
    return params


def _make_peer(name: str, seed: int):
    module, cls = PEERS[name]
    peer = getattr(import_module(module), cls)
    return peer(random_state=seed) if name == "pyod_iforest" else peer()


def run_task(task: Task) -> dict[str, Any]:
    """Fit one detector on one set and seed; return its metrics, times and scores."""
    from ad_core.metrics import auprc, auroc

    X_tr, X_te, y_te = prepared_split(task.dataset, task.seed, task.data_dir, task.max_train)
    if task.detector in PEERS:
        det = _make_peer(task.detector, task.seed)
    else:
        from ad_core import make_detector

        det = make_detector(task.detector, **detector_params(task.detector, task.seed, task.epochs))
    start = time.perf_counter()
    det.fit(X_tr)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    scores = np.asarray(det.decision_function(X_te), dtype=np.float64)
    score_seconds = time.perf_counter() - start
    return {
        "dataset": task.dataset,
        "seed": task.seed,
        "detector": task.detector,
        "auroc": auroc(y_te, scores),
        "auprc": auprc(y_te, scores),
        "fit_seconds": fit_seconds,
        "score_seconds": score_seconds,
        "n_train": int(X_tr.shape[0]),
        "n_features": int(X_tr.shape[1]),
        "train_scores": np.asarray(det.decision_scores_, dtype=np.float64),
        "test_scores": scores,
        "y_test": y_te,
    }


def _init_worker() -> Any:
    """Limit this process to one core; return the thread limits (to restore them)."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)  # one core per worker: fit times are single-core times
    limits = threadpool_limits(1)  # numpy's and scikit-learn's pools (BLAS, kNN search) too
    _warm_up()
    return limits


def _warm_up() -> None:
    """Make one throw-away fit, so torch's lazy start-up is not billed to a real fit."""
    from ad_core import make_detector

    warm = np.random.default_rng(0).random((64, 4)).astype(np.float32)
    make_detector("autoencoder", epochs=1, random_state=0).fit(warm)


# -- choosing the ensemble --------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    members: tuple[str, ...]
    combination: str

    @property
    def text(self) -> str:
        return f"{' + '.join(self.members)} ({self.combination})"


def candidates(
    members: tuple[str, ...],
    combinations: tuple[str, ...],
    *,
    min_members: int = MIN_MEMBERS,
    need_one_of: tuple[str, ...] = (),
) -> list[Candidate]:
    """Return the member subsets of at least ``min_members`` that include one of
    ``need_one_of`` (when given), each with every combination; fewest members first."""
    subsets = [
        c
        for k in range(min_members, len(members) + 1)
        for c in itertools.combinations(members, k)
        if not need_one_of or set(c) & set(need_one_of)
    ]
    return [Candidate(s, c) for s in subsets for c in combinations]


def candidate_auroc(rows: list[dict], candidate: Candidate, dataset: str) -> float:
    """Return the candidate's AUROC on ``dataset``, mean over seeds, from its members' fits."""
    from ad_core.detectors.ensemble import combine
    from ad_core.metrics import auroc

    values = []
    for seed in sorted({r["seed"] for r in rows if r["dataset"] == dataset}):
        fits = {r["detector"]: r for r in rows if r["dataset"] == dataset and r["seed"] == seed}
        if not all(m in fits for m in candidate.members):
            continue
        combined = combine(
            [fits[m]["train_scores"] for m in candidate.members],
            [fits[m]["test_scores"] for m in candidate.members],
            [1.0] * len(candidate.members),
            candidate.combination,
        )
        values.append(auroc(fits[candidate.members[0]]["y_test"], combined))
    return float(np.mean(values)) if values else float("nan")


def _mean_of(rows: list[dict], detector: str, dataset: str, key: str) -> float:
    vals = [r[key] for r in rows if r["detector"] == detector and r["dataset"] == dataset]
    return float(np.mean(vals)) if vals else float("nan")


def leave_one_set_out(
    rows: list[dict], sets: list[str], pool: list[Candidate], reference: str = "autoencoder"
) -> dict[str, Any]:
    """Return, per held-out set, the candidate picked on the others and its held-out AUROC.

    Also the modal pick over the folds (``"default"``). A candidate is eligible in a fold when
    its members' summed mean fit time on the fold's sets is at most COST_LIMIT x the
    ``reference`` detector's.
    """
    table = {(c, s): candidate_auroc(rows, c, s) for c in pool for s in sets}
    cost = {
        (m, s): _mean_of(rows, m, s, "fit_seconds")
        for m in {m for c in pool for m in c.members} | {reference}
        for s in sets
    }
    folds = []
    for held in sets:
        chosen_on = [s for s in sets if s != held]
        limit = COST_LIMIT * sum(cost[(reference, s)] for s in chosen_on)
        eligible = [
            c for c in pool if sum(cost[(m, s)] for m in c.members for s in chosen_on) <= limit
        ]
        # max keeps the first of equals: the pool lists fewer members first.
        pick = max(eligible, key=lambda c: np.mean([table[(c, s)] for s in chosen_on]))
        folds.append(
            {
                "held_out": held,
                "pick": pick,
                "selection_auroc": float(np.mean([table[(pick, s)] for s in chosen_on])),
                "held_out_auroc": table[(pick, held)],
                "n_eligible": len(eligible),
            }
        )
    counts = Counter(f["pick"] for f in folds)
    top = max(counts.values())
    # Among equally frequent picks, the first fold's order decides (no look at the figures).
    default = next(f["pick"] for f in folds if counts[f["pick"]] == top)
    return {"folds": folds, "default": default, "counts": counts, "table": table}


# -- report -----------------------------------------------------------------------------------
def per_set_means(rows: list[dict], key: str) -> dict[str, dict[str, float]]:
    """Return {detector: {dataset: mean of key over seeds}}."""
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        out.setdefault(r["detector"], {}).setdefault(r["dataset"], [])
        out[r["detector"]][r["dataset"]].append(r[key])
    return {d: {s: float(np.mean(v)) for s, v in sets.items()} for d, sets in out.items()}


def mean_ranks(auroc: dict[str, dict[str, float]], sets: list[str]) -> dict[str, float]:
    """Return each detector's mean rank over ``sets`` (1 = best AUROC; ties share ranks)."""
    from scipy.stats import rankdata

    detectors = list(auroc)
    ranks = {d: [] for d in detectors}
    for s in sets:
        values = np.array([auroc[d].get(s, np.nan) for d in detectors])
        present = ~np.isnan(values)
        r = rankdata(-values[present])
        for d, rank in zip(np.array(detectors)[present], r, strict=True):
            ranks[d].append(float(rank))
    return {d: float(np.mean(v)) if v else float("nan") for d, v in ranks.items()}


def _fmt(x: float, digits: int = 3) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _metric_table(
    means: dict[str, dict[str, float]], sets: list[str], order: list[str], ranks: dict
) -> list[str]:
    lines = ["| detector | " + " | ".join(sets) + " | mean | mean rank |"]
    lines.append("|---" * (len(sets) + 3) + "|")
    for d in order:
        cells = [_fmt(means[d].get(s, np.nan)) for s in sets]
        mean = np.nanmean([means[d].get(s, np.nan) for s in sets])
        name = f"**{d}**" if d == "ensemble" else d
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {_fmt(mean)} | {_fmt(ranks[d], 2)} |"
        )
    return lines


def render(
    rows: list[dict],
    sets: list[str],
    selection_sets: list[str],
    choice: dict[str, Any],
    default: Any,
    meta: dict[str, Any],
    parallel: list[dict],
    singles_choice: dict[str, Any] | None = None,
) -> str:
    """Return the Markdown report."""
    auroc = per_set_means(rows, "auroc")
    auprc = per_set_means(rows, "auprc")
    fit = per_set_means(rows, "fit_seconds")
    ranks = mean_ranks(auroc, sets)
    order = sorted(auroc, key=lambda d: (ranks[d], d))
    out = [
        "# Unsupervised detectors across data sets",
        "",
        f"Command: `{meta['command']}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, {meta['jobs']} worker "
        f"process(es) with one torch thread each; wall time {meta['wall'] / 60:.1f} min.  ",
        f"Seeds: {meta['seeds']}; deep epochs: {meta['epochs'] or 'detector defaults'}; "
        f"training rows at most {meta['max_train'] or 'all'}; "
        f"PyOD: {meta['pyod'] or 'not installed, peers skipped'}.",
    ]
    if meta.get("quick"):
        out += ["", "**Quick smoke run** (bundled samples, 1 seed, 2 epochs): not a result."]
    out += [
        "",
        "## Protocol",
        "",
        "Per set and seed: 70/30 train/test split stratified by the ground truth (a training "
        "split above the row cap is a stratified sample of it); the app's "
        "default preprocessing (median imputation, one-hot, standard scaling) fitted on the "
        "training split; every detector trains on the whole training split, anomalies "
        "included, without labels, with its registry defaults and `random_state = seed`; "
        "AUROC and AUPRC on the test split. Fit seconds are single-core (one torch thread per "
        "worker process). Mean rank: per set, detectors ranked by mean AUROC over seeds (1 = "
        "best), averaged over the sets. Data and details: the docstring of "
        "`ad_core/bench/unsup.py`.",
        "",
        "Choosing the ensemble (leave one set out, on the "
        f"{len(selection_sets)} sets {', '.join(selection_sets)} only): every subset of at "
        f"least {MIN_MEMBERS} of the members {{"
        + ", ".join(meta["members"])
        + "} that includes the autoencoder or Deep SVDD (the app's latent map and "
        "explanations come from one of them), with equal weights, combined by "
        + " or ".join(meta["combinations"])
        + f" averaging ({len(meta['pool'])} candidates), is scored from the standalone fits "
        "of its members (same rows, same seeds: the scores the ensemble gives). For each set "
        f"in turn the candidate with the best mean AUROC on the other {len(selection_sets) - 1}"
        f" is picked, among those whose summed member fit time there is at most {COST_LIMIT:g}"
        "x the autoencoder's, and scored on the held-out set. The default is the candidate "
        "picked by most folds. Sets outside the selection were never used to choose.",
        "",
        "| held-out set | picked on the others | their mean AUROC | held-out AUROC "
        "| default ensemble there | best single detector there |",
        "|---|---|---|---|---|---|",
    ]
    others = [d for d in auroc if d != "ensemble"]
    for f in choice["folds"]:
        held = f["held_out"]
        best = max(others, key=lambda d: auroc[d].get(held, -1))
        out.append(
            f"| {held} | {f['pick'].text} | {_fmt(f['selection_auroc'])} | "
            f"{_fmt(f['held_out_auroc'])} | {_fmt(auroc.get('ensemble', {}).get(held, np.nan))}"
            f" | {best} {_fmt(auroc[best].get(held, np.nan))} |"
        )
    loso_mean = np.mean([f["held_out_auroc"] for f in choice["folds"]])
    counts = ", ".join(f"{c.text}: {n}" for c, n in choice["counts"].most_common())
    matches = choice["default"] == default
    out += [
        "",
        f"Mean held-out AUROC of the fold picks: {_fmt(loso_mean)} (the protocol's estimate "
        f"of the choice on an unseen set). Picks: {counts}.  ",
        f"Protocol's default: **{choice['default'].text}**. The ensemble's defaults in "
        f"`ad_core/detectors/ensemble.py`: {default.text}"
        + (
            " (the same)."
            if matches
            else " (a quick run's pick means nothing)."
            if meta.get("quick")
            else " (**differ: update the defaults**)."
        ),
        "",
        *_consistency_lines(rows, auroc, selection_sets, default),
        "Candidates with Deep SVDD are scored with Deep SVDD at its own defaults (150 "
        "pretraining + 150 training epochs); inside the ensemble it trains `epochs` + `epochs`.",
        *_singles_lines(singles_choice),
        "",
        f"## AUROC (test split, mean over {meta['seeds']} seed(s))",
        "",
        *_metric_table(auroc, sets, order, ranks),
        "",
        "## AUPRC (average precision)",
        "",
        *_metric_table(auprc, sets, order, mean_ranks(auprc, sets)),
        "",
        "## Fit seconds (single core, mean over seeds)",
        "",
        "| detector | " + " | ".join(sets) + " | total |",
        "|---" * (len(sets) + 2) + "|",
    ]
    for d in order:
        cells = [_fmt(fit[d].get(s, np.nan), 2) for s in sets]
        total = np.nansum([fit[d].get(s, np.nan) for s in sets])
        out.append(f"| {d} | " + " | ".join(cells) + f" | {total:.1f} |")
    out += ["", "## Goals", ""]
    out += goal_lines(auroc, fit, ranks, sets, selection_sets, order)
    if parallel:
        out += [
            "",
            "## Members in parallel",
            "",
            "Ensembles alone in this process after the table's runs (other programs on the "
            "machine may still run), with a budget of two torch threads: members trained one "
            "after another (small networks on one thread, kNN's search on two) versus two at a "
            "time on one thread each (`n_jobs` = 1 or 2).",
            "",
            "| set | ensemble | one after another, fit s | two at a time, fit s | speed-up "
            "| same scores |",
            "|---|---|---|---|---|---|",
        ]
        for p in parallel:
            out.append(
                f"| {p['dataset']} | {p['config']} | {p['sequential']:.2f} | "
                f"{p['parallel']:.2f} | {p['sequential'] / p['parallel']:.2f}x | "
                f"{'yes' if p['same'] else 'no'} |"
            )
    return "\n".join(out) + "\n"


def _consistency_lines(rows, auroc, selection_sets, default) -> list[str]:
    """Return how far the real ensemble's AUROC is from its members' combined standalone fits."""
    if "ensemble" not in auroc:
        return []
    gaps = [
        abs(candidate_auroc(rows, default, s) - auroc["ensemble"][s])
        for s in selection_sets
        if s in auroc["ensemble"]
    ]
    return [
        "The ensemble row below is the real detector, trained through its own code; its AUROC "
        "differs from that of its members' standalone fits combined by at most "
        f"{max(gaps):.4f} on the selection sets (same seeds, same rows).  ",
    ]


def _singles_lines(singles: dict[str, Any] | None) -> list[str]:
    if not singles:
        return []
    picks = ", ".join(f"{c.text}: {n}" for c, n in singles["counts"].most_common())
    mean = np.mean([f["held_out_auroc"] for f in singles["folds"]])
    return [
        "",
        "For the record, the same protocol with single detectors allowed as candidates (and "
        f"no latent member required) picks: {picks}; mean held-out AUROC {_fmt(mean)}.",
    ]


def goal_lines(auroc, fit, ranks, sets, selection_sets, order) -> list[str]:
    """Return the issue's goals, each met or not, in words."""
    if "ensemble" not in auroc:
        return ["The ensemble was not measured."]
    lines = [
        f"- Mean rank: the ensemble is {order.index('ensemble') + 1} of {len(order)} "
        f"({_fmt(ranks['ensemble'], 2)}; best {order[0]} {_fmt(ranks[order[0]], 2)})."
    ]
    below = []
    for s in sets:
        values = [auroc[d][s] for d in auroc if s in auroc[d]]
        median = float(np.median(values))
        if auroc["ensemble"].get(s, np.nan) < median:
            below.append(f"{s} ({_fmt(auroc['ensemble'][s])} < median {_fmt(median)})")
    lines.append(
        f"- Never below the median of the {len(auroc)} rows of the table: "
        + ("met on every set." if not below else "not met on " + ", ".join(below) + ".")
    )
    unseen = [s for s in sets if s not in selection_sets]
    if unseen:
        lines.append(
            f"- On the sets never used for choosing ({', '.join(unseen)}): mean AUROC "
            + ", ".join(
                f"{d} {_fmt(np.mean([auroc[d][s] for s in unseen]))}"
                for d in sorted(
                    auroc, key=lambda d: -np.mean([auroc[d].get(s, np.nan) for s in unseen])
                )[:4]
            )
            + f"; the ensemble {_fmt(np.mean([auroc['ensemble'][s] for s in unseen]))}."
        )
    if "autoencoder" in fit:
        ens = np.nansum([fit["ensemble"].get(s, np.nan) for s in sets])
        ae = np.nansum([fit["autoencoder"].get(s, np.nan) for s in sets])
        worst = max(sets, key=lambda s: fit["ensemble"][s] / fit["autoencoder"][s])
        lines.append(
            f"- Cost at most {COST_LIMIT:g}x the autoencoder's: {ens / ae:.2f}x in total fit "
            f"time (single core, members one after another); at most "
            f"{fit['ensemble'][worst] / fit['autoencoder'][worst]:.2f}x on one set ({worst})."
        )
    return lines


#: the ensembles whose members are timed one after another and two at a time
PARALLEL_CONFIGS = {
    "default": {},
    "all five members": {
        "autoencoder_weight": 1.0,
        "deep_svdd_weight": 1.0,
        "knn_weight": 1.0,
        "isolation_forest_weight": 1.0,
        "ecod_weight": 1.0,
    },
}


def measure_parallel(
    sets: list[str], data_dir: str, epochs: int | None, max_train: int | None
) -> list[dict]:
    """Return sequential vs parallel fit times of ensembles on ``sets`` (two torch threads)."""
    import torch

    from ad_core import make_detector

    out = []
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _warm_up()
        for s in sets:
            X_tr, X_te, _ = prepared_split(s, 0, data_dir, max_train)
            for config, weights in PARALLEL_CONFIGS.items():
                params = detector_params("ensemble", 0, epochs) | weights
                fits = {}
                for n_jobs in (1, 2):
                    start = time.perf_counter()
                    det = make_detector("ensemble", n_jobs=n_jobs, **params).fit(X_tr)
                    fits[n_jobs] = (time.perf_counter() - start, det.decision_function(X_te))
                out.append(
                    {
                        "dataset": s,
                        "config": f"{config} ({' + '.join(det.members_)})",
                        "sequential": fits[1][0],
                        "parallel": fits[2][0],
                        "same": bool(np.array_equal(fits[1][1], fits[2][1])),
                    }
                )
    finally:
        torch.set_num_threads(before)
    return out


# -- main -------------------------------------------------------------------------------------
def _pyod_version() -> str | None:
    try:
        import pyod
    except ImportError:
        return None
    return str(getattr(pyod, "__version__", "installed"))


def _log(message: str) -> None:
    print(message, flush=True)


def main(argv: list[str] | None = None) -> int:
    from ad_core.detectors import list_detectors
    from ad_core.detectors.ensemble import COMBINATIONS, LATENT_MEMBERS, MEMBERS, Ensemble

    parser = argparse.ArgumentParser(
        prog="python -m ad_core.bench unsup",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds per set (default 3)")
    parser.add_argument("--sets", nargs="+", default=None, help=f"default: {' '.join(FULL_SETS)}")
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--epochs", type=int, default=None, help="override deep epochs")
    parser.add_argument(
        "--max-train", type=int, default=MAX_TRAIN, help=f"training rows at most ({MAX_TRAIN})"
    )
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--detectors", nargs="+", default=None, help="default: all of them")
    parser.add_argument("--no-pyod", action="store_true", help="skip PyOD's detectors")
    parser.add_argument("--quick", action="store_true", help="a smoke run in under a minute")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/unsup.md"))
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.jobs = 1, 1
        args.epochs = QUICK_EPOCHS if args.epochs is None else args.epochs
    sets = list(args.sets or (QUICK_SETS if args.quick else FULL_SETS))
    selection_sets = [s for s in sets if s in ODDS_SETS] or sets  # quick: its own sets
    data_dir = str(args.data_dir)
    try:
        for s in sets:
            load_set(s, data_dir)
    except (FileNotFoundError, OSError) as exc:
        print(f"benchmark data missing: {exc}", file=sys.stderr)
        return 2

    ours = [d.name for d in list_detectors() if d.uses_labels == "no"]
    pyod = None if args.no_pyod else _pyod_version()
    detectors = ours + (list(PEERS) if pyod else [])
    if args.detectors:
        detectors = [d for d in detectors if d in args.detectors]
    tasks = [
        Task(s, seed, d, data_dir, args.epochs, args.max_train)
        for seed in range(args.seeds)
        for s in sets
        for d in detectors
    ]
    # The biggest sets and the deep detectors first, so the pool does not end on a straggler.
    size = {s: len(load_set(s, data_dir)[0]) for s in sets}
    tasks.sort(key=lambda t: (t.seed, -size[t.dataset] * (5 if t.detector in ours else 1)))
    started = time.perf_counter()
    rows = collect(tasks, args.jobs)

    members = tuple(m for m in MEMBERS if m in ours)
    pool_ = candidates(members, COMBINATIONS, need_one_of=LATENT_MEMBERS)
    choice = leave_one_set_out(rows, selection_sets, pool_)
    # For the record: what the same protocol picks when single detectors may compete.
    singles = leave_one_set_out(
        rows, selection_sets, candidates(members, COMBINATIONS, min_members=1)
    )
    defaults = Ensemble()
    default = Candidate(
        tuple(m for m in MEMBERS if getattr(defaults, f"{m}_weight") > 0), defaults.combination
    )
    parallel = (
        []
        if args.quick
        else measure_parallel(_parallel_sets(sets), data_dir, args.epochs, args.max_train)
    )
    command = "python -m ad_core.bench unsup " + " ".join(shlex.quote(a) for a in (argv or []))
    meta = {
        "command": command.strip(),
        "jobs": args.jobs,
        "wall": time.perf_counter() - started,
        "seeds": args.seeds,
        "epochs": args.epochs,
        "max_train": args.max_train,
        "pyod": pyod,
        "quick": args.quick,
        "members": members,
        "combinations": COMBINATIONS,
        "pool": pool_,
    }
    text = render(rows, sets, selection_sets, choice, default, meta, parallel, singles)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    _log(f"wrote {args.out} in {meta['wall']:.0f} s")
    return 0


def collect(tasks: list[Task], jobs: int) -> list[dict]:
    """Return the result of every task, run in ``jobs`` single-core processes (1: here)."""
    rows: list[dict] = []
    if jobs <= 1:
        import torch

        threads = torch.get_num_threads()
        limits = _init_worker()
        try:
            for i, task in enumerate(tasks, 1):
                rows.append(run_task(task))
                _progress(i, len(tasks), rows[-1])
        finally:
            limits.restore_original_limits()
            torch.set_num_threads(threads)
        return rows
    with ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker) as pool:
        futures = [pool.submit(run_task, t) for t in tasks]
        for i, fut in enumerate(as_completed(futures), 1):
            rows.append(fut.result())
            _progress(i, len(tasks), rows[-1])
    return rows


def _parallel_sets(sets: list[str]) -> list[str]:
    return [s for s in ("satellite", "ecg5000") if s in sets]


def _progress(i: int, n: int, row: dict) -> None:
    _log(
        f"[{i}/{n}] {row['dataset']:14s} seed={row['seed']} {row['detector']:16s} "
        f"AUROC={row['auroc']:.3f} fit={row['fit_seconds']:.1f}s"
    )


if __name__ == "__main__":
    raise SystemExit(main())
