"""COPOD: outlier scores from an empirical copula of the features' marginal tails.

Reference: Li, Zhao, Botta, Ionescu & Hu, "COPOD: Copula-Based Outlier Detection", IEEE ICDM
2020 (arXiv:2009.09463), Algorithm 1, and the authors' code (PyOD's ``pyod.models.copod``;
Zhao is an author of both), which ran the paper's experiments.

Method, for d features and n training rows. The empirical copula observation of a row is its
vector of per-feature empirical CDF values; COPOD reads its tail probabilities as a
parameter-free outlier score:
1. Per feature j, the left- and right-tail empirical CDFs of the training values and the sample
   skewness gamma_j. Per row and feature: U_left = -log F_left_j(x_j), U_right = -log
   F_right_j(x_j) and the skewness-corrected U_auto = U_left if gamma_j < 0 else U_right.
2. The score, as the authors' code computes it: per feature the larger of U_auto and the mean
   of the two tails, (U_left + U_right) / 2, summed over the features (PyOD's
   ``O = max(U_skew, (U_l + U_r) / 2)``, then ``O.sum(axis=1)``).
No randomness and no setting to tune.

The paper's Algorithm 1 as printed instead sums each of U_left, U_right and U_auto over the
features and keeps the largest of the three sums: the same as ECOD's Algorithm 1 (Li et al.,
TKDE 2022, by the same authors), available here as ``ecod`` with ``aggregate="three_sums"``,
so it is not repeated. The code's per-feature rule is the default for the reason ECOD's
default is its code: it is what produced the published figures.

How it differs from ECOD's code (``ecod``, ``per_feature``: max(U_left, U_right) per feature):
in the tail the skew does not point to, COPOD counts half of the two tails together rather
than the full reading, so a value far out on the side of a feature that rarely goes there
counts less; in the skewed tail both agree.

Named differences from PyOD: those of :mod:`ad_core.detectors.ecod`, whose ECDF code this
shares. (a) Training rows get the in-sample ECDF (equal to PyOD's training scores); a new row
is counted into the ECDF it is scored against, (#{training values <= z} + 1) / (n + 1), so it
scores the same alone or in any batch and never gets log 0 (PyOD re-estimates the ECDFs on the
training and scored rows together). (b) A feature with skewness exactly 0 takes its right
tail as the automatic one, as the paper's rule does; PyOD's sign arithmetic makes U_skew the
sum of both tails there.
"""

from __future__ import annotations

import numpy as np

from ad_core.detectors.base import CONTAMINATION_PARAM, DetectorInfo
from ad_core.detectors.ecod import ECOD


class COPOD(ECOD):
    info = DetectorInfo(
        name="copod",
        title="COPOD (copula tails)",
        family="classic",
        uses_labels="no",
        has_latent=False,
        description=(
            "Reads each row's position in every feature's own distribution (an empirical "
            "copula) and scores how deep in the tails it lies, leaning on the tail each "
            "feature's skew points to, summed over the features. Assumes anomalies are extreme "
            "in some individual features. No settings to tune, deterministic, and its score "
            "splits exactly into per-feature parts. Fails on anomalies that are only unusual in "
            "a combination of ordinary values (a heartbeat's shape, a broken correlation) and "
            "treats features as independent. Cost: a sort per feature; seconds even on "
            "millions of rows."
        ),
        reference="Li, Zhao, Botta, Ionescu & Hu, COPOD, IEEE ICDM 2020",
        params=(CONTAMINATION_PARAM,),
    )

    def __init__(self, *, contamination: float = 0.1, random_state: int | None = None) -> None:
        self.contamination = contamination
        self.random_state = random_state  # unused: COPOD has no randomness

    def _aggregate(self, neg_log_left: np.ndarray, neg_log_right: np.ndarray) -> np.ndarray:
        auto = np.where(self.skewness_ < 0, neg_log_left, neg_log_right)
        return np.maximum(auto, (neg_log_left + neg_log_right) / 2.0).sum(axis=1)
