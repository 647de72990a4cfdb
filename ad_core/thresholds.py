"""Threshold rules: anomaly scores (and optionally labels) in, one float threshold out.

Every rule follows one convention, defined once in :func:`flag`: a row is flagged as anomalous
when its score is strictly greater than the threshold. Rules that pick a cut between two
observed scores return the lower of the two scores (a real score, never a float midpoint), so
``flag(scores, t)`` reproduces the intended set exactly. Rules that must flag every row return
the float just below the smallest score.

The app builds its rule buttons from :data:`RULES`, a registry of :class:`ThresholdRule`
objects (name, title, whether labels are needed, help text, parameters), so nothing about a
rule is written twice.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "CONTAMINATION_RANGE",
    "RULES",
    "RuleParam",
    "ThresholdRule",
    "best_f1_threshold",
    "contamination_threshold",
    "fixed_threshold",
    "flag",
    "iqr_threshold",
    "mad_threshold",
    "top_fraction_threshold",
    "top_k_threshold",
]

#: The one range of a detector's ``contamination`` (the expected share of anomalies), both
#: ends allowed: the detectors' setting and the "Expected share" rule both use it. (The
#: function contamination_threshold itself takes any share from 0 to 1.)
CONTAMINATION_RANGE = (0.001, 0.5)

# Scale factor that makes the median absolute deviation a consistent estimator of the
# standard deviation for normally distributed data (1 / Phi^-1(3/4)).
MAD_TO_SIGMA = 1.4826
# Same for the mean absolute deviation (sqrt(pi / 2)); used when the MAD is zero, following
# Iglewicz & Hoaglin's modified z-score.
MEANAD_TO_SIGMA = 1.253314


def flag(scores: Any, threshold: float) -> np.ndarray:
    """Return a boolean array, True where a score is strictly greater than the threshold."""
    return np.asarray(scores, dtype=np.float64) > float(threshold)


def _check_scores(scores: Any) -> np.ndarray:
    """Return scores as a finite 1-D float64 array or raise ValueError saying what is wrong."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"scores must be a 1-D array, got an array of shape {s.shape}")
    if s.size == 0:
        raise ValueError("scores is empty: a threshold needs at least one score")
    bad = ~np.isfinite(s)
    if bad.any():
        n_nan = int(np.isnan(s).sum())
        n_inf = int(bad.sum()) - n_nan
        raise ValueError(
            f"scores contain {n_nan} NaN and {n_inf} infinite values (first at position "
            f"{int(np.flatnonzero(bad)[0])}); score rows with finite values only"
        )
    return s


def _check_labels(labels: Any, n: int) -> np.ndarray:
    """Return labels as an int array of length n with values in {-1, 0, 1}."""
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"labels must be a 1-D array of length {n} (one per score), got {y.shape}")
    if y.dtype.kind == "f" and np.isnan(y).any():
        raise ValueError("labels contain NaN; use -1 for unlabelled rows")
    if y.dtype.kind not in "biuf":
        raise ValueError(f"labels must be numbers -1, 0 or 1, got dtype {y.dtype}")
    yi = y.astype(np.int64)
    if (yi != y).any() or not np.isin(yi, (-1, 0, 1)).all():
        bad = sorted(set(np.unique(y).tolist()) - {-1, 0, 1})
        raise ValueError(
            f"labels must be 1 (anomaly), 0 (normal) or -1 (unlabelled); found {bad[:5]}"
        )
    return yi


def _below(value: float) -> float:
    """Return the largest float strictly below value (a threshold that flags value itself)."""
    return float(np.nextafter(value, -np.inf))


def _check_fraction(value: float, name: str) -> float:
    v = float(value)
    if not 0.0 <= v <= 1.0 or math.isnan(v):
        raise ValueError(f"{name} must be between 0 and 1 (a share of rows), got {value!r}")
    return v


def contamination_threshold(scores: Any, contamination: float) -> float:
    """Return the (1 - contamination) quantile of the scores, so about that share is flagged.

    This is PyOD's rule for ``threshold_`` (linear interpolation between order statistics), so
    it agrees with a detector fitted with the same ``contamination``. ``contamination=0`` flags
    nothing; ``contamination=1`` flags every row. Use :func:`top_fraction_threshold` when the
    count must be exact.
    """
    s = _check_scores(scores)
    c = _check_fraction(contamination, "contamination")
    if c >= 1.0:
        return _below(float(s.min()))
    return float(np.quantile(s, 1.0 - c))


def top_k_threshold(scores: Any, k: int) -> float:
    """Return a threshold that flags the k highest scores.

    The threshold is the (k+1)-th highest score, so exactly k rows are flagged when that score
    is lower than the k-th highest. Ties at the boundary cannot be split by a threshold: rows
    whose score equals the (k+1)-th highest are never flagged, so fewer than k rows are flagged
    then (never more). ``k=0`` flags nothing; ``k >= len(scores)`` flags every row.
    """
    s = _check_scores(scores)
    if isinstance(k, bool) or int(k) != k or k < 0:
        raise ValueError(f"k must be a whole number >= 0, got {k!r}")
    k = int(k)
    n = s.size
    if k >= n:
        return _below(float(s.min()))
    # The (k+1)-th highest is the (n-k)-th smallest (0-based n-k-1); partition is O(n).
    return float(np.partition(s, n - k - 1)[n - k - 1])


def top_fraction_threshold(scores: Any, fraction: float) -> float:
    """Return a threshold that flags the top ``fraction`` of rows (rounded up, ties as top-k).

    ``fraction=0.01`` flags the highest 1 %: ceil(0.01 * n) rows, at least one row whenever
    fraction > 0.
    """
    s = _check_scores(scores)
    f = _check_fraction(fraction, "fraction")
    # The small tolerance keeps 0.07 * 100 = 7.000000000000001 from rounding up to 8.
    k = math.ceil(f * s.size - 1e-9)
    return top_k_threshold(s, k)


def fixed_threshold(value: float) -> float:
    """Return the given value as a threshold, after checking it is a finite number."""
    try:
        t = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"a fixed threshold must be a number, got {value!r}") from None
    if not math.isfinite(t):
        raise ValueError(f"a fixed threshold must be finite, got {value!r}")
    return t


def mad_threshold(scores: Any, n_mads: float = 3.5) -> float:
    """Return median + n_mads * 1.4826 * MAD, a robust "n standard deviations" cut.

    MAD is the median absolute deviation from the median. When more than half the scores are
    equal the MAD is 0; the mean absolute deviation (times 1.2533) is used instead, as in
    Iglewicz & Hoaglin's modified z-score. When all scores are equal the threshold is that
    score and nothing is flagged.
    """
    s = _check_scores(scores)
    n = float(n_mads)
    if not math.isfinite(n) or n < 0:
        raise ValueError(f"n_mads must be a finite number >= 0, got {n_mads!r}")
    med = float(np.median(s))
    dev = np.abs(s - med)
    spread = MAD_TO_SIGMA * float(np.median(dev))
    if spread == 0.0:
        spread = MEANAD_TO_SIGMA * float(dev.mean())
    return med + n * spread


def iqr_threshold(scores: Any, k: float = 1.5) -> float:
    """Return Q3 + k * (Q3 - Q1), Tukey's upper fence (quartiles by linear interpolation)."""
    s = _check_scores(scores)
    kk = float(k)
    if not math.isfinite(kk) or kk < 0:
        raise ValueError(f"k must be a finite number >= 0, got {k!r}")
    q1, q3 = np.quantile(s, [0.25, 0.75])
    return float(q3 + kk * (q3 - q1))


def best_f1_threshold(scores: Any, labels: Any) -> float:
    """Return the threshold that maximises F1 on the labelled rows (label -1 is ignored).

    Exact: every cut between two distinct labelled scores is evaluated at once with a sort and
    cumulative sums. The returned threshold is the highest labelled score left unflagged (or
    the float just below the lowest score when the best cut flags every labelled row); among
    equally good cuts the one that flags the fewest rows wins.
    """
    s = _check_scores(scores)
    y = _check_labels(labels, s.size)
    known = y != -1
    s, y = s[known], y[known]
    n_pos = int(y.sum())
    if n_pos == 0:
        raise ValueError(
            "best F1 needs at least one row labelled anomaly (1); label some anomalies first"
        )
    if n_pos == s.size:
        raise ValueError(
            "best F1 needs at least one row labelled normal (0); label some normal rows first"
        )
    order = np.argsort(-s, kind="stable")
    s_desc, y_desc = s[order], y[order]
    tp = np.cumsum(y_desc)
    flagged = np.arange(1, s.size + 1)
    # A cut can only sit after the last row of each group of equal scores.
    last_of_group = np.flatnonzero(np.r_[s_desc[1:] != s_desc[:-1], True])
    tp, flagged = tp[last_of_group], flagged[last_of_group]
    f1 = 2.0 * tp / (flagged + n_pos)
    best = int(np.argmax(f1))  # first maximum = highest threshold = fewest rows flagged
    if best + 1 < last_of_group.size:
        return float(s_desc[last_of_group[best] + 1])
    return _below(float(s_desc[-1]))


@dataclass(frozen=True)
class RuleParam:
    """One parameter of a threshold rule, described for a form (slider or number input)."""

    name: str
    kind: str  # "float" or "int"
    default: float | int | None
    low: float | int | None = None
    high: float | int | None = None
    help: str = ""


@dataclass(frozen=True)
class ThresholdRule:
    """A named threshold rule the app can offer as a button.

    ``fn`` is the public function; ``inputs`` says which of scores/labels it takes
    positionally, ahead of its parameters. Call :meth:`compute` to apply the rule uniformly.
    """

    name: str
    title: str
    needs_labels: bool
    help: str
    fn: Callable[..., float]
    params: tuple[RuleParam, ...] = ()
    inputs: tuple[str, ...] = ("scores",)

    def compute(self, scores: Any, labels: Any = None, **params: Any) -> float:
        """Return this rule's threshold for the scores (and labels when the rule needs them)."""
        known = {p.name for p in self.params}
        unknown = set(params) - known
        if unknown:
            raise ValueError(
                f"rule {self.name!r} has no parameter(s) {sorted(unknown)}; "
                f"it takes {sorted(known)}"
            )
        if self.needs_labels and labels is None:
            raise ValueError(f"rule {self.name!r} needs labels (1 anomaly, 0 normal, -1 unknown)")
        values = {"scores": scores, "labels": labels}
        kwargs = {}
        for p in self.params:
            value = params.get(p.name, p.default)
            if value is None:
                raise ValueError(f"rule {self.name!r} needs a value for {p.name!r}")
            kwargs[p.name] = value
        return self.fn(*(values[i] for i in self.inputs), **kwargs)


RULES: dict[str, ThresholdRule] = {
    rule.name: rule
    for rule in (
        ThresholdRule(
            name="contamination",
            title="Expected share",
            needs_labels=False,
            help="Flag about this share of rows: the score quantile a detector uses for its "
            "own threshold. Use when you know roughly how common anomalies are.",
            fn=contamination_threshold,
            params=(
                RuleParam(
                    "contamination", "float", 0.1, *CONTAMINATION_RANGE, "Share of rows to flag."
                ),
            ),
        ),
        ThresholdRule(
            name="top_k",
            title="Top k",
            needs_labels=False,
            help="Flag the k highest scores: a fixed review budget. Rows tied with the first "
            "unflagged score stay unflagged.",
            fn=top_k_threshold,
            params=(RuleParam("k", "int", 10, 0, None, "Number of rows to flag."),),
        ),
        ThresholdRule(
            name="top_fraction",
            title="Top %",
            needs_labels=False,
            help="Flag the highest-scoring share of rows exactly (rounded up), e.g. the top 1 %.",
            fn=top_fraction_threshold,
            params=(RuleParam("fraction", "float", 0.01, 0.0, 1.0, "Share of rows to flag."),),
        ),
        ThresholdRule(
            name="fixed",
            title="Fixed value",
            needs_labels=False,
            help="Flag every score above a value you choose, e.g. one carried over from "
            "an earlier run.",
            fn=fixed_threshold,
            params=(RuleParam("value", "float", None, None, None, "Score above which to flag."),),
            inputs=(),
        ),
        ThresholdRule(
            name="mad",
            title="Robust z (MAD)",
            needs_labels=False,
            help="Median plus n robust standard deviations (1.4826 x median absolute "
            "deviation). Not pulled up by the anomalies themselves; 3.5 is the usual cut.",
            fn=mad_threshold,
            params=(
                RuleParam(
                    "n_mads", "float", 3.5, 0.0, 10.0, "Robust standard deviations above median."
                ),
            ),
        ),
        ThresholdRule(
            name="iqr",
            title="Box-plot fence (IQR)",
            needs_labels=False,
            help="Third quartile plus k interquartile ranges: the box-plot outlier rule. "
            "k = 1.5 is Tukey's fence, 3 a far-out fence.",
            fn=iqr_threshold,
            params=(RuleParam("k", "float", 1.5, 0.0, 10.0, "Interquartile ranges above Q3."),),
        ),
        ThresholdRule(
            name="best_f1",
            title="Best F1 on labels",
            needs_labels=True,
            help="The cut with the highest F1 on the rows you labelled. Needs at least one "
            "labelled anomaly and one labelled normal row; optimistic on few labels.",
            fn=best_f1_threshold,
            inputs=("scores", "labels"),
        ),
    )
}
