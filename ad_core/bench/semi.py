"""``python -m ad_core.bench semi``: 10 % of the anomalies labelled; and how XGBOD was set up.

    python -m ad_core.bench semi [--seeds 3] [--jobs 2] [--quick] [--choice-only | --skip-choice]

Data (``../shared/data``): the six ODDS sets of the Deep SAD paper, ECG5000 (all 5000 beats;
label 1 normal, 2-5 anomalous) and the bundled KDD Cup 1999 sample (8000 connections, 2.5 %
attacks), loaded as ``python -m ad_core.bench unsup`` loads them.

The comparison, ADBench's semi-supervised set-up (Han et al., NeurIPS 2022), per set and seed:
- a 70/30 train/test split stratified by the ground truth; a training split above
  ``--max-train`` rows (10,000: only shuttle's 34,000) is a stratified sample of that many;
- the app's default preprocessing (``Preprocessor()``) fitted on the training split;
- 10 % of the training split's anomalies (``--labelled-share``; at least one; ADBench takes
  ``int(0.1 * n)``) are labelled anomalies, every other training row is unlabelled: no
  normal is labelled (ADBench labels anomalies only, and leaves the rest, anomalies
  included, unlabelled);
- each method trains on the whole training split and scores the test split: XGBOD (ours,
  its defaults; unlabelled rows are presumed normals with its ``unlabelled_weight``), Deep
  SAD (ours, its defaults; labelled anomalies pushed out, unlabelled rows pulled in),
  HistGradientBoostingClassifier (``min_samples_leaf=1``, as in the loop bench) trained as
  ADBench trains its supervised methods, labelled anomalies against every other training
  row taken as normal, and Isolation Forest (no label);
- AUROC and AUPRC on the test split, mean ± std over the seeds, per set and the mean.

Choosing XGBOD's pool and settings (``--choice-only`` runs this part alone; its rows are kept
in ``semi_choice.csv`` and reused with ``--resume``): leave one set out over the eight sets.
Per set and seed a full pool (kNN at k 1, 5, 10, 20, 50; LOF at 5, 10, 20, 50; Isolation
Forest; ECOD; HBOS at 5, 10, 20, 50 bins) is fitted once, and every candidate is scored from it
in two situations:
- the label loop (as ``python -m ad_core.bench loop`` runs it, transductive, at most 2,000
  rows): 10, 20, 50 and 100 labels from a random queue and from the top of the Isolation
  Forest's ranking, AUROC on the rows not labelled;
- 10 % of the anomalies labelled, as above (training splits cut to 2,000 rows here).
A candidate's figure on a set is the mean of the two (the loop's over its eight label
situations), mean over seeds. Stage 1 chooses the pool (:func:`family_subsets`: the three
kinds of detector, neighbours (kNN, LOF), isolation (Isolation Forest) and per feature (ECOD,
HBOS), alone and in every union, plus kNN + Isolation Forest and Isolation Forest + ECOD)
with when the unlabelled rows are presumed normals (always, or fallback: only while no row is
labelled normal), the prior's strength, combination and blend, at an unlabelled weight of
0.1; stage 2, with that pool, the unlabelled weight (0, 0.1, 0.3, 1), the policy, the prior's
strength (0, 3, 10, 30), combination (rank, zscore) and blend (rank, probability). For each
set in turn both stages pick on the other seven; the pick is scored on the held-out set.
XGBOD's defaults are the picks most folds made (stage 1, then stage 2 among the folds): no
default was chosen with all sets at once, and the held-out figures are the protocol's
estimate on an unseen set.

``--quick``: two bundled samples (cardio, the 1000-beat ECG sample), one seed, Deep SAD at 2
epochs, a reduced grid, in this process: a smoke run whose figures mean nothing.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import platform
import shlex
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ad_core.bench.odds import DATASETS as ODDS_SETS
from ad_core.detectors.xgbod import FAMILIES

SETS = (*ODDS_SETS, "ecg5000", "kddcup99")
QUICK_SETS = ("cardio_sample", "ecg5000_sample")
METHODS = ("xgbod", "deep_sad", "hgb", "isolation_forest")
METHOD_TITLES = {
    "xgbod": "XGBOD (ours)",
    "deep_sad": "Deep SAD (ours)",
    "hgb": "HistGradientBoosting, unlabelled as normal",
    "isolation_forest": "Isolation Forest (no labels)",
}
LABELLED_SHARE = 0.10
MAX_TRAIN = 10_000
#: ADBench (Han et al., NeurIPS 2022), 10 % of the anomalies labelled, mean AUROC on its
#: tabular sets, as the issue quotes it (recalled, not copied from the paper)
ADBENCH = {"deep_sad": "about 0.85", "xgbod": "about 0.89 to 0.91"}

# -- the choice's grid -------------------------------------------------------------------------
#: the full pool the candidates are cut from (k and bin counts spanning local to global)
TUNE_POOL = {
    "knn_neighbors": (1, 5, 10, 20, 50),
    "lof_neighbors": (5, 10, 20, 50),
    "n_estimators": 100,
    "ecod": True,
    "hbos_bins": (5, 10, 20, 50),
}
STRENGTHS = (0.0, 3.0, 10.0, 30.0)
COMBINATIONS = ("rank", "zscore")
SPACES = ("rank", "probability")
POLICIES = ("always", "fallback")
STAGE1_WEIGHT = 0.1
WEIGHTS = (0.0, 0.1, 0.3, 1.0)
TUNE_COUNTS = (10, 20, 50, 100)
TUNE_QUEUES = ("random", "highest")
TUNE_ROWS = 2000
#: what names a candidate (the peers hgb and iforest have empty settings)
KEY_FIELDS = (
    "families",
    "unlabelled_weight",
    "presume_normal",
    "prior_strength",
    "combination",
    "blend_space",
)
CHOICE_FIELDS = ("dataset", "seed", "stage", *KEY_FIELDS, "situation", "auroc")
PEER_KEYS = {"hgb": ("hgb", "", "", "", "", ""), "iforest": ("iforest", "", "", "", "", "")}
FIELDS = ("dataset", "seed", "method", "auroc", "auprc", "fit_seconds", "n_train", "n_labelled")


def default_data_dir() -> Path:
    """Return ../shared/data beside the repository."""
    return Path(__file__).resolve().parents[3] / "shared" / "data"


# -- data ---------------------------------------------------------------------------------------
def split(
    name: str, seed: int, data_dir: str, max_train: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (X_train, y_train, X_test, y_test): a 70/30 stratified split, preprocessed on
    train (the app's default preprocessing); a training split above ``max_train`` rows is a
    stratified sample of that many."""
    from ad_core.bench.unsup import labelled_split

    X_tr, y_tr, X_te, y_te = labelled_split(name, seed, data_dir, max_train)
    as64 = np.ascontiguousarray
    return as64(X_tr, dtype=np.float64), y_tr, as64(X_te, dtype=np.float64), y_te


def labelled_anomalies(y_train: np.ndarray, share: float, seed: int) -> np.ndarray:
    """Return the app's labels of the training rows: ``share`` of the anomalies (at least
    one) labelled 1, every other row unlabelled (-1)."""
    anomalies = np.flatnonzero(y_train == 1)
    n_known = max(1, int(share * anomalies.size)) if anomalies.size else 0
    known = np.random.default_rng(seed).choice(anomalies, size=n_known, replace=False)
    labels = np.full(y_train.size, -1, dtype=np.int64)
    labels[known] = 1
    return labels


# -- the comparison -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    dataset: str
    seed: int
    method: str
    data_dir: str
    share: float = LABELLED_SHARE
    max_train: int | None = MAX_TRAIN
    epochs: int | None = None


def _hgb(seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(random_state=seed, min_samples_leaf=1)


def run_task(task: Task) -> dict[str, Any]:
    """Fit one method on one set and seed with the labelled share; return its test figures."""
    from ad_core import make_detector
    from ad_core.metrics import auprc, auroc

    X_tr, y_tr, X_te, y_te = split(task.dataset, task.seed, task.data_dir, task.max_train)
    labels = labelled_anomalies(y_tr, task.share, task.seed)
    start = time.perf_counter()
    if task.method == "hgb":
        clf = _hgb(task.seed).fit(X_tr, (labels == 1).astype(np.int64))
        fit_seconds = time.perf_counter() - start
        scores = clf.predict_proba(X_te)[:, 1]
    else:
        params: dict[str, Any] = {"random_state": task.seed}
        if task.method == "deep_sad":
            params["device"] = "cpu"
            if task.epochs is not None:
                params.update(epochs=task.epochs, pretrain_epochs=task.epochs)
        det = make_detector(task.method, **params)
        det.fit(X_tr, labels if det.info.uses_labels != "no" else None)
        fit_seconds = time.perf_counter() - start
        scores = det.decision_function(X_te)
    return {
        "dataset": task.dataset,
        "seed": task.seed,
        "method": task.method,
        "auroc": auroc(y_te, scores),
        "auprc": auprc(y_te, scores),
        "fit_seconds": fit_seconds,
        "n_train": int(y_tr.size),
        "n_labelled": int((labels == 1).sum()),
    }


# -- choosing XGBOD's pool and settings ---------------------------------------------------------
def family_subsets() -> list[tuple[str, ...]]:
    """Return the candidate pools: the three kinds of detector (neighbours: kNN and LOF;
    isolation: Isolation Forest; per feature: ECOD and HBOS) alone and in every union, and
    two with one member of a kind (kNN + Isolation Forest, Isolation Forest + ECOD)."""
    kinds = (("knn", "lof"), ("iforest",), ("ecod", "hbos"))
    unions = [
        tuple(f for kind in chosen for f in kind)
        for k in range(1, len(kinds) + 1)
        for chosen in itertools.combinations(kinds, k)
    ]
    return [*unions, ("knn", "iforest"), ("iforest", "ecod")]


@dataclass
class _Pool:
    """One fitted full pool: standardised rows and TOS (train, and test where there is one)."""

    Xs: np.ndarray
    tos: np.ndarray
    names: list[str]
    Xs_test: np.ndarray | None = None
    tos_test: np.ndarray | None = None
    columns: dict = field(default_factory=dict)

    @classmethod
    def fit(cls, X: np.ndarray, seed: int, X_test: np.ndarray | None = None) -> _Pool:
        from ad_core import make_detector

        det = make_detector("xgbod", random_state=seed, **TUNE_POOL).fit(X)
        pool = cls(det.reference_, det.train_tos_, list(det.tos_names_))
        if X_test is not None:
            pool.Xs_test = (X_test - det.mean_) / det.scale_
            pool.tos_test = det.pool_scores(X_test)
        return pool

    def cut(self, families: tuple[str, ...]) -> np.ndarray:
        """Return the column indices of the TOS of ``families``."""
        return np.array([j for j, n in enumerate(self.names) if n.split("_")[0] in families])


def _scores(pool: _Pool, labels, families, weight, strengths, combinations, seed, *, test):
    """Return {(strength, combination, space): scores} of one candidate pool and the weight
    the unlabelled rows train with (the training rows' scores, or the test rows' with
    ``test``)."""
    from ad_core.detectors.ensemble import rank_scale
    from ad_core.detectors.xgbod import (
        Boosting,
        blend,
        blend_weight,
        features,
        fit_classifier,
        prior_combination,
    )

    J = pool.cut(families)
    names = [pool.names[j] for j in J]
    tos = pool.tos[:, J]
    fitted = fit_classifier(
        features(pool.Xs, tos),
        labels,
        Boosting(unlabelled_weight=weight, random_state=seed),
    )
    if test:
        target_tos = pool.tos_test[:, J]
        proba = fitted.proba(features(pool.Xs_test, target_tos))
    else:
        target_tos = tos
        proba = fitted.proba(features(pool.Xs, tos), fitted.train_model)
    out = {}
    for combination in combinations:
        reference = np.sort(prior_combination(tos, tos, names, combination))
        prior = rank_scale(reference, prior_combination(tos, target_tos, names, combination))
        for strength in strengths:
            w = 0.0 if fitted.trees is None else blend_weight(labels, weight, strength)
            for space in SPACES:
                out[(strength, combination, space)] = blend(
                    prior, proba, w, space, fitted.reference
                )
    return out


def _situations(dataset: str, seed: int, data_dir: str, rows: int):
    """Yield (situation, pool, labels, truth of the rows scored, test?) for one set and seed."""
    from ad_core.bench import loop

    X, y = loop.load_set(dataset, data_dir)
    keep = loop.stratified_rows(y, rows, seed)
    X, y = np.ascontiguousarray(X[keep], dtype=np.float64), y[keep]
    pool = _Pool.fit(X, seed)
    forest = pool.tos[:, pool.names.index("iforest")]
    orders = {
        "random": np.random.default_rng(seed).permutation(y.size),
        "highest": np.argsort(-forest, kind="stable"),
    }
    for queue in TUNE_QUEUES:
        for count in TUNE_COUNTS:
            labels = np.full(y.size, -1, dtype=np.int64)
            shown = orders[queue][:count]
            labels[shown] = y[shown]
            yield f"loop_{count}", pool, labels, y, labels == -1
    X_tr, y_tr, X_te, y_te = split(dataset, seed, data_dir, rows)
    semi = _Pool.fit(X_tr, seed, X_te)
    yield "semi", semi, labelled_anomalies(y_tr, LABELLED_SHARE, seed), y_te, None


def choice_task(
    dataset: str,
    seed: int,
    data_dir: str,
    stage: int,
    subsets: list[tuple[str, ...]],
    weights: tuple[float, ...],
    rows: int = TUNE_ROWS,
    counts: tuple[int, ...] = TUNE_COUNTS,
) -> list[dict]:
    """Return the AUROC of every candidate of one stage on one set and seed, per situation
    (the loop's figures averaged over the two queues per label count)."""
    from ad_core.bench.loop import _hgb_scores
    from ad_core.detectors.xgbod import effective_unlabelled_weight
    from ad_core.metrics import auroc

    out: dict[tuple, list[float]] = {}
    for situation, pool, labels, truth, open_ in _situations(dataset, seed, data_dir, rows):
        if situation.startswith("loop_") and int(situation[5:]) not in counts:
            continue
        test = open_ is None
        where = np.arange(truth.size) if test else np.flatnonzero(open_)
        if stage == 1:  # the peers, once: hgb on the labels, Isolation Forest without
            if test:  # ADBench's supervised set-up: every unlabelled row taken as normal
                clf = _hgb(seed).fit(pool.Xs, (labels == 1).astype(np.int64))
                base = clf.predict_proba(pool.Xs_test)[:, 1]
                forest = pool.tos_test[:, pool.names.index("iforest")]
            else:
                base = _hgb_scores(pool.Xs, labels, seed, where)
                forest = pool.tos[where, pool.names.index("iforest")]
            out.setdefault((*PEER_KEYS["hgb"], situation), []).append(auroc(truth[where], base))
            out.setdefault((*PEER_KEYS["iforest"], situation), []).append(
                auroc(truth[where], forest)
            )
        for families in subsets:
            fits: dict[float, dict] = {}  # by the weight the unlabelled rows train with
            for weight, policy in itertools.product(weights, POLICIES):
                used = effective_unlabelled_weight(labels, weight, policy)
                if used not in fits:
                    fits[used] = _scores(
                        pool, labels, families, used, STRENGTHS, COMBINATIONS, seed, test=test
                    )
                for (strength, combination, space), s in fits[used].items():
                    key = ("+".join(families), weight, policy, strength, combination, space)
                    value = auroc(truth[where], s if test else s[where])
                    out.setdefault((*key, situation), []).append(value)
    return [
        {
            "dataset": dataset,
            "seed": seed,
            "stage": stage,
            **dict(zip(KEY_FIELDS, k[:-1], strict=True)),
            "situation": k[-1],
            "auroc": float(np.nanmean(v)) if np.isfinite(v).any() else float("nan"),
        }
        for k, v in out.items()
    ]


# -- leave one set out ---------------------------------------------------------------------------
def read_rows(path: Path, numeric: tuple[str, ...], whole: tuple[str, ...]) -> list[dict]:
    """Return the rows of a raw results file written before (empty when there is none)."""
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        for name in numeric:
            r[name] = float("nan") if r[name] in ("", "nan") else float(r[name])
        for name in whole:
            r[name] = int(r[name])
    return rows


def _read_choice(path: Path) -> list[dict]:
    rows = read_rows(path, ("auroc",), ("seed", "stage"))
    for r in rows:
        for name in ("unlabelled_weight", "prior_strength"):
            r[name] = "" if r[name] == "" else float(r[name])
    return rows


def _write(path: Path, rows: list[dict], fields: tuple[str, ...]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def set_figures(rows: list[dict]) -> dict[tuple, dict[str, float]]:
    """Return {candidate key: {set: figure}}: per set the mean over seeds of
    (mean AUROC over the loop situations + AUROC with the labelled share) / 2."""
    by: dict[tuple, dict[tuple, dict[str, float]]] = {}
    for r in rows:
        key = tuple(r[f] for f in KEY_FIELDS)
        by.setdefault(key, {}).setdefault((r["dataset"], r["seed"]), {})[r["situation"]] = r[
            "auroc"
        ]
    out: dict[tuple, dict[str, float]] = {}
    for key, per in by.items():
        per_set: dict[str, list[float]] = {}
        for (dataset, _), situations in per.items():
            loop = [v for s, v in situations.items() if s.startswith("loop_") and v == v]
            semi = situations.get("semi", float("nan"))
            parts = [np.mean(loop)] if loop else []
            parts += [semi] if semi == semi else []
            if parts:
                per_set.setdefault(dataset, []).append(float(np.mean(parts)))
        out[key] = {d: float(np.mean(v)) for d, v in per_set.items()}
    return out


def _best(figures: dict[tuple, dict[str, float]], keys: list[tuple], sets: list[str]) -> tuple:
    """Return the key with the best mean figure over ``sets`` (the first of equals)."""
    means = [np.mean([figures[k].get(s, np.nan) for s in sets]) for k in keys]
    return keys[int(np.nanargmax(means))]


def stage1_keys(subsets: list[tuple[str, ...]]) -> list[tuple]:
    """Return stage 1's candidates: pool x policy x strength x combination x space."""
    grid = itertools.product(subsets, POLICIES, STRENGTHS, COMBINATIONS, SPACES)
    return [("+".join(f), STAGE1_WEIGHT, p, s, c, b) for f, p, s, c, b in grid]


def stage2_keys(families: str, weights: tuple[float, ...]) -> list[tuple]:
    """Return stage 2's candidates: weight x policy x strength x combination x space."""
    grid = itertools.product(weights, POLICIES, STRENGTHS, COMBINATIONS, SPACES)
    return [(families, w, p, s, c, b) for w, p, s, c, b in grid]


def leave_one_set_out(
    rows: list[dict], sets: list[str], subsets: list[tuple[str, ...]], weights: tuple[float, ...]
) -> tuple[list[dict], tuple]:
    """Return the folds (held-out set, stage picks, figures) and the protocol's default key."""
    figures = set_figures(rows)
    keys1 = [k for k in stage1_keys(subsets) if k in figures]
    folds = []
    for held in sets:
        others = [s for s in sets if s != held]
        pick1 = _best(figures, keys1, others)
        keys2 = [k for k in stage2_keys(pick1[0], weights) if k in figures]
        pick2 = _best(figures, keys2, others)
        folds.append(
            {
                "held_out": held,
                "stage1": pick1,
                "pick": pick2,
                "train_figure": float(np.mean([figures[pick2][s] for s in others])),
                "held_figure": figures[pick2].get(held, float("nan")),
            }
        )
    families = Counter(f["stage1"][0] for f in folds).most_common()
    best_families = families[0][0]
    agree = [f for f in folds if f["pick"][0] == best_families]
    settings = Counter(f["pick"][1:] for f in agree).most_common()[0][0]
    return folds, (best_families, *settings)


def _per_situation(rows: list[dict], key: tuple, dataset: str) -> dict[str, float]:
    """Return the candidate's AUROC per situation on one set (mean over seeds)."""
    out: dict[str, list[float]] = {}
    for r in rows:
        if r["dataset"] != dataset:
            continue
        if tuple(r[f] for f in KEY_FIELDS) != key:
            continue
        out.setdefault(r["situation"], []).append(r["auroc"])
    return {s: float(np.nanmean(v)) for s, v in out.items() if np.isfinite(v).any()}


def _key_text(key: tuple) -> str:
    families, weight, policy, strength, combination, space = key
    return (
        f"{families.replace('+', ' + ')}; unlabelled weight {weight:g} ({policy}), prior "
        f"strength {strength:g}, {combination} prior, {space} blend"
    )


def _defaults_key() -> tuple:
    """Return the key of XGBOD's registry defaults, in the grid's terms."""
    from ad_core.detectors import get_detector_info

    d = {p.name: p.default for p in get_detector_info("xgbod").params}
    present = {
        "knn": bool(d["knn_neighbors"]),
        "lof": bool(d["lof_neighbors"]),
        "iforest": d["n_estimators"] > 0,
        "ecod": bool(d["ecod"]),
        "hbos": bool(d["hbos_bins"]),
    }
    families = "+".join(f for f in FAMILIES if present[f])
    return (
        families,
        float(d["unlabelled_weight"]),
        d["presume_normal"],
        float(d["prior_strength"]),
        d["combination"],
        d["blend_space"],
    )


def choice_lines(rows: list[dict], sets: list[str], subsets, weights, counts) -> list[str]:
    """Return the Markdown of the choice: folds, picks, the default, per-situation figures."""
    folds, default = leave_one_set_out(rows, sets, subsets, weights)
    figures = set_figures(rows)
    out = [
        "| held-out set | stage 1 pick (at unlabelled weight "
        f"{STAGE1_WEIGHT:g}) | final pick | its mean on the others | held-out figure | "
        "held-out: Isolation Forest | held-out: hgb |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in folds:
        ref = {m: figures.get(k, {}).get(f["held_out"], float("nan")) for m, k in PEER_KEYS.items()}
        out.append(
            f"| {f['held_out']} | {_key_text(f['stage1'])} | {_key_text(f['pick'])} | "
            f"{f['train_figure']:.3f} | {f['held_figure']:.3f} | {ref['iforest']:.3f} | "
            f"{ref['hgb']:.3f} |"
        )
    held = [f["held_figure"] for f in folds]
    out += [
        "",
        "Figure: per set, the mean over seeds of (mean AUROC over the loop's label situations "
        "+ AUROC with 10 % of the anomalies labelled) / 2, the same for the peers on the same "
        "rows: hgb learns from the labelled rows alone in the loop and, with 10 % of the "
        "anomalies labelled, from those against every other training row as a normal.",
        "",
        f"Mean held-out figure of the fold picks: **{np.nanmean(held):.3f}** (the protocol's "
        "estimate of the choice on an unseen set).  ",
        "Stage 1 picks: "
        + ", ".join(
            f"{k.replace('+', ' + ')}: {n}"
            for k, n in Counter(f["stage1"][0] for f in folds).most_common()
        )
        + ".  ",
        f"Protocol's default: **{_key_text(default)}**.",
    ]
    mine = _defaults_key()
    same = mine == default
    out.append(
        f"XGBOD's registry defaults (`ad_core/detectors/xgbod.py`): {_key_text(mine)}"
        + (" (the same)." if same else " (**they differ**: rerun or update the defaults).")
    )
    out += [
        "",
        "Held-out AUROC per situation of each fold's pick (loop: mean of the two queues; "
        "'semi': 10 % of the anomalies labelled, test split), beside the labels-only "
        "classifier (hgb) and Isolation Forest on the same rows:",
        "",
        "| held-out set | method | " + " | ".join(f"{c} labels" for c in counts) + " | semi |",
        "|---|---|" + "---|" * (len(counts) + 1),
    ]
    for f in folds:
        d = f["held_out"]
        for title, key in (
            ("pick", f["pick"]),
            ("hgb", PEER_KEYS["hgb"]),
            ("Isolation Forest", PEER_KEYS["iforest"]),
        ):
            per = _per_situation(rows, key, d)
            cells = [per.get(f"loop_{c}") for c in counts] + [per.get("semi")]
            out.append(
                f"| {d} | {title} | "
                + " | ".join("–" if v is None else f"{v:.3f}" for v in cells)
                + " |"
            )
    return out


# -- the report -----------------------------------------------------------------------------------
def _mean_std(values: list[float]) -> str:
    values = [v for v in values if v == v]
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if values else "–"


def comparison_lines(rows: list[dict], sets: list[str], methods: list[str]) -> list[str]:
    out = []
    for metric in ("auroc", "auprc"):
        out += [
            f"### {metric.upper()} (test split, mean ± std over seeds)",
            "",
            "| method | " + " | ".join(sets) + " | mean |",
            "|---|" + "---|" * (len(sets) + 1),
        ]
        for m in methods:
            cells, means = [], []
            for d in sets:
                vals = [r[metric] for r in rows if r["dataset"] == d and r["method"] == m]
                cells.append(_mean_std(vals))
                if vals:
                    means.append(np.nanmean(vals))
            mean = f"**{np.mean(means):.3f}**" if len(means) == len(sets) else "–"
            out.append(f"| {METHOD_TITLES[m]} | " + " | ".join(cells) + f" | {mean} |")
        out.append("")
    out += [
        "### Fit seconds (one core, mean over seeds) and labels",
        "",
        "| set | training rows | labelled anomalies | " + " | ".join(methods) + " |",
        "|---|---|---|" + "---|" * len(methods),
    ]
    for d in sets:
        sub = [r for r in rows if r["dataset"] == d]
        if not sub:
            continue
        cells = []
        for m in methods:
            secs = [r["fit_seconds"] for r in sub if r["method"] == m]
            cells.append(f"{np.mean(secs):.1f}" if secs else "–")
        out.append(
            f"| {d} | {int(np.mean([r['n_train'] for r in sub])):,} | "
            f"{np.mean([r['n_labelled'] for r in sub]):.0f} | " + " | ".join(cells) + " |"
        )
    return out


def _init_worker() -> None:
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    global _LIMITS
    _LIMITS = threadpool_limits(1)  # scikit-learn's and numpy's pools: one core per worker


_LIMITS = None


def _choice_job(args: tuple) -> list[dict]:
    return choice_task(*args)


def _collect(fn, jobs: list, n_jobs: int, done, label) -> None:
    """Run ``fn`` over ``jobs`` (in worker processes when n_jobs > 1); pass results to done."""
    if n_jobs > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=n_jobs, initializer=_init_worker) as pool:
            futures = {pool.submit(fn, j): j for j in jobs}
            for i, fut in enumerate(as_completed(futures), 1):
                done(fut.result())
                print(f"[{i}/{len(jobs)}] {label(futures[fut])}", flush=True)
    else:
        _init_worker()
        for i, j in enumerate(jobs, 1):
            done(fn(j))
            print(f"[{i}/{len(jobs)}] {label(j)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ad_core.bench semi",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run on two samples")
    parser.add_argument("--datasets", nargs="+", default=None)
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the comparison")
    parser.add_argument("--choice-seeds", type=int, default=2, help="seeds of the choice")
    parser.add_argument("--labelled-share", type=float, default=LABELLED_SHARE)
    parser.add_argument("--max-train", type=int, default=MAX_TRAIN)
    parser.add_argument("--epochs", type=int, default=None, help="Deep SAD's epochs (smoke)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--choice-only", action="store_true", help="run the choice alone")
    group.add_argument("--skip-choice", action="store_true", help="run the comparison alone")
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--out", type=Path, default=None, help="default benchmarks/semi.md")
    parser.add_argument(
        "--resume", action="store_true", help="keep the rows already in the .csv files"
    )
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = Path("benchmarks/semi_quick.md" if args.quick else "benchmarks/semi.md")
    data_dir = str(args.data_dir)
    if args.quick:
        sets = list(args.datasets or QUICK_SETS)
        seeds, choice_seeds = [0], [0]
        subsets = [("iforest",), ("knn", "iforest"), ("iforest", "ecod")]
        weights, counts, tune_rows = (0.0, STAGE1_WEIGHT), (10, 20), 400
        max_train, epochs, n_jobs = 600, 2, 1
    else:
        sets = list(args.datasets or SETS)
        seeds, choice_seeds = list(range(args.seeds)), list(range(args.choice_seeds))
        subsets, weights, counts, tune_rows = family_subsets(), WEIGHTS, TUNE_COUNTS, TUNE_ROWS
        max_train, epochs, n_jobs = args.max_train, args.epochs, args.jobs
    unknown = [d for d in sets if d not in (*SETS, *QUICK_SETS)]
    if unknown:
        print(f"unknown data set(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    weight = {"shuttle": 4, "kddcup99": 4, "ecg5000": 5, "satellite": 3, "satimage-2": 3}

    choice_path = args.out.with_name(args.out.stem + "_choice.csv")
    choice: list[dict] = _read_choice(choice_path) if args.resume else []
    choice = [r for r in choice if r["dataset"] in sets and r["seed"] in choice_seeds]
    choice_read = len(choice)
    choice_seconds = 0.0
    if not args.skip_choice:
        t0 = time.perf_counter()

        def add(new: list[dict]) -> None:
            choice.extend(new)
            _write(choice_path, choice, CHOICE_FIELDS)

        def done_families(stage: int) -> set:
            return {(r["dataset"], r["seed"], r["families"]) for r in choice if r["stage"] == stage}

        have = done_families(1)
        jobs = [
            (d, s, data_dir, 1, subsets, (STAGE1_WEIGHT,), tune_rows, counts)
            for s in choice_seeds
            for d in sorted(sets, key=lambda d: -weight.get(d, 1))
            if (d, s, "+".join(subsets[-1])) not in have
        ]
        _collect(_choice_job, jobs, n_jobs, add, lambda j: f"choice stage 1: {j[0]} seed {j[1]}")
        folds, _ = leave_one_set_out(choice, sets, subsets, (STAGE1_WEIGHT,))
        picked = sorted({f["stage1"][0] for f in folds})
        have = done_families(2)
        others = tuple(w for w in weights if w != STAGE1_WEIGHT)
        jobs = [
            (d, s, data_dir, 2, [tuple(p.split("+"))], others, tune_rows, counts)
            for p in picked
            for s in choice_seeds
            for d in sorted(sets, key=lambda d: -weight.get(d, 1))
            if (d, s, p) not in have
        ]
        _collect(_choice_job, jobs, n_jobs, add, lambda j: f"choice stage 2: {j[0]} seed {j[1]}")
        choice_seconds = time.perf_counter() - t0

    compare_path = args.out.with_suffix(".csv")
    rows = (
        read_rows(
            compare_path, ("auroc", "auprc", "fit_seconds"), ("seed", "n_train", "n_labelled")
        )
        if args.resume
        else []
    )
    rows = [r for r in rows if r["dataset"] in sets and r["seed"] in seeds]
    compare_seconds = 0.0
    if not args.choice_only:
        t0 = time.perf_counter()
        have = {(r["dataset"], r["seed"], r["method"]) for r in rows}
        tasks = [
            Task(d, s, m, data_dir, args.labelled_share, max_train, epochs)
            for s in seeds
            for d in sorted(sets, key=lambda d: -weight.get(d, 1))
            for m in METHODS
            if (d, s, m) not in have
        ]

        def add_row(row: dict) -> None:
            rows.append(row)
            _write(compare_path, rows, FIELDS)

        _collect(
            run_task, tasks, n_jobs, add_row, lambda t: f"{t.dataset} seed {t.seed} {t.method}"
        )
        compare_seconds = time.perf_counter() - t0
    elapsed = time.perf_counter() - started

    prefix = "python -m ad_core.bench.semi" if argv is None else "python -m ad_core.bench semi"
    shown = sys.argv[1:] if argv is None else argv
    command = f"{prefix} {shlex.join(shown)}".strip()
    ordered = [d for d in (*SETS, *QUICK_SETS) if d in sets]
    text = [
        "# Semi-supervised: 10 % of the anomalies labelled, and XGBOD's set-up",
        "",
        f"Command: `{command}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores (shared with other work: "
        f"load average {load_before:.1f} at the start), {n_jobs} worker process(es) with one "
        f"thread each, Python {platform.python_version()}; wall time of this invocation "
        f"{elapsed / 60:.1f} min (the choice {choice_seconds / 60:.1f} min, the comparison "
        f"{compare_seconds / 60:.1f} min; a --resume run counts only what it added).  ",
        f"Raw rows: `{compare_path.name}` (the comparison), `{choice_path.name}` (the choice).",
        "",
        "Protocol: the docstring of `ad_core/bench/semi.py`.",
        "",
    ]
    if rows:
        methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
        text += [
            "## 10 % of the anomalies labelled (ADBench's semi-supervised set-up)",
            "",
            f"Per set and seed ({len(seeds)} seed(s)): 70/30 stratified split, training split cut "
            f"to at most {max_train:,} rows, the app's default preprocessing fitted on it; "
            f"{args.labelled_share:.0%} of the training anomalies labelled (at least one), "
            "every other training row unlabelled, no normal labelled. XGBOD and Deep SAD "
            "with their defaults; HistGradientBoosting (min_samples_leaf=1) on the labelled "
            "anomalies against every other training row as a normal (ADBench's supervised "
            "set-up); Isolation Forest without labels. ADBench reports, on its tabular sets "
            f"(other sets than these), mean AUROC {ADBENCH['deep_sad']} for Deep SAD and "
            f"{ADBENCH['xgbod']} for XGBOD. Goal: XGBOD above 0.90 mean AUROC.",
            "",
            *comparison_lines(rows, ordered, methods),
            "",
        ]
    if choice:
        text += [
            "## How XGBOD's pool and settings were chosen (leave one set out)",
            "",
            f"{len(choice_seeds)} seed(s); loop situations at most {tune_rows:,} rows, "
            f"{', '.join(str(c) for c in counts)} labels from a random queue and from the top of "
            "the Isolation Forest's ranking; 10 % of the anomalies labelled on training splits "
            f"cut to {tune_rows:,} rows. Stage 1: {len(subsets)} candidate pools x when the "
            "unlabelled rows are presumed normals (always, or fallback: only while no row is "
            f"labelled normal) x prior strength {', '.join(f'{s:g}' for s in STRENGTHS)} x "
            "combination rank, zscore x blend rank, probability, at unlabelled weight "
            f"{STAGE1_WEIGHT:g}; stage 2: the picked pool x unlabelled weight "
            f"{', '.join(f'{w:g}' for w in weights)} x the same policies, strengths, "
            "combinations and blends. The pool's k and bin counts are fixed (kNN 1, 5, 10, 20, "
            "50; LOF 5, 10, 20, 50; HBOS 5, 10, 20, 50 bins; Isolation Forest 100 trees); the "
            "classifier has XGBOD's defaults (100 trees of depth 3, learning rate 0.1, "
            "min_samples_leaf 1, "
            "3 folds).",
            "",
            *(
                [
                    f"The choice's rows: {choice_read:,} read from `{choice_path.name}` "
                    f"(written by an earlier run), {len(choice) - choice_read:,} computed by "
                    "this one.",
                    "",
                ]
                if choice_read
                else []
            ),
            *choice_lines(choice, ordered, subsets, weights, counts),
            "",
        ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(text))
    print(f"wrote {args.out} in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
