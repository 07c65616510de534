"""The cost of the paper's protocol (MedIMeta Table 4 and Table 3): measured unit times, projected.

Measures, with the library's own learners and the protocol's defaults, the time of each unit of work the
protocol repeats, then multiplies each by how often the full protocol runs it: 19 target datasets (each
its primary task), four methods (IM-PT, mm-PT, mm-MAML and the supervised baseline), 100 episodes per
target. What is measured (median over repetitions, after a warm-up):

* ``pt_step``: one mm-PT update (ResNet-18 and a task head, batch 64, the paper's augmentation, Adam);
  the supervised baseline's update is the same computation and is counted with it;
* ``forward_image``: one image through the backbone in eval mode, in batches of 64 (validation and test
  passes);
* ``maml_step``: one mm-MAML meta-update (4 second-order SGD inner steps, lr 0.1; Adam outer step) on a
  3-way 5-shot episode with 10 queries per class, standing for the mean episode (1-10 shots, 2..k ways);
* ``maml_val_episode``: one mm-MAML validation episode (32 inner steps, then the query logits);
* ``finetune_episode``: one target episode of IM-PT, mm-PT and mm-MAML evaluation (a new head, the whole
  backbone fine-tuned with Adam lr 1e-3 for 50 steps, support-set BatchNorm, then the query logits), at
  two class counts (5-shot, 10 queries per class); other class counts are interpolated linearly.

What is assumed (options): epochs until early stopping stops training (validation once per epoch, best
weights kept): twice the patience, ``--epochs-pt 20`` (mm-PT, patience 10), ``--epochs-maml 10``
(mm-MAML, patience 5), ``--epochs-supervised 20``; the dataset sizes, tasks and overlaps of the MedIMeta
v1.0 catalogue (``CATALOGUE`` below; classes with fewer than 50 examples, dropped from the episodes, are
ignored; a multi-label target counts its labels as classes); data loading is free (the protocol reads
uint8 images; measured separately by ``medimeta_io.py``).

    python benchmarks/paper_protocol.py --threads 1                   # ResNet-18 at 32 px on the CPU
    python benchmarks/paper_protocol.py --threads 1 --docs docs/paper-cost.md   # rewrite the docs' table
    python benchmarks/paper_protocol.py --device cuda --size 224 --json benchmarks/results/paper_cost_gpu.json
    python benchmarks/paper_protocol.py --quick                        # seconds: a tiny Conv4 (the test)
    python benchmarks/paper_protocol.py --end-to-end OUT_DIR           # the whole protocol per method

``--precision bf16`` and ``--channels-last`` measure under ``[run] precision`` and ``channels_last``.

``--end-to-end OUT_DIR`` runs ``torchcross.protocol.run_protocol`` instead, once per method, on four small
synthetic datasets in the MedIMeta format (three imaging domains, two of them overlapping; 3-channel
noisy images whose class shifts a colour channel slightly and moves a faint blob; binary, multi-class and
ordinal tasks) with the paper's defaults except: a local ResNet-18 ``state_dict`` stands in for the
ImageNet weights (nothing is downloaded), training is capped at a few steps (``--steps-scale`` multiplies
the caps: mm-PT and supervised 60, mm-MAML 20; validation every third of them, mm-MAML's on 2 episodes
per source task) and 20 episodes per task (``--episodes``): wall time per method, training and evaluation.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import math
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _report import write_json

from torchcross.data.task import TaskDescription
from torchcross.datasets.medimeta import write_medimeta
from torchcross.protocol import config_from_dict, run_protocol

# MedIMeta v1.0: id -> (tasks, train, val, test, classes of the primary task); a multi-label primary task
# (cxr) counts its labels
CATALOGUE: dict[str, tuple[int, int, int, int, int]] = {
    "aml": (1, 12855, 1836, 3674, 15),
    "bus": (2, 546, 78, 156, 3),
    "crc": (1, 85000, 15000, 7180, 9),
    "cxr": (2, 73421, 13103, 25596, 14),
    "derm": (1, 10015, 193, 1512, 7),
    "dr_regular": (5, 1200, 400, 400, 5),
    "dr_uwf": (1, 150, 50, 50, 5),
    "fundus": (2, 1920, 640, 640, 2),
    "glaucoma": (1, 857, 152, 336, 2),
    "mammo_calc": (3, 1332, 214, 326, 2),
    "mammo_mass": (3, 1126, 192, 378, 2),
    "oct": (2, 91615, 16694, 1000, 4),
    "organs_axial": (1, 871, 156, 618, 11),
    "organs_coronal": (1, 871, 156, 618, 11),
    "organs_sagittal": (1, 871, 156, 618, 11),
    "pbc": (1, 11964, 1709, 3419, 8),
    "pneumonia": (2, 4415, 817, 624, 2),
    "skinl_photo": (12, 413, 203, 395, 15),
    "skinl_derm": (12, 413, 203, 395, 15),
}
# domain or subject overlaps: a target never trains on a dataset of its group (leave-one-out)
OVERLAPS = (
    {"aml", "pbc"},
    {"mammo_calc", "mammo_mass"},
    {"cxr", "pneumonia"},
    {"derm", "skinl_derm"},
    {"glaucoma", "dr_regular", "dr_uwf", "fundus"},
    {"organs_axial", "organs_coronal", "organs_sagittal"},
    {"skinl_photo", "skinl_derm"},
)
EPISODES = 100  # per target task (Table 4)
SHOTS, QUERY = 5, 10  # per class
PT_BATCH = 64  # mm-PT and supervised batch size
MAML_POOL, MAML_VAL_EPISODES = 1000, 100  # episodes per source task: training pool, validation
MARKERS = ("<!-- paper-cost:start -->", "<!-- paper-cost:end -->")


def sources(target: str) -> list[str]:
    """The leave-one-out source datasets of ``target``: every other dataset that overlaps it in nothing."""
    banned = {target}.union(*(g for g in OVERLAPS if target in g))
    return [d for d in CATALOGUE if d not in banned]


def unit_counts(target: str, epochs: dict[str, float]) -> dict[str, dict[str, float]]:
    """``{method: {unit: how often the method runs it on target}}`` under the protocol's defaults."""
    _, train, val, test, _ = CATALOGUE[target]
    src = sources(target)
    pt_steps = sum(CATALOGUE[d][0] * math.ceil(CATALOGUE[d][1] / PT_BATCH) for d in src)  # one epoch
    pt_val = sum(CATALOGUE[d][0] * CATALOGUE[d][2] for d in src)  # every source task's val split
    source_tasks = sum(CATALOGUE[d][0] for d in src)
    episodes = {"finetune_episode": EPISODES}
    return {
        "IM-PT": dict(episodes),
        "mm-PT": {"pt_step": epochs["pt"] * pt_steps, "forward_image": epochs["pt"] * pt_val, **episodes},
        "mm-MAML": {
            "maml_step": epochs["maml"] * MAML_POOL * source_tasks,
            "maml_val_episode": epochs["maml"] * MAML_VAL_EPISODES * source_tasks,
            **episodes,
        },
        "supervised": {
            "pt_step": epochs["supervised"] * math.ceil(train / PT_BATCH),
            "forward_image": epochs["supervised"] * val + test,
        },
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_seconds(fn: Callable[[], Any], reps: int, device: torch.device) -> float:
    fn()  # warm-up: allocations, kernel choice
    times = []
    for _ in range(reps):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _episode(
    ways: int, shots: int, size: int, channels: int, device: torch.device, g: torch.Generator
) -> Any:
    from torchcross.tasks.task import Task

    kind = "BINARY_CLASSIFICATION" if ways == 2 else "MULTICLASS_CLASSIFICATION"
    d = TaskDescription(kind, {i: str(i) for i in range(ways)}, f"bench/{ways}-way")

    def part(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(ways * per_class, channels, size, size, generator=g).to(device)
        return x, torch.arange(ways).repeat_interleave(per_class).to(device)

    return Task(part(shots), part(QUERY), d)


def measure_units(args: argparse.Namespace) -> dict[str, Any]:
    """Median seconds of every unit (see the module doc), and of a fine-tuning episode per class count."""
    from torchcross.learners import MAML, FineTuner, MultiTaskPretrainer
    from torchcross.learners.policies import HeadPolicy, InnerLoop
    from torchcross.learners.precision import mixed_precision, to_channels_last
    from torchcross.protocol.augment import build_augmentation
    from torchcross.protocol.backbone import build_backbone
    from torchcross.protocol.config import AugmentationConfig

    device = torch.device(args.device)
    channels, size, reps = 3, args.size, args.reps
    g = torch.Generator().manual_seed(0)
    extra = {"hidden": 8} if args.backbone == "conv4" else {}
    base, width = build_backbone(args.backbone, channels, size, seed=0, weights="random", **extra)
    base = base.to(device)
    if args.channels_last:
        base = to_channels_last(base)

    def backbone() -> torch.nn.Module:
        return copy.deepcopy(base)

    out: dict[str, Any] = {}
    with mixed_precision(args.precision, device):
        d = TaskDescription("MULTICLASS_CLASSIFICATION", {i: str(i) for i in range(4)}, "bench/source")
        model = MultiTaskPretrainer(backbone(), width, [d], head_init="zero").to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        augment = build_augmentation(AugmentationConfig(), size)
        x = torch.randn(args.batch, channels, size, size, generator=g).to(device)
        y = torch.randint(0, 4, (args.batch,), generator=g).to(device)

        def pt_step() -> None:
            opt.zero_grad()
            model.loss((augment(x) if augment else x, y), d).backward()
            opt.step()

        out["pt_step"] = _median_seconds(pt_step, reps, device)
        frozen = backbone().eval()

        def forward() -> None:
            with torch.no_grad():
                frozen(x)

        out["forward_image"] = _median_seconds(forward, reps, device) / args.batch
        maml = MAML(backbone(), width, inner=InnerLoop(lr=0.1, steps=4, eval_steps=32)).to(device)
        meta_opt = torch.optim.Adam(maml.parameters(), lr=1e-3)
        episode = _episode(3, SHOTS, size, channels, device, g)

        def maml_step() -> None:
            meta_opt.zero_grad()
            maml.meta_backward([episode])
            meta_opt.step()

        out["maml_step"] = _median_seconds(maml_step, reps, device)
        long_reps = max(1, reps // 4)  # units of several seconds: fewer repetitions
        out["maml_val_episode"] = _median_seconds(lambda: maml.predict(episode), long_reps, device)
        tuner = FineTuner(
            backbone(),
            width,
            inner=InnerLoop(lr=1e-3, steps=args.finetune_steps, optimizer="adam"),
            finetune_backbone=True,
            head=HeadPolicy(init="kaiming", seed=0, key="episode"),
            batch_norm="support",
        )
        by_ways = {}
        for ways in args.ways:
            task = _episode(ways, SHOTS, size, channels, device, g)
            by_ways[ways] = _median_seconds(lambda t=task: tuner.predict(t), long_reps, device)
        out["finetune_episode_by_ways"] = by_ways
    return out


def finetune_seconds(by_ways: dict[int, float], ways: int) -> float:
    """A fine-tuning episode of ``ways`` classes: the measured ones interpolated (extrapolated) linearly."""
    (w0, t0), (w1, t1) = sorted(by_ways.items())[0], sorted(by_ways.items())[-1]
    if w0 == w1:
        return t0
    return max(0.0, t0 + (t1 - t0) * (ways - w0) / (w1 - w0))


def project(units: dict[str, Any], epochs: dict[str, float]) -> list[dict[str, Any]]:
    """Seconds per method per target (training and evaluation), with the unit counts behind them."""
    rows = []
    for target, spec in CATALOGUE.items():
        counts = unit_counts(target, epochs)
        seconds = {"finetune_episode": finetune_seconds(units["finetune_episode_by_ways"], spec[4]), **units}
        per_method = {m: sum(n * seconds[u] for u, n in c.items()) for m, c in counts.items()}
        rows.append({"target": target, "ways": spec[4], "counts": counts, "seconds": per_method})
    return rows


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f}"


def tables(units: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The projection per target and method (hours), and what each unit contributes."""
    methods = list(rows[0]["seconds"])
    lines = [
        "| target | ways | " + " | ".join(methods) + " | all four |",
        "|---|--:|" + "--:|" * (len(methods) + 1),
    ]
    for r in rows:
        cells = [_hours(r["seconds"][m]) for m in methods]
        lines.append(
            f"| {r['target']} | {r['ways']} | "
            + " | ".join(cells)
            + f" | {_hours(sum(r['seconds'].values()))} |"
        )
    totals = [sum(r["seconds"][m] for r in rows) for m in methods]
    lines.append(
        "| **all 19** | | "
        + " | ".join(f"**{_hours(t)}**" for t in totals)
        + f" | **{_hours(sum(totals))}** |"
    )
    by_ways = units["finetune_episode_by_ways"]
    total = sum(sum(r["seconds"].values()) for r in rows)
    runs: dict[str, float] = {}
    share: dict[str, float] = {}
    for r in rows:
        ft = finetune_seconds(by_ways, r["ways"])
        for c in r["counts"].values():
            for u, n in c.items():
                runs[u] = runs.get(u, 0.0) + n
                share[u] = share.get(u, 0.0) + n * (ft if u == "finetune_episode" else units[u])
    measured = {
        "pt_step": ("mm-PT and supervised update (batch 64)", units["pt_step"]),
        "forward_image": ("one image, eval-mode forward (validation, test)", units["forward_image"]),
        "maml_step": ("mm-MAML meta-update (3-way 5-shot, 4 inner steps)", units["maml_step"]),
        "maml_val_episode": ("mm-MAML validation episode (32 inner steps)", units["maml_val_episode"]),
        "finetune_episode": (
            "target episode, 50 fine-tuning steps: "
            + ", ".join(f"{s:.4f} s at {w} ways" for w, s in sorted(by_ways.items())),
            None,
        ),
    }
    lines += [
        "",
        "| unit | what | measured (s) | runs in the protocol | share of the total |",
        "|---|---|--:|--:|--:|",
    ]
    for unit, (what, s) in measured.items():
        cell = "by ways" if s is None else f"{s:.4f}"
        lines.append(f"| `{unit}` | {what} | {cell} | {runs[unit]:.0f} | {100 * share[unit] / total:.1f}% |")
    return "\n".join(lines)


DATASETS = (
    ("derm_a", "Dermoscopy", ("derm_b",)),
    ("derm_b", "Dermoscopy", ("derm_a",)),
    ("xray", "Chest X-ray", ()),
    ("fundus", "Fundus photography", ()),
)


def write_folder(root: Path, n: int = 400, size: int = 32, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for i, (ds, domain, overlaps) in enumerate(DATASETS):
        grade = rng.integers(0, 4, n)
        sick = (grade >= 2).astype(int)
        images = rng.normal(100 + 20 * i, 40, (n, size, size, 3))
        images[np.arange(n), :, :, i % 3] += 2 * grade[:, None, None]
        for j in range(n):  # a blob whose position depends on the grade
            y, x = 4 + 6 * grade[j], 4 + 6 * ((grade[j] + i) % 4)
            images[j, y : y + 6, x : x + 6] += 12
        tasks = {
            "disease": (
                TaskDescription("BINARY_CLASSIFICATION", {0: "healthy", 1: "sick"}, f"{ds}/disease", domain),
                sick,
            ),
            "grade": (
                TaskDescription(
                    "ORDINAL_REGRESSION", {0: "0", 1: "1", 2: "2", 3: "3"}, f"{ds}/grade", domain
                ),
                grade,
            ),
            "type": (
                TaskDescription(
                    "MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c", 3: "d"}, f"{ds}/type", domain
                ),
                (grade + i) % 4,
            ),
        }
        split = np.array(["train"] * int(0.6 * n) + ["val"] * int(0.2 * n) + ["test"] * (n - int(0.8 * n)))
        write_medimeta(
            root,
            ds,
            np.clip(images, 0, 255).astype(np.uint8),
            tasks,
            list(rng.permutation(split)),
            domain=domain,
            domain_overlaps=overlaps,
            overwrite=True,
        )
    return root


def end_to_end(args: argparse.Namespace) -> dict[str, Any]:
    """The whole protocol once per method on a synthetic folder (the module doc): wall time per method."""
    from torchcross.protocol.backbone import build_backbone

    def steps(n: int) -> int:
        return max(3, round(n * args.steps_scale))

    out: Path = args.end_to_end
    root = write_folder(out / "data", size=args.size)
    weights = out / f"{args.backbone}.pth"  # stands in for ImageNet weights (no network here)
    torch.save(build_backbone(args.backbone, 3, args.size, seed=1)[0].state_dict(), weights)
    pre, maml = steps(60), steps(20)
    raw = {
        "data": {"root": str(root), "targets": ["derm_a"], "min_class_size": 50},
        "evaluation": {"n_episodes": args.episodes},
        "backbone": {"name": args.backbone, "weights": str(weights)},
        "pretrain": {"steps": pre, "val_every": max(1, pre // 3), "val_batches": 5},
        # 2 validation episodes per source task (12 here; the paper: 100 per task), its 32 inner steps
        "maml": {"steps": maml, "val_every": max(1, maml // 2), "val_episodes": 2},
        "supervised": {"steps": pre, "val_every": max(1, pre // 3), "val_batches": 5, "bootstrap": 200},
        "run": {
            "out_dir": str(out / "run"),
            "plot": False,
            "num_threads": args.threads,
            "device": args.device,
        },
    }
    rows = []
    for method in ("IM-PT", "mm-PT", "mm-MAML", "supervised"):
        raw["evaluation"]["methods"] = [method]
        start = time.perf_counter()
        result = run_protocol(config_from_dict(raw), progress=False, log=None)
        seconds = time.perf_counter() - start
        scores = {r["target"]: round(r["auroc_mean"], 4) for r in result.summary}
        rows.append({"method": method, "seconds": round(seconds, 2), "auroc": scores})
        print(f"# {method}: {seconds:.1f} s", flush=True)
    print(
        f"paper-default protocol, {args.backbone} {args.size}x{args.size}, {args.episodes} episodes per task, "
        f"steps mm-PT/supervised {pre}, mm-MAML {maml}, device {args.device}"
    )
    print("| method | wall time (s) | AUROC per target task |")
    print("|---|--:|---|")
    for row in rows:
        scores = ", ".join(f"{t.split('/')[1]} {v:.3f}" for t, v in row["auroc"].items())
        print(f"| {row['method']} | {row['seconds']:.1f} | {scores} |")
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor()
    report = {
        "benchmark": "paper_protocol",
        "settings": {**{k: str(v) for k, v in vars(args).items()}, "steps": [pre, maml]},
        "torch": torch.__version__,
        "device_name": device_name,
        "rows": rows,
    }
    write_json(args.json, report)
    return report


def write_docs(path: Path, block: str) -> None:
    """Replace the text between the paper-cost markers of ``path`` with ``block``."""
    text = path.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(MARKERS[0]) + ".*?" + re.escape(MARKERS[1]), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"{path} has no {MARKERS[0]} ... {MARKERS[1]} block to rewrite")
    path.write_text(pattern.sub(lambda _: f"{MARKERS[0]}\n{block}\n{MARKERS[1]}", text), encoding="utf-8")
    print(f"# rewrote the paper-cost block of {path}")


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:  # Linux: the CPU's model name
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18", choices=("resnet18", "conv4"))
    parser.add_argument("--size", type=int, default=32, help="image side in pixels (the paper: 224)")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="as [run] precision")
    parser.add_argument("--channels-last", action="store_true", help="as [run] channels_last")
    parser.add_argument("--reps", type=int, default=4, help="timed repetitions of a training unit")
    parser.add_argument("--batch", type=int, default=PT_BATCH, help="mm-PT and supervised batch size")
    parser.add_argument("--finetune-steps", type=int, default=50, help="fine-tuning steps per episode")
    parser.add_argument(
        "--ways", type=int, nargs=2, default=(2, 6), help="class counts of the episodes timed"
    )
    parser.add_argument("--epochs-pt", type=float, default=20, help="assumed mm-PT epochs (patience 10)")
    parser.add_argument("--epochs-maml", type=float, default=10, help="assumed mm-MAML epochs (patience 5)")
    parser.add_argument("--epochs-supervised", type=float, default=20, help="assumed supervised epochs")
    parser.add_argument("--quick", action="store_true", help="seconds: Conv4 (8 filters), 16 px, one rep")
    parser.add_argument("--json", default=None, help="also write the report here")
    parser.add_argument("--docs", type=Path, default=None, help="rewrite the paper-cost block of this page")
    parser.add_argument("--end-to-end", type=Path, default=None, metavar="OUT_DIR", help="run the protocol")
    parser.add_argument("--episodes", type=int, default=20, help="--end-to-end: episodes per target task")
    parser.add_argument("--steps-scale", type=float, default=1.0, help="--end-to-end: multiplies step caps")
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return end_to_end(args) if args.end_to_end is not None else project_cost(args, argv)
    finally:
        torch.set_num_threads(threads)


def project_cost(args: argparse.Namespace, argv: list[str] | None) -> dict[str, Any]:
    """Measure the units, project them, print (and write) the report."""
    if args.quick:
        args.backbone, args.size, args.reps = "conv4", 16, 1
    given = list(argv if argv is not None else sys.argv[1:])
    for flag in ("--json", "--docs"):  # where the report goes is no part of what was measured
        if flag in given:
            at = given.index(flag)
            del given[at : at + 2]
    command = " ".join(["python benchmarks/paper_protocol.py", *given])
    start = time.perf_counter()
    units = measure_units(args)
    epochs = {"pt": args.epochs_pt, "maml": args.epochs_maml, "supervised": args.epochs_supervised}
    rows = project(units, epochs)
    table = tables(units, rows)
    total = sum(sum(r["seconds"].values()) for r in rows)
    device = _device_name(args.device)
    where = (
        f"{args.backbone} at {args.size}x{args.size} px on {args.device} ({device}), torch {torch.__version__}, "
        f"{args.threads} thread(s), precision {args.precision}"
        + (", channels-last" if args.channels_last else "")
    )
    summary = (
        f"Projected: **{total / 3600:.1f} hours** ({total / 86400:.1f} days) for the whole protocol, one "
        f"seed, one process; assumed epochs to early stopping: mm-PT {args.epochs_pt:g}, mm-MAML "
        f"{args.epochs_maml:g}, supervised {args.epochs_supervised:g}."
    )
    print(f"paper protocol cost, {where}; measured in {time.perf_counter() - start:.0f} s")
    print(table)
    print(summary)
    report = {
        "benchmark": "paper_protocol",
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "torch": torch.__version__,
        "device_name": device,
        "units_s": units,
        "epochs": epochs,
        "rows": rows,
        "total_s": total,
        "table": table,
    }
    write_json(args.json, report)
    if args.docs is not None:
        day = datetime.date.today().isoformat()
        block = f"Measured {day}: `{command.strip()}`; {where}.\n\n{table}\n\n{summary}"
        write_docs(args.docs, block)
    return report


if __name__ == "__main__":
    main()
