"""load_table: every supported format, and a clear DataError for every kind of bad file."""

from __future__ import annotations

import gzip
import io
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.io import savemat

from ad_core.data import DataError, load_table

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
needs_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason="reference data ../shared/data is not on this machine"
)


def write(tmp_path: Path, name: str, content: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def load_error(path: Path) -> str:
    with pytest.raises(DataError) as info:
        load_table(path)
    return str(info.value)


def example_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "amount": [1.5, 2.25, -3.0, 4.0],
            "count": [1, 2, 3, 4],
            "city": ["Berlin", "Paris", "Rome", "Paris"],
            "label": [0, 0, 1, 0],
        }
    )


# --- malformed files -----------------------------------------------------------------------


def test_empty_file_is_refused_as_empty(tmp_path):
    message = load_error(write(tmp_path, "data.csv", b""))
    assert "empty" in message and "data.csv" in message


def test_blank_lines_only_count_as_empty(tmp_path):
    assert "empty" in load_error(write(tmp_path, "data.csv", "\n\n   \n"))


def test_header_without_rows_says_there_are_no_data_rows(tmp_path):
    message = load_error(write(tmp_path, "data.csv", "a,b,c\n"))
    assert "no data rows" in message


def test_binary_garbage_is_refused_as_not_a_text_table(tmp_path):
    garbage = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    message = load_error(write(tmp_path, "data.csv", garbage))
    assert "binary" in message and "CSV" in message


def test_unknown_separator_says_only_one_column_was_found(tmp_path):
    path = write(tmp_path, "data.csv", "name#value#kind\nx#1#a\ny#2#b\nz#3#c\n")
    message = load_error(path)
    assert "one column" in message and "separator" in message


def test_single_numeric_column_is_a_valid_table(tmp_path):
    df = load_table(write(tmp_path, "data.csv", "value\n1\n2\n3\n"))
    assert list(df.columns) == ["value"] and df["value"].tolist() == [1, 2, 3]


def test_duplicate_headers_are_renamed_with_a_note(tmp_path):
    df = load_table(write(tmp_path, "data.csv", "a,b,a,a\n1,2,3,4\n5,6,7,8\n"))
    assert list(df.columns) == ["a", "b", "a_2", "a_3"]
    assert df["a_2"].tolist() == [3, 7]
    assert any("a_2" in note for note in df.attrs["load_notes"])


def test_renamed_duplicate_does_not_collide_with_an_existing_name(tmp_path):
    df = load_table(write(tmp_path, "data.csv", "a,a_2,a\n1,2,3\n4,5,6\n"))
    assert list(df.columns) == ["a", "a_2", "a_3"]


def test_blank_header_is_named_by_position_with_a_note(tmp_path):
    df = load_table(write(tmp_path, "data.csv", "a,,c\n1,2,3\n4,5,6\n"))
    assert list(df.columns) == ["a", "column_2", "c"]
    assert any("column_2" in note for note in df.attrs["load_notes"])


def test_few_strings_in_a_numeric_column_become_missing_with_a_note(tmp_path):
    rows = "".join(f"{i},{'?' if i == 3 else 'err' if i == 7 else i * 2}\n" for i in range(40))
    df = load_table(write(tmp_path, "data.csv", "a,b\n" + rows))
    assert pd.api.types.is_float_dtype(df["b"])
    assert df["b"].isna().sum() == 2 and len(df) == 40
    note = next(n for n in df.attrs["load_notes"] if "'b'" in n)
    assert "'?'" in note and "'err'" in note and "4, 8" in note  # rows counted from 1


def test_mostly_text_column_stays_text(tmp_path):
    df = load_table(write(tmp_path, "data.csv", "a,b\n1,x\n2,y\n3,4\n4,z\n"))
    assert df["b"].tolist() == ["x", "y", "4", "z"]
    assert df.attrs["load_notes"] == []


def test_single_row_loads(tmp_path):
    df = load_table(write(tmp_path, "data.csv", "a,b,label\n1.5,2,0\n"))
    assert df.shape == (1, 3)


def test_ten_thousand_columns_load_in_a_few_seconds(tmp_path):
    values = np.random.default_rng(0).normal(size=(20, 10_000)).round(3)
    header = ",".join(f"f{j}" for j in range(values.shape[1]))
    body = "\n".join(",".join(map(str, row)) for row in values)
    path = write(tmp_path, "wide.csv", header + "\n" + body + "\n")
    start = time.perf_counter()
    df = load_table(path)
    assert time.perf_counter() - start < 5.0
    assert df.shape == (20, 10_000)
    assert df.dtypes.eq(np.float64).all()


def test_cp1250_text_keeps_its_central_european_letters(tmp_path):
    text = "name,city\nŁódź,Kraków\nżółw,Gdańsk\nźdźbło,Poznań\n"
    df = load_table(write(tmp_path, "data.csv", text.encode("cp1250")))
    assert df["city"].tolist() == ["Kraków", "Gdańsk", "Poznań"]


def test_latin1_text_is_decoded_and_the_encoding_noted(tmp_path):
    text = "name,city\ncafé,München\nnaïve,Zürich\nsoufflé,Köln\n"
    df = load_table(write(tmp_path, "data.csv", text.encode("latin-1")))
    assert df["name"].tolist() == ["café", "naïve", "soufflé"]
    assert df["city"].tolist() == ["München", "Zürich", "Köln"]
    assert any("not UTF-8" in note for note in df.attrs["load_notes"])


def test_utf8_byte_order_mark_is_not_part_of_the_first_name(tmp_path):
    df = load_table(write(tmp_path, "data.csv", "\ufeffa,b\n1,2\n3,4\n".encode()))
    assert list(df.columns) == ["a", "b"]


def test_utf16_export_is_decoded(tmp_path):
    df = load_table(write(tmp_path, "data.txt", "a\tb\n1\t2\n3\t4\n".encode("utf-16")))
    assert df.to_dict("list") == {"a": [1, 3], "b": [2, 4]}


def test_rows_with_extra_values_are_left_out_with_count_and_line(tmp_path):
    path = write(tmp_path, "data.csv", "a,b,c\n1,2,3\n4,5,6,7\n8,9,10\n11,12,13\n")
    df = load_table(path)
    assert df["a"].tolist() == [1, 8, 11]
    note = next(n for n in df.attrs["load_notes"] if "could not be read" in n)
    assert "1 of 4 rows" in note and "line 3" in note


def _lines(n: int, line) -> str:
    return "".join(line(i) + "\n" for i in range(n))


@pytest.mark.parametrize("sep", [",", ";", "\t", " "])
def test_every_row_with_a_value_more_than_the_header_is_refused_not_truncated(tmp_path, sep):
    # pandas used to drop the fourth value of every row without a word.
    header = sep.join("abc")
    body = _lines(10, lambda i: sep.join(str(v) for v in (i, i * 2, i % 3, i * 5)))
    message = load_error(write(tmp_path, "data.csv", header + "\n" + body))
    assert "10 of 10 rows have more values than the header" in message
    assert "line 2: expected 3, found 4" in message
    assert "add it" in message  # what to do: name the extra column in the header


def test_a_first_row_with_an_extra_value_is_left_out_with_its_line_not_truncated(tmp_path):
    body = _lines(10, lambda i: f"{i},{i * 2},{i % 3}")
    df = load_table(write(tmp_path, "data.csv", "a,b,c\n1,2,3,99\n" + body))
    assert df["a"].tolist() == list(range(10))  # the row with 99 is not kept cut short
    assert list(df.columns) == ["a", "b", "c"]
    note = next(n for n in df.attrs["load_notes"] if "left out" in n)
    assert "1 of 11 rows have more values than the header" in note
    assert "line 2 of the file" in note and "found 4" in note


def test_long_rows_after_a_long_first_row_are_all_counted_with_their_lines(tmp_path):
    body = _lines(20, lambda i: f"{i},{i * 2},{i % 3}")
    text = "a,b,c\n\n1,2,3,4,5\n" + body + "7,8,9,10\n7,8,9,10,11,12\n"
    df = load_table(write(tmp_path, "data.csv", text))
    assert len(df) == 20 and df["a"].tolist() == list(range(20))
    note = next(n for n in df.attrs["load_notes"] if "left out" in n)
    assert "3 of 23 rows" in note and "line 3, 24, 25 of the file" in note


def test_trailing_separators_lose_nothing_and_need_no_note(tmp_path):
    body = _lines(10, lambda i: f"{i},{i * 2},{i % 3},")
    df = load_table(write(tmp_path, "data.csv", "a,b,c\n1,2,3,,\n" + body))
    assert len(df) == 11 and df["a"].tolist()[:2] == [1, 0]
    assert df.attrs["load_notes"] == []


def test_a_file_without_header_says_rows_are_longer_than_the_first(tmp_path):
    body = _lines(10, lambda i: f"{i},{i * 2},{i % 3}")
    df = load_table(write(tmp_path, "data.csv", body + "4,5,6,7\n"))
    note = next(n for n in df.attrs["load_notes"] if "left out" in n)
    assert "more values than the first row" in note and "line 11" in note


def test_mostly_unreadable_rows_raise_instead_of_loading_a_fragment(tmp_path):
    rows = "".join(f"{i},{i},{i},{i}\n" for i in range(10))
    message = load_error(write(tmp_path, "data.csv", "a,b\n1,2\n" + rows))
    assert "10 of 11 rows" in message and "separator" in message


def test_unclosed_quote_says_where_it_starts(tmp_path):
    message = load_error(write(tmp_path, "data.csv", 'a,b\n1,2\n3,4\n5,"x\n6,7\n'))
    assert "quote" in message and "data row 3" in message


def test_missing_file_is_a_data_error(tmp_path):
    assert "does not exist" in load_error(tmp_path / "nope.csv")


def test_old_xls_format_asks_to_save_as_xlsx(tmp_path):
    ole2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)
    message = load_error(write(tmp_path, "book.xls", ole2))
    assert ".xlsx" in message


def test_damaged_parquet_is_a_data_error(tmp_path):
    message = load_error(write(tmp_path, "data.parquet", b"PAR1 not really parquet"))
    assert "Parquet" in message


# --- delimiters and text variants ------------------------------------------------------------


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_delimited_text_round_trips(tmp_path, sep):
    frame = example_frame()
    path = tmp_path / "data.txt"
    frame.to_csv(path, sep=sep, index=False)
    df = load_table(path)
    pd.testing.assert_frame_equal(df, frame, check_dtype=False)


def test_tsv_with_commas_inside_values_uses_tabs(tmp_path):
    df = load_table(write(tmp_path, "data.tsv", "name\tnote\nx\ta, b\ny\tc, d\n"))
    assert df["note"].tolist() == ["a, b", "c, d"]


def test_semicolon_file_with_decimal_commas_reads_numbers(tmp_path):
    df = load_table(write(tmp_path, "data.csv", "a;b\n1,5;2\n2,25;3\n-3,0;4\n"))
    assert df["a"].tolist() == [1.5, 2.25, -3.0]
    assert any("decimal" in note for note in df.attrs["load_notes"])


def test_headerless_whitespace_file_gets_positional_names(tmp_path):
    path = write(tmp_path, "train.txt", "  1.0000  -0.5  2.5\n  2.0000   0.1  3.5\n")
    df = load_table(path)
    assert list(df.columns) == ["column_1", "column_2", "column_3"]
    assert df["column_1"].tolist() == [1.0, 2.0]
    assert any("no" in n.lower() or "not column names" in n for n in df.attrs["load_notes"])


def test_gzipped_csv_is_decompressed(tmp_path):
    raw = example_frame().to_csv(index=False).encode()
    df = load_table(write(tmp_path, "data.csv.gz", gzip.compress(raw)))
    assert df.shape == (4, 4)


# --- binary formats --------------------------------------------------------------------------


def test_parquet_round_trips(tmp_path):
    frame = example_frame()
    frame.to_parquet(tmp_path / "data.parquet")
    df = load_table(tmp_path / "data.parquet")
    pd.testing.assert_frame_equal(df, frame, check_dtype=False)
    assert df.attrs["file_format"] == "parquet"


def test_excel_round_trips_with_duplicate_headers_renamed(tmp_path):
    frame = example_frame()
    frame.columns = ["amount", "count", "city", "amount"]
    frame.to_excel(tmp_path / "data.xlsx", index=False)
    df = load_table(tmp_path / "data.xlsx")
    assert list(df.columns) == ["amount", "count", "city", "amount_2"]
    assert df["amount"].tolist() == [1.5, 2.25, -3.0, 4.0]
    assert df["amount_2"].tolist() == [0, 0, 1, 0]
    assert pd.api.types.is_numeric_dtype(df["count"])


def test_empty_rows_inside_an_excel_sheet_are_skipped_with_a_note(tmp_path):
    frame = pd.DataFrame({"a": [1.0, None, 3.0, None], "b": ["x", None, "z", None]})
    frame.to_excel(tmp_path / "data.xlsx", index=False)
    df = load_table(tmp_path / "data.xlsx")
    assert df["a"].tolist() == [1.0, 3.0]
    assert any("1 completely empty row" in note for note in df.attrs["load_notes"])


def test_npz_with_x_and_y_becomes_feature_columns_and_label(tmp_path):
    X = np.arange(12, dtype=float).reshape(4, 3)
    np.savez(tmp_path / "data.npz", X=X, y=np.array([0, 1, 0, 0]))
    df = load_table(tmp_path / "data.npz")
    assert list(df.columns) == ["x0", "x1", "x2", "label"]
    np.testing.assert_array_equal(df[["x0", "x1", "x2"]].to_numpy(), X)
    assert df["label"].tolist() == [0, 1, 0, 0]


def test_npz_with_an_object_array_is_refused_without_unpickling(tmp_path):
    np.savez(tmp_path / "data.npz", X=np.array([{"a": 1}, {"b": 2}], dtype=object))
    message = load_error(tmp_path / "data.npz")
    assert "Python objects" in message and "'X'" in message


def test_npz_with_three_dimensional_x_says_to_flatten(tmp_path):
    np.savez(tmp_path / "images.npz", X=np.zeros((5, 4, 4)))
    assert "reshape" in load_error(tmp_path / "images.npz")


def test_npz_with_labels_of_the_wrong_length_is_refused(tmp_path):
    np.savez(tmp_path / "data.npz", X=np.zeros((5, 2)), y=np.zeros(4))
    message = load_error(tmp_path / "data.npz")
    assert "do not match" in message and "5 rows" in message


def test_mat_file_in_odds_style_round_trips(tmp_path):
    X = np.random.default_rng(0).normal(size=(6, 2))
    savemat(tmp_path / "data.mat", {"X": X, "y": np.array([[0.0], [1.0], [0], [0], [0], [1]])})
    df = load_table(tmp_path / "data.mat")
    np.testing.assert_array_equal(df[["x0", "x1"]].to_numpy(), X)
    assert df["label"].tolist() == [0, 1, 0, 0, 0, 1]
    assert pd.api.types.is_integer_dtype(df["label"])


def test_mat_v73_file_asks_to_resave_as_v7_or_csv(tmp_path):
    # MATLAB v7.3 files are HDF5 with a 512-byte MATLAB header in front.
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024"
    content = header.ljust(512, b" ") + b"\x89HDF\r\n\x1a\n" + bytes(200)
    message = load_error(write(tmp_path, "data.mat", content))
    assert "v7.3" in message and "-v7" in message and "CSV" in message


# --- sources -----------------------------------------------------------------------------


def test_bytes_without_a_name_are_recognised_by_magic_bytes(tmp_path):
    buffer = io.BytesIO()
    example_frame().to_parquet(buffer)
    df = load_table(buffer.getvalue())
    assert df.shape == (4, 4) and df.attrs["file_format"] == "parquet"


def test_uploaded_file_object_uses_its_name(tmp_path):
    class Uploaded(io.BytesIO):
        name = "upload.tsv"

    upload = Uploaded(b"a\tb\n1\t2\n3\t4\n")
    upload.read()  # Streamlit may have read it before
    df = load_table(upload)
    assert df.to_dict("list") == {"a": [1, 3], "b": [2, 4]}


def test_excel_saved_with_a_csv_name_is_read_as_excel_with_a_note(tmp_path):
    example_frame().to_excel(tmp_path / "book.xlsx", index=False)
    path = write(tmp_path, "book.csv", (tmp_path / "book.xlsx").read_bytes())
    df = load_table(path)
    assert df.shape == (4, 4)
    assert any("Excel" in note for note in df.attrs["load_notes"])


def test_error_message_names_the_upload(tmp_path):
    with pytest.raises(DataError, match="report.csv"):
        load_table(b"", name="report.csv")


# --- reference data (../shared/data) --------------------------------------------------------


@needs_shared_data
def test_odds_cardio_mat_loads_with_its_anomaly_share():
    df = load_table(SHARED_DATA / "odds" / "cardio.mat")
    assert df.shape == (1831, 22)
    assert df["label"].mean() == pytest.approx(0.0961, abs=1e-3)


@needs_shared_data
def test_odds_thyroid_npz_loads():
    df = load_table(SHARED_DATA / "odds" / "thyroid.npz")
    assert df.shape == (3772, 7)
    assert df["label"].mean() == pytest.approx(0.0247, abs=1e-3)


@needs_shared_data
def test_ucr_whitespace_train_file_loads_without_header():
    df = load_table(SHARED_DATA / "ecg5000" / "ECG5000_TRAIN.txt")
    assert df.shape == (500, 141)
    assert set(df["column_1"].unique()) <= {1, 2, 3, 4, 5}


def test_reading_does_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    path = write(tmp_path, "data.csv", "a,b\n1,2\n3,4\n")
    monkeypatch.chdir(os.path.dirname(__file__))
    assert load_table(str(path)).shape == (2, 2)


def test_gzip_that_expands_beyond_the_ceiling_is_refused(monkeypatch):
    import gzip

    import pytest

    from ad_core.data import DataError, loaders

    monkeypatch.setattr(loaders, "MAX_DECOMPRESSED_BYTES", 10_000)
    bomb = gzip.compress(b"a,b\n" + b"1,2\n" * 50_000)  # 200 kB from about 1 kB
    with pytest.raises(DataError, match="expands to more than"):
        loaders.load_table(bomb, name="big.csv.gz")
    small = gzip.compress(b"a,b\n1,2\n3,4\n")
    assert loaders.load_table(small, name="ok.csv.gz").shape == (2, 2)


def test_a_large_csv_is_parsed_from_its_bytes_without_a_decoded_copy():
    """Reading a CSV holds the bytes and the frame, never a str copy of the whole file.

    A decoded str plus the StringIO pandas read it through were about 5x the file.
    """
    import tracemalloc

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        rng.normal(size=(60_000, 16)).round(6), columns=[f"x{i}" for i in range(16)]
    )
    data = frame.to_csv(index=False).encode()
    tracemalloc.start()
    try:
        loaded = load_table(data, name="big.csv")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert loaded.shape == frame.shape
    np.testing.assert_allclose(loaded.to_numpy(), frame.to_numpy())
    table = loaded.memory_usage(deep=True).sum()
    assert peak < len(data) + 2.5 * table, (peak / len(data), peak / table)


def test_a_stray_text_value_far_down_a_long_numeric_column_becomes_missing_with_a_note():
    """pandas reads long files in pieces; a piece with text in a numeric column is still merged."""
    n = 200_000
    values = np.arange(n, dtype=float).astype(str).astype(object)
    values[150_000] = "n/a?"
    data = pd.DataFrame({"x": values, "y": np.ones(n)}).to_csv(index=False).encode()
    frame = load_table(data, name="long.csv")
    assert pd.api.types.is_float_dtype(frame["x"].dtype)
    assert np.isnan(frame["x"].iloc[150_000]) and frame["x"].iloc[149_999] == 149_999.0
    assert any("'n/a?'" in note and "150001" in note for note in frame.attrs["load_notes"])
