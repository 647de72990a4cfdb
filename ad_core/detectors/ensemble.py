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
its own ``fit`` on the same rows, with the ensemble's seed. Its training scores
(``decision_scores_``; for kNN, rows are not their own neighbours) are the reference that puts
its scores on a common scale, by ``combination``:
- ``"rank"``: the share of training scores at or below the score (the member's empirical CDF),
  a number in [0, 1] that means the same for every member;
- ``"zscore"``: (score - mean) / standard deviation of the training scores (PyOD's
  ``standardizer``).
The ensemble's score is the weighted mean of its members' scaled scores. Because the scale is
fixed at fit from the training scores, a row scores the same alone or in any batch, before and
after a save (PyOD's rank averaging ranks within the scored batch instead).

The defaults (Deep SVDD and Isolation Forest, z-score averaging, equal weights) were chosen by a
leave-one-set-out protocol on the six ODDS sets (``python -m ad_core.bench unsup``;
``benchmarks/unsup.md`` holds the protocol, the picks of every fold and the figures), never on
all sets at once.

Latent space and explanations: the ensemble's latent codes are its autoencoder member's, or
Deep SVDD's when the autoencoder has weight 0 (the default); one of the two must have a
weight, so the app's latent map always has codes. :meth:`Ensemble.explanation_member`
returns the autoencoder member when there is one (its reconstruction error per feature);
otherwise the ensemble is explained like Deep SVDD and Isolation Forest are, by per-feature
z-scores against the training rows.

Members train in parallel threads when the cores allow: the budget is the torch thread count
of the calling process (the app sizes it per job, :func:`ad_core.nn.threads.job_threads`),
split between the members trained at once, never more threads than that in total. Seeds are
per member, and a small network trains on one thread either way, so the scores do not depend
on how many members ran at once; a large network (or kNN's search) training alone gets the
whole budget, and torch's sums may then differ in the last digits from a parallel fit.

Saved as a folder: ``config.json`` and ``arrays.npz`` of the ensemble (its training scores;
the scale references are the members' own training scores), plus each member saved by its
own ``save`` in ``members/<name>/``: no pickle anywhere.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

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
MEMBERS = ("autoencoder", "deep_svdd", "knn", "isolation_forest", "ecod")
#: members whose settings include epochs (Deep SVDD's also pretrain_epochs)
DEEP_MEMBERS = ("autoencoder", "deep_svdd")
#: members whose latent space the ensemble's is, in order of preference
LATENT_MEMBERS = ("autoencoder", "deep_svdd")
COMBINATIONS = ("rank", "zscore")
MEMBERS_DIR = "members"


def _weight_spec(member: str, title: str) -> ParamSpec:
    return ParamSpec(
        f"{member}_weight",
        "float",
        f"Weight of the {title} member in the average; 0 leaves it out.",
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


SCALES = {"rank": rank_scale, "zscore": zscore_scale}


def combine(
    references: list[np.ndarray],
    scores: list[np.ndarray],
    weights: list[float],
    combination: str,
) -> np.ndarray:
    """Return the weighted mean of each member's scores put on the scale of its references."""
    scale = SCALES[combination]
    total = sum(weights)
    out = np.zeros(len(scores[0]), dtype=np.float64)
    for ref, s, w in zip(references, scores, weights, strict=True):
        out += w * scale(ref, s)
    return out / total


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
                    "loss": event.get("loss", float("nan")),
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
            "Trains several different detectors on the same rows (by default Deep SVDD and "
            "Isolation Forest; the autoencoder, k nearest neighbours and ECOD can join) and "
            "averages their scores once each is put on a common scale. Assumes only what its "
            "members share: anomalies are few and differ from the bulk of the training rows; "
            "where one member's assumption fails on a data set another holds the ranking up, "
            "so it is a safe first run without labels, rarely the single best. Fails where "
            "every member fails (anomalies that look normal in every view) and when anomalies "
            "are a large share of the training rows. Cost: the sum of its members, by default "
            "about 1.7x an autoencoder (Deep SVDD's two training stages, then under a second "
            "for the forest); members train in parallel where cores are free. Latent map: "
            "Deep SVDD's (the autoencoder's when it is a member)."
        ),
        reference=(
            "Aggarwal & Sathe, SIGKDD Explorations 2015; Zhao et al., SUOD, MLSys 2021; "
            "members: see their own entries"
        ),
        params=(
            _weight_spec("autoencoder", "autoencoder"),
            _weight_spec("deep_svdd", "Deep SVDD"),
            _weight_spec("knn", "k nearest neighbours"),
            _weight_spec("isolation_forest", "Isolation Forest"),
            _weight_spec("ecod", "ECOD"),
            ParamSpec(
                "combination",
                "choice",
                "How member scores are put on one scale before averaging: rank (share of "
                "training scores below) or zscore (standardised by the training scores).",
                choices=COMBINATIONS,
            ),
            ParamSpec(
                "epochs",
                "int",
                "Passes over the training data of each deep member: Deep SVDD pretrains and "
                "trains this many epochs each (its own default: 150), the autoencoder trains "
                "this many.",
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
        deep_svdd_weight: float = 1.0,
        knn_weight: float = 0.0,
        isolation_forest_weight: float = 1.0,
        ecod_weight: float = 0.0,
        combination: str = "zscore",
        epochs: int = 150,
        n_jobs: int | None = None,
        contamination: float = 0.1,
        random_state: int | None = None,
        device: str = "auto",
    ) -> None:
        self.autoencoder_weight = autoencoder_weight
        self.deep_svdd_weight = deep_svdd_weight
        self.knn_weight = knn_weight
        self.isolation_forest_weight = isolation_forest_weight
        self.ecod_weight = ecod_weight
        self.combination = combination
        self.epochs = epochs
        self.n_jobs = n_jobs
        self.contamination = contamination
        self.random_state = random_state
        self.device = device

    # -- members ----------------------------------------------------------------------------
    def _chosen(self) -> tuple[list[str], list[float]]:
        """Return the members with a weight above 0 and their weights; ParameterError if none."""
        names = [m for m in MEMBERS if float(getattr(self, f"{m}_weight")) > 0]
        if not names:
            raise ParameterError(
                f"{self.info.title}: every member weight is 0; give at least one member "
                f"({', '.join(f'{m}_weight' for m in MEMBERS)}) a weight above 0."
            )
        if not any(m in LATENT_MEMBERS for m in names):
            raise ParameterError(
                f"{self.info.title}: give the autoencoder or Deep SVDD a weight above 0 "
                "(autoencoder_weight or deep_svdd_weight): the ensemble's latent map is theirs."
            )
        return names, [float(getattr(self, f"{m}_weight")) for m in names]

    def member_params(self, member: str) -> dict[str, Any]:
        """Return the settings the member ``member`` is made with."""
        params: dict[str, Any] = {"random_state": self.random_state}
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

        names, weights = self._chosen()
        unfitted = {m: make_detector(m, **self.member_params(m)) for m in names}
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

        n_workers, budget = self._workers(len(names))
        if n_workers == 1:
            fitted = []
            for m in names:
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
                futures = [pool.submit(train, m) for m in names]
            errors = [f.exception() for f in futures]
            # The error that stopped the others, not the FitCancelled it caused in them.
            first = next((e for e in errors if e and not isinstance(e, FitCancelled)), None)
            first = first or next((e for e in errors if e), None)
            if first is not None:
                raise first
            fitted = [f.result() for f in futures]
        self.members_ = names
        self.weights_ = weights
        self.estimators_ = dict(zip(names, fitted, strict=True))
        self.latent_member_ = next(m for m in LATENT_MEMBERS if m in self.estimators_)
        self._set_references()

    def _set_references(self) -> None:
        self.references_ = [
            np.sort(self.estimators_[m].decision_scores_).astype(np.float64) for m in self.members_
        ]

    # -- scores -----------------------------------------------------------------------------
    def member_scores(self, X: Any) -> dict[str, np.ndarray]:
        """Return each member's own scores of the rows of ``X`` (before any scaling)."""
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

        The autoencoder member when it has a weight (its reconstruction error per feature);
        otherwise the ensemble itself, explained like any detector without one (z-scores).
        """
        self._check_fitted()
        return self.estimators_.get("autoencoder", self)

    # -- persistence --------------------------------------------------------------------------
    def _save_weights(self, path: Path) -> None:
        for member in self.members_:
            self.estimators_[member].save(path / MEMBERS_DIR / member)

    def _restore(self, path: Path, arrays: dict[str, np.ndarray]) -> None:
        from ad_core.detectors import load_detector

        self.estimators_ = {}
        for member in self.members_:
            det = load_detector(path / MEMBERS_DIR / member)
            if det.info.name != member:
                raise ValueError(
                    f"{path / MEMBERS_DIR / member} holds a {det.info.name}, not the {member} "
                    "member this ensemble was saved with; the folder is damaged. Save it again."
                )
            self.estimators_[member] = det
        self._set_references()
