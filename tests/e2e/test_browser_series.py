"""The README's sensor-series walkthrough in a real browser: sample, windows, train, events, label.

Saves screenshots in test-artifacts/screenshots/ (git-ignored), as the other browser test does.
"""

from __future__ import annotations

import re

import pytest
from browser_steps import goto, metric, shoot, wait_idle

pytestmark = pytest.mark.e2e


def test_series_sample_windows_train_events_label_reload(page, app_server):
    base = app_server
    goto(page, base, "")
    page.get_by_role("button", name="Machine sensor series").click()
    page.get_by_text("Loaded the sample").wait_for()
    wait_idle(page)
    # The Data page says it is a series and proposes a day-long window, with the reason.
    page.get_by_text("can be analysed as a series").wait_for()
    page.get_by_text(re.compile(r"The values repeat every 28\d points")).first.wait_for()
    assert page.get_by_role("switch", name=re.compile("^Analyse as a series")).is_checked()
    shoot(page, "series_data")

    goto(page, base, "train")
    page.get_by_text("This dataset is analysed as a series").wait_for()
    page.locator('[data-testid="stMain"] [data-testid="stSelectbox"]').first.click()
    page.get_by_role("option", name=re.compile("^Autoencoder")).first.click()
    wait_idle(page)
    page.get_by_role("button", name="Train", exact=True).click()
    page.get_by_text("is trained and scored").wait_for(timeout=180_000)
    wait_idle(page, settle_ms=1000)

    goto(page, base, "scores")
    page.get_by_text("The series over time").wait_for()
    page.locator(".rangeslider-container").first.wait_for(state="attached", timeout=30_000)
    page.wait_for_timeout(1500)
    n_events = int(metric(page, "Events").replace(",", ""))
    assert n_events >= 1
    hit = metric(page, "True anomaly stretches hit")
    assert re.fullmatch(r"[1-5] of 5", hit), hit
    page.get_by_text("Flagged events", exact=True).wait_for()
    shoot(page, "series_scores")

    # Label: the queue shows the top point in its stretch; label the stretch whole.
    goto(page, base, "label")
    name = page.get_by_role("textbox", name="Annotator")
    name.fill("e2e tester")
    name.press("Enter")
    wait_idle(page)
    page.get_by_text("Highest scores", exact=True).click()
    wait_idle(page, settle_ms=1000)
    button = page.get_by_role("button", name=re.compile(r"^Anomaly \("))
    label = button.inner_text()
    n_points = int(re.search(r"\(([\d,]+) points\)", label).group(1).replace(",", ""))
    button.click()
    page.get_by_text(f"Labelled the stretch ({n_points:,} points) anomalous").wait_for()
    wait_idle(page)
    page.reload()
    wait_idle(page, settle_ms=800)
    goto(page, base, "label")
    assert metric(page, "Anomalies") == f"{n_points:,}"
    shoot(page, "series_label")
