#!/usr/bin/env python
"""Protocol benchmarks: evaluation throughput (batched vs one at a time) and the demo's wall time.

Evaluation: 100 fixed 5-shot episodes (10 query per class) of the demo's 10-class ``digit``
task (test split of ``digits_scan_a``, 16x16 greyscale), a Conv4 backbone with 32
filters on CPU, ``torch.set_num_threads`` as given. Learners:

* ``probe-1`` / ``probe-25`` / ``probe-100``: a linear probe (:class:`FineTuner`,
  frozen backbone, BatchNorm running statistics, 50 Adam steps), ``evaluate(...,
  batch_size=B)``: with ``B > 1`` the episodes go to ``predict_many`` together, which
  passes every distinct image through the backbone once and fits the heads in one
  batched run;
* ``finetune``: full fine-tuning (backbone and head, 20 Adam steps) episode by episode;
* ``maml``: :meth:`MAML.predict` (3 inner SGD steps), episode by episode.

First checks that the probe's AUROC per episode is the same whatever the batch size
(up to float32 near-ties, 1e-3),
then interleaves the learners over repetitions and reports the median episodes per
second. ``--demo`` also times ``torchcross demo`` (a subprocess, full size) once.

Usage:
    python benchmarks/protocol.py [--threads 1] [--repeats 3] [--demo] [--json PATH]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from torchcross.cli.demo_data import write_demo_medimeta
from torchcross.data.metadataset import sample_episode_set
from torchcross.evaluation import evaluate
from torchcross.learners import MAML, FineTuner
from torchcross.protocol.backbone import build_backbone
from torchcross.protocol.data import open_task


def _learners() -> dict[str, tuple[object, int]]:
    net, width = build_backbone("conv4", 1, 16, hidden=32, seed=0)
    probe = FineTuner(net, width, num_steps=50, lr=0.05, batch_norm="frozen")
    full = FineTuner(net, width, num_steps=20, lr=1e-3, finetune_backbone=True, batch_norm="batch")
    maml = MAML(net, width, inner_lr=0.1, num_inner_steps=3)
    return {
        "probe-1": (probe, 1),
        "probe-25": (probe, 25),
        "probe-100": (probe, 100),
        "finetune": (full, 1),
        "maml": (maml, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--demo", action="store_true", help="also time `torchcross demo` once")
    parser.add_argument("--json", default="benchmarks/results/protocol.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    root = write_demo_medimeta(Path(tempfile.gettempdir()) / "torchcross-bench-demo-data")
    source = open_task(root, "digits_scan_a", "digit", "test", channels=1, image_size=None)
    episodes = sample_episode_set(source, 100, 5, 10, seed=0).as_dataset(source)
    tasks = [episodes[i] for i in range(len(episodes))]  # loaded once: this measures the learners
    learners = _learners()

    one = evaluate(learners["probe-1"][0], tasks, progress=False, batch_size=1).table()["auroc"]
    for name in ("probe-25", "probe-100"):
        learner, bs = learners[name]
        other = evaluate(learner, tasks, progress=False, batch_size=bs).table()["auroc"]
        diff = float(np.max(np.abs(np.subtract(one, other))))
        # float32 features from other batch compositions: AUROC may move by a swapped near-tie
        if diff > 1e-3:
            raise SystemExit(f"{name} gives other AUROCs than probe-1 (max difference {diff})")
        print(f"{name}: per-episode AUROC within {diff:.1e} of probe-1")

    times: dict[str, list[float]] = {k: [] for k in learners}
    aurocs: dict[str, float] = {}
    for _ in range(args.repeats):
        for name, (learner, bs) in learners.items():
            start = time.perf_counter()
            result = evaluate(learner, tasks, progress=False, batch_size=bs)
            times[name].append(time.perf_counter() - start)
            aurocs[name] = result.summary()["auroc"].mean
    rows = []
    base = statistics.median(times["probe-1"])
    print(f"100 episodes, 10-way 5-shot, Conv4-32 16x16, {args.threads} thread(s), median of {args.repeats}")
    print("| learner | seconds | episodes/s | speed-up vs probe-1 | mean AUROC |\n|:--|--:|--:|--:|--:|")
    for name, ts in times.items():
        med = statistics.median(ts)
        rows.append({"learner": name, "seconds": med, "episodes_per_s": 100 / med, "auroc": aurocs[name]})
        print(f"| {name} | {med:.2f} | {100 / med:.1f} | {base / med:.1f}x | {aurocs[name]:.3f} |")

    demo = None
    if args.demo:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "torchcross.cli.demo", "--out", tmp, "--threads", str(args.threads)],
                check=True,
                capture_output=True,
            )
            demo = time.perf_counter() - start
        print(f"\ntorchcross demo (full size, {args.threads} thread(s)): {demo:.1f} s wall")

    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                "machine": {
                    "python": platform.python_version(),
                    "torch": torch.__version__,
                    "cpus": os.cpu_count(),
                },
                "threads": args.threads,
                "evaluation": rows,
                "demo_wall_s": demo,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
