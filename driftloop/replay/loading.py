"""Read a telemetry file: Parquet, or CSV whose delimiter (comma, semicolon, tab), decimal mark (``.`` or
``,``) and header line are sniffed from its first lines.

Sniffing rules, in order:
- the delimiter is the first of tab, semicolon, comma that splits every sampled line into the same
  number (> 1) of fields (a semicolon file with decimal commas splits evenly on commas too, so commas
  come last);
- the decimal mark is ``,`` when the delimiter is not a comma and some field looks like ``12,5``;
- the first line is a header when none of its fields is a number and the second line has one. A file
  without a header gets columns ``col1``, ``col2``, ... unless ``names`` are given.

>>> sniff_csv("a;b\\n1,5;2\\n3,0;4\\n")
CsvDialect(delimiter=';', decimal=',', header=True)
>>> sniff_csv("0,2,UP\\n0,3,DOWN\\n")
CsvDialect(delimiter=',', decimal='.', header=False)
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from driftloop.replay.errors import ReplayError

PARQUET_SUFFIXES = {".parquet", ".pq"}
CSV_SUFFIXES = {".csv", ".tsv", ".txt"}
DELIMITERS = ("\t", ";", ",")
SAMPLE_BYTES = 64 * 1024
SAMPLE_LINES = 50
_NUMBER = re.compile(r"^\s*[-+]?(\d+([.,]\d*)?|[.,]\d+)([eE][-+]?\d+)?\s*$")
_DECIMAL_COMMA = re.compile(r"^\s*[-+]?\d*,\d+([eE][-+]?\d+)?\s*$")


@dataclass(frozen=True)
class CsvDialect:
    delimiter: str
    decimal: str
    header: bool


def read_table(path: Path, *, header: bool | None = None, names: Sequence[str] = ()) -> pd.DataFrame:
    """The file as a table. ``header`` None: sniffed (CSV); ``names`` name a header-less file's columns."""
    if not path.is_file():
        raise ReplayError(f"{path} does not exist or is not a file: pass a CSV or Parquet file")
    with path.open("rb") as f:
        head = f.read(SAMPLE_BYTES)
    if head.startswith(b"PAR1"):
        return _read_parquet(path, names)
    if path.suffix.lower() in PARQUET_SUFFIXES:
        raise ReplayError(f"{path} is named .parquet but is not a Parquet file (no PAR1 magic bytes)")
    if b"\x00" in head:
        raise ReplayError(
            f"{path} is not a CSV or Parquet file (it holds binary data): pass a CSV or Parquet"
        )
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = head.decode("latin-1")
    dialect = sniff_csv(text, source=str(path))
    if header is not None:
        dialect = CsvDialect(dialect.delimiter, dialect.decimal, header)
    try:
        table = pd.read_csv(
            path,
            sep=dialect.delimiter,
            decimal=dialect.decimal,
            header=0 if dialect.header else None,
            encoding_errors="replace",
        )
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise ReplayError(f"cannot read {path} as CSV ({_describe(dialect)}): {exc}") from exc
    if not dialect.header:
        table.columns = _names(names, table.shape[1], path)
    elif names:
        raise ReplayError(f"{path} has a header line; --names is only for files without one")
    table.columns = [str(c).strip() for c in table.columns]
    return table


def sniff_csv(text: str, source: str = "the file") -> CsvDialect:
    """The delimiter, decimal mark and header of CSV text (its first lines)."""
    lines = [line for line in text.splitlines()[:SAMPLE_LINES] if line.strip()]
    if len(text) >= SAMPLE_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the sample may end mid-line
    if not lines:
        raise ReplayError(f"{source} is empty: pass a CSV with a header line and rows, or a Parquet file")
    for delimiter in DELIMITERS:
        rows = list(csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter))
        widths = {len(r) for r in rows}
        if len(widths) == 1 and widths.pop() > 1:
            fields = [f for r in rows for f in r]
            decimal = "," if delimiter != "," and any(_DECIMAL_COMMA.match(f) for f in fields) else "."
            header = not any(_NUMBER.match(f) for f in rows[0]) and (
                len(rows) == 1 or any(_NUMBER.match(f) for f in rows[1])
            )
            return CsvDialect(delimiter, decimal, header)
    raise ReplayError(
        f"{source} is not a CSV or Parquet file: no comma, semicolon or tab splits its first lines into "
        "the same number of columns; pass a CSV (one row per line, the same columns on each) or Parquet"
    )


def _read_parquet(path: Path, names: Sequence[str]) -> pd.DataFrame:
    if names:
        raise ReplayError(f"{path} is Parquet: its columns are named already; drop --names")
    try:
        table = pd.read_parquet(path)
    except (ValueError, OSError, ImportError) as exc:
        raise ReplayError(f"cannot read {path} as Parquet: {exc}") from exc
    table.columns = [str(c) for c in table.columns]
    return table


def _names(names: Sequence[str], width: int, path: Path) -> list[str]:
    if not names:
        return [f"col{i + 1}" for i in range(width)]
    if len(names) != width:
        raise ReplayError(f"--names gives {len(names)} names but {path} has {width} columns: name each one")
    return [str(n) for n in names]


def _describe(dialect: CsvDialect) -> str:
    delimiter = {"\t": "tab", ";": "semicolon", ",": "comma"}[dialect.delimiter]
    return f"{delimiter}-separated, decimal {dialect.decimal!r}, header {'yes' if dialect.header else 'no'}"
