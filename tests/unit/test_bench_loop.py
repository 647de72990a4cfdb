"""``python -m ad_core.bench loop --quick``: the label-loop benchmark end to end, on the samples."""

from __future__ import annotations

import csv
import re

import numpy as np

from ad_core.bench import loop


def test_quick_loop_writes_curves_for_every_strategy_and_the_warm_retrain(tmp_path):
    out = tmp_path / "loop.md"
    assert loop.main(["--quick", "--jobs", "1", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# The label loop, measured")
    assert "Command: `python -m ad_core.bench loop --quick --jobs 1 --out" in text

    with (tmp_path / "loop.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    sets = {r["dataset"] for r in rows}
    assert sets == set(loop.QUICK_SETS)
    for dataset in sets:
        for strategy in loop.STRATEGIES:
            mine = [
                r
                for r in rows
                if r["dataset"] == dataset
                and r["strategy"] == strategy
                and r["method"] == "deep_sad"
            ]
            assert sorted(int(r["n_labels"]) for r in mine) == [0, 10, 20]
            for r in mine:
                assert 0.0 <= float(r["auroc"]) <= 1.0 and 0.0 <= float(r["auprc"]) <= 1.0
    # peers on the same labels: the boosted classifier and Isolation Forest at every count
    assert {r["method"] for r in rows} >= {"deep_sad", "deep_sad_cold", "hgb", "iforest"}
    hgb = [r for r in rows if r["method"] == "hgb"]
    assert {int(r["n_labels"]) for r in hgb} == {10, 20}
    # XGBOD learns from the same labels as hgb, and starts from its prior at 0 labels
    for dataset in sets:
        for strategy in loop.STRATEGIES:
            mine = {
                int(r["n_labels"]): r
                for r in rows
                if r["dataset"] == dataset and r["strategy"] == strategy and r["method"] == "xgbod"
            }
            assert sorted(mine) == [0, 10, 20]
            for r in hgb:
                if r["dataset"] == dataset and r["strategy"] == strategy:
                    peer = mine[int(r["n_labels"])]
                    assert peer["n_labelled_anomalies"] == r["n_labelled_anomalies"]
    versus = text.split("## XGBOD against the boosted classifier on the same labels")[1]
    versus = versus.split("## Learning curves")[0]
    for strategy in loop.STRATEGIES:
        assert re.search(
            rf"^\| {strategy} \| [+-][0-9.]+ \(\d/2\) \| [+-][0-9.]+ \(\d/2\) \|$", versus, re.M
        )

    # the ranking of the strategies, best AUROC first, names the best
    ranking = re.findall(
        r"^\| (highest|threshold|diverse|random) \| ([0-9.]+) \| [0-9.]+ \| \d+% \|$", text, re.M
    )
    assert sorted(s for s, _ in ranking) == sorted(loop.STRATEGIES)
    values = [float(v) for _, v in ranking]
    assert values == sorted(values, reverse=True)
    assert f"Best here by AUROC: **{ranking[0][0]}**" in text
    for title in ("Mean over the sets (AUROC)", "Mean over the sets (AUPRC)", "Per set"):
        assert title in text
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        has_matplotlib = False
    else:
        has_matplotlib = True
    if has_matplotlib:
        assert "![AUROC against labels](loop.png)" in text
        assert (tmp_path / "loop.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert "No plot" in text
    # the warm against the full retrain, through train_run, with its time and AUROC
    section = text.split("## Warm against full retrain")[1]
    warm = re.search(r"\| warm: fine-tune the base run \| ([0-9.]+) s \|", section)
    full = re.search(r"\| full: from scratch \| ([0-9.]+) s \|", section)
    assert warm and full


def test_the_simulated_expert_labels_exactly_the_rows_the_queue_shows():
    settings = loop.Settings(
        strategies=("highest",),
        checkpoints=(0, 10),
        batch=10,
        max_rows=300,
        pretrain_epochs=2,
        epochs=2,
        warm_epochs=2,
        cold_strategies=(),
        deepod_strategies=(),
    )
    rows = loop.run_task("cardio_sample", 0, settings)
    at_ten = [r for r in rows if r["n_labels"] == 10 and r["method"] == "deep_sad"]
    assert len(at_ten) == 1
    X, y = loop.load_set("cardio_sample", settings.data_dir)
    keep = loop.stratified_rows(y, 300, 0)
    assert keep.size == 300 and abs(y[keep].mean() - y.mean()) < 0.01
    # the top 10 of the unsupervised run were shown and answered with their ground truth
    base = loop._deep_sad(settings, 0).fit(np.ascontiguousarray(X[keep]))
    top = np.argsort(-base.decision_scores_, kind="stable")[:10]
    assert at_ten[0]["n_labelled_anomalies"] == int(y[keep][top].sum())
    # XGBOD on those labels: its warm retrain is the full fit on them, on the open rows
    from ad_core import make_detector
    from ad_core.metrics import auroc

    Xk, yk = np.ascontiguousarray(X[keep]), y[keep]
    labels = np.full(yk.size, -1)
    labels[top] = yk[top]
    open_ = labels == -1
    full = make_detector("xgbod", random_state=0).fit(Xk, labels)
    xgbod = {r["n_labels"]: r for r in rows if r["method"] == "xgbod"}
    assert xgbod[10]["auroc"] == auroc(yk[open_], full.decision_scores_[open_])
    prior = make_detector("xgbod", random_state=0).fit(Xk).decision_scores_
    assert xgbod[0]["auroc"] == auroc(yk, prior)
