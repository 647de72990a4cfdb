"""Per-feature contributions: which features make a row's anomaly score high.

Two methods, chosen by the detector:

- ``"reconstruction"`` for detectors whose score is a reconstruction error (autoencoder,
  VAE): the contribution of feature j is the squared error (x_j - x^_j)^2 of the
  model's reconstruction x^ = decoder(encoder(x)) (for VAEs the decoder of the posterior
  mean). For the autoencoder these contributions sum to the score exactly; for the VAE they
  explain its reconstruction term.
- ``"zscore"`` for every other detector (Deep SAD/SVDD, compact VAE, whose score is a hole
  and likelihood measure, isolation forest, OC-SVM, kNN): the
  contribution of feature j is z_j^2 with z_j = (x_j - mean_j) / std_j, mean and standard
  deviation taken over the training rows. It says how unusual each value is on its own, a
  model-agnostic proxy: it cannot see anomalies that lie only in the combination of features.

Contributions are reported as shares of the row's total (they sum to 1 per row), with the
signed deviation (x - x^ or z) so the app can say "too high" or "too low".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "RECONSTRUCTION_DETECTORS",
    "Contributions",
    "ReferenceStats",
    "describe_top",
    "feature_contributions",
    "reference_stats",
    "top_features",
    "uses_reconstruction",
]

#: detectors whose score is a reconstruction error of ``model_.decoder(model_.encoder(x))``
RECONSTRUCTION_DETECTORS = frozenset({"autoencoder", "vae"})


@dataclass(frozen=True)
class ReferenceStats:
    """Mean and standard deviation per feature of the training rows (for the z-score method)."""

    mean: np.ndarray
    std: np.ndarray

    def to_dict(self) -> dict[str, list[float]]:
        """Return a JSON-ready dict."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceStats:
        """Return the stats stored by ``to_dict``."""
        return cls(
            np.asarray(data["mean"], dtype=np.float64), np.asarray(data["std"], dtype=np.float64)
        )


@dataclass(frozen=True)
class Contributions:
    """Per-row, per-feature contributions to the anomaly score.

    ``share[i, j]``: feature j's share of row i's total (rows sum to 1, or 0 for a row with
    no deviation at all); ``deviation[i, j]``: signed deviation (x - x^ for reconstruction,
    z for the z-score method); ``method``: "reconstruction" or "zscore".
    """

    share: np.ndarray
    deviation: np.ndarray
    method: str


def reference_stats(X_train: np.ndarray) -> ReferenceStats:
    """Return the mean and standard deviation per feature of the training rows.

    A constant feature gets a standard deviation of 1 so that its z-score is its deviation
    from the constant (0 for every row like the training rows).
    """
    X = np.asarray(X_train, dtype=np.float64)
    std = X.std(axis=0)
    return ReferenceStats(X.mean(axis=0), np.where(std > 0, std, 1.0))


def _reconstruct(detector: Any, X: np.ndarray) -> np.ndarray:
    """Return decoder(encoder(X)) of a fitted reconstruction detector, in batches."""
    from ad_core.nn import predict_batched  # only reconstruction detectors need torch

    model = detector.model_
    model.eval()
    X32 = np.ascontiguousarray(X, dtype=np.float32)
    rec = predict_batched(lambda x: model.decoder(model.encoder(x)), detector._to_tensor(X32))
    return rec.detach().cpu().numpy().astype(np.float64)


def uses_reconstruction(detector: Any) -> bool:
    """Return True when the detector's contributions come from its reconstruction error."""
    model = getattr(detector, "model_", None)
    return (
        getattr(getattr(detector, "info", None), "name", None) in RECONSTRUCTION_DETECTORS
        and model is not None
        and hasattr(model, "encoder")
        and hasattr(model, "decoder")
    )


def feature_contributions(
    detector: Any, X: np.ndarray, *, reference: ReferenceStats | None = None
) -> Contributions:
    """Return each feature's contribution to the scores of the rows of ``X`` (preprocessed).

    Uses the reconstruction error for reconstruction detectors, otherwise squared z-scores
    against ``reference`` (required then; see :func:`reference_stats`).
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array of rows x features, got shape {X.shape}")
    member = getattr(detector, "explanation_member", None)
    if callable(member):  # an ensemble explains through a member that reconstructs, if any
        detector = member()
    if detector is not None and uses_reconstruction(detector):
        deviation = X - _reconstruct(detector, X)
        method = "reconstruction"
    else:
        if reference is None:
            raise ValueError(
                "the z-score method needs the training rows' mean and standard deviation; "
                "pass reference=reference_stats(X_train)"
            )
        deviation = (X - reference.mean) / reference.std
        method = "zscore"
    squared = deviation**2
    total = squared.sum(axis=1, keepdims=True)
    share = np.divide(squared, total, out=np.zeros_like(squared), where=total > 0)
    return Contributions(share=share, deviation=deviation, method=method)


def top_features(
    contributions: Contributions, feature_names: Sequence[str], k: int = 3
) -> list[list[tuple[str, float, float]]]:
    """Return, per row, the k features with the largest share: (name, share, deviation)."""
    names = [str(n) for n in feature_names]
    share = contributions.share
    k = max(0, min(int(k), share.shape[1]))
    if k == 0:
        return [[] for _ in range(share.shape[0])]
    idx = np.argsort(-share, axis=1, kind="stable")[:, :k]
    return [
        [(names[j], float(share[i, j]), float(contributions.deviation[i, j])) for j in row]
        for i, row in enumerate(idx)
    ]


def describe_top(features: list[tuple[str, float, float]]) -> str:
    """Return a short text like "t045 high (31 %), colour is missing (22 %)" for one row.

    Features named "<column> is missing" (an empty cell, from the Preprocessor) read as
    "<column> is missing" when the deviation is positive and "<column> is not missing" when
    negative, rather than "high"/"low"; so do the "<column>=(missing)" names of runs saved
    before that name existed.
    """
    parts = []
    for name, share, deviation in features:
        if share <= 0:
            continue
        column = _missing_column(name)
        if column is not None:
            state = "is missing" if deviation > 0 else "is not missing"
            parts.append(f"{column} {state} ({share:.0%})")
            continue
        direction = "high" if deviation > 0 else "low"
        parts.append(f"{name} {direction} ({share:.0%})")
    return ", ".join(parts)


_MISSING_SUFFIXES = (" is missing", "=(missing)")


def _missing_column(name: str) -> str | None:
    """Return the column of a feature that says a cell is empty, or None for other features."""
    for suffix in _MISSING_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None
