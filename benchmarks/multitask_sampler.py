#!/usr/bin/env python
"""Overhead of the multi-task samplers per batch, next to the cost of loading the batch.

Workload: ``--tasks`` task sources of RGB uint8 images (3 x ``--size`` x ``--size``, in
memory, as MedIMeta stores them), with sizes spread over a factor of four; batches of
``--batch-size``; loading a batch = one ``get_batch`` gather of the images plus the
conversion to normalised float32 (the cheapest realistic loading: no disk, no decoding).

Timed per batch, interleaved over ``--reps`` repetitions in a shuffled order (median
reported; loading dominates and is noisy on a shared machine, so the loading rows
scatter around the floor by the machine's noise, while the scheduling rows isolate
the sampler's own cost):

* ``load only``: the floor: loading precomputed index batches, no scheduling at all;
* ``MultiTaskBatchSampler`` in epoch mode (proportional, uniform, temperature) and in
  infinite mode, each loading the same kind of batch;
* ``RandomInterleaveDataset`` over ``BatchedTaskSource`` objects;
* ``scheduling only`` rows: the same samplers over sources whose ``get_batch`` returns
  the indices, which isolates the sampler's own work (planning, sharding, indexing).

Before timing it checks that the sampler's batches equal the floor's batches for the
same plan. Prints a table, a summary line, and writes JSON (``--json``).

Usage:
    python benchmarks/multitask_sampler.py
    python benchmarks/multitask_sampler.py --tasks 16 --reps 7 --json results/multitask.json
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

import numpy as np
import torch
from _report import write_json

from torchcross.data import TaskSource
from torchcross.data.batched_source import BatchedTaskSource
from torchcross.data.collate import stack
from torchcross.data.interleave import RandomInterleaveDataset
from torchcross.data.multitask import MultiTaskBatchSampler
from torchcross.data.task import TaskDescription


class ImageSource(TaskSource):
    """In-memory uint8 images; ``get_batch`` gathers and converts to float like a real reader."""

    def __init__(self, images: torch.Tensor, labels: np.ndarray, desc: TaskDescription) -> None:
        self.images, self.labels, self.task_description = images, labels, desc
        self._labels_t = torch.from_numpy(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.images[i].float().div_(255), self._labels_t[i]

    def get_batch(self, indices):
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return self.images[idx].float().div_(255), self._labels_t[idx]


class IndexSource(TaskSource):
    """Same length and description, but ``get_batch`` returns the indices: no loading."""

    def __init__(self, source: ImageSource) -> None:
        self.labels, self.task_description = source.labels, source.task_description

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return i, int(self.labels[i])

    def get_batch(self, indices):
        return indices, None


def make_sources(num_tasks: int, base: int, size: int, seed: int) -> list[ImageSource]:
    rng = np.random.default_rng(seed)
    out = []
    for t in range(num_tasks):
        n = int(base * (1 + 3 * t / max(1, num_tasks - 1)))  # sizes base .. 4 * base
        images = torch.from_numpy(rng.integers(0, 256, size=(n, 3, size, size), dtype=np.uint8))
        desc = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"}, f"task{t}")
        out.append(ImageSource(images, rng.integers(0, 2, size=n), desc))
    return out


def time_per_batch(make_iterable, max_batches: int) -> tuple[float, int]:
    """Seconds per batch over one pass (construction and first-batch planning included)."""
    start = time.perf_counter()
    n = 0
    for _ in make_iterable():
        n += 1
        if n >= max_batches:
            break
    return (time.perf_counter() - start) / n, n


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--base", type=int, default=96, help="examples in the smallest task")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-batches", type=int, default=20, help="batches timed per pass")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", default=os.path.join(tempfile.gettempdir(), "multitask_sampler.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)

    sources = make_sources(args.tasks, args.base, args.size, seed=0)
    index_sources = [IndexSource(s) for s in sources]
    b = args.batch_size

    # correctness first: the sampler's batches are the floor's batches for the same plan
    sampler = MultiTaskBatchSampler(sources, b, seed=1)
    order, occ = sampler.draws(0, len(sampler))
    plan = [(int(t), sampler.batch_indices(int(t), int(k))) for t, k in zip(order, occ)]
    for ((x, y), _), (t, idx) in zip(MultiTaskBatchSampler(sources, b, seed=1), plan):
        fx, fy = sources[t].get_batch(idx)
        if not (torch.equal(x, fx) and torch.equal(y, fy)):
            raise RuntimeError("the sampler's batch differs from the floor's batch for the same plan")
    all_seen = sorted((t, int(i)) for t, idx in plan for i in idx)
    expected = sorted((t, i) for t, s in enumerate(sources) for i in range(len(s)))
    if all_seen != expected:
        raise RuntimeError("the epoch does not visit every example exactly once")

    def floor():
        for t, idx in plan:
            yield sources[t].get_batch(idx)

    def interleave(srcs):
        return RandomInterleaveDataset(
            [
                BatchedTaskSource(s, b, collate_fn=stack, with_task_description=True, seed=i)
                for i, s in enumerate(srcs)
            ],
            seed=1,
        )

    configs = {
        "load only (floor)": lambda: floor(),
        "MultiTaskBatchSampler epoch/proportional": lambda: MultiTaskBatchSampler(sources, b, seed=1),
        "MultiTaskBatchSampler epoch/uniform": lambda: MultiTaskBatchSampler(
            sources, b, weighting="uniform", seed=1
        ),
        "MultiTaskBatchSampler epoch/temperature": lambda: MultiTaskBatchSampler(
            sources, b, weighting="temperature", temperature=2.0, seed=1
        ),
        "MultiTaskBatchSampler infinite/temperature": lambda: MultiTaskBatchSampler(
            sources, b, weighting="temperature", temperature=2.0, mode="infinite", seed=1
        ),
        "RandomInterleaveDataset(BatchedTaskSource)": lambda: interleave(sources),
        "scheduling only: epoch/proportional": lambda: MultiTaskBatchSampler(index_sources, b, seed=1),
        "scheduling only: epoch/temperature": lambda: MultiTaskBatchSampler(
            index_sources, b, weighting="temperature", temperature=2.0, seed=1
        ),
        "scheduling only: infinite/temperature": lambda: MultiTaskBatchSampler(
            index_sources, b, weighting="temperature", temperature=2.0, mode="infinite", seed=1
        ),
        "scheduling only: RandomInterleaveDataset": lambda: interleave(index_sources),
    }
    times: dict[str, list[float]] = {k: [] for k in configs}
    order_rng = np.random.default_rng(0)
    names = list(configs)
    for _ in range(args.reps):  # interleaved across repetitions, in a new order each time
        for name in order_rng.permutation(names):
            t, _n = time_per_batch(configs[name], args.max_batches)
            times[str(name)].append(t)
    med = {k: statistics.median(v) for k, v in times.items()}
    load = med["load only (floor)"]

    print(
        f"{args.tasks} tasks, {sum(len(s) for s in sources)} images 3x{args.size}x{args.size}, batch {b}, "
        f"{args.max_batches} batches per pass, median of {args.reps}"
    )
    print(f"{'implementation':48s} {'us/batch':>10s} {'vs floor':>9s}")
    for name, t in med.items():
        print(f"{name:48s} {t * 1e6:10.1f} {t / load:9.3f}")
    overhead = max(v for k, v in med.items() if k.startswith("scheduling only"))
    print(
        f"sampler overhead per batch: at most {overhead * 1e6:.0f} us, {100 * overhead / load:.1f}% of loading "
        f"({load * 1e3:.2f} ms for the cheapest realistic load: in-memory gather + float conversion)"
    )
    result = {
        "benchmark": "multitask_sampler",
        "args": vars(args),
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "seconds_per_batch_median": med,
        "seconds_per_batch_all": times,
        "max_overhead_fraction_of_loading": overhead / load,
    }
    write_json(args.json, result)


if __name__ == "__main__":
    main()
