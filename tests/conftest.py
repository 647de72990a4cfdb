"""Shared fixtures: the reference data beside the repository, and a private workspace."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Return ../shared/data; skip when it is absent, except in CI where it must exist."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"CI must have the reference data at {SHARED_DATA}")
        pytest.skip(f"reference data {SHARED_DATA} is not on this machine")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _private_workspace(tmp_path, monkeypatch):
    """Point every test at its own empty workspace so none touches ./.ad_studio."""
    monkeypatch.setenv("AD_STUDIO_HOME", str(tmp_path / "ad_studio_home"))


@pytest.fixture(autouse=True)
def _restore_main_module():
    """Put back ``sys.modules["__main__"]`` after each test.

    Streamlit's AppTest runs app.py as ``__main__`` and leaves it there; a process a later
    test starts with "spawn" or "forkserver" would then run app.py again as its main module.
    """
    import sys

    main = sys.modules.get("__main__")
    yield
    if main is not None:
        sys.modules["__main__"] = main
