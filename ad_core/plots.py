"""Plotly figure builders for the dashboard: data in, figure out (no Streamlit, no I/O).

Every function takes plain arrays and returns a ``plotly.graph_objects.Figure`` (or, for the
histogram the threshold component draws itself, a JSON-ready dict), so the same pictures can
be made in a notebook. Colours follow one convention: anomalies red, normal rows slate,
unlabelled rows light grey, the threshold and flagged side orange.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

__all__ = [
    "COLORS",
    "HISTOGRAM_RANGES",
    "bulk_upper",
    "confusion_figure",
    "feature_range_figure",
    "flagged_counts",
    "group_labels",
    "histogram_data",
    "latent_map_figure",
    "learning_curve_figure",
    "loss_curve_figure",
    "pr_figure",
    "rank_shift_figure",
    "roc_figure",
    "score_comparison_figure",
    "score_histogram_figure",
    "sequence_figure",
    "series_figure",
    "stretches",
]

COLORS = {
    "anomaly": "#dc2626",
    "normal": "#475569",
    "unlabelled": "#a8b3c2",
    "threshold": "#c2410c",
    "flagged": "rgba(194, 65, 12, 0.08)",
    "hole": "rgba(124, 58, 237, 0.16)",
    "in_hole": "#7c3aed",
    "band": "rgba(71, 85, 105, 0.18)",
    "row": "#c2410c",
    "before": "#94a3b8",
    "after": "#c2410c",
}
_LAYOUT = dict(margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.2))
#: name of each group value in ``group_labels`` output, and the order groups are stacked in
GROUP_NAMES = {0: "normal", 1: "anomaly", -1: "unlabelled"}


def group_labels(labels: np.ndarray | None) -> list[tuple[str, np.ndarray]]:
    """Return (group name, boolean mask) pairs for labels 0/1/-1, skipping empty groups."""
    if labels is None:
        return []
    labels = np.asarray(labels)
    out = []
    for value in (-1, 0, 1):
        mask = labels == value
        if mask.any():
            out.append((GROUP_NAMES[value], mask))
    return out


#: the score ranges ``histogram_data`` can show (``x_range``), as the app explains them
HISTOGRAM_RANGES = {
    "bulk": "the bulk of the scores; the highest ones share one overflow bar",
    "full": "every score, on a linear axis",
    "log": "every score, on a logarithmic axis (needs positive scores)",
}
#: the largest table of exact flagged counts sent with a histogram (one row per distinct score)
MAX_COUNT_POINTS = 2001


def bulk_upper(scores: np.ndarray) -> float:
    """Return the upper end of the score range that holds the bulk of the scores.

    The larger of Tukey's far-out fence (third quartile + 3 interquartile ranges) and the 95th
    percentile, so an outlying tail beyond it never holds more than 5 % of the rows. Returns
    the highest score when there is no such tail (cutting it would shrink the axis by less
    than a third).
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        return 1.0
    lo, top = float(s.min()), float(s.max())
    q25, q75, q95 = (float(v) for v in np.quantile(s, [0.25, 0.75, 0.95]))
    hi = max(q75 + 3.0 * (q75 - q25), q95)
    if hi <= lo or (top - lo) < 1.5 * (hi - lo):
        return top
    return hi


def flagged_counts(scores: np.ndarray, max_points: int = MAX_COUNT_POINTS) -> dict[str, Any]:
    """Return a table of how many scores lie strictly above each of a set of score values.

    Keys: ``values`` (ascending scores), ``above`` (``above[i]`` = number of scores
    ``> values[i]``, exactly as :func:`ad_core.thresholds.flag` counts), ``exact``. With at
    most ``max_points`` distinct scores the table holds them all and the count at any
    threshold t is ``above[i]`` for the last ``values[i] <= t`` (every row when t is below
    the lowest score): exact (``exact`` True). Otherwise the values are scores at evenly
    spaced ranks, lowest and highest included, and counts between them are estimates.
    """
    s = np.sort(np.asarray(scores, dtype=np.float64))
    if s.size == 0:
        return {"values": [], "above": [], "exact": True}
    values = s[np.r_[s[1:] != s[:-1], True]]  # the distinct scores (s is sorted)
    exact = values.size <= max_points
    if not exact:
        ranks = np.linspace(0, s.size - 1, max(int(max_points), 2)).round().astype(np.int64)
        values = np.unique(s[ranks])
    above = s.size - np.searchsorted(s, values, side="right")
    return {"values": values.tolist(), "above": above.astype(int).tolist(), "exact": bool(exact)}


def _log_ticks(lo: float, hi: float) -> list[float]:
    """Return round tick values (1, 2, 5 times a power of ten) between lo and hi (> 0)."""
    first, last = int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi)))
    steps = (1.0,) if last - first > 3 else (1.0, 2.0, 5.0)
    ticks = [m * 10.0**k for k in range(first, last + 1) for m in steps]
    inside = [float(f"{t:.6g}") for t in ticks if lo <= t <= hi]
    return inside if len(inside) >= 2 else [lo, hi]


def histogram_data(
    scores: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    n_bins: int = 80,
    log_count: bool = False,
    x_range: str = "bulk",
    max_count_points: int = MAX_COUNT_POINTS,
) -> dict[str, Any]:
    """Return the bins of a score histogram as a JSON-ready dict (for the threshold component).

    Anomaly scores are often heavy-tailed, so by default (``x_range="bulk"``) the bins span
    the scores up to :func:`bulk_upper` and the rows above it are counted in one overflow
    bar; ``"full"`` bins every score on a linear axis, ``"log"`` on a logarithmic one (bins
    of equal width in log score; needs every score > 0, else ValueError).

    Keys: ``edges`` (n_bins + 1 floats, the bins' borders, evenly spaced on the chosen
    axis), ``series`` (one ``{name, color, counts, overflow}`` per label group, stacked in
    order; a single "rows" series without labels), ``x_range``, ``x_scale`` ("linear" or
    "log"), ``ticks`` (round values for a log axis, else None), ``overflow_from`` (the score
    above which rows go to the overflow bar, or None), ``overflow_rows``, ``min`` and
    ``max`` (the lowest and highest score), ``bulk_upper``, ``counts`` (a
    :func:`flagged_counts` table, so the chart can count flagged rows exactly while the
    threshold moves), ``n_rows``, ``log`` (log count axis).
    """
    if x_range not in HISTOGRAM_RANGES:
        raise ValueError(f"x_range must be one of {sorted(HISTOGRAM_RANGES)}, got {x_range!r}")
    s = np.asarray(scores, dtype=np.float64)
    lo, top = (float(s.min()), float(s.max())) if s.size else (0.0, 1.0)
    upper = bulk_upper(s) if s.size else top
    hi = upper if x_range == "bulk" else top
    if x_range == "log":
        if lo <= 0:
            raise ValueError(
                f"a logarithmic score axis needs positive scores; the lowest is {lo:.4g}. "
                "Use the bulk or full range instead."
            )
        hi = max(hi, lo * (1 + 1e-3))
        edges = np.geomspace(lo, hi, int(n_bins) + 1)
        edges[0], edges[-1] = lo, hi  # exact ends, so no score falls outside by rounding
    else:
        if hi <= lo:
            hi = lo + (abs(lo) or 1.0) * 1e-3
        edges = np.linspace(lo, hi, int(n_bins) + 1)
    overflow_from = hi if hi < top else None
    groups = group_labels(labels) or [("rows", np.ones(s.size, dtype=bool))]
    series = []
    for name, mask in groups:
        values = s[mask]
        counts, _ = np.histogram(values[values <= hi], bins=edges)
        series.append(
            {
                "name": name,
                "color": COLORS.get(name, COLORS["normal"]),
                "counts": counts.astype(int).tolist(),
                "overflow": int(np.count_nonzero(values > hi)),
            }
        )
    return {
        "edges": edges.tolist(),
        "series": series,
        "x_range": x_range,
        "x_scale": "log" if x_range == "log" else "linear",
        "ticks": _log_ticks(lo, hi) if x_range == "log" else None,
        "overflow_from": overflow_from,
        "overflow_rows": int(np.count_nonzero(s > hi)),
        "min": lo,
        "max": top,
        "bulk_upper": upper,
        "counts": flagged_counts(s, max_count_points),
        "n_rows": int(s.size),
        "log": bool(log_count),
    }


def score_histogram_figure(
    scores: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    threshold: float | None = None,
    log_count: bool = False,
    n_bins: int = 60,
    title: str = "Scores",
) -> go.Figure:
    """Return a stacked histogram of scores by label group, with the threshold as a line."""
    data = histogram_data(scores, labels, n_bins=n_bins, x_range="full", max_count_points=2)
    edges = np.asarray(data["edges"])
    centers = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure()
    for series in data["series"]:
        fig.add_bar(
            x=centers,
            y=series["counts"],
            width=np.diff(edges),
            name=series["name"],
            marker_color=series["color"],
        )
    fig.update_layout(barmode="stack", bargap=0.02, title=title, **_LAYOUT)
    fig.update_yaxes(type="log" if log_count else "linear", title="rows")
    fig.update_xaxes(title="anomaly score")
    if threshold is not None:
        fig.add_vline(x=float(threshold), line_color=COLORS["threshold"], line_width=2)
    return fig


def score_comparison_figure(
    before: np.ndarray,
    after: np.ndarray,
    *,
    names: tuple[str, str] = ("before", "after"),
    n_bins: int = 60,
    title: str = "Score distributions",
) -> go.Figure:
    """Return overlaid histograms of two runs' scores, each min-max scaled to 0..1.

    Scores of different detectors have different units, so each run's scores are scaled
    within the run before binning; the y axis is the share of rows (log scale).
    """
    fig = go.Figure()
    for values, name, color in (
        (before, names[0], COLORS["before"]),
        (after, names[1], COLORS["after"]),
    ):
        v = np.asarray(values, dtype=np.float64)
        span = float(v.max() - v.min()) or 1.0
        fig.add_histogram(
            x=(v - v.min()) / span,
            nbinsx=n_bins,
            histnorm="probability",
            name=name,
            marker_color=color,
            opacity=0.6,
        )
    fig.update_layout(barmode="overlay", title=title, **_LAYOUT)
    fig.update_xaxes(title="score, scaled to 0..1 within the run")
    fig.update_yaxes(title="share of rows", type="log", dtick=1)
    return fig


def _finite_loss(event: Mapping[str, Any]) -> bool:
    loss = event.get("loss")
    return loss is not None and bool(np.isfinite(float(loss)))


def has_loss_curve(history: Sequence[Mapping[str, Any]]) -> bool:
    """Return True when some event has a finite loss to draw (deep detectors; classic ones
    and ensembles report none)."""
    return any(_finite_loss(event) for event in list(history))


def loss_curve_figure(
    history: Sequence[Mapping[str, Any]], *, title: str = "Training loss"
) -> go.Figure:
    """Return the loss per epoch, one line per training stage (e.g. pretrain, train)."""
    fig = go.Figure()
    stages: dict[str, list[tuple[int, float]]] = {}
    for event in history:
        if not _finite_loss(event):  # detectors without a loss report none
            continue
        stages.setdefault(str(event.get("stage", "train")), []).append(
            (int(event.get("epoch", 0)), float(event["loss"]))
        )
    for stage, points in stages.items():
        epochs, losses = zip(*points, strict=True)
        fig.add_scatter(x=list(epochs), y=list(losses), mode="lines+markers", name=stage)
    fig.update_layout(title=title, height=280, **_LAYOUT)
    fig.update_xaxes(title="epoch")
    # Losses over more than 20x (Deep SAD's pretraining near 100 and training near 0.01, or
    # a first epoch far above the rest) flatten on a linear axis: a log axis shows them.
    values = np.array([loss for points in stages.values() for _, loss in points])
    log = values.size > 0 and bool((values > 0).all()) and values.max() > 20 * values.min()
    fig.update_yaxes(title="loss (log scale)" if log else "loss", type="log" if log else None)
    return fig


def _curve_layout(title: str, x_title: str, y_title: str) -> dict[str, Any]:
    return dict(
        title=dict(text=title),
        height=320,
        showlegend=False,
        margin=_LAYOUT["margin"],
        xaxis=dict(title=dict(text=x_title), range=[0, 1]),
        yaxis=dict(title=dict(text=y_title), range=[0, 1.02]),
    )


def _point_trace(point: tuple[float, float] | None) -> list[dict[str, Any]]:
    if point is None or any(v is None or np.isnan(v) for v in point):
        return []
    return [
        dict(
            type="scatter",
            x=[float(point[0])],
            y=[float(point[1])],
            mode="markers",
            name="threshold",
            marker=dict(size=12, color=COLORS["threshold"]),
        )
    ]


# The figures below are built in one go from plain dicts: plotly validates once, several
# times faster than add_trace/update_layout calls (they are rebuilt on every threshold move).


def roc_figure(
    fpr: np.ndarray,
    tpr: np.ndarray,
    *,
    point: tuple[float, float] | None = None,
    auc: float | None = None,
) -> go.Figure:
    """Return the ROC curve with the current operating point marked."""
    title = "ROC" if auc is None or np.isnan(auc) else f"ROC (AUROC {auc:.3f})"
    diagonal = dict(
        type="scatter",
        x=[0, 1],
        y=[0, 1],
        mode="lines",
        line=dict(dash="dot", color="#cbd5e1"),
        hoverinfo="skip",
    )
    curve = dict(
        type="scatter", x=fpr, y=tpr, mode="lines", name="ROC", line=dict(color=COLORS["normal"])
    )
    return go.Figure(
        data=[diagonal, curve, *_point_trace(point)],
        layout=_curve_layout(title, "false-positive rate", "true-positive rate (recall)"),
    )


def pr_figure(
    recall: np.ndarray,
    precision: np.ndarray,
    *,
    point: tuple[float, float] | None = None,
    ap: float | None = None,
    base_rate: float | None = None,
) -> go.Figure:
    """Return the precision-recall curve with the current operating point marked."""
    title = "Precision-recall" if ap is None or np.isnan(ap) else f"Precision-recall (AP {ap:.3f})"
    data: list[dict[str, Any]] = []
    if base_rate is not None:
        data.append(
            dict(
                type="scatter",
                x=[0, 1],
                y=[base_rate, base_rate],
                mode="lines",
                line=dict(dash="dot", color="#cbd5e1"),
                hoverinfo="skip",
            )
        )
    data.append(
        dict(
            type="scatter",
            x=recall,
            y=precision,
            mode="lines",
            name="PR",
            line=dict(color=COLORS["normal"]),
        )
    )
    return go.Figure(
        data=[*data, *_point_trace(point)],
        layout=_curve_layout(title, "recall", "precision"),
    )


def confusion_figure(counts: Mapping[str, int]) -> go.Figure:
    """Return the 2x2 confusion matrix (rows: truth, columns: flagged or not) as a heatmap."""
    z = [[counts["tn"], counts["fp"]], [counts["fn"], counts["tp"]]]
    text = [
        [f"TN {counts['tn']:,}", f"FP {counts['fp']:,}"],
        [f"FN {counts['fn']:,}", f"TP {counts['tp']:,}"],
    ]
    heatmap = dict(
        type="heatmap",
        z=z,
        x=["not flagged", "flagged"],
        y=["normal", "anomaly"],
        text=text,
        texttemplate="%{text}",
        colorscale=[[0, "#f8fafc"], [1, "#fdba74"]],
        showscale=False,
        hoverinfo="skip",
    )
    layout = dict(
        title=dict(text="Confusion at the threshold"),
        height=300,
        margin=_LAYOUT["margin"],
        yaxis=dict(autorange="reversed", title=dict(text="truth")),
    )
    return go.Figure(data=[heatmap], layout=layout)


def latent_map_figure(
    coords: np.ndarray,
    row_keys: np.ndarray,
    *,
    color: np.ndarray,
    color_kind: str,
    hover: Sequence[str] | None = None,
    holes: Mapping[str, Any] | None = None,
    in_hole: np.ndarray | None = None,
    title: str = "",
    axis_names: tuple[str, str] = ("dim 1", "dim 2"),
    color_title: str = "score",
) -> go.Figure:
    """Return a 2-D scatter map whose points carry their row key in ``customdata``.

    ``color_kind``: "score" (continuous colour scale titled ``color_title``; pass score
    percentiles for heavy-tailed scores), "flag" (0/1) or "label" (-1/0/1).
    ``holes``: a ``HoleMap.to_dict()`` (x_edges, y_edges, vacant grid) shaded under the
    points; ``in_hole`` marks the points that fall in a vacant region with a ring.
    Selections (box or lasso) report ``customdata``, so a selection maps to row keys and
    never to point indices, which differ between traces.
    """
    xy = np.asarray(coords, dtype=np.float64)
    keys = np.asarray(row_keys).astype(str)
    fig = go.Figure()
    if holes is not None:
        _add_hole_layer(fig, holes)
    text = None if hover is None else list(hover)
    common = dict(
        mode="markers", customdata=keys, hovertemplate="%{text}<extra></extra>" if text else None
    )
    if color_kind == "score":
        fig.add_scattergl(
            x=xy[:, 0],
            y=xy[:, 1],
            text=text,
            name="rows",
            marker=dict(
                size=5,
                color=np.asarray(color, dtype=np.float64),
                colorscale="Viridis",
                colorbar=dict(title=color_title, thickness=12),
                opacity=0.8,
            ),
            **common,
        )
    else:
        values = np.asarray(color)
        if color_kind == "flag":
            groups = [
                ("not flagged", values == 0, COLORS["unlabelled"]),
                ("flagged", values == 1, COLORS["threshold"]),
            ]
        else:
            groups = [
                ("unlabelled", values == -1, COLORS["unlabelled"]),
                ("normal", values == 0, COLORS["normal"]),
                ("anomaly", values == 1, COLORS["anomaly"]),
            ]
        for name, mask, col in groups:
            if not mask.any():
                continue
            fig.add_scattergl(
                x=xy[mask, 0],
                y=xy[mask, 1],
                name=name,
                text=None if text is None else [text[i] for i in np.flatnonzero(mask)],
                marker=dict(size=5 if name != "anomaly" else 7, color=col, opacity=0.8),
                mode="markers",
                customdata=keys[mask],
                hovertemplate=common["hovertemplate"],
            )
    if in_hole is not None and np.any(in_hole):
        mask = np.asarray(in_hole, dtype=bool)
        fig.add_scattergl(
            x=xy[mask, 0],
            y=xy[mask, 1],
            name="in a hole",
            mode="markers",
            customdata=keys[mask],
            text=None if text is None else [text[i] for i in np.flatnonzero(mask)],
            hovertemplate=common["hovertemplate"],
            marker=dict(
                size=11, color="rgba(0,0,0,0)", line=dict(width=1.5, color=COLORS["in_hole"])
            ),
        )
    fig.update_layout(title=title, height=560, dragmode="lasso", **_LAYOUT)
    fig.update_layout(
        margin=dict(l=10, r=10, t=70 if title else 40, b=10),
        legend=dict(orientation="h", y=1.0, x=0, yanchor="bottom"),
    )
    fig.update_xaxes(title=axis_names[0], showgrid=False, zeroline=False)
    fig.update_yaxes(title=axis_names[1], showgrid=False, zeroline=False)
    return fig


def _add_hole_layer(fig: go.Figure, holes: Mapping[str, Any]) -> None:
    """Shade the vacant cells ((nearly) empty places inside the training rows' region)."""
    vacant = np.asarray(holes["vacant"], dtype=bool)
    if not vacant.any():
        return
    x_edges = np.asarray(holes["x_edges"], dtype=np.float64)
    y_edges = np.asarray(holes["y_edges"], dtype=np.float64)
    # vacant is indexed [y_bin, x_bin] (ad_core.latent.HoleMap), a heatmap's z layout.
    z = np.where(vacant, 1.0, np.nan)
    fig.add_heatmap(
        x=(x_edges[:-1] + x_edges[1:]) / 2,
        y=(y_edges[:-1] + y_edges[1:]) / 2,
        z=z,
        colorscale=[[0, COLORS["hole"]], [1, COLORS["hole"]]],
        showscale=False,
        hoverinfo="skip",
        name="vacant region",
    )


def feature_range_figure(
    values: np.ndarray,
    feature_names: Sequence[str],
    *,
    low: np.ndarray,
    high: np.ndarray,
    median: np.ndarray,
    title: str = "This row against the typical range of normal rows",
) -> go.Figure:
    """Return the row's value per feature as dots over the normal rows' 5-95 % band.

    All values are shown as robust z-scores ((value - median) / (high - low)) so features on
    different scales share one axis; the hover text shows the raw numbers.
    """
    v = np.asarray(values, dtype=np.float64)
    lo, hi, med = (np.asarray(a, dtype=np.float64) for a in (low, high, median))
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    z = (v - med) / span
    names = [str(n) for n in feature_names]
    hover = [
        f"{n}: {x:.4g} (normal 5-95 %: {a:.4g} .. {b:.4g})"
        for n, x, a, b in zip(names, v, lo, hi, strict=True)
    ]
    fig = go.Figure()
    fig.add_bar(
        x=names,
        y=(hi - med) / span - (lo - med) / span,
        base=(lo - med) / span,
        marker_color=COLORS["band"],
        name="normal rows, 5-95 %",
        hoverinfo="skip",
    )
    outside = (v < lo) | (v > hi)
    fig.add_scatter(
        x=names,
        y=z,
        mode="markers",
        name="this row",
        text=hover,
        hoverinfo="text",
        marker=dict(size=9, color=np.where(outside, COLORS["anomaly"], COLORS["normal"])),
    )
    fig.update_layout(title=title, height=340, **_LAYOUT)
    fig.update_yaxes(title="distance from the normal median (in 5-95 % widths)")
    return fig


def sequence_figure(
    values: np.ndarray,
    *,
    low: np.ndarray,
    high: np.ndarray,
    median: np.ndarray,
    x: Sequence[Any] | None = None,
    title: str = "This row as a sequence, against normal rows",
) -> go.Figure:
    """Return a line plot of a sequence row (e.g. an ECG beat) over the normal 5-95 % band."""
    v = np.asarray(values, dtype=np.float64)
    xs = list(range(v.size)) if x is None else list(x)
    fig = go.Figure()
    fig.add_scatter(
        x=xs,
        y=np.asarray(high),
        mode="lines",
        line=dict(width=0),
        showlegend=False,
        hoverinfo="skip",
    )
    fig.add_scatter(
        x=xs,
        y=np.asarray(low),
        mode="lines",
        line=dict(width=0),
        fill="tonexty",
        fillcolor=COLORS["band"],
        name="normal rows, 5-95 %",
        hoverinfo="skip",
    )
    fig.add_scatter(
        x=xs,
        y=np.asarray(median),
        mode="lines",
        name="normal median",
        line=dict(color=COLORS["normal"], dash="dot"),
    )
    fig.add_scatter(
        x=xs, y=v, mode="lines", name="this row", line=dict(color=COLORS["row"], width=2.5)
    )
    fig.update_layout(title=title, height=340, **_LAYOUT)
    return fig


def rank_shift_figure(
    before: np.ndarray,
    after: np.ndarray,
    labels: np.ndarray,
    row_keys: Sequence[str],
    *,
    title: str = "Where the labelled rows rank (percentile of score, 100 = most anomalous)",
) -> go.Figure:
    """Return a dumbbell plot of each labelled row's score percentile before and after."""
    b, a = np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64)
    lab = np.asarray(labels)
    keys = [str(k) for k in row_keys]
    order = np.lexsort((-a, lab))
    fig = go.Figure()
    for i in order:
        color = COLORS["anomaly"] if lab[i] == 1 else COLORS["normal"]
        fig.add_scatter(
            x=[b[i], a[i]],
            y=[keys[i], keys[i]],
            mode="lines",
            line=dict(color=color, width=1.5),
            showlegend=False,
            hoverinfo="skip",
        )
    for value, name in ((1, "labelled anomaly"), (0, "labelled normal")):
        mask = lab[order] == value
        idx = order[mask]
        if idx.size == 0:
            continue
        color = COLORS["anomaly"] if value == 1 else COLORS["normal"]
        fig.add_scatter(
            x=b[idx],
            y=[keys[i] for i in idx],
            mode="markers",
            name=f"{name}, before",
            marker=dict(color="white", line=dict(color=color, width=2), size=9),
        )
        fig.add_scatter(
            x=a[idx],
            y=[keys[i] for i in idx],
            mode="markers",
            name=f"{name}, after",
            marker=dict(color=color, size=9),
        )
    fig.update_layout(title=title, height=max(260, 22 * len(keys) + 120), **_LAYOUT)
    fig.update_xaxes(title="score percentile", range=[0, 101])
    fig.update_yaxes(title="row", type="category")
    return fig


#: most points a series figure draws per line; longer series are reduced (min and max kept)
SERIES_MAX_POINTS = 20_000


def reduce_series(n_points: int, max_points: int = SERIES_MAX_POINTS) -> np.ndarray | None:
    """Return the positions a long series' plot keeps (None: every point fits).

    The series is cut into ``max_points // 2`` equal buckets and each keeps its first and
    last position; :func:`series_figure` then draws each bucket's minimum and maximum, so a
    spike is never averaged away when zoomed out.
    """
    if n_points <= max_points:
        return None
    return np.linspace(0, n_points, max_points // 2 + 1).astype(np.int64)


def _bucket_extremes(values: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (positions, values): the min and the max of each bucket, in time order.

    Buckets are ``values[edges[i]:edges[i + 1]]`` (``edges`` increasing). Ties go to the
    first position and NaN is skipped (as ``np.nanargmin``); an all-NaN bucket gives its first
    position. Vectorised: each bucket's extreme by ``reduceat``, then its first position.
    """
    edges = np.asarray(edges, dtype=np.int64)
    span = np.asarray(values[edges[0] : edges[-1]], dtype=np.float64)
    starts = edges[:-1] - edges[0]
    bucket = np.repeat(np.arange(starts.size), np.diff(edges))

    def first_at(extreme: np.ndarray) -> np.ndarray:
        at = starts.copy()  # all-NaN buckets keep their first position
        hits = np.flatnonzero(span == extreme[bucket])
        if hits.size == 0:  # every bucket is all-NaN
            return at
        first = np.r_[True, bucket[hits][1:] != bucket[hits][:-1]]
        at[bucket[hits][first]] = hits[first]
        return at

    with np.errstate(invalid="ignore"):
        lo = first_at(np.fmin.reduceat(span, starts))
        hi = first_at(np.fmax.reduceat(span, starts))
    pos = np.unique(np.r_[lo, hi]) + edges[0]
    return pos, values[pos]


def _axis_value(value: Any) -> Any:
    """Return one x value of a series in a form a plotly axis reads, for a shape's x0/x1.

    Plotly encodes a shape's ends one scalar at a time, unlike a trace's x array: a numpy
    datetime64 with nanoseconds becomes an integer of nanoseconds (``.tolist()``), which a
    date axis reads as milliseconds, tens of millions of years away, so nothing is drawn.
    Datetimes become ISO strings (as the traces' times are written), other numpy scalars
    plain numbers; missing times become None.
    """
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else str(np.datetime_as_string(value))
    if hasattr(value, "isoformat"):  # datetime, date, pandas Timestamp (NaT included)
        return None if value != value else value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _stretch_shape(
    fig: go.Figure,
    xs: np.ndarray,
    a: int,
    b: int,
    color: str,
    row: int,
    *,
    outline: str | None = None,
    **kwargs: Any,
) -> None:
    """Shade points a..b (first, last position) of ``xs`` on one panel of a series figure.

    A one-point stretch has no width, so it gets an outline (``outline``, else ``color``)
    to be seen at all.
    """
    x0, x1 = _axis_value(xs[int(a)]), _axis_value(xs[int(b)])
    if x0 is None or x1 is None:
        return
    line = dict(width=2, color=outline or color) if x0 == x1 else dict(width=0)
    fig.add_vrect(x0=x0, x1=x1, fillcolor=color, line=line, row=row, col=1, **kwargs)


def series_figure(
    x: Sequence[Any],
    values: Mapping[str, np.ndarray],
    scores: np.ndarray,
    threshold: float,
    *,
    events: Sequence[tuple[int, int]] = (),
    labelled: Mapping[str, Sequence[tuple[int, int]]] | None = None,
    keys: Sequence[Any] | None = None,
    x_title: str = "time",
    title: str = "The series, and each point's anomaly score",
    height: int = 560,
    range_slider: bool = True,
    point: int | None = None,
) -> go.Figure:
    """Return the series over time with the per-point score beneath it.

    ``values``: one array per value column (each on its own axis scale, standardised when
    there are several, so they share the top panel; the hover shows the raw value).
    ``events``: flagged stretches (first, last position) shaded on both panels.
    ``labelled``: stretches the expert labelled, by label name ("anomaly", "normal"), drawn
    as a band under the score panel. ``keys``: each point's row key, carried as
    ``customdata`` so a selection on the chart names rows. A range slider under the chart
    zooms the time axis. Series longer than :data:`SERIES_MAX_POINTS` are reduced to each
    bucket's extremes (:func:`reduce_series`). ``point``: a position marked on both panels by
    a dotted line, its score a dot (the row the Label page asks about).
    """
    from plotly.subplots import make_subplots

    xs = np.asarray(list(x), dtype=object) if not isinstance(x, np.ndarray) else x
    s = np.asarray(scores, dtype=np.float64)
    n = s.size
    edges = reduce_series(n)
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.06, row_heights=[0.6, 0.4]
    )
    several = len(values) > 1
    palette = ["#1d4ed8", "#0f766e", "#7c3aed", "#b45309", "#be185d", "#4d7c0f"]
    for i, (name, raw) in enumerate(values.items()):
        v = np.asarray(raw, dtype=np.float64)
        shown = v
        if several:
            spread = np.nanstd(v)
            shown = (v - np.nanmean(v)) / (spread if spread > 0 else 1.0)
        pos = np.arange(n) if edges is None else _bucket_extremes(shown, edges)[0]
        fig.add_trace(
            go.Scattergl(
                x=xs[pos],
                y=shown[pos],
                mode="lines",
                name=name,
                line=dict(width=1.2, color=palette[i % len(palette)]),
                customdata=np.c_[v[pos]] if keys is None else np.c_[np.asarray(keys)[pos], v[pos]],
                hovertemplate=f"{name}: %{{customdata[{0 if keys is None else 1}]:.4g}}"
                "<extra></extra>",
            ),
            row=1,
            col=1,
        )
    pos = np.arange(n) if edges is None else _bucket_extremes(s, edges)[0]
    fig.add_trace(
        go.Scattergl(
            x=xs[pos],
            y=s[pos],
            mode="lines",
            name="score",
            line=dict(width=1.2, color=COLORS["normal"]),
            customdata=None if keys is None else np.asarray(keys)[pos],
            hovertemplate="score %{y:.4g}<extra></extra>",
        ),
        row=2,
        col=1,
    )
    fig.add_hline(
        y=float(threshold),
        line=dict(color=COLORS["threshold"], dash="dash"),
        annotation_text="threshold",
        row=2,
        col=1,
    )
    shade, edge = "rgba(194, 65, 12, 0.18)", "rgba(194, 65, 12, 0.6)"
    for a, b in events:
        for row in (1, 2):
            _stretch_shape(fig, xs, a, b, shade, row, outline=edge, layer="below")
    colours = {"anomaly": COLORS["anomaly"], "normal": COLORS["normal"]}
    for name, stretches in (labelled or {}).items():
        for a, b in stretches:
            colour = colours.get(name, COLORS["unlabelled"])
            _stretch_shape(fig, xs, a, b, colour, 2, y0=0.0, y1=0.05, opacity=0.8)
    if point is not None and _axis_value(xs[int(point)]) is not None:
        at = _axis_value(xs[int(point)])
        for row in (1, 2):
            fig.add_vline(x=at, line=dict(color="#111827", width=1, dash="dot"), row=row, col=1)
        fig.add_trace(
            go.Scatter(
                x=[xs[int(point)]],
                y=[s[int(point)]],
                mode="markers",
                name="this point",
                marker=dict(color="#111827", size=9, symbol="diamond"),
                hovertemplate="this point: score %{y:.4g}<extra></extra>",
            ),
            row=2,
            col=1,
        )
    fig.update_yaxes(title_text="value (standardised)" if several else "value", row=1, col=1)
    fig.update_yaxes(title_text="score", row=2, col=1)
    fig.update_xaxes(title_text=x_title, row=2, col=1)
    if range_slider:
        fig.update_xaxes(rangeslider=dict(visible=True, thickness=0.06), row=2, col=1)
    fig.update_layout(title=title, height=height, hovermode="x unified", **_LAYOUT)
    return fig


def stretches(mask: np.ndarray) -> list[tuple[int, int]]:
    """Return the runs of True in ``mask`` as (first, last) positions."""
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return []
    d = np.diff(np.r_[0, m.astype(np.int8), 0])
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1) - 1
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def learning_curve_figure(points: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Return AUROC and AUPRC against the labels a run trained with, one point per run.

    ``points``: :func:`ad_core.runs.learning_curve` (keys run, n_labels, auroc, auprc).
    """
    fig = go.Figure()
    x = [p["n_labels"] for p in points]
    text = [f"#{p['run']}" for p in points]
    for name in ("auroc", "auprc"):
        fig.add_trace(
            go.Scatter(
                x=x,
                y=[p[name] for p in points],
                mode="lines+markers+text",
                text=text if name == "auroc" else None,
                textposition="top center",
                name=name.upper(),
                customdata=[p["run"] for p in points],
                hovertemplate="run #%{customdata}: %{y:.3f} with %{x} labels<extra>"
                + name.upper()
                + "</extra>",
            )
        )
    fig.update_layout(
        xaxis_title="labels the run trained with",
        yaxis_title="on the ground truth",
        yaxis_range=[0, 1.05],
        height=320,
        margin=dict(l=10, r=10, t=30, b=10),
        legend=dict(orientation="h", y=-0.25),
    )
    return fig
