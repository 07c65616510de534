"""Atomic writes, full disks, folder locks and stale temporary files (torchcross._io and its users)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch
from reliability_helpers import temp_files

from torchcross import _io
from torchcross._io import FolderInUseError, atomic_write, lock_folder, remove_stale_temp_files
from torchcross.data import TensorTaskSource
from torchcross.data.metadataset import EpisodeSet, sample_episode_set
from torchcross.evaluation.results import ResultsTable
from torchcross.protocol.training import train_steps
from torchcross.tasks.task import TaskDescription


def _disk_full(monkeypatch: pytest.MonkeyPatch, when: str = "") -> None:
    """Every atomic write whose temporary file name contains ``when`` fails as on a full disk."""
    real = _io._fsync_file

    def fsync(path: Path) -> None:
        if when in path.name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path)

    monkeypatch.setattr(_io, "_fsync_file", fsync)


@pytest.mark.parametrize("data", ["new text", b"new bytes", lambda tmp: tmp.write_text("new by writer")])
def test_disk_full_leaves_the_old_file_and_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: object
) -> None:
    target = tmp_path / "results.json"
    target.write_text("old")
    _disk_full(monkeypatch)
    with pytest.raises(
        OSError, match=r"cannot write .*results\.json.*left as it was; free some space"
    ) as exc:
        atomic_write(target, data)  # type: ignore[arg-type]
    assert exc.value.errno == errno.ENOSPC
    assert target.read_text() == "old"
    assert temp_files(tmp_path) == []


def test_a_failing_writer_leaves_no_temporary_file(tmp_path: Path) -> None:
    def boom(tmp: Path) -> None:
        tmp.write_text("half")
        raise KeyboardInterrupt("stopped while writing")

    with pytest.raises(KeyboardInterrupt, match="stopped while writing"):
        atomic_write(tmp_path / "x.txt", boom)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(TypeError, match="data must be str, bytes or a function"):
        atomic_write(tmp_path / "x.txt", 3)  # type: ignore[arg-type]


def test_temporary_names_are_unique_and_keep_the_suffix(tmp_path: Path) -> None:
    names = {_io.temp_name(tmp_path / "auroc.png").name for _ in range(20)}
    assert len(names) == 20
    assert all(n.startswith(".auroc.png.tmp-") and n.endswith(".png") for n in names)


def test_results_tables_and_episode_sets_survive_a_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = ResultsTable([{"method": "a", "auroc": 0.5}])
    d = TaskDescription("BINARY_CLASSIFICATION", {0: "n", 1: "y"}, "toy")
    source = TensorTaskSource(torch.zeros(20, 2), torch.arange(20) % 2, d)
    episodes = sample_episode_set(source, 2, 2, 2)
    table.to_csv(tmp_path / "t.csv")
    episodes.save(tmp_path / "e.json")
    old_csv, old_json = (tmp_path / "t.csv").read_text(), (tmp_path / "e.json").read_text()
    _disk_full(monkeypatch)
    with pytest.raises(OSError, match=r"t\.csv"):
        ResultsTable([{"method": "b", "auroc": 0.7}]).to_csv(tmp_path / "t.csv")
    with pytest.raises(OSError, match=r"e\.json"):
        sample_episode_set(source, 3, 2, 2).save(tmp_path / "e.json")
    assert (tmp_path / "t.csv").read_text() == old_csv
    assert (tmp_path / "e.json").read_text() == old_json
    assert len(EpisodeSet.load(tmp_path / "e.json", source)) == 2


def test_a_full_disk_while_checkpointing_keeps_the_last_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def step(x: torch.Tensor) -> torch.Tensor:
        loss = model(x).pow(2).mean()
        loss.backward()
        return loss

    ckpt = tmp_path / "c.pt"
    train_steps(model, opt, step, lambda: iter([torch.ones(1, 2)] * 9), 2, checkpoint=ckpt, progress=False)
    before = ckpt.read_bytes()
    _disk_full(monkeypatch)
    with pytest.raises(OSError, match=r"cannot write .*c\.pt"):
        train_steps(
            model, opt, step, lambda: iter([torch.ones(1, 2)] * 9), 4, checkpoint=ckpt, progress=False
        )
    assert ckpt.read_bytes() == before
    assert temp_files(tmp_path) == []


def test_stale_temporary_files_of_dead_processes_are_removed(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    dead = tmp_path / "sub" / ".results.json.tmp-999999999-0123abcd.json"
    mine = tmp_path / f".results.json.tmp-{os.getpid()}-0123abcd.json"
    other = tmp_path / ".notes.tmp"
    for p in (dead, mine, other):
        p.write_text("{")
    assert remove_stale_temp_files(tmp_path, ["results.json"]) == []  # not recursive by default
    assert remove_stale_temp_files(tmp_path, ["*.json"], recursive=True) == [dead]
    assert mine.exists()
    assert other.exists()
    assert remove_stale_temp_files(tmp_path / "missing", ["*.json"]) == []


def test_a_locked_folder_is_refused_with_the_holders_process_id(tmp_path: Path) -> None:
    with (
        lock_folder(tmp_path),
        pytest.raises(
            FolderInUseError,
            match=rf"output folder .*in use by another torchcross run \(process {os.getpid()}\)",
        ),
        lock_folder(tmp_path),
    ):
        pass
    with lock_folder(tmp_path):  # released
        pass
    assert (tmp_path / ".torchcross.lock").read_text() == ""
