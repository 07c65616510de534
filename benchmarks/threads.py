#!/usr/bin/env python
"""MAML meta-step time quiet and beside busy cores: torch's default thread count against the thread policy.

Workload A-nobn of ``maml.py`` (Conv4-64 without BatchNorm, 1x28x28, 5-way 5-shot 15 query, 5 SGD inner
steps lr 0.4, 4 tasks, second order), run by ``torchcross.learners.MAML`` (task loop). One meta-step = inner
loops, query losses, meta-gradient, Adam update.

Two conditions: **quiet** (nothing else started by this script) and **busy** (``--busy`` processes spinning
in a Python ``while True`` loop, started before the threads are chosen, as a training run started on a
machine where other jobs already run). Two settings: **torch default** (the thread count torch picked at
start-up) and **policy** (``torchcross.utils.configure_threads("auto")``, which the CLI applies, chosen
in each condition after the busy processes started). Reported: median milliseconds per meta-step over
``--steps`` steps (after one warm-up step), the thread count, and the busy/quiet ratio of each setting.
Goal: with the policy the busy step is at most 2x the quiet one.

Run it on an otherwise quiet machine: other load skews both conditions.

Usage:
    python benchmarks/threads.py --steps 10 --json benchmarks/results/threads.json
    python benchmarks/threads.py --quick --steps 3      # a smoke run of the script
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _report import write_json

from torchcross.data.task import Task, TaskDescription
from torchcross.learners import MAML
from torchcross.learners.backbones import conv4
from torchcross.utils import available_cpus, configure_threads

TORCH_DEFAULT_THREADS = torch.get_num_threads()


def episodes(n_tasks: int, seed: int = 0) -> list[Task]:
    """5-way 5-shot 15-query tasks of random 1x28x28 images (timing needs no real data)."""
    g = torch.Generator().manual_seed(seed)
    desc = TaskDescription("MULTICLASS_CLASSIFICATION", {i: str(i) for i in range(5)}, "bench")
    tasks = []
    for _ in range(n_tasks):
        ys, yq = torch.arange(25) % 5, torch.arange(75) % 5
        xs, xq = torch.randn(25, 1, 28, 28, generator=g), torch.randn(75, 1, 28, 28, generator=g)
        tasks.append(Task((xs, ys), (xq, yq), desc))
    return tasks


def time_steps(steps: int, quick: bool) -> list[float]:
    """Seconds per meta-step of ``steps`` MAML meta-steps (after one warm-up step)."""
    torch.manual_seed(0)
    hidden, inner, n_tasks = (16, 2, 2) if quick else (64, 5, 4)
    backbone = conv4(1, hidden, batch_norm=False, image_size=28)
    maml = MAML(backbone, backbone.num_features, inner_lr=0.4, num_inner_steps=inner, batching="loop")
    outer = torch.optim.Adam(maml.parameters(), lr=1e-3)
    tasks = episodes(n_tasks)
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        outer.zero_grad()
        maml.meta_backward(tasks)
        outer.step()
        if i > 0:
            times.append(time.perf_counter() - start)
    return times


def start_busy(n: int) -> list[subprocess.Popen]:
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    time.sleep(0.5)  # let them take their cores
    return procs


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
        p.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=10, help="timed meta-steps per cell (default: %(default)s)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: Conv4-16, 2 inner steps, 2 tasks (not the goal's workload)",
    )
    p.add_argument(
        "--busy", type=int, default=1, help="busy-loop processes in the busy condition (default: 1)"
    )
    p.add_argument(
        "--json", default="benchmarks/results/threads.json", help="report file (default: %(default)s)"
    )
    args = p.parse_args()
    if os.environ.get("OMP_NUM_THREADS") or os.environ.get("MKL_NUM_THREADS"):
        print("# note: OMP_NUM_THREADS/MKL_NUM_THREADS is set; 'torch default' is that setting")
    cells: dict[str, dict[str, dict[str, float]]] = {"torch default": {}, "policy": {}}
    for condition in ("quiet", "busy"):
        busy = start_busy(args.busy) if condition == "busy" else []
        try:
            for setting in cells:
                if setting == "policy":
                    threads = configure_threads("auto")
                else:
                    torch.set_num_threads(TORCH_DEFAULT_THREADS)
                    threads = TORCH_DEFAULT_THREADS
                times = time_steps(args.steps, args.quick)
                cells[setting][condition] = {"threads": threads, "ms": 1000 * statistics.median(times)}
                print(
                    f"# {condition:<5} {setting:<13} {threads} thread(s): {cells[setting][condition]['ms']:.1f} ms"
                )
        finally:
            stop(busy)
    cpus = available_cpus()
    workload = "quick: Conv4-16, 2 inner steps, 2 tasks" if args.quick else "A-nobn, 4 tasks"
    print(
        f"MAML meta-step ({workload}, second order), median of {args.steps}; {cpus} CPUs available, "
        f"busy condition: {args.busy} busy-loop process(es)"
    )
    print(
        f"{'setting':<14} {'quiet thr':>9} {'quiet ms':>9} {'busy thr':>8} {'busy ms':>9} {'busy/quiet':>10}"
    )
    report_cells = []
    for setting, c in cells.items():
        ratio = c["busy"]["ms"] / c["quiet"]["ms"]
        print(
            f"{setting:<14} {c['quiet']['threads']:>9} {c['quiet']['ms']:>9.1f} {c['busy']['threads']:>8} "
            f"{c['busy']['ms']:>9.1f} {ratio:>10.2f}"
        )
        report_cells.append(
            {"setting": setting, **{f"{k}_{m}": v[m] for k, v in c.items() for m in v}, "ratio": ratio}
        )
    goal = cells["policy"]["busy"]["ms"] <= 2 * cells["policy"]["quiet"]["ms"]
    print(f"goal (policy: busy <= 2x quiet): {'met' if goal else 'NOT met'}")
    write_json(
        args.json,
        {
            "benchmark": "threads",
            "steps": args.steps,
            "workload": "quick" if args.quick else "A-nobn",
            "busy_processes": args.busy,
            "available_cpus": cpus,
            "torch_default_threads": TORCH_DEFAULT_THREADS,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cells": report_cells,
            "goal_met": goal,
        },
    )


if __name__ == "__main__":
    main()
