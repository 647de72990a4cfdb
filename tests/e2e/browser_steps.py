"""Steps the browser tests share: wait for the app, read a metric, take a screenshot."""

from __future__ import annotations

import os
import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO_ROOT / os.environ.get("AD_STUDIO_SCREENSHOTS", "test-artifacts/screenshots")
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'


def wait_idle(page, settle_ms: int = 400) -> None:
    """Wait until the app's script run is over (after giving a rerun time to start)."""
    page.wait_for_timeout(250)
    page.wait_for_selector(IDLE, state="attached")
    page.wait_for_timeout(settle_ms)


def metric(page, label: str) -> str:
    """Return the value shown by the st.metric whose label is ``label``."""
    box = page.locator('[data-testid="stMetric"]').filter(
        has=page.locator(
            '[data-testid="stMetricLabel"]', has_text=re.compile(f"^{re.escape(label)}$")
        )
    )
    return box.locator('[data-testid="stMetricValue"]').first.inner_text().strip()


def wait_metric_change(page, label: str, old: str, timeout_ms: int = 30_000) -> str:
    """Wait until the metric shows a value other than ``old``; return it."""
    waited = 0
    while waited < timeout_ms:
        value = metric(page, label)
        if value != old:
            return value
        page.wait_for_timeout(250)
        waited += 250
    raise AssertionError(f"metric {label!r} stayed at {old!r}")


def shoot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def goto(page, base: str, path: str) -> None:
    page.goto(f"{base}/{path}")
    wait_idle(page, settle_ms=800)
