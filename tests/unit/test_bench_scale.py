"""The scale benchmark runs end to end on a small table: both engines agree, the report says so."""

from __future__ import annotations

import importlib.util

import pytest

from ad_core.bench import scale


@pytest.mark.skipif(
    importlib.util.find_spec("distributed") is None, reason="the dask extra is not installed"
)
def test_scale_bench_scores_with_both_engines_and_reports_each_step(tmp_path):
    figures = scale.run(2_000, 6, tmp_path, detectors=("autoencoder",))
    jobs = figures["jobs"]
    assert [(j["format"], j["engine"]) for j in jobs] == [
        ("CSV", "local"),
        ("CSV", "dask"),
        ("Parquet", "local"),
        ("Parquet", "dask"),
    ]
    assert all(j["peak_rss"] > 50 * 2**20 and j["seconds"] > 0 for j in jobs)
    assert all(j["max_diff"] < 1e-6 for j in jobs if "max_diff" in j)
    assert all("2,000 rows scored" in j["stdout"] for j in jobs)
    steps = [s["step"] for s in figures["app"]["steps"]]
    assert len(steps) == 4 and steps[-1].startswith("train_run")
    assert figures["app"]["rows"] == 2_000
    text = scale.report(figures, "python -m ad_core.bench scale --rows 2000", (0.0, 0.0))
    assert "| autoencoder | CSV | local |" in text and "| autoencoder | Parquet | dask |" in text
    assert "## The app with a 1M-row upload" in text
