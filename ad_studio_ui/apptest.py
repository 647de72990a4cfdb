"""Driving the app headless with ``streamlit.testing.v1.AppTest`` (tests and the app benchmark).

AppTest (Streamlit 1.67) resets ``PagesManager.uses_pages_directory`` before every run, and
the new PagesManager then switches back to the old "pages/ folder" mode because a folder
named pages/ sits beside app.py. In that mode a rerun executes the page file alone, without
app.py (no sidebar, no messages). A real server sets the flag once per process and
``st.navigation`` turns it off for good, so the app is right; :func:`app_test` makes AppTest
behave like the server.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest

from ad_studio_ui import frame

APP_PATH = Path(__file__).resolve().parents[1] / "app.py"


@contextlib.contextmanager
def navigation_mode() -> Iterator[None]:
    """Within the block, AppTest runs app.py on every rerun, as the server does."""
    original = PagesManager.__init__

    @functools.wraps(original)
    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    PagesManager.__init__ = init
    try:
        yield
    finally:
        PagesManager.__init__ = original


def app_test(timeout: float = 60) -> AppTest:
    """Return an AppTest of the dashboard (call ``.run()`` inside ``navigation_mode()``)."""
    return AppTest.from_file(str(APP_PATH), default_timeout=timeout)


PAGES = tuple(frame.PAGES)


def open_page(at: AppTest, name: str) -> AppTest:
    """Switch the AppTest to one of the app's pages (``pages/<name>.py``) and run it."""
    return at.switch_page(f"pages/{name}.py").run()


def problems(at: AppTest) -> list[str]:
    """Return the exceptions and error messages the last run showed (empty when clean)."""
    return [f"exception: {e.value}" for e in at.exception] + [f"error: {e.value}" for e in at.error]
