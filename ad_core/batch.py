"""Scoring files of any size with a saved run: a streaming local engine, and Dask.

    from ad_core.batch import score_file, score_dask
    summary = score_file(run_folder, "big.csv", "scores.parquet")          # bounded memory
    summary = score_dask(run_folder, "parts/*.parquet", "scores/")         # local cluster
    summary = score_dask(run_folder, "s3-mounted/parts/", "out/", scheduler="tcp://...")

Both engines cut the input into the same *parts*: byte ranges of about ``block_bytes`` that
end at a line break for CSV/TSV text, row groups for Parquet, the whole file for formats that
cannot be read piece by piece (Excel, NumPy, MATLAB, gzip, UTF-16 text: read whole, with a
note). A part is read, turned into features by the run's saved preprocessor and scored; only
the needed columns are parsed. The output has one row per input row, in input order:

- ``row_key``: the id column of the run's dataset when the data has it (``key="auto"``), else
  the row number, counting from 0 across the files in name order (as if concatenated);
- ``score``: the anomaly score (higher is more anomalous);
- ``flag``: ``score > threshold`` of the run.

The local engine scores one part at a time and appends it to one Parquet (or CSV) file, so
memory is bounded by a part, never the file. The Dask engine builds the same parts with
``dask.dataframe.from_map`` (dask's own ``read_csv`` cannot say on which line of which file a
malformed row is), loads the run once per worker process, scores the parts on the workers and
writes a folder of Parquet parts. Without a scheduler address it starts a ``LocalCluster`` on
127.0.0.1 and stops it afterwards. The run folder and the data must be readable from every
worker (one machine, or a shared file system).

Every problem a person can fix raises :class:`~ad_core.data.DataError` with one sentence that
names the file and, for a malformed row, its line.
"""

from __future__ import annotations

import csv
import glob
import io
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from ad_core.data.errors import DataError

#: bytes of CSV text per part: about 60k rows of 32 numbers
BLOCK_BYTES = 16 << 20
#: rows per piece when a Parquet row group is read by the local engine
PARQUET_BATCH_ROWS = 100_000
TEXT_SUFFIXES = {".csv", ".tsv", ".tab", ".txt", ".dat"}
PARQUET_SUFFIXES = {".parquet", ".pq"}
#: formats load_table reads that cannot be cut into parts: read whole, with a note
WHOLE_SUFFIXES = {".xlsx", ".xls", ".npz", ".npy", ".mat", ".gz", ".zip", ".h5", ".hdf5"}
KEY_CHOICES = ("auto", "id", "row")
#: how many of the text bytes at the start of the first file decide the table's format
_HEAD_BYTES = 1 << 20
OUTPUT_COLUMNS = ["row_key", "score", "flag"]


# --- the plan: files and parts ----------------------------------------------------------


@dataclass(frozen=True)
class FileInfo:
    """One input file: how to read it and where the needed columns are in it."""

    path: str
    kind: str  # "csv", "parquet" or "whole"
    size: int
    #: raw column name (Parquet) or position (CSV) of each needed column, by clean name
    columns: dict[str, Any] = field(default_factory=dict)
    #: how many columns the file has
    width: int = 0


@dataclass(frozen=True)
class Part:
    """A piece of one file scored as a unit: a byte range, a row group, or the whole file."""

    number: int
    file: int
    start: int = 0
    stop: int = -1


@dataclass(frozen=True)
class Source:
    """The files a scoring job reads, cut into parts, and how their text is written."""

    files: list[FileInfo]
    parts: list[Part]
    needed: list[str]
    key_column: str | None
    encoding: str = "utf-8"
    read_options: dict = field(default_factory=dict)
    has_header: bool = True
    notes: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def data_files(data: str | os.PathLike[str]) -> list[Path]:
    """Return the files ``data`` names: a file, a glob pattern, or a folder of parts (sorted)."""
    text = os.fspath(data)
    path = Path(text)
    if path.is_dir():
        files = sorted(
            p
            for p in path.iterdir()
            if p.is_file() and not p.name.startswith((".", "_")) and _kind(p) != "unknown"
        )
        if not files:
            raise DataError(
                f"The folder {text} holds no CSV or Parquet files to score; point to a file, "
                "a folder of .csv or .parquet parts, or a pattern such as 'parts/*.csv'."
            )
        return files
    if path.is_file():
        return [path]
    if glob.has_magic(text):
        files = sorted(Path(p) for p in glob.glob(text) if Path(p).is_file())
        if not files:
            raise DataError(f"No file matches {text}; check the pattern.")
        return files
    raise DataError(f"There is no file or folder {text}; check the path.")


def _kind(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if not suffixes:
        return "unknown"
    if suffixes[-1] in PARQUET_SUFFIXES:
        return "parquet"
    if suffixes[-1] in TEXT_SUFFIXES:
        return "csv"
    return "whole" if suffixes[-1] in WHOLE_SUFFIXES else "unknown"


def plan(
    data: str | os.PathLike[str],
    needed: list[str],
    *,
    id_column: str | None = None,
    key: str = "auto",
    block_bytes: int = BLOCK_BYTES,
) -> Source:
    """Return the parts of ``data`` to score, having checked every file has the ``needed`` columns.

    ``id_column`` is the run's dataset's id column; with ``key="auto"`` it keys the output
    when every file has it, ``key="id"`` requires it, ``key="row"`` uses row numbers.
    """
    if key not in KEY_CHOICES:
        raise DataError(f"The row key must be one of {', '.join(KEY_CHOICES)}, not {key!r}.")
    files = data_files(data)
    notes: list[str] = []
    kinds = {_kind(p) for p in files}
    if "unknown" in kinds:
        odd = next(p for p in files if _kind(p) == "unknown")
        raise DataError(
            f"{odd} is not a file type that can be scored (CSV/TSV text or Parquet, or a file "
            "the app reads); rename it with the right extension."
        )
    text_files = [p for p in files if _kind(p) == "csv"]
    encoding, read_options, has_header = "utf-8", {}, True
    if text_files:
        encoding, read_options, has_header, text_notes = _text_format(text_files[0])
        notes.extend(text_notes)
    headers = {p: _header(p, encoding, read_options, has_header) for p in files}

    key_column = None
    if key != "row" and id_column is not None:
        lacking = [p.name for p in files if id_column not in headers[p]]
        if not lacking:
            key_column = id_column
        elif key == "id":
            raise DataError(
                f"{lacking[0]} has no id column '{id_column}'; score with the row number as "
                "key instead (key 'row')."
            )
    elif key == "id":
        raise DataError(
            "The run's dataset has no id column, so rows can only be keyed by their number "
            "(key 'row' or 'auto')."
        )
    wanted = list(dict.fromkeys([*needed, *([key_column] if key_column else [])]))

    infos, parts = [], []
    for index, path in enumerate(files):
        names = headers[path]
        missing = [c for c in wanted if c not in names]
        if missing:
            shown = ", ".join(f"'{c}'" for c in missing[:10]) + (
                " ..." if len(missing) > 10 else ""
            )
            raise DataError(
                f"{path} has no column{'s' if len(missing) > 1 else ''} {shown}, which the run "
                "was trained on; score a file with the same columns (names must match exactly)."
            )
        kind = _kind(path)
        size = path.stat().st_size
        if kind == "csv" and encoding.startswith("utf-16"):
            kind = "whole"
        columns = {c: (names.index(c) if kind == "csv" else names[c]) for c in wanted}
        infos.append(FileInfo(str(path), kind, size, columns, len(names)))
        if kind == "csv":
            step = max(int(block_bytes), 1 << 12)
            for start in range(0, max(size, 1), step):
                parts.append(Part(len(parts), index, start, min(start + step, size)))
        elif kind == "parquet":
            for group in range(_row_groups(path)):
                parts.append(Part(len(parts), index, group))
        else:
            notes.append(
                f"{path.name} cannot be read piece by piece ({path.suffix} file), so it is "
                "read whole into memory; convert it to CSV or Parquet to score it in parts."
            )
            parts.append(Part(len(parts), index))
    return Source(infos, parts, list(needed), key_column, encoding, read_options, has_header, notes)


def _text_format(path: Path) -> tuple[str, dict, bool, list[str]]:
    """Return (encoding, pandas options, has_header, notes) of a text file, from its start."""
    from ad_core.data.text import detect_encoding, sample_lines, sniff_text_format

    with open(path, "rb") as f:
        head = f.read(_HEAD_BYTES)
    cut = head.rfind(b"\n")
    if cut > 0 and len(head) == _HEAD_BYTES:
        head = head[: cut + 1]
    if not head.strip():
        raise DataError(f"{path} is empty: it contains no rows.")
    encoding, note = detect_encoding(head, path.name)
    lines = sample_lines(head.decode(encoding, errors="replace"))
    preferred = "\t" if path.suffix.lower() in {".tsv", ".tab"} else None
    text_format = sniff_text_format(lines, preferred)
    options = {
        k: v for k, v in text_format.options.items() if k in {"sep", "decimal", "skipinitialspace"}
    }
    notes = ([note] if note else []) + text_format.notes
    return encoding, options, text_format.has_header, notes


def _header(path: Path, encoding: str, options: dict, has_header: bool) -> list[str] | dict:
    """Return the clean column names of a file (for Parquet: clean name -> stored name)."""
    from ad_core.data.loaders import clean_column_names

    kind = _kind(path)
    if kind == "parquet":
        import pyarrow.parquet as pq

        try:
            raw = pq.ParquetFile(path).schema_arrow.names
        except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
            raise DataError(f"{path} is not a readable Parquet file ({exc}).") from None
        return dict(zip(clean_column_names(list(raw), []), raw, strict=True))
    if kind == "whole" or encoding.startswith("utf-16"):
        from ad_core.data import load_table

        return list(load_table(path).columns)
    first = _first_line(path, encoding)
    if first is None:
        raise DataError(f"{path} is empty: it contains no rows.")
    fields = _split(first, options)
    if not has_header:
        return [f"column_{i + 1}" for i in range(len(fields))]
    return clean_column_names([v.strip() for v in fields], [])


def _first_line(path: Path, encoding: str) -> str | None:
    with open(path, "rb") as f:
        for raw in f:
            text = raw.decode(encoding, errors="replace").lstrip("\ufeff").rstrip("\r\n")
            if text.strip():
                return text
    return None


def _split(line: str, options: dict) -> list[str]:
    sep = options.get("sep", ",")
    if sep == r"\s+":
        return line.split()
    return next(csv.reader([line], delimiter=sep), [])


def _row_groups(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_row_groups


# --- reading and scoring one part --------------------------------------------------------


def read_part(
    source: Source, part: Part, batch_rows: int = PARQUET_BATCH_ROWS
) -> Iterator[pd.DataFrame]:
    """Yield the needed columns of a part as frames (one, or Parquet batches of ``batch_rows``)."""
    info = source.files[part.file]
    if info.kind == "parquet":
        yield from _read_parquet_part(info, part, batch_rows)
    elif info.kind == "csv":
        yield _read_csv_part(source, info, part)
    else:
        from ad_core.data import load_table

        frame = load_table(info.path)
        yield frame[list(info.columns)]


def _read_parquet_part(info: FileInfo, part: Part, batch_rows: int) -> Iterator[pd.DataFrame]:
    import pyarrow.parquet as pq

    stored = list(info.columns.values())
    try:
        reader = pq.ParquetFile(info.path)
        for batch in reader.iter_batches(
            batch_size=batch_rows, row_groups=[part.start], columns=stored
        ):
            frame = batch.to_pandas(ignore_metadata=True)
            frame.columns = list(info.columns)
            yield frame
    except DataError:
        raise
    except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
        raise DataError(
            f"{info.path} could not be read (row group {part.start + 1}): {exc}."
        ) from None


def _part_bytes(info: FileInfo, part: Part, skip_header: bool) -> tuple[bytes, int]:
    """Return (the whole lines that begin in the part's byte range, their first byte offset)."""
    with open(info.path, "rb") as f:
        if part.start == 0:
            begin = 0
            if skip_header:
                while True:  # blank lines before the header, then the header
                    line = f.readline()
                    if not line or line.strip(b"\xef\xbb\xbf \t\r\n"):
                        break
                begin = f.tell()
        else:
            f.seek(part.start - 1)
            f.readline()
            begin = f.tell()
        if begin >= part.stop:
            return b"", begin
        f.seek(begin)
        data = f.read(part.stop - begin)
        if data and not data.endswith(b"\n"):
            data += f.readline()
        return data, begin


def _read_csv_part(source: Source, info: FileInfo, part: Part) -> pd.DataFrame:
    data, begin = _part_bytes(info, part, source.has_header)
    names = list(info.columns)
    if not data.strip():
        return pd.DataFrame({c: pd.Series(dtype=object) for c in names})
    # Every column is parsed (usecols would let a row with too many values pass unseen).
    width = info.width
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pd.errors.ParserWarning)
        try:
            frame = pd.read_csv(
                io.BytesIO(data),
                encoding=source.encoding,
                encoding_errors="replace",  # as the app reads it; the head chose the encoding
                header=None,
                names=range(width),
                index_col=False,
                engine="c",
                on_bad_lines="error",
                low_memory=False,
                **source.read_options,
            )
        except pd.errors.ParserError as exc:
            raise DataError(_parser_message(info, begin, data, str(exc), source)) from None
        except (UnicodeDecodeError, ValueError) as exc:
            raise DataError(f"{info.path} could not be read near byte {begin:,}: {exc}.") from None
    if any("loss of data" in str(w.message) for w in caught):
        raise DataError(_parser_message(info, begin, data, "", source))
    frame = frame[list(info.columns.values())]
    frame.columns = names
    return frame


def _parser_message(info: FileInfo, begin: int, data: bytes, error: str, source: Source) -> str:
    """Return the sentence naming the file and line of the first row with too many values."""
    import re

    expected = info.width
    found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", error)
    if found:
        expected, line_in_part, seen = (int(g) for g in found.groups())
    else:  # the first row was the long one: pandas only warned
        line_in_part, seen = 1, expected
        text = data.decode(source.encoding, errors="replace").splitlines()
        for i, line in enumerate(text, start=1):
            n = len(_split(line, source.read_options))
            if n > expected:
                line_in_part, seen = i, n
                break
    line = _lines_before(info.path, begin) + line_in_part
    return (
        f"{info.path}, line {line:,}: the row has {seen} values where the header has "
        f"{expected}; fix that line (a stray delimiter or a missing quote) and score again."
    )


def _lines_before(path: str, offset: int) -> int:
    """Return the number of line breaks in the first ``offset`` bytes of a file."""
    count, left = 0, offset
    with open(path, "rb") as f:
        while left > 0:
            chunk = f.read(min(left, 8 << 20))
            if not chunk:
                break
            count += chunk.count(b"\n")
            left -= len(chunk)
    return count


@dataclass
class PartResult:
    """What scoring a part gives: the rows, and values that were not numbers, by column."""

    frame: pd.DataFrame
    not_numbers: dict[str, tuple[int, str]] = field(default_factory=dict)


def score_part(run: Any, source: Source, part: Part) -> PartResult:
    """Return the scores of one part: columns part, row, (row_key), score, flag."""
    frames, scores, not_numbers = [], [], {}
    numeric = set(getattr(run.preprocessor, "numeric_columns_", []))
    name = Path(source.files[part.file].path).name
    for frame in read_part(source, part):
        for column in numeric.intersection(frame.columns):
            series = frame[column]
            if not pd.api.types.is_numeric_dtype(series.dtype):
                bad = series.notna() & pd.to_numeric(series, errors="coerce").isna()
                n_bad = int(bad.sum())
                if n_bad:
                    seen, example = not_numbers.get(column, (0, ""))
                    example = example or f"{series[bad].iloc[0]!r} in {name}"
                    not_numbers[column] = (seen + n_bad, example)
        try:
            X = run.preprocessor.transform(frame)
        except DataError as exc:
            raise DataError(f"{source.files[part.file].path}: {exc}") from None
        scores.append(run.detector.decision_function(X) if len(frame) else np.empty(0))
        frames.append(frame[[source.key_column]] if source.key_column else None)
    score = np.concatenate(scores) if scores else np.empty(0)
    out = pd.DataFrame(
        {
            "part": np.full(len(score), part.number, dtype=np.int32),
            "row": np.arange(len(score), dtype=np.int64),
        }
    )
    if source.key_column:
        from ad_core.data.schema import key_strings

        ids = pd.concat(frames, ignore_index=True)[source.key_column]
        if ids.isna().any():
            first = int(np.flatnonzero(ids.isna().to_numpy())[0])
            raise DataError(
                f"{source.files[part.file].path} has a row with no value in the id column "
                f"'{source.key_column}' (row {first + 1} of its part); fill it in, or key the "
                "rows by their number (key 'row')."
            )
        out["row_key"] = key_strings(ids)
    out["score"] = score.astype(np.float64, copy=False)
    out["flag"] = out["score"].to_numpy() > run.threshold
    return PartResult(out, not_numbers)


# --- results -------------------------------------------------------------------------


@dataclass
class ScoreSummary:
    """What a scoring job did: rows, flagged rows, where it wrote, how long it took."""

    rows: int
    flagged: int
    files: int
    parts: int
    out: str
    seconds: float
    engine: str
    notes: list[str] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


def _summary(
    source: Source,
    rows: int,
    flagged: int,
    out: Path,
    started: float,
    engine: str,
    not_numbers: dict[str, tuple[int, str]],
) -> ScoreSummary:
    return ScoreSummary(
        rows,
        flagged,
        len(source.files),
        len(source.parts),
        str(out),
        time.perf_counter() - started,
        engine,
        source.notes + _not_number_notes(not_numbers),
    )


def _not_number_notes(counts: dict[str, tuple[int, str]]) -> list[str]:
    return [
        f"Column '{column}' had {n:,} value(s) that are not numbers (for example {example}); "
        "they were treated as missing, as the app does."
        for column, (n, example) in counts.items()
    ]


def _merge_not_numbers(into: dict, more: dict) -> None:
    for column, (n, example) in more.items():
        seen, first = into.get(column, (0, ""))
        into[column] = (seen + n, first or example)


def _output_path(out: str | os.PathLike[str]) -> Path:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def score_file(
    run_folder: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    id_column: str | None = None,
    key: str = "auto",
    block_bytes: int = BLOCK_BYTES,
    progress: Callable[[int, int], None] | None = None,
) -> ScoreSummary:
    """Score ``data`` part by part with the run in ``run_folder``; write ``out`` (.parquet/.csv).

    Memory is bounded by one part. ``progress(done_bytes, total_bytes)`` is called after each.
    The output is written to a temporary name and renamed at the end, so a failed job leaves
    no half-written file.
    """
    from ad_core.runs import load_run

    started = time.perf_counter()
    run = load_run(run_folder)
    refuse_series(run)
    source = plan(
        data,
        run.preprocessor.feature_columns_in_,
        id_column=id_column,
        key=key,
        block_bytes=block_bytes,
    )
    path = _output_path(out)
    tmp = path.with_name(f".{path.name}.partial")
    as_csv = path.suffix.lower() == ".csv"
    writer, offset, flagged, not_numbers, done = None, 0, 0, {}, 0
    try:
        for part in source.parts:
            result = score_part(run, source, part)
            frame = _keyed(result.frame, offset, source.key_column is None)
            offset += len(frame)
            flagged += int(frame["flag"].sum())
            _merge_not_numbers(not_numbers, result.not_numbers)
            writer = _write(writer, frame, tmp, as_csv)
            info = source.files[part.file]
            done += (part.stop - part.start) if info.kind == "csv" else _part_share(source, part)
            if progress is not None:
                progress(min(done, source.total_bytes), source.total_bytes)
        if writer is None or offset == 0:
            raise DataError(f"{data} has no data rows to score.")
        writer.close()
        writer = None
        os.replace(tmp, path)
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    return _summary(source, offset, flagged, path, started, "local", not_numbers)


def _part_share(source: Source, part: Part) -> int:
    """Return the bytes a non-CSV part stands for: its file's size over its parts."""
    n = sum(1 for p in source.parts if p.file == part.file)
    return source.files[part.file].size // max(n, 1)


def _keyed(frame: pd.DataFrame, offset: int, by_row: bool) -> pd.DataFrame:
    """Return the output columns, the row number (from ``offset``) as key when ``by_row``."""
    if by_row:
        keys = np.arange(offset, offset + len(frame), dtype=np.int64).astype(str)
        frame = frame.assign(row_key=keys.astype(object))
    return frame[OUTPUT_COLUMNS]


def _write(writer: Any, frame: pd.DataFrame, path: Path, as_csv: bool) -> Any:
    if as_csv:
        if writer is None:
            writer = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115
            frame.to_csv(writer, index=False)
        else:
            frame.to_csv(writer, index=False, header=False)
        return writer
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, schema=_OUTPUT_SCHEMA(), preserve_index=False)
    if writer is None:
        writer = pq.ParquetWriter(path, table.schema)
    writer.write_table(table)
    return writer


def _OUTPUT_SCHEMA():  # noqa: N802 - a constant built lazily (pyarrow is imported on use)
    import pyarrow as pa

    return pa.schema([("row_key", pa.string()), ("score", pa.float64()), ("flag", pa.bool_())])


# --- Dask ----------------------------------------------------------------------------

_WORKER_RUNS: dict[str, Any] = {}
_WORKER_LOCK = threading.Lock()
#: how many times this process loaded a run for Dask (the tests check: once per worker)
WORKER_LOADS: dict[str, int] = {}


def refuse_series(run: Any) -> None:
    """Raise DataError for a run trained on a series: parts would cut its windows apart."""
    if getattr(run, "series", None) is not None:
        raise DataError(
            "This run was trained on windows of a series: it scores a whole series at once, "
            "which batch scoring cannot cut into parts. Load the series as one table and "
            "score it in Python with ad_core.runs.score(ad_core.runs.load_run(folder), "
            "frame), or add it in the app and train on it there."
        )


def _worker_run(run_folder: str) -> Any:
    """Return the run, loaded once per worker process and kept for its later parts."""
    with _WORKER_LOCK:
        run = _WORKER_RUNS.get(run_folder)
        if run is None:
            from ad_core.runs import load_run

            run = load_run(run_folder)
            _WORKER_RUNS[run_folder] = run
            WORKER_LOADS[run_folder] = WORKER_LOADS.get(run_folder, 0) + 1
        return run


def _dask_part(part: Part, *, source: Source, run_folder: str) -> pd.DataFrame:
    """Score one part on a worker; values that were not numbers travel in a ``note`` column."""
    import json

    result = score_part(_worker_run(run_folder), source, part)
    note = pd.Series([None] * len(result.frame), dtype=object)
    if result.not_numbers and len(note):
        note.iloc[0] = json.dumps(result.not_numbers)
    return result.frame.assign(note=note.to_numpy())


def _meta(with_key: bool) -> pd.DataFrame:
    columns: dict[str, pd.Series] = {
        "part": pd.Series(dtype=np.int32),
        "row": pd.Series(dtype=np.int64),
    }
    if with_key:
        columns["row_key"] = pd.Series(dtype=object)
    columns["score"] = pd.Series(dtype=np.float64)
    columns["flag"] = pd.Series(dtype=bool)
    columns["note"] = pd.Series(dtype=object)
    return pd.DataFrame(columns)


def _part_stats(frame: pd.DataFrame) -> pd.DataFrame:
    """Return one row per part: its rows, its flagged rows, its note on non-numbers."""
    notes = [n for n in frame["note"] if isinstance(n, str)]
    return pd.DataFrame(
        {
            "rows": np.array([len(frame)], dtype=np.int64),
            "flagged": np.array([int(frame["flag"].sum())], dtype=np.int64),
            "note": pd.Series(notes[:1] or [None], dtype=object),
        }
    )


def _add_row_keys(frame: pd.DataFrame, offsets: np.ndarray) -> pd.DataFrame:
    """Return the output columns with the row number across all parts as the key."""
    if len(frame) == 0:
        return pd.DataFrame(
            {
                "row_key": pd.Series(dtype=object),
                "score": pd.Series(dtype=np.float64),
                "flag": pd.Series(dtype=bool),
            }
        )
    keys = offsets[frame["part"].to_numpy()] + frame["row"].to_numpy()
    return pd.DataFrame(
        {
            "row_key": keys.astype(str).astype(object),
            "score": frame["score"].to_numpy(),
            "flag": frame["flag"].to_numpy(),
        }
    )


def local_cluster(n_workers: int = 2) -> Any:
    """Return a LocalCluster of ``n_workers`` single-threaded processes on 127.0.0.1.

    Workers start from a fork server (distributed's own start method for its test suite):
    Python, pandas and distributed are imported once, in the server, not once per worker as
    with the default "spawn"; each worker then imports torch as it starts (``preload``). On
    2 cores that halves the start-up, which is most of a 1M-row job's overhead.
    """
    import logging

    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}):
        return LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",  # no fixed port to collide with
            silence_logs=logging.CRITICAL,
            preload=["ad_core.batch_worker"],
        )


def score_dask(
    run_folder: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    scheduler: str | None = None,
    n_workers: int = 2,
    id_column: str | None = None,
    key: str = "auto",
    block_bytes: int = BLOCK_BYTES,
    progress: Callable[[int, int], None] | None = None,
    client: Any = None,
) -> ScoreSummary:
    """Score ``data`` on a Dask cluster; write a folder ``out`` of Parquet parts.

    ``scheduler`` is a scheduler address (``tcp://host:8786``); without it (and without a
    ``client``) a LocalCluster of ``n_workers`` processes is started and stopped. ``out`` must
    be a new or empty folder, or one holding only the Parquet parts of an earlier job.
    """
    try:
        import dask.dataframe as dd
        from distributed import Client, as_completed, futures_of
    except ImportError:
        raise DataError(
            'Scoring with Dask needs the dask extra: pip install -e ".[dask]".'
        ) from None
    from ad_core.data import Preprocessor
    from ad_core.runs import PREPROCESSOR_FILE, check_run_folder

    started = time.perf_counter()
    run_folder = str(Path(run_folder).resolve())
    # The client needs the run's columns only: the model (and torch) load on the workers.
    preprocessor = Preprocessor.load(check_run_folder(run_folder) / PREPROCESSOR_FILE)
    from ad_core.series_runs import read_run_settings

    if read_run_settings(Path(run_folder)) is not None:
        refuse_series(SimpleNamespace(series=True))
    source = plan(
        data,
        preprocessor.feature_columns_in_,
        id_column=id_column,
        key=key,
        block_bytes=block_bytes,
    )
    folder = _output_folder(out)

    cluster = None
    own_client = client is None
    if own_client:
        if scheduler:
            try:
                client = Client(scheduler, timeout="10s")
            except (OSError, TimeoutError) as exc:
                raise DataError(
                    f"Could not reach the Dask scheduler at {scheduler} ({exc}); check the "
                    "address, or leave it out to use a cluster on this machine."
                ) from None
        else:
            cluster = local_cluster(n_workers)
            client = Client(cluster)
    try:
        scored = dd.from_map(
            _dask_part,
            source.parts,
            source=source,
            run_folder=run_folder,
            meta=_meta(source.key_column is not None),
            enforce_metadata=False,
            label="ad-studio-score",
        )
        scored = scored.persist()
        futures = futures_of(scored)
        done = 0
        for future in as_completed(futures):
            if future.status == "error":
                future.result()  # raises the worker's DataError here, with its message
            done += 1
            if progress is not None:
                progress(done, len(futures))
        stats = scored.map_partitions(_part_stats, meta=_part_stats(_meta(False))).compute()
        lengths = stats["rows"].to_numpy()
        if int(lengths.sum()) == 0:
            raise DataError(f"{data} has no data rows to score.")
        if source.key_column is None:
            offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
            output = scored.map_partitions(_add_row_keys, offsets, meta=_meta(True)[OUTPUT_COLUMNS])
        else:
            output = scored[OUTPUT_COLUMNS]
        output.to_parquet(
            str(folder),
            write_index=False,
            overwrite=False,
            schema=_OUTPUT_SCHEMA(),
            write_metadata_file=False,
        )
    finally:
        if own_client:
            client.close()
        if cluster is not None:
            cluster.close()
    not_numbers: dict[str, tuple[int, str]] = {}
    for text in stats["note"]:
        if isinstance(text, str):
            import json

            _merge_not_numbers(not_numbers, {k: tuple(v) for k, v in json.loads(text).items()})
    rows, flagged = int(lengths.sum()), int(stats["flagged"].sum())
    return _summary(source, rows, flagged, folder, started, "dask", not_numbers)


def _output_folder(out: str | os.PathLike[str]) -> Path:
    """Return ``out`` as an empty folder: new, empty, or holding only an earlier job's parts."""
    folder = Path(out)
    if folder.is_file():
        raise DataError(
            f"{folder} is a file; Dask writes a folder of Parquet parts, so name a folder."
        )
    if folder.is_dir():
        present = [p for p in folder.iterdir()]
        others = [p for p in present if p.suffix != ".parquet" and not p.name.startswith(".")]
        if others:
            raise DataError(
                f"The folder {folder} already holds other files ({others[0].name}, ...); "
                "choose a new or empty folder for the scores."
            )
        for p in present:
            if p.suffix == ".parquet":
                p.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def read_scores(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Return the scores a job wrote: a Parquet or CSV file, or a folder of Parquet parts."""
    path = Path(path)
    if path.is_dir():
        parts = sorted(path.glob("*.parquet"), key=_part_order)
        return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path, dtype={"row_key": str})
    return pd.read_parquet(path)


def _part_order(path: Path) -> tuple[int, str]:
    digits = "".join(ch for ch in path.stem if ch.isdigit())
    return (int(digits) if digits else -1, path.name)
