"""PCA detector: distance of a row from the principal subspace of the training rows.

References: Jackson & Mudholkar, "Control Procedures for Residuals Associated With Principal
Component Analysis", Technometrics 1979 (the squared prediction error, Q); Shyu, Chen,
Sarinnapakorn & Chang, "A Novel Anomaly Detection Scheme Based on Principal Component
Classifier", ICDM Foundation and New Direction of Data Mining workshop 2003 (PCA scores from
the major and the minor components); Yue & Qin, "Reconstruction-Based Fault Identification
Using a Combined Index", Ind. Eng. Chem. Res. 2001 (one index from both). The Cloudera Fast
Forward prototype scores the reconstruction error of a 2-component PCA.

scikit-learn's ``PCA`` (full SVD, deterministic) finds the mean m, the k leading directions
V (k x d) and their variances lambda. For a row x, p = V (x - m) is its projection (the latent
code shown on maps) and x' = m + V^T p its reconstruction. Two scores:
- ``reconstruction``: Q = ||x - x'||^2, the squared distance to the principal subspace (the
  reconstruction error of the Cloudera prototype, Jackson & Mudholkar's Q);
- ``combined`` (default): Q / mean(Q) + T^2 / mean(T^2), where T^2 = sum_j p_j^2 / lambda_j is
  Hotelling's distance inside the subspace and each mean is over the training rows, so both
  parts weigh the same on normal rows (a combined index in the spirit of Yue & Qin, who weigh
  by control limits instead). Reconstruction error alone cannot see rows that lie along the
  principal directions: a far-off group of rows becomes a principal direction itself and is
  rebuilt perfectly, so the default adds T^2.
``n_components`` empty keeps the fewest components that explain 90 % of the variance, and
never all of them (at most features - 1), so that a residual remains. Saved as plain arrays;
scoring is the same NumPy code before and after a save.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.decomposition import PCA as _SkPCA

from ad_core.data.errors import DataError
from ad_core.detectors.base import (
    CONTAMINATION_PARAM,
    BaseDetector,
    DetectorInfo,
    ParamSpec,
    emit,
)

#: share of the variance the automatic number of components explains
EXPLAINED_VARIANCE = 0.9


class PCA(BaseDetector):
    info = DetectorInfo(
        name="pca",
        title="PCA (principal subspace)",
        family="classic",
        uses_labels="no",
        has_latent=True,
        description=(
            "Finds the few directions along which normal rows vary most, and scores how far a "
            "row falls outside them (and, by default, how unusual it is along them). Assumes "
            "normal rows lie close to a flat subspace: correlated features, sensor channels "
            "that move together, smooth shapes. Fast, deterministic and a good baseline for "
            "windows of a series. Fails on curved or clustered normal data, where a linear "
            "subspace fits poorly, and on anomalies that only change the mix within the "
            "subspace when the reconstruction score is chosen. Cost: one SVD; seconds."
        ),
        reference="Jackson & Mudholkar, Technometrics 1979; Shyu et al., ICDM workshop 2003; "
        "Cloudera Fast Forward deepad",
        params=(
            ParamSpec(
                "n_components",
                "int",
                "Principal components kept. Empty = the fewest that explain 90 % of the "
                "variance (at most features - 1).",
                low=1,
                high=4096,
            ),
            ParamSpec(
                "score",
                "choice",
                "combined: distance from the subspace plus distance within it (Hotelling T²); "
                "reconstruction: distance from the subspace only (the Cloudera prototype).",
                choices=("combined", "reconstruction"),
            ),
            CONTAMINATION_PARAM,
        ),
    )
    _array_state = (*BaseDetector._array_state, "mean_", "components_", "explained_variance_")
    _json_state = (
        *BaseDetector._json_state,
        "n_components_",
        "residual_scale_",
        "hotelling_scale_",
    )

    def __init__(
        self,
        *,
        n_components: int | None = None,
        score: str = "combined",
        contamination: float = 0.1,
        random_state: int | None = None,
    ) -> None:
        self.n_components = n_components
        self.score = score
        self.contamination = contamination
        self.random_state = random_state  # unused: a full SVD has no randomness

    def _fit(self, X: np.ndarray, y, callback: Callable | None) -> None:
        n_rows, n_features = X.shape
        most = min(n_rows, n_features)
        if self.n_components is not None and int(self.n_components) > most:
            raise DataError(
                f"{self.info.title}: {self.n_components} components were asked for, but "
                f"{n_rows} rows of {n_features} features have at most {most}. Choose fewer "
                "components, or leave the setting empty (automatic)."
            )
        full = _SkPCA(svd_solver="full").fit(X)
        if self.n_components is None:
            explained = np.cumsum(full.explained_variance_ratio_)
            k = int(np.searchsorted(explained, EXPLAINED_VARIANCE - 1e-12) + 1)
            k = max(1, min(k, n_features - 1, most))
        else:
            k = int(self.n_components)
        self.n_components_ = k
        self.mean_ = full.mean_.astype(np.float64)
        self.components_ = full.components_[:k].astype(np.float64)
        self.explained_variance_ = full.explained_variance_[:k].astype(np.float64)
        residual, hotelling = self._parts(X)
        # Each part's mean over the training rows, so both weigh alike in the combined score;
        # the floor keeps a part that is zero on every training row from dividing by zero.
        floor = 1e-12 * max(float(full.explained_variance_.sum()), 1e-12)
        self.residual_scale_ = max(float(residual.mean()), floor)
        self.hotelling_scale_ = max(float(hotelling.mean()), floor)
        emit(
            callback, {"stage": "train", "epoch": 1, "n_epochs": 1, "loss": float(residual.mean())}
        )

    def _parts(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (Q, T^2) per row: squared distance from the subspace and within it."""
        centred = X - self.mean_
        projection = centred @ self.components_.T
        residual = centred - projection @ self.components_
        floor = max(1e-12 * float(self.explained_variance_.max()), np.finfo(np.float64).tiny)
        variance = np.maximum(self.explained_variance_, floor)
        return np.sum(residual**2, axis=1), np.sum(projection**2 / variance, axis=1)

    def _score(self, X: np.ndarray) -> np.ndarray:
        residual, hotelling = self._parts(X)
        if self.score == "reconstruction":
            return residual
        return residual / self.residual_scale_ + hotelling / self.hotelling_scale_

    def _transform(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean_) @ self.components_.T
