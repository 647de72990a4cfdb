"""Classic (shallow) baselines with scikit-learn inside: Isolation Forest, OC-SVM, kNN.

References:
- Liu, Ting & Zhou, "Isolation Forest", ICDM 2008.
- Schölkopf, Platt, Shawe-Taylor, Smola & Williamson, "Estimating the Support of a
  High-Dimensional Distribution", Neural Computation 2001 (the nu one-class SVM).
- Ramaswamy, Rastogi & Shim, "Efficient Algorithms for Mining Outliers from Large Data
  Sets", SIGMOD 2000 (distance to the k-th nearest neighbour); Angiulli & Pizzuti, PKDD 2002
  (the mean distance to the k nearest neighbours).

scikit-learn fits each model. What is saved is plain arrays, never a pickled estimator: the
forest's node arrays, the SVM's support vectors and dual coefficients, the kNN reference rows.
Scoring always runs through the same array code, before and after a save, so a loaded model
gives bit-identical scores; tests check that code against scikit-learn's own scores.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.ensemble import IsolationForest as _SkIsolationForest
from sklearn.metrics.pairwise import rbf_kernel
from sklearn.neighbors import NearestNeighbors
from sklearn.svm import OneClassSVM as _SkOneClassSVM

from ad_core.data.errors import DataError
from ad_core.detectors.base import (
    CONTAMINATION_PARAM,
    SEED_PARAM,
    BaseDetector,
    DetectorInfo,
    ParamSpec,
    emit,
)


def _average_path_length(n: np.ndarray) -> np.ndarray:
    """Return c(n), the mean path length of an unsuccessful BST search (Liu et al., eq. 1)."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


class IsolationForest(BaseDetector):
    info = DetectorInfo(
        name="isolation_forest",
        title="Isolation Forest",
        family="classic",
        uses_labels="no",
        has_latent=False,
        description=(
            "Builds random trees that split features at random; anomalies are isolated in few "
            "splits. Assumes anomalies are few and different in some individual features. "
            "Fast, robust, needs almost no tuning: a strong first baseline on tables. Fails on "
            "anomalies that only show in combinations of features (e.g. shape of a heartbeat) "
            "and on very high-dimensional data with few informative features. Cost: seconds, "
            "even on millions of rows."
        ),
        reference="Liu, Ting & Zhou, Isolation Forest, ICDM 2008",
        params=(
            ParamSpec("n_estimators", "int", "Number of trees.", low=10, high=2000, log=True),
            ParamSpec(
                "max_samples",
                "int",
                "Rows drawn to build each tree (paper: 256).",
                low=16,
                high=100000,
                log=True,
            ),
            CONTAMINATION_PARAM,
            SEED_PARAM,
        ),
    )
    _array_state = (
        *BaseDetector._array_state,
        "tree_offsets_",
        "children_left_",
        "children_right_",
        "feature_",
        "threshold_node_",
        "node_size_",
        "node_depth_",
    )
    _json_state = (*BaseDetector._json_state, "max_samples_")

    def __init__(
        self,
        *,
        n_estimators: int = 100,
        max_samples: int = 256,
        contamination: float = 0.1,
        random_state: int | None = None,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.contamination = contamination
        self.random_state = random_state

    def _fit(self, X, y, callback: Callable | None) -> None:
        forest = _SkIsolationForest(
            n_estimators=int(self.n_estimators),
            max_samples=min(int(self.max_samples), len(X)),
            random_state=self.random_state,
        ).fit(X)
        self.max_samples_ = int(forest.max_samples_)
        # Flatten every tree into shared arrays; features are mapped back to X's columns.
        lefts, rights, feats, thrs, sizes, depths, offsets = [], [], [], [], [], [], [0]
        for tree, cols in zip(forest.estimators_, forest.estimators_features_, strict=True):
            t = tree.tree_
            left, right = t.children_left.copy(), t.children_right.copy()
            depth = np.zeros(t.node_count, dtype=np.int64)
            for node in range(t.node_count):  # parents precede children in sklearn's arrays
                if left[node] != -1:
                    depth[left[node]] = depth[right[node]] = depth[node] + 1
            is_leaf = left == -1
            left[~is_leaf] += offsets[-1]
            right[~is_leaf] += offsets[-1]
            feat = np.where(is_leaf, 0, np.asarray(cols)[np.maximum(t.feature, 0)])
            lefts.append(left)
            rights.append(right)
            feats.append(feat)
            thrs.append(t.threshold)
            sizes.append(t.n_node_samples)
            depths.append(depth)
            offsets.append(offsets[-1] + t.node_count)
        self.children_left_ = np.concatenate(lefts)
        self.children_right_ = np.concatenate(rights)
        self.feature_ = np.concatenate(feats).astype(np.int64)
        self.threshold_node_ = np.concatenate(thrs)
        self.node_size_ = np.concatenate(sizes).astype(np.int64)
        self.node_depth_ = np.concatenate(depths)
        self.tree_offsets_ = np.asarray(offsets, dtype=np.int64)
        emit(callback, {"stage": "train", "epoch": 1, "n_epochs": 1, "loss": float("nan")})

    def _score(self, X: np.ndarray) -> np.ndarray:
        # Trees compare float32 features with float64 thresholds, exactly as scikit-learn does.
        X32 = X.astype(np.float32).astype(np.float64)
        n = X.shape[0]
        rows = np.arange(n)
        leaf_term = self.node_depth_ + _average_path_length(self.node_size_)
        total = np.zeros(n)
        for start in self.tree_offsets_[:-1]:
            node = np.full(n, start, dtype=np.int64)
            while True:
                left = self.children_left_[node]
                inner = left != -1
                if not inner.any():
                    break
                go_left = X32[rows, self.feature_[node]] <= self.threshold_node_[node]
                node = np.where(inner, np.where(go_left, left, self.children_right_[node]), node)
            total += leaf_term[node]
        n_trees = len(self.tree_offsets_) - 1
        mean_depth = total / n_trees
        return 2.0 ** (-mean_depth / _average_path_length(np.array([self.max_samples_]))[0])


class OCSVM(BaseDetector):
    info = DetectorInfo(
        name="ocsvm",
        title="One-class SVM",
        family="classic",
        uses_labels="no",
        has_latent=False,
        description=(
            "Finds a smooth boundary (RBF kernel) that encloses most of the data; rows outside "
            "are anomalous. Assumes normal data fills a region that a kernel can describe. "
            "Works well on small to medium, well-scaled numeric tables. Fails on large data "
            "(training grows quadratically with rows, so train on a sample of at most a few "
            "tens of thousands) and is sensitive to the kernel width gamma. Cost: seconds for "
            "thousands of rows, minutes beyond."
        ),
        reference="Schölkopf et al., Neural Computation 2001",
        params=(
            ParamSpec(
                "nu",
                "float",
                "Upper bound on the share of training rows outside the boundary.",
                low=0.001,
                high=0.99,
            ),
            ParamSpec(
                "gamma",
                "float",
                "RBF kernel width; empty = 1 / (n_features * variance).",
                low=1e-6,
                high=1e3,
                log=True,
            ),
            CONTAMINATION_PARAM,
        ),
    )
    _array_state = (*BaseDetector._array_state, "support_vectors_", "dual_coef_")
    _json_state = (*BaseDetector._json_state, "gamma_", "intercept_")

    def __init__(
        self,
        *,
        nu: float = 0.1,
        gamma: float | None = None,
        contamination: float = 0.1,
        random_state: int | None = None,
    ) -> None:
        self.nu = nu
        self.gamma = gamma
        self.contamination = contamination
        self.random_state = random_state  # unused: libsvm's solver is deterministic

    def _fit(self, X, y, callback: Callable | None) -> None:
        svm = _SkOneClassSVM(
            kernel="rbf",
            nu=float(self.nu),
            gamma="scale" if self.gamma is None else float(self.gamma),
        ).fit(X)
        self.support_vectors_ = np.ascontiguousarray(svm.support_vectors_)
        self.dual_coef_ = np.ascontiguousarray(svm.dual_coef_.ravel())
        self.intercept_ = float(svm.intercept_[0])
        self.gamma_ = float(svm._gamma)
        emit(callback, {"stage": "train", "epoch": 1, "n_epochs": 1, "loss": float("nan")})

    def _score(self, X: np.ndarray) -> np.ndarray:
        out = np.empty(X.shape[0])
        step = max(1, 2**24 // max(1, len(self.support_vectors_)))  # ~128 MB of kernel rows
        for start in range(0, X.shape[0], step):
            K = rbf_kernel(X[start : start + step], self.support_vectors_, gamma=self.gamma_)
            out[start : start + step] = -(K @ self.dual_coef_ + self.intercept_)
        return out


class KNN(BaseDetector):
    info = DetectorInfo(
        name="knn",
        title="k nearest neighbours",
        family="classic",
        uses_labels="no",
        has_latent=False,
        description=(
            "Scores each row by its distance to its k-th nearest (or k nearest, on average) "
            "training rows: isolated rows are anomalous. Assumes normal rows have close "
            "neighbours. Simple, often hard to beat on tables with meaningful distances. Fails "
            "when features are on different scales (scale them first), in very high "
            "dimension, or when anomalies come in tight clusters larger than k. Cost: "
            "scoring searches the training rows, so it slows down on large data."
        ),
        reference="Ramaswamy et al., SIGMOD 2000; Angiulli & Pizzuti, PKDD 2002",
        params=(
            ParamSpec("n_neighbors", "int", "k: how many neighbours to look at.", low=1, high=200),
            ParamSpec(
                "method",
                "choice",
                "largest: distance to the k-th neighbour; mean: mean distance to the k nearest.",
                choices=("largest", "mean"),
            ),
            CONTAMINATION_PARAM,
        ),
    )
    _array_state = (*BaseDetector._array_state, "reference_")

    def __init__(
        self,
        *,
        n_neighbors: int = 5,
        method: str = "largest",
        contamination: float = 0.1,
        random_state: int | None = None,
    ) -> None:
        self.n_neighbors = n_neighbors
        self.method = method
        self.contamination = contamination
        self.random_state = random_state  # unused: exact neighbour search is deterministic

    def _fit(self, X, y, callback: Callable | None) -> None:
        if int(self.n_neighbors) >= len(X):  # depends on the data, so not in the spec
            raise DataError(
                f"{self.info.title} compares each row with its {self.n_neighbors} nearest "
                f"training rows, so it needs more than {self.n_neighbors} of them; there are "
                f"{len(X)}. Load more rows, or lower 'n_neighbors' (k) below {len(X)}."
            )
        self.reference_ = X
        self._index = NearestNeighbors().fit(X)
        emit(callback, {"stage": "train", "epoch": 1, "n_epochs": 1, "loss": float("nan")})

    def _restore(self, path, arrays) -> None:
        self._index = NearestNeighbors().fit(self.reference_)

    def _score(self, X: np.ndarray) -> np.ndarray:
        return self._knn_score(X, exclude_self=False)

    def _training_scores(self, X: np.ndarray) -> np.ndarray:
        # A training row must not count itself as its own nearest neighbour.
        return self._knn_score(X, exclude_self=True)

    def _knn_score(self, X: np.ndarray, *, exclude_self: bool) -> np.ndarray:
        k = int(self.n_neighbors)
        dist, _ = self._index.kneighbors(X, n_neighbors=k + int(exclude_self))
        if exclude_self:
            dist = dist[:, 1:]
        return dist[:, -1] if self.method == "largest" else dist.mean(axis=1)
