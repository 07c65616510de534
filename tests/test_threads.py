"""The thread policy: CPUs from affinity and cgroup quotas, idle CPUs, workers, oversubscription warnings."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import torchcross._threads as threads
from torchcross.utils import (
    OversubscriptionWarning,
    available_cpus,
    configure_threads,
    recommended_num_threads,
)


@pytest.fixture(autouse=True)
def _keep_torch_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def cgroups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake /sys/fs/cgroup and /proc/self/cgroup, and four CPUs in the affinity mask."""
    monkeypatch.setattr(threads, "_CGROUP_ROOT", tmp_path / "cgroup")
    monkeypatch.setattr(threads, "_PROC_SELF_CGROUP", tmp_path / "self_cgroup")
    monkeypatch.setattr(threads, "_affinity", lambda: {0, 1, 2, 3})
    (tmp_path / "cgroup").mkdir()
    return tmp_path


def test_available_cpus_is_the_affinity_mask_without_a_quota(cgroups: Path) -> None:
    (cgroups / "self_cgroup").write_text("0::/job\n")
    (cgroups / "cgroup" / "job").mkdir()
    (cgroups / "cgroup" / "job" / "cpu.max").write_text("max 100000\n")
    assert available_cpus() == 4


@pytest.mark.parametrize(
    ("quota", "expected"),
    [("150000 100000", 1), ("250000 100000", 2), ("50000 100000", 1), ("900000 100000", 4)],
)
def test_cgroup_v2_quota_caps_the_cpus(cgroups: Path, quota: str, expected: int) -> None:
    (cgroups / "self_cgroup").write_text("0::/a/b\n")
    (cgroups / "cgroup" / "a" / "b").mkdir(parents=True)
    (cgroups / "cgroup" / "a" / "cpu.max").write_text(f"{quota}\n")  # the parent's quota applies too
    (cgroups / "cgroup" / "a" / "b" / "cpu.max").write_text("max 100000\n")
    assert available_cpus() == expected


def test_cgroup_v1_quota_caps_the_cpus(cgroups: Path) -> None:
    (cgroups / "self_cgroup").write_text("2:cpuacct:/\n1:cpu:/\n0::/\n")
    (cgroups / "cgroup" / "cpu").mkdir()
    (cgroups / "cgroup" / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    (cgroups / "cgroup" / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert available_cpus() == 2
    (cgroups / "cgroup" / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")  # no quota
    assert available_cpus() == 4


def test_available_cpus_on_this_machine() -> None:
    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))


def _snapshots(*snaps: dict[int, tuple[int, int]]) -> Iterator[dict[int, tuple[int, int]]]:
    yield from snaps


def test_busy_cpus_and_workers_reduce_the_recommendation(
    cgroups: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (cgroups / "self_cgroup").write_text("0::/\n")
    monkeypatch.setattr(threads, "_IDLE_INTERVAL_S", 0.0)
    # (idle ticks, total ticks) per CPU: CPU 2 was busy the whole interval, CPU 3 half of it
    before = {0: (100, 200), 1: (100, 200), 2: (100, 200), 3: (100, 200), 7: (0, 10)}
    after = {0: (200, 300), 1: (200, 300), 2: (100, 300), 3: (150, 300), 7: (0, 20)}  # CPU 7: not ours
    snaps = _snapshots(before, after)
    monkeypatch.setattr(threads, "_cpu_times", lambda: next(snaps))
    assert recommended_num_threads() == 2  # round(1 + 1 + 0 + 0.5)
    snaps = _snapshots(before, after)
    assert recommended_num_threads(num_workers=1) == 1
    snaps = _snapshots(before, after)
    assert recommended_num_threads(num_workers=8) == 1  # never below one
    monkeypatch.setattr(threads, "_cpu_times", lambda: None)  # no /proc/stat: the available CPUs
    assert recommended_num_threads() == 4
    assert recommended_num_threads(num_workers=3) == 1
    with pytest.raises(ValueError, match="num_workers must be >= 0"):
        recommended_num_threads(-1)


def test_configure_threads_sets_warns_and_checks(cgroups: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (cgroups / "self_cgroup").write_text("0::/\n")
    monkeypatch.setattr(threads, "_cpu_times", lambda: None)
    assert configure_threads("auto", num_workers=1) == 3
    assert torch.get_num_threads() == 3
    assert configure_threads("auto", processes=2) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert configure_threads(2, num_workers=2) == 2  # 2 + 2 workers fit 4 CPUs
        assert configure_threads(None) == 2
    with pytest.warns(
        OversubscriptionWarning, match=r"3 torch thread\(s\) x 2 process\(es\) \+ 0 DataLoader"
    ):
        configure_threads(3, processes=2)
    torch.set_num_threads(5)
    with pytest.warns(OversubscriptionWarning, match="oversubscribe the 4 CPU"):
        assert configure_threads(None) == 5
    with pytest.raises(ValueError, match="num_threads must be 'auto', None or an integer >= 1, got 'max'"):
        configure_threads("max")
    with pytest.raises(ValueError, match="num_threads must be >= 1"):
        configure_threads(0)


def test_idle_cpus_of_this_machine_are_read() -> None:
    idle = threads._idle_cpus(set(os.sched_getaffinity(0)))
    assert idle is not None
    assert 0.0 <= idle <= len(os.sched_getaffinity(0))
