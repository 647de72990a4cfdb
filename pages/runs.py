"""Runs: every training of the dataset; open, compare two side by side, delete, export."""

from functools import partial

import streamlit as st

from ad_core.plots import learning_curve_figure, score_comparison_figure
from ad_core.runs import agreement
from ad_studio_ui import state
from ad_studio_ui.frame import flash, guarded, inside_app, require_dataset
from ad_studio_ui.runs_views import (
    MISSING,
    export_zip,
    figure_text,
    figures_now,
    loop_curve,
    loop_curve_table,
    runs_table,
    settings_diff,
    threshold_now,
)
from ad_studio_ui.score_views import scores_csv
from ad_studio_ui.training import get_job
from ad_studio_ui.workspace import get_workspace, label_array, run_scores, run_title

inside_app()
ws = get_workspace()
st.title("Runs")
view = require_dataset()
runs = ws.list_runs(view.dataset_id)
if not runs:
    st.info("No runs for this dataset yet.")
    st.page_link("pages/train.py", label="Train a detector", icon=":material/model_training:")
    st.stop()

st.dataframe(
    runs_table(runs), hide_index=True, key="runs_table", height=min(420, 40 + 35 * len(runs))
)
st.caption(
    "The figures in this table are as measured when each run finished training: on its "
    "held-out rows that had no label then (on every unlabelled row when nothing was held "
    "out), at the threshold it was trained with; 'flagged at training' counts those rows. "
    "The Scores page, and 'Compare two runs' below, measure a run on the labels and the "
    "threshold as they are now."
)

done = [r for r in runs if r.status == "done"]
titles = {r.id: run_title(r) for r in runs}
current = state.current_run()

# --- one run ------------------------------------------------------------------------------
st.subheader("One run")
picked_id = st.selectbox(
    "Run",
    [r.id for r in runs],
    index=[r.id for r in runs].index(current.id) if current else 0,
    format_func=titles.get,
    key="runs_pick",
)
picked = next(r for r in runs if r.id == picked_id)
c = st.columns(4)


def open_run(run_id: int) -> None:
    state.set_current_run(run_id)
    flash("success", f"Run #{run_id} is now the current run.")


c[0].button(
    "Open",
    key="runs_open",
    disabled=picked.status != "done",
    on_click=guarded(open_run, picked.id),
    help="Make it the run the Scores, Latent space and Label pages show.",
)


def delete_run(run_id: int) -> None:
    ws.delete_run(run_id)
    if st.session_state.get(state.RUN) == run_id:
        st.session_state.pop(state.RUN, None)
    flash("success", f"Run #{run_id} was deleted.")


@st.dialog("Delete this run?")
def confirm_delete(run_id: int) -> None:
    st.write(f"{titles[run_id]} and its model and scores will be deleted. Labels stay.")
    # The work happens in the callback; the rerun closes the dialog.
    if st.button(
        "Delete",
        type="primary",
        key="runs_delete_confirm",
        on_click=guarded(delete_run, run_id),
    ):
        st.rerun()


picked_job = get_job(picked.id)
still_training = picked_job is not None and picked_job.running
if c[1].button(
    "Delete",
    key="runs_delete",
    icon=":material/delete:",
    disabled=still_training,
    help="Cancel the training first (Train page)." if still_training else None,
):
    confirm_delete(picked.id)
if picked.status == "done":
    folder = ws.run_dir(picked.id)
    c[2].download_button(
        "Export model and scores (zip)",
        data=partial(export_zip, picked, folder),
        file_name=f"ad_studio_run{picked.id}.zip",
        mime="application/zip",
        key="runs_export",
        on_click="ignore",
        icon=":material/download:",
    )
    threshold = threshold_now(picked, run_scores(picked))
    c[3].download_button(
        "Scores (CSV)",
        data=partial(scores_csv, view, picked, threshold),
        file_name=f"run{picked.id}_scores.csv",
        mime="text/csv",
        key="runs_scores_csv",
        on_click="ignore",
    )
if (picked.metrics or {}).get("error"):
    st.warning((picked.metrics or {})["error"])

# --- the label loop -----------------------------------------------------------------------
st.subheader("Learning curve of the label loop")
if view.truth is None:
    st.caption(
        "The learning curve needs ground truth: set a column's role to 'ground-truth label' "
        "on the Data page."
    )
elif picked.status == "done":
    points, judged_on = loop_curve(view, picked, label_array(view))
    if len(points) < 2:
        st.caption(
            f"Run #{picked.id} was not retrained from another run. Each retrain on the "
            "Label page adds a point here: the AUROC on the ground truth after it."
        )
    else:
        st.plotly_chart(learning_curve_figure(points), key="loop_curve")
        st.dataframe(loop_curve_table(points), hide_index=True, key="loop_curve_table")
        st.caption(
            f"Run #{points[0]['run']} and the {len(points) - 1} retrain(s) that led to run "
            f"#{picked.id}, each judged on the same {judged_on} of run #{picked.id}: no run "
            "is credited with a row whose answer it was given."
        )

# --- compare ------------------------------------------------------------------------------
st.subheader("Compare two runs")
if len(done) < 2:
    st.caption("Train a second run to compare.")
    st.stop()
ids = [r.id for r in done]
k1, k2 = st.columns(2)
a_id = k1.selectbox("Run A", ids, index=min(1, len(ids) - 1), format_func=titles.get, key="cmp_a")
b_id = k2.selectbox("Run B", ids, index=0, format_func=titles.get, key="cmp_b")
a = next(r for r in done if r.id == a_id)
b = next(r for r in done if r.id == b_id)
if a.id == b.id:
    st.caption("Pick two different runs.")
    st.stop()

sa, sb = run_scores(a), run_scores(b)
ta, tb = threshold_now(a, sa), threshold_now(b, sb)
labels_now = label_array(view)
now = {
    a.id: figures_now(view, a, sa, ta, labels_now),
    b.id: figures_now(view, b, sb, tb, labels_now),
}
agree = agreement(sa, sb, ta, tb)
st.caption(
    "As the Scores page shows them now: quality on each run's held-out rows (all its rows "
    "when none was held out) with a known ground truth and no label of yours; flagged rows "
    f"counted over all {sa.size:,} rows, at each run's threshold."
)
left, right = st.columns(2)
for col, run in ((left, a), (right, b)):
    fig = now[run.id]
    with col:
        st.markdown(f"**{titles[run.id]}**")
        st.dataframe(
            {
                "metric": [
                    "AUROC",
                    "AUPRC",
                    "precision",
                    "recall",
                    "F1",
                    "figures on",
                    "flagged (all rows)",
                    "threshold",
                    "fit seconds",
                ],
                "value": [
                    figure_text(fig["auroc"]),
                    figure_text(fig["auprc"]),
                    figure_text(fig["precision"]),
                    figure_text(fig["recall"]),
                    figure_text(fig["f1"]),
                    fig["on"],
                    f"{fig['n_flagged']:,} of {fig['n_rows']:,}",
                    f"{fig['threshold']:.5g}",
                    MISSING if run.fit_seconds is None else f"{run.fit_seconds:.1f}",
                ],
            },
            hide_index=True,
            key=f"cmp_metrics_{run.id}",
        )
m = st.columns(4)
m[0].metric("Rank correlation (Spearman)", f"{agree['spearman']:.3f}")
m[1].metric("Flagged by both (all rows)", f"{agree['flagged_both']:,}")
m[2].metric(f"Only #{a.id} (all rows)", f"{agree['flagged_a_only']:,}")
m[3].metric(f"Only #{b.id} (all rows)", f"{agree['flagged_b_only']:,}")
st.caption(
    f"#{a.id} flags {now[a.id]['n_flagged']:,} rows ({agree['flagged_both']:,} with #{b.id}, "
    f"{agree['flagged_a_only']:,} alone) and #{b.id} flags {now[b.id]['n_flagged']:,} "
    f"({agree['flagged_both']:,} with #{a.id}, {agree['flagged_b_only']:,} alone), of all "
    f"{sa.size:,} rows: a row is flagged when its score is above the run's threshold."
)
st.plotly_chart(score_comparison_figure(sa, sb, names=(f"#{a.id}", f"#{b.id}")), key="cmp_hist")
st.dataframe(settings_diff(a, b), hide_index=True, key="cmp_settings")
