"""ECOD: outlier scores from the tails of each feature's empirical distribution.

Reference: Li, Zhao, Hu, Botta, Ionescu & Chen, "ECOD: Unsupervised Outlier Detection Using
Empirical Cumulative Distribution Functions", IEEE TKDE 2022 (arXiv:2201.00382), Algorithm 1.

Method, as in the paper, for d features and n training rows:
1. Per feature j, the left- and right-tail empirical CDFs of the training values,
       F_left_j(z)  = (1/n) * #{i : X_ij <= z}        F_right_j(z) = (1/n) * #{i : X_ij >= z}
   and the sample skewness gamma_j of the feature.
2. Per row, three aggregates of the tail probabilities over the features,
       O_left  = -sum_j log F_left_j(x_j)
       O_right = -sum_j log F_right_j(x_j)
       O_auto  = -sum_j log( F_left_j(x_j) if gamma_j < 0 else F_right_j(x_j) )
   and the score O = max(O_left, O_right, O_auto): a row is as anomalous as its most extreme
   tail reading. No hyperparameter, no randomness.

The paper scores the rows it was given (its ECDFs include the row scored). So that new rows
score against the same reference: training rows (``decision_scores_``) get the paper's
in-sample ECDF exactly; a new row is counted into the ECDF it is scored against,
F(z) = (#{training values <= z} + 1) / (n + 1), which is the paper's ECDF of the training rows
plus that row. A value beyond every training value then gets the finite tail 1 / (n + 1),
never log 0. Named difference from PyOD's ``ECOD`` (pyod.models.ecod, versions 1 to 3): PyOD
takes the maximum per feature and then sums, max_j-wise(U_left, U_right, U_auto), which is
never below the paper's max of the three sums; and it re-estimates the ECDFs on the training
rows and the scored rows together, so its score of a row depends on the batch it comes in.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ad_core.detectors.base import CONTAMINATION_PARAM, BaseDetector, DetectorInfo, emit


def sample_skewness(X: np.ndarray) -> np.ndarray:
    """Return the (biased) sample skewness of each column; 0 for a column with no spread."""
    centred = X - X.mean(axis=0)
    m2 = (centred**2).mean(axis=0)
    m3 = (centred**3).mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        skew = m3 / m2**1.5
    # Floating-point noise in a constant column is no skew.
    return np.where(m2 > 1e-24 * np.maximum(1.0, X.mean(axis=0) ** 2), skew, 0.0)


def tail_counts(sorted_col: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (#{v <= z}, #{v >= z}) over the sorted training values v for each z in ``values``."""
    below = np.searchsorted(sorted_col, values, side="right")
    above = sorted_col.size - np.searchsorted(sorted_col, values, side="left")
    return below, above


class ECOD(BaseDetector):
    info = DetectorInfo(
        name="ecod",
        title="ECOD (empirical CDF tails)",
        family="classic",
        uses_labels="no",
        has_latent=False,
        description=(
            "Scores each row by how far out in the tails of each feature's own distribution "
            "its values lie, summed over the features (the tail side chosen by each feature's "
            "skew). Assumes anomalies are extreme in at least some individual features. No "
            "settings to tune, deterministic, and its score splits exactly into per-feature "
            "parts. Fails on anomalies that are only unusual in a combination of ordinary "
            "values (a heartbeat's shape, a correlation broken) and treats features as "
            "independent. Cost: a sort per feature; seconds even on millions of rows."
        ),
        reference="Li, Zhao, Hu, Botta, Ionescu & Chen, ECOD, IEEE TKDE 2022",
        params=(CONTAMINATION_PARAM,),
    )
    _array_state = (*BaseDetector._array_state, "sorted_values_", "skewness_")

    def __init__(self, *, contamination: float = 0.1, random_state: int | None = None) -> None:
        self.contamination = contamination
        self.random_state = random_state  # unused: ECOD has no randomness

    def _fit(self, X: np.ndarray, y, callback: Callable | None) -> None:
        self.sorted_values_ = np.sort(X, axis=0)
        self.skewness_ = sample_skewness(X)
        emit(callback, {"stage": "train", "epoch": 1, "n_epochs": 1, "loss": float("nan")})

    def _tail_logs(self, X: np.ndarray, *, in_sample: bool) -> tuple[np.ndarray, np.ndarray]:
        """Return -log F_left and -log F_right per row and feature."""
        n = self.sorted_values_.shape[0]
        left = np.empty(X.shape)
        right = np.empty(X.shape)
        for j in range(X.shape[1]):
            below, above = tail_counts(self.sorted_values_[:, j], X[:, j])
            if in_sample:  # the row is one of the n training values: the paper's ECDF
                left[:, j], right[:, j] = below / n, above / n
            else:  # the row joins the n training values it is compared with
                left[:, j], right[:, j] = (below + 1) / (n + 1), (above + 1) / (n + 1)
        return -np.log(left), -np.log(right)

    def _aggregate(self, neg_log_left: np.ndarray, neg_log_right: np.ndarray) -> np.ndarray:
        auto = np.where(self.skewness_ < 0, neg_log_left, neg_log_right)
        return np.maximum.reduce(
            [neg_log_left.sum(axis=1), neg_log_right.sum(axis=1), auto.sum(axis=1)]
        )

    def _score(self, X: np.ndarray) -> np.ndarray:
        return self._aggregate(*self._tail_logs(X, in_sample=False))

    def _training_scores(self, X: np.ndarray) -> np.ndarray:
        return self._aggregate(*self._tail_logs(X, in_sample=True))
