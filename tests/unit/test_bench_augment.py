"""The augmentation benchmark: its anomaly generators, and the quick run end to end (issue 10)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from ad_core.bench import augment as bench


@pytest.fixture(scope="module")
def correlated_normals():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(600, 3))
    X = np.repeat(base, 2, axis=1) + 0.1 * rng.normal(size=(600, 6))
    return bench._unit_range(X)


def test_dependency_anomalies_keep_the_marginals_and_lose_the_dependence(correlated_normals):
    X = correlated_normals
    out = bench.synthetic_anomalies(X, "dependency", 600, seed=0)
    np.testing.assert_allclose(out.mean(axis=0), X.mean(axis=0), atol=0.03)
    np.testing.assert_allclose(out.std(axis=0), X.std(axis=0), rtol=0.15)
    assert np.corrcoef(X.T)[0, 1] > 0.98 and abs(np.corrcoef(out.T)[0, 1]) < 0.15


def test_local_anomalies_spread_wider_and_clustered_ones_sit_away(correlated_normals):
    X = correlated_normals
    local = bench.synthetic_anomalies(X, "local", 600, seed=0)
    clustered = bench.synthetic_anomalies(X, "clustered", 600, seed=0)
    # covariances x5: about sqrt(5) times the spread around the same centre
    assert 1.8 < local.std(axis=0).mean() / X.std(axis=0).mean() < 2.8
    assert np.abs(local.mean(axis=0) - X.mean(axis=0)).max() < 0.05
    # means x5: the anomalies' clusters lie further out than the normal ones
    centre = X.mean(axis=0)
    far = np.linalg.norm(clustered - centre, axis=1).mean()
    assert far > 2.0 * np.linalg.norm(X - centre, axis=1).mean()


def test_global_anomalies_are_uniform_over_the_widened_range(correlated_normals):
    X = correlated_normals
    out = bench.synthetic_anomalies(X, "global", 5000, seed=0)
    low, high = X.min(axis=0), X.max(axis=0)
    pad = (high - low) * (bench.GLOBAL_WIDEN - 1) / 2
    assert (out >= low - pad - 1e-9).all() and (out <= high + pad + 1e-9).all()
    assert ((out < low) | (out > high)).mean() > 0.05  # some values beyond the normal range


def test_the_quick_run_writes_the_tables_with_numbers(tmp_path):
    out = tmp_path / "augment.md"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    text = out.read_text()
    assert "Command: `python -m ad_core.bench augment --quick" in text
    for heading in (
        "## AUROC of each augmentation per anomaly kind",
        "## Where ours agrees with the paper and where not",
        "## Per set",
        "## Choosing the augmentation on labels",
    ):
        assert heading in text
    # one row per anomaly kind, each with a number for the baseline
    for kind in (*bench.TABLE_KINDS, *bench.IMAGE_KINDS):
        row = next(line for line in text.splitlines() if line.startswith(f"| {kind} |"))
        assert re.search(r"\d\.\d{3}", row), row
    for k in bench.BUDGETS:
        assert f"| tables | {k} + {5 * k} | expert labels" in text
    assert "random choice" in text and "consensus (label-free)" in text
    fits = pd.read_csv(tmp_path / "augment.csv")
    assert set(fits["kind"]) == {*bench.TABLE_KINDS, *bench.IMAGE_KINDS}
    assert fits["test_auroc"].between(0, 1).all()
    assert (fits["candidate"] == "autoencoder").sum() == 7  # the baseline in every task
    draws = pd.read_csv(tmp_path / "augment_selection.csv")
    assert not draws.empty and draws["regret"].ge(0).all()
