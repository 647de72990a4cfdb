"""Choose on your labels: train each augmentation (and the baseline, and others), rank on labels."""

import streamlit as st

from ad_core import get_detector_info, list_detectors
from ad_core.augment import AUGMENTATIONS, image_layout
from ad_core.selection import BASELINE, SelectionError, augmentation_candidates, rank_candidates
from ad_studio_ui import state
from ad_studio_ui.choose import (
    choice_job,
    ranking_table,
    start_choice,
    stored_choice,
    truth_aurocs,
)
from ad_studio_ui.datasets import dataset_summary
from ad_studio_ui.forms import APP_RANDOM_STATE
from ad_studio_ui.frame import flash, guarded, inside_app, page_link, require_dataset
from ad_studio_ui.workspace import get_workspace, label_array, run_scores

inside_app()
ws = get_workspace()
st.title("Choose on your labels")
view = require_dataset()
st.markdown(
    "A self-supervised detector learns what normal rows look like by telling them from "
    "altered copies (noise, shuffled features, rotated images, ...). It works when the "
    "alteration resembles how the real anomalies arise, and can do worse than a plain "
    "autoencoder when it does not (Yoo et al., TMLR 2023). No rule without labels picks the "
    "right one reliably; your labels can. This page trains the detector once per "
    "augmentation, beside the autoencoder baseline and any detector you tick, and ranks them "
    "on the rows you labelled, with intervals that say how far the order can be trusted."
)

labels = label_array(view)
n_anomaly, n_normal = int((labels == 1).sum()), int((labels == 0).sum())
m = st.columns(2)
m[0].metric("Labelled anomalies", f"{n_anomaly:,}")
m[1].metric("Labelled normal rows", f"{n_normal:,}")
if not n_anomaly or not n_normal:
    st.info(
        "The ranking needs labelled anomalies and labelled normal rows (ten or more of each "
        "tell candidates apart far better than a handful). Label rows on the Label or Latent "
        "space page, then come back; you can already train the candidates below."
    )

# --- candidates ---------------------------------------------------------------------------
with_augmentation = [
    d.name for d in list_detectors() if any(p.name == "augmentation" for p in d.params)
]
if not with_augmentation:
    st.error("No detector with an augmentation setting is installed.")
    st.stop()
prep = state.preprocessing_choices(view.dataset_id)
n_features = len(dataset_summary(view.dataset_id, prep).features_out)
# Image augmentations act on pictures: every pixel kept in its place (blank borders too) and
# one scale for all of them (per-pixel scaling would make a rotated digit no digit).
image_prep = {
    **prep,
    "keep_constant": True,
    "missing_indicators": False,  # extra "is missing" columns would break the pixel grid
    "scaling": prep["scaling"] if prep["scaling"] in ("none", "global") else "global",
}
n_pixels = len(dataset_summary(view.dataset_id, image_prep).features_out)
layout = image_layout(view.frame, view.schema)
if layout is not None and layout.blank:
    st.info(
        f"The rows look like {layout.describe()}, but the blank pixels are set aside, so "
        "image augmentations (rotation, flips, cut-outs, ...) are not offered. 'Treat rows "
        "as images' on the Data page keeps every pixel in its place.",
        icon=":material/image:",
    )
c1, c2 = st.columns([1, 1])
detector = c1.selectbox(
    "Self-supervised detector",
    with_augmentation,
    format_func=lambda n: get_detector_info(n).title,
    key="choose_detector",
)
image_shape = c2.text_input(
    "Rows are images of (height, width)",
    key="choose_image_shape",
    placeholder="e.g. 28,28; empty: square rows of at least 8 x 8 pixels count as images",
    help="Image augmentations (rotation, flip, cutout, blur, pixel noise) are offered when "
    "each row is an image stored pixel by pixel.",
)
# The extra detectors are picked below the augmentations on the page, but first in the code:
# one call of augmentation_candidates then builds every candidate.
augmentations_box, extra_box = st.container(), st.container()
others = [
    d.name
    for d in list_detectors()
    if d.uses_labels == "no" and d.name not in (BASELINE, detector) and d.name != "ensemble"
]
extra = extra_box.multiselect(
    "Also compare (default settings)",
    others,
    format_func=lambda n: get_detector_info(n).title,
    key="choose_extra",
)
try:
    offered = augmentation_candidates(
        detector,
        n_features=n_pixels,
        image_shape=image_shape.strip() or None,
        base_params={"random_state": APP_RANDOM_STATE},
        extra_detectors=extra,
        baseline=BASELINE,
    )
except ValueError as exc:  # a malformed image shape
    st.error(str(exc))
    st.stop()
by_name = {c.name: c for c in offered}
augmented = [c.name for c in offered if c.augmentation]
picked = augmentations_box.multiselect(
    "Augmentations to try (each trains one run)",
    augmented,
    default=augmented,
    # A new shape offers other augmentations: a new key starts from all of them ticked.
    key=f"choose_augmentations.{detector}.{n_features}"
    + (f".{image_shape.strip()}" if image_shape.strip() else ""),
)
st.caption(
    f"The plain {get_detector_info(BASELINE).title.lower()} is always compared: the "
    "no-augmentation baseline. Candidates train without your labels (the labels judge them) "
    "on every row, with their default settings and the app's seed; each is a run of its own "
    "on the Runs page."
)
chosen = [by_name[n] for n in picked] + [by_name[BASELINE]] + [by_name[n] for n in extra]
images_picked = any(
    AUGMENTATIONS[by_name[n].params["augmentation"]].kind == "image" for n in picked
)
train_prep = image_prep if images_picked else prep
if images_picked:
    st.caption(
        f"Rows are read as images of {n_pixels:,} pixels: every candidate trains on all the "
        "pixels, blank ones too, with one scale for all of them ("
        + (
            "none: the values as they are"
            if train_prep["scaling"] == "none"
            else "one mean and spread over every pixel"
        )
        + ") instead of the dataset's preprocessing, so that rotations, flips and cut-outs "
        "act on pictures."
    )

job = choice_job(ws, view.dataset_id)
busy = job is not None and job.running


def start() -> None:
    start_choice(ws, view.dataset_id, chosen, train_prep)
    flash("info", f"Training {len(chosen)} candidates, one after another.")


st.button(
    f"Train {len(chosen)} candidates in the background",
    key="choose_start",
    type="primary",
    disabled=busy or len(chosen) < 2,
    on_click=guarded(start),
    help="Pick at least one augmentation or another detector to compare."
    if len(chosen) < 2
    else "Each candidate trains as a run of its own, one after another.",
)


@st.fragment(run_every=2.0)
def progress() -> None:
    current = choice_job(ws, view.dataset_id)
    if current is None:
        return
    if current.running:
        st.progress(current.progress(), text=current.text())
        st.button("Cancel", key="choose_cancel", on_click=current.cancel)
    elif st.session_state.get("_choose_seen") != id(current):
        st.session_state["_choose_seen"] = id(current)
        st.rerun(scope="app")  # the ranking below appears
    for name, error in list(current.failed.items()):  # the thread may add one meanwhile
        st.warning(f"{name} could not be trained: {error}", icon=":material/error:")
    if current.status == "cancelled":
        st.info("The comparison was cancelled; the candidates trained so far are runs.")
    elif current.status == "failed":
        st.error(
            "The comparison stopped before every candidate was trained "
            f"({current.error}). The candidates trained so far are runs on the Runs page; "
            "start the comparison again to finish it.",
            icon=":material/error:",
        )


if job is not None:
    progress()

# --- the ranking --------------------------------------------------------------------------
entries = stored_choice(ws, view.dataset_id)
if not entries:
    st.stop()
st.subheader("Ranked on your labels")
scores = {e["name"]: run_scores(ws.get_run(int(e["run"]))) for e in entries}
runs = {e["name"]: int(e["run"]) for e in entries}
try:
    ranking = rank_candidates(scores, labels, random_state=0)
except SelectionError as exc:
    st.info(str(exc))
    st.stop()
st.markdown(ranking.statement)
table = ranking_table(ranking, runs, truth_aurocs(scores, view.truth, labels))
st.dataframe(table, hide_index=True, key="choose_ranking")
if "AUROC on ground truth (unlabelled rows)" in table.columns:
    st.caption(
        "The last column is other evidence: the dataset's ground truth on the rows nobody "
        "labelled, which the ranking never used."
    )
leader = ranking.leader
close = ranking.too_close_to_call


def make_current() -> None:
    state.set_current_run(runs[leader])
    flash("success", f"Run #{runs[leader]} ({leader}) is now the current run.")


st.button(
    f"Make the leader ({leader}, run #{runs[leader]}) the current run",
    key="choose_make_current",
    type="primary",
    on_click=guarded(make_current),
    help="The Scores, Latent space and Label pages then show it."
    + (f" The labels cannot yet tell it from {', '.join(close)}." if close else ""),
)
page_link("runs", "Compare the candidates on the Runs page")
