"""Column roles (feature, id, timestamp, ground truth, ignore): inference, overrides, row keys."""

from __future__ import annotations

import copy
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ad_core.data.errors import DataError

ROLES = ("numeric", "categorical", "id", "timestamp", "label", "ignore")
FEATURE_ROLES = ("numeric", "categorical")
SCHEMA_VERSION = 1

# Normalised names (lower case, separators as "_") that announce a ground-truth column.
LABEL_NAMES = (
    "label",
    "labels",
    "is_anomaly",
    "anomaly",
    "is_outlier",
    "outlier",
    "ground_truth",
    "groundtruth",
    "gt",
    "target",
    "class",
    "y",
    "attack",
    "is_attack",
)
# A ground truth names a handful of outcomes; more distinct values than this is a feature.
MAX_LABEL_VALUES = 50
TIME_NAMES = ("timestamp", "datetime", "date", "time", "ts", "date_time", "time_stamp")
# String columns with more distinct values than this share of rows (and MIN_FREE_TEXT values)
# are free text or keys, not categories.
FREE_TEXT_SHARE = 0.5
MIN_FREE_TEXT = 20
_SAMPLE = 500
_NORMAL_WORDS = re.compile(r"(?<![a-z])(normal|benign|inlier|nominal)(?![a-z])", re.IGNORECASE)
_NOT_NORMAL = re.compile(r"(?<![a-z])(not|non|ab|un)[\s_-]?(normal|benign)", re.IGNORECASE)
_ID_SUFFIX = re.compile(r"(^|[_\s.\-])(id|ids|uuid|guid|key)$")
_CAMEL_ID = re.compile(r"[a-z0-9](Id|ID)$")
# A date (2024-01-31, 31/01/2024, 31.1.2024), a time of day (12:30) or compact ISO (20240131T).
_DATE_LIKE = re.compile(r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}|\d{1,2}:\d{2}|\d{8}T\d")


def _normalise(name: str) -> str:
    return re.sub(r"[\s\-.]+", "_", str(name).strip().lower())


@dataclass
class Schema:
    """The role of every column, why it was proposed, and which label values mean normal.

    ``roles`` maps each column to one of ``ROLES``; ``reasons`` says why (a sentence for the
    user); ``normal_values`` lists the ground-truth values that mean "normal" (every other
    value of the label column is an anomaly). Override a role with ``with_role``.
    """

    roles: dict[str, str]
    reasons: dict[str, str] = field(default_factory=dict)
    normal_values: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        unknown = {c: r for c, r in self.roles.items() if r not in ROLES}
        if unknown:
            raise ValueError(f"unknown roles {unknown}; choose from {', '.join(ROLES)}")

    @property
    def columns(self) -> list[str]:
        """Return every column the schema knows, in table order."""
        return list(self.roles)

    @property
    def feature_columns(self) -> list[str]:
        """Return the numeric and categorical feature columns, in table order."""
        return [c for c, r in self.roles.items() if r in FEATURE_ROLES]

    @property
    def numeric_columns(self) -> list[str]:
        """Return the numeric feature columns."""
        return self.columns_with_role("numeric")

    @property
    def categorical_columns(self) -> list[str]:
        """Return the categorical feature columns."""
        return self.columns_with_role("categorical")

    @property
    def label_column(self) -> str | None:
        """Return the ground-truth column, or None."""
        return next(iter(self.columns_with_role("label")), None)

    @property
    def id_column(self) -> str | None:
        """Return the row-identifier column, or None."""
        return next(iter(self.columns_with_role("id")), None)

    @property
    def timestamp_column(self) -> str | None:
        """Return the first timestamp column, or None."""
        return next(iter(self.columns_with_role("timestamp")), None)

    def columns_with_role(self, role: str) -> list[str]:
        """Return the columns that have the role, in table order."""
        return [c for c, r in self.roles.items() if r == role]

    def with_role(
        self, column: str, role: str, *, normal_values: list[Any] | None = None
    ) -> Schema:
        """Return a copy with the column's role set by the user.

        There is at most one label and one id column: giving the role to another column
        sets the previous holder to "ignore". ``normal_values`` applies when the role is
        "label"; without it a new label column gets ``[]`` and ``ground_truth`` proposes
        the normal values from the data.
        """
        if column not in self.roles:
            raise KeyError(f"no column '{column}' in the schema; columns: {self.columns}")
        if role not in ROLES:
            raise ValueError(f"unknown role '{role}'; choose from {', '.join(ROLES)}")
        new = copy.deepcopy(self)
        if role in ("label", "id"):
            for other in new.columns_with_role(role):
                if other != column:
                    new.roles[other] = "ignore"
                    new.reasons[other] = f"replaced by '{column}' as the {_ROLE_TITLES[role]}"
        was_label = self.roles[column] == "label"
        new.roles[column] = role
        new.reasons[column] = "set by you"
        if role == "label":
            if normal_values is not None:
                new.normal_values = _plain_list(normal_values)
            elif not was_label:
                new.normal_values = []
        elif was_label:
            new.normal_values = []
        return new

    def with_normal_values(self, normal_values: list[Any]) -> Schema:
        """Return a copy whose ground-truth values listed here mean normal."""
        new = copy.deepcopy(self)
        new.normal_values = _plain_list(normal_values)
        return new

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict that ``from_dict`` turns back into this schema."""
        return {
            "version": SCHEMA_VERSION,
            "roles": dict(self.roles),
            "reasons": dict(self.reasons),
            "normal_values": _plain_list(self.normal_values),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Schema:
        """Return the schema stored by ``to_dict``."""
        version = data.get("version", SCHEMA_VERSION)
        if version > SCHEMA_VERSION:
            raise ValueError(f"schema version {version} is newer than this ad_core supports")
        return cls(
            roles=dict(data["roles"]),
            reasons=dict(data.get("reasons", {})),
            normal_values=list(data.get("normal_values", [])),
        )


_ROLE_TITLES = {"label": "ground-truth label", "id": "row identifier"}


def _plain(value: Any) -> Any:
    """Return a JSON-friendly Python scalar for a numpy/pandas scalar."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _plain_list(values: Any) -> list[Any]:
    return [_plain(v) for v in values]


# --- inference -----------------------------------------------------------------------------


def infer_schema(df: pd.DataFrame) -> Schema:
    """Return the proposed role of every column, each with a reason a user can read.

    Proposals, in order of precedence: a label-like name (label, class, target, y,
    outlier, anomaly, attack, ...) with 2 to 50 distinct values -> ground-truth ``label``;
    all-missing or constant -> ``ignore``; dates, or numbers named like a time ->
    ``timestamp``; unique whole numbers or short strings that look like keys (or an id-like
    name) -> ``id``; other numbers -> ``numeric``; text with many distinct values (free
    text) -> ``ignore``; other text -> ``categorical``.
    """
    # A shallow copy without attrs: pandas deep-copies attrs into every column it hands out.
    df = df.copy(deep=False)
    df.attrs = {}
    if not all(isinstance(c, str) for c in df.columns):
        df = df.set_axis([str(c) for c in df.columns], axis=1)
    n_rows = len(df)
    roles: dict[str, str] = {}
    reasons: dict[str, str] = {}
    columns = [str(c) for c in df.columns]
    numeric_stats = _numeric_stats(df)

    label = _pick_label(df)
    id_column: str | None = None
    for column, (_, series) in zip(columns, df.items(), strict=True):
        if column == label:
            n_values = series.nunique(dropna=True)
            roles[column] = "label"
            reasons[column] = (
                f"its name suggests the ground truth and it has {n_values} distinct values"
            )
            continue
        role, reason = _propose(column, series, n_rows, numeric_stats.get(column), id_column)
        if role == "id":
            id_column = column
        roles[column] = role
        reasons[column] = reason
    normal = propose_normal_values(df[label]) if label is not None else []
    return Schema(roles=roles, reasons=reasons, normal_values=normal)


@dataclass(frozen=True)
class _NumericStats:
    n_present: int
    low: float
    high: float
    integral: bool  # complete, finite whole numbers


def _numeric_stats(df: pd.DataFrame) -> dict[str, _NumericStats]:
    """Return the statistics of every numeric column, computed in one vectorised pass."""
    dtypes = df.dtypes.to_numpy()
    numeric = [
        j
        for j, dtype in enumerate(dtypes)
        if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
    ]
    if not numeric or len(df) == 0:
        return {}
    values = df.iloc[:, numeric].to_numpy(dtype=np.float64, na_value=np.nan)
    present = ~np.isnan(values)
    counts = present.sum(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        lows = np.nanmin(values, axis=0)
        highs = np.nanmax(values, axis=0)
    integral = np.all(np.isfinite(values), axis=0) & np.all(values == np.round(values), axis=0)
    names = [str(df.columns[j]) for j in numeric]
    return {
        name: _NumericStats(int(c), float(lo), float(hi), bool(i))
        for name, c, lo, hi, i in zip(names, counts, lows, highs, integral, strict=True)
    }


def _pick_label(df: pd.DataFrame) -> str | None:
    """Return the column that most likely holds the ground truth, or None."""
    by_name = {_normalise(c): str(c) for c in reversed(df.columns)}
    for wanted in LABEL_NAMES:
        column = by_name.get(wanted)
        if column is None:
            continue
        series = df[column]
        n_values = series.nunique(dropna=True)
        n_present = int(series.notna().sum())
        if 2 <= n_values <= MAX_LABEL_VALUES and (n_values < n_present or n_values == 2):
            return column
    return None


def _is_id_name(column: str) -> bool:
    lowered = column.strip().lower()
    return bool(
        _ID_SUFFIX.search(lowered)
        or _CAMEL_ID.search(column.strip())
        or lowered in ("index", "idx", "row", "row_number", "record", "unnamed: 0")
    )


def _propose(
    column: str,
    series: pd.Series,
    n_rows: int,
    stats: _NumericStats | None,
    id_column: str | None,
) -> tuple[str, str]:
    """Return (role, reason) for one column that is not the ground truth."""
    has_id = id_column is not None
    n_present = stats.n_present if stats is not None else int(series.notna().sum())
    if n_present == 0:
        return "ignore", "every value is missing"

    if stats is not None:
        if n_rows > 1 and stats.low == stats.high:
            return "ignore", _constant_reason(_format(stats.low), n_present < n_rows)
        if _normalise(column) in TIME_NAMES:
            return "timestamp", "its name says it is a time; used for ordering, not a feature"
        if not has_id and stats.integral and n_rows > 1:
            # In a small table, 1, 2, 3 in a column is as likely a feature as a row number.
            consecutive = n_rows > MIN_FREE_TEXT and stats.high - stats.low == n_rows - 1
            if (_is_id_name(column) or consecutive) and series.is_unique:
                return "id", "whole numbers, unique in every row: a row identifier"
        return "numeric", "numbers"

    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return "timestamp", "holds dates/times; used for ordering, not as a feature"
    if pd.api.types.is_bool_dtype(series.dtype):
        if n_rows > 1 and series.nunique(dropna=True) < 2:
            return "ignore", _constant_reason(str(series.dropna().iloc[0]), n_present < n_rows)
        return "numeric", "true/false values, used as 1/0"

    # Text or other objects.
    present = series.dropna()
    n_unique = present.nunique()
    if n_rows > 1 and n_unique == 1:
        return "ignore", _constant_reason(f"'{present.iloc[0]}'", n_present < n_rows)
    strings = present.astype(str)
    if _looks_like_time(strings):
        return "timestamp", "holds dates/times; used for ordering, not as a feature"
    # A few unique names in a small table are categories, not keys.
    if n_present > MIN_FREE_TEXT and n_unique == n_present == n_rows:
        if _is_id_name(column) or _looks_like_keys(strings):
            if has_id:
                return "ignore", f"unique in every row like a key; '{id_column}' is the row id"
            return "id", "unique in every row and short, like a key: a row identifier"
    if _is_id_name(column) and n_unique == n_present and not has_id:
        return "id", "its name says it is an identifier and its values are unique"
    if n_unique > MIN_FREE_TEXT and n_unique > FREE_TEXT_SHARE * n_present:
        kind = "free text" if _looks_like_free_text(strings) else "text"
        return (
            "ignore",
            f"{kind} with {n_unique} different values in {n_present} rows: too many to use "
            "as categories",
        )
    return "categorical", f"text with {n_unique} categories"


def _constant_reason(value: str, has_missing: bool) -> str:
    where = "wherever it is not missing" if has_missing else "in every row"
    return f"has the same value ({value}) {where}, so it carries no information"


def _format(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _is_integral(series: pd.Series) -> bool:
    """Return True when every value is a finite whole number."""
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    return bool(np.all(np.isfinite(values)) and np.all(values == np.round(values)))


def _looks_like_keys(strings: pd.Series) -> bool:
    sample = strings.head(_SAMPLE)
    return bool(sample.str.len().max() <= 64 and not sample.str.contains(r"\s").any())


def _looks_like_free_text(strings: pd.Series) -> bool:
    sample = strings.head(_SAMPLE)
    return bool(sample.str.contains(r"\s").mean() > 0.5)


def _looks_like_time(strings: pd.Series) -> bool:
    """Return True when nearly all sampled strings parse as dates or times."""
    sample = strings.head(_SAMPLE)
    if len(sample) == 0 or sample.str.contains(_DATE_LIKE).mean() < 0.9:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "could not infer format" chatter
        parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
    return bool(parsed.notna().mean() >= 0.9)


def propose_normal_values(labels: pd.Series) -> list[Any]:
    """Return the ground-truth values that most likely mean "normal".

    Numbers 0/1 (or booleans): 0 is normal. Text: values that say normal, benign or inlier
    (not "abnormal"). Otherwise the most frequent value, since anomalies are rare.
    """
    present = labels.dropna()
    if present.empty:
        return []
    values = pd.unique(present)
    if pd.api.types.is_bool_dtype(present.dtype):
        return [False]
    if pd.api.types.is_numeric_dtype(present.dtype):
        if set(np.asarray(values, dtype=float).tolist()) <= {0.0, 1.0}:
            return [0]
    else:
        texts = [str(v) for v in values]
        normal = [
            v
            for v, t in zip(values, texts, strict=True)
            if _NORMAL_WORDS.search(t) and not _NOT_NORMAL.search(t)
        ]
        if normal and len(normal) < len(values):
            return _plain_list(normal)
    return [_plain(present.value_counts().index[0])]


def ground_truth(df: pd.DataFrame, schema: Schema) -> np.ndarray | None:
    """Return 1 for anomalies and 0 for normal rows from the label column, or None.

    Rows whose label cell is empty get -1 (unknown), which the metrics ignore. When the
    schema lists no normal values, they are proposed from the data.
    """
    column = schema.label_column
    if column is None:
        return None
    if column not in df.columns:
        raise DataError(
            f"The ground-truth column '{column}' is not in the table. Choose another label "
            "column or set its role to none."
        )
    labels = df[column]
    normal = schema.normal_values or propose_normal_values(labels)
    is_normal = labels.isin(normal).to_numpy()
    if pd.api.types.is_numeric_dtype(labels.dtype) and not pd.api.types.is_bool_dtype(labels.dtype):
        # Numbers stored as text in the schema JSON ("1") still match numeric labels.
        numeric_normal = pd.to_numeric(pd.Series(normal, dtype=object), errors="coerce")
        is_normal = is_normal | labels.isin(numeric_normal.dropna().tolist()).to_numpy()
    out = np.where(is_normal, 0, 1).astype(np.int64)
    out[labels.isna().to_numpy()] = -1
    return out


def row_keys(df: pd.DataFrame, schema: Schema, *, notes: list[str] | None = None) -> np.ndarray:
    """Return a stable string key per row: the id column when usable, else the row number.

    The id column is used when it is complete and unique; otherwise the original row number
    (the frame's integer index, so keys survive filtering) is used and, when ``notes`` is
    given, a sentence saying why is appended to it.
    """
    column = schema.id_column
    if column is not None and column in df.columns:
        ids = df[column]
        problem = None
        if ids.isna().any():
            problem = f"{int(ids.isna().sum())} rows have no value in it"
        elif not ids.is_unique:
            n_dup = int(ids.duplicated(keep=False).sum())
            problem = f"{n_dup} rows share a value with another row"
        if problem is None:
            return key_strings(ids)
        if notes is not None:
            notes.append(
                f"The id column '{column}' cannot identify rows ({problem}); rows are "
                "identified by their row number instead."
            )
    index = df.index
    if pd.api.types.is_integer_dtype(index.dtype) and index.is_unique:
        return np.asarray(index.astype(str), dtype=object)
    return np.asarray([str(i) for i in range(len(df))], dtype=object)


def key_strings(ids: pd.Series) -> np.ndarray:
    """Return the id values as strings, writing whole numbers without a trailing '.0'."""
    if pd.api.types.is_float_dtype(ids.dtype) and _is_integral(ids):
        ids = ids.astype(np.int64)
    return np.asarray(ids.astype(str), dtype=object)
