"""Reading telemetry files: delimiters, decimal commas and header lines sniffed; Parquet; files that are
neither refused before anything starts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from driftloop.replay.errors import ReplayError
from driftloop.replay.loading import CsvDialect, read_table, sniff_csv


@pytest.mark.parametrize(
    ("text", "dialect"),
    [
        ("t,temp,state\n1,20.5,ok\n2,21.0,hot\n", CsvDialect(",", ".", True)),
        ("t;temp;state\n1;20,5;ok\n2;21,0;hot\n", CsvDialect(";", ",", True)),
        ("t;temp\n1;20.5\n2;21.0\n", CsvDialect(";", ".", True)),
        ("t\ttemp\tstate\n1\t20,5\tok\n2\t21\thot\n", CsvDialect("\t", ",", True)),
        ("1,20.5,ok\n2,21.0,hot\n", CsvDialect(",", ".", False)),
        ('t,note,temp\n1,"a, b",20.5\n2,"c",21\n', CsvDialect(",", ".", True)),
    ],
    ids=["comma", "semicolon-decimal-comma", "semicolon", "tab-decimal-comma", "no-header", "quoted"],
)
def test_sniffs_delimiter_decimal_mark_and_header(text: str, dialect: CsvDialect) -> None:
    assert sniff_csv(text) == dialect


@pytest.mark.parametrize("sep", [",", ";", "\t"])
def test_reads_each_delimiter_to_the_same_numbers(tmp_path: Path, sep: str) -> None:
    decimal = "," if sep != "," else "."
    rows = [["t", "temp", "state"], ["1", f"20{decimal}5", "ok"], ["2", f"-1{decimal}25", "hot"]]
    path = tmp_path / "plant.csv"
    path.write_text("\n".join(sep.join(r) for r in rows) + "\n")
    table = read_table(path)
    assert list(table.columns) == ["t", "temp", "state"]
    assert table["temp"].tolist() == [20.5, -1.25]
    assert table["state"].tolist() == ["ok", "hot"]


def test_a_file_without_header_gets_numbered_or_given_names(tmp_path: Path) -> None:
    path = tmp_path / "elec.csv"
    path.write_text("0,2,0.05,UP\n0,2,0.04,DOWN\n")
    assert list(read_table(path).columns) == ["col1", "col2", "col3", "col4"]
    named = read_table(path, names=["date", "day", "price", "class"])
    assert named["class"].tolist() == ["UP", "DOWN"]
    with pytest.raises(ReplayError, match=r"--names gives 2 names but .* has 4 columns"):
        read_table(path, names=["a", "b"])
    forced = read_table(path, header=True)  # the user says the first line is a header
    assert len(forced) == 1


def test_reads_parquet(tmp_path: Path) -> None:
    path = tmp_path / "plant.parquet"
    pd.DataFrame({"t": [1, 2], "temp": [20.5, 21.0]}).to_parquet(path)
    assert read_table(path)["temp"].tolist() == [20.5, 21.0]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("image.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is not a CSV or Parquet file .*binary"),
        ("fake.parquet", b"t,temp\n1,2\n", "named .parquet but is not a Parquet file"),
        ("prose.txt", b"Dear operator\nthe pump is fine, mostly\nregards\n", "is not a CSV or Parquet file"),
        ("empty.csv", b"", "is empty"),
    ],
)
def test_a_file_that_is_not_csv_or_parquet_is_refused(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ReplayError, match=message):
        read_table(path)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="does not exist"):
        read_table(tmp_path / "nope.csv")
