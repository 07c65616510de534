#!/usr/bin/env python
"""A linear probe over a shot curve: features from the embedding cache against features recomputed per episode.

The MedIMeta authors' foundation-model benchmark (``finetune_and_test.py --linear_probe``) evaluates each
shot count (1, 2, 3, 5, 7, 10, 15, 20, 25, 30; 10 query examples per class) on 100 episodes, and for every
episode reads its images and runs the frozen backbone on the support and the query set before it trains
the head (Adam, lr 1e-4, 150 steps, zero-initialised). The same features serve every episode, shot count,
seed and method, so `torchcross.data.embed()` computes each image's once and keeps them on disk.

On one synthetic MedIMeta-format target (binary task, ``--images`` random RGB images of ``--size`` pixels,
written on the fly) with a ResNet-18 of random weights (``fc = Identity``, eval mode; nothing downloaded),
the same episodes (one `FewShotMetaDataset` per shot count, seed = shot count) are scored three ways:

* ``recompute``: per episode, read the images, compute support and query features, fit the head
  (`FineTuner` over ``nn.Identity()``): what the authors' script does;
* ``cached``: `embed()` the whole target once into an empty cache folder (its time included), then per
  episode read the features of its indices and fit the head the same way;
* ``cached+batched``: the same cached features, the heads of the 100 episodes of a shot count fitted
  together (`FineTuner.predict_many`).

Every arm gets the same AUROC per episode (checked, the script fails otherwise). Reported: wall time per
arm and shot count, totals, and the ratios ``recompute / cached`` and ``recompute / cached+batched``.
Goal: at least 20x on CPU.

Usage:
    python benchmarks/embedding_cache.py --threads 1 --json benchmarks/results/embedding_cache.json
    python benchmarks/embedding_cache.py --quick        # a few seconds: 1 and 5 shots, 2 episodes, 32 px, 10 steps
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

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import write_json

from torchcross.data import EmbeddedSource, FewShotMetaDataset, embed
from torchcross.datasets.medimeta import MedIMeta
from torchcross.datasets.medimeta.writer import write_synthetic_medimeta
from torchcross.evaluation.metrics import auroc
from torchcross.learners import FineTuner
from torchcross.learners.policies import HeadPolicy, InnerLoop

SHOTS = (1, 2, 3, 5, 7, 10, 15, 20, 25, 30)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def resnet18_features() -> nn.Module:
    from torchvision.models import resnet18

    torch.manual_seed(0)
    model = resnet18(weights=None)
    model.fc = nn.Identity()
    return model.eval()


def probe(width: int) -> FineTuner:
    """The benchmark's fixed linear probe: Adam, lr 1e-4, 150 steps, zero-initialised head."""
    return FineTuner(
        nn.Identity(),
        width,
        inner=InnerLoop(lr=1e-4, steps=150, optimizer="adam"),
        head=HeadPolicy(init="zero"),
    )


def run_recompute(episodes: FewShotMetaDataset, backbone: nn.Module, width: int) -> list[tuple[float, Any]]:
    out = []
    learner = probe(width)
    for task in episodes:  # reads the episode's images
        with torch.no_grad():
            support = backbone(task.support[0])
            query = backbone(task.query[0])
        feature_task = type(task)((support, task.support[1]), (query, task.query[1]), task.description)
        logits = learner.predict(feature_task)
        out.append((auroc(logits, task.query[1], task.description), logits))
    return out


def run_cached(episodes: FewShotMetaDataset, width: int) -> list[tuple[float, Any]]:
    learner = probe(width)
    out = []
    for task in episodes:  # reads the episode's rows of the cached features
        logits = learner.predict(task)
        out.append((auroc(logits, task.query[1], task.description), logits))
    return out


def run_batched(episodes: FewShotMetaDataset, width: int) -> list[tuple[float, Any]]:
    tasks = list(episodes)
    logits = probe(width).predict_many(tasks)
    return [(auroc(lg, t.query[1], t.description), lg) for t, lg in zip(tasks, logits)]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=100, help="episodes per shot count (default: %(default)s)")
    p.add_argument("--shots", default=",".join(map(str, SHOTS)), help="shot counts (default: %(default)s)")
    p.add_argument("--images", type=int, default=400, help="images in the target (default: %(default)s)")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    p.add_argument(
        "--quick", action="store_true", help="a smoke run: 1 and 5 shots, 2 episodes, 32 px, 10 steps"
    )
    p.add_argument("--json", metavar="PATH", help="also write the report here")
    args = p.parse_args(argv)
    global STEPS
    STEPS = 10 if args.quick else 150
    if args.quick:
        args.episodes, args.shots, args.images, args.size = 2, "1,5", 60, 32
    shots = [int(s) for s in args.shots.split(",")]
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _bench(args, shots)
    finally:
        torch.set_num_threads(threads)


def _bench(args: argparse.Namespace, shots: list[int]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        write_synthetic_medimeta(tmp, "synth", num_images=args.images, image_size=args.size, channels=3)
        source = MedIMeta(tmp, "synth", "abnormal", mean=MEAN, std=STD)
        backbone = resnet18_features()
        width = 512
        preprocessing = {"size": args.size, "mean": MEAN, "std": STD, "channels": 3}
        t0 = time.perf_counter()
        emb = embed(
            source,
            backbone,
            Path(tmp) / "cache",
            identity="torchvision:resnet18",
            preprocessing=preprocessing,
        )
        fill_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        embed(
            source,
            backbone,
            Path(tmp) / "cache",
            identity="torchvision:resnet18",
            preprocessing=preprocessing,
        )
        reopen_s = time.perf_counter() - t0
        features = EmbeddedSource(emb, source)
        warm = {"n_shot": 1, "n_query": 10, "length": 1, "seed": 10**6}  # untimed first calls (imports)
        run_recompute(FewShotMetaDataset(source, **warm), backbone, width)
        run_cached(FewShotMetaDataset(features, **warm), width)
        run_batched(FewShotMetaDataset(features, **warm), width)
        rows, totals = [], {"recompute": 0.0, "cached": fill_s, "cached+batched": fill_s}
        max_diff = 0.0
        for k in shots:
            make = {"n_shot": k, "n_query": 10, "length": args.episodes, "seed": k}
            arms = {
                "recompute": lambda make=make: run_recompute(
                    FewShotMetaDataset(source, **make), backbone, width
                ),
                "cached": lambda make=make: run_cached(FewShotMetaDataset(features, **make), width),
                "cached+batched": lambda make=make: run_batched(FewShotMetaDataset(features, **make), width),
            }
            times, results = {}, {}
            for name, run in arms.items():
                t0 = time.perf_counter()
                results[name] = run()
                times[name] = time.perf_counter() - t0
                totals[name] += times[name]
            base = [a for a, _ in results["recompute"]]
            for name in ("cached", "cached+batched"):
                got = [a for a, _ in results[name]]
                if got != base:
                    raise SystemExit(f"{k}-shot: {name} AUROCs differ from recompute: {got} != {base}")
                for (_, a), (_, b) in zip(results[name], results["recompute"]):
                    max_diff = max(max_diff, float((a - b).abs().max()))
            rows.append(
                {"shots": k, "mean_auroc": float(np.mean(base)), **{f"{n}_s": t for n, t in times.items()}}
            )
            print(
                f"{k:>3}-shot  AUROC {np.mean(base):.3f}  recompute {times['recompute']:7.2f} s  cached "
                f"{times['cached']:6.2f} s  cached+batched {times['cached+batched']:6.2f} s",
                flush=True,
            )
    ratio = totals["recompute"] / totals["cached"]
    ratio_batched = totals["recompute"] / totals["cached+batched"]
    print(
        f"\n# {args.episodes} episodes x {len(shots)} shot counts, {args.images} images of {args.size} px, "
        f"ResNet-18 (random weights), {args.threads} thread(s)\n"
        f"| arm | total s |\n| --- | --- |\n| recompute per episode | {totals['recompute']:.1f} |\n"
        f"| cached (fill {fill_s:.1f} s included) | {totals['cached']:.1f} |\n"
        f"| cached + batched heads (fill included) | {totals['cached+batched']:.1f} |\n"
        f"ratio recompute / cached: {ratio:.1f}x; recompute / cached+batched: {ratio_batched:.1f}x "
        f"(goal 20x); AUROCs identical; max |logit difference| {max_diff:.2e}; reopening the cache "
        f"{reopen_s * 1000:.0f} ms"
    )
    report = {
        "benchmark": "embedding_cache",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.platform(),
        "torch": torch.__version__,
        "threads": args.threads,
        "episodes": args.episodes,
        "shots": shots,
        "images": args.images,
        "size": args.size,
        "fill_s": fill_s,
        "reopen_s": reopen_s,
        "totals_s": totals,
        "ratio_cached": ratio,
        "ratio_cached_batched": ratio_batched,
        "max_logit_difference": max_diff,
        "rows": rows,
    }
    write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
