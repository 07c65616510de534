"""The protocol under faults: crafted and damaged checkpoints, diverged training, locked and full folders."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import pickle
import signal
from pathlib import Path

import pytest
import torch
from reliability_helpers import scores, small_root, temp_files, tiny_config

from torchcross import _io
from torchcross._io import FolderInUseError, lock_folder
from torchcross.cli import main
from torchcross.data import TensorTaskSource
from torchcross.data.multitask import MultiTaskBatchSampler
from torchcross.protocol import check_protocol, run_protocol, training
from torchcross.protocol.config import load_config
from torchcross.protocol.plan import check_out_dir
from torchcross.protocol.training import (
    CheckpointError,
    CheckpointMismatchError,
    NonFiniteLossError,
    TrainingInterrupted,
    train_steps,
)
from torchcross.tasks.task import TaskDescription


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_root(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def reference(data_root: Path, tmp_path_factory: pytest.TempPathFactory):
    return run_protocol(
        tiny_config(data_root, tmp_path_factory.mktemp("ref") / "out"), progress=False, log=None
    )


class _Payload:
    """Unpickling this creates a marker file: proof that a loader ran code from the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _linear(nan_at: int = 0, seed: int = 0):
    torch.manual_seed(seed)
    d = TaskDescription("BINARY_CLASSIFICATION", {0: "n", 1: "y"}, "toy/healthy")
    x = torch.randn(30, 3, generator=torch.Generator().manual_seed(0))
    if nan_at:
        x[:] = float("nan")
    sampler = MultiTaskBatchSampler(
        [TensorTaskSource(x, torch.arange(30) % 2, d)], 4, mode="infinite", seed=1
    )
    model = torch.nn.Linear(3, 1)

    def step(unit):
        (xb, yb), _ = unit
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(xb), yb.float())
        loss.backward()
        return loss

    return model, torch.optim.Adam(model.parameters(), lr=0.05), step, sampler


def _train(ckpt: Path, steps: int = 2, **kwargs):
    model, opt, step, sampler = _linear()
    return train_steps(
        model,
        opt,
        step,
        lambda: iter(sampler),
        steps,
        sampler=sampler,
        checkpoint=ckpt,
        progress=False,
        **kwargs,
    )


@pytest.mark.parametrize("container", ["torch", "pickle"])
def test_a_crafted_checkpoint_runs_no_code(tmp_path: Path, container: str) -> None:
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "c.pt"
    payload = {"format": "torchcross-protocol-checkpoint", "model": _Payload(marker)}
    if container == "torch":
        torch.save(payload, ckpt)
    else:
        ckpt.write_bytes(pickle.dumps(payload))
    with pytest.raises(
        CheckpointError, match=r"c\.pt.*(holds objects other than tensors|damaged).*delete it"
    ):
        _train(ckpt)
    assert not marker.exists()


def test_a_crafted_checkpoint_in_an_out_dir_runs_no_code(data_root: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "out" / "checkpoints" / "tgt" / "mm-PT.pt"
    check_out_dir(tmp_path / "out")  # a run's folder, where a crafted file was put
    ckpt.parent.mkdir(parents=True)
    torch.save({"x": _Payload(marker)}, ckpt)
    with pytest.raises(CheckpointError, match=r"mm-PT\.pt.*resume = false"):
        run_protocol(tiny_config(data_root, tmp_path / "out"), progress=False, log=None)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda p: p.write_bytes(b""), "is damaged or not a torch file"),
        (lambda p: p.write_bytes(p.read_bytes()[:200]), "is damaged or not a torch file"),
        (lambda p: p.write_bytes(os.urandom(300)), "damaged|holds objects"),
        (lambda p: (p.unlink(), p.mkdir()), "is not a regular file"),
        (lambda p: torch.save([1, 2], p), "is not a torchcross protocol checkpoint"),
        (  # save_checkpoint: a malformed state with a valid checksum
            lambda p: training.save_checkpoint(p, {**torch.load(p, weights_only=True), "losses": [1.0]}),
            "is malformed",
        ),
        (lambda p: torch.save({**torch.load(p, weights_only=True), "version": 1}, p), "format version 1"),
    ],
)
def test_damaged_checkpoints_get_one_sentence_naming_the_file(tmp_path: Path, damage, match: str) -> None:
    ckpt = tmp_path / "c.pt"
    _train(ckpt)
    damage(ckpt)
    with pytest.raises(CheckpointError, match=rf"{ckpt.name}.*({match}).*delete it"):
        _train(ckpt, steps=4)


def test_a_checkpoint_of_another_model_is_refused(tmp_path: Path) -> None:
    ckpt = tmp_path / "c.pt"
    _train(ckpt)
    model = torch.nn.Linear(5, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(CheckpointError, match=r"c\.pt.*does not fit this model"):
        train_steps(model, opt, lambda u: 0.0, lambda: iter([]), 4, checkpoint=ckpt, progress=False)


def test_a_refused_resume_names_the_setting_that_changed(tmp_path: Path) -> None:
    ckpt = tmp_path / "c.pt"
    _train(ckpt, settings={"training": {"lr": 0.001, "batch_size": 8}, "seed": 0})
    with pytest.raises(CheckpointMismatchError, match=r"changed: training\.lr \(saved 0\.001, now 0\.01\)"):
        _train(ckpt, settings={"training": {"lr": 0.01, "batch_size": 8}, "seed": 0})


def test_a_changed_protocol_setting_is_named_at_resume(data_root: Path, tmp_path: Path) -> None:
    config = tiny_config(data_root, tmp_path / "out", evaluation={"methods": ["mm-PT"]})
    run_protocol(config, progress=False, log=None)
    changed = dataclasses.replace(config, pretrain=dataclasses.replace(config.pretrain, batch_size=4))
    (tmp_path / "out" / "evaluations" / "tgt" / "mm-PT.json").unlink()
    with pytest.raises(CheckpointMismatchError, match=r"changed: pretrain\.batch_size \(saved 8, now 4\)"):
        run_protocol(changed, progress=False, log=None)


def test_training_stops_at_the_first_non_finite_loss(tmp_path: Path) -> None:
    model, opt, step, sampler = _linear()
    calls = []

    def diverging(unit):
        calls.append(1)
        value = step(unit)
        return value * float("inf") if len(calls) == 3 else value

    ckpt = tmp_path / "c.pt"
    with pytest.raises(
        NonFiniteLossError, match=r"train: the loss is (nan|inf) at step 3 of 6 \(task toy/healthy\)"
    ):
        train_steps(
            model,
            opt,
            diverging,
            lambda: iter(sampler),
            6,
            sampler=sampler,
            checkpoint=ckpt,
            checkpoint_every=2,
            progress=False,
        )
    assert torch.load(ckpt, weights_only=True)["step"] == 2  # the last good state is kept


@pytest.fixture
def python_sigint():
    """Python's own SIGINT handler, whatever the test runner inherited.

    A shell starts background jobs (``pytest &``, CI runners) with SIGINT ignored, and
    ``train_steps`` leaves a handler that is not Python's default alone, as it should.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the swallowed one
def test_a_ctrl_c_swallowed_by_a_finaliser_still_stops_training_at_the_next_step(
    tmp_path: Path, python_sigint: None
) -> None:
    model, opt, step, sampler = _linear()
    calls = []

    class Finalised:
        def __del__(self) -> None:
            _ctrl_c()  # Python reports and drops an exception raised in __del__

    def swallowing(unit):
        calls.append(1)
        if len(calls) == 3:
            Finalised()
        return step(unit)

    ckpt = tmp_path / "c.pt"
    with pytest.raises(TrainingInterrupted, match=r"train stopped; a rerun resumes from step 2") as info:
        train_steps(
            model,
            opt,
            swallowing,
            lambda: iter(sampler),
            100,
            sampler=sampler,
            checkpoint=ckpt,
            checkpoint_every=2,
            progress=False,
        )
    assert len(calls) == 3  # stopped before the fourth step
    assert info.value.resume_step == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler given back


def test_a_ctrl_c_during_a_save_lands_after_the_checkpoint_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, python_sigint: None
) -> None:
    model, opt, step, sampler = _linear()
    real_save = training.save_checkpoint
    saves = []

    def save_with_ctrl_c(path, state):
        saves.append(state["step"])
        if len(saves) == 2:
            _ctrl_c()  # arrives mid-save: the file must still be complete and recorded
        real_save(path, state)

    monkeypatch.setattr(training, "save_checkpoint", save_with_ctrl_c)
    ckpt = tmp_path / "c.pt"
    with pytest.raises(TrainingInterrupted, match=r"a rerun resumes from step 4$"):
        train_steps(
            model,
            opt,
            step,
            lambda: iter(sampler),
            100,
            sampler=sampler,
            checkpoint=ckpt,
            checkpoint_every=2,
            progress=False,
        )
    assert saves == [2, 4]
    assert torch.load(ckpt, weights_only=True)["step"] == 4
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_users_own_sigint_handler_is_left_alone(tmp_path: Path) -> None:
    model, opt, step, sampler = _linear()
    seen = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    try:

        def interrupting(unit):
            if not seen:
                _ctrl_c()
            return step(unit)

        losses = train_steps(model, opt, interrupting, lambda: iter(sampler), 4, progress=False)
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)
    assert len(losses) == 4
    assert seen == [signal.SIGINT]


def test_nan_in_the_data_stops_training_naming_the_task(tmp_path: Path) -> None:
    model, opt, step, sampler = _linear(nan_at=1)
    with pytest.raises(NonFiniteLossError, match=r"step 1 of 3 \(task toy/healthy\).*check the data"):
        train_steps(model, opt, step, lambda: iter(sampler), 3, progress=False)


def test_diverged_maml_is_an_error_not_a_perfect_score(data_root: Path, tmp_path: Path) -> None:
    config = tiny_config(
        data_root,
        tmp_path / "out",
        evaluation={"methods": ["mm-MAML"]},
        maml={"inner_lr": 1e30, "inner_steps": 2},
    )
    with pytest.raises(
        NonFiniteLossError, match=r"mm-MAML on tgt: the loss is .* at step \d of 2 \(task src/class"
    ):
        run_protocol(config, progress=False, log=None)
    assert not (tmp_path / "out" / "results.json").exists()


def test_a_second_run_on_a_locked_out_dir_is_refused(data_root: Path, tmp_path: Path) -> None:
    locked = pytest.raises(FolderInUseError, match=rf"out_dir .*out' is in use .*process {os.getpid()}")
    with lock_folder(tmp_path / "out"), locked:
        run_protocol(tiny_config(data_root, tmp_path / "out"), progress=False, log=None)
    code = main(["run", "--check", str(_write_config(tmp_path, data_root, "out"))])  # --check does not lock
    assert code == 0


def _write_config(tmp_path: Path, root: Path, out: str, extra: str = "") -> Path:
    path = tmp_path / "exp.toml"
    path.write_text(
        f'[data]\nroot = "{root}"\ntargets = ["tgt/abnormal"]\nsources = ["src/class"]\n'
        f'[backbone]\nname = "conv4"\nweights = "random"\n[run]\nout_dir = "{out}"\nplot = false\n{extra}'
    )
    return path


def test_a_full_disk_keeps_the_previous_results_and_names_the_file(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reference
) -> None:
    config = tiny_config(data_root, tmp_path / "out")
    run_protocol(config, progress=False, log=None)
    before = (tmp_path / "out" / "results.json").read_text()
    real = _io._fsync_file

    def full(path: Path) -> None:
        if "results.json" in path.name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path)

    monkeypatch.setattr(_io, "_fsync_file", full)
    (tmp_path / "out" / "results.md").unlink()  # the next run writes the results again
    with pytest.raises(OSError, match=r"results\.json.*No space left on device.*left as it was"):
        run_protocol(config, progress=False, log=None)
    assert (tmp_path / "out" / "results.json").read_text() == before
    assert temp_files(tmp_path) == []
    monkeypatch.setattr(_io, "_fsync_file", real)
    assert scores(run_protocol(config, progress=False, log=None)) == scores(reference)


def test_damaged_resume_files_are_redone_to_the_same_results(
    data_root: Path, tmp_path: Path, reference
) -> None:
    config = tiny_config(data_root, tmp_path / "out")
    run_protocol(config, progress=False, log=None)
    out = tmp_path / "out"
    (out / "episodes" / "tgt" / "abnormal.json").write_bytes(b"")
    (out / "evaluations" / "tgt" / "scratch.json").write_bytes(b"\xff\xfe")
    (out / "evaluations" / "tgt" / "mm-PT.json").write_text("[1, 2]")
    lines: list[str] = []
    result = run_protocol(config, progress=False, log=lines.append)
    assert any("abnormal.json" in line and "drawing the episodes again" in line for line in lines)
    assert any("scratch.json is damaged" in line for line in lines)
    assert any("mm-PT.json is not a torchcross evaluation file" in line for line in lines)
    assert scores(result) == scores(reference)
    assert json.loads((out / "episodes" / "tgt" / "abnormal.json").read_text())["n_episodes"] == 3


def test_stale_temporary_files_are_removed_and_reported(data_root: Path, tmp_path: Path) -> None:
    stale = tmp_path / "out" / "evaluations" / ".scratch.json.tmp-999999999-0123abcd.json"
    check_out_dir(tmp_path / "out")  # the folder of a run that was killed while writing
    stale.parent.mkdir(parents=True)
    stale.write_text("{")
    lines: list[str] = []
    run_protocol(
        tiny_config(data_root, tmp_path / "out", evaluation={"methods": ["IM-PT"]}),
        progress=False,
        log=lines.append,
    )
    assert not stale.exists()
    assert any("temporary file left by an interrupted run" in line for line in lines)


def test_thread_bounds_are_checked_by_check_and_at_run_time(data_root: Path, tmp_path: Path, capsys) -> None:
    path = _write_config(tmp_path, data_root, "out", "num_threads = 100000000\n")
    assert main(["run", "--check", str(path)]) == 2
    assert "[run] num_threads must be <= 1024, got 100000000" in capsys.readouterr().err
    config = tiny_config(data_root, tmp_path / "out")
    bad = dataclasses.replace(config, run=dataclasses.replace(config.run, num_threads=10**8))
    with pytest.raises(ValueError, match=r"\[run\] num_threads must be <= 1024"):
        check_protocol(bad)
    with pytest.raises(ValueError, match=r"\[pretrain\] steps must be <= 100000000"):
        load_config(_write_config(tmp_path, data_root, "out", "[pretrain]\nsteps = 1000000000000\n"))


@pytest.mark.parametrize("suffix", [".toml", ".yaml"])
def test_a_config_that_is_not_utf8_is_named(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"exp{suffix}"
    path.write_bytes(b'[data]\nroot = "\xff\xfe"\n')
    with pytest.raises(ValueError, match=rf"exp\{suffix} is not UTF-8 text .*save it as UTF-8"):
        load_config(path)
