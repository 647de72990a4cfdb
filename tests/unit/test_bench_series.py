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


def test_bigan_choice_scores_every_variant_on_the_same_fit_and_renders_both_tables():
    from ad_core import make_detector

    X, y = bench.load_ecg(bench._REPO / "sample_data" / "ecg5000.csv")
    train, _ = bench.ecg_split(y)
    fit_rows, score_rows = bench.ecg_validation_split(y, train)
    det = make_detector("bigan", epochs=2, random_state=0).fit(X[fit_rows])
    variants = bench.bigan_score_variants(det, X[score_rows])
    # the detector's own score is one of the variants: l2 at its default alpha
    np.testing.assert_allclose(variants["l2, alpha 0.9"], det.decision_function(X[score_rows]))
    det.set_params(norm="l1", alpha=1.0)
    np.testing.assert_allclose(variants["l1, alpha 1"], det.decision_function(X[score_rows]))
    assert not np.allclose(variants[bench.CE_REAL], variants[bench.CE_REBUILT])

    rows = bench.run_bigan_choice(X, y, train, None, epochs=2, quick=True)
    assert {r["set"] for r in rows} == {"ECG5000 validation"}
    assert len(rows) == len(variants)  # one fit, every score
    text = "\n".join(bench.render_bigan_choice(rows))
    default = bench.BIGAN_TRAININGS[0][0]
    assert f"| {default} | ECG5000 validation | " in text
    for score in variants:
        assert f"| {score} | " in text


def test_bigan_rule_picks_the_highest_lowest_auroc_and_checks_the_defaults():
    default, other = bench.BIGAN_TRAININGS[0][0], bench.BIGAN_TRAININGS[1][0]
    score = bench.default_bigan_score()
    assert score == "l2, alpha 0.9"

    def rows(default_auroc, other_auroc):
        return [
            {"candidate": t, "set": name, "fold": 0, "seed": seed, "score": sc, "auroc": value}
            for t, value in ((default, default_auroc), (other, other_auroc))
            for name in bench.BIGAN_SETS
            for seed in (0, 1)
            for sc in bench.BIGAN_SCORE_PAIR
        ]

    text = "\n".join(bench.render_bigan_choice(rows(0.9, 0.8)))
    assert f"The best, {default} with l1, alpha 0.9 (0.900), does not agree" in text  # a tie
    good = rows(0.9, 0.8)
    for r in good:
        if r["candidate"] == default and r["score"] == score:
            r["auroc"] = 0.95
    text = "\n".join(bench.render_bigan_choice(good))
    assert f"The best, {default} with {score} (0.950), agrees with the library's defaults" in text
    # a one-term score (alpha 1: reconstruction alone) is shown, never picked
    alone = good + [
        {
            "candidate": default,
            "set": name,
            "fold": 0,
            "seed": 0,
            "score": "l2, alpha 1",
            "auroc": 0.99,
        }
        for name in bench.BIGAN_SETS
    ]
    text = "\n".join(bench.render_bigan_choice(alone))
    assert "| l2, alpha 1 | 0.990 (0.990) |" in text
    assert f"The best, {default} with {score} (0.950), agrees" in text
    assert "the best of them, l2, alpha 1, reaches 0.990" in text
    bad = rows(0.9, 0.99)
    bad[0]["auroc"] = 0.99  # one good seed of the default does not lift its lowest
    text = "\n".join(bench.render_bigan_choice(bad))
    assert f"The best, {other} with l1, alpha 0.9 (0.990), does not agree" in text


def test_ecg_validation_folds_score_disjoint_blocks_and_never_train_on_them():
    y = np.r_[np.zeros(700), np.ones(300)].astype(int)
    train, _ = bench.ecg_split(y)
    blocks = []
    for fold in range(3):
        fit_rows, score_rows = bench.ecg_validation_split(y, train, fold=fold)
        assert score_rows.size == 150 and not np.intersect1d(fit_rows, score_rows).size
        assert (y[fit_rows] == 0).all() and np.isin(fit_rows, train).all()
        blocks.append(score_rows)
    assert not np.intersect1d(blocks[0], blocks[1]).size
    np.testing.assert_array_equal(blocks[0], train[-150:])  # fold 0: the last 30 %
    with pytest.raises(ValueError, match="fold 7"):
        bench.ecg_validation_split(y, train, fold=7)
