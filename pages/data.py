"""Data: load a sample or upload a table, check the column roles and preprocessing choices."""

import streamlit as st

from ad_core.augment import IMAGE_PREPROCESSING, image_layout, schema_as_images
from ad_core.data import (
    CATEGORICAL_MISSING,
    IMPUTES,
    ROLES,
    SCALINGS,
    DataError,
    Preprocessor,
    list_samples,
)
from ad_core.store import describe_key_scheme
from ad_studio_ui import state
from ad_studio_ui.datasets import (
    add_sample,
    add_upload,
    dataset_summary,
    notes_key,
    roles_table,
    schema_version,
)
from ad_studio_ui.frame import flash, guarded, inside_app, page_link
from ad_studio_ui.labels import hidden_labels_note
from ad_studio_ui.series_ui import series_section
from ad_studio_ui.workspace import dataset_view, get_workspace

CATEGORICAL_MISSING_TEXT = {
    "own_category": "own category 'missing'",
    "most_frequent": "most frequent category",
}

inside_app()
ws = get_workspace()
st.title("Data")

# --- load --------------------------------------------------------------------------------
st.subheader("Load a table")
samples = list_samples()
left, right = st.columns([3, 2], gap="large")
with left:
    st.markdown("**Try a bundled sample** (one click)")
    # Two to a row: four titles side by side in this column are cut off on a laptop screen.
    cols = st.columns(2)
    for i, info in enumerate(samples):
        col = cols[i % 2]

        def load(name: str = info.name) -> None:
            dataset_id = add_sample(ws, name)
            state.set_current_dataset(dataset_id)
            flash("success", f"Loaded the sample '{ws.get_dataset(dataset_id).name}'.")

        with col:
            st.button(
                info.title,
                key=f"sample_{info.name}",
                help=info.description,
                on_click=guarded(load),
                width="stretch",
            )
            st.caption(f"{info.n_rows:,} rows · {info.anomaly_share:.0%} anomalies")

limit_mb = int(st.get_option("server.maxUploadSize"))


def read_upload() -> None:
    """Store the uploaded file as a dataset (runs before the page, so the sidebar sees it)."""
    uploaded = st.session_state.get("upload")
    if uploaded is None:
        st.session_state.pop("_upload_error", None)
        return
    message = None
    limit_mb = int(st.get_option("server.maxUploadSize"))
    if uploaded.size > limit_mb * 1024 * 1024:
        message = (
            f"'{uploaded.name}' is {uploaded.size / 1024**2:,.0f} MB, over the upload limit "
            f"of {limit_mb:,} MB. Upload a smaller file (e.g. Parquet instead of CSV, or a "
            "sample of the rows)."
        )
    else:
        try:
            dataset_id, _ = add_upload(ws, uploaded.name, uploaded.getvalue())
            state.set_current_dataset(dataset_id)
            flash("success", f"Loaded '{uploaded.name}'.")
        except DataError as exc:
            message = str(exc)
        except Exception as exc:  # an unreadable file must never crash the page
            message = f"'{uploaded.name}' could not be read ({type(exc).__name__}: {exc})."
    st.session_state["_upload_error"] = (uploaded.file_id, message)


with right:
    uploaded = st.file_uploader(
        "Or upload a file",
        key="upload",
        on_change=read_upload,
        help=(
            "CSV/TSV text (delimiter detected), Parquet, Excel, NumPy .npz/.npy or MATLAB "
            f".mat, up to {limit_mb:,} MB. The file stays on this machine."
        ),
    )

failed = st.session_state.get("_upload_error")
if uploaded is not None and failed and failed[0] == uploaded.file_id and failed[1]:
    st.error(failed[1], icon=":material/error:")

# --- the current dataset -----------------------------------------------------------------
dataset_id = state.current_dataset_id()
if dataset_id is None:
    st.info("Load a sample or upload a file to begin.")
    st.stop()

record = ws.get_dataset(dataset_id)
try:
    view = dataset_view(dataset_id)
except Exception as exc:
    st.error(f"This dataset cannot be used with its current column roles: {exc}")
    st.stop()

st.divider()
st.subheader(f"{record.name}")
notes = ws.get_setting(notes_key(dataset_id)) or []
for note in notes:
    st.warning(note, icon=":material/info:")
for note in view.key_notes:
    st.info(note)
hidden = hidden_labels_note(ws, dataset_id)
if hidden:
    st.warning(hidden, icon=":material/visibility_off:")

frame = view.frame
shown = frame.iloc[:200, :50]
st.dataframe(shown, height=240, key="preview")
if frame.shape[1] > 1000:
    st.info(
        f"A wide table: {frame.shape[1]:,} columns. The preview shows the first 50 columns; "
        "every feature column is used for training."
    )
elif frame.shape[1] > 50:
    st.caption(f"Preview of the first 50 of {frame.shape[1]:,} columns.")

# --- summary -----------------------------------------------------------------------------
summary = dataset_summary(dataset_id, state.preprocessing_choices(dataset_id))
st.markdown("**Summary**")
m = st.columns(4)
m[0].metric("Rows", f"{summary.n_rows:,}")
m[1].metric("Features kept", f"{len(summary.features_out):,}", help="after one-hot encoding")
m[2].metric("Columns not used", f"{len(summary.dropped):,}")
if summary.label_column is None:
    m[3].metric("Ground truth", "none", help="No column has the role 'label'.")
else:
    share = "no known values" if summary.anomaly_share is None else f"{summary.anomaly_share:.1%}"
    m[3].metric(
        f"Ground truth: '{summary.label_column}'",
        share,
        help="Share of rows whose ground truth is an anomaly.",
    )
if summary.error:
    st.error(summary.error, icon=":material/error:")
if summary.n_rows < 2 and not summary.error:
    st.error("A single row cannot show what is normal. Load a table with more rows.")
for note in summary.prep_notes:
    st.warning(note, icon=":material/warning:")
unused = {c: why for c, why in summary.dropped.items() if why != "set by you"}
if unused:
    listed = "; ".join(f"'{c}': {why}" for c, why in list(unused.items())[:8])
    more = f" and {len(unused) - 8} more" if len(unused) > 8 else ""
    st.warning(f"Not used as features: {listed}{more}.", icon=":material/visibility_off:")
if summary.dropped:
    with st.expander(f"Columns not used ({len(summary.dropped)}) and why"):
        st.dataframe(
            {"column": list(summary.dropped), "why": list(summary.dropped.values())},
            hide_index=True,
        )
if summary.missing:
    total = sum(summary.missing.values())
    with st.expander(f"Missing values: {total:,} in {len(summary.missing)} column(s)"):
        st.dataframe(
            {"column": list(summary.missing), "missing": list(summary.missing.values())},
            hide_index=True,
        )
if summary.estimated:
    st.caption(f"Dropped columns estimated on a sample of {200_000:,} rows.")

# --- column roles ------------------------------------------------------------------------
schema = view.schema
st.markdown("**Column roles**: proposed from the data; change any of them.")
version = schema_version(record.schema)
editor_key = f"roles_{dataset_id}_{version}"


def apply_roles() -> None:
    edits = st.session_state.get(editor_key, {}).get("edited_rows", {})
    new = schema
    columns = schema.columns
    for row, change in edits.items():
        role = change.get("role")
        if role and role != new.roles[columns[int(row)]]:
            new = new.with_role(columns[int(row)], role)
    hidden_before = ws.hidden_labels(dataset_id)
    before = ws.key_scheme(dataset_id)
    ws.update_dataset_schema(dataset_id, new.to_dict())
    after = ws.key_scheme(dataset_id)
    if after != before:
        # Labels record the key scheme they were given under: the others are hidden (the
        # warning above the table says so while it lasts), never moved onto other rows.
        back = hidden_before.get(after, 0)
        flash(
            "info",
            f"Rows are now identified by {describe_key_scheme(after)}."
            + (
                " Runs trained before the change need retraining."
                if ws.list_runs(dataset_id)
                else ""
            )
            + (f" The {back:,} label(s) given under it are shown again." if back else ""),
        )


table = roles_table(frame, schema)
st.data_editor(
    table,
    key=editor_key,
    on_change=guarded(apply_roles),
    hide_index=True,
    height=min(400, 38 + 35 * len(table)),
    disabled=["column", "type", "missing", "why"],
    column_config={
        "role": st.column_config.SelectboxColumn(
            "role",
            options=list(ROLES),
            required=True,
            help="numeric / categorical = feature; id = row key; label = ground truth; "
            "timestamp and ignore are not used by the detectors",
        ),
        "missing": st.column_config.ProgressColumn(
            "missing", format="percent", min_value=0, max_value=1
        ),
    },
)

if schema.label_column is not None:
    values = frame[schema.label_column].dropna().unique().tolist()
    if len(values) <= 50:

        def set_normal() -> None:
            chosen = st.session_state.get(f"normal_{dataset_id}_{version}") or []
            ws.update_dataset_schema(dataset_id, schema.with_normal_values(chosen).to_dict())

        st.multiselect(
            f"Values of '{schema.label_column}' that mean normal (all others are anomalies)",
            options=sorted(values, key=str),
            default=[v for v in values if v in schema.normal_values] or None,
            key=f"normal_{dataset_id}_{version}",
            on_change=guarded(set_normal),
        )

# --- series -------------------------------------------------------------------------------
series_section(ws, view)

# --- preprocessing -----------------------------------------------------------------------
st.markdown("**Preprocessing** (used by the next training)")
choices = state.preprocessing_choices(dataset_id)
# Choices stored before a setting existed lack it: the Preprocessor's default applies.
categorical_missing = choices.get("categorical_missing", Preprocessor().categorical_missing)
c1, c2, c3, c4, c5 = st.columns(5)


def save_choices() -> None:
    state.set_preprocessing_choices(
        dataset_id,
        {
            "scaling": st.session_state[f"scaling_{dataset_id}"],
            "impute": st.session_state[f"impute_{dataset_id}"],
            "max_categories": int(st.session_state[f"maxcat_{dataset_id}"]),
            "missing_indicators": bool(st.session_state[f"indicators_{dataset_id}"]),
            "categorical_missing": st.session_state[f"catmissing_{dataset_id}"],
            "keep_constant": bool(st.session_state[f"keepconst_{dataset_id}"]),
        },
    )


c1.selectbox(
    "Scaling",
    SCALINGS,
    index=SCALINGS.index(choices["scaling"]),
    key=f"scaling_{dataset_id}",
    on_change=save_choices,
    help="standard: zero mean, unit variance; minmax: to [0, 1]; robust: median and IQR; "
    "standard_minmax: the Deep SAD protocol; none: as is; global: one mean and spread for "
    "all columns together (for images: every pixel on the same scale, so the picture is "
    "kept).",
)
c2.selectbox(
    "Fill missing numbers with",
    IMPUTES,
    index=IMPUTES.index(choices["impute"]),
    key=f"impute_{dataset_id}",
    on_change=save_choices,
)
c3.number_input(
    "Most categories per column",
    min_value=2,
    max_value=1000,
    value=int(choices["max_categories"]),
    key=f"maxcat_{dataset_id}",
    on_change=save_choices,
    help="Rarer values are grouped as '(other)'.",
)
c4.checkbox(
    "Add 'is missing' columns",
    value=bool(choices["missing_indicators"]),
    key=f"indicators_{dataset_id}",
    on_change=save_choices,
)
c4.checkbox(
    "Keep constant columns",
    value=bool(choices.get("keep_constant", False)),
    key=f"keepconst_{dataset_id}",
    on_change=save_choices,
    help="Columns with one value in every row carry no information and are dropped. Keep "
    "them when the rows are images (blank border pixels): image detectors and image "
    "augmentations need every pixel in its place.",
)
c5.selectbox(
    "Empty cells in categorical columns",
    CATEGORICAL_MISSING,
    index=CATEGORICAL_MISSING.index(categorical_missing),
    format_func=CATEGORICAL_MISSING_TEXT.get,
    key=f"catmissing_{dataset_id}",
    on_change=save_choices,
    help="own category: an empty cell is a value of its own ('colour is missing'), so a "
    "rare empty cell makes its row stand out; most frequent: empty cells are filled with "
    "the column's most frequent category, for cells empty by accident.",
)

# --- rows that are images ------------------------------------------------------------------
layout = image_layout(frame, schema)
if layout is not None:
    image_ready = (
        not layout.blank
        and choices.get("scaling") in ("global", "none")
        and bool(choices.get("keep_constant"))
        and not choices.get("missing_indicators")
    )
    if image_ready:
        st.caption(
            f"Rows are read as {layout.describe()}: every pixel kept, one scale for all "
            "(image detectors and image augmentations see pictures)."
        )
    else:

        def as_images() -> None:
            ws.update_dataset_schema(dataset_id, schema_as_images(schema, layout).to_dict())
            new_choices = {**choices, **IMAGE_PREPROCESSING}
            state.set_preprocessing_choices(dataset_id, new_choices)
            # the widgets above are drawn anew from what was stored, not their last values
            for widget in ("scaling", "keepconst", "indicators"):
                st.session_state.pop(f"{widget}_{dataset_id}", None)
            flash(
                "success",
                f"Rows are read as {layout.describe()}: "
                + (
                    f"the {len(layout.blank):,} blank column(s) are features again, "
                    if layout.blank
                    else ""
                )
                + "every pixel is kept and all share one scale (scaling 'global').",
            )

        st.info(
            f"The rows look like {layout.describe()}. Image detectors and image "
            "augmentations need every pixel in its place and on one scale; per-column "
            "scaling gives each pixel its own, and blank pixels are set aside.",
            icon=":material/image:",
        )
        st.button(
            "Treat rows as images",
            key=f"as_images_{dataset_id}",
            on_click=guarded(as_images),
            help="Makes the blank pixel columns features again, keeps constant columns, "
            "adds no 'is missing' columns and sets the scaling to 'global' (one mean and "
            "spread over all pixels). Undo by changing the roles, the scaling and those two "
            "boxes back.",
        )

if not summary.error and summary.n_rows >= 2:
    page_link("train", "Next: train a detector")
