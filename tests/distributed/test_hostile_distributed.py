"""Hostile distributed runs: ranks that start from other weights or other shapes, a rank that dies saving.

Two ``torchrun`` launches of ``hostile_ranks_script.py`` (two gloo ranks, tiny float64 MLPs): the
documented recipe run verbatim, the ranks it must refuse, and a run whose rank 1 dies while saving
its last checkpoint, then resumed. The fast tests below check the same rules from one rank's view.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import distributed_helpers as h
import pytest
import torch

import torchcross.distributed.replicas as replicas
from torchcross.distributed import broadcast_parameters, check_replicas
from torchcross.distributed.replicas import module_layout
from torchcross.protocol import training
from torchcross.protocol.ranks import Team
from torchcross.protocol.training import CheckpointError, previous_checkpoint, train_steps

SCRIPT = str(Path(__file__).with_name("hostile_ranks_script.py"))


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hostile")
    h.torchrun(SCRIPT, "first", str(out))
    h.torchrun(SCRIPT, "resume", str(out))
    return out


def _ranks(out: Path, scenario: str) -> list[dict[str, Any]]:
    return [torch.load(out / f"{scenario}-rank{r}.pt", weights_only=False) for r in (0, 1)]


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_the_documented_recipe_run_verbatim_gives_identical_ranks(launched: Path) -> None:
    rank0, rank1 = _ranks(launched, "recipe")
    assert _equal(rank0["model"], rank1["model"])  # bit for bit, BatchNorm statistics included


@pytest.mark.slow
def test_ranks_that_start_from_different_weights_raise_on_every_rank(launched: Path) -> None:
    """The recipe without its broadcast: unseeded ranks used to drift apart silently."""
    for rank in _ranks(launched, "refused"):
        assert rank["drifting"].startswith(
            "the ranks start from different weights: rank 1's MAML differs from rank 0's in "
        )
        assert "(first: 'backbone.layers.0.weight')" in rank["drifting"]
        assert "torchcross.distributed.broadcast_parameters(model)" in rank["drifting"]


@pytest.mark.slow
def test_ranks_with_different_widths_raise_naming_the_parameter(launched: Path) -> None:
    """They used to abort in gloo's all-reduce (SIGABRT)."""
    for rank in _ranks(launched, "refused"):
        assert rank["widths"] == (
            "the ranks hold different models: parameter 'backbone.layers.0.weight' has shape (16, 5), "
            "torch.float64 on cpu on rank 0 but shape (32, 5), torch.float64 on cpu on rank 1; build the "
            "same model (the same layers, widths and dtypes, on the same kind of device) on every rank"
        )


@pytest.mark.slow
def test_a_rank_that_died_while_saving_resumes_where_every_rank_saved(launched: Path) -> None:
    """Rank 1 died saving step 4 (rank 0 had saved it): the rerun resumes both from step 2, exactly."""
    resumed, uninterrupted = _ranks(launched, "resumed"), _ranks(launched, "uninterrupted")
    for r in (0, 1):
        assert _equal(resumed[r]["model"], uninterrupted[r]["model"])
        assert resumed[r]["losses"] == uninterrupted[r]["losses"]
        assert len(resumed[r]["losses"]) == 4
    assert _equal(resumed[0]["model"], resumed[1]["model"])
    assert resumed[0]["log"] == [
        f"resuming train from step 2 of 4 ({launched / 'killed' / 'mm-MAML.previous.pt'}); the newest "
        "step every rank saved (this rank also saved step 4)"
    ]
    assert resumed[1]["log"] == [
        f"resuming train from step 2 of 4 ({launched / 'killed' / 'rank-1' / 'mm-MAML.previous.pt'})"
    ]
    for folder in ("killed", "killed/rank-1"):
        saved = torch.load(launched / folder / "mm-MAML.pt", weights_only=True)
        assert saved["step"] == 4


# ---------------------------------------------------------------- one rank's view, no launch


class _Stream:
    """Counts the units the loop takes (the position lives where they are consumed)."""

    def __init__(self) -> None:
        self.start, self.consumed = 0, 0

    def state_dict(self) -> dict[str, int]:
        return {"position": self.start + self.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.start, self.consumed = state["position"], 0

    def __iter__(self) -> Iterator[int]:
        self.consumed = 0
        for k in range(self.start, 100):
            self.consumed += 1
            yield k


def _train(path: Path, steps: int, logged: list[str]) -> tuple[torch.nn.Module, list[float]]:
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    stream = _Stream()

    def step(k: int) -> torch.Tensor:
        loss = ((model(torch.full((1, 2), float(k))) - 1.0) ** 2).sum()
        loss.backward()
        return loss

    units = lambda: iter(stream)  # noqa: E731
    losses = train_steps(
        model, optimizer, step, units, steps, sampler=stream, checkpoint=path, checkpoint_every=2,
        progress=False, log=logged.append,
    )  # fmt: skip
    return model, losses


def test_each_rank_keeps_its_previous_checkpoint_and_resumes_from_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Rank 1's view: it saved step 4, the other rank only step 2 (it died saving step 4)."""
    monkeypatch.setattr(training, "rank_and_world_size", lambda: (1, 2))
    monkeypatch.setattr(training, "mean_over_ranks", lambda value: value)
    monkeypatch.setattr(Team, "gather", lambda self, value: [value, value])
    reference, reference_losses = _train(tmp_path / "reference.pt", 6, [])
    path = tmp_path / "m.pt"
    _train(path, 4, [])
    assert torch.load(path, weights_only=True)["step"] == 4
    assert torch.load(previous_checkpoint(path), weights_only=True)["step"] == 2

    monkeypatch.setattr(Team, "gather", lambda self, value: [([0, 2], None), value])
    logged: list[str] = []
    model, losses = _train(path, 6, logged)
    assert logged[0].startswith("resuming train from step 2 of 6 (")
    assert logged[0].endswith(
        "m.previous.pt); the newest step every rank saved (this rank also saved step 4)"
    )
    assert torch.equal(model.weight, reference.weight)
    assert losses == reference_losses

    monkeypatch.setattr(Team, "gather", lambda self, value: [([0], None), value])
    logged.clear()
    _train(path, 6, logged)  # the other rank saved nothing: all start over
    assert logged == ["starting train from step 0, the newest step every rank saved (this rank saved step 6)"]


def test_a_foreign_file_where_the_previous_checkpoint_goes_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(training, "rank_and_world_size", lambda: (1, 2))
    monkeypatch.setattr(Team, "gather", lambda self, value: [value, value])
    (tmp_path / "m.previous.pt").write_text("my notes")
    with pytest.raises(CheckpointError, match=r"m\.previous\.pt' holds objects other than tensors"):
        _train(tmp_path / "m.pt", 4, [])
    assert (tmp_path / "m.previous.pt").read_text() == "my notes"


def test_one_process_keeps_no_previous_checkpoint(tmp_path: Path) -> None:
    _train(tmp_path / "m.pt", 4, [])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


@pytest.mark.parametrize(
    ("other", "message"),
    [
        (torch.nn.Linear(3, 1), r"parameter 'weight' has shape \(1, 2\), torch.float32 on cpu on rank 0 but"),
        (torch.nn.Linear(2, 1, bias=False), r"parameter 'bias' of rank 0's Linear is missing on rank 1"),
        (torch.nn.Linear(2, 1).double(), r"'weight' has shape \(1, 2\), torch.float32 .*, torch.float64"),
        (torch.nn.BatchNorm1d(2), r"parameter 'weight' has shape \(1, 2\), .* but shape \(2,\)"),
    ],
)
def test_another_model_on_a_rank_is_named(
    monkeypatch: pytest.MonkeyPatch, other: torch.nn.Module, message: str
) -> None:
    """One rank's view of ``check_replicas`` (rank 1's answer injected)."""
    mine = torch.nn.Linear(2, 1)
    monkeypatch.setattr(replicas, "is_distributed", lambda group: True)
    monkeypatch.setattr(replicas, "_gathered", lambda value, group: [value, (module_layout(other), ())])
    with pytest.raises(ValueError, match=rf"^the ranks hold different models: .*{message}"):
        check_replicas(mine)


def test_extra_or_reordered_tensors_on_a_rank_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    mine = torch.nn.Linear(2, 1, bias=False)
    monkeypatch.setattr(replicas, "is_distributed", lambda group: True)
    extra = module_layout(torch.nn.Linear(2, 1))
    monkeypatch.setattr(replicas, "_gathered", lambda value, group: [value, (extra, ())])
    with pytest.raises(ValueError, match=r"rank 1's Linear has parameter 'bias', which rank 0's lacks"):
        check_replicas(mine)
    layout = module_layout(torch.nn.Linear(2, 1))
    monkeypatch.setattr(replicas, "_gathered", lambda value, group: [(layout, ()), (layout[::-1], ())])
    with pytest.raises(ValueError, match=r"registered in another order on rank 1"):
        check_replicas(torch.nn.Linear(2, 1))


def test_without_a_process_group_nothing_is_checked_or_copied() -> None:
    net = torch.nn.Linear(2, 1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert broadcast_parameters(net) == 0
    check_replicas(net)
    assert _equal(net.state_dict(), before)
    with pytest.raises(TypeError, match=r"module must be an nn.Module, got list"):
        broadcast_parameters([])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"module must be an nn.Module, got int"):
        check_replicas(3)  # type: ignore[arg-type]
