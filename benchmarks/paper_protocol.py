"""The paper-default protocol on a synthetic MedIMeta-format folder: wall time per method.

Writes four small synthetic datasets (three imaging domains, two of them overlapping;
3-channel 32x32 images whose class shifts a colour channel and a blob position; binary,
multi-class and ordinal tasks) and runs ``torchcross.protocol.run_protocol`` with the
paper's defaults, except: a local ResNet-18 ``state_dict`` stands in for the ImageNet
weights (nothing is downloaded), training is capped at a few steps with frequent
validation, and 20 episodes per task. Each method runs in its own call, so its time is
its training plus its evaluation. ``conv4`` as the second argument swaps the ResNet-18
for the library's Conv4 (a CPU-sized run; its saved random weights stand in for
pre-trained ones).

    python benchmarks/paper_protocol.py OUT_DIR [resnet18|conv4]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

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
        images = rng.normal(100 + 20 * i, 25, (n, size, size, 3))
        images[np.arange(n), :, :, i % 3] += 15 * grade[:, None, None]
        for j in range(n):  # a blob whose position depends on the grade
            y, x = 4 + 6 * grade[j], 4 + 6 * ((grade[j] + i) % 4)
            images[j, y : y + 6, x : x + 6] += 60
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


def main(out: Path, backbone: str = "resnet18") -> None:
    from torchcross.protocol.backbone import build_backbone

    root = write_folder(out / "data")
    weights = out / f"{backbone}.pth"  # stands in for ImageNet weights (no network here)
    torch.save(build_backbone(backbone, 3, 32, seed=1)[0].state_dict(), weights)
    raw = {
        "data": {"root": str(root), "targets": ["derm_a"], "min_class_size": 50},
        "evaluation": {"n_episodes": 20},
        "backbone": {"name": backbone, "weights": str(weights)},
        "pretrain": {"steps": 60, "val_every": 20, "val_batches": 5},
        "maml": {"steps": 20, "val_every": 10, "val_episodes": 10},
        "supervised": {"steps": 60, "val_every": 20, "val_batches": 5, "bootstrap": 200},
        "run": {"out_dir": str(out / "run"), "plot": False, "num_threads": 2},
    }
    rows = []
    for method in ("IM-PT", "mm-PT", "mm-MAML", "supervised"):
        raw["evaluation"]["methods"] = [method]
        start = time.perf_counter()
        result = run_protocol(config_from_dict(raw), progress=False, log=None)
        rows.append((method, time.perf_counter() - start, result))
    print("| method | wall time (s) | AUROC per target task |")
    print("|---|--:|---|")
    for method, seconds, result in rows:
        scores = ", ".join(f"{r['target'].split('/')[1]} {r['auroc_mean']:.3f}" for r in result.summary)
        print(f"| {method} | {seconds:.1f} | {scores} |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "paper-protocol-bench"), *sys.argv[2:3])
