"""2-D maps of latent codes: the density of the training codes, and the vacant holes in it.

The loop it serves: a detector with a latent space (``det.transform(X)``) gives codes; they are
projected to two dimensions (:func:`project_2d`); the training codes' density is estimated on a
grid (:func:`find_holes`), and the cells that lie inside the support of the training codes but
are (nearly) empty are the *vacant holes*. Points that land in them are candidates for review:
Glazunov & Zarras (UAI 2023) show that once the latent space is compact (``compact_vae``),
outliers fall into such holes rather than escaping to empty far-away places.

    from ad_core import latent
    train_xy = latent.project_2d(det.transform(X_train))           # or project all rows at once
    holes = latent.find_holes(train_xy, coords=xy, hole_indicator=latent.hole_indicator(det, X))
    holes.in_hole         # bool per row of xy
    holes.to_dict()       # what a plot needs (JSON-serialisable)

Grid arrays are indexed ``[y_bin, x_bin]`` (rows are y), the layout a heatmap expects:
``go.Heatmap(z=d["density"], x=d["x_centers"], y=d["y_centers"])`` draws it the right way up.
Everything is vectorised: 100 000 points take a few tens of milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

PROJECTIONS = ("pca", "umap")
SUPPORTS = ("hull", "kde")
#: the "kde" support uses a kernel this many times wider than Scott's rule
SUPPORT_WIDENING = 3.0
#: the kernel's width is the median distance of a training code to its k-th nearest code
NEIGHBOURS = 10
#: a cell is (nearly) empty when its kernel sees fewer training codes than this
EMPTY_COUNT = 1.5
#: the sparsest share of the training codes is the fringe, left out of the hull
FRINGE_QUANTILE = 0.02


def _as_points(Z: Any, name: str) -> np.ndarray:
    arr = np.asarray(Z, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array (rows x dims), got {arr.shape}.")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return arr


def project_2d(Z: Any, method: str = "pca", random_state: int | None = 0) -> np.ndarray:
    """Return 2-D coordinates (n, 2) of the codes ``Z`` (n, d) for a map.

    Codes that already have two dimensions pass through unchanged (copied); one-dimensional
    codes get a zero second coordinate. ``method``: ``"pca"`` (scikit-learn PCA, linear, fast,
    deterministic) or ``"umap"`` (umap-learn, non-linear, keeps neighbourhoods; seeded by
    ``random_state``; falls back to PCA below 5 rows, where UMAP cannot build a graph).
    """
    if method not in PROJECTIONS:
        raise ValueError(f"method must be one of {', '.join(PROJECTIONS)}; got {method!r}.")
    Z = _as_points(Z, "Z")
    n, d = Z.shape
    if d == 2:
        return Z.copy()
    if d == 1:
        return np.column_stack((Z[:, 0], np.zeros(n)))
    if method == "umap" and n >= 5:
        import umap  # heavy import (numba): only when asked for

        reducer = umap.UMAP(
            n_components=2,
            n_neighbors=min(15, n - 1),
            random_state=random_state,
            init="random",
            n_jobs=1,
        )
        return np.asarray(reducer.fit_transform(Z), dtype=np.float64)
    from sklearn.decomposition import PCA

    out = PCA(n_components=2, random_state=random_state).fit_transform(Z)
    return np.asarray(out, dtype=np.float64)


@dataclass
class HoleMap:
    """The training codes' density on a grid and the vacant holes in it.

    Grids are ``(grid_size, grid_size)`` arrays indexed ``[y_bin, x_bin]``; per-point arrays
    follow the rows of the ``coords`` given to :func:`find_holes`.
    """

    x_edges: np.ndarray  #: (grid_size + 1,) cell edges along x
    y_edges: np.ndarray  #: (grid_size + 1,) cell edges along y
    density: np.ndarray  #: training-code density per unit area (smoothed histogram)
    support: np.ndarray  #: bool: cell inside the support of the training codes
    vacant: np.ndarray  #: bool: inside the support but (nearly) empty
    in_hole: np.ndarray  #: bool per point: lands in a vacant cell
    outside_support: np.ndarray  #: bool per point: off the grid or outside the support
    point_density: np.ndarray  #: training-code density at each point's cell (0 off the grid)
    hole_cell_share: float  #: vacant cells / support cells
    density_threshold: float  #: cells below this density are (nearly) empty
    bandwidth: tuple[float, float]  #: kernel standard deviation (x, y) in map units
    support_method: str  #: "hull" or "kde"
    hole_indicator: np.ndarray | None = None  #: per point, compact_vae runs only

    @property
    def x_centers(self) -> np.ndarray:
        return 0.5 * (self.x_edges[:-1] + self.x_edges[1:])

    @property
    def y_centers(self) -> np.ndarray:
        return 0.5 * (self.y_edges[:-1] + self.y_edges[1:])

    @property
    def n_in_hole(self) -> int:
        return int(self.in_hole.sum())

    def to_dict(self, points: bool = True) -> dict[str, Any]:
        """Return what a plot needs as plain Python values (JSON-serialisable).

        ``vacant_density`` is the density grid with ``None`` outside vacant cells, ready to be
        drawn as a shaded overlay; ``hole_indicator`` is ``None`` unless the map carries it.
        ``points=False`` leaves out the per-point lists (``in_hole``, ``outside_support``,
        ``point_density``, ``hole_indicator``): the grid alone, small whatever the rows.
        """
        vacant_density = np.where(self.vacant, self.density, np.nan)
        grid = {
            "x_edges": self.x_edges.tolist(),
            "y_edges": self.y_edges.tolist(),
            "x_centers": self.x_centers.tolist(),
            "y_centers": self.y_centers.tolist(),
            "density": self.density.tolist(),
            "support": self.support.tolist(),
            "vacant": self.vacant.tolist(),
            "vacant_density": [
                [None if np.isnan(v) else float(v) for v in row] for row in vacant_density
            ],
            "n_in_hole": self.n_in_hole,
            "hole_cell_share": float(self.hole_cell_share),
            "density_threshold": float(self.density_threshold),
            "bandwidth": [float(b) for b in self.bandwidth],
            "support_method": self.support_method,
        }
        if not points:
            return grid
        scores = None if self.hole_indicator is None else self.hole_indicator.tolist()
        return {
            **grid,
            "in_hole": self.in_hole.tolist(),
            "outside_support": self.outside_support.tolist(),
            "point_density": self.point_density.tolist(),
            "hole_indicator": scores,
        }


def _cells(
    points: np.ndarray, x_edges: np.ndarray, y_edges: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (x bin, y bin, on-grid mask) of every point; off-grid bins are clipped."""
    g = x_edges.size - 1
    fx = (points[:, 0] - x_edges[0]) / (x_edges[-1] - x_edges[0]) * g
    fy = (points[:, 1] - y_edges[0]) / (y_edges[-1] - y_edges[0]) * g
    on_grid = (fx >= 0) & (fx <= g) & (fy >= 0) & (fy <= g)
    ix = np.clip(np.floor(fx).astype(np.int64), 0, g - 1)
    iy = np.clip(np.floor(fy).astype(np.int64), 0, g - 1)
    return ix, iy, on_grid


def _smoothed_density(
    counts: np.ndarray, n: int, cell: tuple[float, float], sigma: tuple[float, float]
) -> np.ndarray:
    """Return a Gaussian-smoothed histogram as a density per unit area."""
    from scipy.ndimage import gaussian_filter

    smooth = gaussian_filter(
        counts, sigma=(sigma[1] / cell[1], sigma[0] / cell[0]), mode="constant"
    )
    return smooth / (n * cell[0] * cell[1])


def _hull_support(train: np.ndarray, cx: np.ndarray, cy: np.ndarray) -> np.ndarray | None:
    """Return cells whose centre lies in the training codes' convex hull (None if degenerate)."""
    from scipy.spatial import ConvexHull, QhullError

    if train.shape[0] < 3:
        return None
    try:
        hull = ConvexHull(train)
    except (QhullError, ValueError):
        return None
    gx, gy = np.meshgrid(cx, cy)  # [y, x] layout
    centres = np.column_stack((gx.ravel(), gy.ravel()))
    # Facet equations a.p + b <= 0 hold inside; a small tolerance keeps boundary cells.
    scale = float(np.ptp(train, axis=0).max()) or 1.0
    inside = centres @ hull.equations[:, :2].T + hull.equations[:, 2] <= 1e-9 * scale
    return inside.all(axis=1).reshape(gx.shape)


def neighbour_bandwidth(train: np.ndarray, k: int = NEIGHBOURS, max_queries: int = 5000) -> float:
    """Return the median distance of a training code to its ``k``-th nearest other code.

    The local spacing of the codes where they are, which neither the distance between
    clusters nor far-off outliers inflate (a standard deviation, and so Scott's rule, is
    dominated by both). At most ``max_queries`` codes (a seeded sample) are asked, against
    all of them, so 100 000 codes cost a few tens of milliseconds. Returns 0.0 for fewer than
    two codes or when most codes are duplicates.
    """
    from scipy.spatial import cKDTree

    n = train.shape[0]
    if n < 2:
        return 0.0
    k = int(min(max(1, k), n - 1))
    queries = train
    if n > max_queries:
        queries = train[np.random.default_rng(0).choice(n, max_queries, replace=False)]
    dist, _ = cKDTree(train).query(queries, k=k + 1)  # the nearest is the code itself
    return float(np.median(np.atleast_2d(dist)[:, -1]))


def find_holes(
    train_coords: Any,
    coords: Any = None,
    grid_size: int = 60,
    support: str = "hull",
    *,
    empty_count: float = EMPTY_COUNT,
    fringe_quantile: float = FRINGE_QUANTILE,
    neighbours: int = NEIGHBOURS,
    bandwidth: float | None = None,
    hole_indicator: Any = None,
) -> HoleMap:
    """Return the :class:`HoleMap` of the 2-D training codes, with ``coords`` placed on it.

    A vacant hole is a region inside the support of the training codes where (almost) no
    training code lands. Every choice below is free of the map's units and of how its codes
    are spread overall, so that a PCA map (one wide cloud, sparse bridges, far outliers) and
    a UMAP map (tight clusters, wide gaps, no far outliers) of the same codes are read by
    the same rule:

    - Grid: ``grid_size`` x ``grid_size`` cells over the training codes' bounding box plus 5 %
      on each side (points beyond it are off the grid: outside the support, never in a hole).
    - Bandwidth: one isotropic Gaussian kernel (map axes share their units, for PCA as for
      UMAP), its standard deviation the median distance of a training code to its
      ``neighbours``-th nearest one (:func:`neighbour_bandwidth`): the spacing of the codes
      where they are. Scott's rule (n^(-1/6) times the standard deviation per axis) was used
      before; on a map of several clusters the standard deviation measures the distance
      between the clusters, and the kernel then smeared small groups of codes into "empty"
      cells. ``bandwidth`` (map units) overrides it; never narrower than half a cell.
    - Emptiness, as a count: at each cell, the number of training codes the kernel sees,
      ``density * n * 2 pi sigma_x sigma_y`` (one code alone under the kernel's centre counts
      about 1; where codes are typical it is about 2 x ``neighbours``). A cell is (nearly)
      empty when that count is below ``empty_count`` (1.5: emptier than one lone code). A
      threshold taken as a quantile of the density at the training codes, as before, marked
      that share of the training codes "in a hole" by construction, wherever they sat.
    - Support: ``"hull"``, the convex hull of the *core* training codes, those whose place the
      other codes make non-empty (the count without the code itself is at least
      ``empty_count``) and no sparser than the ``fringe_quantile`` quantile of the training
      codes (the sparse fringe and far-off outliers would otherwise stretch the hull over
      empty space; a collinear core holds no area, and no hole); ``"kde"``, where a much
      smoother estimate (Scott's rule widened
      :data:`SUPPORT_WIDENING` times) is at least as dense as all but ``fringe_quantile`` of
      the training codes, which follows non-convex shapes but only encloses wide holes.
      Cells within one bandwidth of the support's edge are its rim, never a hole: the edge of
      a cloud is where codes thin out, not a region inside it.
    - Vacant: support cells, off the rim, that are (nearly) empty.
    - ``coords`` (default: the training codes) are marked ``in_hole`` when their cell is
      vacant: exactly the cells a plot shades. A training code can be in a hole only when it
      sits alone there.
    - ``hole_indicator``: optional per-``coords`` scores carried along for the plot (see
      :func:`hole_indicator`).
    """
    train = _as_points(train_coords, "train_coords")
    if train.shape[1] != 2:
        raise ValueError(f"train_coords must have 2 columns, got {train.shape[1]}.")
    points = train if coords is None else _as_points(coords, "coords")
    if points.shape[1] != 2:
        raise ValueError(f"coords must have 2 columns, got {points.shape[1]}.")
    if support not in SUPPORTS:
        raise ValueError(f"support must be one of {', '.join(SUPPORTS)}; got {support!r}.")
    if not 0.0 <= float(fringe_quantile) < 1.0:
        raise ValueError(f"fringe_quantile must be in [0, 1), got {fringe_quantile}.")
    if not float(empty_count) > 0.0:
        raise ValueError(f"empty_count must be positive, got {empty_count}.")
    if bandwidth is not None and not float(bandwidth) > 0.0:
        raise ValueError(f"bandwidth must be positive, got {bandwidth}.")
    g = int(grid_size)
    if g < 4:
        raise ValueError(f"grid_size must be at least 4, got {grid_size}.")
    scores = None
    if hole_indicator is not None:
        scores = np.asarray(hole_indicator, dtype=np.float64).reshape(-1)
        if scores.size != points.shape[0]:
            raise ValueError(
                f"hole_indicator has {scores.size} values for {points.shape[0]} points."
            )

    n = train.shape[0]
    lo, hi = train.min(axis=0), train.max(axis=0)
    span = hi - lo
    span = np.where(span > 0, span, np.maximum(np.abs(lo), 1.0))
    lo, hi = lo - 0.05 * span, hi + 0.05 * span
    x_edges = np.linspace(lo[0], hi[0], g + 1)
    y_edges = np.linspace(lo[1], hi[1], g + 1)
    cell = np.array([(hi[0] - lo[0]) / g, (hi[1] - lo[1]) / g])
    cx = 0.5 * (x_edges[:-1] + x_edges[1:])
    cy = 0.5 * (y_edges[:-1] + y_edges[1:])

    ix, iy, _ = _cells(train, x_edges, y_edges)
    counts = np.bincount(iy * g + ix, minlength=g * g).reshape(g, g).astype(np.float64)
    sigma = neighbour_bandwidth(train, neighbours) if bandwidth is None else float(bandwidth)
    bw = np.maximum(np.full(2, sigma), 0.5 * cell)
    density = _smoothed_density(counts, n, (cell[0], cell[1]), (bw[0], bw[1]))
    per_code = n * 2.0 * np.pi * bw[0] * bw[1]  # density -> codes seen by the kernel
    threshold = float(empty_count) / per_code
    # What the other codes make of a code's place: its own share (about 1) taken out.
    others = density[iy, ix] * per_code - _self_count(cell, bw)

    fringe = float(empty_count)
    if fringe_quantile > 0:
        fringe = max(fringe, float(np.quantile(others, fringe_quantile)))
    if support == "hull":
        inside = _hull_support(train[others >= fringe], cx, cy)
        if inside is None:  # collinear or too few codes: no area to hold a hole
            inside = density >= threshold
    else:
        std = train.std(axis=0)
        std = np.where(std > 0, std, span / 4.0)
        wide_bw = SUPPORT_WIDENING * np.maximum(std * n ** (-1.0 / 6.0), 0.5 * cell)
        wide = _smoothed_density(counts, n, (cell[0], cell[1]), (wide_bw[0], wide_bw[1]))
        level = float(np.quantile(wide[iy, ix], fringe_quantile)) if fringe_quantile > 0 else 0
        inside = wide >= level
    inner = _off_rim(inside, cell, float(bw.max()))
    vacant = inner & (density < threshold)

    px, py, on_grid = _cells(points, x_edges, y_edges)
    in_hole = on_grid & vacant[py, px]
    outside = ~on_grid | ~inside[py, px]
    point_density = np.where(on_grid, density[py, px], 0.0)
    n_support = int(inside.sum())
    return HoleMap(
        x_edges=x_edges,
        y_edges=y_edges,
        density=density,
        support=inside,
        vacant=vacant,
        in_hole=in_hole,
        outside_support=outside,
        point_density=point_density,
        hole_cell_share=float(vacant.sum()) / n_support if n_support else 0.0,
        density_threshold=threshold,
        bandwidth=(float(bw[0]), float(bw[1])),
        support_method=support,
        hole_indicator=scores,
    )


def _self_count(cell: np.ndarray, bw: np.ndarray) -> float:
    """Return what one code adds to the kernel count of its own cell (about 1)."""
    from scipy.ndimage import gaussian_filter1d

    weights = []
    for c, s in zip(cell, bw, strict=True):
        half = int(np.ceil(4.0 * s / c))
        impulse = np.zeros(2 * half + 1)
        impulse[half] = 1.0
        weights.append(float(gaussian_filter1d(impulse, s / c, mode="constant")[half]))
    return weights[0] * weights[1] * 2.0 * np.pi * float(bw[0] * bw[1]) / float(cell[0] * cell[1])


def _off_rim(inside: np.ndarray, cell: np.ndarray, width: float) -> np.ndarray:
    """Return the support cells farther than ``width`` (map units) from the support's edge."""
    from scipy.ndimage import distance_transform_edt

    if not inside.any():
        return inside.copy()
    # Pad with outside cells so the grid's border counts as the edge too.
    padded = np.pad(inside, 1, constant_values=False)
    dist = distance_transform_edt(padded, sampling=(cell[1], cell[0]))[1:-1, 1:-1]
    # A cell's distance is to the nearest outside cell *centre*; the edge lies half a cell
    # nearer.
    return inside & (dist - 0.5 * float(cell.max()) > width)


def hole_indicator(detector: Any, X: Any) -> np.ndarray | None:
    """Return the hole indicator per row of ``X`` for a fitted ``compact_vae``, else ``None``.

    The indicator (Glazunov & Zarras 2023) is the sample standard deviation of log p(x|z) over
    the detector's ``n_samples`` draws z ~ q(z|x); higher = more likely in a vacant hole. It
    comes from :meth:`CompactVAE.hole_indicator`, whatever the detector's ``score`` setting
    (with ``score="hole"``, its ``decision_function`` returns the same values). Detectors
    without one give ``None``, so a page can call this for every run.
    """
    method = getattr(detector, "hole_indicator", None)
    if method is None or not callable(method):
        return None
    return np.asarray(method(X), dtype=np.float64)
