"""The dashboard in a real browser: sample, train, drag the threshold, lasso and label, reload.

Saves a screenshot of each page in test-artifacts/screenshots/ (git-ignored); with
AD_STUDIO_SCREENSHOTS=docs/screenshots it refreshes the README's pictures instead.
"""

from __future__ import annotations

import re

import pytest
from browser_steps import goto, metric, shoot, wait_idle, wait_metric_change

pytestmark = pytest.mark.e2e


def test_sample_train_threshold_lasso_label_reload(page, app_server):
    base = app_server

    # Data: one click loads the ECG sample
    goto(page, base, "")
    page.get_by_role("button", name="ECG5000 heartbeats").click()
    page.get_by_text("Loaded the sample").wait_for()
    wait_idle(page)
    assert metric(page, "Rows") == "1,000"
    shoot(page, "data")

    # Train, as the README says: the default detector (Autoencoder) with its defaults, on the
    # beats whose ground truth is normal, 30 % held out; in the background with progress
    goto(page, base, "train")
    # The form proposes the ensemble; the README's walkthrough picks the autoencoder.
    page.locator('[data-testid="stMain"] [data-testid="stSelectbox"]').first.click()
    page.get_by_role("option", name=re.compile("^Autoencoder")).first.click()
    wait_idle(page)
    page.get_by_text("Rows whose ground truth is normal (novelty set-up)").click()
    assert page.get_by_role("checkbox", name="Hold out rows for evaluation").is_checked()
    # First a long training, to see the progress bar (epoch n/N, time left) and cancel it
    epochs = page.get_by_label("epochs", exact=True)
    default_epochs = epochs.input_value()
    epochs.fill("1000")  # the most the form allows
    epochs.press("Tab")
    page.get_by_role("button", name="Train", exact=True).click()
    page.get_by_test_id("stProgress").wait_for(timeout=60_000)
    page.get_by_text(re.compile(r"Training: epoch \d+ of 1000 · about .* left")).wait_for(
        timeout=60_000
    )
    page.get_by_role("button", name="Cancel").click()
    page.get_by_text("was cancelled").wait_for(timeout=60_000)
    wait_idle(page)
    # Then the README's run, with the default epochs
    epochs = page.get_by_label("epochs", exact=True)
    epochs.fill(default_epochs)
    epochs.press("Tab")
    page.get_by_role("button", name="Train", exact=True).click()
    page.get_by_text("is trained and scored").wait_for(timeout=180_000)
    wait_idle(page, settle_ms=1500)
    shoot(page, "train")

    # Scores: drag the threshold line with the mouse; the flagged count follows
    goto(page, base, "scores")
    handle = page.locator('[data-testid="threshold-handle"]')
    handle.wait_for(state="attached")
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for()
    page.wait_for_timeout(1500)  # plotly draws the ROC/PR charts
    # The README's promise: held-out AUROC of at least 0.90, on rows the model never saw
    page.get_by_text("held-out rows the model never saw").first.wait_for()
    assert float(metric(page, "AUROC")) >= 0.90
    shoot(page, "scores")
    before = metric(page, "Flagged rows")
    area = page.locator('[data-testid="threshold-drag-area"]').bounding_box()
    start = handle.bounding_box()
    x, y = start["x"] + start["width"] / 2, area["y"] + area["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    for step in range(1, 13):  # to the right: fewer rows flagged
        page.mouse.move(x + 20 * step, y)
        page.wait_for_timeout(20)
    page.mouse.up()
    after = wait_metric_change(page, "Flagged rows", before)
    assert int(after.replace(",", "")) < int(before.replace(",", ""))
    wait_idle(page)
    slider_value = page.get_by_label("Threshold value").input_value()
    assert float(slider_value) > 0

    # Latent space: say who labels (sidebar), lasso the upper part, label it anomalous
    goto(page, base, "latent")
    name = page.get_by_role("textbox", name="Annotator")
    name.fill("e2e tester")
    name.press("Enter")
    wait_idle(page)
    chart = page.locator('[data-testid="stPlotlyChart"]').first
    drag = chart.locator(".nsewdrag").first
    drag.wait_for()
    page.wait_for_timeout(1000)
    box = drag.bounding_box()
    # The upper part of the map, where the unusual beats lie apart from the two clusters.
    x0, y0 = box["x"] + 0.02 * box["width"], box["y"] + 0.02 * box["height"]
    x1, y1 = box["x"] + 0.98 * box["width"], box["y"] + 0.35 * box["height"]
    page.mouse.move(x0, y0)
    page.mouse.down()
    for px, py in ((x1, y0), (x1, y1), (x0, y1), (x0, y0 + 2)):
        page.mouse.move(px, py, steps=8)  # a lasso is a path: move in small steps
    page.mouse.up()
    selected = wait_metric_change(page, "Selected rows", "0")
    n_selected = int(selected.replace(",", ""))
    assert n_selected > 0
    wait_idle(page)
    page.get_by_role("button", name="Label anomaly").click()
    page.get_by_text(f"Labelled {n_selected:,} row(s) anomalous").wait_for()
    wait_idle(page)

    # Reload the browser: the labels are still there (committed at once, restored on load)
    page.reload()
    wait_idle(page, settle_ms=800)
    goto(page, base, "label")
    assert metric(page, "Anomalies") == f"{n_selected:,}"
    assert metric(page, "Labelled rows") == f"{n_selected:,}"
    shoot(page, "label")
    goto(page, base, "latent")
    page.get_by_text("your labels", exact=True).click()
    wait_idle(page, settle_ms=1500)
    assert page.locator(".legendtext", has_text="anomaly").count() >= 1
    shoot(page, "latent")

    # Runs: the training is listed
    goto(page, base, "runs")
    open_button = page.get_by_test_id("stBaseButton-secondary").filter(
        has_text=re.compile("^Open$")
    )
    open_button.first.wait_for()
    shoot(page, "runs")
    picker = page.locator('[data-testid="stMain"] [data-testid="stSelectbox"]').first
    shown = picker.evaluate(
        "e => e.textContent + ' ' + [...e.querySelectorAll('input')].map(i => i.value).join(' ')"
    )
    assert "Autoencoder" in shown, shown
