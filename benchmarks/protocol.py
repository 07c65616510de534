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
* ``finetune``: full fine-tuning (backbone and head, 20 Adam steps, BatchNorm as
  ``--batch-norm``, by default the paper's ``"support"``) episode by episode
  (``batching="loop"``);
* ``finetune-batched``: the same with ``batching="vmap"`` and ``evaluate(...,
  batch_size=--ft-batch)``: the episodes' backbones and heads stacked and fine-tuned in one
  vectorised computation (chunks halved when memory runs out): on a CPU, Conv4's episodes run as
  grouped convolutions, channels-last, in chunks of about ``GROUPED_CPU_BYTES`` of first-layer
  activations (``torchcross.learners._grouped``); elsewhere, and for ResNets, under ``torch.func.vmap``;
* ``finetune-vmap`` (Conv4 on a CPU only): the stacked episodes under ``torch.func.vmap`` instead of
  grouped (``tuner.grouped = False``), for comparison;
* ``maml``: :meth:`MAML.predict` (3 inner SGD steps), episode by episode.

First checks that the batched learners compute what the one-at-a-time ones compute: the probe's
per-episode AUROCs (up to float32 near-ties, 1e-3), and the fine-tuning logits of the first 8
episodes in float64 (to 1e-6; in float32 Adam turns the rounding noise of gradients that are
exactly zero in exact arithmetic into steps of the full learning rate, so that the loop itself
moves a logit by a few hundredths when only the order of the support images changes), then interleaves the learners over repetitions and reports
the median episodes per second and, for the fine-tuning rows, the peak memory of a run: on a GPU
``torch.cuda.max_memory_allocated``, on the CPU the rise of the process's peak resident memory over
the run (Linux: ``/proc/self/status`` ``VmHWM``, reset through ``/proc/self/clear_refs`` after
``malloc_trim``; ``None`` elsewhere). ``--demo`` also times ``torchcross demo`` (a subprocess, full
size) once. ``--profile`` also runs the loop and the batched row once (the first 25 episodes) under
``torch.profiler`` and prints where its time goes (self time of the operators, in ms per episode, grouped: convolutions, BatchNorm, pooling,
activations, element-wise arithmetic, copies and fills, the rest), to show what a vectorised run can save.

On a lent GPU: ``--device cuda --backbone resnet18 --image-size 224`` (3-channel, upscaled digits,
random weights) compares the loop and the batched run at the paper's scale (``--only finetune``
skips the probe and MAML rows).

Usage:
    python benchmarks/protocol.py [--threads 1] [--repeats 2] [--demo] [--json PATH]
    python benchmarks/protocol.py --quick                      # a few seconds: 6 episodes, 2 steps
    python benchmarks/protocol.py --threads 1 --only finetune --profile   # where the time goes
    python benchmarks/protocol.py --device cuda --backbone resnet18 --image-size 224 --only finetune
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from torchcross.cli.demo_data import write_demo_medimeta
from torchcross.data.metadataset import sample_episode_set
from torchcross.evaluation import evaluate
from torchcross.learners import MAML, FineTuner
from torchcross.learners.policies import HeadPolicy, InnerLoop
from torchcross.protocol.backbone import build_backbone
from torchcross.protocol.data import open_task


def _learners(args: argparse.Namespace) -> dict[str, tuple[Any, int]]:
    channels = 1 if args.backbone == "conv4" else 3
    net, width = build_backbone(args.backbone, channels, args.image_size, hidden=32, seed=0)
    net = net.to(args.device)

    def full(batching: str) -> FineTuner:
        return FineTuner(
            net,
            width,
            inner=InnerLoop(lr=1e-3, steps=args.ft_steps, optimizer="adam"),
            finetune_backbone=True,
            batch_norm=args.batch_norm,
            head=HeadPolicy(init="kaiming", key="episode"),  # the protocol's heads: any order, any batching
            batching=batching,
        )

    learners: dict[str, tuple[Any, int]] = {}
    if args.only != "finetune":
        probe = FineTuner(net, width, num_steps=args.probe_steps, lr=0.05, batch_norm="frozen")
        learners |= {"probe-1": (probe, 1), "probe-25": (probe, 25), "probe-100": (probe, 100)}
    learners |= {"finetune": (full("loop"), 1), "finetune-batched": (full("vmap"), args.ft_batch)}
    if args.device == "cpu" and args.backbone == "conv4":  # where the batched row runs grouped
        vmapped = full("vmap")
        vmapped.grouped = False
        learners["finetune-vmap"] = (vmapped, args.ft_batch)
    if args.only != "finetune":
        learners["maml"] = (MAML(net, width, inner_lr=0.1, num_inner_steps=3), 1)
    return learners


def _float64_difference(args: argparse.Namespace, tasks: list) -> float:
    """The largest difference of the loop's and the batched run's query logits, in float64."""
    learners = _learners(args)
    double = [t.to(args.device, dtype=torch.float64) for t in tasks]
    results = []
    for name in ("finetune", "finetune-batched"):
        learner = learners[name][0]
        learner.backbone.double()
        results.append(learner.predict_many(double))
        learner.backbone.float()
    return max(float((a - b).abs().max()) for a, b in zip(*results))


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _cpu_peak_meter() -> Callable[[], float | None] | None:
    """A function that resets the process's peak resident memory and returns one that reads its rise
    (MiB) since then; ``None`` where Linux's ``/proc/self/clear_refs`` is not available."""
    status, clear = Path("/proc/self/status"), Path("/proc/self/clear_refs")
    if not (status.exists() and clear.exists() and os.access(clear, os.W_OK)):
        return None

    def field(name: str) -> float:
        line = next(x for x in status.read_text().splitlines() if x.startswith(name + ":"))
        return int(line.split()[1]) / 1024  # kB -> MiB

    def start() -> Callable[[], float]:
        with contextlib.suppress(OSError):  # hand freed memory back: the next run's allocations show
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        clear.write_text("5")  # resets VmHWM to the current resident size
        base = field("VmRSS")
        return lambda: field("VmHWM") - base

    return start  # type: ignore[return-value]


def _run(learner: Any, tasks: list, bs: int, device: str) -> tuple[float, Any, float | None]:
    """(seconds, result, peak MiB) of one evaluation."""
    meter = None
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        start_meter = _cpu_peak_meter()
        meter = start_meter() if start_meter is not None else None
    _sync(device)
    start = time.perf_counter()
    result = evaluate(learner, tasks, progress=False, batch_size=bs, device=device)
    _sync(device)
    seconds = time.perf_counter() - start
    if device.startswith("cuda"):
        peak: float | None = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = meter() if meter is not None else None  # type: ignore[operator]
    return seconds, result, peak


# operator name -> group of the --profile table (first matching prefix; anything else is "other")
_OPERATOR_GROUPS = (
    ("convolution", ("aten::mkldnn_convolution", "aten::convolution_backward", "aten::_convolution")),
    ("batch norm", ("aten::native_batch_norm", "aten::_batch_norm")),
    ("pooling", ("aten::max_pool2d", "aten::avg_pool2d", "aten::adaptive_avg_pool2d")),
    ("activation", ("aten::clamp_min", "aten::threshold_backward", "aten::relu")),
    ("linear", ("aten::addmm", "aten::mm", "aten::bmm")),
    ("element-wise", ("aten::mul", "aten::add", "aten::sub", "aten::div", "aten::sqrt", "aten::lerp")),
    ("reductions", ("aten::sum", "aten::mean")),
    ("copies and fills", ("aten::copy_", "aten::fill_", "aten::zero_", "aten::_to_copy", "aten::clone")),
)


def _profile(learner: Any, tasks: list, bs: int, device: str) -> dict[str, float]:
    """Seconds of operator self time per group (see ``_OPERATOR_GROUPS``) of one evaluation of ``tasks``."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    with profile(activities=activities) as prof:
        evaluate(learner, tasks, progress=False, batch_size=bs, device=device)
        _sync(device)
    groups = {name: 0.0 for name, _ in _OPERATOR_GROUPS} | {"other": 0.0}
    for event in prof.key_averages():
        self_us = event.self_device_time_total if device.startswith("cuda") else event.self_cpu_time_total
        name = next((g for g, prefixes in _OPERATOR_GROUPS if event.key.startswith(prefixes)), "other")
        groups[name] += self_us / 1e6
    return groups


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backbone", default="conv4", help="conv4 (default) or resnet18 (random weights)")
    parser.add_argument("--image-size", type=int, default=16, help="16 (the demo's own size) or e.g. 224")
    parser.add_argument("--batch-norm", default="support", choices=("support", "batch", "frozen"))
    parser.add_argument("--ft-steps", type=int, default=20, help="full fine-tuning steps")
    parser.add_argument("--ft-batch", type=int, default=25, help="episodes fine-tuned at once (batched row)")
    parser.add_argument("--probe-steps", type=int, default=50)
    parser.add_argument("--only", choices=("all", "finetune"), default="all")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 6 episodes, 2 steps, 1 repeat")
    parser.add_argument("--demo", action="store_true", help="also time `torchcross demo` once")
    parser.add_argument("--profile", action="store_true", help="where the fine-tuning rows spend their time")
    parser.add_argument("--json", default="benchmarks/results/protocol.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.episodes, args.repeats, args.ft_steps, args.probe_steps, args.ft_batch = 6, 1, 2, 5, 3
    torch.set_num_threads(args.threads)

    root = write_demo_medimeta(Path(tempfile.gettempdir()) / "torchcross-bench-demo-data")
    channels = 1 if args.backbone == "conv4" else 3
    size = None if args.image_size == 16 else args.image_size
    source = open_task(root, "digits_scan_a", "digit", "test", channels=channels, image_size=size)
    episodes = sample_episode_set(source, args.episodes, 5, 10, seed=0).as_dataset(source)
    tasks = [episodes[i] for i in range(len(episodes))]  # loaded once: this measures the learners
    learners = _learners(args)

    def aurocs(name: str) -> list[float]:
        learner, bs = learners[name]
        return evaluate(learner, tasks, progress=False, batch_size=bs, device=args.device).table()["auroc"]

    differences = {}
    for base_name, name in [("probe-1", "probe-25"), ("probe-1", "probe-100")]:
        if name not in learners:
            continue
        diff = float(np.max(np.abs(np.subtract(aurocs(base_name), aurocs(name)))))
        # float32 features from other batch compositions: AUROC may move by a swapped near-tie
        if diff > 1e-3:
            raise SystemExit(f"{name} gives other AUROCs than {base_name} (max difference {diff})")
        differences[name] = diff
        print(f"{name}: per-episode AUROC within {diff:.1e} of {base_name}")
    differences["finetune-batched"] = _float64_difference(args, tasks[:8])
    if differences["finetune-batched"] > 1e-6:
        raise SystemExit(
            f"batched fine-tuning gives other float64 logits ({differences['finetune-batched']})"
        )
    print(f"finetune-batched: float64 logits within {differences['finetune-batched']:.1e} of the loop")

    times: dict[str, list[float]] = {k: [] for k in learners}
    peaks: dict[str, list[float]] = {k: [] for k in learners}
    means: dict[str, float] = {}
    for _ in range(args.repeats):
        for name, (learner, bs) in learners.items():  # interleaved: every learner once per repetition
            seconds, result, peak = _run(learner, tasks, bs, args.device)
            times[name].append(seconds)
            if peak is not None:
                peaks[name].append(peak)
            means[name] = result.summary()["auroc"].mean
    n = len(tasks)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor()
    print(
        f"{n} episodes, 10-way 5-shot, {args.backbone} {args.image_size}px, {args.device} ({device_name}), "
        f"{args.threads} thread(s), fine-tuning {args.ft_steps} steps BatchNorm {args.batch_norm!r}, "
        f"median of {args.repeats}"
    )
    print("| learner | batch | seconds | episodes/s | peak MiB | mean AUROC |\n|:--|--:|--:|--:|--:|--:|")
    rows = []
    for name, ts in times.items():
        med = statistics.median(ts)
        peak = max(peaks[name]) if peaks[name] else None
        rows.append(
            {
                "learner": name,
                "batch_size": learners[name][1],
                "seconds": med,
                "episodes_per_s": n / med,
                "peak_mib": peak,
                "auroc": means[name],
            }
        )
        shown = "n/a" if peak is None else f"{peak:.0f}"
        print(f"| {name} | {learners[name][1]} | {med:.2f} | {n / med:.2f} | {shown} | {means[name]:.3f} |")
    # the ratio of each repetition's pair (measured back to back), then the median
    ratio = statistics.median(a / b for a, b in zip(times["finetune"], times["finetune-batched"]))
    print(f"\nbatched full fine-tuning: {ratio:.2f}x the episodes per second of the loop ({args.device})")

    profiles = None
    profiled = min(n, 25)  # a profiler's records of every operation of 100 episodes would slow the run
    if args.profile:
        profiles = {
            name: _profile(learners[name][0], tasks[:profiled], learners[name][1], args.device)
            for name in ("finetune", "finetune-batched")
        }
        print(f"\nwhere the time goes (operator self time, ms per episode, {args.device}):")
        print("| operators | finetune | finetune-batched |\n|:--|--:|--:|")
        for group in profiles["finetune"]:
            loop_ms, batched_ms = (
                1e3 * profiles[k][group] / profiled for k in ("finetune", "finetune-batched")
            )
            print(f"| {group} | {loop_ms:.2f} | {batched_ms:.2f} |")
        totals = [1e3 * sum(profiles[k].values()) / profiled for k in ("finetune", "finetune-batched")]
        print(f"| total | {totals[0]:.2f} | {totals[1]:.2f} |")

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

    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "device": args.device,
            "device_name": device_name,
        },
        "threads": args.threads,
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "demo")},
        "evaluation": rows,
        "auroc_differences": differences,
        "finetune_batched_speedup": ratio,
        "demo_wall_s": demo,
        "profile_seconds": profiles,
    }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
    sys.exit(0)
