"""Choosing a detector (or an augmentation) on the expert's labels, with honest uncertainty.

Self-supervised detectors work only when their augmentation matches how the anomalies arise
(Yoo et al., TMLR 2023), and label-free ways of choosing it are close to random (Ma, Zhao,
Zhang & Akoglu 2023). Once an expert has labelled some anomalies and some normal rows, the
labels can choose. This module ranks candidates on the labelled rows and says how far the
ranking can be trusted:

    from ad_core import selection
    cands = selection.augmentation_candidates(n_features=X.shape[1], base_params={"random_state": 0})
    trained = selection.train_candidates(cands, X, progress=print)        # scores per candidate
    ranking = selection.rank_candidates(trained.scores, labels)            # labels: 1 / 0 / -1
    ranking.leader, ranking.statement, ranking.to_frame()

Labels use the app's convention (:mod:`ad_core.store`, :mod:`ad_core.runs`): 1 anomaly,
0 normal, -1 unlabelled. Only labelled rows count; the ranking states how many it rests on.

Uncertainty. Each candidate's AUROC and AUPRC get percentile intervals from a *stratified*
bootstrap over the labelled rows: each of ``n_boot`` resamples draws the labelled anomalies and
the labelled normals with replacement (every resample has both classes, as the pROC package
does for AUROC intervals). They describe; they do not decide.

Whether the labels tell a candidate from the leader is decided by DeLong, DeLong &
Clarke-Pearson's (Biometrics 1988) paired comparison of AUROCs on the same rows: the gap's
variance from each labelled row's placement values (computed from mid-ranks, Sun & Xu 2014,
ties counting one half), a Student-t interval with one degree of freedom fewer than the
smaller class (with few labelled anomalies the normal approximation claims too much), and
the confidence widened Bonferroni-style for every pair of candidates (the leader is picked
from the same labels, so "the leader beats this one" is one of all the pairwise claims, and
every comparison is one more chance to claim a difference that is not there). Below
``MIN_TO_TELL`` labelled rows of either class no gap is called at all: the statement asks for
more labels. Why not the bootstrap of the
gap, as before: with a handful of labelled anomalies the resamples are too few distinct
draws and the intervals far too narrow; of two equally good candidates, one anomaly and 50
normals labelled, it called a winner in 61 % of simulated label sets (2: 29 %, 5: 15 %, 10:
11 %, 20: 6 %; 5 % was the aim). This rule's rates are in tests/unit/test_selection.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ad_core.nn.training import FitCancelled

__all__ = [
    "BASELINE",
    "Candidate",
    "CandidateResult",
    "Ranking",
    "SelectionError",
    "TrainedCandidates",
    "augmentation_candidates",
    "rank_candidates",
    "train_candidates",
]

#: the no-augmentation baseline that stands beside every comparison
BASELINE = "autoencoder"
DEFAULT_BOOT = 1000
DEFAULT_CONFIDENCE = 0.95
#: below this many anomaly x normal pairs, bootstrap AUROCs compare pairs instead of ranking
PAIRWISE_LIMIT = 20_000
#: fewer labelled anomalies (or normals) than this, and no two candidates are told apart
MIN_TO_TELL = 5


class SelectionError(ValueError):
    """The labels or scores cannot support a ranking; the message says what to do."""


# -- ranking -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CandidateResult:
    """One candidate's figures on the labelled rows (intervals at the ranking's confidence)."""

    name: str
    rank: int  # 1 = the leader
    auroc: float
    auroc_low: float
    auroc_high: float
    auprc: float
    auprc_low: float
    auprc_high: float
    #: the leader's AUROC minus this one's, and DeLong's paired interval of that difference
    #: (Student-t, widened for all pairs of candidates; NaN below MIN_TO_TELL labels)
    gap: float
    gap_low: float
    gap_high: float
    #: the interval of the gap excludes 0: the labels tell this candidate from the leader
    distinguishable: bool


@dataclass(frozen=True)
class Ranking:
    """Candidates ranked by AUROC on the labelled rows, with what the labels can tell."""

    results: tuple[CandidateResult, ...]
    n_labelled: int
    n_anomalies: int
    n_normals: int
    n_boot: int
    confidence: float

    @property
    def enough_labels(self) -> bool:
        """Return True when both classes have ``MIN_TO_TELL`` labels: below, no interval or
        gap is trusted (a handful of labels resamples to a handful of sets)."""
        return min(self.n_anomalies, self.n_normals) >= MIN_TO_TELL

    @property
    def leader(self) -> str:
        """Return the name of the candidate with the highest AUROC on the labelled rows."""
        return self.results[0].name

    @property
    def too_close_to_call(self) -> list[str]:
        """Return the candidates the labels cannot tell from the leader (leader excluded)."""
        return [r.name for r in self.results[1:] if not r.distinguishable]

    def result(self, name: str) -> CandidateResult:
        """Return the figures of candidate ``name``."""
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(f"No candidate {name!r} in this ranking.")

    @property
    def statement(self) -> str:
        """Return what the ranking says, in plain sentences, with how many labels it rests on."""
        pct = f"{self.confidence:.0%}"
        lead = self.results[0]
        few = not self.enough_labels
        text = [
            f"Ranked on {self.n_labelled} labelled rows ({self.n_anomalies} anomalies, "
            f"{self.n_normals} normal); no other row counts.",
            f"Leader: {lead.name}, AUROC {lead.auroc:.3f}"
            + ("." if few else f" ({pct} interval {lead.auroc_low:.3f} to {lead.auroc_high:.3f})."),
        ]
        if len(self.results) == 1:
            return " ".join(text)
        close = [r for r in self.results[1:] if not r.distinguishable]
        if few:
            text.append(
                f"Too few labels to tell any two candidates apart: label at least "
                f"{MIN_TO_TELL} anomalies and {MIN_TO_TELL} normal rows (better 20 or more "
                "anomalies) before trusting this order."
            )
        elif not close:
            text.append(
                "The labels are enough to tell the leader from every other candidate "
                f"(each AUROC gap's {pct} interval, widened for all "
                f"{len(self.results) * (len(self.results) - 1) // 2} pairwise comparisons, "
                "excludes 0)."
            )
        else:
            names = ", ".join(
                f"{r.name} (gap {r.gap:.3f}, interval {r.gap_low:.3f} to {r.gap_high:.3f})"
                for r in close
            )
            text.append(
                f"The labels are too few to tell the leader from {names}: label more rows "
                "before trusting the order of these."
            )
        return " ".join(text)

    def to_frame(self):
        """Return the ranking as a pandas DataFrame, one row per candidate, leader first."""
        import pandas as pd

        return pd.DataFrame([r.__dict__ for r in self.results])


def _labelled_rows(labels: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (indices of labelled anomalies, of labelled normals); SelectionError if either
    is missing."""
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != n:
        raise SelectionError(
            f"Labels must be one value per row ({n} rows, as the scores), got shape {y.shape}."
        )
    if y.dtype.kind not in "biuf":
        raise SelectionError("Labels must be 1 (anomaly), 0 (normal) or -1 (unlabelled).")
    if y.dtype.kind == "f":
        y = np.where(np.isnan(y), -1, y)
    if not np.isin(y, (-1, 0, 1)).all():
        bad = sorted(set(np.unique(y).tolist()) - {-1, 0, 1})[:5]
        raise SelectionError(
            f"Labels must be 1 (anomaly), 0 (normal) or -1 (unlabelled); found {bad}."
        )
    anomalies, normals = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    if anomalies.size == 0:
        raise SelectionError(
            "No row is labelled as an anomaly yet, so the candidates cannot be compared: "
            "label at least one anomaly (better five or more) and try again."
        )
    if normals.size == 0:
        raise SelectionError(
            "No row is labelled as normal yet, so the candidates cannot be compared: label "
            "at least one normal row (better a few times as many as the anomalies)."
        )
    return anomalies, normals


def _check_score_table(scores: Mapping[str, Any]) -> tuple[list[str], np.ndarray]:
    if not scores:
        raise SelectionError("There is no candidate to rank; train at least one first.")
    names = list(scores)
    rows = []
    for name in names:
        s = np.asarray(scores[name], dtype=np.float64)
        if s.ndim != 1:
            raise SelectionError(f"The scores of {name!r} must be one number per row.")
        if rows and s.shape != rows[0].shape:
            raise SelectionError(
                f"The scores of {name!r} cover {s.shape[0]} rows but those of {names[0]!r} "
                f"cover {rows[0].shape[0]}; every candidate must score the same rows."
            )
        if not np.isfinite(s).all():
            raise SelectionError(f"The scores of {name!r} contain missing or infinite values.")
        rows.append(s)
    return names, np.vstack(rows)


def _delong_gap_se(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, int]:
    """Return (standard errors of every pairwise AUROC difference, degrees of freedom).

    ``pos``: (candidates, m) scores of the labelled anomalies, ``neg``: (candidates, n) of the
    normals. DeLong et al.'s placement values from mid-ranks (Sun & Xu 2014): V10 (one per
    anomaly: the share of normals it outranks) and V01 (one per normal: the share of
    anomalies that outrank it), ties one half; Var(A_a - A_b) = Var(V10_a - V10_b) / m +
    Var(V01_a - V01_b) / n. The degrees of freedom, min(m, n) - 1, are 0 with one row of a
    class (no interval then).
    """
    from scipy.stats import rankdata

    m, n = pos.shape[1], neg.shape[1]
    both = rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    v10 = (both[:, :m] - rankdata(pos, axis=1)) / n
    v01 = 1.0 - (both[:, m:] - rankdata(neg, axis=1)) / m
    df = min(m, n) - 1
    if df < 1:
        return np.full((pos.shape[0],) * 2, np.nan), df
    s10, s01 = np.atleast_2d(np.cov(v10)), np.atleast_2d(np.cov(v01))
    var_a = np.diag(s10) / m + np.diag(s01) / n
    cov_ab = s10 / m + s01 / n
    var = np.maximum(var_a[:, None] + var_a[None, :] - 2.0 * cov_ab, 0.0)
    return np.sqrt(var), df


def bootstrap_auroc(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Return AUROC per resample from scores (..., n_pos) and (..., n_neg) (ties count 1/2).

    Computed from ranks (the Mann-Whitney statistic), vectorised over the leading axes; by
    comparing every pair when the pairs are few (an expert's labels), which is faster.
    """
    n_pos, n_neg = pos.shape[-1], neg.shape[-1]
    if n_pos * n_neg <= PAIRWISE_LIMIT:
        diff = pos[..., :, None] - neg[..., None, :]
        return ((diff > 0).sum(axis=(-2, -1)) + 0.5 * (diff == 0).sum(axis=(-2, -1))) / (
            n_pos * n_neg
        )
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([pos, neg], axis=-1), axis=-1)
    u = ranks[..., :n_pos].sum(axis=-1) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def bootstrap_auprc(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Return average precision per resample from scores (..., n_pos) and (..., n_neg).

    The step-wise average precision scikit-learn computes (tied scores share a threshold),
    vectorised over the leading axes.
    """
    n_pos = pos.shape[-1]
    scores = np.concatenate([pos, neg], axis=-1)
    is_pos = np.zeros(scores.shape, dtype=bool)
    is_pos[..., :n_pos] = True
    order = np.argsort(-scores, axis=-1, kind="stable")
    s_sorted = np.take_along_axis(scores, order, axis=-1)
    y_sorted = np.take_along_axis(is_pos, order, axis=-1)
    n = scores.shape[-1]
    hits = np.cumsum(y_sorted, axis=-1)
    # Every row of a tie group is flagged at the group's last position's threshold.
    last = np.ones(scores.shape, dtype=bool)
    last[..., :-1] = s_sorted[..., 1:] != s_sorted[..., :-1]
    end = np.where(last, np.arange(n), n - 1)
    end = np.flip(np.minimum.accumulate(np.flip(end, axis=-1), axis=-1), axis=-1)
    precision_at_end = np.take_along_axis(hits, end, axis=-1) / (end + 1.0)
    return (precision_at_end * y_sorted).sum(axis=-1) / n_pos


def rank_candidates(
    scores: Mapping[str, Any],
    labels: Any,
    *,
    n_boot: int = DEFAULT_BOOT,
    confidence: float = DEFAULT_CONFIDENCE,
    random_state: int | None = 0,
) -> Ranking:
    """Return the candidates ranked by AUROC on the labelled rows, with bootstrap intervals.

    ``scores``: candidate name -> one score per row (higher = more anomalous), all over the
    same rows. ``labels``: one per row, 1 anomaly / 0 normal / -1 unlabelled (NaN counts as
    unlabelled). Ties in AUROC are broken by AUPRC, then by the order of ``scores``.
    Raises SelectionError when no row is labelled anomalous or none normal, or the scores
    are not one finite number per row for every candidate.
    """
    if not 0.5 <= confidence < 1.0:
        raise ValueError(f"confidence must be at least 0.5 and below 1, got {confidence!r}.")
    if int(n_boot) < 10:
        raise ValueError(f"n_boot must be at least 10, got {n_boot!r}.")
    names, table = _check_score_table(scores)
    anomalies, normals = _labelled_rows(labels, table.shape[1])
    # The same functions as the resamples (equal to ad_core.metrics' auroc and auprc).
    point_roc = bootstrap_auroc(table[:, anomalies], table[:, normals])
    point_pr = bootstrap_auprc(table[:, anomalies], table[:, normals])

    gap_se, df = _delong_gap_se(table[:, anomalies], table[:, normals])
    rng = np.random.default_rng(random_state)
    pick_a = rng.integers(0, anomalies.size, size=(int(n_boot), anomalies.size))
    pick_n = rng.integers(0, normals.size, size=(int(n_boot), normals.size))
    # One candidate at a time (the same resamples for all: paired), so memory stays at
    # n_boot x labelled rows whatever the number of candidates.
    boot_roc = np.empty((len(names), int(n_boot)))
    boot_pr = np.empty((len(names), int(n_boot)))
    for i, s in enumerate(table):
        pos, neg = s[anomalies][pick_a], s[normals][pick_n]  # (n_boot, n_anomalies / n_normals)
        boot_roc[i] = bootstrap_auroc(pos, neg)
        boot_pr[i] = bootstrap_auprc(pos, neg)

    order = sorted(range(len(names)), key=lambda i: (-point_roc[i], -point_pr[i], i))
    lead = order[0]
    tail = (1.0 - confidence) / 2.0
    q = [tail, 1.0 - tail]
    # Bonferroni over every pair of candidates: the leader is picked from the same labels, so
    # "the leader beats i" is one of all the pairwise claims, whose error this bounds.
    from scipy.stats import t as student_t

    pairs = max(len(names) * (len(names) - 1) // 2, 1)
    t_crit = student_t.ppf(1.0 - tail / pairs, df) if df >= 1 else np.nan
    enough = min(anomalies.size, normals.size) >= MIN_TO_TELL
    results = []
    for rank, i in enumerate(order, start=1):
        roc_lo, roc_hi = np.quantile(boot_roc[i], q)
        pr_lo, pr_hi = np.quantile(boot_pr[i], q)
        gap = float(point_roc[lead] - point_roc[i])
        if i == lead:
            gap_lo = gap_hi = 0.0
        elif enough:
            half = float(t_crit * gap_se[lead, i])
            gap_lo, gap_hi = gap - half, gap + half
        else:
            gap_lo = gap_hi = float("nan")
        results.append(
            CandidateResult(
                name=names[i],
                rank=rank,
                auroc=float(point_roc[i]),
                auroc_low=float(roc_lo),
                auroc_high=float(roc_hi),
                auprc=float(point_pr[i]),
                auprc_low=float(pr_lo),
                auprc_high=float(pr_hi),
                gap=gap,
                gap_low=float(gap_lo),
                gap_high=float(gap_hi),
                distinguishable=bool(i != lead and enough and gap_lo > 0.0),
            )
        )
    return Ranking(
        results=tuple(results),
        n_labelled=int(anomalies.size + normals.size),
        n_anomalies=int(anomalies.size),
        n_normals=int(normals.size),
        n_boot=int(n_boot),
        confidence=float(confidence),
    )


# -- candidates --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    """A detector with settings to train: ``make_detector(detector, **params)``."""

    name: str  # unique key, e.g. "ssl_classifier noise-0.5" or "autoencoder"
    detector: str
    params: dict[str, Any] = field(default_factory=dict)
    #: the augmentation with its strength ("noise-0.5"), or None for other detectors
    augmentation: str | None = None

    def make(self):
        """Return the unfitted detector."""
        from ad_core.detectors import make_detector

        return make_detector(self.detector, **self.params)


def augmentation_candidates(
    detector: str = "ssl_classifier",
    *,
    n_features: int | None = None,
    image_shape: Any = None,
    base_params: Mapping[str, Any] | None = None,
    extra_detectors: Sequence[str] = (),
    baseline: str | None = BASELINE,
) -> list[Candidate]:
    """Return one candidate per augmentation of the registry, the baseline and the extras.

    Each augmentation runs at its default strength in ``detector`` (which must have an
    ``augmentation`` setting). Image augmentations are included when ``image_shape`` is
    declared ("28x28", "28,28" or (28, 28); a malformed one, or one whose pixels do not
    number ``n_features``, raises DataError), or, with no shape, when ``n_features`` is a
    square number (or None). ``base_params`` (e.g. ``random_state``, ``epochs``) go to every candidate whose
    detector takes them. ``baseline``: the plain autoencoder by default (None leaves it
    out); ``extra_detectors``: further registry names, with their default settings.
    """
    from ad_core import augment
    from ad_core.data.errors import DataError
    from ad_core.detectors import get_detector_info

    info = get_detector_info(detector)
    if not any(p.name == "augmentation" for p in info.params):
        raise ValueError(
            f"{info.title} has no augmentation setting; pick a detector that has one "
            "(ssl_classifier)."
        )
    base = dict(base_params or {})

    def settings(name: str) -> dict[str, Any]:
        takes = {p.name for p in get_detector_info(name).params}
        return {k: v for k, v in base.items() if k in takes}

    images = True
    declared = image_shape not in (None, "", (), [])
    if declared:
        shape = augment._parse_shape(image_shape)  # a malformed shape: DataError, said in words
        if n_features is not None:
            augment.resolve_image_shape(shape, int(n_features))  # one that does not fit, too
    elif n_features is not None:
        try:
            augment.resolve_image_shape(None, int(n_features))
        except DataError:
            images = False  # not square: the rows are no images unless a shape is declared
    out: list[Candidate] = []
    for entry in augment.AUGMENTATIONS.values():
        if entry.kind == "image" and not images:
            continue
        params = {**settings(detector), "augmentation": entry.name, "strength": None}
        if entry.kind == "image" and declared:
            params["image_shape"] = shape
        label = augment.format_augmentation(entry.name)
        out.append(Candidate(f"{detector} {label}", detector, params, augmentation=label))
    for name in ([baseline] if baseline else []) + [d for d in extra_detectors if d != baseline]:
        get_detector_info(name)  # an unknown name fails here, not after the others trained
        if any(c.name == name for c in out):
            continue
        out.append(Candidate(name, name, settings(name)))
    return out


@dataclass
class TrainedCandidates:
    """What :func:`train_candidates` produced: scores per candidate, failures, fit times."""

    scores: dict[str, np.ndarray] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    detectors: dict[str, Any] = field(default_factory=dict)


def train_candidates(
    candidates: Sequence[Candidate],
    X: Any = None,
    *,
    fit: Callable[[Candidate, Callable], np.ndarray] | None = None,
    progress: Callable[[dict[str, Any]], Any] | None = None,
    keep_detectors: bool = False,
) -> TrainedCandidates:
    """Train every candidate and return their scores (one per row), in candidate order.

    By default a candidate is ``candidate.make().fit(X)`` scored on ``X`` (labels are not
    passed: the labels judge the candidates and must not train them). ``fit(candidate,
    callback)`` replaces that, e.g. to train through :func:`ad_core.runs.train_run` so each
    candidate is a saved run; it returns the scores. ``progress`` receives
    ``{"candidate", "index", "n_candidates", "stage", "epoch", "n_epochs", "loss"}`` during
    each fit and ``{"candidate", "index", "n_candidates", "stage": "done" or "failed"}``
    after it; returning False cancels everything (raises FitCancelled). A candidate that
    fails with a ValueError (a setting or data it cannot handle) is recorded in ``errors``
    with its message and the others go on.
    """
    if fit is None and X is None:
        raise ValueError("Give the rows X to train on, or a fit(candidate, callback) function.")
    out = TrainedCandidates()
    n = len(candidates)
    names = [c.name for c in candidates]
    if len(set(names)) != n:
        raise ValueError("Candidate names must be unique.")

    def tell(event: dict[str, Any]) -> None:
        if progress is not None and progress(event) is False:
            raise FitCancelled(f"Cancelled while training {event['candidate']}.")

    for i, cand in enumerate(candidates):
        base = {"candidate": cand.name, "index": i, "n_candidates": n}

        def callback(event: dict[str, Any], base=base) -> bool:
            if progress is None:
                return True
            return progress({**base, **event}) is not False

        start = time.perf_counter()
        try:
            if fit is not None:
                scores = np.asarray(fit(cand, callback), dtype=np.float64)
            else:
                det = cand.make().fit(X, callback=callback)
                scores = det.decision_function(X)
                if keep_detectors:
                    out.detectors[cand.name] = det
        except FitCancelled:
            raise
        except ValueError as exc:  # ParameterError / DataError: said in words
            out.errors[cand.name] = str(exc)
            out.seconds[cand.name] = time.perf_counter() - start
            tell({**base, "stage": "failed", "error": str(exc)})
            continue
        out.scores[cand.name] = scores
        out.seconds[cand.name] = time.perf_counter() - start
        tell({**base, "stage": "done"})
    return out
