"""A small tidy results table: one row per observation, exportable to CSV, JSON and Markdown.

[`ResultsTable`][ResultsTable] holds rows as plain dicts with a fixed column
order. It needs no
pandas (``pandas.DataFrame(table.rows)`` converts it when pandas is at hand) and writes
files that pandas, R and spreadsheets read directly.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from torchcross._io import atomic_write, read_regular_file

__all__ = ["ResultsTable"]


def _jsonable(value: Any) -> Any:
    """Plain JSON value: NaN/inf become ``None``, numpy/torch scalars become Python numbers."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _format_cell(value: Any, floatfmt: str) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else format(value, floatfmt)
    return str(value).replace("|", "\\|")


def _parse_csv_cell(text: str) -> Any:
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text in ("True", "False"):
        return text == "True"
    return text


def _write(text: str, path: str | Path | None) -> str:
    if path is not None:
        atomic_write(path, text)
    return text


class ResultsTable:
    """An ordered list of rows (dicts) sharing one list of columns.

    Args:
        rows: the rows; a missing column reads as ``None``.
        columns: column order; defaults to first appearance across ``rows``.

    Raises:
        TypeError: if a row is not a mapping.
        ValueError: if ``columns`` repeats a name or misses a key some row has.

    Examples:
        >>> t = ResultsTable([{"method": "mm-PT", "auroc": 0.8125}, {"method": "IM-PT", "auroc": 0.75}])
        >>> t.columns, len(t), t["auroc"]
        (['method', 'auroc'], 2, [0.8125, 0.75])
        >>> print(t.to_markdown(floatfmt=".3f"))
        | method | auroc |
        |:--|--:|
        | mm-PT | 0.812 |
        | IM-PT | 0.750 |
        >>> print(t.to_csv().strip())
        method,auroc
        mm-PT,0.8125
        IM-PT,0.75
    """

    def __init__(self, rows: Iterable[Mapping[str, Any]] = (), columns: Sequence[str] | None = None) -> None:
        self._rows: list[dict[str, Any]] = []
        seen: dict[str, None] = {}
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise TypeError(f"row {i} must be a mapping of column -> value, got {type(row).__name__}")
            self._rows.append(dict(row))
            for key in row:
                seen.setdefault(str(key), None)
        if columns is None:
            self._columns = list(seen)
        else:
            self._columns = [str(c) for c in columns]
            if len(set(self._columns)) != len(self._columns):
                raise ValueError(f"columns repeat a name: {self._columns}")
            missing = [c for c in seen if c not in self._columns]
            if missing:
                raise ValueError(f"rows have keys {missing} that are not in columns {self._columns}")
        for row in self._rows:
            for c in self._columns:
                row.setdefault(c, None)

    # -- access ------------------------------------------------------------------------------------------
    @property
    def columns(self) -> list[str]:
        """The column names, in order."""
        return list(self._columns)

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The rows as fresh dicts (edit freely)."""
        return [{c: row[c] for c in self._columns} for row in self._rows]

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            return self.column(key)
        return {c: self._rows[key][c] for c in self._columns}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ResultsTable):
            return NotImplemented
        return self._columns == other._columns and self.rows == other.rows

    def __repr__(self) -> str:
        return f"ResultsTable({len(self)} rows, columns={self._columns})"

    def column(self, name: str) -> list[Any]:
        """The values of one column.

        Raises:
            KeyError: naming the columns that exist.
        """
        if name not in self._columns:
            raise KeyError(f"no column {name!r}; columns are {self._columns}")
        return [row[name] for row in self._rows]

    def where(self, **equals: Any) -> ResultsTable:
        """Rows whose columns equal the given values (``table.where(method="mm-PT")``)."""
        for name in equals:
            if name not in self._columns:
                raise KeyError(f"no column {name!r}; columns are {self._columns}")
        kept = [r for r in self._rows if all(r[k] == v for k, v in equals.items())]
        return ResultsTable(kept, self._columns)

    @staticmethod
    def concat(tables: Iterable[ResultsTable]) -> ResultsTable:
        """Stack tables; columns are the union in order of first appearance."""
        rows: list[dict[str, Any]] = []
        columns: dict[str, None] = {}
        for t in tables:
            if not isinstance(t, ResultsTable):
                raise TypeError(f"concat takes ResultsTable objects, got {type(t).__name__}")
            columns.update(dict.fromkeys(t.columns))
            rows.extend(t.rows)
        return ResultsTable(rows, list(columns))

    # -- export ------------------------------------------------------------------------------------------
    def to_records(self) -> list[dict[str, Any]]:
        """Rows as JSON-ready dicts (NaN becomes ``None``)."""
        return [{c: _jsonable(row[c]) for c in self._columns} for row in self._rows]

    def to_csv(self, path: str | Path | None = None) -> str:
        """CSV text with a header row (missing values and NaN are empty cells); written to ``path``."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self._columns)
        for rec in self.to_records():
            writer.writerow(["" if rec[c] is None else rec[c] for c in self._columns])
        return _write(buf.getvalue(), path)

    def to_json(self, path: str | Path | None = None, indent: int | None = 2) -> str:
        """A JSON array of row objects (strict JSON: NaN becomes ``null``); written to ``path`` if given."""
        return _write(json.dumps(self.to_records(), indent=indent, allow_nan=False) + "\n", path)

    def to_markdown(self, path: str | Path | None = None, floatfmt: str = ".4f") -> str:
        """A GitHub-flavoured Markdown table (numbers right-aligned); written to ``path`` if given."""
        numeric = {
            c: all(
                isinstance(r[c], (int, float)) and not isinstance(r[c], bool)
                for r in self._rows
                if r[c] is not None
            )
            for c in self._columns
        }
        lines = ["| " + " | ".join(self._columns) + " |"]
        lines.append("|" + "|".join("--:" if numeric[c] else ":--" for c in self._columns) + "|")
        for row in self._rows:
            lines.append("| " + " | ".join(_format_cell(row[c], floatfmt) for c in self._columns) + " |")
        return _write("\n".join(lines), path)

    # -- import ------------------------------------------------------------------------------------------
    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> ResultsTable:
        """Build a table from JSON-style records (``None`` stays ``None``)."""
        return cls(records)

    @classmethod
    def read_json(cls, path: str | Path) -> ResultsTable:
        """Read a table written by [`to_json()`][ResultsTable.to_json].

        Raises:
            ValueError: naming the file: it is not UTF-8 JSON (e.g. cut short), does not hold
                a JSON array of objects, or is a FIFO, device or directory (never read).
            OSError: it cannot be read (e.g. ``FileNotFoundError``).
        """
        text = _read_text(path, "JSON results file")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"JSON results file {str(path)!r} is not valid JSON ({exc.msg} at line {exc.lineno}, "
                f"column {exc.colno}): it was cut short or damaged; write it again (to_json())"
            ) from None
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise ValueError(f"{path} does not hold a JSON array of row objects")
        return cls(data)

    @classmethod
    def read_csv(cls, path: str | Path) -> ResultsTable:
        """Read a table written by [`to_csv()`][ResultsTable.to_csv] (numbers
        parsed back, empty cells become ``None``).

        Raises:
            ValueError: naming the file (and row): not UTF-8 CSV, empty, a row with more cells
                than the header, or a FIFO, device or directory (never read).
            OSError: it cannot be read (e.g. ``FileNotFoundError``).
        """
        text = _read_text(path, "CSV results file")
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            header = next(reader, None)
            if header is None:
                raise ValueError(f"{path} is empty; expected a CSV header row")
            rows = []
            for line in reader:
                if len(line) > len(header):
                    raise ValueError(
                        f"CSV results file {str(path)!r}, line {reader.line_num}: {len(line)} cells, but the "
                        f"header has {len(header)}; the file is damaged: write it again (to_csv())"
                    )
                rows.append(dict(zip(header, (_parse_csv_cell(v) for v in line))))
        except csv.Error as exc:
            raise ValueError(
                f"CSV results file {str(path)!r}, line {reader.line_num}: {exc}; the file is damaged: "
                "write it again (to_csv())"
            ) from None
        return cls(rows, header)


def _read_text(path: str | Path, what: str) -> str:
    """The UTF-8 text of a regular file (a FIFO or a device is refused, never read)."""
    raw = read_regular_file(path, what)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{what} {str(path)!r} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
            "the file is damaged or not a results file: write it again"
        ) from None
