#!/usr/bin/env python
"""MedIMeta reading speed: random single reads and whole 5-shot / 10-query episodes.

Writes a MedIMeta folder of ``--n-images`` RGB 224x224 noise images (two tasks: a
10-class ``disease`` task, 150 images per episode, and a binary ``abnormal`` task, 30
images per episode) with torchcross's own writer, then times, interleaved over
repetitions (medians reported):

* floors: gathering the episode's raw uint8 rows from ``images.hdf5`` (``HDF5Images``)
  (``raw gather``) and that plus the conversion to a float ``(N, C, H, W)`` tensor
  normalised like medimeta 0.0.6 (``x / 127.5 - 1``): the **float floor**;
* torchcross ``MedIMeta.get_batch`` (float, ``mean=std=0.5``, same output as medimeta 0.0.6),
  its ``output="uint8"`` path alone, and uint8 + ``normalize_batch`` on the CPU;
* full episodes through ``FewShotMetaDataset`` + ``DataLoader`` with 0 and 2 workers
  (float and uint8 outputs), and the same with medimeta 0.0.6's ``MedIMeta`` as the source
  (it runs on top of this torchcross; skipped with a note when not installed);
* random single reads (``source[i]``).

It first checks that every implementation returns the same images. Nothing here is
measured on a GPU: ``normalize_batch`` would run on the training device.

Usage:
    python benchmarks/medimeta_io.py                       # ~2-4 minutes on 2 cores
    python benchmarks/medimeta_io.py --episodes 6 --reps 3 --json results/medimeta_io.json
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from _report import write_json
from torch.utils.data import DataLoader

from torchcross.data import FewShotMetaDataset
from torchcross.data.task import TaskDescription
from torchcross.datasets._images import normalize_batch
from torchcross.datasets.medimeta._hdf5 import HDF5Images, MedIMetaFileError
from torchcross.datasets.medimeta.folder import read_info
from torchcross.datasets.medimeta.reader import MedIMeta
from torchcross.datasets.medimeta.writer import write_medimeta
from torchcross.utils.collate_fn import identity

DATASET = "synth"
TASKS = {"disease": 150, "abnormal": 30}  # task -> images per 5-shot/10-query episode


class NoiseImages:
    """Lazy RGB noise images; image i starts with the bytes of i (to check what loaders return)."""

    def __init__(self, n: int, size: int, seed: int) -> None:
        self.n, self.size, self.seed = n, size, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> np.ndarray:
        img = np.random.default_rng([self.seed, i]).integers(
            0, 256, (self.size, self.size, 3), dtype=np.uint8
        )
        img.reshape(-1)[:4] = np.array([i], "<u4").view(np.uint8)
        return img


def synthesize(root: str, n: int, size: int, seed: int) -> str:
    """Write the dataset, or reuse an identical one already in ``root`` (``--data-dir``)."""
    path = os.path.join(root, DATASET)
    try:
        info = read_info(path)
        if (
            info.total_num_samples == n
            and info.input_size == (3, size, size)
            and info.summary == f"seed {seed}"
        ):
            return path
    except (MedIMetaFileError, OSError):
        pass
    rng = np.random.default_rng(seed)
    tasks = {
        "disease": (
            TaskDescription("MULTICLASS_CLASSIFICATION", {i: f"d{i}" for i in range(10)}),
            rng.integers(0, 10, n),
        ),
        "abnormal": (
            TaskDescription("BINARY_CLASSIFICATION", {0: "normal", 1: "abnormal"}),
            (rng.random(n) < 0.3).astype(int),
        ),
    }
    order = rng.permutation(n)
    n_train, n_val = int(0.8 * n), int(0.1 * n)
    splits = {
        "train": order[:n_train],
        "val": order[n_train : n_train + n_val],
        "test": order[n_train + n_val :],
    }
    return write_medimeta(
        root,
        DATASET,
        NoiseImages(n, size, seed),
        tasks,
        splits,
        domain="Synthetic",
        summary=f"seed {seed}",
        overwrite=True,
    )


def float_floor(raw_rows: np.ndarray) -> torch.Tensor:
    """The cheapest straightforward way to medimeta 0.0.6's output: x / 127.5 - 1, float NCHW."""
    return torch.from_numpy(raw_rows).permute(0, 3, 1, 2).contiguous().float().div_(127.5).sub_(1.0)


def load_medimeta06() -> Any:
    try:
        import medimeta

        return medimeta
    except ImportError as exc:
        print(f"# medimeta 0.0.6 not importable ({exc}); its rows are skipped")
        return None


def episode_positions(source: Any, n_episodes: int, seed: int) -> list[np.ndarray]:
    meta = FewShotMetaDataset(
        source,
        n_shot=5,
        n_query=10,
        filter_classes_min_samples=0,
        length=n_episodes,
        seed=seed,
        output_indices=True,
    )
    return [np.array([i for i, _ in t.support] + [i for i, _ in t.query]) for t in meta]


def run_loader(source: Any, n_episodes: int, workers: int, seed: int) -> dict:
    meta = FewShotMetaDataset(
        source, n_shot=5, n_query=10, filter_classes_min_samples=0, length=n_episodes, seed=seed
    )
    loader = DataLoader(meta, batch_size=None, num_workers=workers, collate_fn=identity)
    t0 = time.perf_counter()
    t_first, images = None, 0
    for task in loader:
        images += task.support[0].shape[0] + task.query[0].shape[0]
        if t_first is None:
            t_first, first_images = time.perf_counter(), images
    t_end = time.perf_counter()
    # steady state: from the first episode's arrival to the last one's (worker start-up excluded)
    return {"images_per_s": (images - first_images) / (t_end - t_first), "total_s": t_end - t0}


def run_direct(fn: Callable[[np.ndarray], Any], index_sets: list[np.ndarray]) -> dict:
    t0 = time.perf_counter()
    for idx in index_sets:
        fn(idx)
    dt = time.perf_counter() - t0
    return {"images_per_s": sum(len(i) for i in index_sets) / dt, "total_s": dt}


def check_same_output(ours: MedIMeta, theirs: Any, raw: HDF5Images, idx: np.ndarray) -> str:
    rows = ours.split_indices[idx]
    ref = float_floor(raw.read(rows))
    torch.testing.assert_close(ours.get_batch(idx)[0], ref, rtol=0, atol=2e-6)
    u8 = MedIMeta(ours.data_path, DATASET, ours.task_name, split="train", output="uint8")
    torch.testing.assert_close(normalize_batch(u8.get_batch(idx)[0], 0.5, 0.5), ref, rtol=0, atol=2e-6)
    if theirs is not None:
        torch.testing.assert_close(torch.stack([theirs[int(i)][0] for i in idx]), ref, rtol=0, atol=2e-6)
    return (
        "ok: torchcross float, torchcross uint8+normalize_batch"
        + (", medimeta 0.0.6" if theirs else "")
        + " equal the floor"
    )


def environment(threads: int) -> dict:
    versions = {}
    for pkg in ("torch", "torchvision", "torchcross", "medimeta", "h5py", "numpy", "pillow"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "versions": versions,
        "argv": sys.argv,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--data-dir", default=None, help="where the dataset is written (default: a temp dir, deleted)"
    )
    p.add_argument("--n-images", type=int, default=5000)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--episodes", type=int, default=8, help="episodes per repetition and configuration")
    p.add_argument("--images-per-config", type=int, default=600, help="more episodes for small episodes")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--single-reads", type=int, default=200, help="random single reads per repetition")
    p.add_argument("--workers", default="0,2")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    tmp = args.data_dir or tempfile.mkdtemp(prefix="medimeta_io_")
    try:
        return _run(args, tmp)
    finally:
        if args.data_dir is None:
            shutil.rmtree(tmp, ignore_errors=True)


def _run(args: argparse.Namespace, root: str) -> int:
    t = time.perf_counter()
    path = synthesize(root, args.n_images, args.image_size, args.seed)
    hdf5 = os.path.join(path, "images.hdf5")
    print(
        f"# dataset {path}: {args.n_images} x 3x{args.image_size}x{args.image_size} "
        f"({os.path.getsize(hdf5) / 2**20:.0f} MiB), written in {time.perf_counter() - t:.0f} s"
    )
    env = environment(args.threads)
    print("# versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()))
    mm06 = load_medimeta06()
    raw = HDF5Images(hdf5)
    workers = [int(w) for w in args.workers.split(",")]
    report: dict[str, Any] = {"environment": env, "config": vars(args), "tasks": {}}

    for task, per_episode in TASKS.items():
        ours = MedIMeta(root, DATASET, task, split="train", mean=0.5, std=0.5)
        ours_u8 = MedIMeta(root, DATASET, task, split="train", output="uint8")
        theirs = mm06.MedIMeta(root, DATASET, task, split="train") if mm06 else None
        n_episodes = max(args.episodes, -(-args.images_per_config // per_episode))
        index_sets = episode_positions(ours, n_episodes, args.seed)
        assert all(len(i) == per_episode for i in index_sets)
        print(
            f"\n## task {task!r}: {per_episode} images per episode; {check_same_output(ours, theirs, raw, index_sets[0])}"
        )
        configs = _episode_configs(ours, ours_u8, theirs, raw, index_sets, n_episodes, workers, args.seed)
        results = _interleave(configs, args.reps)
        report["tasks"][task] = _table(
            results,
            "floor: raw gather + float NCHW",
            "medimeta 0.0.6 per-item reads",
            f"{task}: episodes of {per_episode} images",
        )

    # random single reads
    rng = np.random.default_rng(args.seed)
    src = MedIMeta(root, DATASET, "disease", split="train", mean=0.5, std=0.5)
    picks = rng.integers(0, len(src), args.single_reads)
    singles: dict[str, Callable[[], dict]] = {
        "floor: raw row + float CHW": lambda: run_direct(
            lambda i: float_floor(raw.read(src.split_indices[i]))[0], [[k] for k in picks]
        ),
        "torchcross source[i]": lambda: run_direct(lambda i: src[int(i[0])], [[k] for k in picks]),
    }
    if mm06:
        theirs = mm06.MedIMeta(root, DATASET, "disease", split="train")
        singles["medimeta 0.0.6 source[i]"] = lambda: run_direct(
            lambda i: theirs[int(i[0])], [[k] for k in picks]
        )
    report["single_reads"] = _table(
        _interleave(singles, args.reps),
        "floor: raw row + float CHW",
        "medimeta 0.0.6 source[i]",
        "random single reads",
    )
    write_json(args.json, report)
    return 0


def _episode_configs(
    ours: MedIMeta,
    ours_u8: MedIMeta,
    theirs: Any,
    raw: HDF5Images,
    index_sets: list[np.ndarray],
    n_episodes: int,
    workers: list[int],
    seed: int,
) -> dict[str, Callable[[], dict]]:
    rows = ours.split_indices

    def uint8_then_normalize(i: np.ndarray) -> torch.Tensor:
        return normalize_batch(ours_u8.get_batch(i)[0], 0.5, 0.5)

    configs: dict[str, Callable[[], dict]] = {
        "floor: raw gather (uint8)": lambda: run_direct(lambda i: raw.read(rows[i]), index_sets),
        "floor: raw gather + float NCHW": lambda: run_direct(
            lambda i: float_floor(raw.read(rows[i])), index_sets
        ),
        "torchcross get_batch float": lambda: run_direct(ours.get_batch, index_sets),
        "torchcross get_batch uint8": lambda: run_direct(ours_u8.get_batch, index_sets),
        "torchcross uint8 + normalize_batch (CPU)": lambda: run_direct(uint8_then_normalize, index_sets),
    }
    if theirs is not None:
        configs["medimeta 0.0.6 per-item reads"] = lambda: run_direct(
            lambda i: torch.stack([theirs[int(j)][0] for j in i]), index_sets
        )
    for w in workers:
        sources = {"torchcross float": ours, "torchcross uint8": ours_u8}
        if theirs is not None:
            sources["medimeta 0.0.6"] = theirs
        for name, src in sources.items():
            configs[f"episodes: {name}, {w} workers"] = lambda src=src, w=w: run_loader(
                src, n_episodes, w, seed
            )
    return configs


def _interleave(configs: dict[str, Callable[[], dict]], reps: int) -> dict[str, list[dict]]:
    names = list(configs)
    for name in names:  # warm-up: page cache, imports, worker code paths
        configs[name]()
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for rep in range(reps):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:  # rotate the order
            runs[name].append(configs[name]())
    return runs


def _ratio(runs: dict[str, list[dict]], name: str, ref: str) -> float | None:
    """Median over repetitions of the per-repetition ratio (both ran close in time: less noise)."""
    if ref not in runs:
        return None
    return statistics.median(a["images_per_s"] / b["images_per_s"] for a, b in zip(runs[name], runs[ref]))


def _table(runs: dict[str, list[dict]], floor: str, peer: str, title: str) -> dict:
    reps = len(next(iter(runs.values())))
    print(f"\n### {title} ({reps} interleaved repetitions; medians, ratios per repetition)\n")
    print("| config | images/s | / float floor | / medimeta 0.0.6 (same workers) |")
    print("|---|---|---|---|")
    out = {}
    for name, rs in runs.items():
        v = statistics.median(r["images_per_s"] for r in rs)
        # episodes through a DataLoader compare with medimeta 0.0.6 at the same number of workers
        workers = name.rsplit(", ", 1)[-1] if name.startswith("episodes:") else None
        row_peer = f"episodes: medimeta 0.0.6, {workers}" if workers else peer
        to_floor, to_peer = _ratio(runs, name, floor), _ratio(runs, name, row_peer)
        peer_s = "" if to_peer is None else f"{to_peer:.2f}"
        print(f"| {name} | {v:.0f} | {to_floor:.2f} | {peer_s} |")
        out[name] = {
            "images_per_s": v,
            "ratio_to_float_floor": to_floor,
            "ratio_to_medimeta_006": to_peer,
            "runs": rs,
        }
    sys.stdout.flush()
    return out


if __name__ == "__main__":
    sys.exit(main())
