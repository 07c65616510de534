"""Training curves: a two-method logger interface with CSV and TensorBoard back-ends.

Anything with ``log_metrics(step, metrics)`` and ``close()`` is a ``MetricsLogger``;
``torchcross.protocol.training.train_steps`` (and so ``torchcross run``) logs each
step's loss to one, and a hand-written training loop can use the same loggers.

* ``CSVLogger`` appends one row per step to a CSV file (``step`` then the metrics
  of the first row). Each row is one write, flushed at once; opened again (a resumed
  run), it keeps the rows before the first step logged anew and drops the others, so
  no step appears twice.
* ``TensorBoardLogger`` writes scalars with ``torch.utils.tensorboard``; it needs
  ``tensorboard`` (``pip install "torchcross[tensorboard]"``), imported on first use.

Examples:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "curves.csv")
    >>> with CSVLogger(path) as logger:
    ...     for step in range(1, 4):
    ...         logger.log_metrics(step, {"loss": 1.0 / step})
    >>> print(Path(path).read_text().strip())
    step,loss
    1,1.0
    2,0.5
    3,0.3333333333333333
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

from torchcross._checks import check_int

__all__ = ["CSVLogger", "MetricsLogger", "TensorBoardLogger"]


@runtime_checkable
class MetricsLogger(Protocol):
    """Receives scalar metrics per step (``step`` counts updates, from 1)."""

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None: ...

    def close(self) -> None: ...


def _check_metrics(metrics: Any) -> dict[str, float]:
    if not isinstance(metrics, Mapping) or not metrics:
        raise TypeError(f"metrics must be a non-empty mapping of name -> number, got {metrics!r}")
    out = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"metric names must be non-empty strings, got {name!r}")
        try:
            out[name] = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"metric {name!r} must be a number, got {value!r}") from None
    return out


class _Closing:
    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class CSVLogger(_Closing):
    """One CSV row per logged step: ``step`` and the metrics, columns fixed by the first row.

    Args:
        path: the CSV file (its folder is created).
        resume: keep the rows of an existing file (those before the first step logged
            now); ``False`` starts the file afresh.

    Raises:
        ValueError: on a later row with a metric the header lacks, or an existing file
            that is not a curve CSV (no ``step`` column).
    """

    def __init__(self, path: str | os.PathLike[str], *, resume: bool = True) -> None:
        self.path = Path(path)
        self._columns: list[str] | None = None
        self._kept: list[list[str]] | None = None  # rows of an existing file, until the first log
        self._fh: io.TextIOWrapper | None = None
        self._closed = False
        if resume and self.path.is_file():
            self._read_existing()

    def _read_existing(self) -> None:
        fix = "delete it or move it away (a new curve is started), or pass resume=False"
        try:
            text = self.path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"training-curve CSV {str(self.path)!r} is not UTF-8 text ({exc.reason} at byte "
                f"{exc.start}): it is damaged; {fix}"
            ) from None
        if not text.endswith("\n"):  # a row cut short by a crash: drop it
            text = text[: text.rfind("\n") + 1]
        try:
            rows = list(csv.reader(io.StringIO(text)))
        except csv.Error as exc:
            raise ValueError(f"training-curve CSV {str(self.path)!r} is damaged ({exc}); {fix}") from None
        if not rows:
            return
        if not rows[0] or rows[0][0] != "step":
            raise ValueError(
                f"{self.path} is not a training-curve CSV (its first column is not 'step'); "
                "move it away or pass resume=False"
            )
        for line, row in enumerate(rows[1:], start=2):
            if row and not (row[0].isascii() and row[0].isdigit()):
                raise ValueError(
                    f"training-curve CSV {str(self.path)!r}, line {line}: the step {row[0][:20]!r} is not a "
                    f"whole number: the file is damaged; {fix}"
                )
        self._columns = rows[0][1:]
        self._kept = rows[1:]

    def _open(self, first_step: int, columns: list[str]) -> io.TextIOWrapper:
        """Write the header and the kept rows (in one rename), then open the file for appending."""
        kept = [r for r in self._kept or [] if r and int(r[0]) < first_step]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(["step", *columns])
            writer.writerows(kept)
        os.replace(tmp, self.path)
        self._kept = None
        return open(self.path, "a", newline="", encoding="utf-8")

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        """Append the row of ``step`` (written and flushed at once)."""
        if self._closed:
            raise ValueError(f"log_metrics on a closed CSVLogger ({self.path})")
        step = check_int(step, "step", 0)
        values = _check_metrics(metrics)
        columns = self._columns if self._columns is not None else list(values)
        extra = [k for k in values if k not in columns]
        if extra:
            raise ValueError(
                f"metrics {extra} are not columns of {self.path} (its columns, fixed by the first row, are "
                f"{columns}); log them to another CSVLogger"
            )
        if self._fh is None:
            self._columns = columns
            self._fh = self._open(step, columns)
        cells = [str(step)]
        for name in columns:
            value = values.get(name, math.nan)
            cells.append("" if math.isnan(value) else repr(value))
        self._fh.write(",".join(cells) + "\n")
        self._fh.flush()

    def close(self) -> None:
        """Close the file (logging afterwards is an error)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self._closed = True


def _summary_writer() -> Any:
    try:
        import tensorboard  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            'TensorBoardLogger needs the tensorboard package: pip install "torchcross[tensorboard]"'
        ) from exc
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter


class TensorBoardLogger(_Closing):
    """Scalars for TensorBoard (``tensorboard --logdir LOG_DIR``), one tag per metric.

    The event file is opened at the first ``log_metrics``; earlier events of the
    same folder at that step or later are marked as superseded (TensorBoard's
    ``purge_step``), so a resumed run shows each step once.

    Args:
        log_dir: folder of the event files.
        prefix: put in front of every tag (e.g. ``"train/"``).

    Raises:
        ImportError: without ``tensorboard`` (naming the ``torchcross[tensorboard]`` extra).
    """

    def __init__(self, log_dir: str | os.PathLike[str], *, prefix: str = "") -> None:
        self._writer_cls = _summary_writer()
        self.log_dir = Path(log_dir)
        self.prefix = prefix
        self._writer: Any = None
        self._closed = False

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        """Write one scalar per metric at ``step`` (flushed)."""
        if self._closed:
            raise ValueError(f"log_metrics on a closed TensorBoardLogger ({self.log_dir})")
        step = check_int(step, "step", 0)
        values = _check_metrics(metrics)
        if self._writer is None:
            self._writer = self._writer_cls(log_dir=str(self.log_dir), purge_step=step)
        for name, value in values.items():
            self._writer.add_scalar(self.prefix + name, value, step)
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._closed = True
