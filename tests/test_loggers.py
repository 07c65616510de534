"""Training-curve loggers: files written and read back (CSV by the csv module, TensorBoard by its reader)."""

from __future__ import annotations

import builtins
import csv
import math
from pathlib import Path

import pytest

from torchcross.evaluation.loggers import CSVLogger, MetricsLogger, TensorBoardLogger
from torchcross.evaluation.results import ResultsTable


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_csv_logger_writes_a_header_from_the_first_row(tmp_path: Path) -> None:
    path = tmp_path / "curves" / "run.csv"  # the folder is created
    with CSVLogger(path) as logger:
        assert isinstance(logger, MetricsLogger)
        logger.log_metrics(1, {"loss": 2.5, "accuracy": 0.25})
        logger.log_metrics(2, {"loss": 1.5})  # a missing metric is an empty cell
        logger.log_metrics(3, {"accuracy": 0.75, "loss": math.nan})
    assert _rows(path) == [
        {"step": "1", "loss": "2.5", "accuracy": "0.25"},
        {"step": "2", "loss": "1.5", "accuracy": ""},
        {"step": "3", "loss": "", "accuracy": "0.75"},
    ]
    table = ResultsTable.read_csv(path)
    assert table["step"] == [1, 2, 3]
    assert table["loss"] == [2.5, 1.5, None]


def test_csv_logger_resumes_without_duplicating_steps(tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    with CSVLogger(path) as logger:
        for step in range(1, 6):
            logger.log_metrics(step, {"loss": float(step)})
    # a resumed run restarts from its checkpoint at step 3: steps 4 and 5 are logged again
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("6,6.")  # and a crash cut the last row short
    with CSVLogger(path) as logger:
        for step in range(4, 8):
            logger.log_metrics(step, {"loss": 10.0 * step})
    rows = _rows(path)
    assert [r["step"] for r in rows] == ["1", "2", "3", "4", "5", "6", "7"]
    assert [float(r["loss"]) for r in rows] == [1, 2, 3, 40, 50, 60, 70]
    assert not path.with_name("run.csv.tmp").exists()
    with CSVLogger(path, resume=False) as logger:
        logger.log_metrics(1, {"loss": 0.5, "lr": 0.1})
    assert _rows(path) == [{"step": "1", "loss": "0.5", "lr": "0.1"}]
    CSVLogger(path).close()  # opened and closed without logging: the file is left as it is
    assert len(_rows(path)) == 1


def test_csv_logger_errors(tmp_path: Path) -> None:
    logger = CSVLogger(tmp_path / "a.csv")
    logger.log_metrics(1, {"loss": 1.0})
    with pytest.raises(ValueError, match=r"metrics \['lr'\] are not columns of .*\['loss'\]"):
        logger.log_metrics(2, {"loss": 1.0, "lr": 0.1})
    with pytest.raises(TypeError, match="metric 'loss' must be a number"):
        logger.log_metrics(2, {"loss": "low"})
    with pytest.raises(TypeError, match="non-empty mapping"):
        logger.log_metrics(2, {})
    with pytest.raises(TypeError, match="step must be an int"):
        logger.log_metrics(2.5, {"loss": 1.0})  # type: ignore[arg-type]
    logger.close()
    with pytest.raises(ValueError, match="closed CSVLogger"):
        logger.log_metrics(3, {"loss": 1.0})
    other = tmp_path / "other.csv"
    other.write_text("method,auroc\na,0.5\n")
    with pytest.raises(ValueError, match="is not a training-curve CSV"):
        CSVLogger(other)


def test_tensorboard_logger_writes_readable_events(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with TensorBoardLogger(tmp_path / "tb", prefix="train/") as logger:
        assert isinstance(logger, MetricsLogger)
        for step in range(1, 4):
            logger.log_metrics(step, {"loss": 1.0 / step, "accuracy": 0.25 * step})
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert sorted(events.Tags()["scalars"]) == ["train/accuracy", "train/loss"]
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [1, 2, 3]
    assert [e.value for e in loss] == pytest.approx([1.0, 0.5, 1 / 3])
    with pytest.raises(ValueError, match="closed TensorBoardLogger"):
        logger.log_metrics(4, {"loss": 0.1})
    # resumed from step 2: steps 2 and 3 are logged again and shown once
    with TensorBoardLogger(tmp_path / "tb", prefix="train/") as logger:
        for step in range(2, 5):
            logger.log_metrics(step, {"loss": 10.0 * step})
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [
        (1, 1.0),
        (2, 20.0),
        (3, 30.0),
        (4, 40.0),
    ]
    TensorBoardLogger(tmp_path / "empty").close()
    assert not (tmp_path / "empty").exists()  # nothing logged, nothing written


def test_tensorboard_logger_names_the_extra_when_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def no_tensorboard(name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name == "tensorboard" or name.startswith("tensorboard."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(ImportError, match=r"pip install \"torchcross\[tensorboard\]\""):
        TensorBoardLogger(tmp_path / "tb")
