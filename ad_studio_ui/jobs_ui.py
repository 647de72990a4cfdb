"""Showing a background training job: progress bar, live loss curve, Cancel (a polling fragment)."""

from __future__ import annotations

import streamlit as st

from ad_core import get_detector_info
from ad_core.plots import has_loss_curve, loss_curve_figure
from ad_studio_ui import state
from ad_studio_ui.training import TrainingJob, get_job

POLL_SECONDS = 1.0


def _adopt_finished(job: TrainingJob) -> bool:
    """Make a finished run the current one, once; return True the first time."""
    flag = f"_adopted_{job.run_id}"
    if st.session_state.get(flag):
        return False
    st.session_state[flag] = True
    # Only when the user is still on that dataset: switching datasets while a model trains
    # must not be undone by the training finishing.
    if job.status == "done" and job.dataset_id == state.current_dataset_id():
        state.set_current_run(job.run_id)
    return True


def render_job(job: TrainingJob) -> None:
    """Render the state of a job once (no polling)."""
    try:
        title = get_detector_info(job.detector).title
    except ValueError:
        title = job.detector
    st.markdown(f"**Run #{job.run_id}: {title}**")
    if job.notice:
        st.info(job.notice)
    if job.running:
        st.progress(job.progress(), text=job.progress_text())
        st.button(
            "Cancel",
            key=f"cancel_{job.run_id}",
            on_click=job.cancel,
            icon=":material/stop:",
            help="Stops at the end of the current epoch; nothing is saved.",
        )
    elif job.status == "done":
        st.success(f"Run #{job.run_id} is trained and scored.", icon=":material/check:")
    elif job.status == "cancelled":
        st.warning(f"Run #{job.run_id} was cancelled; only its record is kept.")
    else:
        st.error(f"Training failed: {job.error}")
    if has_loss_curve(job.events):  # classic detectors and ensembles have no loss to show
        st.plotly_chart(loss_curve_figure(list(job.events)), key=f"loss_{job.run_id}")


@st.fragment(run_every=POLL_SECONDS)
def _live(run_id: int) -> None:
    job = get_job(run_id)
    if job is None:
        return
    render_job(job)
    if not job.running:
        _adopt_finished(job)
        st.rerun(scope="app")


def show_job(run_id: int | None) -> TrainingJob | None:
    """Show the job of ``run_id``: polled while it runs, then its outcome; return the job."""
    job = get_job(run_id)
    if job is None:
        return None
    if job.running:
        _live(job.run_id)
    else:
        if _adopt_finished(job):
            st.rerun()  # so the sidebar and every view show the new run
        render_job(job)
    return job
