"""Shared pieces of the fault-injection tests: a tiny protocol config, result comparison, file checks."""

from __future__ import annotations

import csv
import json
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torchcross.datasets.medimeta import write_synthetic_medimeta
from torchcross.protocol.config import ProtocolConfig, config_from_dict
from torchcross.protocol.run import ProtocolResult


def small_root(root: Path) -> Path:
    """A data root with two small grey datasets: ``src`` (source tasks) and ``tgt`` (the target)."""
    for i, name in enumerate(("src", "tgt")):
        write_synthetic_medimeta(root, name, num_images=100, image_size=16, channels=1, seed=i)
    return root


def tiny_config(root: Path, out: Path, **sections: dict[str, Any]) -> ProtocolConfig:
    """A protocol run of a second or two on :func:`small_root`: target ``tgt/abnormal``, source
    ``src/class``, scratch (IM-PT from a random init) and mm-PT, checkpoints every 2 steps."""
    raw: dict[str, dict[str, Any]] = {
        "data": {
            "root": str(root),
            "targets": ["tgt/abnormal"],
            "sources": ["src/class"],
            "target_split": "test",
            "source_split": "train",
            "min_class_size": 0,
        },
        "evaluation": {"n_episodes": 3, "methods": ["IM-PT", "mm-PT"], "n_shot": 2, "n_query": 3},
        "backbone": {"name": "conv4", "hidden": 4, "weights": "random"},
        "augmentation": {"enabled": False},
        "pretrain": {"steps": 4, "batch_size": 8, "patience": 0},
        "maml": {
            "steps": 2,
            "meta_batch_size": 2,
            "inner_steps": 1,
            "first_order": True,
            "n_query": 2,
            "min_class_size": 0,  # the tiny sources' classes are smaller than the paper's 40
            "patience": 0,
        },
        "finetune": {"steps": 2, "freeze_backbone": True, "batch_norm": "frozen"},
        "run": {"out_dir": str(out), "plot": False, "num_threads": 1, "checkpoint_every": 2},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return config_from_dict(raw)


def scores(result: ProtocolResult) -> list[dict[str, Any]]:
    """The per-episode records without timings (equal for an interrupted and an uninterrupted run)."""
    return [{k: v for k, v in r.items() if k != "train_seconds"} for r in result.episodes.to_records()]


def temp_files(folder: Path) -> list[Path]:
    """Temporary files of atomic writes under ``folder``."""
    return [p for p in folder.rglob(".*.tmp-*") if p.is_file()]


def check_no_partial_files(out: Path) -> None:
    """Each file written under ``out`` is whole (JSON parses, CSV has a header, checkpoints load)."""
    from torchcross.protocol.training import load_checkpoint

    for path in out.rglob("*"):
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".csv" and "curves" in path.relative_to(out).parts:
            # training curves are appended row by row: a kill may cut the last row, which the
            # CSVLogger drops when the run resumes; the header is written in one rename
            with open(path, newline="", encoding="utf-8") as fh:
                assert next(csv.reader(fh))[0] == "step", path
        elif path.suffix == ".csv":
            with open(path, newline="", encoding="utf-8") as fh:
                rows = list(csv.reader(fh))
            assert rows, path
            assert rows[0][0] in ("method", "target"), path  # a header, then whole rows
            assert all(len(row) == len(rows[0]) for row in rows), path
        elif path.suffix == ".md":
            assert path.read_text(encoding="utf-8").startswith("| method"), path
        elif path.suffix == ".pt":
            import torch

            state = torch.load(path, weights_only=True)
            load_checkpoint(path, state["fingerprint"])


@contextmanager
def no_hang(seconds: int = 30) -> Iterator[None]:
    """Fail (instead of hanging the suite) if the block blocks longer than ``seconds``."""

    def fail(signum: int, frame: Any) -> None:
        raise TimeoutError(f"blocked for {seconds} s")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
