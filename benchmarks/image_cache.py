#!/usr/bin/env python
"""Episodes per second from encoded images, uncached and through the decoded-image cache, against MedIMeta.

One set of images (``--classes`` classes of ``--per-class`` random RGB images of 128 px, as Meta-Album
ships them) is written three ways: as a Meta-Album folder (``write_synthetic_meta_album``: PNG files), as
a Meta-Dataset source (``write_synthetic_meta_dataset``'s layout and spec, its class files rewritten
with the same images as JPEG records, quality 90), and, decoded at each read size, as a MedIMeta HDF5
file (``write_medimeta``). For each read size (84 px; 224 px unless ``--quick``) the same kind of
episodes (5-way 5-shot 15-query, ``sample_episode_set``; read through ``EpisodeSet.as_dataset``) are
timed on five arms, interleaved in rounds: MedIMeta, Meta-Album and Meta-Dataset uncached (every image
decoded on every read), and both through ``source.cached(path)`` (built once before the rounds; the
build time is reported apart). Reported: the median episodes/s per arm and its ratio to MedIMeta's of
the same size. Goal: cached at least 0.5x MedIMeta's rate.

Usage:
    python benchmarks/image_cache.py --threads 1 --json benchmarks/results/image_cache.json
    python benchmarks/image_cache.py --quick        # a few seconds: 84 px, 4 classes, 2 rounds
"""

from __future__ import annotations

import argparse
import datetime
import io
import os
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

from torchcross.data.metadataset import sample_episode_set
from torchcross.datasets._tfrecord import encode_example, write_tfrecord
from torchcross.datasets.medimeta import MedIMeta
from torchcross.datasets.medimeta.writer import write_medimeta
from torchcross.datasets.meta_album import MetaAlbum, write_synthetic_meta_album
from torchcross.datasets.meta_dataset import MetaDatasetSource, write_synthetic_meta_dataset

ARMS = ("medimeta", "meta-album", "meta-dataset", "meta-album cached", "meta-dataset cached")


def write_data(root: str, classes: int, per_class: int, sizes: tuple[int, ...]) -> dict[str, Any]:
    """Write the three copies of one image set; return their folders."""
    from PIL import Image

    write_synthetic_meta_album(
        root, datasets=["BRD_Micro"], num_classes=classes, images_per_class=per_class, image_size=128
    )
    album = os.path.join(root, "BRD_Micro")
    full = MetaAlbum(album, output="uint8")
    write_synthetic_meta_dataset(
        os.path.join(root, "md"), sources=["aircraft"], classes_per_split=(classes, 0, 0),
        images_per_class=(per_class, per_class),
    )  # fmt: skip
    md = os.path.join(root, "md", "aircraft")
    labels = np.asarray(full.labels).reshape(-1)
    for c in range(classes):
        payloads = []
        for i in np.flatnonzero(labels == c):
            buf = io.BytesIO()
            Image.fromarray(full.image(int(i))).save(buf, format="JPEG", quality=90)
            payloads.append(encode_example({"image": [buf.getvalue()], "label": [c]}))
        write_tfrecord(os.path.join(md, f"{c}.tfrecords"), payloads)
    for s in sizes:
        src = MetaAlbum(album, image_size=s, output="uint8")
        images = np.stack(src.images(range(len(src))))
        write_medimeta(root, f"mm{s}", images, {"category": (src.task_description, labels)})
    return {"album": album, "md": md}


def open_arms(root: str, folders: dict[str, Any], size: int, output: str) -> dict[str, Any]:
    """The five sources of one read size (the caches built here)."""
    album = MetaAlbum(folders["album"], image_size=size, output=output)
    md = MetaDatasetSource(folders["md"], image_size=size, output=output)
    return {
        "medimeta": MedIMeta(root, f"mm{size}", "category", output=output),
        "meta-album": album,
        "meta-dataset": md,
        "meta-album cached": album.cached(os.path.join(root, "cache", f"album{size}.tcimg")),
        "meta-dataset cached": md.cached(os.path.join(root, "cache", f"md{size}.tcimg")),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--classes", type=int, default=20)
    p.add_argument("--per-class", type=int, default=40)
    p.add_argument("--episodes", type=int, default=20, help="episodes per arm per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--output", choices=("float", "uint8"), default="float")
    p.add_argument("--threads", type=int, default=None, help="torch threads (decoding threads stay)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    sizes: tuple[int, ...] = (84, 224)
    if args.quick:
        args.classes, args.per_class, args.episodes, args.rounds, sizes = 6, 20, 3, 2, (84,)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as root:
        folders = write_data(root, args.classes, args.per_class, sizes)
        for size in sizes:
            t0 = time.perf_counter()
            arms = open_arms(root, folders, size, args.output)
            build_s = time.perf_counter() - t0
            datasets = {}
            for name, src in arms.items():
                es = sample_episode_set(src, args.episodes, n_shot=5, n_query=15, n_way=5, seed=size)
                datasets[name] = es.as_dataset(src)
                datasets[name][0]  # warm: the file opened, the pages read once
            rates: dict[str, list[float]] = {name: [] for name in ARMS}
            for _ in range(args.rounds):
                for name in ARMS:
                    ds = datasets[name]
                    t = time.perf_counter()
                    for i in range(len(ds)):
                        ds[i]
                    rates[name].append(len(ds) / (time.perf_counter() - t))
            base = statistics.median(rates["medimeta"])
            for name in ARMS:
                med = statistics.median(rates[name])
                rows.append({"size": size, "arm": name, "episodes_per_s": med, "ratio": med / base})
            rows.append(
                {"size": size, "arm": "open + build caches (s)", "episodes_per_s": build_s, "ratio": None}
            )
    print(f"# {args.classes} classes x {args.per_class} images, 5-way 5-shot 15-query, output={args.output}")
    print(f"{'size':>5}  {'arm':<26} {'episodes/s':>11} {'vs MedIMeta':>12}")
    for r in rows:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        print(f"{r['size']:>5}  {r['arm']:<26} {r['episodes_per_s']:>11.1f} {ratio:>12}")
    report = {
        "benchmark": "image_cache",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "sizes": list(sizes),
        "rows": rows,
    }
    write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
