"""Latent maps: 2-D projection, training-code density, and vacant holes."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from ad_core import latent


def ring(n: int = 2000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = rng.uniform(0.0, 2.0 * np.pi, n)
    return np.c_[np.cos(t), np.sin(t)] + 0.05 * rng.normal(size=(n, 2))


@pytest.mark.parametrize("support", ["hull", "kde"])
def test_ring_centre_is_found_as_a_hole(support):
    train = ring()
    probes = np.array([[0.0, 0.0], [0.25, -0.2], [1.0, 0.0], [0.0, -1.0], [6.0, 6.0]])
    hm = latent.find_holes(train, probes, grid_size=60, support=support)
    assert hm.in_hole.tolist() == [True, True, False, False, False]
    assert hm.outside_support.tolist() == [False, False, False, False, True]
    # The centre cell itself is vacant and inside the support; cells on the ring are not.
    cx = np.searchsorted(hm.x_edges, 0.0) - 1
    cy = np.searchsorted(hm.y_edges, 0.0) - 1
    assert hm.vacant[cy, cx] and hm.support[cy, cx]
    rx = np.searchsorted(hm.x_edges, 1.0) - 1
    assert not hm.vacant[cy, rx]
    assert 0.2 < hm.hole_cell_share < 0.8


def test_a_gaussian_blob_has_almost_no_holes():
    rng = np.random.default_rng(1)
    train = rng.normal(size=(20_000, 2))
    hm = latent.find_holes(train)
    # Its sparse fringe is the edge of the support, not a hole inside it.
    assert hm.hole_cell_share < 0.06
    assert hm.in_hole.mean() < 0.01


def test_grids_are_indexed_y_then_x():
    rng = np.random.default_rng(2)
    # All training codes on the left half, spread tall: density must sit in low x columns.
    train = np.c_[rng.uniform(0, 1, 5000), rng.uniform(0, 10, 5000)]
    train[:2500, 0] += 9.0  # two vertical bands: x in [0, 1] and [9, 10]
    hm = latent.find_holes(train, grid_size=20)
    column_mass = hm.density.sum(axis=0)  # summing over rows (y) leaves x profile
    assert column_mass[:3].min() > 0 and column_mass[8:12].max() < 0.02 * column_mass.max()
    assert hm.vacant[:, 8:12][2:-2].all()  # the gap between the bands is one vacant stripe


def two_long_clusters(seed: int = 0) -> np.ndarray:
    """Return two elongated clusters on a diagonal, as UMAP draws ECG5000's beats, and a tight
    group of 20 codes (2 %) poking from one of them into the gap between (rows 980-999)."""
    rng = np.random.default_rng(seed)
    turn = np.array([[1.0, 1.0], [-1.0, 1.0]]) / np.sqrt(2.0)
    a = (rng.normal(size=(490, 2)) * [2.0, 0.6]) @ turn + [-5.0, 5.0]
    b = (rng.normal(size=(490, 2)) * [2.0, 0.6]) @ turn + [5.0, -5.0]
    group = rng.normal(size=(20, 2)) * 0.08 + [-2.0, 1.5]
    return np.r_[a, b, group]


def test_a_tight_group_at_the_edge_of_a_gap_is_not_a_hole_but_the_gap_is():
    codes = two_long_clusters()
    hm = latent.find_holes(codes, np.r_[codes, [[0.0, 0.0]]])
    # Scott's rule took the clusters' distance for their spread and smeared the group into
    # "empty" cells: 6 of its 20 codes were ringed at the edge of the cloud.
    assert not hm.in_hole[980:1000].any()
    assert hm.in_hole[-1]  # the middle of the gap
    assert hm.in_hole[:-1].mean() <= 0.01


@pytest.mark.parametrize("gap", [6.0, 8.0, 20.0, 40.0])
def test_the_gap_between_two_clusters_is_a_hole_however_far_apart_they_are(gap):
    # UMAP widens gaps that PCA keeps narrow: the verdict on a place must not depend on how
    # far the clusters are from each other (Scott's rule missed the middle of gaps of 6 and 8).
    rng = np.random.default_rng(7)
    left, right = rng.normal(size=(600, 2)), rng.normal(size=(600, 2))
    codes = np.r_[left - [gap / 2, 0.0], right + [gap / 2, 0.0]]
    hm = latent.find_holes(codes, np.r_[codes, [[0.0, 0.0], [0.0, 1.0]]])
    assert hm.in_hole[-2:].all()
    assert hm.in_hole[:-2].mean() <= 0.01


@pytest.mark.parametrize("shape", ["two clusters", "ring", "long clusters"])
def test_training_codes_in_a_hole_sit_alone(shape):
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(11)
    if shape == "two clusters":
        codes = np.r_[rng.normal(size=(1500, 2)), rng.normal(size=(1500, 2)) + [5.0, 0.0]]
    elif shape == "ring":
        codes = ring(3000, seed=11)
    else:
        codes = two_long_clusters(11)
    hm = latent.find_holes(codes)
    assert hm.in_hole.mean() <= 0.005
    if hm.in_hole.any():
        dist, _ = cKDTree(codes).query(codes[hm.in_hole], k=2)
        assert dist[:, 1].min() > 0.5 * hm.bandwidth[0]  # no other code near it


@pytest.mark.parametrize("support", ["hull", "kde"])
def test_no_hole_reaches_the_edge_of_the_support(support):
    from scipy.ndimage import distance_transform_edt

    rng = np.random.default_rng(12)
    t = rng.uniform(0.2, np.pi - 0.2, 4000)  # a thick crescent: its concave side is in the hull
    codes = np.c_[np.cos(t), np.sin(t)] * rng.uniform(0.8, 1.2, (4000, 1))
    hm = latent.find_holes(codes, support=support)
    cell = np.array([np.diff(hm.x_edges)[0], np.diff(hm.y_edges)[0]])
    padded = np.pad(hm.support, 1, constant_values=False)
    to_edge = distance_transform_edt(padded, sampling=(cell[1], cell[0]))[1:-1, 1:-1]
    assert hm.vacant.any()
    assert (to_edge[hm.vacant] - 0.5 * cell.max() > hm.bandwidth[0]).all()
    assert hm.in_hole.mean() <= 0.005  # the crescent's rim is not a hole


def test_hundred_thousand_points_take_well_under_a_second():
    rng = np.random.default_rng(3)
    train = rng.normal(size=(100_000, 2))
    coords = rng.normal(size=(100_000, 2)) * 1.5
    latent.find_holes(train[:1000], coords[:1000])  # import scipy outside the timing
    start = time.perf_counter()
    hm = latent.find_holes(train, coords)
    assert time.perf_counter() - start < 1.0
    assert hm.in_hole.shape == (100_000,)


def test_to_dict_carries_what_a_plot_needs_and_is_json():
    train = ring(500)
    coords = np.array([[0.0, 0.0], [1.0, 0.0]])
    hm = latent.find_holes(train, coords, grid_size=30, hole_indicator=[5.0, 0.5])
    d = hm.to_dict()
    json.dumps(d)  # no numpy types, no NaN
    assert len(d["x_centers"]) == 30 and len(d["x_edges"]) == 31
    assert np.array(d["density"]).shape == (30, 30)
    assert d["in_hole"] == [True, False] and d["n_in_hole"] == 1
    assert d["hole_indicator"] == [5.0, 0.5]
    vac = np.array([[v is not None for v in row] for row in d["vacant_density"]])
    np.testing.assert_array_equal(vac, hm.vacant)
    grid = hm.to_dict(points=False)  # the grid alone, whatever the number of points
    json.dumps(grid)
    assert "in_hole" not in grid and grid["vacant"] == d["vacant"]


def test_bad_inputs_are_explained():
    with pytest.raises(ValueError, match="2 columns"):
        latent.find_holes(np.zeros((10, 3)))
    with pytest.raises(ValueError, match="support"):
        latent.find_holes(ring(100), support="disk")
    with pytest.raises(ValueError, match="NaN"):
        latent.find_holes(np.array([[0.0, np.nan], [1.0, 1.0]]))
    with pytest.raises(ValueError, match="3 values for 2 points"):
        latent.find_holes(ring(100), np.zeros((2, 2)), hole_indicator=[1, 2, 3])
    with pytest.raises(ValueError, match="empty_count"):
        latent.find_holes(ring(100), empty_count=0)
    with pytest.raises(ValueError, match="bandwidth"):
        latent.find_holes(ring(100), bandwidth=-1.0)


def test_degenerate_codes_give_a_map_without_holes():
    line = np.c_[np.linspace(0, 1, 50), np.zeros(50)]
    hm = latent.find_holes(line, grid_size=10)
    assert hm.density.shape == (10, 10) and not hm.in_hole.any()


def test_project_2d_passes_2d_codes_through_and_reduces_wider_ones():
    rng = np.random.default_rng(4)
    Z2 = rng.normal(size=(50, 2))
    out = latent.project_2d(Z2)
    np.testing.assert_array_equal(out, Z2)
    assert out is not Z2
    Z = rng.normal(size=(200, 6)) * np.array([5.0, 3.0, 0.1, 0.1, 0.1, 0.1])
    xy = latent.project_2d(Z, "pca")
    assert xy.shape == (200, 2)
    # PCA keeps the two dominant directions: nearly all the variance survives.
    assert xy.var(axis=0).sum() > 0.99 * Z.var(axis=0).sum()
    np.testing.assert_array_equal(latent.project_2d(Z[:, :1]), np.c_[Z[:, 0], np.zeros(200)])
    with pytest.raises(ValueError, match="method"):
        latent.project_2d(Z, "tsne")


@pytest.mark.slow  # umap-learn compiles its numba kernels on first use: 15 s to over a minute
def test_pca_and_umap_maps_of_the_same_codes_both_show_the_gap_and_few_lone_codes():
    rng = np.random.default_rng(8)
    centres = rng.normal(size=(2, 8))
    centres *= 4.0 / np.linalg.norm(centres[0] - centres[1])
    Z = np.r_[rng.normal(size=(500, 8)) * 0.5 + centres[0],
              rng.normal(size=(500, 8)) * 0.5 + centres[1]]  # fmt: skip
    for method in ("pca", "umap"):
        hm = latent.find_holes(latent.project_2d(Z, method))
        assert hm.hole_cell_share > 0.15, method
        assert hm.in_hole.mean() <= 0.01, method


@pytest.mark.slow  # umap-learn compiles its numba kernels on first use: 15 s to over a minute
def test_project_2d_umap_is_seeded():
    rng = np.random.default_rng(5)
    Z = np.r_[rng.normal(size=(60, 5)), rng.normal(size=(60, 5)) + 8.0]
    a = latent.project_2d(Z, "umap", random_state=0)
    b = latent.project_2d(Z, "umap", random_state=0)
    assert a.shape == (120, 2)
    np.testing.assert_allclose(a, b)
    # The two clusters stay apart on the map.
    gap = np.linalg.norm(a[:60].mean(0) - a[60:].mean(0))
    assert gap > 2.0 * max(a[:60].std(0).max(), a[60:].std(0).max())


def test_hole_indicator_is_none_for_detectors_without_one():
    from ad_core import make_detector

    rng = np.random.default_rng(6)
    X = rng.normal(size=(100, 4))
    assert latent.hole_indicator(make_detector("knn").fit(X), X) is None
