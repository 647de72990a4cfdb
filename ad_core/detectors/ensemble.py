"""An unsupervised ensemble: several diverse detectors, their scores made comparable and averaged.

References:
- Aggarwal & Sathe, "Theoretical Foundations and Algorithms for Outlier Ensembles", SIGKDD
  Explorations 2015, and their book "Outlier Ensembles" (Springer 2017): combining diverse
  detectors reduces the variance of an unsupervised choice; scores must first be put on one
  scale (ranks or standardised scores), then averaged.
- Zhao, Hu, Cheng, Chen, Chen, Shi, Wang & Akoglu, "SUOD: Accelerating Large-Scale
  Unsupervised Heterogeneous Outlier Detection", MLSys 2021: heterogeneous members trained
  side by side, their standardised scores combined.
- PyOD's combination functions (Zhao, Nasrullah & Li, JMLR 2019; ``pyod.models.combination``
  ``average`` over ``pyod.utils.utility.standardizer`` scores, and rank averaging).

Method. Each member with a weight above 0 is made by the registry and trained once through
its own ``fit`` on the same rows, with the ensemble's seed (the Isolation Forest member with
``forest_trees`` trees). Its training scores (``decision_scores_``; for kNN, rows are not
their own neighbours) are the reference that puts its scores on a common scale, by
``combination``:
- ``"rank"``: the share of training scores at or below the score (the member's empirical CDF),
  a number in [0, 1] that means the same for every member;
- ``"zscore"``: (score - mean) / standard deviation of the training scores (PyOD's
  ``standardizer``);
- ``"robust"``: (score - median) / interquartile range of the training scores (a robust
  z-score: a few huge training scores do not shrink everyone else's);
and the ensemble's score is the weighted mean of its members' scaled scores; or
- ``"max"``: the largest of the members' z-scores (PyOD's ``maximization``; Aggarwal & Sathe's
  maximum-of-averages with one member per group), where the weights only choose the members.
Because the scale is fixed at fit from the training scores, a row scores the same alone or in
any batch, before and after a save (PyOD's rank averaging ranks within the scored batch
instead).

The defaults (kNN, Isolation Forest with 500 trees at double weight, ECOD; z-score
averaging) were chosen by a leave-one-set-out protocol on the six ODDS sets only
(``python -m ad_core.bench unsup``; ``benchmarks/unsup.md`` holds exactly what was searched,
the picks of every fold and the figures), never on all sets at once; the pick criterion is
the issue's goals (best mean rank among the single detectors, never below their median).

Latent space and explanations: the latent codes are those of ``latent_member``; ``"auto"``
(the default) takes the first member with a weight among autoencoder, VAE, Deep SVDD and PCA,
and when none has one (as by default) trains a PCA on the same rows for the map only: weight
0 in the score, one SVD of cost, the same map as the PCA detector's. A deep member named
there with weight 0 is trained for the map alone, at its full cost.
:meth:`Ensemble.explanation_member` returns the autoencoder (else the VAE) member when it has
a weight (its reconstruction error per feature); otherwise the ensemble is explained like
Isolation Forest and kNN are, by per-feature z-scores against the training rows.

Members train in parallel threads when the cores allow: the budget is the torch thread count
of the calling process (the app sizes it per job, :func:`ad_core.nn.threads.job_threads`),
split between the members trained at once, never more threads than that in total. Seeds are
per member, and a small network trains on one thread either way, so the scores do not depend
on how many members ran at once; a large network (or kNN's search) training alone gets the
whole budget, and torch's sums may then differ in the last digits from a parallel fit.

Saved as a folder: ``config.json`` and ``arrays.npz`` of the ensemble (its training scores;
the scale references are the members' own training scores), plus each trained member (the
map's PCA too) saved by its own ``save`` in ``members/<name>/``: no pickle anywhere.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ad_core.data.errors import DataError
from ad_core.detectors.base import (
    CONTAMINATION_PARAM,
    SEED_PARAM,
    BaseDetector,
    DetectorInfo,
    ParameterError,
    ParamSpec,
)
from ad_core.nn.training import FitCancelled

#: the candidate members, in the order they are trained (most expensive first)
MEMBERS = (
    "autoencoder",
    "vae",
    "deep_svdd",
    "ocsvm",
    "knn",
    "isolation_forest",
    "ecod",
    "pca",
    "copod",  # last: added after the others, so the bench's candidate order stays
)
TITLES = {
    "autoencoder": "autoencoder",
    "vae": "VAE",
    "deep_svdd": "Deep SVDD",
    "ocsvm": "one-class SVM",
    "knn": "k nearest neighbours",
    "isolation_forest": "Isolation Forest",
    "ecod": "ECOD",
    "pca": "PCA",
    "copod": "COPOD",
}
#: members whose settings include epochs (Deep SVDD's also pretrain_epochs)
DEEP_MEMBERS = ("autoencoder", "vae", "deep_svdd")
#: members that have a latent space, in the order ``latent_member="auto"`` prefers them
LATENT_MEMBERS = ("autoencoder", "vae", "deep_svdd", "pca")
#: members whose score is a reconstruction error, which explains a row feature by feature
RECONSTRUCTION_MEMBERS = ("autoencoder", "vae")
COMBINATIONS = ("rank", "zscore", "robust", "max")
MEMBERS_DIR = "members"


def _weight_spec(member: str) -> ParamSpec:
    return ParamSpec(
        f"{member}_weight",
        "float",
        f"Weight of the {TITLES[member]} member in the average; 0 leaves it out.",
        low=0.0,
        high=10.0,
    )


def rank_scale(reference: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Return the share of ``reference`` scores at or below each score (an empirical CDF)."""
    ordered = np.sort(np.asarray(reference, dtype=np.float64))
    return np.searchsorted(ordered, scores, side="right") / ordered.size


def zscore_scale(reference: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Return (score - mean) / std of the ``reference`` scores (std 0 counts as 1)."""
    reference = np.asarray(reference, dtype=np.float64)
    std = reference.std()
    return (np.asarray(scores, dtype=np.float64) - reference.mean()) / (std if std > 0 else 1.0)


def robust_scale(reference: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Return (score - median) / interquartile range of the ``reference`` scores.

    An IQR of 0 (more than half the training scores equal) falls back to the standard
    deviation, and a standard deviation of 0 to 1.
    """
    reference = np.asarray(reference, dtype=np.float64)
    q1, median, q3 = np.percentile(reference, [25, 50, 75])
    spread = q3 - q1
    if not spread > 0:
        spread = reference.std()
    return (np.asarray(scores, dtype=np.float64) - median) / (spread if spread > 0 else 1.0)


SCALES = {"rank": rank_scale, "zscore": zscore_scale, "robust": robust_scale, "max": zscore_scale}


def combine(
    references: list[np.ndarray],
    scores: list[np.ndarray],
    weights: list[float],
    combination: str,
) -> np.ndarray:
    """Return the members' scores, each put on the scale of its references, combined.

    ``rank``, ``zscore``, ``robust``: the weighted mean of the scaled scores; ``max``: the
    largest z-score of the members with a weight above 0 (PyOD's ``maximization``; the weights
    only choose the members).
    """
    scale = SCALES[combination]
    scaled = [
        scale(ref, s) if w > 0 else None
        for ref, s, w in zip(references, scores, weights, strict=True)
    ]
    return combine_scaled(scaled, weights, combination)


def combine_scaled(
    scaled: list[np.ndarray | None], weights: list[float], combination: str
) -> np.ndarray:
    """Return the combination of scores already put on the scale of ``SCALES[combination]``.

    Members with weight 0 (their entry may be None) take no part.
    """
    used = [(w, z) for w, z in zip(weights, scaled, strict=True) if w > 0]
    if combination == "max":
        return np.max([z for _, z in used], axis=0)
    out = np.zeros(len(used[0][1]), dtype=np.float64)
    for w, z in used:
        out += w * z
    return out / sum(w for w, _ in used)


class _Progress:
    """Merges the members' progress events into one stream; one cancel stops them all."""

    def __init__(self, callback: Callable | None, units: dict[str, int]) -> None:
        self.callback = callback
        self.units = units
        self.done = dict.fromkeys(units, 0)
        self.lock = threading.Lock()
        self.stopped = False

    def stop(self) -> None:
        with self.lock:
            self.stopped = True

    def member_callback(self, member: str) -> Callable[[dict], bool]:
        def report(event: dict) -> bool:
            with self.lock:
                if self.stopped:
                    return False
                self.done[member] = min(self.units[member], self.done[member] + 1)
                if self.callback is None:
                    return True
                merged = {
                    "stage": "train",
                    "member": member,
                    "member_stage": event.get("stage", "train"),
                    "epoch": sum(self.done.values()),
                    "n_epochs": sum(self.units.values()),
                    # One loss line over members of different kinds means nothing: the
                    # member's own loss travels beside it, the ensemble's is undefined.
                    "loss": float("nan"),
                    "member_loss": event.get("loss", float("nan")),
                }
                if self.callback(merged) is False:
                    self.stopped = True
                    return False
                return True

        return report


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch and BLAS/OpenMP threads; put the count back after."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    if n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        with threadpool_limits(n):
            yield
    finally:
        torch.set_num_threads(before)


def _step_flops(member: BaseDetector, n_features: int) -> float | None:
    """Return the multiply-adds of one training step of a deep member (None: not deep)."""
    if not hasattr(member, "_architecture"):
        return None
    hidden, rep = member._architecture(n_features)
    dims = [n_features, *hidden, rep]
    weights = 2 * sum(a * b for a, b in zip(dims[:-1], dims[1:], strict=True))  # enc + dec
    return 3.0 * weights * float(member.batch_size)  # forward and backward


class Ensemble(BaseDetector):
    info = DetectorInfo(
        name="ensemble",
        title="Ensemble (unsupervised default)",
        family="ensemble",
        uses_labels="no",
        has_latent=True,
        description=(
            "Trains several different detectors on the same rows (by default k nearest "
            "neighbours, a 500-tree Isolation Forest counted twice and ECOD; the autoencoder, "
            "VAE, Deep SVDD, one-class SVM, PCA and COPOD can join) and averages their scores "
            "once "
            "each is put on a common scale. Assumes only what its members share: anomalies are "
            "few and differ from the bulk of the training rows, as isolated points, as far "
            "from their neighbours, or as extreme values of single features; where one "
            "member's assumption fails another holds the ranking up, so it is a safe first run "
            "without labels, rarely the single best. Fails where every member fails "
            "(anomalies that look normal in every view, such as a heartbeat of ordinary values "
            "in an odd shape) and when anomalies are a large share of the training rows. "
            "Cost: the sum of its members, by default seconds (about a fifth of an "
            "autoencoder's time on our benchmark sets); members train in parallel where cores "
            "are free. Latent map: a PCA of the "
            "rows trained for the map (the autoencoder's, VAE's or Deep SVDD's when one is a "
            "member); top features: per-feature z-scores (the autoencoder's or VAE's "
            "reconstruction error when one is a member)."
        ),
        reference=(
            "Aggarwal & Sathe, SIGKDD Explorations 2015; Zhao et al., SUOD, MLSys 2021; "
            "members: see their own entries"
        ),
        params=(
            *(_weight_spec(m) for m in MEMBERS),
            ParamSpec(
                "combination",
                "choice",
                "How member scores are made comparable and combined: rank (share of training "
                "scores below), zscore (standardised by the mean and spread of the training "
                "scores), robust (by their median and interquartile range), each then "
                "averaged with the weights; max (the largest z-score of the members).",
                choices=COMBINATIONS,
            ),
            ParamSpec(
                "latent_member",
                "choice",
                "Whose latent space the map shows: auto = the first member with a weight among "
                "autoencoder, VAE, Deep SVDD, PCA, else a PCA trained for the map only (it "
                "costs one SVD and does not score). A member named here with weight 0 is "
                "trained for the map alone, at its full cost.",
                choices=("auto", *LATENT_MEMBERS),
            ),
            ParamSpec(
                "forest_trees",
                "int",
                "Trees of the Isolation Forest member (the detector's own default: 100); more "
                "trees, steadier scores, a little more time.",
                low=10,
                high=2000,
                log=True,
            ),
            ParamSpec(
                "epochs",
                "int",
                "Passes over the training data of each deep member: the autoencoder and the "
                "VAE train this many (their own default: 100), Deep SVDD pretrains and trains "
                "this many each (its own default: 150 each).",
                low=1,
                high=1000,
            ),
            ParamSpec(
                "n_jobs",
                "int",
                "Members trained at once. Empty = as many as the cores this training may use.",
                low=1,
                high=64,
            ),
            CONTAMINATION_PARAM,
            SEED_PARAM,
        ),
    )
    _json_state = (*BaseDetector._json_state, "members_", "weights_", "latent_member_")

    def __init__(
        self,
        *,
        autoencoder_weight: float = 0.0,
        vae_weight: float = 0.0,
        deep_svdd_weight: float = 0.0,
        ocsvm_weight: float = 0.0,
        knn_weight: float = 1.0,
        isolation_forest_weight: float = 2.0,
        ecod_weight: float = 1.0,
        pca_weight: float = 0.0,
        copod_weight: float = 0.0,
        combination: str = "zscore",
        latent_member: str = "auto",
        forest_trees: int = 500,
        epochs: int = 100,
        n_jobs: int | None = None,
        contamination: float = 0.1,
        random_state: int | None = None,
        device: str = "auto",
    ) -> None:
        self.autoencoder_weight = autoencoder_weight
        self.vae_weight = vae_weight
        self.deep_svdd_weight = deep_svdd_weight
        self.ocsvm_weight = ocsvm_weight
        self.knn_weight = knn_weight
        self.isolation_forest_weight = isolation_forest_weight
        self.ecod_weight = ecod_weight
        self.pca_weight = pca_weight
        self.copod_weight = copod_weight
        self.combination = combination
        self.latent_member = latent_member
        self.forest_trees = forest_trees
        self.epochs = epochs
        self.n_jobs = n_jobs
        self.contamination = contamination
        self.random_state = random_state
        self.device = device

    # -- members ----------------------------------------------------------------------------
    def _chosen(self) -> tuple[list[str], list[float], str]:
        """Return the scoring members, their weights and the latent member.

        Raises ParameterError when every weight is 0.
        """
        names = [m for m in MEMBERS if float(getattr(self, f"{m}_weight")) > 0]
        if not names:
            raise ParameterError(
                f"{self.info.title}: every member weight is 0; give at least one member "
                f"({', '.join(f'{m}_weight' for m in MEMBERS)}) a weight above 0."
            )
        latent = self.latent_member
        if latent == "auto":
            latent = next((m for m in LATENT_MEMBERS if m in names), "pca")
        return names, [float(getattr(self, f"{m}_weight")) for m in names], latent

    def member_params(self, member: str) -> dict[str, Any]:
        """Return the settings the member ``member`` is made with."""
        params: dict[str, Any] = {"random_state": self.random_state}
        if member == "isolation_forest":
            params["n_estimators"] = int(self.forest_trees)
        if member in DEEP_MEMBERS:
            params["device"] = self.device
            params["epochs"] = int(self.epochs)
            if member == "deep_svdd":
                params["pretrain_epochs"] = int(self.epochs)
        return params

    def _workers(self, n_members: int) -> tuple[int, int]:
        """Return (members trained at once, thread budget)."""
        import torch

        from ad_core.nn.threads import usable_cores

        budget = max(1, min(torch.get_num_threads(), usable_cores()))
        wanted = budget if self.n_jobs is None else int(self.n_jobs)
        return max(1, min(n_members, wanted, budget)), budget

    def _fit(self, X: np.ndarray, y, callback: Callable | None) -> None:
        from ad_core.detectors import make_detector
        from ad_core.nn.threads import job_threads

        names, weights, latent = self._chosen()
        trained = [m for m in MEMBERS if m in names or m == latent]
        unfitted = {m: make_detector(m, **self.member_params(m)) for m in trained}
        k = int(getattr(unfitted.get("knn"), "n_neighbors", 0))
        if k and len(X) <= k:  # said before any member trains, in the ensemble's words
            raise DataError(
                f"The ensemble's nearest-neighbour member compares each row with its {k} "
                f"nearest training rows, so the ensemble needs at least {k + 1} training rows; "
                f"there are {len(X)}. Load more rows, or give the kNN member weight 0."
            )
        # Deep members report once per epoch (Deep SVDD also per pretraining epoch), the
        # others once.
        units = {
            m: int(getattr(d, "epochs", 1)) + int(getattr(d, "pretrain_epochs", 0))
            for m, d in unfitted.items()
        }
        progress = _Progress(callback, units)

        def train(member: str) -> BaseDetector:
            if progress.stopped:  # a member queued behind one that failed or was cancelled
                raise FitCancelled(f"Training was cancelled before the {member} member.")
            try:
                # Each member takes the rows in its own dtype (deep members: float32).
                return unfitted[member].fit(X, callback=progress.member_callback(member))
            except BaseException:
                progress.stop()  # the others stop at their next epoch
                raise

        n_workers, budget = self._workers(len(trained))
        if n_workers == 1:
            fitted = []
            for m in trained:
                # A small network gets one thread either way, so its weights do not depend on
                # n_jobs; a large one (and kNN's search) the whole budget.
                flops = _step_flops(unfitted[m], X.shape[1])
                with _threads(job_threads(1, step_flops=flops, cores=budget)):
                    fitted.append(train(m))
        else:
            with (
                _threads(job_threads(n_workers, cores=budget)),
                ThreadPoolExecutor(max_workers=n_workers) as pool,
            ):
                futures = [pool.submit(train, m) for m in trained]
            errors = [f.exception() for f in futures]
            # The error that stopped the others, not the FitCancelled it caused in them.
            first = next((e for e in errors if e and not isinstance(e, FitCancelled)), None)
            first = first or next((e for e in errors if e), None)
            if first is not None:
                raise first
            fitted = [f.result() for f in futures]
        self.members_ = names
        self.weights_ = weights
        self.estimators_ = dict(zip(trained, fitted, strict=True))
        self.latent_member_ = latent
        self._set_references()

    def _set_references(self) -> None:
        self.references_ = [
            np.sort(self.estimators_[m].decision_scores_).astype(np.float64) for m in self.members_
        ]

    # -- scores -----------------------------------------------------------------------------
    def member_scores(self, X: Any) -> dict[str, np.ndarray]:
        """Return each scoring member's own scores of the rows of ``X`` (before any scaling)."""
        self._check_fitted()
        return {m: self.estimators_[m].decision_function(X) for m in self.members_}

    def _score(self, X: np.ndarray) -> np.ndarray:
        scores = self.member_scores(X)
        return combine(
            self.references_, [scores[m] for m in self.members_], self.weights_, self.combination
        )

    def _training_scores(self, X: np.ndarray) -> np.ndarray:
        own = [self.estimators_[m].decision_scores_ for m in self.members_]
        return combine(self.references_, own, self.weights_, self.combination)

    # -- latent space and explanations ------------------------------------------------------
    def _transform(self, X: np.ndarray) -> np.ndarray:
        return self.estimators_[self.latent_member_].transform(X)

    def explanation_member(self) -> BaseDetector:
        """Return the member whose per-feature explanations stand for the ensemble's.

        The autoencoder member, else the VAE member, when it has a weight (its reconstruction
        error per feature); otherwise the ensemble itself, explained like any detector
        without one (per-feature z-scores against the training rows).
        """
        self._check_fitted()
        member = next((m for m in RECONSTRUCTION_MEMBERS if m in self.members_), None)
        return self if member is None else self.estimators_[member]

    # -- persistence --------------------------------------------------------------------------
    def _trained(self) -> list[str]:
        return [m for m in MEMBERS if m in self.members_ or m == self.latent_member_]

    def _save_weights(self, path: Path) -> None:
        for member in self._trained():
            self.estimators_[member].save(path / MEMBERS_DIR / member)

    def _restore(self, path: Path, arrays: dict[str, np.ndarray]) -> None:
        from ad_core.detectors import load_detector

        self.estimators_ = {}
        for member in self._trained():
            det = load_detector(path / MEMBERS_DIR / member)
            if det.info.name != member:
                raise ValueError(
                    f"{path / MEMBERS_DIR / member} holds a {det.info.name}, not the {member} "
                    "member this ensemble was saved with; the folder is damaged. Save it again."
                )
            self.estimators_[member] = det
        self._set_references()
