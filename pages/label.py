"""Label & retrain: review rows one at a time, then retrain Deep SAD with the labels."""

from dataclasses import replace

import numpy as np
import streamlit as st

from ad_core import get_detector_info, list_detectors
from ad_core.detectors.deep_sad import FINE_TUNE_EPOCHS
from ad_core.metrics import auroc
from ad_core.plots import (
    feature_range_figure,
    rank_shift_figure,
    score_comparison_figure,
    sequence_figure,
)
from ad_core.runs import (
    ARCHITECTURE_PARAMS,
    DEFAULT_QUEUE_MODE,
    DIVERSE_POOL,
    QUEUE_MODES,
    TRAIN_ON,
    comparison_rows,
    percentiles,
    review_queue,
    run_settings,
    setting_differences,
    setting_text,
    setting_title,
)
from ad_core.store import LabelConflict
from ad_core.thresholds import flag
from ad_studio_ui import state
from ad_studio_ui.forms import param_widgets, params_from_widgets
from ad_studio_ui.frame import flash, guarded, inside_app, require_dataset, require_run
from ad_studio_ui.jobs_ui import show_job
from ad_studio_ui.labels import (
    LABEL_NAMES,
    describe_change,
    hidden_labels_note,
    label_rows,
    labels_table,
    undo_last,
    view_key_scheme,
)
from ad_studio_ui.maps import queue_key
from ad_studio_ui.review import QUEUE_WIDGET, queue_codes, take_queue_request, typical_ranges
from ad_studio_ui.series_ui import queue_stretch, run_series
from ad_studio_ui.training import get_job, run_setup, start_training
from ad_studio_ui.workspace import (
    get_workspace,
    label_array,
    run_order,
    run_row_roles,
    run_scores,
    run_title,
)

#: settings a warm retrain keeps from the base run (its network's shape and its pretraining)
WARM_KEPT = {*ARCHITECTURE_PARAMS, "pretrain_epochs", "pretrain_lr", "pretrain_weight_decay"}

inside_app()
ws = get_workspace()
st.title("Label & retrain")
view = require_dataset()
scheme = view_key_scheme(ws, view)
hidden = hidden_labels_note(ws, view.dataset_id)
if hidden:
    st.warning(hidden, icon=":material/visibility_off:")
labels = label_array(view)
who = state.annotator()
if not who:
    st.warning(
        "Who is labelling? Type your name before your first label: every label records who "
        "gave it, and undo takes back only your own.",
        icon=":material/person:",
    )
    st.text_input(
        "Your name",
        key="annotator_prompt",
        on_change=lambda: state.set_annotator(st.session_state.get("annotator_prompt", "")),
        placeholder="e.g. alice",
    )

n_anomaly = int((labels == 1).sum())
n_normal = int((labels == 0).sum())
n_mine = ws.count_labels_given(view.dataset_id, who) if who else 0  # a COUNT, not the history
disputed = ws.label_disagreements(view.dataset_id)
c = st.columns(5)
c[0].metric("Labelled rows", f"{n_anomaly + n_normal:,}")
c[1].metric("Anomalies", f"{n_anomaly:,}")
c[2].metric("Normal", f"{n_normal:,}")
c[3].metric(f"Labels by {who}" if who else "Labels by you", f"{n_mine:,}")
c[4].metric(
    "Disagreements",
    f"{len(disputed):,}",
    help="Rows that two annotators labelled differently (each one's latest label counts).",
)
if len(disputed):
    with st.expander(f"Rows the annotators disagree on ({len(disputed):,})", expanded=True):
        st.dataframe(
            {
                "row": disputed["row_key"].tolist(),
                "label now": [LABEL_NAMES[v] for v in disputed["label"]],
                "anomaly by": [", ".join(n) for n in disputed["anomaly_by"]],
                "normal by": [", ".join(n) for n in disputed["normal_by"]],
            },
            hide_index=True,
            key="disagreements",
        )


def import_file(data: bytes, key_scheme: str) -> None:
    done = ws.import_labels(
        view.dataset_id, data, state.annotator(), row_keys=view.keys, key_scheme=key_scheme
    )
    written = done.n_rows - done.n_unchanged
    flash(
        "success",
        f"Imported {written:,} label(s) in one step (Undo takes the whole import back)."
        + (f" {done.n_unchanged:,} were here already." if done.n_unchanged else ""),
    )


with st.expander("All labels: who gave what, export, import"):
    table = labels_table(ws, view.dataset_id)
    st.dataframe(table, hide_index=True, key="labels_table")
    if len(table) == 500:
        st.caption("The latest 500 labels; the export has all of them.")
    st.download_button(
        "Export the labels (CSV)",
        # Made when pressed (a callable): the labels as they are then, not at the last rerun.
        data=lambda dataset_id=view.dataset_id: ws.labels_csv(dataset_id),
        file_name=f"{view.name} labels.csv",
        mime="text/csv",
        key="labels_export",
        icon=":material/download:",
        help="One line per labelled row: row key, label, annotator, time, how rows are "
        "identified, and the row's whole history.",
    )
    uploaded = st.file_uploader(
        "Import labels (a CSV with the columns row_key and label, like the export)",
        key="labels_import_file",
    )
    if uploaded is not None:
        data = uploaded.getvalue()
        try:
            plan = ws.import_labels(
                view.dataset_id, data, who, dry_run=True, row_keys=view.keys, key_scheme=scheme
            )
        except ValueError as exc:  # LabelImportError, or the id column changed meanwhile
            st.error(str(exc), icon=":material/error:")
        else:
            todo = plan.n_rows - plan.n_unchanged
            st.info(
                f"'{uploaded.name}' has {plan.n_rows:,} label(s): {plan.n_anomaly:,} anomalies "
                f"and {plan.n_normal:,} normal, by {', '.join(plan.annotators)}. "
                + (f"{plan.n_unchanged:,} are here already. " if plan.n_unchanged else "")
                + (
                    f"{plan.n_replaced:,} row(s) have another label now, which the import "
                    "replaces. "
                    if plan.n_replaced
                    else ""
                )
                + ("Nothing to import." if todo == 0 else "")
            )
            st.button(
                f"Import {todo:,} label(s)",
                key="labels_import",
                disabled=todo == 0,
                on_click=guarded(import_file, data, scheme),
                type="primary",
            )

run = require_run()
scores = run_scores(run)
threshold = state.current_threshold(run, scores)
order = run_order(run)
series = run_series(run)
st.caption(
    f"{run_title(run)} · "
    + (f"labelling as **{who}** (change it in the sidebar)" if who else "no name given yet")
)

# --- review queue -------------------------------------------------------------------------
st.subheader("Review queue")
map_keys = ws.get_setting(queue_key(view.dataset_id)) or []
# The default first: it is what the radio shows until the user picks another.
modes = sorted((m for m in QUEUE_MODES if m != "map" or map_keys), key=DEFAULT_QUEUE_MODE.__ne__)
take_queue_request(modes)  # e.g. "map": the Latent space page just sent rows
if st.session_state.get(QUEUE_WIDGET) not in modes:
    st.session_state.pop(QUEUE_WIDGET, None)  # e.g. "map" after the sent rows were cleared
mode = st.radio(
    "Show rows with",
    modes,
    format_func=QUEUE_MODES.get,
    horizontal=True,
    key=QUEUE_WIDGET,
    help="Highest scores: the most anomalous-looking rows first. Nearest the threshold: the "
    "rows the threshold is least sure of. Diverse among the top: of the "
    f"{DIVERSE_POOL} highest-scored unlabelled rows, the one least like every row labelled "
    "so far (latent codes, or features for a detector without a latent space). A random "
    "sample: rows drawn at random, which tells the model what ordinary rows look like.",
)
st.caption(
    f"**{QUEUE_MODES[DEFAULT_QUEUE_MODE]}** is the default: of the four strategies it raised "
    "AUROC the most as labels came in, in the loop benchmark with a simulated expert on "
    "eight data sets (benchmarks/loop.md). Highest scores finds the most anomalies per "
    "label, but teaches the model less about the other rows."
)
skipped_key = f"_skipped_{view.dataset_id}"
skipped = st.session_state.setdefault(skipped_key, set())
map_positions = np.array(
    [view.key_index[k] for k in map_keys if k in view.key_index], dtype=np.int64
)
QUEUE_SHOWN = 6  # the row under review and the five after it
queue = review_queue(
    mode,
    scores,
    labels,
    threshold=threshold,
    order=order,
    skipped=skipped,
    codes=queue_codes(view, run) if mode == "diverse" else None,
    map_positions=map_positions,
    n=QUEUE_SHOWN,
)
pos = int(queue.positions[0]) if queue.positions.size else None
remaining = queue.remaining
CONFLICT = "_label_conflict"


def give_label(
    key: str, value: int, shown: int, key_scheme: str, stretch: tuple[int, int] | None = None
) -> None:
    """Save a label unless someone else changed the row since it was shown; then ask.

    ``stretch``: for a series, the points (first, last) the label is for: all of them are
    labelled at once (one undo step).
    """
    if stretch is not None:
        a, b = stretch
        n = label_rows(
            ws,
            view.dataset_id,
            view.keys[a : b + 1].tolist(),
            value,
            state.annotator(),
            key_scheme=key_scheme,
        )
        word = {1: "anomalous", 0: "normal", -1: "unlabelled"}[value]
        flash("success", f"Labelled the stretch ({n:,} points) {word}.")
        return
    try:
        label_rows(
            ws,
            view.dataset_id,
            [key],
            value,
            state.annotator(),
            key_scheme=key_scheme,
            seen={key: shown},
        )
    except LabelConflict as conflict:
        change = conflict.changes[0]
        st.session_state[CONFLICT] = {
            "dataset_id": view.dataset_id,
            "key": key,
            "label": value,
            "current": change.label,
            "key_scheme": key_scheme,
            "text": describe_change(change),
        }
    else:
        st.session_state.pop(CONFLICT, None)


def keep_theirs() -> None:
    st.session_state.pop(CONFLICT, None)


def skip(position: int) -> None:
    st.session_state[skipped_key].add(position)


def undo() -> None:
    flash("info", undo_last(ws, view.dataset_id, state.annotator()))


conflict = st.session_state.get(CONFLICT)
if conflict and conflict["dataset_id"] == view.dataset_id:
    mine = LABEL_NAMES[conflict["label"]]
    st.warning(
        f"Row {conflict['key']}: {conflict['text']}, after this page showed it to you. Your "
        f"label ({mine}) was not saved. Save yours anyway, or skip the row and keep theirs?",
        icon=":material/group:",
    )
    k = st.columns(2)
    k[0].button(
        f"Save {mine} anyway",
        key="conflict_confirm",
        on_click=guarded(
            give_label,
            conflict["key"],
            conflict["label"],
            conflict["current"],
            conflict["key_scheme"],
        ),
        type="primary",
    )
    k[1].button("Skip: keep their label", key="conflict_skip", on_click=keep_theirs)

if pos is None:
    st.success("Nothing left to review in this queue. Pick another queue, or retrain below.")
    if skipped:
        st.button("Show skipped rows again", on_click=skipped.clear, key="unskip")
    st.button("Undo my last label", key="undo_empty", on_click=guarded(undo), shortcut="u")
else:
    key = str(view.keys[pos])
    shown = int(labels[pos])
    # Rank 1 is the highest score; rows with the same score share the best rank among them
    # (a series' points often tie: they take their window's score).
    rank = int(np.count_nonzero(scores > scores[pos])) + 1
    ties = int(np.count_nonzero(scores == scores[pos])) - 1
    tied = f", tied with {ties:,} other row{'s' if ties > 1 else ''}" if ties else ""
    is_flagged = bool(flag(scores[pos : pos + 1], threshold)[0])
    st.markdown(
        f"**Row {key}** · :blue-badge[{queue.reasons[0]}] · score {scores[pos]:.5g} "
        f"(rank {rank:,} of {scores.size:,}{tied}) · "
        f"{'flagged' if is_flagged else 'not flagged'} · {remaining:,} left in this queue"
    )
    stretch = None
    if series is not None:
        stretch = queue_stretch(view, run, series, scores, threshold, labels, pos)
    what = "" if stretch is None else f" ({stretch[1] - stretch[0] + 1:,} points)"
    b = st.columns(4)
    b[0].button(
        f"Normal{what}",
        key="review_normal",
        on_click=guarded(give_label, key, 0, shown, scheme, stretch),
        disabled=not who,
        shortcut="n",
        icon=":material/check_circle:",
        width="stretch",
        help="Shortcut: N",
    )
    b[1].button(
        f"Anomaly{what}",
        key="review_anomaly",
        on_click=guarded(give_label, key, 1, shown, scheme, stretch),
        disabled=not who,
        shortcut="a",
        type="primary",
        icon=":material/warning:",
        width="stretch",
        help="Shortcut: A",
    )
    b[2].button(
        "Skip",
        key="review_skip",
        on_click=skip,
        args=(pos,),
        shortcut="s",
        width="stretch",
        help="Shortcut: S",
    )
    b[3].button(
        "Undo",
        key="review_undo",
        on_click=guarded(undo),
        shortcut="u",
        icon=":material/undo:",
        width="stretch",
        help="Undo your last label (shortcut: U)",
    )
    typical = {"columns": []} if series is not None else typical_ranges(view, run, scores, labels)
    columns = typical["columns"]
    if columns:
        values = view.frame.iloc[pos][columns].to_numpy(dtype=np.float64)
        basis = typical["basis"].split("|")[0]
        if view.is_sequence:
            fig = sequence_figure(
                values,
                low=typical["low"],
                high=typical["high"],
                median=typical["median"],
                title=f"Row {key} as a sequence, against {basis} (5-95 %)",
            )
        else:
            span = np.where(typical["high"] > typical["low"], typical["high"] - typical["low"], 1)
            distance = np.abs(values - typical["median"]) / span
            top = np.argsort(-np.nan_to_num(distance), kind="stable")[:40]
            fig = feature_range_figure(
                values[top],
                [columns[i] for i in top],
                low=typical["low"][top],
                high=typical["high"][top],
                median=typical["median"][top],
                title=f"Row {key} against {basis} (5-95 %); most unusual features first",
            )
        st.plotly_chart(fig, key="review_plot")
    with st.expander("All values of this row"):
        st.dataframe(view.frame.iloc[[pos]], hide_index=True)
    upcoming = queue.positions[1:]
    if upcoming.size:
        with st.expander(f"Next in this queue ({upcoming.size} of {remaining - 1:,})"):
            st.dataframe(
                {
                    "row": [str(view.keys[i]) for i in upcoming],
                    "score": scores[upcoming],
                    "shown because": list(queue.reasons[1:]),
                },
                hide_index=True,
                key="queue_next",
            )
            if mode == "diverse":
                st.caption(
                    "Each label changes what is left to be unlike: the order after the "
                    "next row may change as you label."
                )
    if view.truth is not None:
        with st.expander("Peek at the ground truth"):
            st.write({-1: "unknown", 0: "normal", 1: "anomaly"}[int(view.truth[pos])])

# --- retrain ------------------------------------------------------------------------------
st.divider()
st.subheader("Retrain with labels")
# Every detector that learns from labelled anomalies and normal rows, Deep SAD first.
retrainers = [d.name for d in list_detectors() if d.uses_labels == "both"]
retrainers.sort(key="deep_sad".__ne__)
retrainer = st.radio(
    "Retrain with",
    retrainers,
    format_func=lambda n: get_detector_info(n).title,
    horizontal=True,
    key="retrain_detector",
    help="Deep SAD: a network pulled towards a centre by normal rows and pushed away by "
    "labelled anomalies; keeps a latent space for the map and can fine-tune in seconds. "
    "XGBOD: boosted trees on the features and the scores of unsupervised detectors, learnt "
    "from your labels; in the benchmarks it ranks better once there are labels "
    "(benchmarks/loop.md, benchmarks/semi.md).",
)
sad = get_detector_info(retrainer)
st.caption(sad.description)
base_setup = run_setup(ws, run.id)
# Start from the base run's settings: all of them when it is a run of the same detector, else
# every setting the retrainer shares with it (epochs, widths, seed, contamination, ...).
sad_names = {p.name for p in sad.params}
base_params = {k: v for k, v in (run.params or {}).items() if k in sad_names}
can_continue = run.detector == retrainer == "deep_sad"
# A warm run's own base (while it exists), else the run itself: each warm retrain fine-tunes
# the network the last full training made, with every label so far (in the loop benchmark
# fine-tunes of fine-tunes did worse; benchmarks/loop.md).
warm_base = run.id
if (run.metrics or {}).get("warm_from") is not None:
    try:
        if ws.get_run(int(run.metrics["warm_from"])).status == "done":
            warm_base = int(run.metrics["warm_from"])
    except KeyError:
        pass  # deleted: continue from this run itself
if warm_base != run.id:  # a warm run: a full retrain starts from its base's settings
    base_params = {k: v for k, v in (ws.get_run(warm_base).params or {}).items() if k in sad_names}
start_over = True
if can_continue:
    start_over = st.checkbox(
        "Start over: train a new network from scratch",
        key="retrain_start_over",
        help=f"Unticked (the default), the retrain keeps run #{warm_base}'s network and "
        f"fine-tunes it on the labels ({FINE_TUNE_EPOCHS} epochs unless you change them): "
        "seconds instead of a full training, and in the loop benchmark within about 0.02 "
        "AUROC of one (benchmarks/loop.md). "
        "Ticked, Deep SAD pretrains and trains anew, as the paper does.",
    )
warm = can_continue and not start_over
# A warm start keeps the network and its preprocessing: the settings that shape them, and
# pretraining's, are the base run's and are not asked for.
form_info = (
    replace(sad, params=tuple(p for p in sad.params if p.name not in WARM_KEPT)) if warm else sad
)
form_defaults = {**base_params, "epochs": FINE_TUNE_EPOCHS} if warm else base_params
job = get_job(st.session_state.get(state.TRAINING))
if job is not None and job.dataset_id != view.dataset_id:
    job = None  # a training of another dataset does not hold this page's retrain back
busy = job is not None and job.running
anomaly_missing = sad.needs_anomaly_label and n_anomaly == 0
with st.form("retrain_form"):
    st.markdown(
        (
            f"**Warm start**: fine-tunes run #{warm_base}'s network with the labels (no "
            "pretraining, the same centre and preprocessing). "
            if warm
            else ""
        )
        + f"Settings start from run #{run.id}'s"
        + ("" if run.detector == retrainer else f" where {sad.title} has them")
        + f"; it trains on the same rows ({TRAIN_ON[base_setup.train_on].lower()}"
        + (
            f", {base_setup.holdout:.0%} held out for evaluation"
            if base_setup.holdout
            else ", none held out"
        )
        + ") plus every labelled row."
    )
    values = param_widgets(
        form_info,
        key_prefix=f"retrain{run.id}" + ("warm" if warm else ""),
        overrides=form_defaults,
    )
    submitted = st.form_submit_button(
        f"{'Fine-tune' if warm else 'Retrain'} with {n_anomaly + n_normal:,} labels",
        type="primary",
        disabled=busy or (n_anomaly + n_normal) == 0 or anomaly_missing,
    )
state.keep_widget_values()
if (n_anomaly + n_normal) == 0:
    st.caption("Label some rows first (here or on the Latent space page).")
elif anomaly_missing:
    st.caption(
        f"{sad.title} learns only from labelled anomalies: with normal rows alone it would "
        "rank as its unsupervised detectors do, whatever you labelled. Label at least one "
        "anomaly, or retrain with "
        + " or ".join(get_detector_info(n).title for n in retrainers if n != retrainer)
        + "."
    )
if submitted and not busy:
    try:
        params = params_from_widgets(form_info, values)
    except ValueError as exc:
        st.error(str(exc))
    else:
        job = start_training(
            ws,
            view.dataset_id,
            retrainer,
            {**base_params, **params} if warm else params,
            run.preprocessing or state.preprocessing_choices(view.dataset_id),
            labels=labels,
            setup=replace(base_setup, warm_from=warm_base if warm else None),
            parent_run=run.id,
        )
        st.session_state[state.TRAINING] = job.run_id
# A training still running, or a finished retrain; a first run trained on the Train page is
# that page's news, not this one's.
if job is not None and (job.running or ws.get_setting(f"run_parent.{job.run_id}") is not None):
    show_job(job.run_id)

# --- before / after -----------------------------------------------------------------------
parent_id = (run.metrics or {}).get("parent_run")
if parent_id is None:
    st.caption(
        "After a retrain, this section compares the new run with the one it started from: "
        "score distributions, where the labelled rows now rank, AUROC on the ground truth."
    )
    st.stop()
try:
    before_run = ws.get_run(int(parent_id))
    before = run_scores(before_run)
except (KeyError, FileNotFoundError):
    st.caption(f"The run this one was retrained from (#{parent_id}) no longer exists.")
    st.stop()

st.subheader(f"Before (#{before_run.id}) and after (#{run.id})")
differs = setting_differences(
    run_settings(
        before_run.detector,
        before_run.params,
        before_run.preprocessing,
        run_setup(ws, before_run.id),
    ),
    run_settings(run.detector, run.params, run.preprocessing, run_setup(ws, run.id)),
)
if differs:
    st.markdown(
        "**What differs besides the labels:** "
        + "; ".join(
            f"{setting_title(name)}: {setting_text(name, a)} → {setting_text(name, b)}"
            for name, (a, b) in differs.items()
        )
    )
    if "detector" in differs:
        st.caption(
            "The detector changed too, so the change below is not the labels' alone: it is "
            f"what {get_detector_info(run.detector).title} with your labels does compared "
            "with the run it started from."
        )
else:
    st.markdown("**Same settings as before**: only the labels differ.")
st.plotly_chart(
    score_comparison_figure(before, scores, names=(f"#{before_run.id} before", f"#{run.id} after")),
    key="before_after_hist",
)
labelled = np.flatnonzero(labels != -1)
m = st.columns(3)
if labelled.size:
    p_before = percentiles(before, labelled)
    p_after = percentiles(scores, labelled)
    lab = labels[labelled]
    for col, value, name in ((m[0], 1, "labelled anomalies"), (m[1], 0, "labelled normal rows")):
        mask = lab == value
        if mask.any():
            col.metric(
                f"Mean percentile of {name}",
                f"{p_after[mask].mean():.1f}",
                delta=f"{p_after[mask].mean() - p_before[mask].mean():+.1f}",
                delta_color="normal" if value == 1 else "inverse",
            )
if view.truth is not None:
    rows, where = comparison_rows(run_row_roles(run, view.n_rows), labels)
    a_before, a_after = auroc(view.truth[rows], before[rows]), auroc(view.truth[rows], scores[rows])
    if a_before == a_before and a_after == a_after:  # both classes among the rows
        m[2].metric(
            "AUROC on ground truth",
            f"{a_after:.3f}",
            delta=f"{a_after - a_before:+.3f}",
            help=f"On {rows.size:,} {where}: the labelled rows are left out, so the figure "
            "measures the ranking of rows whose answer the retrain was not given.",
        )
        st.caption(f"AUROC before and after on the same {rows.size:,} {where}.")
if labelled.size:
    shown = labelled[:60]
    st.plotly_chart(
        rank_shift_figure(
            percentiles(before, shown),
            percentiles(scores, shown),
            labels[shown],
            view.keys[shown],
        ),
        key="rank_shift",
    )
