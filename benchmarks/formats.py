#!/usr/bin/env python
"""Episodes per second from every registered meta-dataset format, against the same images in MedIMeta HDF5.

For every format of `torchcross.datasets.formats.FORMATS` that has a ``synthetic`` writer (a format
registered later is picked up as it is), the script writes its small synthetic dataset in the native
layout, reads it as the protocol does (`torchcross.protocol.data_collections`: the format's collection
in ``[[data.collections]]``, tasks opened with ``open_data_task`` at ``--size`` pixels, RGB, ImageNet
normalisation), and takes one multi-class (else binary) task of it. Its images are then written once
more, unchanged, as a MedIMeta folder (``images.hdf5``: the baseline), opened the same way.

Episodes are ``--way``-way ``--shot``-shot ``--query``-query (5, 5, 15: 100 images; fewer classes where
a task has fewer), drawn once per format as indices and read with one ``get_batch`` each from both
copies (so both read exactly the same images), interleaved over ``--reps`` repetitions; medians are
reported. The goal of issue 23: every format within 2x of MedIMeta (``ratio`` = the format's time per
episode / MedIMeta's). Both copies must give the same labels (checked).

Usage:
    python benchmarks/formats.py --threads 1 --json benchmarks/results/formats.json   # ~1 minute
    python benchmarks/formats.py --quick                                               # seconds
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import write_json

from torchcross.datasets.formats import FORMATS, DataFormat
from torchcross.datasets.medimeta.writer import write_medimeta
from torchcross.protocol.config import config_from_dict
from torchcross.protocol.data_collections import load_data, open_data_task
from torchcross.tasks.task import TaskDescription


def _synthetic(fmt: DataFormat, root: Path, args: argparse.Namespace) -> str:
    """Write the format's synthetic dataset, passing the size hints its writer accepts."""
    assert fmt.synthetic is not None
    hints = {
        "num_images": args.images,
        "image_size": args.size,
        "size": args.size,
        "images_per_class": args.images // 5,
        "per_class": args.images // 5,
        "num_classes": 5,
    }
    params = inspect.signature(fmt.synthetic).parameters
    return str(fmt.synthetic(root, seed=0, **{k: v for k, v in hints.items() if k in params}))


def _labels(source: Any) -> np.ndarray:
    labels = np.asarray(source.labels)
    return labels.reshape(len(labels), -1)[:, 0].astype(np.int64)


def _pick_task(data: Any, prefix: str) -> tuple[str, str]:
    """The first dataset of the collection and its first multi-class (else binary) task."""
    for entry in data.catalogue:
        if entry.id.startswith(prefix):
            for kind in ("MULTICLASS_CLASSIFICATION", "BINARY_CLASSIFICATION"):
                for t in entry.tasks:
                    if t.task_target.name == kind:
                        return entry.id, t.task_name
    raise ValueError(f"no dataset with a multi-class or binary task under {prefix!r}")


def _episodes(labels: np.ndarray, args: argparse.Namespace, seed: int) -> list[np.ndarray]:
    """``args.episodes`` index sets, each ``way`` classes x (``shot`` + ``query``) examples."""
    rng = np.random.default_rng(seed)
    per = args.shot + args.query
    classes = [c for c in np.unique(labels) if (labels == c).sum() >= per]
    if len(classes) < 2:
        classes = [c for c in np.unique(labels) if (labels == c).sum() >= 2]
        per = min(per, min(int((labels == c).sum()) for c in classes))
    way = min(args.way, len(classes))
    out = []
    for _ in range(args.episodes):
        chosen = rng.choice(classes, way, replace=False)
        out.append(
            np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), per, False) for c in chosen]))
        )
    return out


def _copy_to_medimeta(source: Any, root: Path, name: str) -> str:
    """The task's images (uint8, as decoded at the benchmark's size) and labels as a MedIMeta folder."""
    x, _ = source.get_batch(np.arange(len(source)))
    images = (x * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    desc = source.task_description
    task = TaskDescription(desc.task_target, desc.classes, "copy/task")
    n = len(images)
    splits = {"train": np.arange(0, n, 3), "val": np.arange(1, n, 3), "test": np.arange(2, n, 3)}
    write_medimeta(root, name, images, {"task": (task, _labels(source))}, splits, domain="Benchmark")
    return name


def _time(source: Any, episodes: list[np.ndarray]) -> float:
    t0 = time.perf_counter()
    for idx in episodes:
        source.get_batch(idx)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=40, help="episodes per repetition (default: %(default)s)")
    p.add_argument("--reps", type=int, default=5, help="interleaved repetitions (default: %(default)s)")
    p.add_argument(
        "--images", type=int, default=500, help="images of each synthetic dataset (default: %(default)s)"
    )
    p.add_argument("--size", type=int, default=64, help="image side read (default: %(default)s)")
    p.add_argument("--way", type=int, default=5)
    p.add_argument("--shot", type=int, default=5)
    p.add_argument("--query", type=int, default=15)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    p.add_argument("--formats", help="comma-separated format names (default: every one with synthetic)")
    p.add_argument("--quick", action="store_true", help="a smoke run: 3 episodes, 2 repetitions, 120 images")
    p.add_argument("--json", metavar="PATH", help="also write the report here")
    args = p.parse_args(argv)
    if args.quick:
        args.episodes, args.reps, args.images, args.size = 3, 2, 120, 32
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _bench(args)
    finally:
        torch.set_num_threads(threads)


def _bench(args: argparse.Namespace) -> dict[str, Any]:
    names = args.formats.split(",") if args.formats else sorted(n for n, f in FORMATS.items() if f.synthetic)
    with tempfile.TemporaryDirectory() as tmp:
        collections = []
        for i, name in enumerate(names):
            root = Path(tmp) / f"format-{i}"
            root.mkdir()
            collections.append(
                {"root": _synthetic(FORMATS[name], root, args), "format": name, "prefix": f"{i}-"}
            )
        collections.append({"root": str(Path(tmp) / "baseline"), "format": "medimeta", "prefix": "baseline-"})
        picked, sources, copies, episodes = {}, {}, {}, {}
        raw = {"data": {"targets": "x", "collections": collections[:-1]}, "run": {"out_dir": tmp}}
        data = load_data(config_from_dict(raw).data)
        opened = {"channels": 3, "image_size": args.size}
        for i, name in enumerate(names):
            ds, task = _pick_task(data, f"{i}-")
            picked[name] = f"{ds}/{task}"
            plain = open_data_task(config_from_dict(raw).data, ds, task, "all", **opened, normalize="none")
            copies[name] = _copy_to_medimeta(plain, Path(tmp) / "baseline", f"copy{i}")
        full = config_from_dict({**raw, "data": {"targets": "x", "collections": collections}}).data
        for i, name in enumerate(names):
            ds, task = picked[name].split("/", 1)
            sources[name] = open_data_task(full, ds, task, "all", **opened, normalize="imagenet")
            base = open_data_task(
                full, f"baseline-{copies[name]}", "task", "all", **opened, normalize="imagenet"
            )
            labels = _labels(sources[name])
            if not np.array_equal(labels, _labels(base)):
                raise SystemExit(f"{name}: the MedIMeta copy has other labels than the format's task")
            episodes[name] = (_episodes(labels, args, seed=i), base)
        times: dict[str, dict[str, list[float]]] = {n: {"format": [], "medimeta": []} for n in names}
        for rep in range(args.reps):
            for name in names:
                eps, base = episodes[name]
                order = [("format", sources[name]), ("medimeta", base)]
                for arm, src in order if rep % 2 == 0 else order[::-1]:
                    times[name][arm].append(_time(src, eps))
    rows = []
    for name in names:
        eps = episodes[name][0]
        fmt_s = statistics.median(times[name]["format"]) / len(eps)
        base_s = statistics.median(times[name]["medimeta"]) / len(eps)
        rows.append(
            {
                "format": name,
                "task": picked[name],
                "images_per_episode": len(eps[0]),
                "episodes_per_s": 1 / fmt_s,
                "medimeta_episodes_per_s": 1 / base_s,
                "ratio": fmt_s / base_s,
                "within_2x": fmt_s / base_s <= 2.0,
            }
        )
    print(f"# {args.episodes} episodes x {args.reps} reps, {args.size}px RGB, {args.threads} thread(s)")
    print(f"{'format':<16} {'img/ep':>6} {'episodes/s':>11} {'MedIMeta ep/s':>14} {'ratio':>6}  goal <= 2x")
    for r in rows:
        print(
            f"{r['format']:<16} {r['images_per_episode']:>6} {r['episodes_per_s']:>11.1f} "
            f"{r['medimeta_episodes_per_s']:>14.1f} {r['ratio']:>6.2f}  {'ok' if r['within_2x'] else 'SLOWER'}"
        )
    report = {
        "benchmark": "formats",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.platform(),
        "torch": torch.__version__,
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "rows": rows,
    }
    write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
