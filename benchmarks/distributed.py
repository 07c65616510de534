#!/usr/bin/env python
"""MAML meta-steps per second on 1 and 2 processes (gloo, CPU), scaling efficiency, all-reduces per step.

Strong scaling: the global meta-batch is fixed (``--tasks`` tasks per step); with ``W`` processes each
rank adapts ``tasks / W`` of them and ``meta_backward`` averages the meta-gradients over ranks. Each
process uses one thread. Scaling efficiency is ``steps/s(W) / (W * steps/s(1))``; it can only approach 1
when the machine has a free core per process and the all-reduce is cheap next to a rank's share of the
inner loops. The number of ``torch.distributed.all_reduce`` calls per meta-step is counted by wrapping
the function (one expected: gradients, presence flags and buffers travel in one flat tensor).

Reported next to the speed: whether the ranks hold bit-identical parameters after the warm-up
steps, and how far those are from one process trained on the same global meta-batches (float32).

Usage:
    python benchmarks/distributed.py --steps 20 --workload conv4 --json benchmarks/results/distributed.json
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from typing import Any

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _report import write_json

from torchcross.data.task import Task, TaskDescription
from torchcross.learners import MAML, conv4, mlp

WAYS = 5
D = TaskDescription("MULTICLASS_CLASSIFICATION", {i: str(i) for i in range(WAYS)}, "bench")


def _task(workload: str, seed: int) -> Task:
    g = torch.Generator().manual_seed(seed)
    shape = (1, 28, 28) if workload == "conv4" else (64,)
    xs = torch.randn(WAYS * 5, *shape, generator=g)
    xq = torch.randn(WAYS * 15, *shape, generator=g)
    return Task((xs, torch.arange(WAYS).repeat(5)), (xq, torch.arange(WAYS).repeat(15)), D)


def _model(workload: str) -> MAML:
    torch.manual_seed(0)
    backbone = (
        conv4(1, hidden=32, image_size=28) if workload == "conv4" else mlp(64, (128, 128), batch_norm=True)
    )
    return MAML(backbone, backbone.num_features, inner_lr=0.4, num_inner_steps=5)


def _batch(workload: str, step: int, tasks: int, rank: int, world: int) -> list[Task]:
    per_rank = tasks // world
    return [_task(workload, 1000 * step + rank * per_rank + i) for i in range(per_rank)]


def _train(maml: MAML, opt: torch.optim.Optimizer, args: Any, steps: range, rank: int, world: int) -> None:
    for step in steps:
        opt.zero_grad(set_to_none=True)
        maml.meta_backward(_batch(args.workload, step, args.tasks, rank, world))
        opt.step()


def _worker(rank: int, world: int, init: str, args: Any, out: Any) -> None:
    torch.set_num_threads(1)
    if world > 1:
        dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    maml = _model(args.workload)
    opt = torch.optim.SGD(maml.parameters(), lr=0.01)  # Adam would magnify rounding in ~zero gradients
    _train(maml, opt, args, range(args.warmup), rank, world)
    flat = torch.cat([p.detach().flatten() for p in maml.parameters()]).numpy()  # by value, not shared
    calls = []
    if world > 1:
        original = dist.all_reduce

        def counting(*a: Any, **k: Any) -> Any:
            calls.append(1)
            return original(*a, **k)

        dist.all_reduce = counting
        dist.barrier()
    t0 = time.perf_counter()
    _train(maml, opt, args, range(args.warmup, args.warmup + args.steps), rank, world)
    if world > 1:
        dist.barrier()
    seconds = time.perf_counter() - t0
    out.put((rank, flat, seconds, len(calls)))
    if world > 1:
        dist.destroy_process_group()


def run(world: int, args: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    with tempfile.TemporaryDirectory() as tmp:
        init = f"file://{tmp}/rendezvous"
        procs = [ctx.Process(target=_worker, args=(r, world, init, args, out)) for r in range(world)]
        for p in procs:
            p.start()
        results = sorted(out.get(timeout=3600) for _ in procs)
        for p in procs:
            p.join()
    flats = [torch.from_numpy(r[1]) for r in results]
    seconds = max(r[2] for r in results)
    return {
        "processes": world,
        "steps_per_s": args.steps / seconds,
        "all_reduces_per_step": results[0][3] / args.steps,
        "ranks_bit_identical": all(torch.equal(flats[0], f) for f in flats),
        "params": flats[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=["mlp", "conv4"], default="conv4")
    parser.add_argument("--tasks", type=int, default=4, help="tasks per global meta-batch")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rows = [run(1, args), run(2, args)]
    max_diff = float((rows[0]["params"] - rows[1]["params"]).abs().max())  # after warm-up steps
    base = rows[0]["steps_per_s"]
    print(
        f"# MAML {args.workload}, {args.tasks} tasks per step, {os.cpu_count()} CPU cores, 1 thread per process"
    )
    print("| processes | meta-steps/s | scaling efficiency | all-reduces/step | ranks bit-identical |")
    print("| --- | --- | --- | --- | --- |")
    report = []
    for row in rows:
        eff = row["steps_per_s"] / (row["processes"] * base)
        print(
            f"| {row['processes']} | {row['steps_per_s']:.2f} | {eff:.2f} | "
            f"{row['all_reduces_per_step']:g} | {row['ranks_bit_identical']} |"
        )
        report.append({k: v for k, v in row.items() if k != "params"} | {"scaling_efficiency": eff})
    print(
        f"# max |params(2 processes) - params(1 process)| after {args.warmup} warm-up steps: {max_diff:.1e}"
    )
    write_json(
        args.json, {"workload": args.workload, "tasks": args.tasks, "rows": report, "max_diff": max_diff}
    )


if __name__ == "__main__":
    main()
