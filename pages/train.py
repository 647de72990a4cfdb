"""Train: pick a detector from the catalogue, set its hyperparameters, train in the background."""

import streamlit as st

from ad_core import get_detector_info, list_detectors
from ad_core.runs import DEFAULT_HOLDOUT, TRAIN_ON, TrainingSetup
from ad_core.series_runs import load_settings
from ad_studio_ui import state
from ad_studio_ui.forms import (
    APP_RANDOM_STATE,
    DEFAULT_DETECTOR,
    DEFAULT_DETECTOR_WHY,
    default_detector,
    param_widgets,
    params_from_widgets,
)
from ad_studio_ui.frame import inside_app, page_link, require_dataset
from ad_studio_ui.jobs_ui import show_job
from ad_studio_ui.labels import hidden_labels_note
from ad_studio_ui.training import MAX_TRAIN_ROWS, get_job, prepare_processes, start_training
from ad_studio_ui.workspace import get_workspace, label_array

inside_app()
prepare_processes()
ws = get_workspace()
st.title("Train")
view = require_dataset()

USES_LABELS = {
    "no": "no (unsupervised)",
    "normal_only": "labelled normal rows only",
    "both": "labelled normal and anomalous rows",
}
detectors = {d.name: d for d in list_detectors()}

with st.expander("The detector catalogue", expanded=False):
    st.dataframe(
        {
            "detector": [d.title for d in detectors.values()],
            "family": [d.family for d in detectors.values()],
            "uses labels": [
                USES_LABELS.get(d.uses_labels, d.uses_labels) for d in detectors.values()
            ],
            "latent space": ["yes" if d.has_latent else "no" for d in detectors.values()],
            "reference": [d.reference for d in detectors.values()],
        },
        hide_index=True,
    )

names = list(detectors)
name = st.selectbox(
    "Detector",
    names,
    format_func=lambda n: detectors[n].title,
    key=state.kept_widget("train_detector", default_detector(names)),
)
if name == DEFAULT_DETECTOR:
    st.caption(DEFAULT_DETECTOR_WHY)
info = get_detector_info(name)
st.markdown(info.description)
st.caption(
    f"Family: {info.family} · uses labels: {USES_LABELS.get(info.uses_labels, info.uses_labels)}"
    f" · latent space: {'yes' if info.has_latent else 'no'} · {info.reference}"
)

labels = label_array(view)  # only labels whose rows the current id column identifies
n_labelled = int((labels != -1).sum())
hidden = hidden_labels_note(ws, view.dataset_id)
if hidden:
    st.warning(hidden, icon=":material/visibility_off:")
prep = state.preprocessing_choices(view.dataset_id)

if view.n_rows > MAX_TRAIN_ROWS:
    st.info(
        f"This dataset has {view.n_rows:,} rows: training uses a random sample of "
        f"{MAX_TRAIN_ROWS:,} rows (fixed seed, labelled rows always included) and then scores "
        "every row."
    )

series = load_settings(ws, view.dataset_id)
if series is not None:
    st.info(
        f"This dataset is analysed as a series: the detector trains on {series.describe()} "
        "(change it on the Data page). A held-out share is the last stretch of the series, "
        "so the model is judged on time it has not seen."
        + (
            f" {info.title} reads each window as a sequence: at each step, the point's "
            "preprocessed features (its value columns, one-hot categories if any)."
            if any(p.name == "n_channels" for p in info.params)
            else ""
        ),
        icon=":material/timeline:",
    )

truth = view.truth
has_truth = truth is not None and bool((truth == 1).any() and (truth == 0).any())
if has_truth:
    share = float((truth == 1).sum() / max(1, (truth != -1).sum()))
    # The form's last submitted choice (a form's widgets change only when it is submitted),
    # restored first: Streamlit forgets it while another page is open.
    chosen = st.session_state[state.kept_widget(f"train_on.{view.dataset_id}", "all")]
    if share > 0.2 and chosen == "truth_normal":
        st.caption(
            f"By the ground truth, {share:.0%} of the rows are anomalies; you train on the "
            "rows whose ground truth is normal, the set-up that shows what a detector can do "
            "when it knows normal data."
        )
    elif share > 0.2:
        st.warning(
            f"By the ground truth, {share:.0%} of the rows are anomalies. A detector trained on "
            "all rows takes that many for normal, and may then rank them no higher than the "
            "normal rows. To see what it can do when it knows normal data, train on **rows "
            "whose ground truth is normal** and judge it on held-out rows (below).",
            icon=":material/info:",
        )

# The training-set choices this dataset can use, with why the others are missing.
train_on_options = ["all"]
if (labels == 1).any():
    train_on_options.append("not_anomalous")
if (labels == 0).any():
    train_on_options.append("labelled_normal")
if has_truth:
    train_on_options.append("truth_normal")

job = get_job(st.session_state.get(state.TRAINING))
if job is not None and job.dataset_id != view.dataset_id:
    if job.running:
        st.info(f"Run #{job.run_id} of another dataset is still training.")
    job = None  # this page shows the runs of the dataset it is on
busy = job is not None and job.running

with st.form("train_form"):
    st.markdown(f"**{info.title} settings**")
    values = param_widgets(info, key_prefix="train")
    use_labels = False
    if info.uses_labels != "no":
        use_labels = st.checkbox(
            f"Train with my labels ({n_labelled:,} labelled rows)",
            key=state.kept_widget(f"train_use_labels_{name}", n_labelled > 0),
        )
    st.markdown("**Training rows and evaluation**")
    t1, t2 = st.columns([2, 1])
    # Per dataset: what suits one (its ground truth, its labels) may not exist in another.
    train_on_key = state.kept_widget(f"train_on.{view.dataset_id}", "all")
    if st.session_state[train_on_key] not in train_on_options:  # e.g. the labels were cleared
        st.session_state[train_on_key] = "all"
    train_on = t1.radio(
        "Train on",
        train_on_options,
        format_func=TRAIN_ON.get,
        key=train_on_key,
        help="Which rows the model learns from; every row is scored. Rows labelled as "
        "anomalies, or whose ground truth is anomalous, can be kept out so that the model "
        "learns what normal looks like (the novelty set-up)."
        + ("" if has_truth else " The ground-truth choice needs a ground-truth column."),
    )
    holdout_on = t2.checkbox(
        "Hold out rows for evaluation",
        key=state.kept_widget(f"train_holdout_on.{view.dataset_id}", has_truth),
        help="A seeded, stratified share of the rows that the model never sees (for a "
        "series: its last stretch); the Scores page reports its figures on them. Rows you "
        "labelled are never held out (for a series: windows holding a labelled point).",
    )
    holdout = t2.number_input(
        "Held-out share",
        min_value=0.05,
        max_value=0.9,
        step=0.05,
        format="%.2f",
        key=state.kept_widget(f"train_holdout.{view.dataset_id}", DEFAULT_HOLDOUT),
    )
    st.caption(
        "Preprocessing: "
        + ", ".join(f"{k.replace('_', ' ')} = {v}" for k, v in prep.items())
        + " (change it on the Data page)."
    )
    submitted = st.form_submit_button("Train", type="primary", disabled=busy)
state.keep_widget_values()

if submitted and not busy:
    try:
        params = params_from_widgets(info, values)
    except ValueError as exc:
        st.error(str(exc))
    else:
        setup = TrainingSetup(
            train_on=train_on,
            holdout=float(holdout) if holdout_on else 0.0,
            # One split seed for every run, so runs of one dataset are judged on the same rows.
            seed=APP_RANDOM_STATE,
        )
        needs_labels = use_labels or train_on in ("not_anomalous", "labelled_normal")
        job = start_training(
            ws,
            view.dataset_id,
            name,
            params,
            prep,
            labels=labels if needs_labels else None,
            use_labels=use_labels,
            setup=setup,
        )
        st.session_state[state.TRAINING] = job.run_id
        busy = True


if job is not None:
    job = show_job(job.run_id)
if job is not None and job.status == "done":
    page_link("scores", "See the scores")
