"""Fixtures for driving the dashboard headless with AppTest, on private workspaces."""

from __future__ import annotations

import pytest

from ad_core.store import Workspace
from ad_studio_ui.apptest import app_test, navigation_mode
from ad_studio_ui.datasets import add_sample
from ad_studio_ui.training import train_run


@pytest.fixture
def app():
    """Return a fresh AppTest of the dashboard (already run once, on the Data page)."""
    with navigation_mode():
        yield app_test(timeout=60).run()


@pytest.fixture(scope="module")
def trained_home(tmp_path_factory):
    """Return a workspace directory with the ECG sample and one trained autoencoder run."""
    home = tmp_path_factory.mktemp("trained_workspace")
    ws = Workspace(home)
    dataset_id = add_sample(ws, "ecg5000")
    run_id = ws.create_run(
        dataset_id,
        "autoencoder",
        {"epochs": 3, "random_state": 0},
        {"scaling": "standard", "impute": "median", "max_categories": 20},
    )
    train_run(ws, run_id)
    ws.set_setting("last_dataset_id", dataset_id)
    ws.close()
    return home


@pytest.fixture
def trained_app(trained_home, monkeypatch):
    """Return an AppTest whose workspace holds a trained run (a copy per test is not needed:
    tests using it only read, or write labels and settings they check themselves)."""
    monkeypatch.setenv("AD_STUDIO_HOME", str(trained_home))
    with navigation_mode():
        yield app_test(timeout=60).run()
