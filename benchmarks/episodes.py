#!/usr/bin/env python
"""Episode sampling and loading throughput, per task kind, against torchcross 0.0.6.

Protocol (see docs/sampling-episodes.md): 5-shot support, 10 query examples per class,
all classes, on generated label arrays of 1,000 / 10,000 / 100,000 examples:

* multi-class: 10 classes (uneven sizes);
* binary: 30 % positives;
* multi-label: 14 labels with prevalences 3 % ... 40 % (as chest X-ray);
* ordinal: 5 gapped keys 1, 4, 6, 8, 10.

Measured, interleaved over repetitions (medians reported):

* ``rule``: ``dataset.sample_indices(i)`` (generator + index sampling);
* ``indices``: ``dataset[i]`` with ``output_indices=True`` (``(index, label)`` pairs), the
  like-for-like comparison with torchcross 0.0.6's ``FewShotMetaDataset(...,
  output_indices=True)`` iterated over the same labels;
* ``full``: ``dataset[i]`` with inputs from an in-memory source of 3x224x224 uint8
  images converted to float (the source holds a pool of 256 images and serves example
  ``i`` from ``i % 256``, so 100,000 examples fit in memory), and ``load``: the same
  source's ``get_batch`` on the same indices alone (the data-loading floor).

torchcross 0.0.6 cannot be installed next to this package; pass the Python of an
environment that has it (``--peer-python PEERENV/bin/python``). It runs as a
persistent subprocess that reads the same label files, and its requests are interleaved
with ours. Without it, the peer column says why it is missing.

Usage:
    python benchmarks/episodes.py --peer-python PEERENV/bin/python [--json PATH]
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
from typing import Any

import numpy as np
import torch
from _report import write_json

from torchcross.data import FewShotMetaDataset, TaskSource
from torchcross.data.task import TaskDescription

KINDS = ("multiclass", "binary", "multilabel", "ordinal")
ORDINAL_KEYS = (1, 4, 6, 8, 10)

PEER_SCRIPT = r"""
import json, sys, time
import numpy as np
import torch
from torchcross.data.metadataset import FewShotMetaDataset
from torchcross.data.metadataset import few_shot as fs
from torchcross.data.task import TaskDescription, TaskTarget
from torchcross.data import TaskSource

TARGETS = {"multiclass": TaskTarget.MULTICLASS_CLASSIFICATION, "binary": TaskTarget.BINARY_CLASSIFICATION,
           "multilabel": TaskTarget.MULTILABEL_CLASSIFICATION, "ordinal": TaskTarget.ORDINAL_REGRESSION}

class LabelSource(TaskSource):
    def __init__(self, labels, kind, classes):
        self.labels = labels
        self.task_description = TaskDescription(TARGETS[kind], classes, kind, "bench")
    def __getitem__(self, i):
        return torch.zeros(1), self.labels[i]
    def __len__(self):
        return len(self.labels)

import torchcross
print(json.dumps({"file": torchcross.__file__, "has_0_0_6_sampler": hasattr(
    sys.modules["torchcross.data.metadataset.few_shot"], "multilabel_few_shot_sample")}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    labels = np.load(req["path"])
    if req["kind"] == "binary":
        labels = labels.reshape(-1)
    kind, k, q = req["kind"], req["shot"], req["query"]
    src = LabelSource(labels, kind, {int(c): v for c, v in req["classes"].items()})
    np.random.seed(req["seed"])
    if req["mode"] == "episode":
        ds = FewShotMetaDataset(src, None, k, q, 0, length=req["max_episodes"], output_indices=True)
        it = iter(ds)
        def step():
            task = next(it)
            return len(task.support), len(task.query)
    else:  # the index sampling of FewShotMetaDataset's iterators, step by step (torchcross 0.0.6 code)
        pos, neg = fs.get_indices(labels, src.task_description.classes, TARGETS[kind])
        used = [1] if kind == "binary" else list(src.task_description.classes)
        def step():
            if kind == "binary":
                s = fs.binary_few_shot_sample(pos, neg, k)
                new_pos, new_neg = fs.remove_indices(pos, neg, s)
                qi = fs.binary_few_shot_sample(new_pos, new_neg, q)
            elif kind == "multilabel":
                s = fs.multilabel_few_shot_sample(labels, pos, neg, k, used)
                new_pos, new_neg = fs.remove_indices(pos, neg, s)
                qi = fs.multilabel_few_shot_sample(labels, new_pos, new_neg, q, used)
            else:
                s = fs.multiclass_few_shot_sample(pos, k, used)
                new_pos, new_neg = fs.remove_indices(pos, neg, s)
                qi = fs.multiclass_few_shot_sample(new_pos, q, used)
            return len(s), len(qi)
    times, sizes = [], []
    t_start = time.perf_counter()
    while len(times) < req["max_episodes"]:
        t0 = time.perf_counter()
        try:
            size = step()
        except StopIteration:
            break
        times.append(time.perf_counter() - t0)
        sizes.append(size)
        if len(times) >= req["min_episodes"] and time.perf_counter() - t_start > req["budget_s"]:
            break
    print(json.dumps({"times": times, "sizes": sizes}), flush=True)
"""


def make_labels(kind: str, n: int, seed: int = 0) -> tuple[np.ndarray, TaskDescription]:
    rng = np.random.default_rng(seed)
    if kind == "multiclass":
        weights = np.linspace(1.0, 3.0, 10)
        labels = rng.choice(10, size=n, p=weights / weights.sum())
        d = TaskDescription("MULTICLASS_CLASSIFICATION", {i: f"class {i}" for i in range(10)}, kind, "bench")
    elif kind == "binary":
        labels = (rng.random(n) < 0.3).astype(np.int64)[:, None]
        d = TaskDescription("BINARY_CLASSIFICATION", {0: "negative", 1: "positive"}, kind, "bench")
    elif kind == "multilabel":
        labels = (rng.random((n, 14)) < np.linspace(0.03, 0.4, 14)).astype(np.int64)
        d = TaskDescription(
            "MULTILABEL_CLASSIFICATION", {i: f"finding {i}" for i in range(14)}, kind, "bench"
        )
    else:
        labels = rng.choice(np.array(ORDINAL_KEYS), size=n, p=[0.4, 0.25, 0.15, 0.12, 0.08])
        d = TaskDescription("ORDINAL_REGRESSION", {k: f"grade {k}" for k in ORDINAL_KEYS}, kind, "bench")
    return labels.astype(np.int64), d


class PooledImageSource(TaskSource):
    """``n`` examples whose inputs are a pool of 3x224x224 uint8 images, read as float."""

    def __init__(self, labels: np.ndarray, description: TaskDescription, pool: torch.Tensor) -> None:
        self.labels, self.task_description, self.pool = labels, description, pool

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.pool[i % len(self.pool)].float().div_(255), torch.as_tensor(self.labels[i])

    def get_batch(self, indices: Any) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(np.asarray(indices) % len(self.pool))
        return self.pool[idx].float().div_(255), torch.as_tensor(self.labels[np.asarray(indices)])


def check_ours(ds: FewShotMetaDataset, labels: np.ndarray, shot: int, query: int) -> str:
    for i in range(5):
        ep = ds.sample_indices(i)
        if set(ep.support.tolist()) & set(ep.query.tolist()):
            return f"episode {i}: support and query overlap"
        if labels.ndim == 2 and labels.shape[1] > 1:
            for part, quota in ((ep.support, shot), (ep.query, query)):
                rows = labels[part]
                if not ((rows.sum(0) >= quota).all() and ((1 - rows).sum(0) >= quota).all()):
                    return f"episode {i}: quota not met"
        else:
            flat = labels.reshape(len(labels))
            for part, count in ((ep.support, shot), (ep.query, query)):
                if set(np.unique(flat[part], return_counts=True)[1].tolist()) != {count}:
                    return f"episode {i}: counts per class differ from {count}"
    return "ok"


def peer_check(kind: str, desc: TaskDescription, sizes: list | None, shot: int, query: int) -> str | None:
    """0.0.6's episodes must have the sizes the protocol asks for (multi-label: at least the quotas)."""
    if sizes is None:
        return None
    n_classes = 2 if kind == "binary" else desc.num_classes
    for n_support, n_query in sizes:
        if kind == "multilabel":
            if n_support < 2 * shot or n_query < 2 * query:
                return f"too small: {n_support} / {n_query}"
        elif (n_support, n_query) != (shot * n_classes, query * n_classes):
            return f"sizes {n_support} / {n_query} != {shot * n_classes} / {query * n_classes}"
    return "ok"


class Peer:
    """torchcross 0.0.6 in another Python, answering one timing request per line."""

    def __init__(self, python: str | None) -> None:
        self.proc: subprocess.Popen | None = None
        self.why = "not requested (--peer-python)"
        if not python:
            return
        # -P and a neutral working directory: never import this checkout's torchcross
        cmd = [python, "-P", "-c", "import importlib.metadata as m; print(m.version('torchcross'))"]
        probe = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=tempfile.gettempdir())
        version = probe.stdout.strip()
        if probe.returncode != 0 or not version.startswith("0.0."):
            self.why = (
                f"unavailable: {python} has no torchcross 0.0.x ({(probe.stderr or version).strip()[-200:]})"
            )
            return
        self.proc = subprocess.Popen(
            [python, "-P", "-c", PEER_SCRIPT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=tempfile.gettempdir(),
        )
        hello = json.loads(self.proc.stdout.readline() or "{}")
        if not hello.get("has_0_0_6_sampler"):
            self.close()
            self.proc = None
            self.why = f"unavailable: {python} imports a torchcross that is not 0.0.6 ({hello.get('file')})"
            return
        self.version = f"torchcross {version} ({hello['file']})"

    def request(self, **req: Any) -> dict:
        assert self.proc is not None
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the torchcross 0.0.6 peer process died")
        return json.loads(line)

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


def time_ours(fn, start: int, budget_s: float, min_n: int, max_n: int) -> list[float]:
    times: list[float] = []
    t_start = time.perf_counter()
    i = start
    while len(times) < max_n:
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
        i += 1
        if len(times) >= min_n and time.perf_counter() - t_start > budget_s:
            break
    return times


def environment() -> dict:
    import importlib.metadata as md

    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "versions": {p: md.version(p) for p in ("torch", "numpy", "torchcross")},
        "argv": sys.argv,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000,10000,100000")
    p.add_argument("--kinds", default=",".join(KINDS))
    p.add_argument("--shot", type=int, default=5)
    p.add_argument("--query", type=int, default=10)
    p.add_argument("--reps", type=int, default=5, help="interleaved repetitions (median reported)")
    p.add_argument("--budget", type=float, default=0.25, help="seconds per measurement (>= 3 episodes)")
    p.add_argument("--peer-python", help="python of an environment with torchcross 0.0.6")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--json",
        metavar="PATH",
        default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "episodes.json"),
        help="where to write all results as JSON (default: benchmarks/results/episodes.json)",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    pool = torch.randint(
        0, 256, (256, 3, 224, 224), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    peer = Peer(args.peer_python)
    report: dict[str, Any] = {"environment": environment(), "protocol": vars(args), "results": {}}
    report["environment"]["peer"] = getattr(peer, "version", peer.why)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            for n in sizes:
                labels, desc = make_labels(kind, n)
                path = os.path.join(tmp, f"{kind}_{n}.npy")
                np.save(path, labels)
                src = PooledImageSource(labels, desc, pool)
                common = dict(filter_classes_min_samples=0, seed=0)
                ds_idx = FewShotMetaDataset(
                    src, n_shot=args.shot, n_query=args.query, output_indices=True, **common
                )
                ds_full = FewShotMetaDataset(src, n_shot=args.shot, n_query=args.query, **common)
                check = check_ours(ds_idx, labels, args.shot, args.query)
                measures: dict[str, list[float]] = {
                    "rule": [],
                    "indices": [],
                    "full": [],
                    "load": [],
                    "peer_rule": [],
                    "peer_episode": [],
                }
                peer_sizes = None
                for rep in range(args.reps):
                    start = rep * 10_000
                    per = {
                        "rule": time_ours(ds_idx.sample_indices, start, args.budget, 3, 2000),
                        "indices": time_ours(ds_idx.__getitem__, start, args.budget, 3, 2000),
                        "full": time_ours(ds_full.__getitem__, start, args.budget, 3, 200),
                    }
                    eps = [ds_idx.sample_indices(start + j) for j in range(5)]
                    per["load"] = time_ours(
                        lambda j, eps=eps, src=src: src.get_batch(
                            np.concatenate([eps[j % 5].support, eps[j % 5].query])
                        ),
                        0,
                        args.budget,
                        3,
                        200,
                    )
                    if peer.proc is not None:
                        for mode in ("rule", "episode"):
                            reply = peer.request(
                                path=path,
                                kind=kind,
                                classes={str(k): v for k, v in desc.classes.items()},
                                shot=args.shot,
                                query=args.query,
                                seed=rep,
                                budget_s=args.budget,
                                mode=mode,
                                min_episodes=3,
                                max_episodes=2000,
                            )
                            per[f"peer_{mode}"] = reply["times"]
                            peer_sizes = reply["sizes"][:3]
                    for key, values in per.items():
                        if values:
                            measures[key].append(statistics.median(values))
                med = {k: statistics.median(v) * 1e3 if v else None for k, v in measures.items()}
                result = {
                    "kind": kind,
                    "n": n,
                    "check": check,
                    "ms": med,
                    "ms_per_rep": {k: [x * 1e3 for x in v] for k, v in measures.items()},
                    "support_query_sizes": [
                        [len(e.support), len(e.query)] for e in map(ds_idx.sample_indices, range(3))
                    ],
                    "peer_support_query_sizes": peer_sizes,
                    "peer_check": peer_check(kind, desc, peer_sizes, args.shot, args.query),
                    "speedup_rule_vs_0_0_6": (med["peer_rule"] / med["rule"]) if med["peer_rule"] else None,
                    "speedup_episode_vs_0_0_6": (med["peer_episode"] / med["indices"])
                    if med["peer_episode"]
                    else None,
                    "sampling_share_of_full": med["rule"] / med["full"],
                }
                report["results"][f"{kind}/{n}"] = result
                rows.append(result)
                print(
                    f"{kind:>10} {n:>7}: rule {med['rule']:.3f} ms, indices {med['indices']:.3f} ms, "
                    f"full {med['full']:.2f} ms, 0.0.6 {med['peer_rule']} / {med['peer_episode']} ms",
                    file=sys.stderr,
                    flush=True,
                )
    peer.close()
    print(format_table(rows, report["environment"]["peer"]))
    write_json(args.json, report)
    return 0


def format_table(rows: list[dict], peer: str) -> str:
    def ms(x: float | None, digits: int = 3) -> str:
        return "n/a" if x is None else f"{x:.{digits}f}"

    def ratio(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.0f}x"

    lines = [
        "| kind | examples | indices ms | 0.0.6 indices ms | speed-up | episode (index, label) ms | episodes/s "
        "| 0.0.6 episode ms | speed-up | full episode ms | data loading ms | sampling share | check |",
        "|" + "---|" * 13,
    ]
    for r in rows:
        m = r["ms"]
        lines.append(
            f"| {r['kind']} | {r['n']:,} | {ms(m['rule'])} | {ms(m['peer_rule'], 2)} | "
            f"{ratio(r['speedup_rule_vs_0_0_6'])} | {ms(m['indices'])} | {1e3 / m['indices']:.0f} | "
            f"{ms(m['peer_episode'], 2)} | {ratio(r['speedup_episode_vs_0_0_6'])} | {m['full']:.2f} | "
            f"{m['load']:.2f} | {100 * r['sampling_share_of_full']:.1f} % | {r['check']}"
            f"{'' if r['peer_check'] in (None, 'ok') else ' (0.0.6: ' + r['peer_check'] + ')'} |"
        )
    lines += [
        "",
        f"torchcross 0.0.6 peer: {peer}.",
        "5-shot, 10 query per class, all classes; medians of interleaved repetitions. indices: sampling the "
        "support and query indices (ours: FewShotMetaDataset.sample_indices; 0.0.6: the sampling steps of its "
        "FewShotMetaDataset iterator). episode: dataset item with output_indices=True. full: inputs from an "
        "in-memory source of 3x224x224 uint8 images converted to float; data loading: that source's get_batch "
        "alone; sampling share = indices / full.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
