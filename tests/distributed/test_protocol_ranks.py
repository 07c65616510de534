"""``torchcross run`` on two ``torchrun`` ranks (gloo, CPU): shared training, split evaluation.

Two launches (torchrun is slow to start): the CLI runs the whole protocol (the process group
created by ``run_protocol``), and a script that initialises its own group runs a shorter
training, then resumes it to the full length. The tests compare those with each other and with
single-process runs in this process.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path
from typing import Any

import distributed_helpers as h
import pytest
import torch

from torchcross.cli.demo_data import write_demo_medimeta
from torchcross.protocol import training
from torchcross.protocol.config import load_config
from torchcross.protocol.ranks import EpisodeShare, Team, joined
from torchcross.protocol.run import run_protocol
from torchcross.protocol.training import CheckpointError, CheckpointMismatchError

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
METRICS = ("auroc", "accuracy", "mae", "qwk")


def _config(folder: Path, data: Path, out: str, steps: int, meta_batch: int = 1) -> Path:
    path = folder / f"{out}-{steps}-{meta_batch}.toml"
    path.write_text(
        f'[data]\nroot = "{data}"\ntargets = ["digits_negative/even digit"]\nmin_class_size = 0\n'
        '[evaluation]\nmethods = ["IM-PT", "mm-PT", "mm-MAML"]\nn_episodes = 5\n'
        '[backbone]\nname = "conv4"\nhidden = 8\nweights = "random"\n'
        "[finetune]\nsteps = 2\nfreeze_backbone = true\n"
        "[augmentation]\nenabled = false\n"
        f"[pretrain]\nsteps = {steps}\nbatch_size = 4\npatience = 1\nval_every = 2\nval_batches = 1\n"
        f"[maml]\nsteps = {steps}\nmeta_batch_size = {meta_batch}\ninner_steps = 1\nn_shot = 2\n"
        "n_query = 2\npatience = 0\n"
        f'[run]\nout_dir = "{folder / out}"\nplot = false\nnum_threads = 1\ncheckpoint_every = 2\n'
    )
    return path


def _torchrun(*args: str) -> subprocess.CompletedProcess[str]:
    return h.torchrun(*args)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("ranks")
    data = write_demo_medimeta(folder / "data")
    whole = _config(folder, data, "whole", 4)
    cli = _torchrun("-m", "torchcross.cli", "run", str(whole))
    stopped, resumed = _config(folder, data, "resumed", 2), _config(folder, data, "resumed", 4)
    _torchrun(str(ROOT / "tests" / "distributed" / "protocol_ranks_script.py"), str(stopped), str(resumed))
    single = run_protocol(load_config(_config(folder, data, "single", 4, meta_batch=2)), log=None)
    # two torchrun "nodes" (one launcher and one rank each, c10d rendezvous on localhost), two DataLoader
    # workers per rank: the library's training, then `torchcross run` of the config of "whole"
    nodes = _config(folder, data, "nodes", 4)
    nodes.write_text(nodes.read_text() + "num_workers = 2\n")
    port, script = str(h.free_port()), str(ROOT / "tests" / "distributed" / "multinode_script.py")
    launched = h.torchrun_nodes(script, port, str(folder / "library"), str(nodes))
    return {
        "folder": folder,
        "data": data,
        "cli": cli,
        "whole": whole,
        "resumed": resumed,
        "single": single,
        "nodes": launched,
    }


def _records(folder: Path, out: str, method: str) -> list[dict[str, Any]]:
    rows = json.loads((folder / out / "results.json").read_text())["episodes"]
    return [{k: r[k] for k in ("episode", *METRICS)} for r in rows if r["method"] == method]


def _model(folder: Path, out: str, method: str, rank: int = 0) -> dict[str, Any]:
    ranks = f"rank-{rank}/" if rank else ""
    state = torch.load(folder / out / f"checkpoints/{ranks}digits_negative/{method}.pt", weights_only=True)
    assert state["step"] == 4
    return state


def test_rank_zero_alone_reports_and_writes(runs: dict[str, Any]) -> None:
    out = runs["cli"].stdout
    assert out.count("results_csv:") == 1
    assert out.count("2 ranks: training shared, target episodes split") == 1
    files = {p.name for p in (runs["folder"] / "whole").iterdir()}
    assert {"results.json", "results.csv", "episodes.csv", "episodes", "curves"} <= files
    assert (runs["folder"] / "whole" / "checkpoints" / "rank-1" / "digits_negative" / "mm-MAML.pt").is_file()


@pytest.mark.parametrize("method", ["mm-PT", "mm-MAML"])
def test_rank_checkpoints_are_bit_identical(runs: dict[str, Any], method: str) -> None:
    for out in ("whole", "resumed"):
        a, b = _model(runs["folder"], out, method), _model(runs["folder"], out, method, rank=1)
        assert a["model"].keys() == b["model"].keys()
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
        assert a["losses"] == b["losses"]
        assert a["sampler"] == b["sampler"]
        # the global position: mm-MAML's meta-batches go to the ranks in turn (2 ranks x 4 steps); every
        # rank takes its part of each of mm-PT's global batches (4 steps)
        assert a["sampler"]["position"] == (4 if method == "mm-PT" else 8)


def test_evaluation_only_method_equals_one_process(runs: dict[str, Any]) -> None:
    ranks, single = (
        _records(runs["folder"], "whole", "scratch"),
        _records(runs["folder"], "single", "scratch"),
    )
    assert [r["episode"] for r in ranks] == [0, 1, 2, 3, 4]
    assert json.dumps(ranks) == json.dumps(single)  # bit for bit, NaN included


def test_maml_equals_one_process_with_the_global_meta_batch(runs: dict[str, Any]) -> None:
    """Two ranks with meta-batches of 1 task = one process with meta-batches of 2 (float32 sums differ)."""
    ranks, single = _model(runs["folder"], "whole", "mm-MAML"), _model(runs["folder"], "single", "mm-MAML")
    for k, v in ranks["model"].items():
        torch.testing.assert_close(v, single["model"][k], rtol=1e-5, atol=1e-6)
    assert ranks["losses"] == pytest.approx(single["losses"], rel=1e-5)


@pytest.mark.parametrize("method", ["mm-PT", "mm-MAML"])
def test_stopped_and_resumed_run_equals_the_uninterrupted_one(runs: dict[str, Any], method: str) -> None:
    for rank in (0, 1):
        a, b = _model(runs["folder"], "whole", method, rank), _model(runs["folder"], "resumed", method, rank)
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
        assert a["losses"] == b["losses"]
    whole, resumed = _records(runs["folder"], "whole", method), _records(runs["folder"], "resumed", method)
    assert json.dumps(whole) == json.dumps(resumed)


def test_every_rank_returns_the_same_tables(runs: dict[str, Any]) -> None:
    returned = [json.loads(Path(f"{runs['resumed']}.rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in returned] == [0, 1]
    assert returned[0]["episodes"] == returned[1]["episodes"]


def test_another_world_size_does_not_resume_the_ranks_checkpoints(runs: dict[str, Any]) -> None:
    config = load_config(_config(runs["folder"], runs["data"], "whole", 6))
    config = dataclasses.replace(
        config, evaluation=dataclasses.replace(config.evaluation, methods=("mm-MAML",))
    )
    with pytest.raises(CheckpointMismatchError, match=r"world_size \(saved 2, now None\)"):
        run_protocol(config, log=None)


def test_two_nodes_with_dataloader_workers_equal_one_node(runs: dict[str, Any]) -> None:
    """``torchcross run`` on two torchrun "nodes" with ``num_workers = 2``: the one-node run, bit for bit."""
    printed = [launch.stdout for launch in runs["nodes"]]
    assert sum(out.count("results_csv:") for out in printed) == 1  # global rank 0 alone reports
    for method in ("mm-PT", "mm-MAML"):
        for rank in (0, 1):
            a = _model(runs["folder"], "whole", method, rank)
            b = _model(runs["folder"], "nodes", method, rank)
            assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
            assert (a["losses"], a["sampler"]) == (b["losses"], b["sampler"])
    for method in ("scratch", "mm-PT", "mm-MAML"):  # IM-PT of random weights is named scratch
        whole, nodes = _records(runs["folder"], "whole", method), _records(runs["folder"], "nodes", method)
        assert len(whole) == 5
        assert json.dumps(whole) == json.dumps(nodes)


def test_library_training_on_two_nodes_equals_one_process(runs: dict[str, Any]) -> None:
    """MAML (meta-batches dealt to the ranks) and pre-training (each global batch split over the ranks),
    fed by two DataLoader workers per rank on two nodes, equal one process with the global batches."""
    ranks = [torch.load(f"{runs['folder'] / 'library'}.rank{r}.pt", weights_only=False) for r in (0, 1)]
    single = h.library_training(0, 1, workers=0)
    for part in ("maml", "pretrainer"):
        assert all(torch.equal(v, ranks[1][part][k]) for k, v in ranks[0][part].items())
        for k, v in ranks[0][part].items():
            torch.testing.assert_close(v, single[part][k], rtol=1e-12, atol=1e-12, msg=k)
    assert ranks[0]["position"] == ranks[1]["position"] == single["position"]  # 6 global batches
    assert ranks[0]["position"]["position"] == 6


def test_another_world_size_than_the_two_nodes_is_refused(runs: dict[str, Any]) -> None:
    config = load_config(_config(runs["folder"], runs["data"], "nodes", 6))
    only_pt = dataclasses.replace(config.evaluation, methods=("mm-PT",))
    config = dataclasses.replace(config, evaluation=only_pt)
    with pytest.raises(CheckpointMismatchError, match=r"world_size \(saved 2, now None\)"):
        run_protocol(config, log=None)


def test_one_process_team() -> None:
    with joined(torch.device("cpu")) as (team, device):
        assert (team, device) == (Team(0, 1), torch.device("cpu"))
        assert team.gather("x") == ["x"]
        with pytest.raises(ValueError, match="raised on rank 0"):
            team.leader(lambda: (_ for _ in ()).throw(ValueError("raised on rank 0")))
    assert Team(0, 2).mine(7, block=2) == [0, 1, 4, 5]
    assert Team(1, 2).mine(7, block=2) == [2, 3, 6]


def test_half_a_torchrun_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(
        ValueError, match="WORLD_SIZE=2 but RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT is not"
    ):
        joined(torch.device("cpu")).__enter__()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE='two' is not an integer"):
        joined(torch.device("cpu")).__enter__()


def test_episode_share_reads_only_its_episodes() -> None:
    share = EpisodeShare([f"episode {i}" for i in range(5)], [1, 3])
    assert (len(share), share[1], share[:1], list(share)) == (
        2,
        "episode 3",
        ["episode 1"],
        ["episode 1", "episode 3"],
    )


def test_ranks_resume_from_the_newest_step_all_saved_or_all_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    """What every rank decides (one rank's view, with the others' outcomes injected)."""
    monkeypatch.setattr(training, "rank_and_world_size", lambda: (0, 2))
    monkeypatch.setattr(Team, "gather", lambda self, value: [value, ([0, 2], None)])
    assert training._agree_on_start([0, 2, 4], None, "mm-PT on x") == 2  # rank 1 died saving step 4
    monkeypatch.setattr(Team, "gather", lambda self, value: [value, ([0], None)])
    assert training._agree_on_start([0, 4], None, "mm-PT on x") == 0  # rank 1 saved nothing
    monkeypatch.setattr(Team, "gather", lambda self, value: [value, ([0], "checkpoint c is damaged")])
    with pytest.raises(CheckpointError, match="rank 1 cannot resume mm-PT on x: checkpoint c is damaged"):
        training._agree_on_start([0], None, "mm-PT on x")
    training._agree_on_start([0], CheckpointError("own"), "mm-PT on x")  # the rank raises its own error


def test_each_rank_draws_its_own_augmentation_and_resumes_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """One rank's view: its random draws (augmentation) differ from the other rank's and resume exactly."""
    monkeypatch.setattr(training, "mean_over_ranks", lambda value: value)
    monkeypatch.setattr(Team, "gather", lambda self, value: [value, value])

    def draws(rank: int, world_size: int, steps: int, ckpt: Path) -> list[float]:
        monkeypatch.setattr(training, "rank_and_world_size", lambda: (rank, world_size))
        model = torch.nn.Linear(1, 1)
        seen: list[float] = []

        def step(x: torch.Tensor) -> torch.Tensor:
            seen.append(float(torch.rand(())))  # what an augmentation draws
            loss = model(x).sum()
            loss.backward()
            return loss

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(7)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
            units = lambda: iter([torch.ones(1, 1)] * 10)  # noqa: E731
            training.train_steps(
                model, optimizer, step, units, steps, checkpoint=ckpt, checkpoint_every=1, progress=False
            )
        return seen

    rank0, rank1 = draws(0, 2, 4, tmp_path / "r0.pt"), draws(1, 2, 4, tmp_path / "r1.pt")
    assert rank0 != rank1
    assert draws(1, 2, 2, tmp_path / "s1.pt") + draws(1, 2, 4, tmp_path / "s1.pt") == rank1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        plain = [float(torch.rand(())) for _ in range(4)]
    assert draws(0, 1, 4, tmp_path / "one.pt") == plain  # one process: the seeded RNG as it is
