"""The one place that reads tables from files: CSV/TSV, Parquet, Excel, NumPy and MATLAB."""

from __future__ import annotations

import gzip
import io
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from ad_core.data.errors import DataError
from ad_core.data.text import read_text_table

Source = str | Path | bytes | bytearray | IO[bytes]

TEXT_EXTENSIONS = {".csv": None, ".tsv": "\t", ".tab": "\t", ".txt": None, ".dat": None}
_FORMATS_HINT = (
    "CSV/TSV text, Parquet (.parquet), Excel (.xlsx), NumPy (.npz/.npy) or MATLAB (.mat)"
)
# A column whose non-missing values are at least this share numbers is numeric; the few
# strings in it ("n/a", "?", "error") become missing values, with a note.
MOSTLY_NUMERIC = 0.9
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_OLE2_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def load_table(source: Source, *, name: str | None = None) -> pd.DataFrame:
    """Return the table in a file as a DataFrame, or raise a DataError a person can act on.

    ``source`` is a path, the file's bytes, or a binary file-like object with ``.name``
    (Streamlit's ``UploadedFile``). The format comes from the file extension, falling back
    to the file's first bytes. Formats holding arrays (``.npz``, ``.npy``, ``.mat``) become
    columns ``x0 .. x{d-1}`` plus ``label`` when a ``y`` array is present.

    ``df.attrs["load_notes"]`` lists what was guessed or repaired (encoding, renamed duplicate
    headers, values turned into missing, rows left out); ``df.attrs["file_format"]`` names
    the format that was read.
    """
    data, name = _read_source(source, name)
    notes: list[str] = []
    data, name = _maybe_gunzip(data, name, notes)
    # Only small files are checked for blankness here: strip() copies the whole file.
    if not data or (len(data) < 1 << 20 and not data.strip()):
        raise DataError(f"'{name}' is empty: it contains no data. Choose a file with data in it.")
    file_format = _detect_format(data, name, notes)
    reader = _READERS[file_format]
    frame, reader_notes = reader(data, name)
    notes.extend(reader_notes)
    frame = _finish(frame, name, notes)
    frame.attrs["load_notes"] = notes
    frame.attrs["file_format"] = file_format
    return frame


# --- sources -------------------------------------------------------------------------------


def _read_source(source: Source, name: str | None) -> tuple[bytes, str]:
    """Return the bytes of the source and the name to use in messages."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), name or "uploaded file"
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise DataError(f"The file '{path}' does not exist. Check the path.") from exc
        except IsADirectoryError as exc:
            raise DataError(f"'{path}' is a folder, not a file. Choose a file.") from exc
        except OSError as exc:
            raise DataError(f"The file '{path}' could not be opened: {exc.strerror}.") from exc
        return data, name or path.name
    if hasattr(source, "read"):
        if hasattr(source, "seek"):
            source.seek(0)  # an UploadedFile read earlier in the same script run
        data = source.read()
        if isinstance(data, str):
            data = data.encode("utf-8")
        label = name or Path(str(getattr(source, "name", "") or "uploaded file")).name
        return bytes(data), label
    raise TypeError(
        f"load_table expects a path, bytes or a binary file object, not {type(source).__name__}"
    )


#: Largest decompressed size of a gzip upload (the upload limit itself is 1 GB).
MAX_DECOMPRESSED_BYTES = 4 << 30


def _maybe_gunzip(data: bytes, name: str, notes: list[str]) -> tuple[bytes, str]:
    """Return the decompressed bytes of a gzip file, and its name without '.gz'."""
    if not data.startswith(b"\x1f\x8b"):
        return data, name
    try:
        # Streamed with a ceiling: a few megabytes of gzip can expand to many gigabytes.
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as archive:
            data = archive.read(MAX_DECOMPRESSED_BYTES + 1)
    except (OSError, EOFError) as exc:
        raise DataError(
            f"'{name}' is a damaged gzip archive and could not be decompressed. "
            "Compress it again, or upload the uncompressed file."
        ) from exc
    if len(data) > MAX_DECOMPRESSED_BYTES:
        raise DataError(
            f"'{name}' expands to more than {MAX_DECOMPRESSED_BYTES >> 30} GB when "
            "decompressed, which is more than this tool loads at once. Upload a smaller "
            "sample of the data."
        )
    notes.append("The file was gzip-compressed; it was decompressed.")
    inner = name[:-3] if name.lower().endswith(".gz") else name
    return data, inner


# --- format detection ----------------------------------------------------------------------


def _magic_format(data: bytes) -> str | None:
    """Return the format that the file's first bytes identify, or None for plain text."""
    if data.startswith(b"PAR1"):
        return "parquet"
    if data.startswith(b"\x93NUMPY"):
        return "npy"
    if data.startswith(b"PK\x03\x04"):
        try:
            members = zipfile.ZipFile(io.BytesIO(data)).namelist()
        except zipfile.BadZipFile:
            return "zip"
        if "[Content_Types].xml" in members:
            return "excel"
        if members and all(m.endswith(".npy") for m in members):
            return "npz"
        return "zip"
    if data.startswith(b"MATLAB") or data[512:520] == _HDF5_SIGNATURE:
        return "mat"
    if data.startswith(_HDF5_SIGNATURE):
        return "hdf5"
    if data.startswith(_OLE2_SIGNATURE):
        return "xls"
    return None


def _detect_format(data: bytes, name: str, notes: list[str]) -> str:
    """Return the reader to use, from the extension first and the magic bytes second."""
    suffix = Path(name).suffix.lower()
    magic = _magic_format(data)
    by_extension = {
        ".parquet": "parquet",
        ".pq": "parquet",
        ".xlsx": "excel",
        ".xlsm": "excel",
        ".xls": "xls",
        ".npz": "npz",
        ".npy": "npy",
        ".mat": "mat",
    }
    if suffix in by_extension:
        wanted = by_extension[suffix]
        if wanted == "xls" and magic == "excel":
            return "excel"  # a modern workbook saved with the old extension
        return wanted
    if magic is not None:
        if suffix in TEXT_EXTENSIONS:
            notes.append(
                f"'{name}' is named like a text file but is a {_FORMAT_TITLES[magic]} file; "
                "it was read as such."
            )
        return magic
    # Unknown extensions are tried as text: the text reader refuses binary content clearly.
    return "tsv" if TEXT_EXTENSIONS.get(suffix) == "\t" else "csv"


_FORMAT_TITLES = {
    "parquet": "Parquet",
    "npy": "NumPy .npy",
    "npz": "NumPy .npz",
    "excel": "Excel workbook",
    "mat": "MATLAB .mat",
    "hdf5": "HDF5",
    "xls": "old Excel (.xls)",
    "zip": "zip archive",
}


# --- readers: each returns (frame, notes) ----------------------------------------------------


def _read_csv(data: bytes, name: str) -> tuple[pd.DataFrame, list[str]]:
    table = read_text_table(data, name)
    return table.frame, table.notes


def _read_tsv(data: bytes, name: str) -> tuple[pd.DataFrame, list[str]]:
    table = read_text_table(data, name, preferred_delimiter="\t")
    return table.frame, table.notes


def _read_parquet(data: bytes, name: str) -> tuple[pd.DataFrame, list[str]]:
    try:
        frame = pd.read_parquet(io.BytesIO(data), engine="pyarrow")
    except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
        raise DataError(
            f"'{name}' is not a readable Parquet file ({exc}). It may be damaged or saved in "
            "another format; save it again as Parquet or CSV."
        ) from exc
    if not isinstance(frame.index, pd.RangeIndex):
        # A saved pandas index holds real columns (often an id); keep them as columns.
        frame = frame.reset_index()
    return frame, []


def _read_excel(data: bytes, name: str) -> tuple[pd.DataFrame, list[str]]:
    notes = []
    try:
        book = pd.ExcelFile(io.BytesIO(data), engine="openpyxl")
        sheets = book.sheet_names
        # header=None keeps duplicate names as they are; the header row is split off below.
        raw = pd.read_excel(book, sheet_name=sheets[0], header=None)
    except Exception as exc:  # openpyxl raises many types for damaged or foreign files
        raise DataError(
            f"'{name}' could not be read as an Excel workbook ({exc}). Open it in Excel and "
            "save it again as .xlsx, or export the sheet as CSV."
        ) from exc
    if len(sheets) > 1:
        others = ", ".join(f"'{s}'" for s in sheets[1:])
        notes.append(f"Read the first sheet '{sheets[0]}'; the workbook also has {others}.")
    raw = raw.dropna(axis=1, how="all")
    empty = raw.isna().all(axis=1).to_numpy()
    if empty.all():
        raise DataError(f"The first sheet '{sheets[0]}' of '{name}' is empty.")
    # Empty rows after the table are formatting; empty rows inside it are worth a note.
    last = np.flatnonzero(~empty)[-1]
    interior = int(empty[: last + 1].sum())
    if interior:
        notes.append(f"{interior} completely empty row(s) inside the sheet were skipped.")
    raw = raw[~empty]
    header = ["" if pd.isna(v) else str(v) for v in raw.iloc[0]]
    frame = raw.iloc[1:].reset_index(drop=True)
    frame.columns = header
    return frame.infer_objects(), notes


def _read_xls(data: bytes, name: str) -> tuple[pd.DataFrame, list[str]]:
    raise DataError(
        f"'{name}' is in the old Excel format (.xls), which is not supported. Open it in Excel "
        "and save it as .xlsx (Excel Workbook) or CSV."
    )


def _read_zip(data: bytes, name: str) -> tuple[pd.DataFrame, list[str]]:
    raise DataError(
        f"'{name}' is a zip archive. Extract it and load the table inside ({_FORMATS_HINT})."
    )


def _read_hdf5(data: bytes, name: str) -> tuple[pd.DataFrame, list[str]]:
    raise DataError(
        f"'{name}' is an HDF5 file, which is not supported. Export the table as CSV or Parquet "
        "(a MATLAB v7.3 file: re-save it with save(..., '-v7'))."
    )


def _read_npz(data: bytes, name: str) -> tuple[pd.DataFrame, list[str]]:
    try:
        archive = np.load(io.BytesIO(data), allow_pickle=False)
        arrays = {key: _load_npz_member(archive, key, name) for key in archive.files}
    except DataError:
        raise
    except Exception as exc:  # a damaged archive: zipfile, ValueError or OSError
        raise DataError(
            f"'{name}' is not a readable NumPy .npz file ({exc}). Save it again with "
            "numpy.savez(path, X=..., y=...)."
        ) from exc
    return _frame_from_arrays(arrays, name, "numpy.savez(path, X=X, y=y)")


def _load_npz_member(archive: Any, key: str, name: str) -> np.ndarray:
    """Return one array of an .npz archive, refusing pickled Python objects."""
    try:
        return archive[key]
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise DataError(_pickle_refusal(name, key)) from exc
        raise


def _pickle_refusal(name: str, key: str) -> str:
    return (
        f"The array '{key}' in '{name}' holds Python objects (pickled data), which are not "
        "loaded because opening them can run arbitrary code. Save plain numeric arrays "
        "instead, e.g. numpy.savez(path, X=X.astype(float), y=y.astype(int))."
    )


def _read_npy(data: bytes, name: str) -> tuple[pd.DataFrame, list[str]]:
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise DataError(_pickle_refusal(name, "array")) from exc
        raise DataError(f"'{name}' is not a readable NumPy .npy file ({exc}).") from exc
    return _frame_from_arrays({"X": array}, name, "numpy.save(path, X)")


def _read_mat(data: bytes, name: str) -> tuple[pd.DataFrame, list[str]]:
    from scipy.io import loadmat

    if data[512:520] == _HDF5_SIGNATURE:
        raise DataError(_mat73_message(name))
    try:
        content = loadmat(io.BytesIO(data))
    except NotImplementedError as exc:  # scipy's answer to a v7.3 (HDF5) file
        raise DataError(_mat73_message(name)) from exc
    except Exception as exc:  # a damaged or foreign file: several types
        raise DataError(
            f"'{name}' is not a readable MATLAB .mat file ({exc}). Save it again in MATLAB "
            "with save(path, 'X', 'y', '-v7'), or export the table as CSV."
        ) from exc
    arrays = {}
    for key, value in content.items():
        if key.startswith("__"):
            continue
        if hasattr(value, "toarray"):  # a sparse matrix
            value = value.toarray()
        if isinstance(value, np.ndarray) and value.dtype != object:
            arrays[key] = value
    return _frame_from_arrays(arrays, name, "save(path, 'X', 'y', '-v7') in MATLAB")


def _mat73_message(name: str) -> str:
    return (
        f"'{name}' is a MATLAB v7.3 file (HDF5 based), which cannot be read here. In MATLAB, "
        "re-save it as v7 with save(path, 'X', 'y', '-v7'), or export the table as CSV."
    )


_X_KEYS = ("X", "x", "data", "features")
_Y_KEYS = ("y", "Y", "label", "labels", "target")


def _frame_from_arrays(
    arrays: dict[str, np.ndarray], name: str, how_to_save: str
) -> tuple[pd.DataFrame, list[str]]:
    """Return columns x0..x{d-1} (+ label) from the X and y arrays of an array file."""
    notes = []
    x_key = next((k for k in _X_KEYS if k in arrays), None)
    if x_key is None:
        candidates = [k for k, v in arrays.items() if v.ndim == 2]
        if len(candidates) != 1:
            found = ", ".join(f"'{k}' {arrays[k].shape}" for k in arrays) or "no arrays"
            raise DataError(
                f"'{name}' has no array named X (found {found}). Save the features as X "
                f"(rows x features) and the optional labels as y: {how_to_save}."
            )
        x_key = candidates[0]
        notes.append(f"Used the array '{x_key}' as the features X.")
    X = arrays[x_key]
    if X.dtype == object:
        raise DataError(_pickle_refusal(name, x_key))
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    if X.ndim != 2:
        raise DataError(
            f"The array '{x_key}' in '{name}' has {X.ndim} dimensions {X.shape}; a table needs "
            f"2 (rows x features). Flatten each row first, e.g. X.reshape(len(X), -1)."
        )
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])])
    y_key = next((k for k in _Y_KEYS if k in arrays and k != x_key), None)
    if y_key is not None:
        y = np.asarray(arrays[y_key])
        y = y.reshape(-1) if y.ndim == 2 and 1 in y.shape else y
        if y.ndim != 1 or len(y) != len(frame):
            raise DataError(
                f"In '{name}', the labels '{y_key}' {y.shape} do not match the {len(frame)} "
                f"rows of '{x_key}'. Save one label per row: {how_to_save}."
            )
        if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)  # ODDS stores 0/1 labels as doubles
        frame["label"] = y
    return frame, notes


_READERS: dict[str, Callable[[bytes, str], tuple[pd.DataFrame, list[str]]]] = {
    "csv": _read_csv,
    "tsv": _read_tsv,
    "parquet": _read_parquet,
    "excel": _read_excel,
    "xls": _read_xls,
    "npz": _read_npz,
    "npy": _read_npy,
    "mat": _read_mat,
    "hdf5": _read_hdf5,
    "zip": _read_zip,
}


# --- shared clean-up -----------------------------------------------------------------------


def _finish(frame: pd.DataFrame, name: str, notes: list[str]) -> pd.DataFrame:
    """Return the frame with clean unique column names and mostly-numeric columns numeric."""
    if frame.shape[1] == 0:
        raise DataError(f"'{name}' has no columns. Choose a file with a table in it.")
    if len(frame) == 0:
        raise DataError(
            f"'{name}' has column names but no data rows. Choose a file with at least 2 rows."
        )
    frame.columns = clean_column_names(list(frame.columns), notes)
    frame = _coerce_mostly_numeric(frame, notes)
    frame.attrs = {}
    return frame


def clean_column_names(names: list[Any], notes: list[str]) -> list[str]:
    """Return unique string column names: blanks named, duplicates renamed name_2, name_3."""
    clean = []
    blanks = []
    for i, raw in enumerate(names):
        text = "" if raw is None or (isinstance(raw, float) and np.isnan(raw)) else str(raw)
        text = text.strip()
        if not text:
            text = f"column_{i + 1}"
            blanks.append(text)
        clean.append(text)
    if blanks:
        notes.append(
            f"{len(blanks)} column(s) had no name and were named by position: "
            f"{', '.join(blanks[:5])}{' ...' if len(blanks) > 5 else ''}."
        )
    taken = set(clean)
    seen: dict[str, int] = {}
    renamed = []
    for i, text in enumerate(clean):
        if text not in seen:
            seen[text] = 1
            continue
        k = seen[text]
        while True:
            k += 1
            candidate = f"{text}_{k}"
            if candidate not in taken:
                break
        seen[text] = k
        taken.add(candidate)
        clean[i] = candidate
        renamed.append(f"'{text}' -> '{candidate}'")
    if renamed:
        shown = ", ".join(renamed[:5]) + (
            f" and {len(renamed) - 5} more" if len(renamed) > 5 else ""
        )
        notes.append(f"Some column names appear more than once; repeats were renamed: {shown}.")
    return clean


def _is_text_column(series: pd.Series) -> bool:
    return series.dtype == object or isinstance(series.dtype, pd.StringDtype)


def _coerce_mostly_numeric(frame: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """Return the frame with text columns that are (mostly) numbers converted to numbers."""
    converted = {}
    for column in frame.columns:
        series = frame[column]
        if not _is_text_column(series):
            continue
        present = series.notna()
        n_present = int(present.sum())
        if n_present == 0:
            continue
        numbers = pd.to_numeric(series, errors="coerce")
        failed = present & numbers.isna()
        n_failed = int(failed.sum())
        if n_failed == 0:
            converted[column] = numbers
        elif n_failed <= (1 - MOSTLY_NUMERIC) * n_present:
            converted[column] = numbers
            notes.append(_mixed_note(column, series, failed, n_present))
    if converted:
        frame = frame.assign(**{str(k): v for k, v in converted.items()})
    return frame


def _mixed_note(column: str, series: pd.Series, failed: pd.Series, n_present: int) -> str:
    """Return a note naming the non-numbers turned into missing values in a numeric column."""
    rows = np.flatnonzero(failed.to_numpy())
    values = pd.unique(series[failed].astype(str))
    shown_values = ", ".join(f"'{v}'" for v in values[:5]) + (" ..." if len(values) > 5 else "")
    shown_rows = ", ".join(str(r + 1) for r in rows[:10]) + (" ..." if len(rows) > 10 else "")
    return (
        f"Column '{column}' is numeric except for {len(rows)} of {n_present} values "
        f"({shown_values}, in data row {shown_rows}, counting from 1); they are treated as "
        "missing. Fix them in the file if they should be numbers."
    )


def describe_formats() -> str:
    """Return a one-line list of the file formats load_table reads, for help texts."""
    return _FORMATS_HINT
