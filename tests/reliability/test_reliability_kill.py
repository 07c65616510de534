"""Kills at every write: the protocol and the MedIMeta writer, SIGKILLed in forked child processes.

A run killed at any moment leaves only whole files; the next run resumes to the results of
an uninterrupted run. A dataset being replaced is, after any kill, the old one or the new
one (a kill between the renames leaves both hidden, and the next write puts the old back).
"""

from __future__ import annotations

import multiprocessing
import os
import random
import re
import shutil
import signal
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from reliability_helpers import check_no_partial_files, scores, small_root, temp_files, tiny_config

from torchcross.datasets.medimeta import MedIMeta, scan_datasets, validate_medimeta, write_synthetic_medimeta
from torchcross.datasets.medimeta.paths import clean_writer_leftovers
from torchcross.protocol import run_protocol

FORK = multiprocessing.get_context("fork")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _in_child(target: Callable[..., Any], *args: Any) -> int:
    """Run ``target(*args)`` in a forked child; its exit code (``-9`` when it killed itself)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork of a threaded process
        process = FORK.Process(target=target, args=args)
        process.start()
    process.join()
    return process.exitcode


def _start(target: Callable[..., Any], *args: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        process = FORK.Process(target=target, args=args)
        process.start()
    return process


def _protocol_dying_at_write(config: Any, when: str, k: int, record: Path) -> None:
    """Run the protocol; die in its ``k``-th atomic write, before or after the rename (noting the file)."""
    from torchcross import _io

    count, last = [0], [""]
    fsync_file, fsync_dir = _io._fsync_file, _io._fsync_dir

    def file_synced(path: Path) -> None:  # the temporary file is complete, not yet renamed
        fsync_file(path)
        count[0] += 1
        last[0] = path.name
        if when == "before" and count[0] == k:
            record.write_text(f"before rename: {last[0]}")
            _die()

    def dir_synced(folder: Path) -> None:  # renamed, the folder not yet flushed
        if when == "after" and count[0] == k:
            record.write_text(f"after rename: {last[0]}")
            _die()
        fsync_dir(folder)

    _io._fsync_file, _io._fsync_dir = file_synced, dir_synced
    run_protocol(config, progress=False, log=None)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_root(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def reference(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    run_protocol(tiny_config(data_root, tmp_path_factory.mktemp("warm") / "out"), progress=False, log=None)
    start = time.perf_counter()  # the second run: how long a run takes once everything is imported
    result = run_protocol(
        tiny_config(data_root, tmp_path_factory.mktemp("ref") / "out"), progress=False, log=None
    )
    return result, time.perf_counter() - start


def test_a_kill_at_every_write_of_the_protocol_resumes_to_the_same_results(
    data_root: Path, tmp_path: Path, reference: Any
) -> None:
    killed = []
    for k in range(1, 40):  # a fresh run killed in its k-th write (alternately before/after the rename)
        config = tiny_config(data_root, tmp_path / f"out{k}")
        record = tmp_path / f"killed{k}.txt"
        code = _in_child(_protocol_dying_at_write, config, "before" if k % 2 else "after", k, record)
        if code == 0:
            break
        assert code == -signal.SIGKILL
        killed.append(record.read_text())
        check_no_partial_files(tmp_path / f"out{k}")
        result = run_protocol(config, progress=False, log=None)
        assert scores(result) == scores(reference[0])
        assert temp_files(tmp_path / f"out{k}") == []
    files = {re.sub(r"\.tmp-.*", "", k.split(": .")[1]) for k in killed}
    assert files == {
        "abnormal.json",  # the fixed episodes
        "scratch.partial.json",  # evaluations, per task and per method
        "scratch.json",
        "mm-PT.pt",  # checkpoints (twice)
        "mm-PT.partial.json",
        "mm-PT.json",
        "episodes.csv",  # the results
        "results.csv",
        "results.md",
        "paired.csv",  # the paired comparison of the two methods
        "results.json",
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_kill_at_a_random_moment_resumes_to_the_same_results(
    data_root: Path, tmp_path: Path, reference: Any, seed: int
) -> None:
    config = tiny_config(data_root, tmp_path / "out")
    process = _start(run_protocol, config, False, None)
    time.sleep(random.Random(seed).uniform(0.2, 1.0) * reference[1])
    process.kill()
    process.join()
    check_no_partial_files(tmp_path / "out")
    result = run_protocol(config, progress=False, log=None)
    assert scores(result) == scores(reference[0])
    assert temp_files(tmp_path / "out") == []


# -- the MedIMeta writer ---------------------------------------------------------------------------------
def _write(root: Path, seed: int) -> None:
    write_synthetic_medimeta(root, "toy", num_images=10, image_size=4, seed=seed, overwrite=True)


def _labels(root: Path) -> np.ndarray:
    return MedIMeta(root, "toy", "Finding labels").labels


def _write_dying(root: Path, seed: int, where: str) -> None:
    """Replace ``toy``; die between the two renames, or half-way through deleting the old copy."""
    import torchcross.datasets.medimeta.paths as paths

    real_rename, real_rmtree = os.rename, shutil.rmtree
    renames = [0]

    def rename(src: str, dst: str) -> None:
        renames[0] += 1
        if where == "between" and renames[0] == 2:
            _die()
        real_rename(src, dst)

    def rmtree(path: str, **kwargs: Any) -> None:
        os.remove(os.path.join(path, "info.yaml"))
        _die()

    paths.os.rename = rename  # type: ignore[attr-defined]
    paths.shutil.rmtree = rmtree  # type: ignore[attr-defined]
    try:
        _write(root, seed)
    finally:
        paths.os.rename, paths.shutil.rmtree = real_rename, real_rmtree  # type: ignore[attr-defined]


@pytest.fixture
def versions(tmp_path: Path) -> dict[int, np.ndarray]:
    """The labels of the two versions of ``toy`` (seeds 1 and 2); the data root holds version 1."""
    out = {}
    for seed in (2, 1):
        _write(tmp_path, seed)
        out[seed] = _labels(tmp_path)
    assert not np.array_equal(out[1], out[2])
    return out


def test_a_kill_between_the_renames_of_a_replacement_keeps_the_old_dataset(
    tmp_path: Path, versions: dict[int, np.ndarray]
) -> None:
    assert _in_child(_write_dying, tmp_path, 2, "between") == -signal.SIGKILL
    _, problems = scan_datasets(tmp_path)
    assert any(".toy.old-" in k for k in problems)
    assert any("interrupted write_medimeta" in v for v in problems.values())
    with pytest.raises(ValueError, match=r"no MedIMeta dataset 'toy'.*broken folders skipped"):
        MedIMeta(tmp_path, "toy", "class")
    assert len(clean_writer_leftovers(str(tmp_path), "toy")) == 2  # old put back, new copy deleted
    assert np.array_equal(_labels(tmp_path), versions[1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy"]


def test_a_kill_while_deleting_the_old_copy_leaves_the_new_dataset(
    tmp_path: Path, versions: dict[int, np.ndarray]
) -> None:
    assert _in_child(_write_dying, tmp_path, 2, "rmtree") == -signal.SIGKILL
    assert np.array_equal(_labels(tmp_path), versions[2])
    assert validate_medimeta(tmp_path / "toy").ok
    _write(tmp_path, 1)  # the next write cleans the half-deleted hidden copy
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy"]
    assert np.array_equal(_labels(tmp_path), versions[1])


def _rewrite_forever(root: Path) -> None:
    for i in range(10_000):
        _write(root, 1 + i % 2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_kill_at_a_random_moment_of_a_replacement_leaves_a_whole_dataset(
    tmp_path: Path, versions: dict[int, np.ndarray], seed: int
) -> None:
    process = _start(_rewrite_forever, tmp_path)
    time.sleep(random.Random(seed).uniform(0.05, 0.5))
    process.kill()
    process.join()
    clean_writer_leftovers(str(tmp_path), "toy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy"]
    assert validate_medimeta(tmp_path / "toy").ok
    labels = _labels(tmp_path)
    assert np.array_equal(labels, versions[1]) or np.array_equal(labels, versions[2])
