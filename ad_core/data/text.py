"""Reading delimited text tables (CSV, TSV, ...): encoding, delimiter and header detection."""

from __future__ import annotations

import csv
import io
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field

import pandas as pd

from ad_core.data.errors import DataError

CANDIDATE_DELIMITERS = (",", ";", "\t", "|")
WHITESPACE = r"\s+"
DELIMITER_NAMES = {
    ",": "comma",
    ";": "semicolon",
    "\t": "tab",
    "|": "vertical bar (|)",
    WHITESPACE: "spaces",
}
# Enough lines to judge a delimiter; capped in characters so a 10k-column file stays fast.
_SNIFF_LINES = 50
_SNIFF_CHARS = 4_000_000
# Share of the sniffed lines that must agree on the field count for whitespace splitting.
_WHITESPACE_CONSISTENCY = 0.9
# More unreadable rows than this share means the file's structure was not understood at all.
_MAX_BAD_ROW_SHARE = 0.5
_CONTROL_BYTES = bytes(b for b in range(32) if b not in b"\t\n\r\x0c\x0b")
_BAD_LINE = re.compile(r"Skipping line (\d+): expected (\d+) fields, saw (\d+)")
# pandas' warning when rows have more values than the names given (it then drops them).
_LOST_FIELDS = "leads to a loss of data"
_NUMBER = re.compile(r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)([eE][+-]?\d+)?$")


@dataclass
class TextTable:
    """What was read from a text file: the frame and the non-fatal notes about it."""

    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def looks_binary(head: bytes) -> bool:
    """Return True when the first bytes of a file are not plausible text."""
    if not head:
        return False
    if b"\x00" in head:
        return True
    control = sum(head.count(bytes([b])) for b in _CONTROL_BYTES)
    return control > 0.02 * len(head)


def decode_text(data: bytes, name: str) -> tuple[str, str | None]:
    """Return the decoded text and a note naming the encoding when it was not UTF-8."""
    encoding, note = detect_encoding(data, name)
    return data.decode(encoding, errors="replace"), note


def detect_encoding(data: bytes, name: str) -> tuple[str, str | None]:
    """Return the encoding of a text file's bytes, and a note when it is not UTF-8.

    The bytes are checked in pieces, so no decoded copy of a large file is kept. Given only
    the first bytes of a file, they should end at a line break (no character cut in two).
    """
    if data.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig", None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        # Excel's "Unicode text" export: UTF-16 with a byte-order mark.
        return "utf-16", "The file is UTF-16 text; it was decoded."
    if looks_binary(data[:65536]):
        raise DataError(
            f"'{name}' does not look like a text table: it contains binary data. "
            "Upload a CSV/TSV text file, or a Parquet, Excel (.xlsx), NumPy (.npz) or "
            "MATLAB (.mat) file with a matching file extension."
        )
    if _decodes(data, "utf-8"):
        return "utf-8", None
    encoding = _guess_encoding(data)
    for candidate in (encoding, "cp1252", "latin-1"):
        if candidate is None or not _decodes(data, candidate):
            continue
        note = (
            f"The file is not UTF-8; it was read as {candidate}. If accented letters look "
            "wrong, save the file as UTF-8 and load it again."
        )
        return candidate, note
    raise DataError(f"'{name}' could not be decoded as text. Save it as UTF-8 CSV.")


_DECODE_PIECE = 1 << 24


def _decodes(data: bytes, encoding: str) -> bool:
    """Return True when the bytes are valid text in the encoding (checked 16 MiB at a time)."""
    import codecs

    try:
        decoder = codecs.getincrementaldecoder(encoding)()
    except LookupError:
        return False
    view = memoryview(data)
    try:
        for start in range(0, len(view), _DECODE_PIECE):
            decoder.decode(view[start : start + _DECODE_PIECE])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def head_text(data: bytes, encoding: str, min_bytes: int = 1 << 22, min_lines: int = 200) -> str:
    """Return the start of the text: at least ``min_bytes`` or ``min_lines`` lines, whole lines."""
    if len(data) <= min_bytes or encoding.startswith("utf-16"):  # UTF-16: no byte-wise cut
        return data.decode(encoding, errors="replace")
    end, lines = -1, 0
    while lines < min_lines:
        end = data.find(b"\n", end + 1)
        if end < 0:
            end = len(data)
            break
        lines += 1
    end = max(end, data.find(b"\n", min_bytes))
    end = len(data) if end < 0 else end + 1
    return data[:end].decode(encoding, errors="replace")


# The encodings spreadsheets and databases actually export. Letting charset_normalizer pick
# among all it knows yields DOS code pages (cp775, ...) for short Western European files.
_COMMON_ENCODINGS = [
    "cp1252",
    "latin_1",
    "iso8859_15",
    "cp1250",
    "iso8859_2",
    "cp1251",
    "koi8_r",
    "cp1253",
    "cp1254",
    "cp1255",
    "cp1256",
    "cp1257",
    "mac_roman",
    "cp932",
    "euc_jp",
    "gb18030",
    "big5",
    "cp949",
]
# Among equally plausible guesses, prefer the Western encodings: by far the most common for
# exported tables, while charset_normalizer's tie order is arbitrary.
_PREFERRED_ENCODINGS = ("cp1252", "latin_1", "iso8859_15")


def _guess_encoding(data: bytes) -> str | None:
    """Return the most plausible encoding according to charset_normalizer, or None."""
    from charset_normalizer import from_bytes

    results = from_bytes(data, cp_isolation=_COMMON_ENCODINGS)
    best = results.best()
    if best is None:
        return None
    tied = [m for m in results if (m.chaos, m.coherence) == (best.chaos, best.coherence)]
    for encoding in _PREFERRED_ENCODINGS:
        if any(encoding in m.could_be_from_charset for m in tied):
            return encoding
    return best.encoding


def _sample_lines(text: str) -> list[str]:
    """Return the first few non-blank lines, without reading the whole text."""
    lines: list[str] = []
    start, used = 0, 0
    while len(lines) < _SNIFF_LINES and start < len(text) and used < _SNIFF_CHARS:
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        line = text[start:end].rstrip("\r")
        if line.strip():
            lines.append(line)
        used += end - start
        start = end + 1
    return lines


def _field_counts(lines: list[str], delimiter: str) -> list[int]:
    """Return the number of fields in each line when split by the delimiter."""
    if delimiter == WHITESPACE:
        return [len(line.split()) for line in lines]
    return [len(row) for row in csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter)]


def sniff_delimiter(lines: list[str], preferred: str | None = None) -> str | None:
    """Return the delimiter that splits the lines into a consistent number of fields, or None."""
    best, best_score = None, (0.0, 0)
    for delimiter in CANDIDATE_DELIMITERS:
        counts = _field_counts(lines, delimiter)
        if not counts:
            continue
        mode, hits = Counter(counts).most_common(1)[0]
        if mode < 2:
            continue
        score = (hits / len(counts), mode)
        if delimiter == preferred and score[0] >= 0.9:
            return delimiter
        if score > best_score:
            best, best_score = delimiter, score
    if best is not None:
        return best
    # UCR-style files separate values by runs of spaces.
    counts = _field_counts(lines, WHITESPACE)
    if counts:
        mode, hits = Counter(counts).most_common(1)[0]
        if mode >= 2 and hits / len(counts) >= _WHITESPACE_CONSISTENCY:
            return WHITESPACE
    return None


def _first_record(lines: list[str], delimiter: str | None) -> list[str]:
    """Return the fields of the first line."""
    if delimiter is None:
        return [lines[0]]
    if delimiter == WHITESPACE:
        return lines[0].split()
    return next(csv.reader(io.StringIO(lines[0]), delimiter=delimiter), [])


def _is_number(value: str) -> bool:
    return bool(_NUMBER.match(value.strip()))


def _uses_decimal_comma(lines: list[str]) -> bool:
    """Return True when numbers in semicolon-separated lines are written like 1,5."""
    sample = "\n".join(lines[1:])
    commas = len(re.findall(r"(?:^|;)\s*-?\d+,\d+\s*(?=;|$)", sample, flags=re.M))
    points = len(re.findall(r"(?:^|;)\s*-?\d+\.\d+\s*(?=;|$)", sample, flags=re.M))
    return commas > points


@dataclass
class TextFormat:
    """How a text table is written: what pandas needs to read it, and what was guessed."""

    options: dict
    names: list[str]
    delimiter: str | None
    has_header: bool
    notes: list[str] = field(default_factory=list)


def sniff_text_format(lines: list[str], preferred_delimiter: str | None = None) -> TextFormat:
    """Return the delimiter, header and decimal mark of a table from its first lines."""
    notes: list[str] = []
    delimiter = sniff_delimiter(lines, preferred_delimiter)
    first = _first_record(lines, delimiter)
    has_header = not (len(lines) > 1 and all(_is_number(v) for v in first if v.strip()))
    if not has_header:
        names = [f"column_{i + 1}" for i in range(len(first))]
        notes.append(
            f"The first row holds numbers, not column names, so the {len(first)} columns "
            f"were named column_1 ... column_{len(first)}."
        )
    else:
        names = [v.strip() for v in first]

    options: dict = {
        "sep": delimiter or ",",
        "header": 0 if has_header else None,
        "names": names,
        "index_col": False,
        "engine": "c",
        # Tokenise in pieces: the whole file at once holds ~2x the table besides the frame.
        "low_memory": True,
        "on_bad_lines": "warn",
    }
    if delimiter != WHITESPACE:
        options["skipinitialspace"] = True
    if delimiter == ";" and _uses_decimal_comma(lines):
        options["decimal"] = ","
        notes.append("Numbers use a comma as decimal mark (1,5 means 1.5); read them as such.")
    return TextFormat(options, names, delimiter, has_header, notes)


def sample_lines(text: str) -> list[str]:
    """Return the first few non-blank lines of a text, the ones its format is judged on."""
    return _sample_lines(text)


def read_text_table(data: bytes, name: str, preferred_delimiter: str | None = None) -> TextTable:
    """Return the table in a delimited text file, with notes about what was guessed.

    pandas parses the bytes themselves: no decoded copy of the whole file is made (a str
    copy, and the 4-bytes-per-character buffer of a StringIO over it, were 5x the file).
    """
    encoding, encoding_note = detect_encoding(data, name)
    text = _Text(data, encoding)
    notes = [encoding_note] if encoding_note else []
    lines = _sample_lines(head_text(data, encoding))
    if not lines:
        raise DataError(f"'{name}' is empty: it contains no rows. Choose a file with data in it.")

    text_format = sniff_text_format(lines, preferred_delimiter)
    notes.extend(text_format.notes)
    options, names = text_format.options, text_format.names
    delimiter, has_header = text_format.delimiter, text_format.has_header
    frame, caught = _read_frame(text, name, options)
    n_names = len(names)
    bad = _bad_lines(caught)
    n_bad, shown = len(bad), [(line, n_names, found) for line, _, found in bad[:10]]
    if _lost_fields(caught):
        # The first data row has more values than the header has names: pandas then drops
        # the last values of every such row without a word. Read them, then leave out (with
        # a note) or refuse the rows that have them.
        frame, n_bad, shown = _read_long_rows(text, name, options, lines, delimiter, has_header)
    frame.columns = names  # the raw header, duplicates included; cleaned by the caller

    if n_bad:
        notes.append(
            _check_bad_lines(name, shown, n_bad, len(frame), delimiter, n_names, has_header)
        )
    if delimiter is None and frame.shape[1] == 1:
        _check_single_column(name, frame)
    return TextTable(frame=frame, notes=notes)


@dataclass(frozen=True)
class _Text:
    """A text file's bytes and their encoding: what pandas and the csv module read from."""

    data: bytes
    encoding: str

    def stream(self) -> io.TextIOWrapper:
        return io.TextIOWrapper(
            io.BytesIO(self.data), encoding=self.encoding, errors="replace", newline=""
        )


def _read_frame(text: _Text, name: str, options: dict) -> tuple[pd.DataFrame, list]:
    """Return the frame pandas reads with the options, and the parser warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pd.errors.ParserWarning)
        try:
            frame = pd.read_csv(
                io.BytesIO(text.data),
                encoding=text.encoding,
                encoding_errors="replace",
                **_dedupe_for_pandas(options),
            )
        except pd.errors.EmptyDataError as exc:
            raise DataError(f"'{name}' is empty: it contains no rows.") from exc
        except pd.errors.ParserError as exc:
            raise DataError(_explain_parser_error(name, str(exc))) from exc
    return frame, list(caught)


def _lost_fields(caught: list[warnings.WarningMessage]) -> bool:
    """Return True when pandas says it dropped values beyond the header's columns."""
    return any(_LOST_FIELDS in str(w.message) for w in caught)


def _read_long_rows(
    text: _Text,
    name: str,
    options: dict,
    lines: list[str],
    delimiter: str | None,
    has_header: bool,
) -> tuple[pd.DataFrame, int, list[tuple[int, int, int]]]:
    """Return the frame without the rows that have more values than the header has names,
    how many such rows there were, and (line, expected, found) for the first ten of them.
    """
    n_names = len(options["names"])
    counts = _field_counts(lines, delimiter) if delimiter is not None else []
    data_counts = counts[1:] if has_header else counts
    width = data_counts[0] if data_counts else n_names
    refusal = DataError(
        f"'{name}' could not be read as a table: its rows have more values than the header "
        f"has column names ({n_names}). Check the separator and quoting; if the header is "
        "missing a name (for instance over a first column of row numbers), add it. Then "
        "load the file again."
    )
    if width <= n_names:
        raise refusal
    # Room for every value of the first data row, which sets how wide pandas reads rows.
    padded = {**options, "names": [*options["names"], *([""] * (width - n_names))]}
    try:
        frame, caught = _read_frame(text, name, padded)
    except DataError as exc:
        raise refusal from exc
    if _lost_fields(caught):
        raise refusal
    extra = frame.iloc[:, n_names:]
    long = extra.notna().to_numpy().any(axis=1)
    n_long = int(long.sum()) + len(_bad_lines(caught))
    frame = frame.iloc[~long, :n_names].reset_index(drop=True)
    shown = _long_records(text, delimiter, n_names, width, has_header)
    return frame, n_long, shown


def _long_records(
    text: _Text, delimiter: str | None, n_names: int, width: int, has_header: bool
) -> list[tuple[int, int, int]]:
    """Return (line, n_names, found) for the first ten rows with values beyond the header."""
    found: list[tuple[int, int, int]] = []
    header_seen = not has_header
    try:
        for line, record in _records(text, delimiter):
            if not record or (len(record) == 1 and not record[0].strip()):
                continue  # a blank line, which the reader skips too
            if not header_seen:
                header_seen = True
                continue
            beyond = record[n_names:]
            if len(record) > width or any(v.strip() for v in beyond):
                found.append((line, n_names, len(record)))
                if len(found) == 10:
                    break
    except csv.Error:
        pass  # a field over csv's size limit: the rows found so far are enough to point at
    return found


def _records(text: _Text, delimiter: str | None):
    """Yield (first line of the record, its fields) for each record of the text."""
    if delimiter == WHITESPACE:
        for number, line in enumerate(text.stream(), start=1):
            yield number, line.split()
        return
    reader = csv.reader(text.stream(), delimiter=delimiter or ",", skipinitialspace=True)
    start = 1
    for record in reader:
        yield start, record
        start = reader.line_num + 1


def _dedupe_for_pandas(options: dict) -> dict:
    """Return read_csv options with placeholder names, since pandas refuses duplicate names."""
    placeholders = [f"__column_{i}" for i in range(len(options["names"]))]
    return {**options, "names": placeholders}


def _bad_lines(caught: list[warnings.WarningMessage]) -> list[tuple[int, int, int]]:
    """Return (line, expected, found) for each line pandas skipped."""
    bad = []
    for warning in caught:
        bad.extend((int(a), int(b), int(c)) for a, b, c in _BAD_LINE.findall(str(warning.message)))
    return bad


def _check_bad_lines(
    name: str,
    shown: list[tuple[int, int, int]],
    n_bad: int,
    n_read: int,
    delimiter: str | None,
    n_names: int,
    has_header: bool = True,
) -> str:
    """Return a note about the rows left out, or raise when they are most of the file.

    ``shown`` holds (line, expected, found) of the first few such rows; ``n_bad`` counts all.
    """
    total = n_read + n_bad
    shown = shown[:10]
    sep = DELIMITER_NAMES.get(delimiter or ",", repr(delimiter))
    than = "the header has column names" if has_header else "the first row"
    if shown:
        first_line, expected, found = shown[0]
        example = f"line {first_line}: expected {expected}, found {found}, separated by {sep}"
        more = f" and {n_bad - len(shown)} more" if n_bad > len(shown) else ""
        where = f"line {', '.join(str(line) for line, _, _ in shown)}{more} of the file"
        counts = f" (expected {expected} values, found {found})"
    else:  # rows too odd for the csv module to point at
        example = f"expected {n_names} values, separated by {sep}"
        where, counts = "their lines could not be pinned down", ""
    if n_bad > _MAX_BAD_ROW_SHARE * total:
        raise DataError(
            f"'{name}' could not be read as a table: {n_bad} of {total} rows have more "
            f"values than {than} ({example}). Check the separator and quoting; if the "
            "header is missing a name (for instance over a first column of row numbers), "
            "add it. Save the file as CSV with one value per column in every row and load "
            "it again."
        )
    return (
        f"{n_bad} of {total} rows have more values than {than}, so they could not be read "
        f"and were left out: {where}{counts}. Fix those lines and load the file again to "
        "include them."
    )


def _check_single_column(name: str, frame: pd.DataFrame) -> None:
    """Raise when one text column suggests the separator was not recognised."""
    values = frame.iloc[:, 0].dropna()
    numeric = pd.to_numeric(values, errors="coerce").notna().mean() if len(values) else 0.0
    if numeric < 0.9:
        raise DataError(
            f"Only one column was found in '{name}', and its values are text: the separator "
            "between values was not recognised (looked for comma, semicolon, tab, | and "
            "spaces). Save the file with commas or tabs between the values."
        )


def _explain_parser_error(name: str, message: str) -> str:
    """Return a reader's message for a pandas parser error."""
    match = re.search(r"EOF inside string starting at row (\d+)", message)
    if match:
        # pandas counts records from 0 at the header, so its row N is data row N.
        return (
            f"'{name}' has a quote (\") that is never closed, starting in data row "
            f"{match.group(1)} (counting from 1 after the header). Close or remove the quote "
            "and load the file again."
        )
    return (
        f"'{name}' could not be read as a table ({message.strip()}). Check that every row "
        "has the same separator and that quotes are balanced."
    )
