"""``python -m ad_core.bench semi``: 10 % of the anomalies labelled, and XGBOD's choice."""

from __future__ import annotations

import csv
import re

import numpy as np

from ad_core.bench import semi


def test_the_labelled_share_labels_anomalies_only_and_at_least_one():
    y = np.r_[np.zeros(500, int), np.ones(45, int)]
    labels = semi.labelled_anomalies(y, 0.1, seed=0)
    assert set(np.unique(labels)) == {-1, 1}
    assert (labels == 1).sum() == 4  # int(0.1 * 45), as ADBench takes it
    assert (y[labels == 1] == 1).all()  # no normal is labelled
    few = semi.labelled_anomalies(np.r_[np.zeros(50, int), np.ones(3, int)], 0.1, seed=0)
    assert (few == 1).sum() == 1
    assert not np.array_equal(labels, semi.labelled_anomalies(y, 0.1, seed=1))


def test_quick_comparison_writes_every_method_on_every_set(tmp_path):
    out = tmp_path / "semi.md"
    assert semi.main(["--quick", "--skip-choice", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# Semi-supervised: 10 % of the anomalies labelled")
    assert "Command: `python -m ad_core.bench semi --quick --skip-choice --out" in text
    with (tmp_path / "semi.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert {(r["dataset"], r["method"]) for r in rows} == {
        (d, m) for d in semi.QUICK_SETS for m in semi.METHODS
    }
    for r in rows:
        assert 0.0 <= float(r["auroc"]) <= 1.0 and 0.0 <= float(r["auprc"]) <= 1.0
        assert int(r["n_labelled"]) >= 1
    # one row of AUROC per method with the mean over the sets
    for title in semi.METHOD_TITLES.values():
        assert re.search(rf"^\| {re.escape(title)} \|.*\| \*\*[0-9.]+\*\* \|$", text, re.M)


def test_a_choice_task_scores_every_candidate_and_the_peers_in_every_situation():
    rows = semi.choice_task(
        "cardio_sample",
        0,
        str(semi.default_data_dir()),
        1,
        [("iforest", "ecod")],
        (0.1,),
        rows=300,
        counts=(10,),
    )
    situations = {"loop_10", "semi"}
    peers = {(r["families"], r["situation"]) for r in rows if r["families"] in ("hgb", "iforest")}
    assert peers == {(p, s) for p in ("hgb", "iforest") for s in situations}
    mine = [r for r in rows if r["families"] == "iforest+ecod"]
    grid = len(semi.POLICIES) * len(semi.STRENGTHS) * len(semi.COMBINATIONS) * len(semi.SPACES)
    assert len(mine) == grid * len(situations)
    assert all(0.0 <= r["auroc"] <= 1.0 for r in rows)


def _rows(figures: dict[tuple, dict[str, float]]) -> list[dict]:
    """Return choice rows whose per-set figure is the given one (one seed, semi only)."""
    out = []
    for key, per_set in figures.items():
        for dataset, value in per_set.items():
            out.append(
                {
                    "dataset": dataset,
                    "seed": 0,
                    "stage": 1,
                    **dict(zip(semi.KEY_FIELDS, key, strict=True)),
                    "situation": "semi",
                    "auroc": value,
                }
            )
    return out


def test_leave_one_set_out_picks_on_the_other_sets_only(monkeypatch):
    monkeypatch.setattr(semi, "STRENGTHS", (0.0,))
    monkeypatch.setattr(semi, "COMBINATIONS", ("rank",))
    monkeypatch.setattr(semi, "SPACES", ("rank",))
    monkeypatch.setattr(semi, "POLICIES", ("always",))
    a = ("iforest", 0.1, "always", 0.0, "rank", "rank")
    b = ("knn+lof", 0.1, "always", 0.0, "rank", "rank")
    # a wins on s1 and s2, b only on s3 (by much): held out s3, a is picked on s1 and s2
    figures = {
        a: {"s1": 0.9, "s2": 0.9, "s3": 0.5},
        b: {"s1": 0.8, "s2": 0.8, "s3": 0.99},
    }
    folds, default = semi.leave_one_set_out(
        _rows(figures), ["s1", "s2", "s3"], [("iforest",), ("knn", "lof")], (0.1,)
    )
    picks = {f["held_out"]: f["pick"] for f in folds}
    assert picks["s3"] == a and folds[2]["held_figure"] == 0.5
    # held out s1: on s2 and s3 b's mean (0.895) beats a's (0.7)
    assert picks["s1"] == b and picks["s2"] == b
    assert default == b  # the pick of most folds
