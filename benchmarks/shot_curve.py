#!/usr/bin/env python
"""The wall time of a 10-shot-count curve: ``torchcross run`` with a linear probe on cached features.

The MedIMeta authors' foundation-model benchmark evaluates every backbone at 1, 2, 3, 5, 7, 10, 15, 20,
25 and 30 shots on 100 episodes each. This script times that curve for one target task through the
protocol (`run_protocol()` with ``[evaluation] shots``, ``methods = ["linear-probe"]`` and
``[finetune] preset = "fsl-benchmark"``: Adam, lr 1e-4, 150 steps, zero-initialised head, the heads of
an episode set trained in batches), on the demo digits (`torchcross.cli.demo_data`, target
``digits_scan_a/even digit``, binary, about 450 images written at ``--size`` pixels):

* ``cold``: an empty embedding cache: the backbone's pass over the target's images, episode sampling
  and the 10 x 100 probes;
* ``warm``: a second run into a fresh output folder that shares the first one's embedding cache: what
  another seed, method or run on the same backbone costs (the features are read, never recomputed).

The backbone is ``--backbone`` (any ``[backbone] name``; default the built-in ResNet-18 at the data's
size) with ``--weights`` (default ``"random"``: nothing is downloaded). Both runs must give the same
AUROC per episode (checked: the script fails otherwise).

Usage:
    python benchmarks/shot_curve.py --threads 1 --json benchmarks/results/shot_curve.json
    python benchmarks/shot_curve.py --backbone timm:vit_tiny_patch16_224 --threads 1
    python benchmarks/shot_curve.py --quick      # a few seconds: 1 and 5 shots, 2 episodes, 10 steps
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import write_json

from torchcross.cli.demo_data import write_demo_medimeta
from torchcross.protocol import run_protocol
from torchcross.protocol.config import config_from_dict

SHOTS = (1, 2, 3, 5, 7, 10, 15, 20, 25, 30)
TARGET = "digits_scan_a/even digit"


def _config(args: argparse.Namespace, root: Path, out: Path, cache: Path, shots: list[int]) -> Any:
    backbone: dict[str, Any] = {"name": args.backbone, "weights": args.weights}
    data: dict[str, Any] = {"root": str(root), "targets": [TARGET], "min_class_size": 0}
    if ":" not in args.backbone:  # a built-in backbone runs at the data's size; others bring their own
        data["image_size"] = args.size
    finetune = {"steps": 10, "lr": 1e-4, "head_init": "zero"} if args.quick else {"preset": "fsl-benchmark"}
    return config_from_dict(
        {
            "data": data,
            "evaluation": {
                "methods": ["linear-probe"],
                "shots": shots,
                "n_episodes": args.episodes,
                "n_query": 10,
            },
            "backbone": backbone,
            "finetune": finetune,
            "run": {
                "out_dir": str(out),
                "plot": False,
                "num_threads": args.threads,
                "logger": "none",
                "embedding_cache": str(cache),
            },
        }
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="resnet18", help="[backbone] name (default: %(default)s)")
    p.add_argument("--weights", default="random", help="[backbone] weights (default: %(default)s)")
    p.add_argument("--episodes", type=int, default=100, help="episodes per shot count (default: %(default)s)")
    p.add_argument("--shots", default=",".join(map(str, SHOTS)), help="shot counts (default: %(default)s)")
    p.add_argument("--size", type=int, default=32, help="image side of the data (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="a smoke run: 1 and 5 shots, 2 episodes, 10 steps")
    p.add_argument("--json", metavar="PATH", help="also write the report here")
    args = p.parse_args(argv)
    if args.quick:
        args.episodes, args.shots, args.size = 2, "1,5", 16
    shots = [int(s) for s in args.shots.split(",")]
    threads = torch.get_num_threads()
    try:
        return _bench(args, shots)
    finally:
        torch.set_num_threads(threads)


def _bench(args: argparse.Namespace, shots: list[int]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root = write_demo_medimeta(Path(tmp) / "data", size=args.size)
        cache = Path(tmp) / "embeddings"
        times, results = {}, {}
        for arm in ("cold", "warm"):
            config = _config(args, root, Path(tmp) / arm, cache, shots)
            t0 = time.perf_counter()
            results[arm] = run_protocol(config, progress=False, log=None)
            times[arm] = time.perf_counter() - t0
    cold, warm = (results[a].episodes for a in ("cold", "warm"))
    if cold.column("auroc") != warm.column("auroc"):
        raise SystemExit("the run on the warm cache gave other AUROCs than the cold run")
    rows = []
    for k in shots:
        row = cold.where(n_shot=k) if len(shots) > 1 else cold
        aurocs = [a for a in row.column("auroc") if a == a]
        rows.append({"shots": k, "episodes": len(row), "mean_auroc": sum(aurocs) / max(len(aurocs), 1)})
    print(
        f"# linear-probe shot curve: {args.episodes} episodes x {len(shots)} shot counts "
        f"({', '.join(map(str, shots))}) on {TARGET} (data at {args.size} px), backbone {args.backbone} "
        f"(weights {args.weights}), {'10 steps' if args.quick else 'fsl-benchmark preset (150 steps)'}, "
        f"{args.threads} thread(s)\n"
        "| shots | episodes | mean AUROC |\n| --: | --: | --: |\n"
        + "".join(f"| {r['shots']} | {r['episodes']} | {r['mean_auroc']:.3f} |\n" for r in rows)
        + f"\n| run | wall s |\n| --- | --: |\n| cold (embedding included) | {times['cold']:.1f} |\n"
        f"| warm (cached features) | {times['warm']:.1f} |\nAUROCs identical in both runs"
    )
    report = {
        "benchmark": "shot_curve",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.platform(),
        "torch": torch.__version__,
        "threads": args.threads,
        "backbone": args.backbone,
        "weights": args.weights,
        "target": TARGET,
        "size": args.size,
        "episodes": args.episodes,
        "shots": shots,
        "steps": 10 if args.quick else 150,
        "wall_s": times,
        "rows": rows,
    }
    write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
