"""Series in ad_core: windows, scores back on points, events, and every kind of bad series."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ad_core import series
from ad_core.data import DataError, infer_schema, load_table
from ad_core.series import SeriesSpec, WindowSpec


def _frame(n: int = 200, step: str = "5min", start: str = "2024-01-01") -> pd.DataFrame:
    times = pd.date_range(start, periods=n, freq=step)
    values = np.sin(np.arange(n) * 2 * np.pi / 20)
    return pd.DataFrame({"timestamp": times.astype(str), "value": values})


SPEC = SeriesSpec("timestamp", ("value",))


# --- what a series is --------------------------------------------------------------------------
def test_a_timestamp_and_a_numeric_column_are_proposed_as_a_series_with_a_reason():
    frame = _frame()
    spec = series.detect_series(frame, infer_schema(frame))
    assert spec == SeriesSpec("timestamp", ("value",), spec.reason)
    assert "'timestamp' holds times" in spec.reason and "'value'" in spec.reason


def test_a_table_without_a_timestamp_is_not_proposed_as_a_series():
    frame = pd.DataFrame({"a": np.arange(50.0) % 7, "b": np.arange(50.0) % 3})
    assert series.detect_series(frame, infer_schema(frame)) is None


def test_no_numeric_column_is_a_clear_error():
    frame = pd.DataFrame({"timestamp": _frame()["timestamp"], "state": ["on", "off"] * 100})
    assert series.detect_series(frame, infer_schema(frame)) is None
    with pytest.raises(DataError, match="at least one numeric value column"):
        series.series_values(frame, SeriesSpec("timestamp", ()))
    with pytest.raises(DataError, match="'state' do not hold numbers"):
        series.series_values(frame, SeriesSpec("timestamp", ("state",)))


def test_a_clean_series_has_no_problems_and_keeps_its_times_and_rows():
    frame = _frame(60)
    problems = series.find_problems(frame, SPEC)
    assert problems.ok and problems.step == pd.Timedelta("5min")
    s = series.series_values(frame, SPEC)
    assert s.values.shape == (60, 1) and len(s) == 60 and s.n_channels == 1
    assert s.times[0] == pd.Timestamp("2024-01-01") and list(s.index) == list(range(60))


def test_ordered_rows_without_a_time_column_are_a_series_too():
    frame = pd.DataFrame({"x": np.arange(40.0), "y": -np.arange(40.0)})
    s = series.series_values(frame, SeriesSpec(None, ("x", "y")))
    assert s.values.shape == (40, 2) and s.times is None


# --- bad series: found, explained, fixed only on request ----------------------------------------
def test_unsorted_rows_are_reported_refused_and_sorted_on_request():
    frame = _frame(50).iloc[np.r_[0:10, 20:30, 10:20, 30:50]]
    problems = series.find_problems(frame, SPEC)
    assert problems.kinds == ("unsorted",)
    assert problems.unsorted == (20,)  # the 21st row goes back in time
    with pytest.raises(DataError, match="earlier in time than the row before.*sort the rows"):
        series.series_values(frame, SPEC)
    fixed, notes = series.fix_series(frame, SPEC, sort=True)
    assert series.find_problems(fixed, SPEC).ok
    assert notes == ["Sorted the rows by time (20 rows moved)."]
    assert list(fixed.index) == list(range(50))  # the rows keep their identity


def test_duplicate_times_are_reported_and_merged_as_chosen():
    frame = _frame(30)
    extra = frame.iloc[[5, 5]].assign(value=[10.0, 20.0])
    frame = pd.concat([frame, extra]).sort_index(kind="stable").reset_index(drop=True)
    problems = series.find_problems(frame, SPEC)
    assert problems.kinds == ("duplicates",) and len(problems.duplicates) == 2
    assert "2024-01-01 00:25:00" in problems.message("duplicates")
    with pytest.raises(DataError, match="repeat a time.*keep the first row.*average"):
        series.series_values(frame, SPEC)
    first, _ = series.fix_series(frame, SPEC, duplicates="first")
    mean, notes = series.fix_series(frame, SPEC, duplicates="mean")
    assert len(first) == len(mean) == 30 and series.find_problems(mean, SPEC).ok
    original = np.sin(5 * 2 * np.pi / 20)
    assert first["value"].iloc[5] == pytest.approx(original)
    assert mean["value"].iloc[5] == pytest.approx((original + 10 + 20) / 3)
    assert "averaged" in notes[0] and "2 rows fewer" in notes[0]


def test_a_gap_is_reported_with_its_size_and_can_be_kept_or_resampled_and_filled():
    frame = _frame(100).drop(index=range(40, 52))  # 12 points missing
    problems = series.find_problems(frame, SPEC)
    assert problems.kinds == ("gaps",)
    (gap,) = problems.gaps
    assert gap.missing == 12 and gap.after == pd.Timestamp("2024-01-01 03:15")
    assert "12 points missing at the usual step of 5 min" in problems.message("gaps")
    with pytest.raises(DataError, match="gap"):
        series.series_values(frame, SPEC)
    kept = series.series_values(frame, SPEC, accept=("gaps",))
    assert len(kept) == 88
    fixed, notes = series.fix_series(frame, SPEC, resample_step="usual", missing="interpolate")
    s = series.series_values(fixed, SPEC)
    assert len(s) == 100 and series.find_problems(fixed, SPEC).ok
    assert notes == [
        "Resampled to a regular step of 5 min (mean per step): 88 rows became 100.",
        "Interpolated 12 missing values.",
    ]
    # Interpolation is linear in time between the points either side of the gap.
    np.testing.assert_allclose(
        s.values[40:52, 0], np.interp(np.arange(40, 52), [39, 52], s.values[[39, 52], 0])
    )


def test_irregular_steps_are_reported_and_resampling_makes_them_regular():
    frame = _frame(100)
    jitter = pd.to_timedelta(np.r_[0, np.tile([0, 90], 49), 0], unit="s")
    frame["timestamp"] = (pd.to_datetime(frame["timestamp"]) + jitter).astype(str)
    problems = series.find_problems(frame, SPEC)
    assert problems.kinds == ("irregular",)
    assert problems.irregular_steps > 50
    assert "not a whole number of the usual step" in problems.message("irregular")
    with pytest.raises(DataError, match="evenly"):
        series.series_values(frame, SPEC)
    assert len(series.series_values(frame, SPEC, accept=("irregular",))) == 100
    fixed, _ = series.fix_series(frame, SPEC, resample_step="5min")
    assert series.find_problems(fixed, SPEC).ok and len(fixed) == 100


def test_a_nan_stretch_is_reported_never_accepted_and_interpolated_or_dropped():
    frame = _frame(80)
    frame.loc[30:36, "value"] = np.nan
    frame.loc[60, "value"] = np.nan
    problems = series.find_problems(frame, SPEC)
    assert problems.kinds == ("missing",)
    assert [(m.start, m.end, m.length) for m in problems.missing] == [(30, 36, 7), (60, 60, 1)]
    assert "the longest is 7 rows of 'value' from data row 31" in problems.message("missing")
    with pytest.raises(ValueError, match="fix missing"):
        series.series_values(frame, SPEC, accept=("missing",))
    with pytest.raises(DataError, match="interpolate them, or drop those rows"):
        series.series_values(frame, SPEC)
    filled, notes = series.fix_series(frame, SPEC, missing="interpolate")
    assert notes == ["Interpolated 8 missing values."]
    assert np.isfinite(series.series_values(filled, SPEC).values).all()
    dropped, notes = series.fix_series(frame, SPEC, missing="drop")
    assert len(dropped) == 72 and notes == ["Dropped 8 rows with missing values."]
    # Dropping rows leaves gaps in time: that is now a problem of its own to decide on.
    assert series.find_problems(dropped, SPEC).kinds == ("gaps",)


def test_unreadable_times_are_reported_and_dropped_on_request():
    frame = _frame(40)
    frame.loc[7, "timestamp"] = "n/a"
    problems = series.find_problems(frame, SPEC)
    assert problems.kinds[0] == "unreadable_times" and problems.unreadable_times == (7,)
    assert "data row(s) 8" in problems.message("unreadable_times") and "'n/a'" in problems.message(
        "unreadable_times"
    )
    fixed, notes = series.fix_series(frame, SPEC, drop_unreadable=True)
    assert len(fixed) == 39 and notes[0].startswith("Dropped 1 row whose time")


def test_every_problem_at_once_is_listed_and_fixed_in_one_call():
    frame = _frame(120)
    frame.loc[3, "timestamp"] = "garbage"
    frame.loc[50:53, "value"] = np.nan
    frame = pd.concat([frame.iloc[60:], frame.iloc[:60], frame.iloc[[10]]])
    frame = frame.drop(index=range(80, 90))
    problems = series.find_problems(frame, SPEC)
    assert set(problems.kinds) == {"unreadable_times", "unsorted", "duplicates", "gaps", "missing"}
    message = str(problems.error())
    assert message.count("\n- ") == 5
    fixed, notes = series.fix_series(
        frame,
        SPEC,
        drop_unreadable=True,
        sort=True,
        duplicates="first",
        resample_step="usual",
        missing="interpolate",
    )
    assert series.find_problems(fixed, SPEC).ok and len(notes) == 5
    assert len(series.series_values(fixed, SPEC)) == 120


def test_numeric_times_are_a_time_axis_too():
    frame = pd.DataFrame({"t": np.r_[0.0:50.0, 60.0:100.0], "v": np.arange(90.0)})
    problems = series.find_problems(frame, SeriesSpec("t", ("v",)))
    assert problems.kinds == ("gaps",) and problems.gaps[0].missing == 10 and problems.step == 1.0


# --- windows -----------------------------------------------------------------------------------
def test_windows_are_time_major_rows_and_the_last_window_ends_on_the_last_point():
    values = np.c_[np.arange(10.0), 100 + np.arange(10.0)]
    window = WindowSpec(length=4, stride=3)
    X = series.make_windows(values, window)
    np.testing.assert_array_equal(series.window_starts(10, window), [0, 3, 6])
    assert X.shape == (3, 8) and X.dtype == np.float32
    np.testing.assert_array_equal(X[1], [3, 103, 4, 104, 5, 105, 6, 106])
    np.testing.assert_array_equal(X[1].reshape(4, 2), values[3:7])
    # A stride that does not land on the end gets one more window ending on the last point.
    np.testing.assert_array_equal(series.window_starts(11, window), [0, 3, 6, 7])


def test_per_window_normalisation():
    values = np.r_[np.zeros(5), 10 + np.arange(5.0)]
    demeaned = series.make_windows(values, WindowSpec(5, 5, "demean"))
    np.testing.assert_allclose(demeaned[1], np.arange(5.0) - 2)
    z = series.make_windows(values, WindowSpec(5, 5, "zscore"))
    np.testing.assert_allclose(z[0], 0.0)  # a flat window becomes zeros, not NaN
    np.testing.assert_allclose([z[1].mean(), z[1].std()], [0.0, 1.0], atol=1e-6)


def test_a_series_shorter_than_one_window_is_a_clear_error():
    with pytest.raises(DataError, match="has 30 points, fewer than one window of 50"):
        series.make_windows(np.arange(30.0), WindowSpec(50))
    with pytest.raises(DataError, match="too few to analyse in windows"):
        series.propose_window(np.arange(20.0))
    with pytest.raises(DataError, match="missing or infinite"):
        series.make_windows(np.r_[np.arange(30.0), np.nan], WindowSpec(5))


def test_the_proposed_window_is_the_period_with_its_reason():
    rng = np.random.default_rng(0)
    t = np.arange(3000)
    values = np.sin(2 * np.pi * t / 48) + 0.2 * rng.normal(size=t.size)
    window = series.propose_window(values)
    assert window.length == 48
    assert "repeat every 48 points" in window.reason and "one cycle" in window.reason
    # 2,953 windows at stride 1 are more than the target of 2,000: stride 2.
    assert window.stride == 2 and "stride 2 keeps the table to 1,477 windows" in window.reason


def test_without_a_period_the_window_is_deepods_default():
    values = np.random.default_rng(1).normal(size=1500)
    window = series.propose_window(values, target_windows=5000)
    assert (window.length, window.stride) == (100, 1)
    assert "No repeating pattern" in window.reason and "DeepOD's default" in window.reason


def test_the_period_of_nab_daily_series_is_one_day(shared_data):
    frame = load_table(shared_data / "nab" / "artificialWithAnomaly" / "art_daily_jumpsup.csv")
    spec = series.detect_series(frame, infer_schema(frame))
    s = series.series_values(frame, spec)
    period, correlation = series.detect_period(s.values)
    assert period == 288 and correlation > 0.8  # 288 five-minute steps: one day


# --- scores back on points -----------------------------------------------------------------------
def test_point_scores_are_the_max_or_mean_of_the_windows_covering_each_point():
    window = WindowSpec(length=3, stride=2)  # starts 0, 2, 4 for 7 points
    scores = np.array([1.0, 5.0, 2.0])
    np.testing.assert_array_equal(
        series.point_scores(scores, 7, window, how="max"), [1, 1, 5, 5, 5, 2, 2]
    )
    np.testing.assert_allclose(
        series.point_scores(scores, 7, window, how="mean"), [1, 1, 3, 5, 3.5, 2, 2]
    )
    with pytest.raises(ValueError, match="expected 3 window scores"):
        series.point_scores(scores[:2], 7, window)


def test_point_scores_peak_at_an_anomaly_inside_a_long_series():
    values = np.sin(np.arange(1000) * 2 * np.pi / 25)
    values[600] += 5
    window = WindowSpec(25, 1)
    X = series.make_windows(values, window)
    window_scores = np.abs(
        X - series.make_windows(np.sin(np.arange(1000) * 2 * np.pi / 25), window)
    ).sum(1)
    mean = series.point_scores(window_scores, 1000, window, how="mean")
    assert int(np.argmax(mean)) == 600 and mean.shape == (1000,)
    # The max raises every point of an anomalous window alike: 25 points either side of 600.
    peak = series.point_scores(window_scores, 1000, window)
    assert np.flatnonzero(peak == peak.max()).tolist() == list(range(576, 625))


def test_window_labels_come_from_point_labels():
    labels = np.array([0, 0, 0, 0, 1, -1, 0, 0, -1, -1, -1])
    np.testing.assert_array_equal(
        series.window_labels(labels, WindowSpec(3, 1)), [0, 0, 1, 1, 1, 0, 0, -1, -1]
    )
    # Normal takes at least half the window labelled normal, and no anomaly in it.
    np.testing.assert_array_equal(
        series.window_labels(np.array([0, 0, -1, -1, 0, -1, -1, -1]), WindowSpec(4, 2)),
        [0, -1, -1],
    )


# --- events -------------------------------------------------------------------------------------
def test_flagged_points_merge_into_events_across_short_gaps():
    s = np.zeros(30)
    s[[3, 4, 5]] = [2, 5, 3]
    s[8] = 4  # two unflagged points after the first run
    s[20:23] = [1, 9, 1]
    table = series.events(s, 0.5, min_gap=2)
    assert table[["start", "end", "length", "peak"]].to_numpy().tolist() == [
        [3, 8, 6, 4],
        [20, 22, 3, 21],
    ]
    assert table["peak_score"].tolist() == [5.0, 9.0]
    separate = series.events(s, 0.5, min_gap=1)
    assert separate["start"].tolist() == [3, 8, 20]


def test_events_carry_times_and_an_empty_result_is_a_table():
    s = np.zeros(10)
    s[4] = 3.0
    times = pd.date_range("2024-05-01", periods=10, freq="h")
    table = series.events(s, 1.0, times=times)
    assert table["start_time"].iloc[0] == pd.Timestamp("2024-05-01 04:00")
    assert table["peak_time"].iloc[0] == table["end_time"].iloc[0]
    empty = series.events(np.zeros(10), 1.0, times=times)
    assert len(empty) == 0 and "start_time" in empty.columns
    with pytest.raises(ValueError, match="min_gap"):
        series.events(s, 1.0, min_gap=-1)


def test_times_with_different_offsets_are_compared_in_utc():
    frame = pd.DataFrame(
        {
            "t": ["2024-01-01 01:00+01:00", "2024-01-01 02:05+02:00", "2024-01-01 00:10+00:00"],
            "v": [1.0, 2.0, 3.0],
        }
    )
    problems = series.find_problems(frame, SeriesSpec("t", ("v",)))
    assert problems.ok and problems.step == pd.Timedelta("5min")  # 00:00, 00:05, 00:10 UTC
