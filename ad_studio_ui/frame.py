"""The frame shared by every page: navigation, sidebar pickers, messages, guards."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from ad_core.store import RunRecord
from ad_studio_ui import state
from ad_studio_ui.training import get_job
from ad_studio_ui.workspace import DatasetView, dataset_view, get_workspace, run_title

PAGES = {
    "data": ("pages/data.py", "Data", ":material/table_view:"),
    "train": ("pages/train.py", "Train", ":material/model_training:"),
    "scores": ("pages/scores.py", "Scores", ":material/bar_chart:"),
    "latent": ("pages/latent.py", "Latent space", ":material/scatter_plot:"),
    "label": ("pages/label.py", "Label & retrain", ":material/label:"),
    "choose": ("pages/choose.py", "Choose on labels", ":material/leaderboard:"),
    "runs": ("pages/runs.py", "Runs", ":material/history:"),
}
_FLASH = "_flash_messages"


def inside_app() -> None:
    """Make sure the page runs inside app.py's navigation; call first in every page file.

    A folder named pages/ beside app.py makes Streamlit start each server process in its old
    "pages folder" mode, which runs a page file alone, without app.py (no sidebar, the old
    page list), until app.py has called ``st.navigation`` once. That happens when the first
    request after a server start is a deep link such as /scores. Turn the old mode off and
    rerun, so app.py runs and shows the requested page.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def navigation() -> Any:
    """Return the app's ``st.navigation`` over the pages (Data first)."""
    pages = [
        st.Page(path, title=title, icon=icon, url_path=name, default=name == "data")
        for name, (path, title, icon) in PAGES.items()
    ]
    return st.navigation(pages)


def page_link(name: str, label: str | None = None) -> None:
    """Render a link to one of the app's pages."""
    path, title, icon = PAGES[name]
    st.page_link(path, label=label or title, icon=icon)


# --- messages that survive the rerun a callback causes --------------------------------------


def flash(kind: str, text: str) -> None:
    """Queue a message ("success", "info", "warning", "error") for the next page render."""
    st.session_state.setdefault(_FLASH, []).append((kind, text))


def show_flash() -> None:
    """Render and clear the queued messages."""
    for kind, text in st.session_state.pop(_FLASH, []):
        getattr(st, kind)(text)


def guarded(action: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[[], None]:
    """Return a widget callback that runs ``action`` and turns its errors into a message."""

    def run() -> None:
        try:
            action(*args, **kwargs)
        except Exception as exc:  # a message on the page, never a traceback
            flash("error", _describe(exc))

    return run


def _describe(exc: Exception) -> str:
    from ad_core.data import DataError

    if isinstance(exc, DataError | ValueError | KeyError | FileNotFoundError):
        return str(exc).strip("'\"")
    return f"Something went wrong: {type(exc).__name__}: {exc}"


# --- sidebar --------------------------------------------------------------------------------


def _on_dataset_picked() -> None:
    picked = st.session_state.get("sidebar_dataset")
    if picked:
        state.set_current_dataset(picked)


def _on_run_picked() -> None:
    picked = st.session_state.get("sidebar_run")
    if picked is not None:
        state.set_current_run(int(picked))


def sidebar() -> None:
    """Render the sidebar: current dataset and run, annotator name, training status."""
    ws = get_workspace()
    with st.sidebar:
        datasets = ws.list_datasets()
        dataset_id = state.current_dataset_id()
        if datasets:
            names = {d.id: f"{d.name} ({d.n_rows:,} rows)" for d in datasets}
            st.session_state["sidebar_dataset"] = dataset_id
            st.selectbox(
                "Dataset",
                options=list(names),
                format_func=lambda i: names.get(i, i),
                key="sidebar_dataset",
                index=None,
                placeholder="Load one on the Data page",
                on_change=_on_dataset_picked,
            )
        else:
            st.caption("No dataset yet: load a sample or upload a file on the Data page.")
        if dataset_id is not None:
            runs = state.finished_runs(dataset_id)
            run = state.current_run()
            if runs:
                titles = {r.id: run_title(r) for r in runs}
                st.session_state["sidebar_run"] = None if run is None else run.id
                st.selectbox(
                    "Run",
                    options=list(titles),
                    format_func=lambda i: titles.get(i, str(i)),
                    key="sidebar_run",
                    index=None,
                    placeholder="Train one on the Train page",
                    on_change=_on_run_picked,
                )
            else:
                st.caption("No trained run for this dataset yet.")
        state.annotator()
        st.text_input(
            "Annotator",
            key=state.ANNOTATOR,
            help="Your labels are recorded under this name (undo undoes your own labels).",
            on_change=state.remember_annotator,
        )
        job = get_job(st.session_state.get(state.TRAINING))
        if job is not None and job.running:
            st.caption(f"Training run #{job.run_id} ({job.detector}): {job.stage}")


# --- guards ----------------------------------------------------------------------------------


def require_dataset() -> DatasetView:
    """Return the current dataset's view, or explain what to do and stop the page."""
    dataset_id = state.current_dataset_id()
    if dataset_id is None:
        st.info("No dataset yet. Load a sample or upload a file first.")
        page_link("data", "Go to the Data page")
        st.stop()
    try:
        return dataset_view(dataset_id)
    except Exception as exc:  # e.g. a role change that makes the table unreadable
        st.error(f"The dataset cannot be used as it is: {_describe(exc)}")
        page_link("data", "Fix the column roles on the Data page")
        st.stop()


def require_run() -> RunRecord:
    """Return the current run, or explain what to do and stop the page."""
    run = state.current_run()
    if run is None:
        st.info("No trained run for this dataset yet. Train a detector first.")
        page_link("train", "Go to the Train page")
        st.stop()
    return run
