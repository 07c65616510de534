"""The paper-default protocol on a synthetic MedIMeta-format folder: wall time per method.

Writes four small synthetic datasets (three imaging domains, two of them overlapping;
3-channel 32x32 noisy images whose class shifts a colour channel slightly and moves a faint blob; binary,
multi-class and ordinal tasks) and runs ``torchcross.protocol.run_protocol`` with the
paper's defaults, except: a local ResNet-18 ``state_dict`` stands in for the ImageNet
weights (nothing is downloaded), training is capped at a few steps with frequent
validation, and 20 episodes per task. Each method runs in its own call, so its time is
its training plus its evaluation. ``conv4`` as the second argument swaps the ResNet-18
for the library's Conv4 (a CPU-sized run; its saved random weights stand in for
pre-trained ones).

    python benchmarks/paper_protocol.py OUT_DIR                       # ResNet-18, 32x32, CPU-sized
    python benchmarks/paper_protocol.py OUT_DIR --backbone conv4 --episodes 5 --steps-scale 0.1
    python benchmarks/paper_protocol.py OUT_DIR --size 224 --episodes 100 --steps-scale 20 --device cuda \
        --json benchmarks/results/paper_protocol_gpu.json   # the paper's image size and episode count

``--steps-scale`` multiplies the step caps (mm-PT and supervised 60, mm-MAML 20; validation
every third of them, mm-MAML's on 2 episodes per source task); every other setting is the paper default
(the target dataset's primary task, as Tables 3 and 4).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _report import write_json

from torchcross.data.task import TaskDescription
from torchcross.datasets.medimeta import write_medimeta
from torchcross.protocol import config_from_dict, run_protocol

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


def main(argv: list[str] | None = None) -> None:
    from torchcross.protocol.backbone import build_backbone

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the synthetic data and the runs")
    parser.add_argument("--backbone", default="resnet18", choices=("resnet18", "conv4"))
    parser.add_argument("--size", type=int, default=32, help="image side in pixels (the paper: 224)")
    parser.add_argument("--episodes", type=int, default=20, help="episodes per target task (the paper: 100)")
    parser.add_argument("--steps-scale", type=float, default=1.0, help="multiplies the training step caps")
    parser.add_argument("--device", default="cpu", help="torch device for training and evaluation")
    parser.add_argument("--threads", type=int, default=2, help="torch threads ([run] num_threads)")
    parser.add_argument("--json", default=None, help="also write the report here")
    args = parser.parse_args(argv)

    def steps(n: int) -> int:
        return max(3, round(n * args.steps_scale))

    out: Path = args.out
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
    write_json(
        args.json,
        {
            "benchmark": "paper_protocol",
            "settings": {**{k: v for k, v in vars(args).items() if k != "out"}, "steps": [pre, maml]},
            "torch": torch.__version__,
            "device_name": device_name,
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
