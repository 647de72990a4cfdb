"""Scores: the score histogram with a draggable threshold, rules, flagged rows, quality."""

from functools import partial

import numpy as np
import streamlit as st

from ad_core.evaluation import evaluation_rows, labels_digest, role_counts, rule_warning
from ad_core.metrics import auroc, confusion_at, prf_at
from ad_core.plots import HISTOGRAM_RANGES, confusion_figure, pr_figure, roc_figure
from ad_core.thresholds import RULES, flag
from ad_studio_ui import state
from ad_studio_ui.frame import guarded, inside_app, require_dataset, require_run
from ad_studio_ui.score_views import (
    METHOD_TEXT,
    curves,
    explained_rows,
    flagged_table,
    histogram,
    scores_csv,
)
from ad_studio_ui.series_ui import run_series, series_scores_view
from ad_studio_ui.threshold_component import threshold_histogram
from ad_studio_ui.workspace import (
    ROLE_HELDOUT,
    ROLE_NAMES,
    ROLE_TRAIN,
    ROLE_UNUSED,
    label_array,
    run_order,
    run_row_roles,
    run_scores,
    run_title,
)

inside_app()
st.title("Scores")
view = require_dataset()
run = require_run()
scores = run_scores(run)
threshold = state.current_threshold(run, scores)
labels = label_array(view)
truth = view.truth
has_truth = truth is not None and (truth == 1).any() and (truth == 0).any()
has_labels = bool((labels != -1).any())
st.caption(run_title(run))

# --- histogram with the draggable threshold ----------------------------------------------
# Which rule set the threshold (this session): the warning about a suspicious rule reads it.
RULE_SOURCE = "scores_threshold_rule"
AXIS_TEXT = {"bulk": "Bulk", "full": "All scores", "log": "Log scale"}
modes = (["ground truth"] if truth is not None else []) + ["your labels", "none"]
c1, c2, c3 = st.columns([3, 2, 1])
mode = c1.radio(
    "Stack the bars by",
    modes,
    index=0 if truth is not None or has_labels else modes.index("none"),
    horizontal=True,
    key="scores_stack",
)
axis_options = ["bulk", "full"] + (["log"] if float(scores.min()) > 0 else [])
if st.session_state.get("scores_x_range") not in axis_options:
    st.session_state["scores_x_range"] = "bulk"
x_range = c2.radio(
    "Score axis",
    axis_options,
    format_func=AXIS_TEXT.__getitem__,
    horizontal=True,
    key="scores_x_range",
    help="  \n".join(f"{AXIS_TEXT[k]}: {HISTOGRAM_RANGES[k]}." for k in axis_options),
)
log_count = c3.toggle("Log count", key="scores_log", value=False)
labels_key = labels_digest(labels)
groups, groups_key = {
    "ground truth": (truth, f"truth|{view.schema_key}"),
    "your labels": (labels, f"labels|{labels_key}"),
    "none": (None, "none"),
}[mode]


def set_threshold(value: float) -> None:
    state.set_threshold(run.id, value)
    st.session_state.pop(RULE_SOURCE, None)


flagged = flag(scores, threshold)
n_flagged = int(np.count_nonzero(flagged))
hist = histogram(run, scores, groups, groups_key, log_count, x_range)
threshold_histogram(
    hist, threshold, n_flagged=n_flagged, key="threshold_histogram", on_change=set_threshold
)
if hist["overflow_from"] is not None:
    cut = f"{hist['overflow_from']:.4g}"
    where = ""
    if hist["overflow_from"] < threshold < hist["max"]:
        where = (
            f" **The threshold ({threshold:.5g}) is beyond the chart's range: it sits in the "
            f"'> {cut}' bar.**"
        )
    st.caption(
        f"The chart shows the bulk of the scores, up to {cut}; the {hist['overflow_rows']:,} "
        f"rows scoring higher (up to {hist['max']:.4g}) share the last bar, labelled "
        f"'> {cut}'. Drag the line into that bar, or use the slider or the number box, for a "
        f"threshold there; 'All scores' or 'Log scale' shows them spread out.{where}"
    )
if threshold >= hist["max"]:
    st.caption(f"The threshold ({threshold:.5g}) is above every score: no row is flagged.")
elif threshold < hist["min"]:
    st.caption(f"The threshold ({threshold:.5g}) is below every score: every row is flagged.")

# The slider spans every score (widened to reach the threshold); its step follows the bulk.
lo, hi = min(hist["min"], threshold), max(hist["max"], threshold)
step = max((hist["bulk_upper"] - hist["min"]) / 1000, (hi - lo) / 100_000) or 1e-6
st.session_state[state.SLIDER] = threshold
st.session_state[state.NUMBER] = threshold
s1, s2 = st.columns([3, 1])
s1.slider(
    "Threshold",
    min_value=lo,
    max_value=hi,
    step=step,
    format="%.4g",
    key=state.SLIDER,
    on_change=lambda: set_threshold(st.session_state[state.SLIDER]),
    help="Rows with a score above the threshold are flagged. Drag the line on the chart, "
    "use this slider (arrow keys), or type a value.",
)
s2.number_input(
    "Threshold value",
    step=step,
    format="%.6g",
    key=state.NUMBER,
    on_change=lambda: set_threshold(st.session_state[state.NUMBER]),
)

# --- rules --------------------------------------------------------------------------------
contamination = float((run.params or {}).get("contamination") or 0.1)
rule_calls = {
    "Top 1 %": (RULES["top_fraction"], {"fraction": 0.01}, None),
    f"Expected share ({contamination:.0%})": (
        RULES["contamination"],
        {"contamination": contamination},
        None,
    ),
    "Robust z (MAD 3.5)": (RULES["mad"], {"n_mads": 3.5}, None),
    "Best F1 on your labels": (RULES["best_f1"], {}, labels),
}
if has_truth:
    rule_calls["Best F1 on ground truth"] = (RULES["best_f1"], {}, truth)


def apply_rule(title, rule, params, rule_labels) -> None:
    value = float(rule.compute(scores, rule_labels, **params))
    set_threshold(value)
    st.session_state[RULE_SOURCE] = {"run": run.id, "title": title, "threshold": value}


rcols = st.columns(len(rule_calls))
for col, (title, (rule, params, rule_labels)) in zip(rcols, rule_calls.items(), strict=True):
    needs_both = rule.needs_labels and not (
        rule_labels is not None and (rule_labels == 1).any() and (rule_labels == 0).any()
    )
    col.button(
        title,
        key=f"rule_{rule.name}_{title}",
        help=rule.help + (" Needs labelled anomalies and normal rows." if needs_both else ""),
        disabled=needs_both,
        on_click=guarded(apply_rule, title, rule, params, rule_labels),
        width="stretch",
    )

# --- flagged rows -------------------------------------------------------------------------
m1, m2, m3 = st.columns(3)
m1.metric("Flagged rows", f"{n_flagged:,}")
m2.metric("Flagged share", f"{n_flagged / scores.size:.2%}")
m3.metric("Threshold", f"{threshold:.5g}")
source = st.session_state.get(RULE_SOURCE)
rule_title = None
if source and source.get("run") == run.id and source.get("threshold") == threshold:
    rule_title = source["title"]
    rule_labels = rule_calls.get(rule_title, (None, None, None))[2]
    labels_name = (
        "the rows (by the ground truth)" if rule_labels is truth else "the rows you labelled"
    )
    warning = rule_warning(rule_title, scores, threshold, rule_labels, labels_name)
    if warning:
        st.warning(warning, icon=":material/warning:")

explained = explained_rows(run)
order = run_order(run)
series = run_series(run)
if series is not None:
    series_scores_view(view, run, series, scores, threshold, labels)
    st.subheader("Flagged points, highest scores first")
else:
    st.subheader("Flagged rows, highest scores first")
if n_flagged == 0:
    st.info("No row is above the threshold. Move the line to the left to flag rows.")
else:
    table = flagged_table(view, run, scores, order, n_flagged, labels, labels_key, explained)
    if n_flagged > len(table):
        st.caption(f"Showing the {len(table):,} highest of {n_flagged:,} flagged rows.")
    if explained.get("method"):
        st.caption(f"Top features: {METHOD_TEXT[explained['method']]}.")
    st.dataframe(table, hide_index=True, height=320, key="flagged_table")

st.download_button(
    "Download scores and flags (CSV)",
    data=partial(scores_csv, view, run, threshold),
    file_name=f"run{run.id}_scores.csv",
    mime="text/csv",
    key="download_scores",
    on_click="ignore",
    icon=":material/download:",
)


# --- quality against ground truth ---------------------------------------------------------
def _num(value: float) -> str:
    return "n/a" if value is None or np.isnan(value) else f"{value:.3f}"


if has_truth:
    st.subheader("Against the ground truth")
    roles = run_row_roles(run, view.n_rows)
    n_role = role_counts(roles, truth)
    role_text = {
        ROLE_HELDOUT: f"Held-out rows ({n_role[ROLE_HELDOUT]:,}, never seen in training)",
        ROLE_TRAIN: f"Training rows ({n_role[ROLE_TRAIN]:,}, seen in training)",
    }
    if n_role[ROLE_HELDOUT]:
        role = st.radio(
            "Judge the run on",
            [ROLE_HELDOUT, ROLE_TRAIN],
            format_func=role_text.__getitem__,
            horizontal=True,
            key=f"scores_eval_rows.{run.id}",
            help="Held-out rows were kept out of training, so figures on them say how the "
            "model does on rows it has not seen. Figures on the training rows are optimistic.",
        )
    else:
        role = None  # nothing held out: every row, said to be optimistic below
    ev = evaluation_rows(roles, truth, labels, role)
    if ev.rows.size == 0:
        st.info(
            f"No {ROLE_NAMES.get(role, 'scored')} row has both a known ground truth and no label of yours, so "
            "there is nothing to measure the run on here."
            + (" Choose the other set of rows above." if n_role[ROLE_HELDOUT] else "")
        )
        st.stop()
    cv = curves(run, view, scores, ev.rows, ev.key)
    n_eval, n_anom = cv["n_rows"], cv["n_anomalies"]
    classes = f"{n_anom:,} anomalies, {n_eval - n_anom:,} normal"
    if role == ROLE_HELDOUT:
        st.markdown(
            f"These figures are **on {n_eval:,} held-out rows the model never saw** ({classes})."
        )
    elif n_role[ROLE_HELDOUT]:
        st.markdown(
            f"These figures are **on {n_eval:,} rows the model was trained on** ({classes}): "
            "optimistic, since the model has seen them. The held-out rows give the honest figure."
        )
    else:
        st.warning(
            f"This run has no held-out rows: these figures are on all {n_eval:,} rows "
            f"({classes}), {n_role[ROLE_TRAIN]:,} of which the model was trained on, so they "
            "are optimistic. Train with a held-out share on the Train page to measure the "
            "model on rows it never saw.",
            icon=":material/visibility:",
        )
    notes = []
    if n_role[ROLE_UNUSED] and role is not None:
        notes.append(
            f"{n_role[ROLE_UNUSED]:,} rows were neither trained on nor held out (left out by "
            "the training-set choice, or by sampling a large table): they are in neither set."
        )
    if ev.labelled.size:
        apart_truth, apart_scores = truth[ev.labelled], scores[ev.labelled]
        apart = prf_at(apart_truth, apart_scores, threshold)
        notes.append(
            f"{ev.labelled.size:,} of these rows carry your label and are left out of the "
            "figures, since a label can leak into them (a run trained with labels has learnt "
            "it, 'Best F1 on your labels' sets the threshold from it, and labelled rows were "
            f"picked by their scores). On those rows alone ({int(apart_truth.sum()):,} "
            f"anomalies by the ground truth): AUROC {_num(auroc(apart_truth, apart_scores))}, "
            f"precision {_num(apart['precision'])}, recall {_num(apart['recall'])}."
        )
    if rule_title == "Best F1 on ground truth":
        notes.append(
            "The threshold was picked on the ground truth of every row, these included: "
            "precision, recall and F1 are optimistic (AUROC and AUPRC do not depend on it)."
        )
    if n_eval and (n_anom == 0 or n_anom == n_eval):
        notes.append(
            "These rows hold only one class, so AUROC and AUPRC need the other set of rows."
        )
    for note in notes:
        st.caption(note)
    if cv["auroc"] == cv["auroc"] and cv["auroc"] < 0.5:
        share = float((truth == 1).sum() / max(1, (truth != -1).sum()))
        st.warning(
            f"AUROC {cv['auroc']:.3f} is worse than chance: the run ranks these anomalies "
            "below normal rows. "
            + (
                f"{share:.0%} of the rows are anomalies, and a model trained on them learns "
                "them as normal. On the Train page, train on rows whose ground truth is normal "
                "(or on rows you labelled normal), or give Deep SAD some labels."
                if share > 0.2
                else "The detector's assumption may not fit this data: try another detector."
            ),
            icon=":material/trending_down:",
        )

    counts = confusion_at(cv["truth"], cv["scores"], threshold)
    prf = prf_at(cv["truth"], cv["scores"], threshold)
    n_neg = counts["fp"] + counts["tn"]
    n_pos = counts["tp"] + counts["fn"]
    fpr_now = counts["fp"] / n_neg if n_neg else float("nan")
    tpr_now = counts["tp"] / n_pos if n_pos else float("nan")
    q = st.columns(5)
    q[0].metric("Precision", _num(prf["precision"]))
    q[1].metric("Recall", _num(prf["recall"]))
    q[2].metric("F1", _num(prf["f1"]))
    q[3].metric("AUROC", _num(cv["auroc"]))
    q[4].metric("AUPRC", _num(cv["auprc"]))
    f1, f2, f3 = st.columns(3)
    f1.plotly_chart(
        roc_figure(cv["roc"].fpr, cv["roc"].tpr, point=(fpr_now, tpr_now), auc=cv["auroc"]),
        key="roc",
    )
    f2.plotly_chart(
        pr_figure(
            cv["pr"].recall,
            cv["pr"].precision,
            point=(prf["recall"], prf["precision"]),
            ap=cv["auprc"],
            base_rate=cv["base_rate"],
        ),
        key="pr",
    )
    f3.plotly_chart(confusion_figure(counts), key="confusion")
