"""Series and sequences: NAB's artificial series in windows, ECG5000's beats as sequences.

    python -m ad_core.bench series [--quick] [--choices] [--seeds N] [--data-dir DIR] [--out FILE]

``--seeds`` (default 1) is the seeds per NAB series; ECG5000 runs at least 3 (``ECG_MIN_SEEDS``;
one in ``--quick``).

NAB (``nab/`` in the shared data; numenta/NAB, Lavin & Ahmad 2015): the six artificial series
with anomalies, 4,032 points each at 5-minute steps. Each series goes through the path the
app takes: ``load_table``, ``infer_schema``, ``ad_core.series.detect_series``,
``find_problems`` (the series must come out clean; none is fixed), ``series_values``. Then:
- the values are standardised (mean 0, standard deviation 1 over the whole series: the app's
  default standard scaling, done once on the series since every window column is the same
  series shifted);
- windows as ``propose_window`` proposes them (the detected period, one day = 288 points, or
  100 points without a period) with ``target_windows=500`` (reduced from the default 2,000
  so that seq2seq fits in about a minute per series here: stride 8 instead of 2);
- seq2seq, autoencoder, PCA and Isolation Forest train on every window of the series with
  their registry defaults (``random_state`` = seed), unsupervised: the anomaly is among the
  training windows, as it is when an analyst trains on a series in the app;
- window scores map to points by ``point_scores`` with the library's default mapping (the
  max over the windows covering a point); the table also gives AUROC with the mean;
- the baseline, a rolling robust z-score: |x - median| / (1.4826 x MAD) of the preceding
  window (same length as the detectors' windows), the largest over the value columns;
- metrics: point-wise AUROC against NAB's anomaly windows (every point inside a window is an
  anomaly); at the threshold the app starts a run with (the "Expected share" rule at the
  detectors' default contamination, 0.1, applied to the point scores) the flagged points
  merge into events (``events(min_gap=window length)``: flagged points less than a window
  apart share the windows of one anomaly): event recall is the share of NAB
  windows that some event overlaps, false events are events that overlap none, per 1,000
  points; fit seconds (one torch thread).

ECG5000 (``ecg5000/ecg5000.csv``, 5,000 beats of 140 steps; label 1 normal, 2-5 abnormal):
each beat is one row and a sequence of 140 steps (no windowing; seq2seq with one channel).
The beats are split at random (seed 0) into a training half and a test half; the detectors
train on the normal beats of the training half (1,444) and score the test half (2,500 beats,
41 % abnormal): AUROC, AUPRC, fit seconds. Values as stored (the UCR archive z-normalises
each beat). Anomagram's browser autoencoder (victordibia/anomagram) trains on the same data
and shows its ROC AUC live in the browser; its repository states no fixed figure to compare.

How the defaults were chosen, never on the test rows:
- seq2seq's decoder, code size, learning rate and batch size on a validation split inside
  the ECG5000 training half (its first 70 %: 1,002 normal beats to train on; the last 30 %,
  750 beats with their anomalies, to score), written in ``ad_core/detectors/seq2seq.py``;
  ``--choices`` re-runs that comparison and adds it to the report;
- BiGAN's training (the best epoch kept or the last; learning rate 1e-4, 3e-4, 1e-3; 100 or
  200 epochs; code 32; the autoencoder's derived layers instead of 128, 64) and its score (the norm, L1 or L2, and the weight
  alpha of Zenati et al.'s A(x); their cross-entropy variant) on 60/40 splits of thyroid and
  cardio (ODDS, the sets its stability test uses; 3 seeds) and on 3 validation folds inside
  ECG5000's training half (fold 0 is seq2seq's split; 3 seeds each), every score computed on
  the same fits; ``--choices`` re-runs it (``BIGAN_TRAININGS``, ``bigan_score_variants``);
  trials that needed code changes are listed in ``ad_core/detectors/bigan.py``;
- the window rule on the reasons given in ``ad_core/series.py``, the event gap on the reason
  above; the mapping to
  points on synthetic series (``synthetic_series``: a daily cycle with one injected anomaly
  of five kinds), never NAB; ``--choices`` re-runs that comparison too.

``--quick``: one NAB series (art_daily_jumpsup) at 120 windows, and the bundled 1,000-beat
ECG5000 sample (``sample_data/ecg5000.csv``), deep detectors at 2 epochs: a smoke run whose
figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

NAB_SERIES = (
    "art_daily_flatmiddle",
    "art_daily_jumpsdown",
    "art_daily_jumpsup",
    "art_daily_nojump",
    "art_increase_spike_density",
    "art_load_balancer_spikes",
)
NAB_DETECTORS = ("seq2seq", "autoencoder", "pca", "isolation_forest")
ECG_DETECTORS = ("seq2seq", "bigan", "autoencoder", "pca", "isolation_forest")
DEEP = {"seq2seq", "bigan", "autoencoder"}
BASELINE = "rolling_z"
#: the detectors' default contamination: the app's starting threshold ("Expected share")
DEFAULT_CONTAMINATION = 0.1
#: windows per NAB series (the library proposes up to 2,000; reduced to keep fits short)
NAB_TARGET_WINDOWS = 500
QUICK_TARGET_WINDOWS = 120
QUICK_EPOCHS = 2
ECG_GOAL = 0.95
#: ECG5000 runs at least this many seeds (a GAN's spread over seeds is part of the figure)
ECG_MIN_SEEDS = 3
_REPO = Path(__file__).resolve().parents[2]
MAPPINGS = ("max", "mean")


def default_mapping() -> str:
    """Return the library's default way of mapping window scores to points."""
    import inspect

    from ad_core.series import point_scores

    return inspect.signature(point_scores).parameters["how"].default


def other_mapping() -> str:
    return next(m for m in MAPPINGS if m != default_mapping())


def default_data_dir() -> Path:
    """Return ../shared/data beside the repository."""
    return _REPO.parent / "shared" / "data"


# --- NAB ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelledSeries:
    """A clean series with point labels and the position ranges of its anomaly windows."""

    name: str
    values: np.ndarray  # points x channels, standardised
    times: pd.Index | None
    truth: np.ndarray  # 1 inside an anomaly window
    windows: tuple[tuple[int, int], ...]  # inclusive position ranges


def load_nab(data_dir: Path, name: str) -> LabelledSeries:
    """Return NAB series ``name`` read the app's way, standardised, with its anomaly windows."""
    from ad_core import series
    from ad_core.data import infer_schema, load_table

    root = Path(data_dir) / "nab"
    frame = load_table(root / "artificialWithAnomaly" / f"{name}.csv")
    spec = series.detect_series(frame, infer_schema(frame))
    if spec is None:
        raise RuntimeError(f"{name}: not recognised as a series")
    problems = series.find_problems(frame, spec)
    if not problems.ok:
        raise RuntimeError(f"{name}: {'; '.join(problems.messages())}")
    clean = series.series_values(frame, spec)
    values = clean.values
    spread = values.std(axis=0)
    values = (values - values.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    labelled = json.loads((root / "combined_windows.json").read_text())
    truth = np.zeros(len(clean), dtype=np.int64)
    ranges = []
    for start, end in labelled[f"artificialWithAnomaly/{name}.csv"]:
        inside = (clean.times >= pd.Timestamp(start)) & (clean.times <= pd.Timestamp(end))
        where = np.flatnonzero(inside)
        truth[where] = 1
        ranges.append((int(where[0]), int(where[-1])))
    return LabelledSeries(name, values, clean.times, truth, tuple(ranges))


def rolling_robust_z(values: np.ndarray, length: int) -> np.ndarray:
    """Return |x - median| / (1.4826 MAD) over the preceding ``length`` points, per point.

    The largest over the channels; the first point, with nothing before it, scores 0. A flat
    stretch (MAD 0) divides by the smallest positive MAD seen instead, so it stays finite.
    """
    frame = pd.DataFrame(np.asarray(values, dtype=np.float64))
    median = frame.rolling(length, min_periods=1).median().shift(1)
    mad = (frame - median).abs().rolling(length, min_periods=1).median().shift(1)
    positive = mad[mad > 0].min().fillna(1.0)
    mad = mad.where(mad > 0, positive, axis=1)
    z = ((frame - median).abs() / (1.4826 * mad)).fillna(0.0)
    return z.to_numpy().max(axis=1)


def event_metrics(
    scores: np.ndarray, truth_windows: tuple[tuple[int, int], ...], threshold: float, min_gap: int
) -> dict:
    """Return event recall, false events per 1,000 points and the number of events."""
    from ad_core.series import events

    table = events(scores, threshold, min_gap=min_gap)
    hits = [
        any(int(e.start) <= b and int(e.end) >= a for e in table.itertuples())
        for a, b in truth_windows
    ]
    false = sum(
        not any(int(e.start) <= b and int(e.end) >= a for a, b in truth_windows)
        for e in table.itertuples()
    )
    return {
        "event_recall": float(np.mean(hits)) if hits else float("nan"),
        "false_per_1000": 1000.0 * false / scores.size,
        "n_events": len(table),
    }


def _detector_params(name: str, seed: int, epochs: int | None, **extra) -> dict:
    from ad_core.detectors import get_detector_info

    names = {p.name for p in get_detector_info(name).params}
    params = {"random_state": seed} if "random_state" in names else {}
    if epochs is not None and "epochs" in names:
        params["epochs"] = epochs
    params.update({k: v for k, v in extra.items() if k in names})
    return params


def _point_metrics(
    s: LabelledSeries, point: np.ndarray, min_gap: int, extra: dict | None = None
) -> dict:
    from ad_core.metrics import auroc
    from ad_core.thresholds import contamination_threshold

    threshold = contamination_threshold(point, DEFAULT_CONTAMINATION)
    row = {"series": s.name, "auroc": auroc(s.truth, point)}
    row.update(extra or {})
    row.update(event_metrics(point, s.windows, threshold, min_gap))
    return row


def run_nab(
    data_dir: Path, names: tuple[str, ...], seed: int, *, epochs: int | None, target: int
) -> list[dict]:
    """Return one row per (series, detector) and the baseline, for one seed."""
    from ad_core import make_detector
    from ad_core.metrics import auroc
    from ad_core.series import make_windows, point_scores, propose_window

    rows = []
    for name in names:
        s = load_nab(data_dir, name)
        window = propose_window(s.values, target_windows=target)
        X = make_windows(s.values, window)
        common = {"window": window.length, "stride": window.stride, "n_windows": len(X)}
        start = time.perf_counter()
        z = rolling_robust_z(s.values, window.length)
        base = _point_metrics(s, z, window.length, {"detector": BASELINE, **common})
        base.update(seed=seed, auroc_other=float("nan"), fit_seconds=time.perf_counter() - start)
        rows.append(base)
        for detector in NAB_DETECTORS:
            params = _detector_params(detector, seed, epochs, n_channels=s.values.shape[1])
            det = make_detector(detector, **params)
            start = time.perf_counter()
            det.fit(X)
            fit_seconds = time.perf_counter() - start
            window_scores = det.decision_function(X)
            point = point_scores(window_scores, len(s.values), window)
            row = _point_metrics(s, point, window.length, {"detector": detector, **common})
            other = point_scores(window_scores, len(s.values), window, how=other_mapping())
            row.update(seed=seed, auroc_other=auroc(s.truth, other), fit_seconds=fit_seconds)
            rows.append(row)
            _progress(f"NAB {name} {detector}: AUROC {row['auroc']:.3f} fit {fit_seconds:.1f}s")
    return rows


# --- ECG5000 ------------------------------------------------------------------------------
def load_ecg(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Return (beats as float32 rows of 140 steps, 1 for abnormal beats) from an ECG5000 CSV."""
    frame = pd.read_csv(path)
    steps = [c for c in frame.columns if c.startswith("t") and c[1:].isdigit()]
    X = frame[steps].to_numpy(dtype=np.float32)
    y = (frame["label"].to_numpy() != 1).astype(np.int64)
    return X, y


def ecg_split(
    y: np.ndarray, seed: int = 0, train_share: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Return (training half, test half) row indices: a seeded random permutation, cut once."""
    order = np.random.default_rng(seed).permutation(y.size)
    cut = int(train_share * y.size)
    return order[:cut], order[cut:]


def ecg_validation_split(
    y: np.ndarray, train: np.ndarray, share: float = 0.7, fold: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Return (normal beats to train on, beats to score) inside the training half.

    Fold 0 scores the last 1 - ``share`` of the half and trains on the normal beats before;
    fold k scores the block of the same size k blocks earlier and trains on the normal beats
    of the rest (disjoint blocks while k < share / (1 - share)).
    """
    size = train.size - int(share * train.size)
    stop = train.size - fold * size
    if fold < 0 or stop - size < 0:
        raise ValueError(f"fold {fold} does not fit in {train.size} rows")
    scored = np.zeros(train.size, dtype=bool)
    scored[stop - size : stop] = True
    fit_rows = train[~scored]
    return fit_rows[y[fit_rows] == 0], train[scored]


def run_ecg(path: Path, seed: int, *, epochs: int | None) -> list[dict]:
    """Return one row per detector: trained on the training half's normal beats."""
    from ad_core import make_detector
    from ad_core.metrics import auprc, auroc

    X, y = load_ecg(path)
    train, test = ecg_split(y)
    normal = train[y[train] == 0]
    rows = []
    for detector in ECG_DETECTORS:
        det = make_detector(detector, **_detector_params(detector, seed, epochs))
        start = time.perf_counter()
        det.fit(X[normal])
        fit_seconds = time.perf_counter() - start
        scores = det.decision_function(X[test])
        rows.append(
            {
                "detector": detector,
                "seed": seed,
                "auroc": auroc(y[test], scores),
                "auprc": auprc(y[test], scores),
                "fit_seconds": fit_seconds,
                "n_train": int(normal.size),
                "n_test": int(test.size),
                "test_anomalies": float(y[test].mean()),
            }
        )
        _progress(f"ECG5000 {detector}: AUROC {rows[-1]['auroc']:.3f} fit {fit_seconds:.1f}s")
    return rows


# --- how the defaults were chosen ----------------------------------------------------------------
SEQ2SEQ_CANDIDATES = (
    ("the paper's conditional decoder, scored free-running", {"decoder": "conditional"}),
    ("unconditioned, code 16", {"hidden_size": 8}),
    ("unconditioned, code 32", {"hidden_size": 16}),
    ("unconditioned, code 64, lr 0.01 (default)", {}),
    ("unconditioned, code 64, lr 0.001", {"lr": 1e-3}),
)
#: the small-training-set check of the automatic batch: rows, seeds
SMALL_ROWS, SMALL_SEEDS = 290, (0, 1, 2)
#: a BiGAN candidate's ``hidden_dims`` that stands for the autoencoder's (``widths_for``)
DERIVED = "derived"
#: BiGAN training settings compared (the first is the default), and the seeds per set
BIGAN_TRAININGS = (
    ("default (lr 0.0003, 100 epochs, batch 128, layers 128, 64, best epoch kept)", {}),
    ("the last epoch kept (keep_best off, as the papers)", {"keep_best": False}),
    ("lr 0.0001", {"lr": 1e-4}),
    ("lr 0.001", {"lr": 1e-3}),
    ("200 epochs", {"epochs": 200}),
    ("code 32 (derived: 16 on beats, 4 thyroid, 8 cardio)", {"rep_dim": 32}),
    (
        "the autoencoder's derived layers (64, 32 on beats; 32, 16 thyroid, cardio)",
        {"hidden_dims": DERIVED},
    ),
)
BIGAN_SEEDS = (0, 1, 2)
#: ECG5000 validation folds for BiGAN (fold 0 is seq2seq's validation split)
BIGAN_ECG_FOLDS = (0, 1, 2)
#: BiGAN scores compared on every fit: Zenati et al.'s A(x) per norm and weight alpha, and
#: their cross-entropy variant; BIGAN_SCORE_PAIR are the two the training table shows
BIGAN_NORMS, BIGAN_ALPHAS = ("l1", "l2"), (1.0, 0.9, 0.5, 0.0)
CE_REAL, CE_REBUILT = "cross-entropy of D on (x, E(x))", "cross-entropy of D on (G(E(x)), E(x))"
BIGAN_SCORE_PAIR = ("l1, alpha 0.9", "l2, alpha 0.9")
#: the scores with both of A(x)'s terms, the candidates of the rule
BIGAN_TWO_TERM_SCORES = tuple(
    f"{norm}, alpha {alpha:g}" for norm in BIGAN_NORMS for alpha in BIGAN_ALPHAS if 0 < alpha < 1
)
BIGAN_SETS = ("ECG5000 validation", "thyroid", "cardio")
SYNTHETIC_KINDS = ("spike", "shift", "flat", "amplitude", "noise")


def synthetic_series(seed: int, kind: str, n: int = 4032, period: int = 288):
    """Return (values, truth) of a daily cycle with noise and one anomaly of ``kind``.

    Kinds: a 3-point spike, a level shift, a flat stretch, a day at half amplitude, or a
    stretch of extra noise; the truth marks a window of n / 20 points around the anomaly
    plus its extent, as NAB's windows do.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    cycle = np.clip(np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi)), 0, None) ** 2
    x = 20 + 30 * cycle + rng.normal(0, 1.5, n)
    at = int(rng.integers(n // 3, n - 2 * period))
    extent = {"spike": 3, "shift": period // 2, "flat": period // 2, "amplitude": period}
    extent = extent.get(kind, period // 2)
    if kind == "spike":
        x[at : at + extent] += 60
    elif kind == "shift":
        x[at : at + extent] += 15
    elif kind == "flat":
        x[at : at + extent] = x[at]
    elif kind == "amplitude":
        x[at : at + extent] = 20 + 0.5 * (x[at : at + extent] - 20)
    elif kind == "noise":
        x[at : at + extent] += rng.normal(0, 8, extent)
    else:
        raise ValueError(f"unknown kind {kind!r}")
    truth = np.zeros(n, dtype=np.int64)
    half = n // 40
    truth[max(0, at - half) : at + extent + half] = 1
    return x, truth


def run_choices(ecg_path: Path, data_dir: Path, *, epochs: int | None, quick: bool) -> dict:
    """Return the validation figures behind seq2seq's defaults and the point mapping."""
    from ad_core import make_detector
    from ad_core.metrics import auroc
    from ad_core.series import make_windows, point_scores, propose_window

    X, y = load_ecg(ecg_path)
    train, _ = ecg_split(y)
    fit_rows, score_rows = ecg_validation_split(y, train)
    seq2seq = []
    for title, params in SEQ2SEQ_CANDIDATES[: 2 if quick else None]:
        det = make_detector("seq2seq", **_detector_params("seq2seq", 0, epochs), **params)
        start = time.perf_counter()
        det.fit(X[fit_rows])
        seconds = time.perf_counter() - start
        value = auroc(y[score_rows], det.decision_function(X[score_rows]))
        seq2seq.append({"candidate": title, "auroc": value, "fit_seconds": seconds})
        _progress(f"choice seq2seq {title}: AUROC {value:.3f}")
    small = []
    for batch in (32, None):
        for seed in SMALL_SEEDS[: 1 if quick else None]:
            det = make_detector(
                "seq2seq", batch_size=batch, **_detector_params("seq2seq", seed, epochs)
            )
            det.fit(X[fit_rows[:SMALL_ROWS]])
            value = auroc(y[score_rows], det.decision_function(X[score_rows]))
            small.append(
                {"batch": det.batch_size_, "automatic": batch is None, "seed": seed, "auroc": value}
            )
            _progress(
                f"choice seq2seq small, batch {det.batch_size_} seed {seed}: AUROC {value:.3f}"
            )
    bigan = run_bigan_choice(X, y, train, data_dir, epochs=epochs, quick=quick)
    mapping = []
    kinds = SYNTHETIC_KINDS[:1] if quick else SYNTHETIC_KINDS
    for kind in kinds:
        for seed in range(1 if quick else 2):
            x, truth = synthetic_series(seed, kind)
            values = ((x - x.mean()) / x.std())[:, None]
            window = propose_window(values)
            W = make_windows(values, window)
            for detector in ("autoencoder", "pca", "isolation_forest"):
                det = make_detector(detector, **_detector_params(detector, seed, epochs))
                scores = det.fit(W).decision_function(W)
                row = {"kind": kind, "seed": seed, "detector": detector}
                for how in ("max", "mean"):
                    row[how] = auroc(truth, point_scores(scores, len(values), window, how=how))
                mapping.append(row)
    return {
        "seq2seq": seq2seq,
        "small": small,
        "bigan": bigan,
        "mapping": mapping,
        "n_fit": int(fit_rows.size),
    }


def _odds(data_dir: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    from ad_core.data import load_table

    file = {"thyroid": "thyroid.npz"}.get(name, f"{name}.mat")
    frame = load_table(Path(data_dir) / "odds" / file)
    y = frame.pop("label").to_numpy().astype(np.int64)
    return frame.to_numpy(dtype=np.float64), y


def bigan_score_variants(det, X: np.ndarray) -> dict[str, np.ndarray]:
    """Return a fitted BiGAN's scores of ``X`` under every norm, alpha and cross-entropy."""
    import torch
    import torch.nn.functional as F

    from ad_core.detectors.bigan import score_terms

    m = det.model_
    x = torch.from_numpy(np.asarray(X, dtype=np.float32)).to(det.device_)
    out = {}
    with torch.inference_mode():
        for norm in BIGAN_NORMS:
            rec, feat = score_terms(m, x, norm)
            for alpha in BIGAN_ALPHAS:
                out[f"{norm}, alpha {alpha:g}"] = alpha * rec + (1.0 - alpha) * feat
        z = m.encoder(x)
        out[CE_REAL] = F.softplus(-m.discriminator(x, z)[0])
        out[CE_REBUILT] = F.softplus(-m.discriminator(m.generator(z), z)[0])
    return {k: v.cpu().numpy().astype(np.float64) for k, v in out.items()}


def run_bigan_choice(X, y, train, data_dir: Path, *, epochs, quick: bool) -> list:
    """Return BiGAN's AUROC per training setting, set, fold and seed, and score.

    Sets: ECG5000's validation folds inside the training half (``ecg_validation_split``,
    folds ``BIGAN_ECG_FOLDS``); thyroid and cardio in 60/40 splits stratified by the truth
    (seed = split seed), standard scaling fitted on the training rows, unsupervised training
    (the stability test's set-up). Every fit is scored every way
    (:func:`bigan_score_variants`), so the scores compare on the same models.
    """
    from sklearn.model_selection import train_test_split

    from ad_core import make_detector
    from ad_core.metrics import auroc
    from ad_core.nn import widths_for

    folds = BIGAN_ECG_FOLDS[:1] if quick else BIGAN_ECG_FOLDS
    ecg = {}
    for fold in folds:
        fit_rows, score_rows = ecg_validation_split(y, train, fold=fold)
        ecg[fold] = (X[fit_rows], X[score_rows], y[score_rows])
    odds = {} if quick else {name: _odds(data_dir, name) for name in BIGAN_SETS[1:]}
    rows = []
    for title, params in BIGAN_TRAININGS[:1] if quick else BIGAN_TRAININGS:
        for seed in BIGAN_SEEDS[:1] if quick else BIGAN_SEEDS:
            sets = [(BIGAN_SETS[0], fold, data) for fold, data in ecg.items()]
            for name, (Xs, ys) in odds.items():
                tr, te = train_test_split(
                    np.arange(ys.size), test_size=0.4, stratify=ys, random_state=seed
                )
                mean, std = Xs[tr].mean(0), Xs[tr].std(0)
                std[std == 0] = 1.0
                sets.append((name, 0, ((Xs[tr] - mean) / std, (Xs[te] - mean) / std, ys[te])))
            for name, fold, (X_fit, X_score, y_score) in sets:
                given = dict(params)
                if given.get("hidden_dims") == DERIVED:
                    given["hidden_dims"] = tuple(widths_for(X_fit.shape[1])[0])
                det = make_detector("bigan", **{**given, **_detector_params("bigan", seed, epochs)})
                det.fit(X_fit)
                for score, values in bigan_score_variants(det, X_score).items():
                    rows.append(
                        {
                            "candidate": title,
                            "set": name,
                            "fold": fold,
                            "seed": seed,
                            "score": score,
                            "auroc": auroc(y_score, values),
                        }
                    )
            _progress(f"choice bigan {title} seed {seed} done")
    rows.sort(key=lambda r: (r["fold"], r["seed"]))  # per-seed lists read fold by fold
    return rows


# --- report -------------------------------------------------------------------------------
def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _f(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"


def _mean_by(rows: list[dict], key: str, field: str) -> dict[str, float]:
    out: dict[str, list[float]] = {}
    for r in rows:
        if r[field] == r[field]:
            out.setdefault(r[key], []).append(float(r[field]))
    return {k: float(np.mean(v)) for k, v in out.items()}


def render(meta: dict, nab: list[dict], ecg: list[dict], choices: dict | None) -> str:
    """Return the Markdown report."""
    lines = [
        "# Series and sequences: NAB windows and ECG5000 beats",
        "",
        f"Command: `{meta['command']}`  ",
        f"Machine: {meta['machine']}; one torch thread; wall time {meta['wall']:.0f} s; "
        f"seeds {meta['seeds']} (ECG5000: {meta.get('ecg_seeds', meta['seeds'])}).  ",
        "Protocol, and what was reduced for time: the docstring of `ad_core/bench/series.py`.",
    ]
    if meta["quick"]:
        lines += [
            "",
            "**Quick smoke run: deep detectors at 2 epochs; these figures mean nothing.**",
        ]
    order = [BASELINE, *NAB_DETECTORS]
    if nab:
        auc = _mean_by(nab, "detector", "auroc")
        lines += [
            "",
            "## NAB artificial series, windows",
            "",
            "Mean over the series (and seeds). AUROC is point-wise against NAB's anomaly windows "
            f"with the library's default mapping (the {default_mapping()} over the windows "
            "covering a point); events at the app's starting threshold (top 10 % of point "
            "scores).",
            "",
            f"| detector | AUROC | AUROC, {other_mapping()} mapping | event recall | false events "
            "/ 1,000 points | fit s (per series) |",
            "|---|---|---|---|---|---|",
        ]
        recall = _mean_by(nab, "detector", "event_recall")
        false = _mean_by(nab, "detector", "false_per_1000")
        fit = _mean_by(nab, "detector", "fit_seconds")
        amax = _mean_by(nab, "detector", "auroc_other")
        for d in order:
            if d in auc:
                lines.append(
                    f"| {d} | {_f(auc[d])} | {_f(amax.get(d))} | {_f(recall[d], 2)} | "
                    f"{_f(false[d], 2)} | {_f(fit[d], 1)} |"
                )
        z = auc.get(BASELINE, float("nan"))
        lines += [""]
        for d in ("seq2seq", "autoencoder"):
            if d in auc:
                verdict = "ahead of" if auc[d] > z else "not ahead of"
                lines.append(
                    f"- Goal, {d} ahead of the rolling z-score on average: {_f(auc[d])} against "
                    f"{_f(z)}, {verdict}."
                )
        lines += [
            "",
            "Per series (seed 0):",
            "",
            f"| series | window / stride (windows) | detector | AUROC | AUROC, {other_mapping()} "
            "| event recall | false / 1,000 | events | fit s |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in (r for r in nab if r["seed"] == nab[0]["seed"]):
            lines.append(
                f"| {r['series']} | {r['window']} / {r['stride']} ({r['n_windows']}) | "
                f"{r['detector']} | {_f(r['auroc'])} | {_f(r['auroc_other'])} | "
                f"{_f(r['event_recall'], 2)} | {_f(r['false_per_1000'], 2)} | {r['n_events']} | "
                f"{_f(r['fit_seconds'], 1)} |"
            )
    if ecg:
        first = ecg[0]
        lines += [
            "",
            "## ECG5000 beats as sequences",
            "",
            f"Trained on the {first['n_train']:,} normal beats of the training half, tested on "
            f"the other {first['n_test']:,} beats ({first['test_anomalies']:.1%} abnormal). "
            "Mean over seeds (the split stays the same); the goal is judged on the mean.",
            "",
            "| detector | AUROC | AUROC per seed | AUPRC | fit s | goal (deep: AUROC >= 0.95) |",
            "|---|---|---|---|---|---|",
        ]
        auc = _mean_by(ecg, "detector", "auroc")
        pr = _mean_by(ecg, "detector", "auprc")
        fit = _mean_by(ecg, "detector", "fit_seconds")
        for d in ECG_DETECTORS:
            if d in auc:
                goal = ("met" if auc[d] >= ECG_GOAL else "missed") if d in DEEP else "-"
                each = ", ".join(_f(r["auroc"]) for r in ecg if r["detector"] == d)
                lines.append(
                    f"| {d} | {_f(auc[d])} | {each} | {_f(pr[d])} | {_f(fit[d], 1)} | {goal} |"
                )
    if choices:
        lines += [
            "",
            "## How the defaults were chosen (validation only, never the test rows)",
            "",
            f"seq2seq on the validation split inside ECG5000's training half "
            f"({choices['n_fit']:,} normal beats to train on, the last 30 % of the half to "
            "score):",
            "",
            "| candidate | AUROC | fit s |",
            "|---|---|---|",
        ]
        lines += [
            f"| {r['candidate']} | {_f(r['auroc'])} | {_f(r['fit_seconds'], 1)} |"
            for r in choices["seq2seq"]
        ]
        lines += [
            "",
            f"seq2seq on the first {SMALL_ROWS} of those normal beats (few steps an epoch), "
            "batch 32 against the automatic batch:",
            "",
            "| batch | seed | AUROC |",
            "|---|---|---|",
        ]
        lines += [
            f"| {r['batch']}{' (automatic)' if r['automatic'] else ''} | {r['seed']} | "
            f"{_f(r['auroc'])} |"
            for r in choices["small"]
        ]
        lines += render_bigan_choice(choices["bigan"])
        mapping = choices["mapping"]
        lines += [
            "",
            "Point mapping on synthetic series (a daily cycle with one injected anomaly; "
            "`synthetic_series`), AUROC averaged over kinds and seeds:",
            "",
            "| detector | max | mean |",
            "|---|---|---|",
        ]
        mx, mn = _mean_by(mapping, "detector", "max"), _mean_by(mapping, "detector", "mean")
        lines += [f"| {d} | {_f(mx[d])} | {_f(mn[d])} |" for d in mx]
        best = max(
            MAPPINGS, key=lambda how: np.mean(list(_mean_by(mapping, "detector", how).values()))
        )
        verdict = (
            "agrees with the library's default"
            if best == default_mapping()
            else f"does not agree with the library's default ({default_mapping()})"
        )
        lines += [
            "",
            f"Over all three: max {_f(np.mean(list(mx.values())))}, mean "
            f"{_f(np.mean(list(mn.values())))}; the better, {best}, {verdict}.",
        ]
    return "\n".join(lines) + "\n"


def _by(rows: list[dict], *keys: str) -> dict[tuple, list[float]]:
    out: dict[tuple, list[float]] = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r["auroc"])
    return out


def render_bigan_choice(rows: list[dict]) -> list[str]:
    """Return the Markdown lines of BiGAN's choice tables: training settings, then scores."""
    if not rows:
        return []
    default = BIGAN_TRAININGS[0][0]
    first, second = BIGAN_SCORE_PAIR
    folds = dict.fromkeys(r["fold"] for r in rows if r["set"] == BIGAN_SETS[0])
    seeds = dict.fromkeys(r["seed"] for r in rows)
    lines = [
        "",
        f"BiGAN: AUROC per run of each training setting on ECG5000's validation folds inside "
        f"the training half ({len(folds)} folds x {len(seeds)} seeds, fold by fold; fold 0 "
        "is seq2seq's split; each scores 30 % of the half and trains on the normal beats of "
        "the rest) and on thyroid and cardio (one 60/40 split per seed, unsupervised, standard "
        "scaling), with Zenati et al.'s score A(x) at alpha 0.9 in the L1 norm (the paper's) "
        "and in the L2 norm (the library's default), both from the same fits:",
        "",
        f"| training | set | {first}, per run | lowest | {second}, per run | lowest |",
        "|---|---|---|---|---|---|",
    ]
    per = _by(rows, "candidate", "set", "score")
    trainings = dict.fromkeys(r["candidate"] for r in rows)
    sets = dict.fromkeys(r["set"] for r in rows)
    for title in trainings:
        for name in sets:
            a, b = per.get((title, name, first), []), per.get((title, name, second), [])
            if a and b:
                lines.append(
                    f"| {title} | {name} | {', '.join(_f(v) for v in a)} | {_f(min(a))} | "
                    f"{', '.join(_f(v) for v in b)} | {_f(min(b))} |"
                )
    scores = dict.fromkeys(r["score"] for r in rows if r["candidate"] == default)
    lines += [
        "",
        "BiGAN's score on the same fits of the default training: mean AUROC over the runs "
        "(lowest in brackets); alpha weighs the reconstruction, 1 - alpha the discriminator "
        "feature distance:",
        "",
        "| score | " + " | ".join(sets) + " |",
        "|---|" + "---|" * len(sets),
    ]
    for score in scores:
        cells = []
        for name in sets:
            values = per.get((default, name, score), [])
            cells.append(f"{_f(np.mean(values))} ({_f(min(values))})" if values else "n/a")
        lines.append(f"| {score} | " + " | ".join(cells) + " |")

    # The rule: the highest lowest AUROC over every set and run, among the settings shown and
    # the scores with both of Zenati et al.'s terms (the issue's score); a tie goes to the
    # first in table order (the default training, the paper's L1 first).
    def lowest_of(pairs) -> dict:
        return {
            pair: min(min(per[(pair[0], name, pair[1])]) for name in sets)
            for pair in pairs
            if all((pair[0], name, pair[1]) in per for name in sets)
        }

    both = [sc for sc in scores if sc in BIGAN_TWO_TERM_SCORES]
    lowest = lowest_of(
        dict.fromkeys(
            [(t, sc) for t in trainings for sc in BIGAN_SCORE_PAIR] + [(default, sc) for sc in both]
        )
    )
    best = max(lowest, key=lowest.get)
    verdict = (
        "agrees with the library's defaults"
        if best == (default, default_bigan_score())
        else f"does not agree with the library's defaults ({default_bigan_score()})"
    )
    one_term = lowest_of((default, sc) for sc in scores if sc not in BIGAN_TWO_TERM_SCORES)
    aside = ""
    if one_term:
        top = max(one_term, key=one_term.get)
        aside = (
            " Scores with one term only (alpha 1 or 0, the cross-entropy alone) are shown to see "
            "what each term brings, not as candidates: the issue's score is reconstruction plus "
            f"discriminator; the best of them, {top[1]}, reaches {_f(one_term[top])}."
        )
    lines += [
        "",
        "Rule: the highest lowest AUROC over the sets and runs, among the training settings "
        "with the two scores of the first table and the default training with every score of "
        f"both terms (0 < alpha < 1). The best, {best[0]} with {best[1]} "
        f"({_f(lowest[best])}), {verdict}.{aside} Trials that needed code changes (Adam's "
        "beta1, spectral normalisation, a moving average of the weights, other priors and "
        "widths): `ad_core/detectors/bigan.py`.",
    ]
    return lines


def default_bigan_score() -> str:
    """Return the BiGAN detector's default score as the choice tables name it."""
    import inspect

    from ad_core.detectors.bigan import BiGAN

    params = inspect.signature(BiGAN.__init__).parameters
    return f"{params['norm'].default}, alpha {params['alpha'].default:g}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ad_core.bench series",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run in under a minute")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per detector (default 1)")
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--out", type=Path, default=None, help="default benchmarks/series.md")
    parser.add_argument("--choices", action="store_true", help="add the default-choosing runs")
    parser.add_argument("--skip-nab", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    out = args.out or (_REPO / "benchmarks" / "series.md")
    epochs = QUICK_EPOCHS if args.quick else None
    ecg_path = (
        _REPO / "sample_data" / "ecg5000.csv"
        if args.quick
        else Path(args.data_dir) / "ecg5000" / "ecg5000.csv"
    )
    names = NAB_SERIES[2:3] if args.quick else NAB_SERIES
    missing = [p for p in (ecg_path, Path(args.data_dir) / "nab") if not p.exists()]
    if args.skip_nab:
        missing = [p for p in missing if p.name != "nab"]
    if missing:
        print(f"missing data: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    nab, ecg = [], []
    ecg_seeds = args.seeds if args.quick else max(args.seeds, ECG_MIN_SEEDS)
    for seed in range(args.seeds):
        if not args.skip_nab:
            target = QUICK_TARGET_WINDOWS if args.quick else NAB_TARGET_WINDOWS
            nab += run_nab(args.data_dir, names, seed, epochs=epochs, target=target)
    for seed in range(ecg_seeds):
        ecg += run_ecg(ecg_path, seed, epochs=epochs)
    choices = (
        run_choices(ecg_path, args.data_dir, epochs=epochs, quick=args.quick)
        if args.choices
        else None
    )
    given = argv if argv is not None else sys.argv[1:]
    meta = {
        "command": " ".join(["python -m ad_core.bench series", shlex.join(given)]).strip(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "wall": time.perf_counter() - started,
        "seeds": args.seeds,
        "ecg_seeds": ecg_seeds,
        "quick": args.quick,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(meta, nab, ecg, choices))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
