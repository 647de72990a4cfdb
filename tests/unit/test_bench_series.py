"""The series benchmark: its baseline and event counts, and a --quick run end to end."""

from __future__ import annotations

import numpy as np
import pytest

from ad_core.bench import series as bench


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
    """Register the issue's detectors (the shared registry lists them once the lead adds them)."""
    from ad_core import detectors

    for name, target in {
        "seq2seq": "ad_core.detectors.seq2seq:Seq2Seq",
        "bigan": "ad_core.detectors.bigan:BiGAN",
        "pca": "ad_core.detectors.pca:PCA",
    }.items():
        monkeypatch.setitem(detectors._REGISTRY, name, target)


def test_rolling_robust_z_uses_only_the_points_before():
    x = np.r_[np.tile([0.0, 1.0], 50), 10.0, np.tile([0.0, 1.0], 10)]
    z = bench.rolling_robust_z(x[:, None], 20)
    assert z[0] == 0.0 and int(np.argmax(z)) == 100
    # median 0.5, MAD 0.5 over the 20 points before: |10 - 0.5| / (1.4826 * 0.5)
    assert z[100] == pytest.approx(9.5 / (1.4826 * 0.5))
    flat = bench.rolling_robust_z(np.r_[np.zeros(30), 1.0][:, None], 10)
    assert np.isfinite(flat).all()  # a flat past (MAD 0) stays finite


def test_event_recall_and_false_events_count_overlaps_with_the_labelled_windows():
    scores = np.zeros(2000)
    scores[100:110] = 5  # inside the first labelled window
    scores[1500:1503] = 5  # outside both
    out = bench.event_metrics(scores, ((90, 200), (800, 900)), threshold=1.0, min_gap=5)
    assert out == {"event_recall": 0.5, "false_per_1000": 0.5, "n_events": 2}


def test_synthetic_series_mark_their_anomaly():
    for kind in bench.SYNTHETIC_KINDS:
        x, truth = bench.synthetic_series(0, kind)
        assert x.shape == truth.shape == (4032,) and 0 < truth.mean() < 0.2
    with pytest.raises(ValueError, match="unknown kind"):
        bench.synthetic_series(0, "nope")


def test_quick_run_writes_every_table(shared_data, tmp_path):
    out = tmp_path / "series.md"
    assert bench.main(["--quick", "--data-dir", str(shared_data), "--out", str(out)]) == 0
    text = out.read_text()
    assert "Command: `python -m ad_core.bench series --quick" in text
    assert "Quick smoke run" in text
    for detector in (bench.BASELINE, *bench.NAB_DETECTORS):
        assert f"| {detector} |" in text
    assert "| art_daily_jumpsup | 288 / 32 (118) | seq2seq |" in text
    ecg = text.split("## ECG5000")[1]
    for detector in bench.ECG_DETECTORS:
        assert f"| {detector} | " in ecg
    # Isolation Forest ranks abnormal beats well even in a smoke run; a broken split would not.
    row = next(line for line in ecg.splitlines() if line.startswith("| isolation_forest |"))
    assert float(row.split("|")[2]) > 0.8
