"""Training loops shared by the 2-rank workers and the single-process references (float64, tiny MLPs)."""

from __future__ import annotations

import io
import itertools
import multiprocessing as mp
import os
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from torchcross.learners.backbones import mlp
from torchcross.learners.maml import MAML
from torchcross.learners.multitask import MultiTaskPretrainer
from torchcross.learners.protonet import ProtoNet
from torchcross.tasks.task import Task, TaskDescription

MULTICLASS = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c"}, "mc")
BINARY = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"}, "bin")
MULTILABEL = TaskDescription("MULTILABEL_CLASSIFICATION", {0: "x", 1: "y", 2: "z"}, "ml")
ORDINAL = TaskDescription("ORDINAL_REGRESSION", {1: "none", 4: "mild", 6: "severe"}, "ord")
DESCS = (MULTICLASS, BINARY, MULTILABEL, ORDINAL)
WIDTH_3 = (MULTICLASS, MULTILABEL, ORDINAL)  # three outputs each: one learned head fits all
ROOT = Path(__file__).resolve().parents[2]
GLOBAL_TASKS = 4  # tasks per global meta-batch
STEPS = 3
MAML_OPTIONS: dict[str, dict[str, Any]] = {
    "second_order_bn": {},
    "first_order": {"first_order": True},
    "anil": {"anil": True},
    "meta_sgd": {"meta_sgd": True},
    "checkpoint": {"checkpoint": True},
    "vmap": {"batching": "vmap"},
    "kaiming": {"head_init": "kaiming"},
    "learned_head": {"head": "learned", "num_outputs": 3, "head_init": "kaiming"},
}


def labels(desc: TaskDescription, n: int, g: torch.Generator) -> Tensor:
    if desc.task_target.name == "MULTILABEL_CLASSIFICATION":
        y = torch.randint(0, 2, (n, desc.num_classes), generator=g)
        y[0], y[1] = 1, 0
        return y
    if desc.task_target.name == "BINARY_CLASSIFICATION":
        return (torch.arange(n) % 2).reshape(n, 1)
    keys = torch.tensor(desc.class_keys)
    return keys[torch.arange(n) % len(keys)]


def make_task(desc: TaskDescription, seed: int) -> Task:
    g = torch.Generator().manual_seed(seed)
    xs, xq = (
        torch.randn(6, 5, generator=g, dtype=torch.float64),
        torch.randn(4, 5, generator=g, dtype=torch.float64),
    )
    return Task((xs, labels(desc, 6, g)), (xq, labels(desc, 4, g)), desc)


def global_batch(step: int, mixed: bool = True, fixed_width: bool = False) -> list[Task]:
    """Pairs of tasks of one description (``mixed``) or one description for all (what ``vmap`` needs);
    ``fixed_width``: only descriptions with three outputs (for a learned head)."""
    descs = WIDTH_3 if fixed_width else DESCS
    return [
        make_task(descs[(step + (i // 2 if mixed else 0)) % len(descs)], 100 * step + i)
        for i in range(GLOBAL_TASKS)
    ]


def local(items: list[Any], rank: int, world: int) -> list[Any]:
    n = len(items) // world
    return items[rank * n : (rank + 1) * n]


def backbone() -> torch.nn.Module:
    torch.manual_seed(0)
    return mlp(5, (4,), batch_norm=True).double()


def save(*objects: Any) -> bytes:
    buf = io.BytesIO()
    torch.save([o.state_dict() for o in objects], buf)
    return buf.getvalue()


def load(data: bytes, *objects: Any) -> None:
    for o, state in zip(objects, torch.load(io.BytesIO(data), weights_only=False)):
        o.load_state_dict(state)


def train_maml(
    options: dict[str, Any], rank: int, world: int, steps: range = range(STEPS), state: bytes | None = None
) -> tuple[MAML, torch.optim.Optimizer]:
    maml = MAML(backbone(), 4, inner_lr=0.3, num_inner_steps=2, **options)
    opt = torch.optim.SGD(maml.parameters(), lr=0.1, momentum=0.9)
    if state is not None:
        load(state, maml, opt)
    for step in steps:
        opt.zero_grad(set_to_none=True)
        tasks = global_batch(step, options.get("batching") != "vmap", options.get("head") == "learned")
        maml.meta_backward(local(tasks, rank, world))
        opt.step()
    return maml, opt


def train_protonet(rank: int, world: int) -> ProtoNet:
    net = ProtoNet(backbone())
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for step in range(STEPS):
        opt.zero_grad(set_to_none=True)
        net.meta_backward(local(global_batch(step), rank, world))
        opt.step()
    return net


PRETRAIN = (MULTICLASS, BINARY, ORDINAL)


def pretrain_batch(step: int, rank: int) -> tuple[tuple[Tensor, Tensor], TaskDescription]:
    task = make_task(PRETRAIN[(step + rank) % len(PRETRAIN)], 1000 * step + rank)
    return task.support, task.description


def new_pretrainer() -> tuple[MultiTaskPretrainer, torch.optim.Optimizer]:
    model = MultiTaskPretrainer(backbone(), 4, PRETRAIN, seed=0)
    return model, torch.optim.Adam(model.parameters(), lr=0.01)


def train_pretrainer(
    rank: int, world: int, steps: range = range(STEPS), state: bytes | None = None
) -> tuple[MultiTaskPretrainer, torch.optim.Optimizer]:
    """Each rank trains one task's batch per step (``world == 1``: the mean of both ranks' losses)."""
    model, opt = new_pretrainer()
    if state is not None:
        load(state, model, opt)
    for step in steps:
        if world > 1:
            model.training_step(*pretrain_batch(step, rank), opt)
            continue
        opt.zero_grad(set_to_none=True)
        for r in range(2):
            batch, desc = pretrain_batch(step, r)
            (model.loss(batch, desc) / 2).backward()
        opt.step()
    return model, opt


def torchrun(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``python -m torch.distributed.run --standalone --nproc_per_node 2 *args`` from the repository root."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    if check:
        assert done.returncode == 0, done.stderr[-4000:]
    return done


def free_port() -> int:
    """A TCP port on localhost that nothing listens on now (the OS picks it)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (Linux ``/proc``; none elsewhere)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def torchrun_nodes(*args: str, timeout: float = 120.0) -> list[subprocess.CompletedProcess[str]]:
    """Two ``torchrun`` "nodes" on this machine, one worker each, meeting by c10d rendezvous on localhost.

    ``python -m torch.distributed.run --nnodes 2 --nproc-per-node 1 --node-rank N --rdzv-backend c10d
    --rdzv-endpoint localhost:<free port> --rdzv-id <id> *args`` for ``N`` in 0, 1, each launcher in a
    session of its own. Past ``timeout`` seconds (or when one launcher fails and the other does not end
    within 30 s) every process of both sessions (launchers, workers, DataLoader workers) is killed and the
    test fails, naming what each printed last.
    """
    import contextlib
    import signal
    import tempfile
    import time
    import uuid

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    endpoint, run_id = f"localhost:{free_port()}", f"test-{uuid.uuid4().hex[:8]}"
    base = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1"]
    rendezvous = ["--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", run_id]
    with contextlib.ExitStack() as files:  # output to files: a full pipe would stall a launcher
        logs = [[files.enter_context(tempfile.TemporaryFile("w+")) for _ in "oe"] for _ in range(2)]
        procs = [
            subprocess.Popen(
                [*base, "--node-rank", str(node), *rendezvous, *args],
                env=env,
                cwd=ROOT,
                stdout=logs[node][0],
                stderr=logs[node][1],
                start_new_session=True,  # its own process group: killed as one
            )
            for node in range(2)
        ]
        deadline = time.monotonic() + timeout
        failed_at = None
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            if failed_at is None and any(p.poll() not in (None, 0) for p in procs):
                failed_at = time.monotonic()
            if failed_at is not None and time.monotonic() > failed_at + 30:
                break
            time.sleep(0.2)
        hung = [p for p in procs if p.poll() is None]
        # torchrun starts each worker in a session of its own: collect them before the launcher goes
        groups = {g for p in hung for g in (p.pid, *_descendants(p.pid))}
        for group in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)  # a worker and its DataLoader workers
        done = []
        for p, (out, err) in zip(procs, logs):
            p.wait()
            out.seek(0)
            err.seek(0)
            done.append(subprocess.CompletedProcess(p.args, p.returncode, out.read(), err.read()))
    if hung or any(d.returncode != 0 for d in done):
        if not hung:
            why = "failed"
        elif failed_at is None:
            why = f"killed after {timeout:.0f} s"
        else:
            why = "killed: one launcher failed and the other did not end within 30 s"
        tails = "\n".join(
            f"--- node {i} (exit {d.returncode}):\n{d.stderr[-3000:]}" for i, d in enumerate(done)
        )
        raise AssertionError(f"two-node torchrun {why}:\n{tails}")
    return done


def library_training(rank: int, world: int, workers: int) -> dict[str, Any]:
    """The library's distributed training through ``StreamLoader`` workers: MAML and multi-task pre-training.

    MAML: meta-batches of ``4 // world`` episodes of a ``MultiTaskEpisodeSampler`` (dealt to the ranks in
    turn); pre-training: global batches of 6 of a ``MultiTaskBatchSampler(shard_by="example")`` (every
    rank its part). With ``world == 1`` one process with the global batches. Float64, no BatchNorm.
    """
    from torchcross.data import FewShotMetaDataset, TensorTaskSource
    from torchcross.data.multitask import MultiTaskBatchSampler, MultiTaskEpisodeSampler
    from torchcross.data.stream import StreamLoader
    from torchcross.distributed import all_reduce_gradients

    g = torch.Generator().manual_seed(0)
    sources = {}
    for desc, n in ((MULTICLASS, 30), (BINARY, 17)):
        sources[desc.task_identifier] = TensorTaskSource(
            torch.randn(n, 5, generator=g, dtype=torch.float64), labels(desc, n, g), desc
        )
    episodes = {
        name: FewShotMetaDataset(s, n_shot=2, n_query=2, filter_classes_min_samples=0, length=50, seed=0)
        for name, s in sources.items()
    }
    meta = MultiTaskEpisodeSampler(episodes, GLOBAL_TASKS // world, mode="infinite", shuffle=False, seed=0)
    torch.manual_seed(0)  # every rank builds the same weights
    maml = MAML(mlp(5, (8,)).double(), 8, inner_lr=0.3, num_inner_steps=2, batching="loop")  # not timed
    opt = torch.optim.SGD(maml.parameters(), lr=0.1, momentum=0.9)
    for tasks in itertools.islice(StreamLoader(meta, num_workers=workers), STEPS):
        opt.zero_grad(set_to_none=True)
        maml.meta_backward(tasks)
        opt.step()
    batches = MultiTaskBatchSampler(sources, 6, mode="infinite", seed=0, shard_by="example")
    torch.manual_seed(0)
    model = MultiTaskPretrainer(mlp(5, (8,)).double(), 8, [MULTICLASS, BINARY], seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for (x, y), desc, weight in itertools.islice(StreamLoader(batches, num_workers=workers), 2 * STEPS):
        opt.zero_grad(set_to_none=True)
        (model.loss((x, y), desc) * weight).backward()
        all_reduce_gradients(model)
        opt.step()
    return {"maml": maml.state_dict(), "pretrainer": model.state_dict(), "position": batches.state_dict()}


def _gloo_rank(scenarios: Callable[[int], Any], rank: int, world: int, init: str, path: str) -> None:
    """One spawned rank: join the gloo group, save ``scenarios(rank)`` (or the traceback) under ``path``."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        torch.save(scenarios(rank), f"{path}/rank{rank}.pt")
    except Exception:
        Path(f"{path}/rank{rank}.err").write_text(traceback.format_exc())
        raise
    finally:
        dist.destroy_process_group()


def spawn_gloo_ranks(scenarios: Callable[[int], Any], folder: Path, world: int, timeout: float) -> list[Any]:
    """``scenarios(rank)`` of ``world`` spawned gloo ranks (a file rendezvous in ``folder``), by rank.

    ``scenarios`` is a module-level function (spawn pickles it by name). A rank still running after
    ``timeout`` seconds is killed (the test fails instead of hanging); the first rank's traceback is the
    failure message.
    """
    ctx = mp.get_context("spawn")
    init = f"file://{folder / 'rendezvous'}"
    procs = [
        ctx.Process(target=_gloo_rank, args=(scenarios, r, world, init, str(folder))) for r in range(world)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    for p in procs:
        if p.is_alive():
            p.kill()
    errors = [e.read_text() for e in sorted(folder.glob("*.err"))]
    assert not errors, errors[0]
    assert [p.exitcode for p in procs] == [0] * world
    return [torch.load(folder / f"rank{r}.pt", weights_only=False) for r in range(world)]
