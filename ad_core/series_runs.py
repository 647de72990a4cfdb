"""A series as a run: the dataset's series settings, windows of its points, scores per point.

    settings = proposed_settings(frame, schema)     # SeriesSettings, or why not (SeriesProposal)
    save_settings(ws, dataset_id, settings)          # the Data page's choice, read by train_run
    points = series_points(frame, settings)          # ad_core.series.Series (DataError if unfit)
    W = make_windows(X_points, settings.window)      # one row per window: the detector's input
    s = point_scores(window_scores, n, window, how)  # one score per point (dataset row)

A dataset is analysed as a series only when the user chose so on the Data page (or a
notebook called :func:`save_settings`): a table with a timestamp column is not silently
treated as one. A run trained on a series records its settings in ``window.json`` in its
folder (:data:`WINDOW_FILE`), so scoring it later windows the new series the same way; its
scores are one per point (dataset row), keyed like every other run's, so labels, the
threshold and the Scores page work on points. The windows themselves (training rows of the
detector, points of the latent map) are numbered in time order: window ``w`` covers points
``starts[w] .. starts[w] + length - 1`` (:func:`ad_core.series.window_starts`).

Which windows train (:func:`series_roles`): a held-out share is the *last* stretch of the
series (a time split: random windows would overlap the training windows and leak), and the
training-set choices apply per window: a window with a point labelled (or known) anomalous
counts as anomalous, one whose points are all normal as normal
(:func:`ad_core.series.window_labels`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ad_core.data.errors import DataError
from ad_core.data.schema import Schema
from ad_core.series import (
    ACCEPTABLE,
    NORMALISATIONS,
    Series,
    SeriesProblems,
    SeriesSpec,
    WindowSpec,
    detect_series,
    find_problems,
    propose_window,
    series_values,
    window_labels,
    window_starts,
)

#: the run folder's record of the series settings a run was trained with
WINDOW_FILE = "window.json"
#: per-window scores of a series run (time order), beside the per-point scores
WINDOW_SCORES_FILE = "window_scores.npy"
#: per-window roles of a series run (int8, as ad_core.runs' row roles), for the latent map
WINDOW_ROLES_FILE = "window_roles.npy"
#: how window scores become point scores (ad_core.series.point_scores)
POINT_RULES = {
    "max": "the highest score of the windows covering the point",
    "mean": "the mean score of the windows covering the point",
}
#: the roles of point rows, as in ad_core.runs (kept equal by a test)
_ROLE_TRAIN, _ROLE_HELDOUT, _ROLE_UNUSED = 0, 1, 2


def settings_key(dataset_id: str) -> str:
    """Return the workspace setting holding a dataset's series settings."""
    return f"series.{dataset_id}"


def run_settings_key(run_id: int) -> str:
    """Return the workspace setting recording the series settings a run was trained with."""
    return f"run_series.{int(run_id)}"


@dataclass(frozen=True)
class SeriesSettings:
    """How a dataset is analysed as a series: its columns, the windows, the point rule.

    ``accept``: problems the user accepted rather than fixed ("gaps", "irregular"); the
    windows then join the points on either side of a gap.
    """

    time_column: str | None
    value_columns: tuple[str, ...]
    window: WindowSpec
    how: str = "max"
    accept: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "value_columns", tuple(self.value_columns))
        object.__setattr__(self, "accept", tuple(self.accept))
        if self.how not in POINT_RULES:
            raise ValueError(f"how must be one of {', '.join(POINT_RULES)}, got {self.how!r}")
        unknown = set(self.accept) - set(ACCEPTABLE)
        if unknown:
            raise ValueError(f"only {', '.join(ACCEPTABLE)} can be accepted, not {unknown}")
        if not self.value_columns:
            raise DataError("A series needs at least one numeric value column.")

    @property
    def spec(self) -> SeriesSpec:
        """Return the columns as a :class:`ad_core.series.SeriesSpec`."""
        return SeriesSpec(self.time_column, self.value_columns)

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as plain JSON values."""
        return {
            "time_column": self.time_column,
            "value_columns": list(self.value_columns),
            "length": self.window.length,
            "stride": self.window.stride,
            "normalise": self.window.normalise,
            "reason": self.window.reason,
            "how": self.how,
            "accept": list(self.accept),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SeriesSettings:
        """Return the settings stored by :meth:`to_dict`."""
        window = WindowSpec(
            int(data["length"]),
            int(data.get("stride", 1)),
            str(data.get("normalise", "none")),
            str(data.get("reason", "")),
        )
        return cls(
            data.get("time_column"),
            tuple(data["value_columns"]),
            window,
            str(data.get("how", "max")),
            tuple(data.get("accept", ())),
        )

    def describe(self) -> str:
        """Return the settings in a sentence."""
        w = self.window
        text = f"windows of {w.length:,} points, a new one every {w.stride:,}"
        if w.normalise != "none":
            text += {"demean": ", each window's mean removed", "zscore": ", each window z-scored"}[
                w.normalise
            ]
        return text + f"; a point's score is {POINT_RULES[self.how]}"


@dataclass(frozen=True)
class SeriesProposal:
    """What the Data page offers for a table: a series (and its problems), or nothing.

    ``spec`` is None when the table is no series (no timestamp column or no numeric one).
    ``problems`` lists what must be fixed or accepted first; ``settings`` is the proposed
    window once the series is clean enough to propose one (else ``error`` says why not).
    """

    spec: SeriesSpec | None
    problems: SeriesProblems | None = None
    settings: SeriesSettings | None = None
    error: str | None = None
    blocking: tuple[str, ...] = field(default_factory=tuple)


def propose(frame: pd.DataFrame, schema: Schema, *, accept: Sequence[str] = ()) -> SeriesProposal:
    """Return the series a table holds, its problems and a proposed window.

    ``accept``: the problems the user accepted (gaps, irregular steps); the rest block a
    proposal until fixed (:func:`ad_core.series.fix_series`).
    """
    spec = detect_series(frame, schema)
    if spec is None:
        return SeriesProposal(None)
    problems = find_problems(frame, spec)
    blocking = tuple(k for k in problems.kinds if k not in accept)
    if blocking:
        return SeriesProposal(spec, problems, blocking=blocking)
    try:
        series = series_values(frame, spec, accept=tuple(accept))
        window = propose_window(_channels(series.values))
    except DataError as exc:
        return SeriesProposal(spec, problems, error=str(exc))
    settings = SeriesSettings(spec.time_column, spec.value_columns, window, "max", tuple(accept))
    return SeriesProposal(spec, problems, settings)


def _channels(values: np.ndarray) -> np.ndarray:
    """Return the values standardised per channel (for the period search only)."""
    spread = values.std(axis=0)
    return (values - values.mean(axis=0)) / np.where(spread > 0, spread, 1.0)


def load_settings(ws: Any, dataset_id: str) -> SeriesSettings | None:
    """Return the series settings the user chose for a dataset, or None (plain rows)."""
    stored = ws.get_setting(settings_key(dataset_id))
    if not stored or not stored.get("enabled", True):
        return None
    return SeriesSettings.from_dict(stored)


def save_settings(ws: Any, dataset_id: str, settings: SeriesSettings | None) -> None:
    """Store the series settings of a dataset; None analyses its rows as unrelated rows."""
    if settings is None:
        ws.set_setting(settings_key(dataset_id), {"enabled": False})
    else:
        ws.set_setting(settings_key(dataset_id), {"enabled": True, **settings.to_dict()})


def settings_chosen(ws: Any, dataset_id: str) -> bool:
    """Return True when the user has chosen (series or plain rows) for the dataset."""
    return ws.get_setting(settings_key(dataset_id)) is not None


def series_points(frame: pd.DataFrame, settings: SeriesSettings) -> Series:
    """Return the clean series of ``frame`` under ``settings``, or raise DataError saying why.

    The points must be the table's rows in time order (a problem such as unsorted times is
    fixed on the Data page into a new dataset), so point ``i`` is row ``i``.
    """
    missing = [c for c in settings.value_columns if c not in frame.columns]
    if settings.time_column is not None and settings.time_column not in frame.columns:
        missing.insert(0, settings.time_column)
    if missing:
        raise DataError(
            f"The series settings name column(s) the table does not have: "
            f"{', '.join(repr(c) for c in missing)}. Choose the series settings again on the "
            "Data page."
        )
    series = series_values(frame, settings.spec, accept=settings.accept)
    window_starts(len(series), settings.window)  # DataError: shorter than one window
    return series


def window_point_range(n_points: int, window: WindowSpec) -> tuple[np.ndarray, np.ndarray]:
    """Return each window's first and last point (inclusive), in time order."""
    starts = window_starts(n_points, window)
    return starts, starts + window.length - 1


def covering_windows(point: int, starts: np.ndarray, length: int) -> tuple[int, int]:
    """Return the window numbers ``[lo, hi)`` whose stretch covers ``point``."""
    lo = int(np.searchsorted(starts, int(point) - length + 1, side="left"))
    hi = int(np.searchsorted(starts, int(point), side="right"))
    return lo, hi


def best_window(point: int, window_scores: np.ndarray, starts: np.ndarray, length: int) -> int:
    """Return the highest-scoring window covering ``point``."""
    lo, hi = covering_windows(point, starts, length)
    return lo + int(np.argmax(window_scores[lo:hi]))


def window_times(series_times: Any, starts: np.ndarray) -> Any:
    """Return each window's start time (or start point when the series has no times)."""
    if series_times is None:
        return starts.copy()
    return pd.Index(series_times)[starts]


def series_roles(
    n_points: int,
    window: WindowSpec,
    *,
    train_on: str = "all",
    holdout: float = 0.0,
    labels: np.ndarray | None = None,
    truth: np.ndarray | None = None,
    learn_labels: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (role per point, training windows) for a series run.

    The held-out share is the last ``holdout`` of the points (at least one window's worth
    left to train on); windows reaching into it do not train, except windows holding a
    labelled point (as labelled rows are never held out): their points are training points
    then, and so out of the held-out figures. ``train_on`` follows
    :data:`ad_core.runs.TRAIN_ON`, per window; with ``learn_labels`` (Deep SAD) every window
    holding a labelled point trains whatever the choice, as rows do. A point is a training point when a training
    window covers it, held out when it lies in the held-out stretch, else unused. Raises
    DataError when no window is left to train on, with the reason.
    """
    starts, ends = window_point_range(n_points, window)
    roles = np.full(n_points, _ROLE_UNUSED, dtype=np.int8)
    cut = n_points
    if holdout > 0:
        cut = n_points - int(round(float(holdout) * n_points))
        if cut < window.length:
            raise DataError(
                f"Holding out the last {holdout:.0%} of the series leaves {cut:,} points, fewer "
                f"than one window of {window.length:,}. Hold out less, or shorten the window."
            )
        roles[cut:] = _ROLE_HELDOUT
    point_labels = np.full(n_points, -1) if labels is None else np.asarray(labels)
    labelled = window_labels(point_labels, window) != -1
    # As with rows, a window the expert labelled is never held out: it is given to learn from.
    keep = (ends < cut) | labelled
    if train_on == "not_anomalous":
        keep &= window_labels(point_labels, window) != 1
    elif train_on == "labelled_normal":
        keep &= window_labels(point_labels, window) == 0
    elif train_on == "truth_normal":
        if truth is None:
            raise DataError(
                "Training on rows whose ground truth is normal needs a ground-truth column; "
                "this dataset has none. Choose another training set."
            )
        keep &= window_labels(np.asarray(truth), window) == 0
    elif train_on != "all":
        raise ValueError(f"unknown training-set choice {train_on!r}")
    if learn_labels:
        keep |= labelled
    train_windows = np.flatnonzero(keep).astype(np.int64)
    if train_windows.size < 2:
        why = {
            "labelled_normal": "label a stretch of normal points at least a window long",
            "not_anomalous": "points labelled anomalous fall in nearly every window",
            "truth_normal": "the ground truth marks anomalies in nearly every window",
        }.get(train_on, "the series is too short for its window")
        raise DataError(
            f"Only {train_windows.size} window(s) of {window.length:,} points are left to "
            f"train on ({why}). Choose another training set, hold out less, or shorten the "
            "window."
        )
    covered = np.zeros(n_points + 1, dtype=np.int64)
    np.add.at(covered, starts[train_windows], 1)
    np.add.at(covered, ends[train_windows] + 1, -1)
    in_training = np.cumsum(covered[:-1]) > 0
    roles[in_training] = _ROLE_TRAIN  # a labelled window in the held-out stretch trains
    return roles, train_windows


def window_roles(
    n_points: int, window: WindowSpec, point_roles: np.ndarray, train_windows: np.ndarray
) -> np.ndarray:
    """Return each window's role: trained on, reaching into the held-out stretch, or neither."""
    starts, ends = window_point_range(n_points, window)
    roles = np.full(starts.size, _ROLE_UNUSED, dtype=np.int8)
    roles[np.asarray(point_roles)[ends] == _ROLE_HELDOUT] = _ROLE_HELDOUT
    roles[np.asarray(train_windows, dtype=np.int64)] = _ROLE_TRAIN
    return roles


def write_run_settings(folder: Path, settings: SeriesSettings, n_channels: int) -> None:
    """Write the series settings a run was trained with into its folder."""
    data = {**settings.to_dict(), "n_channels": int(n_channels)}
    (Path(folder) / WINDOW_FILE).write_text(json.dumps(data, indent=1))


def read_run_settings(folder: Path) -> SeriesSettings | None:
    """Return the series settings of a run's folder, or None for a run on plain rows."""
    path = Path(folder) / WINDOW_FILE
    if not path.is_file():
        return None
    return SeriesSettings.from_dict(json.loads(path.read_text()))


#: at most this many bytes of windows are built at once when scoring or mapping a series
WINDOW_CHUNK_BYTES = 64 * 2**20


def window_chunks(n_windows: int, width: int) -> list[np.ndarray]:
    """Return window numbers in chunks of at most :data:`WINDOW_CHUNK_BYTES` of float32."""
    per = max(1, WINDOW_CHUNK_BYTES // max(1, 4 * int(width)))
    return [np.arange(lo, min(lo + per, n_windows)) for lo in range(0, n_windows, per)]


def over_windows(fn: Any, X_points: np.ndarray, window: WindowSpec, rows: Any = None) -> np.ndarray:
    """Return ``fn(windows)`` for every window (or ``rows``), a chunk of windows at a time.

    ``fn`` maps a 2-D array of windows to one row (or one value) per window, e.g. a
    detector's ``decision_function`` or ``transform``; the windows of the whole series are
    never all in memory at once.
    """
    from ad_core.series import make_windows

    n_windows = len(window_starts(len(X_points), window))
    wanted = np.arange(n_windows) if rows is None else np.asarray(rows, dtype=np.int64)
    width = window.length * (X_points.shape[1] if X_points.ndim > 1 else 1)
    parts = [
        np.asarray(fn(make_windows(X_points, window, rows=wanted[chunk])))
        for chunk in window_chunks(wanted.size, width)
    ]
    return np.concatenate(parts) if parts else np.zeros(0)


def share_threshold(scores: Any, share: float) -> float:
    """Return the score above which the share of points flagged is closest to ``share``.

    Point scores of a series come in flat runs (a window's score spreads over all its
    points under the max rule), so a plain quantile can land on a run of tied points and
    flag far fewer than asked; this picks, among the distinct scores, the cut whose share
    of points strictly above it is nearest the target.
    """
    s = np.sort(np.asarray(scores, dtype=np.float64))
    values = np.unique(s)
    above = s.size - np.searchsorted(s, values, side="right")
    best = int(np.argmin(np.abs(above - float(share) * s.size)))
    return float(values[best])


def window_feature_names(names: Sequence[str], length: int) -> list[str]:
    """Return the names of a window's numbers: '<feature> @ step k/L', time-major."""
    return [f"{name} @ step {k + 1}/{length}" for k in range(length) for name in names]


__all__ = [
    "NORMALISATIONS",
    "POINT_RULES",
    "WINDOW_FILE",
    "WINDOW_ROLES_FILE",
    "WINDOW_SCORES_FILE",
    "SeriesProposal",
    "SeriesSettings",
    "best_window",
    "covering_windows",
    "load_settings",
    "propose",
    "read_run_settings",
    "run_settings_key",
    "save_settings",
    "series_points",
    "series_roles",
    "settings_chosen",
    "settings_key",
    "over_windows",
    "share_threshold",
    "window_chunks",
    "window_feature_names",
    "window_point_range",
    "window_roles",
    "window_times",
    "write_run_settings",
]
