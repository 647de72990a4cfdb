"""``python -m ad_core.bench app``: its parts run alone and write their own sections."""

from __future__ import annotations

from ad_core.bench import app
from ad_studio_ui import bench


def test_merge_report_replaces_the_measured_sections_and_keeps_the_others():
    first = bench.merge_report(None, {"dashboard": "## D\n\nold dashboard", "retrain": "## R\nold"})
    assert first.startswith("# Dashboard timings")
    second = bench.merge_report(first, {"retrain": "## R\nnew", "training": "## T\nnew"})
    assert "old dashboard" in second and "## R\nnew" in second and "## R\nold" not in second
    # the sections keep the order of the parts, whatever order they were measured in
    assert second.index("## D") < second.index("## T") < second.index("## R")
    assert bench.merge_report(second, {}) == second


def test_app_defaults_are_what_the_form_submits_unchanged():
    params = bench.app_default_params("deep_sad")
    assert params["epochs"] == 150 and params["pretrain_epochs"] == 150
    assert params["random_state"] == 0  # the app's seed, not the library's None
    assert bench.app_default_params("deep_sad", overrides={"lr": 0.001})["lr"] == 0.001


def _timings(
    app_ratios: tuple[float, float], thread_ratios: tuple[float, float], thread_cores: float = 1.1
) -> bench.TrainingTimings:
    def mode(name: str, ratios: tuple[float, float], cores: float) -> bench.ConcurrencyTimings:
        jobs = [
            bench.JobTiming(n, 10.0, 10.0 * r, [1], [1], 0.98, 0.2)
            for n, r in zip("AB", ratios, strict=True)
        ]
        return bench.ConcurrencyTimings(name, jobs, 10.0 * max(ratios), cores, 0.3)

    timings = bench.TrainingTimings(
        rows=4800,
        features=5,
        params=bench.app_default_params("deep_sad"),
        preprocessing={},
        default_threads=2,
        cores=2,
        torch_info="x",
    )
    timings.modes = [
        mode("app", app_ratios, 1.95),
        mode("app_default", (5.0, 5.0), 1.9),
        mode("threads", thread_ratios, thread_cores),
    ]
    for job in timings.modes[1].jobs:
        job.threads_together = [2]
    return timings


def test_the_diagnosis_follows_the_figures():
    gil = " ".join(bench.training_diagnosis(_timings((1.0, 1.1), (3.1, 3.2))))
    assert "the jobs meet the goal, 1.00x, 1.10x" in gil and "take turns on the GIL" in gil
    assert "every job at 2 threads" in gil and "4 OpenMP threads on 2 cores" in gil
    # threads as fast as processes: nothing points at the GIL
    plain = " ".join(bench.training_diagnosis(_timings((1.0, 1.1), (1.2, 1.2), 1.9)))
    assert "GIL" not in plain
    missed = " ".join(bench.training_diagnosis(_timings((2.7, 2.6), (3.1, 3.2))))
    assert "the jobs miss the goal" in missed and "GIL" not in missed


def test_repeats_are_summarised_by_their_medians():
    t = _timings((2.0, 2.0), (3.0, 3.0))
    t.modes += _timings((3.0, 3.0), (3.0, 3.0)).modes + _timings((2.2, 2.2), (3.0, 3.0)).modes
    app = t.summary("app")
    assert app.repeats == 3 and app.jobs[0].ratios == [2.0, 3.0, 2.2]
    assert app.jobs[0].ratio == 2.2 and app.jobs[0].together == 22.0
    assert t.summary("threads_default") is None
    t.modes[1].jobs[0].stopped = True  # cancelled at the limit: a lower bound
    text = bench.training_section(t, "python -m ad_core.bench app --only training")
    assert "| 2.20x (2.00, 3.00, 2.20) | meets the goal |" in text
    assert "| >= 50.0 s | >=5.00x (>=5.00, 5.00, 5.00) | misses the goal |" in text


def test_training_and_retrain_parts_run_alone_and_keep_the_dashboard_section(tmp_path):
    out = tmp_path / "app.md"
    out.write_text(bench.merge_report(None, {"dashboard": "## Threshold rerun\n\nkept"}))
    quick = ["--epochs", "1", "--train-repeats", "1", "--retrain-repeats", "1", "--out", str(out)]
    assert app.main(["--only", "training", *quick]) == 0
    assert app.main(["--only", "retrain", *quick]) == 0
    text = out.read_text()
    assert "## Threshold rerun\n\nkept" in text
    assert "`python -m ad_core.bench app --only training --epochs 1 --train-repeats 1" in text
    for way in bench.MODES.values():
        assert text.count(f"| {way} |") == 2  # jobs A and B
    assert "Deep SAD retrain, Deep SAD's default settings" in text
    assert "10 rows labelled by their ground truth (5 anomalies, 5 normal" in text
    assert "load average" in text
