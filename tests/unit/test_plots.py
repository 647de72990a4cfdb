"""The score histogram's data: a range that shows the bulk, and exact flagged counts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ad_core.plots import bulk_upper, flagged_counts, histogram_data
from ad_core.thresholds import flag


def lookup(table: dict, n_rows: int, t: float) -> int:
    """Return the count the table gives at t, as its docstring (and the chart) reads it."""
    i = int(np.searchsorted(table["values"], t, side="right")) - 1
    return n_rows if i < 0 else table["above"][i]


def heavy_tailed(n: int = 5000, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).lognormal(mean=0.0, sigma=1.5, size=n)


def test_bulk_range_counts_a_heavy_tail_in_one_overflow_bar():
    s = heavy_tailed()
    labels = (s > np.quantile(s, 0.9)).astype(int)
    data = histogram_data(s, labels)
    cut = data["edges"][-1]
    assert data["x_range"] == "bulk" and data["overflow_from"] == cut == bulk_upper(s)
    assert cut < s.max() / 10  # the axis no longer stretches to the extreme scores
    n_over = int((s > cut).sum())
    assert data["overflow_rows"] == n_over == sum(x["overflow"] for x in data["series"])
    assert 0 < n_over <= 0.05 * s.size
    for series, value in zip(data["series"], (0, 1), strict=True):
        group = s[labels == value]
        assert sum(series["counts"]) == int((group <= cut).sum())
        assert series["overflow"] == int((group > cut).sum())


def test_bulk_range_is_the_full_range_when_there_is_no_tail():
    s = np.random.default_rng(1).normal(size=3000)
    data = histogram_data(s)
    assert data["overflow_from"] is None and data["overflow_rows"] == 0
    assert data["edges"][-1] == pytest.approx(s.max())
    assert sum(data["series"][0]["counts"]) == s.size


def test_full_and_log_ranges_bin_every_score():
    s = heavy_tailed()
    full = histogram_data(s, x_range="full")
    assert full["overflow_from"] is None and full["edges"][-1] == s.max()
    assert np.allclose(np.diff(full["edges"]), np.diff(full["edges"])[0])
    log = histogram_data(s, x_range="log")
    assert log["x_scale"] == "log" and log["overflow_from"] is None
    assert log["edges"][0] == s.min() and log["edges"][-1] == s.max()
    assert np.allclose(np.diff(np.log(log["edges"])), np.log(s.max() / s.min()) / 80)
    assert sum(log["series"][0]["counts"]) == s.size
    assert log["ticks"] and all(s.min() <= t <= s.max() for t in log["ticks"])
    with pytest.raises(ValueError, match="positive scores"):
        histogram_data(s - 1.0, x_range="log")
    with pytest.raises(ValueError, match="x_range"):
        histogram_data(s, x_range="wide")


def test_flagged_counts_are_exact_at_ties_edges_and_between_scores():
    s = np.round(heavy_tailed(3000), 1)  # many ties
    data = histogram_data(s)
    table = data["counts"]
    assert table["exact"] and table["values"] == sorted(set(s.tolist()))
    values = np.asarray(table["values"])
    probes = [s.min() - 1, s.max(), s.max() + 1, *data["edges"], *values, *(values + 0.05)]
    for t in probes:
        assert lookup(table, s.size, t) == int(flag(s, t).sum()), t


def test_thinned_flagged_counts_are_exact_at_their_points():
    s = heavy_tailed(50_000)
    table = flagged_counts(s, max_points=501)
    assert not table["exact"] and len(table["values"]) <= 501
    assert table["values"][0] == s.min() and table["values"][-1] == s.max()
    for v, above in zip(table["values"], table["above"], strict=True):
        assert above == int((s > v).sum())


def test_histogram_data_is_plain_json():
    data = histogram_data(heavy_tailed(500), np.r_[np.zeros(490), np.ones(10)].astype(int))
    assert json.loads(json.dumps(data, allow_nan=False)) == data


def test_learning_curve_figure_plots_auroc_and_auprc_against_labels():
    from ad_core.plots import learning_curve_figure

    points = [
        {"run": 1, "n_labels": 0, "auroc": 0.7, "auprc": 0.3},
        {"run": 4, "n_labels": 20, "auroc": 0.85, "auprc": 0.5},
    ]
    fig = learning_curve_figure(points)
    auroc_trace, auprc_trace = fig.data
    assert list(auroc_trace.x) == [0, 20] and list(auroc_trace.y) == [0.7, 0.85]
    assert list(auprc_trace.y) == [0.3, 0.5] and list(auroc_trace.text) == ["#1", "#4"]


def test_series_figure_shades_events_and_keeps_a_spike_when_reduced():
    from ad_core.plots import SERIES_MAX_POINTS, series_figure, stretches

    n = SERIES_MAX_POINTS * 5
    x = np.arange(n)
    values = np.sin(x / 50.0)
    values[77_777] = 40.0  # one spike in 100k points
    scores = np.abs(values)
    fig = series_figure(x, {"v": values}, scores, 5.0, events=[(77_770, 77_790)])
    line, score = fig.data
    assert len(line.x) <= SERIES_MAX_POINTS + 2 and 77_777 in set(line.x)
    assert max(line.y) == 40.0 and max(score.y) == 40.0
    rects = [s for s in fig.layout.shapes if s.type == "rect"]
    assert len(rects) == 2  # the event on both panels
    assert fig.layout.xaxis2.rangeslider.visible
    assert stretches(np.array([0, 1, 1, 0, 1], dtype=bool)) == [(1, 2), (4, 4)]


def _rects(fig) -> list[dict]:
    """The figure's rectangles as the browser gets them (Streamlit sends ``to_json``)."""
    return [s for s in json.loads(fig.to_json())["layout"]["shapes"] if s["type"] == "rect"]


@pytest.mark.parametrize("unit", ["ns", "us", "s"])
def test_series_figure_shades_events_and_labels_at_times_the_date_axis_reads(unit):
    import pandas as pd

    from ad_core.plots import series_figure

    # As the app passes them: np.asarray of the series' DatetimeIndex (datetime64[ns]).
    times = pd.date_range("2026-03-02", periods=500, freq="5min").as_unit(unit).to_numpy()
    rng = np.random.default_rng(0)
    fig = series_figure(
        times,
        {"temperature": rng.normal(size=500)},
        rng.random(500),
        0.9,
        events=[(100, 140), (300, 300)],
        labelled={"anomaly": [(100, 120)], "normal": [(400, 450)]},
    )
    rects = _rects(fig)
    assert len(rects) == 2 * 2 + 2  # each event on both panels, each label on the scores
    lo, hi = pd.Timestamp(times[0]), pd.Timestamp(times[-1])
    for rect in rects:
        for end in ("x0", "x1"):
            # an ISO date string, not nanoseconds (read as milliseconds by a date axis)
            assert isinstance(rect[end], str), rect
            assert lo <= pd.Timestamp(rect[end]) <= hi, rect
    events = [(r["xref"], pd.Timestamp(r["x0"]), pd.Timestamp(r["x1"])) for r in rects[:4]]
    assert events == [
        (ref, pd.Timestamp(times[a]), pd.Timestamp(times[b]))
        for a, b in [(100, 140), (300, 300)]
        for ref in ("x", "x2")
    ]
    band = rects[4:]
    assert [r["xref"] for r in band] == ["x2", "x2"] and all(r["y1"] == 0.05 for r in band)
    assert [pd.Timestamp(r["x0"]) for r in band] == [
        pd.Timestamp(times[100]),
        pd.Timestamp(times[400]),
    ]
    # a one-point event has no width: an outline makes it visible
    assert rects[2]["line"]["width"] > 0 and rects[0]["line"]["width"] == 0


@pytest.mark.parametrize("kind", ["positions", "numbers", "timestamps"])
def test_series_figure_shades_at_the_x_values_whatever_they_are(kind):
    import pandas as pd

    from ad_core.plots import series_figure

    x = {
        "positions": np.arange(200),
        "numbers": np.linspace(10.0, 30.0, 200),
        "timestamps": pd.date_range("2026-01-01", periods=200, freq="h", tz="UTC"),
    }[kind]
    fig = series_figure(
        x,
        {"v": np.zeros(200)},
        np.zeros(200),
        1.0,
        events=[(5, 9)],
        labelled={"anomaly": [(50, 60)]},
    )
    ends = [(r["x0"], r["x1"]) for r in _rects(fig)]
    if kind == "timestamps":
        ends = [(pd.Timestamp(a), pd.Timestamp(b)) for a, b in ends]
    assert ends == [(x[5], x[9]), (x[5], x[9]), (x[50], x[60])]


def test_series_figure_standardises_several_columns_and_keeps_raw_values_in_hover():
    from ad_core.plots import series_figure

    x = np.arange(100)
    fig = series_figure(x, {"a": x * 1000.0, "b": -x / 10.0}, np.zeros(100), 1.0)
    a, b, _ = fig.data
    assert abs(np.mean(a.y)) < 1e-9 and abs(np.std(a.y) - 1) < 1e-9
    assert a.customdata[-1][0] == 99_000.0


def test_bucket_extremes_are_each_buckets_first_min_and_max_nan_skipped():
    from ad_core.plots import _bucket_extremes

    rng = np.random.default_rng(3)
    for trial in range(60):
        n = int(rng.integers(20, 2000))
        # ties (integers) and NaN, in buckets of uneven sizes not starting at 0
        v = rng.integers(0, 4, n).astype(float) if trial % 2 else rng.normal(size=n)
        v[rng.random(n) < 0.1] = np.nan
        cuts = np.sort(rng.choice(np.arange(2, n - 1), int(rng.integers(1, 15)), replace=False))
        edges = np.unique(np.r_[1, cuts, n])
        pairs = list(zip(edges[:-1], edges[1:], strict=True))
        edges = edges[[not np.isnan(v[a:b]).all() for a, b in pairs] + [True]]
        expected = set()
        for a, b in zip(edges[:-1], edges[1:], strict=True):
            expected |= {a + int(np.nanargmin(v[a:b])), a + int(np.nanargmax(v[a:b]))}
        pos, values = _bucket_extremes(v, edges)
        assert pos.tolist() == sorted(expected)
        assert np.array_equal(values, v[pos], equal_nan=True)
    # an all-NaN bucket shows its first point instead of failing
    pos, _ = _bucket_extremes(np.array([1.0, np.nan, np.nan, 3.0]), np.array([0, 1, 3, 4]))
    assert pos.tolist() == [0, 1, 3]


def test_loss_curves_on_very_different_scales_share_a_log_axis():
    from ad_core.plots import loss_curve_figure

    pretrain = [{"stage": "pretrain", "epoch": e, "loss": 150.0 / e} for e in range(1, 6)]
    train = [{"stage": "train", "epoch": e, "loss": 0.01 / e} for e in range(1, 6)]
    assert loss_curve_figure(pretrain + train).layout.yaxis.type == "log"
    # one scale, or a loss at or below 0: a plain axis; a NaN loss is no point
    assert loss_curve_figure(train).layout.yaxis.type != "log"
    flat = loss_curve_figure(train + [{"stage": "train", "epoch": 6, "loss": float("nan")}])
    assert len(flat.data[0].x) == 5
    signed = [{"stage": "train", "epoch": e, "loss": v} for e, v in enumerate([-1.0, 200.0])]
    assert loss_curve_figure(signed).layout.yaxis.type != "log"


def test_bucket_extremes_of_a_column_with_no_number_at_all():
    from ad_core.plots import _bucket_extremes

    pos, values = _bucket_extremes(np.full(10, np.nan), np.array([0, 4, 10]))
    assert pos.tolist() == [0, 4] and np.isnan(values).all()


def test_a_series_figure_marks_the_point_asked_about_on_both_panels():
    from ad_core.plots import series_figure

    times = np.datetime64("2026-03-01T00:00", "ns") + np.arange(120) * np.timedelta64(5, "m")
    scores = np.linspace(0.0, 1.0, times.size)
    fig = series_figure(times, {"t": scores * 3}, scores, 0.5, point=7, range_slider=False)
    marker = next(t for t in fig.data if t.name == "this point")
    assert marker.y[0] == scores[7]
    shapes = fig.to_plotly_json()["layout"]["shapes"]
    dotted = [sh for sh in shapes if sh.get("line", {}).get("dash") == "dot"]
    assert len(dotted) == 2  # one per panel, at the point's time (on the date axis' scale)
    assert {str(sh["x0"])[:16] for sh in dotted} == {"2026-03-01T00:35"}
