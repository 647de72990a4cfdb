"""XGBOD: unsupervised detectors' scores as extra features for a boosted classifier on the labels.

Reference: Zhao & Hryniewicki, "XGBOD: Improving Supervised Outlier Detection with
Unsupervised Representation Learning", IJCNN 2018 (arXiv:1912.00290); PyOD's ``XGBOD``
(pyod.models.xgbod) is the authors' implementation.

Method, as in the paper:
1. Standardise the features (mean and standard deviation of the training rows).
2. Run a pool of unsupervised detectors on the training rows; their scores are the
   "transformed outlier scores" (TOS), new features of every row. Ours can hold the distance
   to the k-th neighbour and LOF at several k (one neighbour search serves every k), an
   Isolation Forest, ECOD and HBOS at several bin counts (``knn_neighbors``,
   ``lof_neighbors``, ``n_estimators``, ``ecod``, ``hbos_bins``).
3. Train a gradient-boosted tree classifier on the standardised features with the TOS
   appended, on the labelled rows; its P(anomaly) is the score.

Labels follow the library's convention (``y``: -1 unlabelled, 0 normal, 1 anomaly). Every
row, labelled or not, trains the unsupervised detectors (they never see a label).

Named deviations from the paper and from PyOD:
- The boosted classifier is scikit-learn's ``HistGradientBoostingClassifier``, not XGBoost
  (no new dependency). PyOD's XGBOD settings are kept where both have them: 100 trees of
  depth 3, learning rate 0.1; ``min_samples_leaf`` is 1 (scikit-learn's default 20 allows
  no split at all below 40 labelled rows, and an expert labels 10 at a time); no early
  stopping (it would hold out labelled rows).
- The default pool is one Isolation Forest. The paper's pool is large (kNN, average kNN
  and LOF at many k, HBOS at several bin counts, Isolation Forests of several sizes,
  one-class SVMs at several nu) and it selects TOS per data set; PyOD keeps the whole pool.
  Ours was selected once, across data sets, by leave one set out on the eight shared sets
  (``python -m ad_core.bench semi``, ``benchmarks/semi.md``): the label loop at 10 to 100
  labels and 10 % of the anomalies labelled, nine candidate pools from kNN + LOF,
  Isolation Forest and ECOD + HBOS. Every fold picked the Isolation Forest alone; with the
  whole pool the protocol's figure was a little lower (0.921 against 0.925, mean over the
  eight sets at the same settings) for the cost of a neighbour search. The others stay
  available as settings. No one-class SVMs (their cost grows with the square of the rows
  and their kernel width needs tuning).
- An unsupervised prior. The paper and PyOD score with the classifier alone, which needs
  both classes labelled and many labels: with 10 labels its ranking is mostly ties. Here the
  score is a blend
      score = (1 - w) * prior + w * part,     w = n / (n + prior_strength)
  where ``prior`` is the pool's combined score (each detector family weighs the same: the
  mean of its scores put on a common scale, as the ensemble detector does), as the share of
  training rows combined at or below the row, in [0, 1]; ``part`` the classifier's
  P(anomaly) (``blend_space="probability"``) or its rank among the training rows' ("rank");
  and ``n`` the labelled anomalies, or the negatives when those are fewer (a ranking learnt
  from labels is as reliable as its rarer class is large). No label, or no labelled
  anomaly, gives ``w = 0``: the prior itself, so a run without labels ranks like the pool
  and labels can only move it from there. ``prior_strength = 0`` is the paper's score (the
  classifier alone) once it has both classes. With the probability blend the classifier
  lifts the rows it is sure of above the rest and the prior orders the rows it has no
  opinion on; the probability blend was picked by 7 of the 8 folds, strength 3 by 6.
- Unlabelled rows as presumed normals (``unlabelled_weight``, ``presume_normal``): with
  labelled anomalies and no labelled normal (ADBench's semi-supervised set-up, or an expert
  who only marks anomalies) the classifier has one class. ADBench trains XGBOD with every
  unlabelled row as a normal (y = 0); here the unlabelled rows join the classifier's
  training as normals with this weight (0.1, 7 of 8 folds), by default only as that fallback: once a row
  is labelled normal the classifier learns from the labelled rows alone, as in the paper
  (``presume_normal="always"`` keeps them in). Deep SAD makes the same assumption (most
  unlabelled rows are normal); it fails on sets with many anomalies, where the presumed
  normals hide the anomalies the labels show: ECG5000 (41 % anomalies) stayed at the prior's
  AUROC with 100 labels, hence the fallback, which 7 of the 8 folds picked. Because the
  app scores the rows it trained on, an unlabelled row must not be scored by a classifier
  that was told it is normal: the unlabelled rows are split into ``n_folds`` folds, one
  classifier per fold learns from the labelled rows and the other folds' unlabelled rows
  and scores its own fold (cross-fitting). New rows and labelled rows get the mean of the
  fold classifiers. Without presumed normals the unlabelled rows only train the
  unsupervised detectors, and one classifier learns from the labelled rows alone.

Warm retraining (:meth:`XGBOD.fine_tune`, ours): after new labels on the same rows the
unsupervised detectors are kept and only the classifier is refitted (the TOS do not depend
on labels, so it is the model a full fit would give); on other rows, or with other pool
settings, it is a full fit.

Saved without pickle: ``config.json`` and ``arrays.npz`` hold the standardisation, the
training rows (standardised; the neighbour search, LOF's reference distances and ECOD's
ECDFs are rebuilt from them on load: exact and deterministic), the TOS of the training rows,
HBOS's histograms, and every boosted tree as plain node arrays (feature, threshold,
children, leaf values), scored by the same NumPy code before and after a save (a test checks
it against scikit-learn's own ``predict_proba``); the Isolation Forest is saved by its own
``save`` in ``members/isolation_forest/``. The trees are stored, not refitted on load from
the training rows and labels, so that a model scores the same under another scikit-learn
version and loading costs no training.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ad_core.detectors.base import (
    CONTAMINATION_PARAM,
    SEED_PARAM,
    BaseDetector,
    DetectorInfo,
    ParameterError,
    ParamSpec,
    emit,
    validate_features,
    validate_labels,
    validate_params,
)
from ad_core.detectors.ensemble import combine, rank_scale
from ad_core.thresholds import contamination_threshold

MEMBERS_DIR = "members"
FOREST_DIR = "isolation_forest"
#: the TOS families, in the order their columns are appended
FAMILIES = ("knn", "lof", "iforest", "ecod", "hbos")
#: pseudo-count of an HBOS bin (an empty bin, or a value outside the training range)
HBOS_PSEUDO_COUNT = 1.0
#: rows scored at once by the tree arrays (rows x trees node indices in memory)
TREE_CHUNK = 4096
#: settings the unsupervised part depends on: a warm retrain keeps it only if they are equal
POOL_PARAMS = ("knn_neighbors", "lof_neighbors", "n_estimators", "ecod", "hbos_bins", "combination")


def hbos_counts(X: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (low, high, counts d x n_bins): each feature's equal-width histogram."""
    low, high = X.min(axis=0), X.max(axis=0)
    counts = np.zeros((X.shape[1], n_bins))
    bins = _hbos_bins(X, low, high, n_bins)
    for j in range(X.shape[1]):
        counts[j] = np.bincount(bins[:, j], minlength=n_bins)[:n_bins]
    return low, high, counts


def _hbos_bins(X: np.ndarray, low: np.ndarray, high: np.ndarray, n_bins: int) -> np.ndarray:
    """Return each value's bin, ``n_bins`` (one past the last) for values outside the range."""
    width = np.where(high > low, (high - low) / n_bins, 1.0)
    idx = np.floor((X - low) / width).astype(np.int64)
    idx = np.minimum(idx, n_bins - 1)  # the maximum itself falls in the last bin
    outside = (X < low) | (X > high)
    return np.where(outside, n_bins, idx)


def hbos_score(X: np.ndarray, low: np.ndarray, high: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Return HBOS's score, sum over features of -log(height of the row's bin).

    Goldstein & Dengel, KI 2012: each histogram is normalised to a maximum height of 1, so
    every feature weighs the same; a pseudo-count keeps empty bins (and values outside the
    training range) finite.
    """
    n_bins = counts.shape[1]
    bins = _hbos_bins(X, low, high, n_bins)
    padded = np.concatenate([counts, np.zeros((counts.shape[0], 1))], axis=1)  # outside: 0
    heights = (padded + HBOS_PSEUDO_COUNT) / (counts.max(axis=1, keepdims=True) + HBOS_PSEUDO_COUNT)
    cols = np.arange(X.shape[1])
    return -np.log(heights[cols[None, :], bins]).sum(axis=1)


class TreeArrays:
    """Boosted binary classifiers as flat node arrays, scored with NumPy only."""

    FIELDS = ("feature", "threshold", "left", "right", "leaf", "value", "roots", "starts", "base")

    def __init__(self, **arrays: np.ndarray) -> None:
        self.feature = np.asarray(arrays["feature"], dtype=np.int64)
        self.threshold = np.asarray(arrays["threshold"], dtype=np.float64)
        self.left = np.asarray(arrays["left"], dtype=np.int64)
        self.right = np.asarray(arrays["right"], dtype=np.int64)
        self.leaf = np.asarray(arrays["leaf"], dtype=bool)
        self.value = np.asarray(arrays["value"], dtype=np.float64)
        self.roots = np.asarray(arrays["roots"], dtype=np.int64)  # first node of each tree
        self.starts = np.asarray(arrays["starts"], dtype=np.int64)  # first tree of each model
        self.base = np.asarray(arrays["base"], dtype=np.float64)  # each model's baseline

    @classmethod
    def from_sklearn(cls, models: list) -> TreeArrays:
        """Return the trees of fitted binary ``HistGradientBoostingClassifier`` models."""
        parts: dict[str, list] = {name: [] for name in cls.FIELDS}
        offset = 0
        for model in models:
            parts["starts"].append(len(parts["roots"]))
            parts["base"].append(float(np.ravel(model._baseline_prediction)[0]))
            for predictors in model._predictors:  # one tree per round for a binary model
                nodes = predictors[0].nodes
                is_leaf = nodes["is_leaf"].astype(bool)
                parts["roots"].append(offset)
                # a leaf keeps pointing at itself, so that every row can step the same way
                parts["feature"].append(np.where(is_leaf, 0, nodes["feature_idx"]))
                parts["threshold"].append(nodes["num_threshold"].astype(np.float64))
                here = np.arange(len(nodes)) + offset
                parts["left"].append(
                    np.where(is_leaf, here, nodes["left"].astype(np.int64) + offset)
                )
                parts["right"].append(
                    np.where(is_leaf, here, nodes["right"].astype(np.int64) + offset)
                )
                parts["leaf"].append(is_leaf)
                parts["value"].append(nodes["value"].astype(np.float64))
                offset += len(nodes)
        arrays = {}
        for name in ("feature", "threshold", "left", "right", "leaf", "value"):
            arrays[name] = np.concatenate(parts[name]) if parts[name] else np.zeros(0)
        for name in ("roots", "starts", "base"):
            arrays[name] = np.asarray(parts[name])
        return cls(**arrays)

    @property
    def n_models(self) -> int:
        return int(self.base.size)

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}{name}": getattr(self, name) for name in self.FIELDS}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> TreeArrays:
        return cls(**{name: arrays[f"{prefix}{name}"] for name in cls.FIELDS})

    def raw(self, Z: np.ndarray) -> np.ndarray:
        """Return each model's log-odds of the rows of ``Z`` (rows x models)."""
        n = Z.shape[0]
        out = np.tile(self.base, (n, 1))
        if self.roots.size == 0:  # no tree: each model's baseline alone
            return out
        for lo in range(0, n, TREE_CHUNK):
            Zc = Z[lo : lo + TREE_CHUNK]
            rows = np.arange(Zc.shape[0])[:, None]
            node = np.broadcast_to(self.roots, (Zc.shape[0], self.roots.size)).copy()
            while True:
                inner = ~self.leaf[node]
                if not inner.any():
                    break
                go_left = Zc[rows, self.feature[node]] <= self.threshold[node]
                step = np.where(go_left, self.left[node], self.right[node])
                node = np.where(inner, step, node)
            values = self.value[node]
            # Trees of one model are contiguous; each is added in turn to the baseline, in the
            # order scikit-learn adds them, so the sums match its raw predictions exactly.
            bounds = [*self.starts.tolist(), self.roots.size]
            for m in range(self.n_models):
                column = np.full(Zc.shape[0], self.base[m])
                for t in range(bounds[m], bounds[m + 1]):
                    column += values[:, t]
                out[lo : lo + TREE_CHUNK, m] = column
        return out

    def proba(self, Z: np.ndarray) -> np.ndarray:
        """Return each model's P(anomaly) of the rows of ``Z`` (rows x models)."""
        from scipy.special import expit

        return expit(self.raw(Z))


def features(Xs: np.ndarray, tos: np.ndarray) -> np.ndarray:
    """Return the classifier's input: the standardised features with the TOS appended."""
    return np.ascontiguousarray(np.concatenate([Xs, tos], axis=1))


def prior_combination(
    train_tos: np.ndarray, tos: np.ndarray, names: list[str], combination: str
) -> np.ndarray:
    """Return the pool's combined score of rows with TOS ``tos`` (columns named ``names``).

    Each column is put on a common scale by its training scores (``combination``: rank or
    zscore, as the ensemble detector does); each detector family weighs the same, its
    columns (one per k or bin count) alike.
    """
    families = [name.split("_")[0] for name in names]
    present = set(families)
    weights = [1.0 / (len(present) * families.count(f)) for f in families]
    refs = [train_tos[:, j] for j in range(train_tos.shape[1])]
    return combine(refs, [tos[:, j] for j in range(tos.shape[1])], weights, combination)


def blend(
    prior: np.ndarray,
    proba: np.ndarray | None,
    weight: float,
    space: str = "rank",
    reference: np.ndarray | None = None,
) -> np.ndarray:
    """Return (1 - weight) * prior + weight * the classifier's part (the prior alone without
    a classifier).

    ``space``: "rank", the classifier's part is the share of training rows whose P(anomaly)
    is at or below (``reference``: those P, sorted), so its whole ordering counts, not only
    the rows it is sure of; "probability", P(anomaly) itself.
    """
    if proba is None or weight == 0.0:
        return prior
    part = rank_scale(reference, proba) if space == "rank" else proba
    return (1.0 - weight) * prior + weight * part


def blend_weight(labels: np.ndarray, unlabelled_weight: float, prior_strength: float) -> float:
    """Return the classifier's weight w = n / (n + prior_strength) in the score.

    n: the labelled anomalies, or the negatives when those are fewer (labelled normals, plus
    the unlabelled rows when they train as presumed normals): a ranking learnt from labels
    is as reliable as its rarer class is large. 0 without a classifier (one class only).
    """
    n_pos = int((labels == 1).sum())
    n_neg = int((labels == 0).sum()) + (int((labels == -1).sum()) if unlabelled_weight > 0 else 0)
    evidence = min(n_pos, n_neg)
    if evidence == 0:
        return 0.0
    return 1.0 if prior_strength == 0 else evidence / (evidence + float(prior_strength))


@dataclass(frozen=True)
class Boosting:
    """The boosted classifier's settings (XGBOD's, passed on)."""

    max_iter: int = 100
    learning_rate: float = 0.1
    max_depth: int | None = 3
    min_samples_leaf: int = 1
    unlabelled_weight: float = 0.1
    presume_normal: str = "fallback"
    n_folds: int = 3
    prior_strength: float = 3.0
    random_state: int | None = None

    def make(self):
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_depth=self.max_depth,
            max_leaf_nodes=None,
            min_samples_leaf=self.min_samples_leaf,
            early_stopping=False,
            random_state=self.random_state,
        )


@dataclass(frozen=True)
class FittedClassifier:
    """Fitted boosted classifier(s): the trees, which model scores each training row, w."""

    trees: TreeArrays | None
    train_model: np.ndarray  # per training row: the fold model that scores it, -1 the mean
    blend_weight: float
    kind: str  # "none", "labelled rows", "one", "cross-fitted"
    reference: np.ndarray | None = None  # the training rows' P(anomaly), sorted
    unlabelled_weight: float = 0.0  # the weight the unlabelled rows trained with

    def proba(self, Z: np.ndarray, which: np.ndarray | None = None) -> np.ndarray | None:
        """Return P(anomaly): the mean of the models, or model ``which[i]`` where it is >= 0."""
        if self.trees is None:
            return None
        per_model = self.trees.proba(Z)
        mean = per_model.mean(axis=1)
        if which is None or not (which >= 0).any():
            return mean
        own = per_model[np.arange(Z.shape[0]), np.maximum(which, 0)]
        return np.where(which >= 0, own, mean)


def _training_rows(rows: np.ndarray, labels: np.ndarray, weight: float) -> np.ndarray:
    """Return ``rows`` with every labelled row repeated round(1 / weight) times.

    Weighting the unlabelled rows by 1/r is repeating the labelled ones r times (the loss
    is the same up to a common factor, which no setting here depends on). Repetition, not
    ``sample_weight``: with weights scikit-learn bins the features by weighted quantiles,
    which costs more than the whole boosting (0.6 s against 0.05 s on 2,000 x 20 rows).
    """
    if weight <= 0 or weight >= 1:
        return rows
    repeat = np.where(labels[rows] == -1, 1, int(round(1.0 / weight)))
    return np.repeat(rows, repeat)


def effective_unlabelled_weight(labels: np.ndarray, weight: float, presume_normal: str) -> float:
    """Return the weight the unlabelled rows train the classifier with: ``weight``, or with
    ``presume_normal="fallback"`` 0 as soon as a row is labelled normal (then the classifier
    learns from the labelled rows alone, as on the paper's fully labelled sets)."""
    if presume_normal == "fallback" and (labels == 0).any():
        return 0.0
    return float(weight)


def fit_classifier(
    Z: np.ndarray, labels: np.ndarray, boosting: Boosting, callback: Callable | None = None
) -> FittedClassifier:
    """Return the boosted classifier(s) of XGBOD fitted on rows ``Z`` with ``labels``.

    Labelled anomalies are the positive class, labelled normals and (with an unlabelled
    weight above 0, :func:`effective_unlabelled_weight`) the unlabelled rows the negative
    one; with unlabelled rows the classifiers are cross-fitted (one per fold of unlabelled
    rows, which it does not train on and which it alone scores). One class only: no
    classifier, weight 0.
    """
    n = Z.shape[0]
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    unl = np.flatnonzero(labels == -1)
    uw = effective_unlabelled_weight(labels, boosting.unlabelled_weight, boosting.presume_normal)
    n_neg = neg.size + (unl.size if uw > 0 else 0)
    train_model = np.full(n, -1, dtype=np.int64)
    if pos.size == 0 or n_neg == 0:
        emit(callback, {"stage": "boosting", "epoch": 1, "n_epochs": 1, "loss": np.nan})
        return FittedClassifier(None, train_model, 0.0, "none", None, uw)
    weight = blend_weight(labels, uw, boosting.prior_strength)
    labelled = np.concatenate([pos, neg])
    models = []
    if uw > 0 and unl.size >= 2:
        folds = min(int(boosting.n_folds), unl.size)
        order = np.random.default_rng(boosting.random_state).permutation(unl)
        fold_of = np.empty(n, dtype=np.int64)
        fold_of[order] = np.arange(order.size) % folds
        for f in range(folds):
            rows = _training_rows(
                np.concatenate([labelled, order[fold_of[order] != f]]), labels, uw
            )
            models.append(boosting.make().fit(Z[rows], (labels[rows] == 1).astype(np.int64)))
            event = {"stage": "boosting", "epoch": f + 1, "n_epochs": folds, "loss": np.nan}
            emit(callback, event)
        train_model[unl] = fold_of[unl]
        kind = "cross-fitted"
    else:
        rows = labelled if uw == 0 else _training_rows(np.concatenate([labelled, unl]), labels, uw)
        models.append(boosting.make().fit(Z[rows], (labels[rows] == 1).astype(np.int64)))
        emit(callback, {"stage": "boosting", "epoch": 1, "n_epochs": 1, "loss": np.nan})
        kind = "labelled rows" if uw == 0 else "one"
    fitted = FittedClassifier(TreeArrays.from_sklearn(models), train_model, weight, kind)
    reference = np.sort(fitted.proba(Z, train_model))
    return FittedClassifier(fitted.trees, train_model, weight, kind, reference, uw)


class XGBOD(BaseDetector):
    info = DetectorInfo(
        name="xgbod",
        title="XGBOD (unsupervised scores + boosted trees)",
        family="ensemble",
        uses_labels="both",
        has_latent=False,
        description=(
            "Adds the scores of unsupervised detectors (by default an Isolation Forest; "
            "nearest-neighbour distances, LOF, ECOD and HBOS can join) to the features and "
            "trains boosted decision trees on the rows an expert labelled (while no row is "
            "labelled normal, the unlabelled rows count as presumed normals with a small "
            "weight). Without a labelled anomaly it ranks like its detectors (labels of "
            "normal rows alone change nothing); each labelled anomaly, and every label "
            "after it, moves the ranking further toward what the trees learned. The detector to use once labels exist: on the shared benchmark sets it "
            "ranked above a classifier on the labels alone at every count from 10 to 100 "
            "labels, stayed within 0.02 of Isolation Forest with 10 or 20 labels and rose "
            "above it from 50, and with a tenth of the anomalies labelled reached 0.96 mean "
            "AUROC. Fails when labels are wrong or unrepresentative "
            "(the trees learn the expert's blind spots too) and, with few labels, where the "
            "detectors themselves fail (a heartbeat's shape). Cost: seconds on tens of "
            "thousands of rows, so a retrain after new labels is quick."
        ),
        reference="Zhao & Hryniewicki, XGBOD, IJCNN 2018",
        needs_anomaly_label=True,
        params=(
            ParamSpec(
                "knn_neighbors",
                "int_list",
                "k of the nearest-neighbour detectors (distance to the k-th neighbour); empty "
                "= none.",
            ),
            ParamSpec(
                "lof_neighbors",
                "int_list",
                "k of the Local Outlier Factor detectors; empty = none.",
            ),
            ParamSpec(
                "n_estimators",
                "int",
                "Trees of the Isolation Forest detector; 0 leaves it out.",
                low=0,
                high=2000,
            ),
            ParamSpec("ecod", "bool", "Include ECOD (empirical CDF tails) in the pool."),
            ParamSpec(
                "hbos_bins",
                "int_list",
                "Bin counts of the histogram (HBOS) detectors; empty = none.",
            ),
            ParamSpec(
                "combination",
                "choice",
                "How the detectors' scores are put on one scale for the prior: rank (share of "
                "training scores below) or zscore (standardised by the training scores).",
                choices=("rank", "zscore"),
            ),
            ParamSpec(
                "prior_strength",
                "float",
                "How many labelled anomalies the unsupervised prior counts as: the score is "
                "prior x this : classifier x labelled anomalies. 0 = the classifier alone.",
                low=0.0,
                high=1000.0,
            ),
            ParamSpec(
                "blend_space",
                "choice",
                "How the classifier joins the prior: rank (its ordering of every row) or "
                "probability (its P(anomaly) itself, which counts mostly where it is sure).",
                choices=("rank", "probability"),
            ),
            ParamSpec(
                "unlabelled_weight",
                "float",
                "Weight of each unlabelled row as a presumed normal in the classifier's "
                "training (labelled rows weigh 1); 0 = the classifier sees labelled rows only.",
                low=0.0,
                high=1.0,
            ),
            ParamSpec(
                "presume_normal",
                "choice",
                "When the unlabelled rows train the classifier as presumed normals: always, or "
                "fallback: only while no row is labelled normal (else it learns from the "
                "labelled rows alone).",
                choices=("always", "fallback"),
            ),
            ParamSpec(
                "n_folds",
                "int",
                "Folds of unlabelled rows: each is scored by a classifier that did not train "
                "on it.",
                low=2,
                high=10,
            ),
            ParamSpec("max_iter", "int", "Boosting rounds (trees).", low=1, high=1000),
            ParamSpec(
                "learning_rate", "float", "Shrinkage of each tree.", low=0.001, high=1.0, log=True
            ),
            ParamSpec("max_depth", "int", "Depth of each tree (paper: 3).", low=1, high=12),
            ParamSpec(
                "min_samples_leaf",
                "int",
                "Fewest training rows in a leaf (1 lets a few labels split).",
                low=1,
                high=200,
            ),
            CONTAMINATION_PARAM,
            SEED_PARAM,
        ),
    )
    _json_state = (
        *BaseDetector._json_state,
        "tos_names_",
        "knn_k_",
        "lof_k_",
        "hbos_bins_",
        "pool_config_",
        "n_labelled_",
        "n_labelled_anomalies_",
        "blend_weight_",
        "classifier_",
    )
    _array_state = (
        *BaseDetector._array_state,
        "mean_",
        "scale_",
        "reference_",
        "train_tos_",
        "prior_reference_",
        "hbos_low_",
        "hbos_high_",
        "hbos_counts_",
        "train_model_",
        "proba_reference_",
    )

    def __init__(
        self,
        *,
        knn_neighbors: tuple[int, ...] = (),
        lof_neighbors: tuple[int, ...] = (),
        n_estimators: int = 100,
        ecod: bool = False,
        hbos_bins: tuple[int, ...] = (),
        combination: str = "rank",
        prior_strength: float = 3.0,
        blend_space: str = "probability",
        unlabelled_weight: float = 0.1,
        presume_normal: str = "fallback",
        n_folds: int = 3,
        max_iter: int = 100,
        learning_rate: float = 0.1,
        max_depth: int | None = 3,
        min_samples_leaf: int = 1,
        contamination: float = 0.1,
        random_state: int | None = None,
    ) -> None:
        self.knn_neighbors = knn_neighbors
        self.lof_neighbors = lof_neighbors
        self.n_estimators = n_estimators
        self.ecod = ecod
        self.hbos_bins = hbos_bins
        self.combination = combination
        self.prior_strength = prior_strength
        self.blend_space = blend_space
        self.unlabelled_weight = unlabelled_weight
        self.presume_normal = presume_normal
        self.n_folds = n_folds
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.contamination = contamination
        self.random_state = random_state

    # -- the pool of unsupervised detectors (TOS) -----------------------------------------------
    def _pool_config(self) -> dict:
        return {name: _plain(getattr(self, name)) for name in POOL_PARAMS}

    def _check_pool(self) -> None:
        if not (
            self.knn_neighbors
            or self.lof_neighbors
            or int(self.n_estimators) > 0
            or self.ecod
            or self.hbos_bins
        ):
            raise ParameterError(
                f"{self.info.title}: the pool of unsupervised detectors is empty; give at "
                "least one of knn_neighbors, lof_neighbors or hbos_bins a value, "
                "n_estimators above 0, or turn ecod on."
            )
        if any(int(b) < 2 for b in self.hbos_bins):
            raise ParameterError(
                f"{self.info.title}: 'hbos_bins' must be whole numbers of at least 2 (a "
                f"histogram needs two bins); got {list(self.hbos_bins)}."
            )

    def _fit_pool(self, Xs: np.ndarray, callback: Callable | None) -> np.ndarray:
        """Fit the unsupervised detectors on ``Xs``; return their training scores (TOS)."""
        n = Xs.shape[0]
        self.reference_ = Xs
        self.knn_k_ = sorted({int(k) for k in self.knn_neighbors if int(k) < n})
        self.lof_k_ = sorted({int(k) for k in self.lof_neighbors if int(k) < n})
        if self.knn_neighbors and not self.knn_k_:
            self.knn_k_ = [n - 1]  # fewer rows than every k: the farthest neighbour there is
        if self.lof_neighbors and not self.lof_k_:
            self.lof_k_ = [n - 1]
        self.hbos_bins_ = sorted({int(b) for b in self.hbos_bins})
        self._build_reference()
        columns = [self._neighbour_scores(None)]
        emit(callback, {"stage": "unsupervised scores", "epoch": 1, "n_epochs": 2, "loss": np.nan})
        if int(self.n_estimators) > 0:
            from ad_core.detectors.classic import IsolationForest

            self._forest = IsolationForest(
                n_estimators=int(self.n_estimators), random_state=self.random_state
            ).fit(Xs)
            columns.append(self._forest.decision_scores_[:, None])
        else:
            self._forest = None
        if self.ecod:
            columns.append(self._ecod.decision_scores_[:, None])
        if self.hbos_bins_:
            columns.append(self._hbos(Xs))
        self.tos_names_ = self._tos_names()
        emit(callback, {"stage": "unsupervised scores", "epoch": 2, "n_epochs": 2, "loss": np.nan})
        return np.concatenate(columns, axis=1)

    def _tos_names(self) -> list[str]:
        names = [f"knn_{k}" for k in self.knn_k_] + [f"lof_{k}" for k in self.lof_k_]
        names += ["iforest"] if int(self.n_estimators) > 0 else []
        names += ["ecod"] if self.ecod else []
        return names + [f"hbos_{b}" for b in self.hbos_bins_]

    def _build_reference(self) -> None:
        """Rebuild what the neighbour detectors and ECOD need from ``reference_`` (exact)."""
        from sklearn.neighbors import NearestNeighbors

        from ad_core.detectors.ecod import ECOD

        ref = self.reference_
        self._index = None
        if self.knn_k_ or self.lof_k_:
            self._index = NearestNeighbors().fit(ref)
            kmax = max(self.knn_k_ + self.lof_k_)
            # kneighbors() without rows: each training row's neighbours, itself excluded
            self._train_dist, self._train_ind = self._index.kneighbors(n_neighbors=kmax)
            self._lrd = {
                k: self._local_reach_density(self._train_dist, self._train_ind, k)
                for k in self.lof_k_
            }
        self._ecod = ECOD().fit(ref) if self.ecod else None
        if getattr(self, "hbos_bins_", None) and not hasattr(self, "hbos_counts_"):
            parts = [hbos_counts(ref, b) for b in self.hbos_bins_]
            self.hbos_low_, self.hbos_high_ = parts[0][0], parts[0][1]
            self.hbos_counts_ = np.concatenate([p[2] for p in parts], axis=1)

    def _local_reach_density(self, dist: np.ndarray, ind: np.ndarray, k: int) -> np.ndarray:
        """Return LOF's local reachability density at ``k`` (Breunig et al., SIGMOD 2000)."""
        k_distance = self._train_dist[:, k - 1]  # each training row's distance to its k-th
        reach = np.maximum(k_distance[ind[:, :k]], dist[:, :k])
        return 1.0 / (reach.mean(axis=1) + 1e-10)  # scikit-learn's guard against duplicates

    def _neighbour_scores(self, Xs: np.ndarray | None) -> np.ndarray:
        """Return the kNN and LOF columns of ``Xs`` (None: the training rows, self excluded)."""
        if self._index is None:
            n = self.reference_.shape[0] if Xs is None else Xs.shape[0]
            return np.zeros((n, 0))
        if Xs is None:
            dist, ind = self._train_dist, self._train_ind
        else:
            dist, ind = self._index.kneighbors(Xs, n_neighbors=max(self.knn_k_ + self.lof_k_))
        cols = [dist[:, k - 1] for k in self.knn_k_]
        for k in self.lof_k_:
            lrd = self._local_reach_density(dist, ind, k)
            cols.append(self._lrd[k][ind[:, :k]].mean(axis=1) / lrd)
        return np.stack(cols, axis=1)

    def _hbos(self, Xs: np.ndarray) -> np.ndarray:
        cols, at = [], 0
        for b in self.hbos_bins_:
            counts = self.hbos_counts_[:, at : at + b]
            cols.append(hbos_score(Xs, self.hbos_low_, self.hbos_high_, counts))
            at += b
        return np.stack(cols, axis=1)

    def _pool_scores(self, Xs: np.ndarray) -> np.ndarray:
        """Return the TOS of new rows (scored against the training rows)."""
        columns = [self._neighbour_scores(Xs)]
        if self._forest is not None:
            columns.append(self._forest.decision_function(Xs)[:, None])
        if self._ecod is not None:
            columns.append(self._ecod.decision_function(Xs)[:, None])
        if self.hbos_bins_:
            columns.append(self._hbos(Xs))
        return np.concatenate(columns, axis=1)

    # -- the prior and the classifier -----------------------------------------------------------
    def _prior(self, tos: np.ndarray) -> np.ndarray:
        """Return the prior in [0, 1]: the share of training rows combined at or below."""
        raw = prior_combination(self.train_tos_, tos, self.tos_names_, self.combination)
        return rank_scale(self.prior_reference_, raw)

    def _boosting(self) -> Boosting:
        return Boosting(
            max_iter=int(self.max_iter),
            learning_rate=float(self.learning_rate),
            max_depth=int(self.max_depth),
            min_samples_leaf=int(self.min_samples_leaf),
            unlabelled_weight=float(self.unlabelled_weight),
            presume_normal=self.presume_normal,
            n_folds=int(self.n_folds),
            prior_strength=float(self.prior_strength),
            random_state=self.random_state,
        )

    def _fit_classifier(self, Z: np.ndarray, y: np.ndarray | None, callback) -> None:
        labels = np.full(Z.shape[0], -1, dtype=np.int64) if y is None else y
        self.n_labelled_ = int((labels != -1).sum())
        self.n_labelled_anomalies_ = int((labels == 1).sum())
        fitted = fit_classifier(Z, labels, self._boosting(), callback)
        self._trees = fitted.trees
        self.train_model_ = fitted.train_model
        self.blend_weight_ = fitted.blend_weight
        self.classifier_ = fitted.kind
        # an empty array without a classifier: arrays.npz holds arrays only, never None
        self.proba_reference_ = np.zeros(0) if fitted.reference is None else fitted.reference

    def _classifier(self) -> FittedClassifier:
        return FittedClassifier(
            self._trees,
            self.train_model_,
            float(self.blend_weight_),
            self.classifier_,
            self.proba_reference_ if self.proba_reference_.size else None,
        )

    # -- the contract -------------------------------------------------------------------------------
    def _fit(self, X: np.ndarray, y: np.ndarray | None, callback: Callable | None) -> None:
        self._check_pool()
        self.mean_ = X.mean(axis=0)
        std = X.std(axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)
        Xs = (X - self.mean_) / self.scale_
        for name in ("hbos_counts_", "hbos_low_", "hbos_high_"):
            self.__dict__.pop(name, None)  # a refit builds its histograms anew
        self.train_tos_ = self._fit_pool(Xs, callback)
        self.pool_config_ = self._pool_config()
        self.prior_reference_ = np.sort(
            prior_combination(self.train_tos_, self.train_tos_, self.tos_names_, self.combination)
        )
        self._fit_classifier(features(Xs, self.train_tos_), y, callback)

    def _training_scores(self, X: np.ndarray) -> np.ndarray:
        prior = self._prior(self.train_tos_)
        if self._trees is None:
            return prior
        clf = self._classifier()
        Z = features(self.reference_, self.train_tos_)
        proba = clf.proba(Z, self.train_model_)
        return blend(prior, proba, clf.blend_weight, self.blend_space, clf.reference)

    def _score(self, X: np.ndarray) -> np.ndarray:
        Xs = (X - self.mean_) / self.scale_
        tos = self._pool_scores(Xs)
        prior = self._prior(tos)
        if self._trees is None:
            return prior
        clf = self._classifier()
        proba = clf.proba(features(Xs, tos))
        return blend(prior, proba, clf.blend_weight, self.blend_space, clf.reference)

    def pool_scores(self, X) -> np.ndarray:
        """Return the scores of the pool's detectors for the rows of ``X`` (rows x
        ``tos_names_``), each against the training rows: the TOS the classifier sees."""
        self._check_fitted()
        X = validate_features(X, n_features=self.n_features_in_)
        return self._pool_scores((X - self.mean_) / self.scale_)

    def prior_scores(self, X) -> np.ndarray:
        """Return the unsupervised prior of the rows of ``X`` alone (no label used), in [0, 1]."""
        self._check_fitted()
        X = validate_features(X, n_features=self.n_features_in_)
        return self._prior(self._pool_scores((X - self.mean_) / self.scale_))

    def fine_tune(self, X, y=None, *, callback: Callable | None = None) -> XGBOD:
        """Return ``self`` retrained on labels ``y`` (-1/0/1), the unsupervised part kept.

        The warm retrain after new labels: when ``X`` is the rows the detector was trained on
        and the pool's settings are unchanged, the unsupervised detectors and their scores
        are kept and only the boosted classifier is refitted (the scores of the pool do not
        depend on labels, so this is the same model a full fit would give). Otherwise a full
        :meth:`fit`. ``decision_scores_`` and ``threshold_`` are those of ``X`` afterwards.
        """
        self._check_fitted()
        validate_params(self)
        X = validate_features(X, n_features=int(self.n_features_in_))
        Xs = (X - self.mean_) / self.scale_
        same_rows = Xs.shape == self.reference_.shape and np.array_equal(Xs, self.reference_)
        if not (same_rows and self._pool_config() == self.pool_config_):
            return self.fit(X, y, callback=callback)
        y = validate_labels(y, X.shape[0])
        start = time.perf_counter()
        self._fit_classifier(features(self.reference_, self.train_tos_), y, callback)
        self.decision_scores_ = np.asarray(self._training_scores(X), dtype=np.float64)
        self.fit_seconds_ = time.perf_counter() - start
        self.threshold_ = float(contamination_threshold(self.decision_scores_, self.contamination))
        return self

    # -- persistence --------------------------------------------------------------------------------
    def _extra_arrays(self) -> dict[str, np.ndarray]:
        return {} if self._trees is None else self._trees.to_arrays("tree_")

    def _save_weights(self, path: Path) -> None:
        if self._forest is not None:
            self._forest.save(path / MEMBERS_DIR / FOREST_DIR)

    def _restore(self, path: Path, arrays: dict[str, np.ndarray]) -> None:
        from ad_core.detectors import load_detector

        self._build_reference()
        self._forest = None
        if int(self.n_estimators) > 0:
            self._forest = load_detector(path / MEMBERS_DIR / FOREST_DIR)
        self._trees = TreeArrays.from_arrays(arrays, "tree_") if "tree_base" in arrays else None


def _plain(value):
    """Return a setting as JSON gives it back (tuples as lists, numpy scalars as Python's)."""
    if isinstance(value, list | tuple):
        return [int(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
