"""Series: a table of times (or ordered rows) and numeric columns, analysed in sliding windows.

    spec = detect_series(frame, schema)        # SeriesSpec, or None when it is no series
    problems = find_problems(frame, spec)      # gaps, duplicate/unsorted/unreadable times,
                                               # irregular steps, stretches of missing values
    frame, notes = fix_series(frame, spec, sort=True, missing="interpolate")  # the user's choice
    series = series_values(frame, spec)        # Series: values (points x channels), times;
                                               # DataError while a problem is left unchosen
    window = propose_window(series.values)     # WindowSpec(length, stride, normalise, reason)
    X = make_windows(series.values, window)    # one row per window: any detector's input
    s = point_scores(det.decision_function(X), len(series), window)  # max over windows
    table = events(s, threshold, min_gap=window.length, times=series.times)

Nothing here changes data silently: :func:`find_problems` says what is wrong and what can be
done, each ``fix_*`` function applies one choice and :func:`fix_series` returns a sentence per
change; :func:`series_values` refuses a series whose problems were neither fixed nor
accepted. Problems are named by kind (:data:`PROBLEM_KINDS`).

Window layout: the row of a window of L points and C value columns holds L x C numbers,
time-major: x(t)_1 .. x(t)_C, x(t+1)_1 .. x(t+1)_C, ...; ``reshape(L, C)`` gives it back as a
sequence. The seq2seq detector reads rows this way (its ``n_channels`` = C). Window starts run
every ``stride`` points from the first point, plus one last window that ends on the last point
when the stride does not land there, so every point lies in at least one window.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ad_core.data.errors import DataError
from ad_core.data.schema import Schema
from ad_core.thresholds import flag

__all__ = [
    "DEFAULT_WINDOW",
    "NORMALISATIONS",
    "PROBLEM_KINDS",
    "Gap",
    "MissingStretch",
    "Series",
    "SeriesProblems",
    "SeriesSpec",
    "WindowSpec",
    "detect_period",
    "detect_series",
    "drop_unreadable_times",
    "events",
    "fill_missing",
    "find_problems",
    "fix_series",
    "make_windows",
    "merge_duplicate_times",
    "point_scores",
    "propose_window",
    "resample",
    "series_values",
    "sort_by_time",
    "window_labels",
    "window_starts",
]

#: the kinds of problem :func:`find_problems` reports, in the order :func:`fix_series` fixes them
PROBLEM_KINDS = ("unreadable_times", "unsorted", "duplicates", "gaps", "irregular", "missing")
#: problems a user may choose to keep (the windows then span them); missing values never
ACCEPTABLE = ("gaps", "irregular")
#: per-window normalisations: none; subtract each channel's window mean; z-score per channel
NORMALISATIONS = ("none", "demean", "zscore")
#: the window length when no repeating pattern is found (DeepOD's series models use 100)
DEFAULT_WINDOW = 100
#: shortest window proposed, and the least number of windows a proposal leaves
MIN_WINDOW = 8
MIN_WINDOWS = 4
#: longest window proposed: longer cycles get a window of this many points
MAX_WINDOW = 512
#: a proposed stride keeps the number of windows near this
TARGET_WINDOWS = 2000
#: an autocorrelation peak at least this high counts as a period
MIN_PERIOD_CORRELATION = 0.3
#: a step this many times the usual one or longer is a gap (missing points)
GAP_FACTOR = 1.5
#: a step further than this share of the usual step from a whole number of steps is irregular
IRREGULAR_TOLERANCE = 0.01
#: how many examples a message shows
_SHOWN = 3


# --- what a series is ------------------------------------------------------------------------
@dataclass(frozen=True)
class SeriesSpec:
    """Which columns make a series: a time column (None: the rows' order) and value columns."""

    time_column: str | None
    value_columns: tuple[str, ...]
    reason: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "value_columns", tuple(self.value_columns))


def detect_series(frame: pd.DataFrame, schema: Schema) -> SeriesSpec | None:
    """Return the series a table holds (its timestamp and numeric columns), or None.

    A table is proposed as a series when its schema has a timestamp column and at least one
    numeric feature column; the reason says so in a sentence. Tables without a timestamp can
    still be analysed as a series of ordered rows: build ``SeriesSpec(None, columns)``.
    """
    time_column = schema.timestamp_column
    numeric = set(schema.numeric_columns)
    values = tuple(c for c in frame.columns if c in numeric)  # in the table's order
    if time_column is None or time_column not in frame.columns or not values:
        return None
    shown = ", ".join(f"'{c}'" for c in values[:_SHOWN]) + (" ..." if len(values) > _SHOWN else "")
    reason = (
        f"'{time_column}' holds times and {len(values)} numeric column(s) ({shown}) change "
        "over them, so the table can be analysed as a series: windows of consecutive points "
        "become the rows a detector sees."
    )
    return SeriesSpec(time_column, values, reason)


# --- problems ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Gap:
    """A step in time longer than the usual one: ``missing`` points absent after ``after``."""

    position: int  # row position (0-based, in time order) of the point before the gap
    after: Any
    before: Any
    missing: int


@dataclass(frozen=True)
class MissingStretch:
    """Consecutive rows (0-based positions ``start`` to ``end``) with no value in ``column``."""

    column: str
    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1


@dataclass(frozen=True)
class SeriesProblems:
    """What :func:`find_problems` found; ``kinds`` lists the problems present.

    Counts refer to the table as given; gaps and irregular steps are measured in time order
    after leaving out unreadable and repeated times (what sorting and merging would give).
    """

    n_points: int
    time_kind: str | None  # "datetime", "number" or None (ordered rows)
    unreadable_times: tuple[int, ...] = ()  # row positions whose time cannot be read
    unsorted: tuple[int, ...] = ()  # row positions whose time is earlier than the row before
    duplicates: tuple[int, ...] = ()  # row positions repeating an earlier row's time
    step: Any = None  # the usual step (median), a Timedelta or a number
    gaps: tuple[Gap, ...] = ()
    n_steps: int = 0
    irregular_steps: int = 0
    missing: tuple[MissingStretch, ...] = ()
    examples: dict[str, str] = field(default_factory=dict)

    @property
    def kinds(self) -> tuple[str, ...]:
        """Return the kinds of problem present, in :data:`PROBLEM_KINDS` order."""
        present = {
            "unreadable_times": bool(self.unreadable_times),
            "unsorted": bool(self.unsorted),
            "duplicates": bool(self.duplicates),
            "gaps": bool(self.gaps),
            "irregular": self.irregular_steps > 0,
            "missing": bool(self.missing),
        }
        return tuple(kind for kind in PROBLEM_KINDS if present[kind])

    @property
    def ok(self) -> bool:
        """Return True when nothing is wrong."""
        return not self.kinds

    def message(self, kind: str) -> str:
        """Return one sentence saying what is wrong and which choices fix it."""
        return _MESSAGES[kind](self)

    def messages(self, kinds: Sequence[str] | None = None) -> list[str]:
        """Return the message of every problem present (or of those in ``kinds``)."""
        return [self.message(k) for k in self.kinds if kinds is None or k in kinds]

    def error(self, kinds: Sequence[str] | None = None) -> DataError:
        """Return a DataError listing the problems (all, or those in ``kinds``)."""
        lines = self.messages(kinds)
        if not lines:
            raise ValueError("there is no problem to report: check .ok first")
        return DataError(
            "The series cannot be windowed as it is:\n- " + "\n- ".join(lines)
            if len(lines) > 1
            else "The series cannot be windowed as it is: " + lines[0]
        )


def _positions(rows: Sequence[int]) -> str:
    shown = ", ".join(str(int(r) + 1) for r in rows[:_SHOWN])
    more = f" and {len(rows) - _SHOWN} more" if len(rows) > _SHOWN else ""
    return f"{shown}{more}"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _verb(n: int, one: str, many: str) -> str:
    return one if n == 1 else many


def _format_step(step: Any) -> str:
    if isinstance(step, pd.Timedelta):
        parts = step.components
        units = [
            (parts.days, "d"),
            (parts.hours, "h"),
            (parts.minutes, "min"),
            (parts.seconds, "s"),
            (parts.milliseconds, "ms"),
        ]
        text = " ".join(f"{v} {u}" for v, u in units if v)
        return text or str(step)
    return f"{step:g}"


def _msg_unreadable(p: SeriesProblems) -> str:
    n = len(p.unreadable_times)
    return (
        f"{_plural(n, 'row')} {_verb(n, 'has', 'have')} a time that cannot be read (data row(s) "
        f"{_positions(p.unreadable_times)}, counting from 1; e.g. {p.examples.get('unreadable')}"
        "). Choose: drop those rows."
    )


def _msg_unsorted(p: SeriesProblems) -> str:
    n = len(p.unsorted)
    return (
        f"{_plural(n, 'row')} {_verb(n, 'comes', 'come')} earlier in time than the row before "
        f"(data row(s) "
        f"{_positions(p.unsorted)}, counting from 1). Choose: sort the rows by time."
    )


def _msg_duplicates(p: SeriesProblems) -> str:
    n = len(p.duplicates)
    return (
        f"{_plural(n, 'row')} {_verb(n, 'repeats', 'repeat')} a time already seen (e.g. "
        f"{p.examples.get('duplicate')}). "
        "Choose: keep the first row of each time, or average the rows of each time."
    )


def _msg_gaps(p: SeriesProblems) -> str:
    longest = max(p.gaps, key=lambda g: g.missing)
    missing = sum(g.missing for g in p.gaps)
    return (
        f"{_plural(len(p.gaps), 'gap')} in time, {_plural(missing, 'point')} missing at the "
        f"usual step of {_format_step(p.step)}; the longest lacks {longest.missing:,} after "
        f"{longest.after}. Choose: resample to a regular step and fill the missing values "
        "(interpolate), or keep the gaps (windows then join the points on either side)."
    )


def _msg_irregular(p: SeriesProblems) -> str:
    share = p.irregular_steps / max(p.n_steps, 1)
    return (
        f"{_plural(p.irregular_steps, 'step')} of {p.n_steps:,} ({share:.1%}) "
        f"{_verb(p.irregular_steps, 'is', 'are')} not a whole "
        f"number of the usual step of {_format_step(p.step)}, so points are not evenly "
        "spaced. Choose: resample to a regular step, or keep the spacing as it is (a window "
        "then covers a varying length of time)."
    )


def _msg_missing(p: SeriesProblems) -> str:
    longest = max(p.missing, key=lambda s: s.length)
    columns = sorted({s.column for s in p.missing})
    shown = ", ".join(f"'{c}'" for c in columns[:_SHOWN])
    total = sum(s.length for s in p.missing)
    return (
        f"{_plural(len(p.missing), 'stretch')} of missing values ({_plural(total, 'value')}) in "
        f"{shown}; the longest is {longest.length:,} rows of '{longest.column}' from data row "
        f"{longest.start + 1}. Choose: interpolate them, or drop those rows."
    )


_MESSAGES = {
    "unreadable_times": _msg_unreadable,
    "unsorted": _msg_unsorted,
    "duplicates": _msg_duplicates,
    "gaps": _msg_gaps,
    "irregular": _msg_irregular,
    "missing": _msg_missing,
}


def _check_columns(frame: pd.DataFrame, spec: SeriesSpec) -> None:
    """Raise DataError unless the spec's columns exist and the values are numbers."""
    wanted = [spec.time_column] if spec.time_column is not None else []
    absent = [c for c in (*wanted, *spec.value_columns) if c not in frame.columns]
    if absent:
        raise DataError(
            f"The series needs column(s) {', '.join(repr(c) for c in absent)}, which the table "
            "does not have. Choose the time and value columns again."
        )
    if not spec.value_columns:
        raise DataError(
            "A series needs at least one numeric value column, and none is chosen (or the "
            "table has none). Give a column of numbers the role 'numeric'."
        )
    bad = [
        c
        for c in spec.value_columns
        if not pd.api.types.is_numeric_dtype(frame[c].dtype) or frame[c].dtype == bool
    ]
    if bad:
        raise DataError(
            f"The value column(s) {', '.join(repr(c) for c in bad)} do not hold numbers, so "
            "they cannot form a series. Choose numeric columns as values."
        )


def _time_axis(frame: pd.DataFrame, spec: SeriesSpec) -> tuple[np.ndarray | None, str | None]:
    """Return (times as float64 with NaN where unreadable, kind) or (None, None) for row order.

    Datetimes become nanoseconds since the epoch; numbers stay numbers.
    """
    if spec.time_column is None:
        return None, None
    column = frame[spec.time_column]
    if pd.api.types.is_numeric_dtype(column.dtype) and column.dtype != bool:
        return column.to_numpy(dtype=np.float64, na_value=np.nan), "number"
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        parsed = column
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "could not infer format" chatter
            try:
                parsed = pd.to_datetime(column, errors="coerce", format="mixed")
            except (TypeError, ValueError):
                parsed = None
            if parsed is None or not pd.api.types.is_datetime64_any_dtype(parsed.dtype):
                # Mixed time zones (or offsets) parse to objects; compare them in UTC.
                parsed = pd.to_datetime(column, errors="coerce", format="mixed", utc=True)
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    ns = parsed.to_numpy(dtype="datetime64[ns]").astype(np.int64).astype(np.float64)
    ns[parsed.isna().to_numpy()] = np.nan
    return ns, "datetime"


def _as_time(value: float, kind: str | None) -> Any:
    if kind == "datetime":
        return pd.Timestamp(int(value))
    return value


def _as_step(value: float, kind: str | None) -> Any:
    if kind == "datetime":
        return pd.Timedelta(int(round(value)), unit="ns")
    return value


def find_problems(frame: pd.DataFrame, spec: SeriesSpec) -> SeriesProblems:
    """Return what stands between the table and a clean series; nothing is changed.

    Looks for times that cannot be read, rows out of time order, repeated times, gaps (a step
    of 1.5 x the usual step or more), irregular steps (not a whole number of usual steps) and
    stretches of missing values in the value columns. Raises DataError when the columns are
    absent or not numbers.
    """
    _check_columns(frame, spec)
    t, kind = _time_axis(frame, spec)
    examples: dict[str, str] = {}
    found: dict[str, Any] = {}
    if t is not None:
        unreadable = np.flatnonzero(np.isnan(t))
        if unreadable.size:
            examples["unreadable"] = repr(frame[spec.time_column].iloc[unreadable[0]])
        readable = np.flatnonzero(~np.isnan(t))
        tr = t[readable]
        unsorted = readable[1:][np.diff(tr) < 0]
        ordered = np.sort(tr, kind="stable")
        # A repeat is a row whose time equals one seen on an earlier row.
        _, first = np.unique(tr, return_index=True)
        repeated = np.setdiff1d(np.arange(tr.size), first)
        duplicates = readable[repeated]
        if duplicates.size:
            examples["duplicate"] = str(_as_time(t[duplicates[0]], kind))
        times = np.unique(ordered)
        steps = np.diff(times)
        found.update(
            unreadable_times=tuple(unreadable.tolist()),
            unsorted=tuple(unsorted.tolist()),
            duplicates=tuple(duplicates.tolist()),
        )
        if steps.size:
            usual = float(np.median(steps))
            ratio = steps / usual
            is_gap = ratio >= GAP_FACTOR
            whole = np.abs(ratio - np.round(ratio)) <= IRREGULAR_TOLERANCE
            gaps = tuple(
                Gap(
                    position=int(i),
                    after=_as_time(times[i], kind),
                    before=_as_time(times[i + 1], kind),
                    missing=max(int(round(ratio[i])) - 1, 1),
                )
                for i in np.flatnonzero(is_gap)
            )
            found.update(
                step=_as_step(usual, kind),
                gaps=gaps,
                n_steps=int(steps.size),
                irregular_steps=int(np.sum(~whole & ~is_gap)),
            )
    stretches: list[MissingStretch] = []
    for column in spec.value_columns:
        missing = frame[column].isna().to_numpy()
        if missing.any():
            starts, ends = _runs(missing)
            stretches.extend(
                MissingStretch(column, int(s), int(e)) for s, e in zip(starts, ends, strict=True)
            )
    return SeriesProblems(
        n_points=len(frame),
        time_kind=kind,
        missing=tuple(stretches),
        examples=examples,
        **found,
    )


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (starts, ends), inclusive, of the runs of True in a boolean array."""
    padded = np.r_[False, mask, False].astype(np.int8)
    change = np.diff(padded)
    return np.flatnonzero(change == 1), np.flatnonzero(change == -1) - 1


# --- the user's choices ------------------------------------------------------------------------
def drop_unreadable_times(frame: pd.DataFrame, spec: SeriesSpec) -> pd.DataFrame:
    """Return the rows whose time can be read."""
    t, _ = _time_axis(frame, spec)
    if t is None:
        return frame
    return frame.loc[~np.isnan(t)]


def sort_by_time(frame: pd.DataFrame, spec: SeriesSpec) -> pd.DataFrame:
    """Return the rows in time order (stable: rows of the same time keep their order).

    Rows whose time cannot be read go last; drop them with :func:`drop_unreadable_times`.
    """
    t, _ = _time_axis(frame, spec)
    if t is None:
        return frame
    return frame.iloc[np.argsort(np.where(np.isnan(t), np.inf, t), kind="stable")]


def merge_duplicate_times(
    frame: pd.DataFrame, spec: SeriesSpec, how: str = "first"
) -> pd.DataFrame:
    """Return one row per time: the first row of each, or (``how="mean"``) their average.

    With ``"mean"`` the value columns are averaged and every other column keeps the first
    row's value. Rows keep their order of first appearance.
    """
    if how not in ("first", "mean"):
        raise ValueError(f"how must be 'first' or 'mean', got {how!r}")
    t, _ = _time_axis(frame, spec)
    if t is None:
        return frame
    key = pd.Series(t, index=frame.index)
    keep = ~key.duplicated(keep="first").to_numpy() | np.isnan(t)
    out = frame.loc[keep].copy()
    if how == "mean":
        readable = ~np.isnan(t)
        means = (
            frame.loc[readable, list(spec.value_columns)].groupby(t[readable], sort=False).mean()
        )
        kept_t = t[keep]
        rows = ~np.isnan(kept_t)
        for column in spec.value_columns:
            values = out[column].to_numpy(dtype=np.float64, copy=True)
            values[rows] = means[column].reindex(kept_t[rows]).to_numpy()
            out[column] = values
    return out


def resample(
    frame: pd.DataFrame, spec: SeriesSpec, step: Any = None, how: str = "mean"
) -> pd.DataFrame:
    """Return the series on a regular grid of ``step`` (default: the usual step).

    The grid runs from the first time in steps of ``step``; each grid point gets the ``how``
    ("mean", "first" or "last") of the values in its interval [t, t + step), and every other
    column the first value there. Intervals without a row get missing values: fill them with
    :func:`fill_missing`. The rows are new, numbered from 0. Times must be readable.
    """
    if spec.time_column is None:
        raise DataError("Rows without a time column cannot be resampled; they are already ordered.")
    if how not in ("mean", "first", "last"):
        raise ValueError(f"how must be 'mean', 'first' or 'last', got {how!r}")
    t, kind = _time_axis(frame, spec)
    if np.isnan(t).any():
        raise DataError(
            "Some times cannot be read; drop those rows before resampling (the problem "
            "'unreadable_times')."
        )
    if step is None:
        step = find_problems(frame, spec).step
        if step is None:
            raise DataError("A series of one time has no step to resample to.")
    if kind == "datetime":
        width = float(pd.Timedelta(step).value)
    else:
        width = float(step)
    if not width > 0:
        raise DataError(f"The resampling step must be positive, got {step!r}.")
    start = float(np.min(t))
    slot = np.floor((t - start) / width + 1e-9).astype(np.int64)
    n_slots = int(slot.max()) + 1
    grouped = frame.assign(_slot=slot).groupby("_slot", sort=True)
    values = getattr(grouped[list(spec.value_columns)], how)()
    others = [c for c in frame.columns if c not in spec.value_columns and c != spec.time_column]
    out = values.reindex(range(n_slots))
    if others:
        out = out.join(grouped[others].first().reindex(range(n_slots)))
    grid = start + width * np.arange(n_slots)
    times = pd.to_datetime(grid.astype(np.int64)) if kind == "datetime" else grid
    out.insert(0, spec.time_column, times)
    out.index = pd.RangeIndex(n_slots)
    return out[[c for c in frame.columns if c in out.columns]]


def fill_missing(frame: pd.DataFrame, spec: SeriesSpec, how: str = "interpolate") -> pd.DataFrame:
    """Return the table with missing values filled (``"interpolate"``) or their rows dropped.

    Interpolation is linear in time (in row order without a time column); values missing at
    the very start or end take the nearest present value. ``"drop"`` leaves out every row
    missing a value in any value column.
    """
    if how not in ("interpolate", "drop"):
        raise ValueError(f"how must be 'interpolate' or 'drop', got {how!r}")
    columns = list(spec.value_columns)
    if how == "drop":
        return frame.dropna(subset=columns)
    t, _ = _time_axis(frame, spec)
    position = np.arange(len(frame), dtype=np.float64) if t is None else t
    out = frame.copy()
    for column in columns:
        values = out[column].to_numpy(dtype=np.float64, copy=True)
        present = ~np.isnan(values) & ~np.isnan(position)
        if not present.any():
            raise DataError(f"The column '{column}' has no value at all; it cannot be filled.")
        if not present.all():
            # np.interp holds the end values beyond the first and last present points.
            order = np.argsort(position[present], kind="stable")
            xp, fp = position[present][order], values[present][order]
            values[~present] = np.interp(position[~present], xp, fp)
        out[column] = values
    return out


def fix_series(
    frame: pd.DataFrame,
    spec: SeriesSpec,
    *,
    drop_unreadable: bool = False,
    sort: bool = False,
    duplicates: str | None = None,
    resample_step: Any = None,
    resample_how: str = "mean",
    missing: str | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Return the table with the chosen fixes applied, and one sentence per change made.

    The fixes run in the order :data:`PROBLEM_KINDS` lists them: drop rows with unreadable
    times, sort by time, merge repeated times (``duplicates="first"`` or ``"mean"``), resample
    (``resample_step``: a step such as ``"5min"``, or ``"usual"`` for the usual step), then
    fill or drop missing values (``missing="interpolate"`` or ``"drop"``). Nothing is done
    that was not asked for.
    """
    notes: list[str] = []
    n = len(frame)
    if drop_unreadable:
        frame = drop_unreadable_times(frame, spec)
        if len(frame) < n:
            notes.append(f"Dropped {_plural(n - len(frame), 'row')} whose time could not be read.")
    if sort:
        before = frame.index
        frame = sort_by_time(frame, spec)
        moved = int(np.sum(frame.index.to_numpy() != before.to_numpy()))
        if moved:
            notes.append(f"Sorted the rows by time ({_plural(moved, 'row')} moved).")
    if duplicates is not None:
        n = len(frame)
        frame = merge_duplicate_times(frame, spec, how=duplicates)
        if len(frame) < n:
            what = "kept the first" if duplicates == "first" else "averaged the values"
            notes.append(
                f"Merged rows of the same time ({what}): {_plural(n - len(frame), 'row')} fewer."
            )
    if resample_step is not None:
        step = None if resample_step == "usual" else resample_step
        n = len(frame)
        frame = resample(frame, spec, step=step, how=resample_how)
        shown = _format_step(find_problems(frame, spec).step) if len(frame) > 1 else ""
        notes.append(
            f"Resampled to a regular step of {shown} ({resample_how} per step): {n:,} rows "
            f"became {len(frame):,}."
        )
    if missing is not None:
        n_missing = int(frame[list(spec.value_columns)].isna().to_numpy().sum())
        n = len(frame)
        frame = fill_missing(frame, spec, how=missing)
        if missing == "interpolate" and n_missing:
            notes.append(f"Interpolated {_plural(n_missing, 'missing value')}.")
        elif missing == "drop" and len(frame) < n:
            notes.append(f"Dropped {_plural(n - len(frame), 'row')} with missing values.")
    return frame, notes


# --- the clean series --------------------------------------------------------------------------
@dataclass(frozen=True)
class Series:
    """A clean series: ``values`` (points x channels, float64) in time order.

    ``times`` holds each point's time (Timestamps or numbers) or None for ordered rows;
    ``index`` the frame's index label of each point, to find its row (and row key) again.
    """

    values: np.ndarray
    times: pd.Index | None
    index: np.ndarray
    columns: tuple[str, ...]
    step: Any = None

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def n_channels(self) -> int:
        return int(self.values.shape[1])


def series_values(frame: pd.DataFrame, spec: SeriesSpec, *, accept: Sequence[str] = ()) -> Series:
    """Return the values of a series ready for windowing, or raise DataError saying why not.

    Every problem :func:`find_problems` reports must be fixed first (:func:`fix_series`),
    except gaps and irregular steps, which the user may ``accept`` (``accept=("gaps",)``):
    the windows then join the points on either side. Missing values are never accepted.
    """
    unknown = set(accept) - set(ACCEPTABLE)
    if unknown:
        raise ValueError(
            f"only {', '.join(ACCEPTABLE)} can be accepted; fix {', '.join(sorted(unknown))}"
        )
    problems = find_problems(frame, spec)
    left = [k for k in problems.kinds if k not in accept]
    if left:
        raise problems.error(left)
    values = frame[list(spec.value_columns)].to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        raise DataError(
            "The value columns hold infinite values; replace them (or mark them missing and "
            "interpolate) before windowing the series."
        )
    times = None
    if spec.time_column is not None:
        t, kind = _time_axis(frame, spec)
        times = pd.DatetimeIndex(t.astype(np.int64)) if kind == "datetime" else pd.Index(t)
    return Series(
        values=values,
        times=times,
        index=frame.index.to_numpy(),
        columns=spec.value_columns,
        step=problems.step,
    )


# --- windows -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WindowSpec:
    """Sliding windows: ``length`` points, a new window every ``stride`` points.

    ``normalise``: "none", "demean" (each channel's window mean subtracted) or "zscore" (each
    channel scaled to mean 0 and standard deviation 1 within its window; a flat window becomes
    zeros). ``reason`` says why these values were proposed.
    """

    length: int
    stride: int = 1
    normalise: str = "none"
    reason: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.length, bool) or int(self.length) != self.length or self.length < 1:
            raise ValueError(f"the window length must be a whole number >= 1, got {self.length!r}")
        if isinstance(self.stride, bool) or int(self.stride) != self.stride or self.stride < 1:
            raise ValueError(f"the stride must be a whole number >= 1, got {self.stride!r}")
        if self.normalise not in NORMALISATIONS:
            raise ValueError(
                f"normalise must be one of {', '.join(NORMALISATIONS)}, got {self.normalise!r}"
            )
        object.__setattr__(self, "length", int(self.length))
        object.__setattr__(self, "stride", int(self.stride))


def _as_points(values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise DataError(f"A series is points x channels; got an array of {arr.ndim} dimensions.")
    if arr.shape[1] == 0:
        raise DataError("The series has no value column; choose at least one numeric column.")
    return arr


def detect_period(values: Any, *, max_lag: int | None = None) -> tuple[int | None, float]:
    """Return (period, autocorrelation there), or (None, best correlation) when none is found.

    The autocorrelation is averaged over the channels; the period is the lag of its highest
    local peak after it first drops below zero, if that peak reaches 0.3. Lags run up to
    ``max_lag`` (default: a third of the points, so a cycle repeats at least three times).
    """
    x = _as_points(values)
    n = x.shape[0]
    max_lag = n // 3 if max_lag is None else min(int(max_lag), n - 1)
    if max_lag < 2:
        return None, 0.0
    centred = x - x.mean(axis=0)
    size = 1 << int(math.ceil(math.log2(2 * n)))
    spectrum = np.fft.rfft(centred, size, axis=0)
    acf = np.fft.irfft(spectrum * np.conj(spectrum), size, axis=0)[: max_lag + 1]
    power = acf[0]
    usable = power > 0
    if not usable.any():
        return None, 0.0  # every channel is flat
    acf = (acf[:, usable] / power[usable]).mean(axis=1)
    below = np.flatnonzero(acf < 0)
    if below.size == 0:
        return None, float(acf[1:].max(initial=0.0))
    lags = np.arange(int(below[0]), max_lag)
    if lags.size < 3:
        return None, 0.0
    inner = lags[1:-1]
    peaks = inner[(acf[inner] >= acf[inner - 1]) & (acf[inner] >= acf[inner + 1])]
    if peaks.size == 0:
        return None, float(acf[lags].max())
    best = int(peaks[np.argmax(acf[peaks])])
    if acf[best] < MIN_PERIOD_CORRELATION:
        return None, float(acf[best])
    return best, float(acf[best])


def propose_window(
    values: Any,
    *,
    normalise: str = "none",
    max_length: int = MAX_WINDOW,
    target_windows: int = TARGET_WINDOWS,
) -> WindowSpec:
    """Return a proposed window for the series, with the reason as a sentence.

    The length is the period found by :func:`detect_period` (one window covers one cycle),
    clipped to [8, ``max_length``] and to a quarter of the series (at least four windows);
    without a period it is 100 points (DeepOD's default), clipped the same way. The stride is
    1 unless that gives more than ``target_windows`` windows; then it is the smallest stride
    that gives at most about that many (a point still lies in length / stride windows).
    Raises DataError when the series is too short to hold four windows of 8 points.
    """
    x = _as_points(values)
    n = x.shape[0]
    longest = min(int(max_length), n // MIN_WINDOWS)
    if longest < MIN_WINDOW:
        raise DataError(
            f"The series has {n:,} points: too few to analyse in windows (a proposal needs at "
            f"least {MIN_WINDOW * MIN_WINDOWS} points, {MIN_WINDOWS} windows of {MIN_WINDOW}). "
            "Use a longer series, or choose a window length yourself."
        )
    period, correlation = detect_period(x)
    if period is not None:
        length = min(max(period, MIN_WINDOW), longest)
        reason = (
            f"The values repeat every {period:,} points (autocorrelation {correlation:.2f} at "
            f"that lag), so a window covers one cycle"
        )
        if length < period:
            limit = "a quarter of the series" if length == n // MIN_WINDOWS else "the longest"
            reason += f", shortened to {length:,} points ({limit} proposed)"
        elif length > period:
            reason += f", lengthened to {length:,} points (the shortest proposed)"
    else:
        length = min(DEFAULT_WINDOW, longest)
        reason = (
            "No repeating pattern was found (the autocorrelation has no peak of at least "
            f"{MIN_PERIOD_CORRELATION}), so the window is {length:,} points"
            + (" (DeepOD's default)" if length == DEFAULT_WINDOW else " (a quarter of the series)")
        )
    n_windows = n - length + 1
    stride = max(1, math.ceil(n_windows / max(int(target_windows), 1)))
    count = len(window_starts(n, WindowSpec(length, stride)))
    if stride == 1:
        reason += f"; stride 1 (a window starts at every point: {count:,} windows)."
    else:
        reason += (
            f"; stride {stride} keeps the table to {count:,} windows (about {target_windows:,}), "
            f"each point lying in about {max(length // stride, 1):,} of them."
        )
    return WindowSpec(length, stride, normalise, reason)


def window_starts(n_points: int, window: WindowSpec) -> np.ndarray:
    """Return the first point of every window: every ``stride`` points, plus one ending last.

    Raises DataError when the series is shorter than one window.
    """
    n_points = int(n_points)
    if n_points < window.length:
        raise DataError(
            f"The series has {n_points:,} points, fewer than one window of {window.length:,}. "
            f"Choose a window of at most {n_points:,} points, or use a longer series."
        )
    last = n_points - window.length
    starts = np.arange(0, last + 1, window.stride, dtype=np.int64)
    if starts[-1] != last:
        starts = np.r_[starts, last]
    return starts


def make_windows(values: Any, window: WindowSpec, *, rows: Any = None) -> np.ndarray:
    """Return one row per window: length x channels numbers, time-major (float32).

    ``values`` is points x channels (or one channel as a 1-D array) from
    :func:`series_values`. ``rows``: the numbers of the windows to build (in
    :func:`window_starts` order), for a chunk of a long series; default all. Only the windows
    asked for are copied out of a sliding view, so memory is bounded by ``rows``. Raises
    DataError for a series shorter than one window.
    """
    x = _as_points(values)
    if not np.isfinite(x).all():
        raise DataError(
            "The series has missing or infinite values; fill them first (fix_series with "
            "missing='interpolate')."
        )
    starts = window_starts(x.shape[0], window)
    if rows is not None:
        starts = starts[np.asarray(rows, dtype=np.int64)]
    view = np.lib.stride_tricks.sliding_window_view(x, window.length, axis=0)[starts]
    # One float32 copy, C order: (n_windows, length, channels).
    windows = np.array(np.swapaxes(view, 1, 2), dtype=np.float32, order="C")
    if window.normalise != "none":
        windows -= windows.mean(axis=1, keepdims=True)
        if window.normalise == "zscore":
            spread = windows.std(axis=1, keepdims=True)
            windows /= np.where(spread > 0, spread, 1.0)
    return windows.reshape(len(starts), -1)


def point_scores(
    window_scores: Any, n_points: int, window: WindowSpec, how: str = "max"
) -> np.ndarray:
    """Return one score per point: the max (or mean) of the scores of the windows covering it.

    ``window_scores`` holds one score per window of :func:`make_windows`, in order. The max
    (default) lets one anomalous window raise every point in it alike, so nothing in that
    window is missed, but a flagged stretch grows by up to a window on each side. The mean
    peaks where anomalous windows overlap most, so events sit closer to the anomaly, but a
    short anomaly is diluted by the ordinary windows around it. On synthetic validation series
    (``ad_core.bench.series.synthetic_series``) the max ranked points better on average over
    the autoencoder, PCA and Isolation Forest (benchmarks/series.md, the choices).
    """
    if how not in ("max", "mean"):
        raise ValueError(f"how must be 'max' or 'mean', got {how!r}")
    starts = window_starts(n_points, window)
    scores = np.asarray(window_scores, dtype=np.float64)
    if scores.shape != starts.shape:
        raise ValueError(
            f"expected {starts.size} window scores (one per window), got shape {scores.shape}"
        )
    length = window.length
    if how == "max":
        # Point p is covered by the windows starting in [p - length + 1, p].
        at_start = np.full(n_points + length - 1, -np.inf)
        at_start[starts + length - 1] = scores
        view = np.lib.stride_tricks.sliding_window_view(at_start, length)
        return view.max(axis=1)
    total = np.zeros(n_points + 1)
    count = np.zeros(n_points + 1)
    np.add.at(total, starts + 1, scores)
    np.add.at(count, starts + 1, 1.0)
    total, count = np.cumsum(total), np.cumsum(count)
    lo = np.maximum(np.arange(n_points) - length + 1, 0)
    hi = np.arange(n_points) + 1
    return (total[hi] - total[lo]) / (count[hi] - count[lo])


def window_labels(point_labels: Any, window: WindowSpec) -> np.ndarray:
    """Return a label per window from labels per point (1 anomaly, 0 normal, -1 unlabelled).

    A window holding a point labelled anomaly is an anomaly (1). One holding no such point
    and at least half its points labelled normal is normal (0): the expert vouched for most
    of it, and asking for every point would leave a stretch labelled normal without a single
    normal window unless it happened to line up with window starts. Any other is unlabelled
    (-1).
    """
    labels = np.asarray(point_labels, dtype=np.int64)
    starts = window_starts(labels.size, window)
    anomalous = np.r_[0, np.cumsum(labels == 1)]
    normal = np.r_[0, np.cumsum(labels == 0)]
    n_anomalous = anomalous[starts + window.length] - anomalous[starts]
    n_normal = normal[starts + window.length] - normal[starts]
    return np.where(n_anomalous > 0, 1, np.where(2 * n_normal >= window.length, 0, -1))


# --- events ---------------------------------------------------------------------------------------
def events(
    scores: Any,
    threshold: float,
    *,
    min_gap: int = 0,
    times: Sequence[Any] | None = None,
) -> pd.DataFrame:
    """Return the flagged stretches of a series, one row per event, in time order.

    A point is flagged when its score is above ``threshold`` (:func:`ad_core.thresholds.flag`);
    flagged points with at most ``min_gap`` unflagged points between them form one event.
    Columns: ``start`` and ``end`` (0-based positions, inclusive), ``length`` (points, from
    start to end), ``peak`` (position of the highest score), ``peak_score``, and with ``times``
    also ``start_time``, ``end_time`` and ``peak_time``.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"scores must be one per point (1-D), got shape {s.shape}")
    if isinstance(min_gap, bool) or int(min_gap) != min_gap or min_gap < 0:
        raise ValueError(f"min_gap must be a whole number >= 0, got {min_gap!r}")
    starts, ends = _runs(flag(s, threshold))
    if starts.size > 1:
        # Join runs separated by at most min_gap unflagged points.
        joined = np.flatnonzero(starts[1:] - ends[:-1] - 1 > int(min_gap))
        starts = starts[np.r_[0, joined + 1]]
        ends = ends[np.r_[joined, ends.size - 1]]
    peaks = np.array(
        [int(a + np.argmax(s[a : b + 1])) for a, b in zip(starts, ends, strict=True)],
        dtype=np.int64,
    )
    table = pd.DataFrame(
        {
            "start": starts.astype(np.int64),
            "end": ends.astype(np.int64),
            "length": (ends - starts + 1).astype(np.int64),
            "peak": peaks,
            "peak_score": s[peaks] if peaks.size else np.zeros(0),
        }
    )
    if times is not None:
        t = pd.Index(times)
        if len(t) != s.size:
            raise ValueError(f"times must have one entry per score ({s.size}), got {len(t)}")
        table["start_time"] = t[starts] if starts.size else t[:0]
        table["end_time"] = t[ends] if ends.size else t[:0]
        table["peak_time"] = t[peaks] if peaks.size else t[:0]
    return table
