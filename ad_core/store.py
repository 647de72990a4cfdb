"""The workspace: one SQLite file plus the files beside it (datasets, models, scores).

Layout under the workspace home (``AD_STUDIO_HOME``, default ``./.ad_studio``)::

    workspace.db              SQLite, WAL mode, schema version in PRAGMA user_version
    datasets/<id>.parquet     each dataset frame, written once (temp file, then rename)
    runs/<run_id>/            everything a run produces: model directory, scores.parquet

Durability is the point: every write is one ``BEGIN IMMEDIATE ... COMMIT`` transaction that
has committed (``synchronous=FULL``) before the method returns, so a label survives a browser
refresh, an app restart or a crash the moment it is given, and a batch is never half written.
Each thread gets its own connection (Streamlit runs scripts on many threads); several
processes may write at once: writers queue on SQLite's lock (``busy_timeout``) instead of
failing.

Labels are an append-only history: ``(dataset, key_scheme, row_key, label, annotator, batch)``,
the latest entry per row wins, ``-1`` clears a row. ``key_scheme`` says how the row key
identifies its row: ``"id:<column>"`` (the value of that id column) or ``"row"`` (the row
number). A label is shown and used only while the dataset's rows are identified the way it was
given (:meth:`Workspace.key_scheme`, derived from the stored column roles), so a change of the
id column can never move a label onto another row: the labels of the other scheme are hidden,
not lost, and come back when the id column is set back.

Undo appends entries that restore, for each row of the undone batch, the label the row had
before it, counting only labels nobody has withdrawn (a label whose batch was undone stays
withdrawn); a restored label keeps the annotator who gave it. The history shows both the mistake
and its correction. ``label_batches.annotator`` is who acted; ``labels.annotator`` is whose
label an entry is (the same, except for restored and imported labels).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "SCHEMA_VERSION",
    "CurrentLabel",
    "DatasetRecord",
    "KeySchemeChanged",
    "LabelConflict",
    "LabelImport",
    "LabelImportError",
    "ROW_SCHEME",
    "RunRecord",
    "UndoneBatch",
    "Workspace",
    "WorkspaceError",
    "describe_key_scheme",
    "frame_content_hash",
    "frame_key_scheme",
    "read_label_table",
]

SCHEMA_VERSION = 2
DB_NAME = "workspace.db"
SCORES_FILE = "scores.parquet"
RUN_STATUSES = ("running", "done", "failed", "cancelled")
LABEL_VALUES = (-1, 0, 1)
# How long a writer waits for another writer (thread or process) before giving up.
BUSY_TIMEOUT_S = 30.0
#: the key scheme of rows identified by their row number (no usable id column)
ROW_SCHEME = "row"
LABEL_NAMES = {1: "anomaly", 0: "normal", -1: "unlabelled"}
# SQLite's limit on ? parameters is 32766; stay well below it per IN (...) list.
_IN_CHUNK = 900


class WorkspaceError(RuntimeError):
    """The workspace cannot be used as asked (newer schema, bad file); the message says why."""


class KeySchemeChanged(ValueError):
    """The caller's row keys belong to another key scheme than the dataset has now."""


class LabelImportError(ValueError):
    """A labels file cannot be imported; the message says why and what to do. Nothing is written."""


class LabelConflict(ValueError):
    """Someone else changed the rows' labels since the caller showed them; nothing was written.

    ``changes`` holds the current label of each such row.
    """

    def __init__(self, changes: tuple[CurrentLabel, ...]) -> None:
        self.changes = changes
        first = changes[0]
        super().__init__(
            f"{first.changed_by or 'someone'} changed the label of row {first.row_key} to "
            f"{LABEL_NAMES.get(first.label, first.label)} since it was shown; nothing was saved"
        )


@dataclass(frozen=True)
class DatasetRecord:
    """A stored dataset: its identity, shape and column roles (the frame is at ``path``)."""

    id: str
    name: str
    content_hash: str
    n_rows: int
    n_cols: int
    schema: dict
    created: str
    path: Path
    #: how row keys identify rows under the current roles: "id:<column>" or "row"
    key_scheme: str = ROW_SCHEME


@dataclass(frozen=True)
class RunRecord:
    """A detector run on a dataset: settings in, metrics and files out."""

    id: int
    dataset_id: str
    detector: str
    params: dict
    preprocessing: dict | None
    metrics: dict | None
    status: str
    fit_seconds: float | None
    model_path: Path | None
    created: str
    finished: str | None


@dataclass(frozen=True)
class UndoneBatch:
    """What :meth:`Workspace.undo_last_label` reverted.

    ``restored`` maps each row key to the label it has again (-1 = unlabelled); ``skipped``
    lists rows whose label someone changed after the batch, which undo leaves alone.
    """

    batch_id: int
    undo_batch_id: int
    annotator: str
    label: int
    restored: dict[str, int]
    skipped: tuple[str, ...]
    #: the label the undone batch had given each of its rows
    given: dict[str, int] = field(default_factory=dict)
    #: whose label each restored row has again ("" for rows left unlabelled)
    restored_annotators: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CurrentLabel:
    """The label a row has now (``-1``: cleared), whose it is and who changed it last."""

    row_key: str
    label: int
    #: whose label it is: who gave it (for a label an undo restored, who first gave it)
    annotator: str
    #: when it was given (ISO 8601, UTC); for a restored label, when it was first given
    given_at: str
    #: who made the latest change: the annotator, or the person whose undo restored it
    changed_by: str
    changed_at: str
    #: "set" (given) or "undo" (restored by an undo)
    kind: str
    entry_id: int


@dataclass(frozen=True)
class LabelImport:
    """What :meth:`Workspace.import_labels` found in a file (and wrote, unless a dry run)."""

    n_rows: int
    n_anomaly: int
    n_normal: int
    #: rows that already have exactly this label from this annotator (not written again)
    n_unchanged: int
    #: rows whose current, different label the import replaces
    n_replaced: int
    annotators: tuple[str, ...]
    key_scheme: str
    batch_id: int | None


# --- schema -------------------------------------------------------------------------------

_SCHEMA_V1 = (
    """CREATE TABLE datasets (
        id TEXT PRIMARY KEY,
        content_hash TEXT NOT NULL UNIQUE,
        source_hash TEXT,
        name TEXT NOT NULL,
        n_rows INTEGER NOT NULL,
        n_cols INTEGER NOT NULL,
        schema_json TEXT NOT NULL,
        created TEXT NOT NULL
    )""",
    "CREATE INDEX datasets_by_source ON datasets(source_hash)",
    """CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        dataset_id TEXT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
        detector TEXT NOT NULL,
        params_json TEXT NOT NULL,
        preprocessing_json TEXT,
        metrics_json TEXT,
        status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'cancelled')),
        fit_seconds REAL,
        model_path TEXT,
        created TEXT NOT NULL,
        finished TEXT
    )""",
    "CREATE INDEX runs_by_dataset ON runs(dataset_id, id)",
    # One row per set_labels / undo call: the unit that undo reverts.
    """CREATE TABLE label_batches (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        dataset_id TEXT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
        annotator TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('set', 'undo')),
        undoes INTEGER REFERENCES label_batches(id),
        created_at TEXT NOT NULL
    )""",
    "CREATE INDEX label_batches_by_dataset ON label_batches(dataset_id, kind, id)",
    "CREATE INDEX label_batches_by_undoes ON label_batches(undoes)",
    """CREATE TABLE labels (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        dataset_id TEXT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
        row_key TEXT NOT NULL,
        label INTEGER NOT NULL CHECK (label IN (-1, 0, 1)),
        annotator TEXT NOT NULL,
        batch_id INTEGER NOT NULL REFERENCES label_batches(id) ON DELETE CASCADE,
        created_at TEXT NOT NULL
    )""",
    # Covers "latest entry per row": GROUP BY row_key with MAX(id) reads only this index.
    "CREATE INDEX labels_by_row ON labels(dataset_id, row_key, id)",
    "CREATE INDEX labels_by_batch ON labels(batch_id)",
    "CREATE TABLE settings (key TEXT PRIMARY KEY, value_json TEXT NOT NULL)",
)


def _migrate_to_1(conn: sqlite3.Connection, datasets_dir: Path) -> None:
    for statement in _SCHEMA_V1:
        conn.execute(statement)


_SCHEMA_V2 = (
    # How each dataset's rows are identified under its current roles (see frame_key_scheme()).
    f"ALTER TABLE datasets ADD COLUMN key_scheme TEXT NOT NULL DEFAULT '{ROW_SCHEME}'",
    # The scheme a label was given under: its key means a row only under that scheme.
    f"ALTER TABLE label_batches ADD COLUMN key_scheme TEXT NOT NULL DEFAULT '{ROW_SCHEME}'",
    f"ALTER TABLE labels ADD COLUMN key_scheme TEXT NOT NULL DEFAULT '{ROW_SCHEME}'",
    # For an entry an undo wrote: the entry whose label it restored (its annotator and time).
    "ALTER TABLE labels ADD COLUMN restores INTEGER REFERENCES labels(id)",
    "DROP INDEX labels_by_row",
    "CREATE INDEX labels_by_row ON labels(dataset_id, key_scheme, row_key, id)",
)


def _migrate_to_2(conn: sqlite3.Connection, datasets_dir: Path) -> None:
    """Add key schemes; labels given before get the scheme their dataset has now.

    Before version 2 a label's key meant whatever the current roles made of it, so the
    scheme in force is the one under which the app showed (and the user saw) these labels.
    """
    for statement in _SCHEMA_V2:
        conn.execute(statement)
    for dataset_id, schema_json in conn.execute("SELECT id, schema_json FROM datasets").fetchall():
        scheme = _stored_frame_key_scheme(
            datasets_dir / f"{dataset_id}.parquet", _loads(schema_json)
        )
        conn.execute("UPDATE datasets SET key_scheme = ? WHERE id = ?", (scheme, dataset_id))
        conn.execute(
            "UPDATE label_batches SET key_scheme = ? WHERE dataset_id = ?", (scheme, dataset_id)
        )
        conn.execute("UPDATE labels SET key_scheme = ? WHERE dataset_id = ?", (scheme, dataset_id))


# Migration hook: _MIGRATIONS[v] upgrades a version v-1 database to version v inside one
# transaction. To change the schema, add the next function here and bump SCHEMA_VERSION.
_MIGRATIONS: dict[int, Callable[[sqlite3.Connection, Path], None]] = {
    1: _migrate_to_1,
    2: _migrate_to_2,
}


# --- key schemes ----------------------------------------------------------------------------


def _id_column(schema_dict: dict | None) -> str | None:
    roles = (schema_dict or {}).get("roles") or {}
    return next((str(c) for c, role in roles.items() if role == "id"), None)


def frame_key_scheme(frame: pd.DataFrame, schema_dict: dict | None) -> str:
    """Return how ``ad_core.data.row_keys`` identifies the frame's rows: "id:<column>" or "row".

    The id column counts only when it can identify every row (complete and unique); otherwise
    rows are identified by their row number, exactly as ``row_keys`` does.
    """
    from ad_core.data.schema import Schema, row_keys

    column = _id_column(schema_dict)
    if column is None or column not in frame.columns:
        return ROW_SCHEME
    notes: list[str] = []
    row_keys(frame[[column]], Schema(roles={column: "id"}), notes=notes)
    return ROW_SCHEME if notes else f"id:{column}"


def _stored_frame_key_scheme(path: Path, schema_dict: dict | None) -> str:
    """Return :func:`frame_key_scheme` of a stored frame, reading only its id column."""
    column = _id_column(schema_dict)
    if column is None:
        return ROW_SCHEME
    try:
        ids = pd.read_parquet(path, columns=[column])
    except FileNotFoundError:
        # The frame is gone (the dataset cannot be opened at all); the roles are all we have.
        return f"id:{column}"
    except (KeyError, ValueError):  # the file has no such column: rows go by number
        return ROW_SCHEME
    return frame_key_scheme(ids, schema_dict)


def describe_key_scheme(scheme: str) -> str:
    """Return how a key scheme identifies rows, in words: "the id column 'beat_id'"."""
    if scheme.startswith("id:"):
        return f"the id column '{scheme[3:]}'"
    return "their row number"


# --- small helpers ------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"a {type(value).__name__} cannot be stored as JSON")


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default, sort_keys=True)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _row_key(key: Any, position: int) -> str:
    """Return the stored (text) form of a row key; missing keys are an error."""
    if isinstance(key, str):
        return key
    if key is None or (isinstance(key, float | np.floating) and math.isnan(key)):
        raise ValueError(
            f"row key at position {position} is missing ({key!r}); every row needs a key"
        )
    if isinstance(key, np.generic):
        key = key.item()
    return str(key)


def _row_key_array(row_keys: Iterable[Any]) -> np.ndarray:
    """Return row keys as an array of str, all at once (for score files)."""
    values = row_keys.to_numpy() if isinstance(row_keys, pd.Series | pd.Index) else row_keys
    if isinstance(values, np.ndarray) and values.dtype.kind in "Uiu":
        return values.astype(str)
    return np.array([_row_key(k, i) for i, k in enumerate(values)], dtype=str)


def _check_label(label: Any) -> int:
    if isinstance(label, bool | np.bool_) or label not in LABEL_VALUES:
        raise ValueError(
            f"label must be 1 (anomaly), 0 (normal) or -1 (clear the label), got {label!r}"
        )
    return int(label)


def _when(iso: str) -> str:
    """Return an ISO time stamp as 'YYYY-MM-DD HH:MM:SS UTC' (what a person reads)."""
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _history_step(label: int, annotator: str, kind: str, by: str, created_at: str) -> str:
    """Return one label entry as text: '2025-03-01 10:00:03 UTC alice: anomaly'."""
    when = _when(created_at)
    if kind == "undo":
        whose = f" ({annotator}'s)" if label != -1 and annotator != by else ""
        return f"{when} {by} undid: {LABEL_NAMES[label]}{whose}"
    text = "cleared" if label == -1 else LABEL_NAMES[label]
    via = f" (imported by {by})" if by and annotator != by else ""
    return f"{when} {annotator}: {text}{via}"


_LABEL_WORDS = {"1": 1, "0": 0, "1.0": 1, "0.0": 0, "anomaly": 1, "normal": 0}


def _lines(positions: Iterable[int]) -> list[int]:
    """Return file line numbers of table rows (the header is line 1)."""
    return [int(i) + 2 for i in positions]


def read_label_table(data: bytes) -> pd.DataFrame:
    """Return the labels of a CSV file: row_key (text), label (1 / 0), and, when the file has
    them, annotator and key_scheme; :class:`LabelImportError` says what is wrong otherwise.

    The file needs a header with ``row_key`` and ``label`` (anomaly / normal, or 1 / 0), as the
    export writes it; a comma, semicolon or tab separates the columns. A row key listed twice
    must have the same label both times.
    """
    if not data or not bytes(data).strip():
        raise LabelImportError("The file is empty: there are no labels in it.")
    try:
        text = bytes(data).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise LabelImportError(
            "The file is not UTF-8 text, so it is not a labels CSV file. Import a file that "
            "the Label page exported, or save your sheet as 'CSV UTF-8'."
        ) from None
    if "\x00" in text:
        raise LabelImportError(
            "The file is binary, not a labels CSV file. Import a file that the Label page exported."
        )
    header = text.splitlines()[0] if text.splitlines() else ""
    separator = next((c for c in (",", ";", "\t") if c in header), ",")
    try:
        table = pd.read_csv(io.StringIO(text), sep=separator, dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise LabelImportError(f"The file cannot be read as a CSV table ({exc}).") from None
    table.columns = [str(c).strip().lower() for c in table.columns]
    missing = [c for c in ("row_key", "label") if c not in table.columns]
    if missing:
        raise LabelImportError(
            "The file needs a column named row_key and one named label (as the Label page's "
            f"export writes them); it has no {' and no '.join(missing)}. Its columns are: "
            f"{', '.join(table.columns[:10])}."
        )
    if table.empty:
        raise LabelImportError("The file has a header but no labels.")
    keys = table["row_key"].str.strip()
    empty = _lines(np.flatnonzero((keys == "").to_numpy()))
    if empty:
        raise LabelImportError(
            f"{len(empty):,} line(s) of the file have no row key (line "
            f"{', '.join(map(str, empty[:10]))}). Nothing was imported."
        )
    words = table["label"].str.strip().str.lower()
    values = words.map(_LABEL_WORDS)
    bad = np.flatnonzero(values.isna().to_numpy())
    if bad.size:
        shown = ", ".join(
            f"line {line} ({table['label'].iloc[i]!r})"
            for i, line in zip(bad[:5], _lines(bad[:5]), strict=True)
        )
        raise LabelImportError(
            f"{bad.size:,} line(s) have a label that is neither anomaly nor normal (1 or 0): "
            f"{shown}{' and more' if bad.size > 5 else ''}. Nothing was imported."
        )
    out = pd.DataFrame({"row_key": keys, "label": values.astype(np.int64)})
    for column in ("annotator", "key_scheme"):
        if column in table.columns:
            out[column] = table[column].str.strip()
    twice = out[out.duplicated("row_key", keep=False)]
    split = twice.groupby("row_key", sort=False)["label"].nunique()
    if (split > 1).any():
        key = split.index[split > 1][0]
        lines = _lines(np.flatnonzero((out["row_key"] == key).to_numpy()))
        raise LabelImportError(
            f"Row key {key} is in the file {len(lines)} times with different labels (lines "
            f"{', '.join(map(str, lines))}), and {int((split > 1).sum()):,} row key(s) in all are. "
            "Nothing was imported: keep one line per row."
        )
    return out.drop_duplicates("row_key", keep="last").reset_index(drop=True)


def frame_content_hash(df: pd.DataFrame) -> str:
    """Return a SHA-256 hex digest of a frame's column names, dtypes, index and values."""
    digest = hashlib.sha256()
    digest.update(_dumps([[str(c) for c in df.columns], [str(t) for t in df.dtypes]]).encode())
    try:
        rows = pd.util.hash_pandas_object(df, index=True)
    except TypeError:  # unhashable cells (lists, dicts): hash their text instead
        rows = pd.util.hash_pandas_object(df.astype(str), index=True)
    digest.update(np.ascontiguousarray(rows.to_numpy(dtype=np.uint64)).tobytes())
    return digest.hexdigest()


#: rows converted to Arrow at a time when a frame is written (bounds the extra memory)
_WRITE_SLICE_ROWS = 100_000


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    """Write df to a Parquet file, converting it to Arrow a slice of rows at a time.

    ``df.to_parquet`` converts the whole frame first: one more copy of the table in memory.
    A frame with a plain 0..n-1 index (every loaded table) is written slice by slice, as row
    groups, and reads back identical; any other index is written by pandas, whole.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    plain = isinstance(df.index, pd.RangeIndex) and df.index.start == 0 and df.index.step == 1
    if not plain or len(df) <= _WRITE_SLICE_ROWS:
        df.to_parquet(path)
        return
    # Types from the whole frame: a text column empty in the first slice is still text.
    schema = pa.Schema.from_pandas(df, preserve_index=False)
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, len(df), _WRITE_SLICE_ROWS):
            piece = df.iloc[start : start + _WRITE_SLICE_ROWS]
            writer.write_table(pa.Table.from_pandas(piece, schema=schema, preserve_index=False))


def _atomic_write_parquet(df: pd.DataFrame, path: Path) -> None:
    """Write df to path so that readers see either no file or the whole file."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        _write_parquet(df, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _wal_mode(conn: sqlite3.Connection) -> str:
    """Put the database in WAL mode (once per file) and return the journal mode it has.

    Asking for WAL when the file already uses it still takes a lock that SQLite's busy
    handler does not wait for, so a connection opened while another process commits could
    fail with "database is locked": ask only when the mode differs, and retry briefly.
    """
    for attempt in range(50):
        try:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() == "wal":
                return str(mode)
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 49:
                raise
            time.sleep(0.02 * (attempt + 1))
    raise AssertionError("unreachable")


# --- the workspace ------------------------------------------------------------------------


class Workspace:
    """Datasets, runs, labels and settings in one directory (see the module docstring).

    ``home`` defaults to ``$AD_STUDIO_HOME`` or ``./.ad_studio``. One instance may be shared
    by many threads (each gets its own SQLite connection); other processes may open the same
    directory at the same time.
    """

    def __init__(self, home: str | os.PathLike[str] | None = None) -> None:
        if home is None:
            home = os.environ.get("AD_STUDIO_HOME") or ".ad_studio"
        self.home = Path(home).expanduser().resolve()
        self.db_path = self.home / DB_NAME
        self.datasets_dir = self.home / "datasets"
        self.runs_dir = self.home / "runs"
        for d in (self.home, self.datasets_dir, self.runs_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._migrate()

    def __repr__(self) -> str:
        return f"Workspace({str(self.home)!r})"

    # connections ----------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            # isolation_level=None: no implicit transactions; every write opens its own.
            conn = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            mode = _wal_mode(conn)
        except sqlite3.DatabaseError as exc:
            raise WorkspaceError(
                f"cannot open the workspace database {self.db_path}: {exc}. If it is not an "
                "ad-studio workspace, point AD_STUDIO_HOME at another directory."
            ) from exc
        if str(mode).lower() != "wal":
            conn.close()
            raise WorkspaceError(
                f"the workspace database {self.db_path} cannot use WAL mode (got {mode!r}); "
                "put the workspace on a local disk"
            )
        conn.execute("PRAGMA synchronous = FULL")  # a commit survives power loss too
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def _conn(self) -> sqlite3.Connection:
        """Return this thread's connection (a fresh one after a fork)."""
        local = self._local
        if getattr(local, "conn", None) is None or local.pid != os.getpid():
            local.conn = self._connect()
            local.pid = os.getpid()
        return local.conn

    def close(self) -> None:
        """Close the calling thread's connection (others close when their thread ends)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """Run the block as one write transaction, committed on exit, rolled back on error.

        BEGIN IMMEDIATE takes the write lock up front, so concurrent writers wait for each
        other (busy_timeout) instead of failing on a read-to-write upgrade.
        """
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            # Also when COMMIT itself fails (disk full): an open transaction would otherwise
            # make every later BEGIN on this thread's connection fail.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _migrate(self) -> None:
        conn = self._conn()
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise WorkspaceError(
                f"the workspace {self.home} was written by a newer ad-studio (schema "
                f"{version}, this one knows {SCHEMA_VERSION}); upgrade ad-studio or use "
                "another AD_STUDIO_HOME"
            )
        if version == SCHEMA_VERSION:
            return
        with self._write() as conn:
            # Re-read under the write lock: another process may have migrated meanwhile.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for target in range(version + 1, SCHEMA_VERSION + 1):
                _MIGRATIONS[target](conn, self.datasets_dir)
                conn.execute(f"PRAGMA user_version = {target}")

    @property
    def schema_version(self) -> int:
        """Return the schema version stored in the database file."""
        return int(self._conn().execute("PRAGMA user_version").fetchone()[0])

    # datasets -------------------------------------------------------------------------

    def dataset_path(self, dataset_id: str) -> Path:
        """Return the Parquet file that holds a dataset's frame."""
        return self.datasets_dir / f"{dataset_id}.parquet"

    def add_dataset(
        self,
        name: str,
        df: pd.DataFrame,
        schema_dict: dict | None,
        source_bytes_hash: str | None = None,
    ) -> str:
        """Store a frame and its column roles; return its id.

        The id is derived from the frame's content hash, so adding the same content again
        (under any name) returns the existing id and keeps the stored name and schema; labels
        stay attached. ``source_bytes_hash`` (a hash of the uploaded file) lets a dataset
        upload be traced to its file; it is stored, not used for deduplication (the same
        bytes read with other options give another frame).
        """
        bad = [c for c in df.columns if not isinstance(c, str)]
        if bad:
            raise ValueError(
                f"column names must be text to store a dataset; found {bad[:5]!r}. "
                "Rename the columns (e.g. df.columns = df.columns.astype(str))."
            )
        content_hash = frame_content_hash(df)
        row = (
            self._conn()
            .execute("SELECT id FROM datasets WHERE content_hash = ?", (content_hash,))
            .fetchone()
        )
        if row:
            return row[0]
        dataset_id = content_hash[:16]
        # The file goes first: a crash between the two steps leaves an unused file that the
        # next add of the same content overwrites, never a record without its frame.
        _atomic_write_parquet(df, self.dataset_path(dataset_id))
        with self._write() as conn:
            row = conn.execute(
                "SELECT id FROM datasets WHERE content_hash = ?", (content_hash,)
            ).fetchone()
            if row:  # another thread or process added it meanwhile
                return row[0]
            conn.execute(
                "INSERT INTO datasets (id, content_hash, source_hash, name, n_rows, n_cols, "
                "schema_json, created, key_scheme) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    dataset_id,
                    content_hash,
                    source_bytes_hash,
                    str(name),
                    int(df.shape[0]),
                    int(df.shape[1]),
                    _dumps(schema_dict or {}),
                    _now(),
                    frame_key_scheme(df, schema_dict),
                ),
            )
        return dataset_id

    def _dataset_record(self, row: tuple) -> DatasetRecord:
        dataset_id, name, content_hash, n_rows, n_cols, schema_json, created, scheme = row
        return DatasetRecord(
            id=dataset_id,
            name=name,
            content_hash=content_hash,
            n_rows=n_rows,
            n_cols=n_cols,
            schema=_loads(schema_json),
            created=created,
            path=self.dataset_path(dataset_id),
            key_scheme=scheme,
        )

    _DATASET_COLUMNS = "id, name, content_hash, n_rows, n_cols, schema_json, created, key_scheme"

    def get_dataset(self, dataset_id: str) -> DatasetRecord:
        """Return a dataset's record; KeyError if there is none with that id."""
        row = (
            self._conn()
            .execute(f"SELECT {self._DATASET_COLUMNS} FROM datasets WHERE id = ?", (dataset_id,))
            .fetchone()
        )
        if row is None:
            raise KeyError(f"no dataset with id {dataset_id!r} in the workspace {self.home}")
        return self._dataset_record(row)

    def list_datasets(self) -> list[DatasetRecord]:
        """Return all datasets, newest first."""
        rows = (
            self._conn()
            .execute(f"SELECT {self._DATASET_COLUMNS} FROM datasets ORDER BY created DESC, id")
            .fetchall()
        )
        return [self._dataset_record(r) for r in rows]

    def load_dataset_frame(self, dataset_id: str) -> pd.DataFrame:
        """Return a dataset's frame as it was added."""
        record = self.get_dataset(dataset_id)
        if not record.path.exists():
            raise WorkspaceError(
                f"the file of dataset {record.name!r} ({record.path}) is missing; add the "
                "data again"
            )
        # Arrow's buffers are freed column by column as pandas takes them over, so reading
        # holds about one copy of the table, not two.
        return pd.read_parquet(
            record.path, to_pandas_kwargs={"self_destruct": True, "split_blocks": True}
        )

    def update_dataset_schema(self, dataset_id: str, schema_dict: dict) -> None:
        """Replace a dataset's stored column roles (e.g. after the user overrides one).

        The key scheme follows the roles: with another id column, labels given under the old
        one are hidden (not deleted) until it is set back.
        """
        scheme = _stored_frame_key_scheme(self.dataset_path(dataset_id), schema_dict)
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE datasets SET schema_json = ?, key_scheme = ? WHERE id = ?",
                (_dumps(schema_dict), scheme, dataset_id),
            )
            if cur.rowcount == 0:
                raise KeyError(f"no dataset with id {dataset_id!r} in the workspace {self.home}")

    # runs -----------------------------------------------------------------------------

    def create_run(
        self,
        dataset_id: str,
        detector: str,
        params: dict | None = None,
        preprocessing: dict | None = None,
    ) -> int:
        """Record a new run (status "running") and return its id."""
        with self._write() as conn:
            if (
                conn.execute("SELECT 1 FROM datasets WHERE id = ?", (dataset_id,)).fetchone()
                is None
            ):
                raise KeyError(f"no dataset with id {dataset_id!r} in the workspace {self.home}")
            cur = conn.execute(
                "INSERT INTO runs (dataset_id, detector, params_json, preprocessing_json, "
                "status, created) VALUES (?, ?, ?, ?, 'running', ?)",
                (
                    dataset_id,
                    str(detector),
                    _dumps(params or {}),
                    None if preprocessing is None else _dumps(preprocessing),
                    _now(),
                ),
            )
            return int(cur.lastrowid)

    def _run_path(self, run_id: int) -> Path:
        return self.runs_dir / str(int(run_id))

    def run_dir(self, run_id: int) -> Path:
        """Return the directory for a run's files (model, scores), creating it if needed."""
        self.get_run(run_id)  # a KeyError here beats an orphan directory
        path = self._run_path(run_id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def finish_run(
        self,
        run_id: int,
        metrics: dict | None,
        status: str = "done",
        fit_seconds: float | None = None,
        model_path: str | os.PathLike[str] | None = None,
    ) -> None:
        """Record a run's outcome: metrics, final status, fit time and model location."""
        if status not in RUN_STATUSES:
            raise ValueError(f"status must be one of {RUN_STATUSES}, got {status!r}")
        stored_model = None
        if model_path is not None:
            p = Path(model_path).resolve()
            stored_model = str(p.relative_to(self.home)) if p.is_relative_to(self.home) else str(p)
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE runs SET metrics_json = ?, status = ?, fit_seconds = ?, "
                "model_path = COALESCE(?, model_path), finished = ? WHERE id = ?",
                (
                    None if metrics is None else _dumps(metrics),
                    status,
                    None if fit_seconds is None else float(fit_seconds),
                    stored_model,
                    _now(),
                    int(run_id),
                ),
            )
            if cur.rowcount == 0:
                raise KeyError(f"no run with id {run_id!r} in the workspace {self.home}")

    _RUN_COLUMNS = (
        "id, dataset_id, detector, params_json, preprocessing_json, metrics_json, status, "
        "fit_seconds, model_path, created, finished"
    )

    def _run_record(self, row: tuple) -> RunRecord:
        run_id, dataset_id, detector, params, prep, metrics, status, secs, model, created, fin = row
        return RunRecord(
            id=run_id,
            dataset_id=dataset_id,
            detector=detector,
            params=_loads(params),
            preprocessing=_loads(prep),
            metrics=_loads(metrics),
            status=status,
            fit_seconds=secs,
            model_path=None if model is None else self.home / model,
            created=created,
            finished=fin,
        )

    def get_run(self, run_id: int) -> RunRecord:
        """Return a run's record; KeyError if there is none with that id."""
        row = (
            self._conn()
            .execute(f"SELECT {self._RUN_COLUMNS} FROM runs WHERE id = ?", (int(run_id),))
            .fetchone()
        )
        if row is None:
            raise KeyError(f"no run with id {run_id!r} in the workspace {self.home}")
        return self._run_record(row)

    def list_runs(self, dataset_id: str | None = None) -> list[RunRecord]:
        """Return the runs of one dataset (or all runs), newest first."""
        sql = f"SELECT {self._RUN_COLUMNS} FROM runs"
        args: tuple = ()
        if dataset_id is not None:
            sql += " WHERE dataset_id = ?"
            args = (dataset_id,)
        rows = self._conn().execute(sql + " ORDER BY id DESC", args).fetchall()
        return [self._run_record(r) for r in rows]

    def delete_run(self, run_id: int) -> bool:
        """Delete a run's record and its files; return False if there was no such run."""
        with self._write() as conn:
            deleted = conn.execute("DELETE FROM runs WHERE id = ?", (int(run_id),)).rowcount
        path = self._run_path(run_id)
        if path.exists():
            shutil.rmtree(path)
        return bool(deleted)

    def save_scores(self, run_id: int, row_keys: Iterable[Any], scores: Any) -> Path:
        """Store one score per row key for a run (Parquet in its run directory)."""
        keys = _row_key_array(row_keys)
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        if s.size != keys.size:
            raise ValueError(f"got {keys.size} row keys but {s.size} scores; they must pair up")
        path = self.run_dir(run_id) / SCORES_FILE
        _atomic_write_parquet(pd.DataFrame({"row_key": keys, "score": s}), path)
        return path

    def load_scores(self, run_id: int) -> pd.DataFrame:
        """Return a run's scores as a DataFrame with columns row_key (str) and score."""
        path = self._run_path(run_id) / SCORES_FILE
        if not path.exists():
            self.get_run(run_id)  # unknown run -> KeyError
            raise FileNotFoundError(f"run {run_id} has no saved scores ({path})")
        return pd.read_parquet(path)

    # labels ---------------------------------------------------------------------------

    def key_scheme(self, dataset_id: str) -> str:
        """Return how the dataset's rows are identified now: "id:<column>" or "row"."""
        return self._key_scheme(self._conn(), dataset_id)

    def _key_scheme(self, conn: sqlite3.Connection, dataset_id: str) -> str:
        row = conn.execute("SELECT key_scheme FROM datasets WHERE id = ?", (dataset_id,)).fetchone()
        if row is None:
            raise KeyError(f"no dataset with id {dataset_id!r} in the workspace {self.home}")
        return str(row[0])

    def _scheme(self, conn: sqlite3.Connection, dataset_id: str, key_scheme: str | None) -> str:
        """Return the dataset's current scheme, refusing keys the caller took from another."""
        current = self._key_scheme(conn, dataset_id)
        if key_scheme is not None and key_scheme != current:
            raise KeySchemeChanged(
                f"The rows were identified by {describe_key_scheme(key_scheme)} when this was "
                f"shown, and are now identified by {describe_key_scheme(current)} (someone "
                "changed the id column). Nothing was saved: look at the rows again."
            )
        return current

    def row_keys(self, dataset_id: str) -> np.ndarray:
        """Return the key of every row under the dataset's current roles (str, row order)."""
        from ad_core.data.schema import Schema, row_keys

        record = self.get_dataset(dataset_id)
        frame = self.load_dataset_frame(dataset_id)
        return _row_key_array(row_keys(frame, Schema.from_dict(record.schema)))

    def set_labels(
        self,
        dataset_id: str,
        row_keys: Iterable[Any],
        label: int,
        annotator: str = "",
        *,
        key_scheme: str | None = None,
        seen: Mapping[str, int] | None = None,
    ) -> int | None:
        """Give every row key the same label in one committed transaction; return the batch id.

        label: 1 anomaly, 0 normal, -1 clear. All rows are written or none (a bad key part way
        through rolls back the whole batch). Returns None when row_keys is empty. The labels
        are recorded under the dataset's current key scheme.

        ``key_scheme``: the scheme the caller's keys come from (what its page showed); when the
        dataset's scheme is another now, :class:`KeySchemeChanged` is raised and nothing is
        written. ``seen``: the label the caller showed for each row (-1 none); when someone
        other than ``annotator`` has since given one of them another label, different from
        ``label``, :class:`LabelConflict` is raised and nothing is written.
        """
        value = _check_label(label)
        who = "" if annotator is None else str(annotator)
        entries = ((k, value, who) for k in row_keys)
        return self._write_labels(dataset_id, entries, who, key_scheme=key_scheme, seen=seen)

    def _write_labels(
        self,
        dataset_id: str,
        entries: Iterable[tuple[Any, int, str]],
        actor: str,
        *,
        key_scheme: str | None = None,
        seen: Mapping[str, int] | None = None,
        check: Callable[[sqlite3.Connection, str], None] | None = None,
    ) -> int | None:
        """Write (row key, label, annotator) entries as one batch by ``actor``; see set_labels."""
        now = _now()
        with self._write() as conn:
            scheme = self._scheme(conn, dataset_id, key_scheme)
            if check is not None:
                check(conn, scheme)
            batch_id = conn.execute(
                "INSERT INTO label_batches (dataset_id, annotator, kind, created_at, key_scheme) "
                "VALUES (?, ?, 'set', ?, ?)",
                (dataset_id, actor, now, scheme),
            ).lastrowid
            rows = [
                (dataset_id, scheme, _row_key(k, i), value, who, batch_id, now)
                for i, (k, value, who) in enumerate(entries)
            ]
            if seen:
                self._refuse_conflicts(conn, dataset_id, scheme, rows, seen, actor)
            n = conn.executemany(
                "INSERT INTO labels (dataset_id, key_scheme, row_key, label, annotator, "
                "batch_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            ).rowcount
            if n == 0:
                conn.execute("DELETE FROM label_batches WHERE id = ?", (batch_id,))
                return None
        return int(batch_id)

    def _refuse_conflicts(
        self,
        conn: sqlite3.Connection,
        dataset_id: str,
        scheme: str,
        rows: list[tuple],
        seen: Mapping[str, int],
        actor: str,
    ) -> None:
        new = {row[2]: row[3] for row in rows}
        shown = {str(k): int(v) for k, v in seen.items() if str(k) in new}
        current = self._current_labels(conn, dataset_id, scheme, list(shown))
        changes = tuple(
            c
            for key, c in current.items()
            if c.label != shown[key] and c.label != new[key] and c.changed_by != actor
        )
        if changes:
            raise LabelConflict(changes)

    def labels(self, dataset_id: str, key_scheme: str | None = None) -> dict[str, int]:
        """Return the current label of every labelled row: {row_key: 0 or 1}.

        Only labels given under ``key_scheme`` (default: the dataset's current scheme) count,
        so every key returned identifies its row under the current roles.
        """
        conn = self._conn()
        scheme = self._key_scheme(conn, dataset_id) if key_scheme is None else key_scheme
        rows = conn.execute(
            "SELECT l.row_key, l.label FROM labels AS l "
            "JOIN (SELECT MAX(id) AS id FROM labels WHERE dataset_id = ? AND key_scheme = ? "
            "GROUP BY row_key) AS latest ON l.id = latest.id WHERE l.label != -1",
            (dataset_id, scheme),
        )
        return dict(rows.fetchall())

    def label_array(self, dataset_id: str, row_keys: Iterable[Any]) -> np.ndarray:
        """Return the current labels of the given rows as an int array, -1 where unlabelled.

        ``row_keys`` are the keys under the dataset's current roles (``ad_core.data.row_keys``).
        """
        keys = pd.Series(_row_key_array(row_keys), dtype=object)
        current = self.labels(dataset_id)
        return keys.map(current).fillna(-1).to_numpy(dtype=np.int64)

    def current_labels(
        self, dataset_id: str, row_keys: Iterable[Any] | None = None
    ) -> dict[str, CurrentLabel]:
        """Return the latest label entry of the given rows (all rows with one if None).

        Cleared rows are included (label -1): they were labelled once, by someone.
        """
        conn = self._conn()
        scheme = self._key_scheme(conn, dataset_id)
        keys = None if row_keys is None else [_row_key(k, i) for i, k in enumerate(row_keys)]
        return self._current_labels(conn, dataset_id, scheme, keys)

    def _current_labels(
        self, conn: sqlite3.Connection, dataset_id: str, scheme: str, keys: list[str] | None
    ) -> dict[str, CurrentLabel]:
        select = (
            "SELECT l.row_key, l.label, l.annotator, COALESCE(r.created_at, l.created_at), "
            "b.annotator, l.created_at, b.kind, l.id FROM labels AS l "
            "JOIN label_batches AS b ON b.id = l.batch_id "
            "LEFT JOIN labels AS r ON r.id = l.restores "
            "WHERE l.id IN (SELECT MAX(id) FROM labels WHERE dataset_id = ? AND key_scheme = ? "
        )
        found: list[tuple] = []
        if keys is None:
            found = conn.execute(select + "GROUP BY row_key)", (dataset_id, scheme)).fetchall()
        else:
            for start in range(0, len(keys), _IN_CHUNK):
                chunk = keys[start : start + _IN_CHUNK]
                marks = ",".join("?" * len(chunk))
                found += conn.execute(
                    select + f"AND row_key IN ({marks}) GROUP BY row_key)",
                    (dataset_id, scheme, *chunk),
                ).fetchall()
        return {
            row[0]: CurrentLabel(
                row_key=row[0],
                label=int(row[1]),
                annotator=row[2],
                given_at=row[3],
                changed_by=row[4],
                changed_at=row[5],
                kind=row[6],
                entry_id=int(row[7]),
            )
            for row in found
        }

    def hidden_labels(self, dataset_id: str) -> dict[str, int]:
        """Return {key scheme: labelled rows} for labels given under a scheme not in force now.

        These labels are kept but neither shown nor used: their keys do not identify rows
        under the current roles. They come back when the roles identify rows that way again.
        """
        conn = self._conn()
        scheme = self._key_scheme(conn, dataset_id)
        rows = conn.execute(
            "SELECT l.key_scheme, COUNT(*) FROM labels AS l "
            "JOIN (SELECT MAX(id) AS id FROM labels WHERE dataset_id = ? AND key_scheme != ? "
            "GROUP BY key_scheme, row_key) AS latest ON l.id = latest.id WHERE l.label != -1 "
            "GROUP BY l.key_scheme ORDER BY l.key_scheme",
            (dataset_id, scheme),
        )
        return {str(s): int(n) for s, n in rows.fetchall()}

    def label_disagreements(self, dataset_id: str) -> pd.DataFrame:
        """Return the rows that annotators labelled differently, one per row, oldest first.

        An annotator's say on a row is the latest label they gave it that nobody withdrew
        (undone labels and cleared rows do not count). Columns: row_key, label (the current
        one, -1 if cleared), anomaly_by and normal_by (tuples of annotator names).
        """
        conn = self._conn()
        scheme = self._key_scheme(conn, dataset_id)
        given = pd.DataFrame(
            conn.execute(
                "SELECT l.id, l.row_key, l.annotator, l.label FROM labels AS l "
                "JOIN label_batches AS b ON b.id = l.batch_id "
                "WHERE l.dataset_id = ? AND l.key_scheme = ? AND b.kind = 'set' "
                "AND NOT EXISTS (SELECT 1 FROM label_batches AS u WHERE u.undoes = b.id) "
                "ORDER BY l.id",
                (dataset_id, scheme),
            ).fetchall(),
            columns=["id", "row_key", "annotator", "label"],
        )
        columns = ["row_key", "label", "anomaly_by", "normal_by"]
        latest = given.drop_duplicates(["row_key", "annotator"], keep="last")
        latest = latest[latest["label"] != -1]
        split = latest.groupby("row_key")["label"].nunique()
        disputed = latest[latest["row_key"].isin(split.index[split > 1])]
        if disputed.empty:
            return pd.DataFrame(columns=columns)
        current = self.labels(dataset_id, key_scheme=scheme)
        out = []
        for key, group in disputed.groupby("row_key", sort=False):
            out.append(
                (
                    key,
                    current.get(key, -1),
                    tuple(group.loc[group["label"] == 1, "annotator"]),
                    tuple(group.loc[group["label"] == 0, "annotator"]),
                    group["id"].min(),
                )
            )
        out.sort(key=lambda row: row[-1])
        return pd.DataFrame([row[:-1] for row in out], columns=columns)

    def count_labels_given(self, dataset_id: str, annotator: str) -> int:
        """Return how many rows have a current label that ``annotator`` gave.

        The rows of :meth:`labels` whose label is theirs, under the dataset's current key
        scheme: a label of theirs that was undone, cleared or replaced by someone else's does
        not count (the history keeps it); one of theirs that someone's undo gave back does.
        """
        conn = self._conn()
        return int(
            conn.execute(
                "SELECT COUNT(*) FROM labels AS l "
                "JOIN (SELECT MAX(id) AS id FROM labels WHERE dataset_id = ? AND key_scheme = ? "
                "GROUP BY row_key) AS latest ON l.id = latest.id "
                "WHERE l.label != -1 AND l.annotator = ?",
                (dataset_id, self._key_scheme(conn, dataset_id), str(annotator)),
            ).fetchone()[0]
        )

    def label_history(
        self, dataset_id: str, row_key: Any = None, *, key_scheme: str | None = None
    ) -> pd.DataFrame:
        """Return every label entry of a dataset (or one row), oldest first.

        Entries under ``key_scheme`` (default: the dataset's current scheme). Columns: id,
        row_key, label, annotator (whose label), batch_id, kind ("set" or "undo"), by (who
        acted), undoes (the batch an undo reverted), restores (the entry an undo entry
        restored), key_scheme, created_at.
        """
        conn = self._conn()
        scheme = self._key_scheme(conn, dataset_id) if key_scheme is None else key_scheme
        sql = (
            "SELECT l.id, l.row_key, l.label, l.annotator, l.batch_id, b.kind, b.annotator, "
            "b.undoes, l.restores, l.key_scheme, l.created_at FROM labels AS l "
            "JOIN label_batches AS b ON b.id = l.batch_id "
            "WHERE l.dataset_id = ? AND l.key_scheme = ?"
        )
        args: tuple = (dataset_id, scheme)
        if row_key is not None:
            sql += " AND l.row_key = ?"
            args += (_row_key(row_key, 0),)
        rows = conn.execute(sql + " ORDER BY l.id", args).fetchall()
        columns = [
            "id",
            "row_key",
            "label",
            "annotator",
            "batch_id",
            "kind",
            "by",
            "undoes",
            "restores",
            "key_scheme",
            "created_at",
        ]
        frame = pd.DataFrame(rows, columns=columns)
        frame["undoes"] = frame["undoes"].astype("Int64")
        frame["restores"] = frame["restores"].astype("Int64")
        return frame

    def undo_last_label(self, dataset_id: str, annotator: str | None = None) -> UndoneBatch | None:
        """Revert the latest labelling batch not yet undone (by ``annotator``, if given).

        Only batches given under the dataset's current key scheme are considered. Each row of
        the batch gets back the label it had just before the batch, counting only labels that
        nobody withdrew (a label whose batch was undone stays withdrawn), with the annotator who
        gave it; -1 if there was none. These are new history entries. Rows that someone
        relabelled since are left alone and reported as skipped. Repeated calls walk further
        back. Returns None when there is nothing left.
        """
        # "Effective" entries: those of 'set' batches that nobody undid. The label a row has
        # is always its latest effective entry; undo keeps that true by appending it.
        effective = (
            "SELECT {a}.id FROM labels AS {a} JOIN label_batches AS {a}b ON {a}b.id = {a}.batch_id "
            "WHERE {a}.dataset_id = :ds AND {a}.key_scheme = :scheme AND {a}.row_key = k.row_key "
            "AND {a}b.kind = 'set' AND NOT EXISTS "
            "(SELECT 1 FROM label_batches AS {a}u WHERE {a}u.undoes = {a}b.id)"
        )
        with self._write() as conn:
            scheme = self._key_scheme(conn, dataset_id)
            found = conn.execute(
                "SELECT b.id, b.annotator FROM label_batches AS b "
                "WHERE b.dataset_id = ? AND b.key_scheme = ? AND b.kind = 'set' "
                "AND (? IS NULL OR b.annotator = ?) "
                "AND NOT EXISTS (SELECT 1 FROM label_batches AS u WHERE u.undoes = b.id) "
                "ORDER BY b.id DESC LIMIT 1",
                (dataset_id, scheme, annotator, annotator),
            ).fetchone()
            if found is None:
                return None
            batch_id, batch_annotator = found
            rows = conn.execute(
                "SELECT k.row_key, k.label, k.last_id, k.latest_id, p.id, p.label, p.annotator "
                "FROM (SELECT k.row_key, k.label, k.first_id, k.last_id, "
                f"  ({effective.format(a='c')} ORDER BY c.id DESC LIMIT 1) AS latest_id, "
                f"  ({effective.format(a='q')} AND q.id < k.first_id ORDER BY q.id DESC LIMIT 1)"
                "   AS previous_id "
                "  FROM (SELECT row_key, label, MIN(id) AS first_id, MAX(id) AS last_id "
                "        FROM labels WHERE batch_id = :batch GROUP BY row_key) AS k) AS k "
                "LEFT JOIN labels AS p ON p.id = k.previous_id "
                "ORDER BY k.first_id",
                {"ds": dataset_id, "scheme": scheme, "batch": batch_id},
            ).fetchall()
            who = batch_annotator if annotator is None else str(annotator)
            # A row is restored only if this batch still holds its latest effective entry: a
            # label written since, even with the same value by someone else, is left alone.
            back = [row for row in rows if row[3] == row[2]]
            skipped = tuple(row[0] for row in rows if row[3] != row[2])
            now = _now()
            undo_id = conn.execute(
                "INSERT INTO label_batches (dataset_id, annotator, kind, undoes, created_at, "
                "key_scheme) VALUES (?, ?, 'undo', ?, ?, ?)",
                (dataset_id, who, batch_id, now, scheme),
            ).lastrowid
            conn.executemany(
                "INSERT INTO labels (dataset_id, key_scheme, row_key, label, annotator, "
                "batch_id, created_at, restores) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (
                        dataset_id,
                        scheme,
                        key,
                        -1 if prev_id is None else prev_label,
                        who if prev_id is None else prev_annotator,
                        undo_id,
                        now,
                        prev_id,
                    )
                    for key, _, _, _, prev_id, prev_label, prev_annotator in back
                ),
            )
        return UndoneBatch(
            batch_id=int(batch_id),
            undo_batch_id=int(undo_id),
            annotator=batch_annotator,
            label=int(rows[0][1]) if rows else 0,
            restored={row[0]: (-1 if row[4] is None else int(row[5])) for row in back},
            skipped=skipped,
            given={row[0]: int(row[1]) for row in rows},
            restored_annotators={row[0]: ("" if row[4] is None else row[6]) for row in back},
        )

    # label files ------------------------------------------------------------------------

    def export_labels(self, dataset_id: str) -> pd.DataFrame:
        """Return the current labels with their history, one row per labelled row.

        Columns: row_key, label (1 anomaly, 0 normal), label_name, annotator, time (when it
        was given, UTC), key_scheme (how row_key identifies the row), history (every entry of
        the row, oldest first). :meth:`import_labels` reads this back.
        """
        conn = self._conn()
        scheme = self._key_scheme(conn, dataset_id)
        steps: dict[str, list[str]] = {}
        for key, *entry in conn.execute(
            "SELECT l.row_key, l.label, l.annotator, b.kind, b.annotator, l.created_at "
            "FROM labels AS l JOIN label_batches AS b ON b.id = l.batch_id "
            "WHERE l.dataset_id = ? AND l.key_scheme = ? ORDER BY l.id",
            (dataset_id, scheme),
        ):
            steps.setdefault(key, []).append(_history_step(*entry))
        current = sorted(
            self._current_labels(conn, dataset_id, scheme, None).values(),
            key=lambda c: c.entry_id,
        )
        rows = [
            (
                c.row_key,
                c.label,
                LABEL_NAMES[c.label],
                c.annotator,
                _when(c.given_at),
                scheme,
                " | ".join(steps[c.row_key]),
            )
            for c in current
            if c.label != -1
        ]
        columns = ["row_key", "label", "label_name", "annotator", "time", "key_scheme", "history"]
        return pd.DataFrame(rows, columns=columns)

    def labels_csv(self, dataset_id: str) -> bytes:
        """Return :meth:`export_labels` as CSV text (UTF-8)."""
        return self.export_labels(dataset_id).to_csv(index=False).encode("utf-8")

    def import_labels(
        self,
        dataset_id: str,
        data: bytes | pd.DataFrame,
        annotator: str,
        *,
        dry_run: bool = False,
        row_keys: Iterable[Any] | None = None,
        key_scheme: str | None = None,
    ) -> LabelImport:
        """Import a labels file (CSV bytes, or a table from :func:`read_label_table`): all or none.

        Every row key must identify a row of the dataset under its current roles, and a file
        that names its key scheme (an export does) must have the current one; otherwise
        :class:`LabelImportError` says how many keys and which, and nothing is written. The
        labels keep the file's annotator where it names one (else ``annotator``); the import
        is one batch by ``annotator``, so one undo reverts it. Rows that already have the same
        label from the same annotator are not written again. ``dry_run``: check and count only.
        ``row_keys`` and ``key_scheme``: the dataset's keys as the caller holds them and their
        scheme (saves reading the dataset; refused if the scheme is no longer current).
        """
        table = read_label_table(data) if isinstance(data, bytes | bytearray) else data
        who = str(annotator or "").strip()
        if not who:
            raise LabelImportError("Give your name first: an import is recorded under it.")
        scheme = self._scheme(self._conn(), dataset_id, key_scheme)
        named = set(table["key_scheme"].dropna()) - {""} if "key_scheme" in table else set()
        if named - {scheme}:
            other = sorted(named - {scheme})[0]
            raise LabelImportError(
                f"The labels in the file were given while rows were identified by "
                f"{describe_key_scheme(other)}, but the rows of this dataset are now identified "
                f"by {describe_key_scheme(scheme)}. Nothing was imported. "
                + (
                    f"Give '{other[3:]}' the role 'id' on the Data page, then import again."
                    if other.startswith("id:")
                    else "Set the id column to 'ignore' on the Data page, then import again."
                )
            )
        known = set(_row_key_array(self.row_keys(dataset_id) if row_keys is None else row_keys))
        unknown = [k for k in table["row_key"] if k not in known]
        if unknown:
            listed = ", ".join(unknown[:10]) + (
                f" and {len(unknown) - 10:,} more" if len(unknown) > 10 else ""
            )
            raise LabelImportError(
                f"{len(unknown):,} of the {len(table):,} row keys in the file match no row of "
                f"this dataset: {listed}. Nothing was imported. Check that the file belongs to "
                f"this dataset; its rows are identified by {describe_key_scheme(scheme)}."
            )
        names = table["annotator"] if "annotator" in table else pd.Series("", index=table.index)
        entries = [
            (key, int(value), str(name).strip() or who)
            for key, value, name in zip(table["row_key"], table["label"], names, strict=True)
        ]
        current = self.current_labels(dataset_id, [e[0] for e in entries])

        def unchanged(entry: tuple[str, int, str]) -> bool:
            c = current.get(entry[0])
            return c is not None and c.label == entry[1] and c.annotator == entry[2]

        new = [e for e in entries if not unchanged(e)]
        replaced = sum(1 for e in new if e[0] in current and current[e[0]].label not in (-1, e[1]))
        batch_id = None
        if new and not dry_run:
            batch_id = self._write_labels(dataset_id, new, who, key_scheme=scheme)
        return LabelImport(
            n_rows=len(entries),
            n_anomaly=sum(1 for e in entries if e[1] == 1),
            n_normal=sum(1 for e in entries if e[1] == 0),
            n_unchanged=len(entries) - len(new),
            n_replaced=replaced,
            annotators=tuple(dict.fromkeys(e[2] for e in entries)),
            key_scheme=scheme,
            batch_id=batch_id,
        )

    # settings -------------------------------------------------------------------------

    def get_setting(self, key: str, default: Any = None) -> Any:
        """Return a stored setting (JSON value), or default when it was never set."""
        row = (
            self._conn()
            .execute("SELECT value_json FROM settings WHERE key = ?", (str(key),))
            .fetchone()
        )
        return default if row is None else json.loads(row[0])

    def set_setting(self, key: str, value: Any) -> None:
        """Store a setting (any JSON-compatible value), replacing the previous value."""
        text = _dumps(value)
        with self._write() as conn:
            conn.execute(
                "INSERT INTO settings (key, value_json) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value_json = excluded.value_json",
                (str(key), text),
            )
