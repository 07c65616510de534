"""Episodes cross the version line both ways with the real torchcross 0.0.6 (not an emulation).

Run by ``.ci/run`` after installing the original package into a folder of its own::

    pip install --no-deps --target OLD torchcross==0.0.6 torchopt optree graphviz
    python tests/compat/real_0_0_6_round_trip.py OLD

Episodes of every task kind, sampled and pickled here (``pickle`` and ``torch.save``), are
read by torchcross 0.0.6 in a subprocess that imports it from ``OLD``: the classes must be
0.0.6's own ``Task``/``TaskDescription``/``TaskTarget``, ``classes`` a ``dict``, and the
tensors equal. Then 0.0.6 pickles tasks of its own and this package reads them. Exits non-zero
with the reason on any difference. (Both packages are called ``torchcross``, so they cannot
share a process; pytest does not collect this file.)
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

KINDS = {
    "MULTICLASS_CLASSIFICATION": ([0, 1, 2], {0: "a", 1: "b", 2: "c"}),
    "BINARY_CLASSIFICATION": ([0, 1], {0: "no", 1: "yes"}),
    "ORDINAL_REGRESSION": ([1, 4, 6], {1: "x", 4: "y", 6: "z"}),
    "MULTILABEL_CLASSIFICATION": (None, {0: "p", 1: "q", 2: "r"}),
}

READ_IN_OLD = r"""
import json, pickle, sys, torch, torchcross
from torchcross.data.task import Task, TaskDescription, TaskTarget
folder = sys.argv[1]
if not torchcross.__file__.startswith(sys.argv[2]):
    sys.exit(f"imported {torchcross.__file__}, not torchcross 0.0.6")
expected = json.load(open(f"{folder}/expected.json"))
for kind, e in expected.items():
    for how in ("pkl", "pt"):
        path = f"{folder}/{kind}.{how}"
        t = pickle.load(open(path, "rb")) if how == "pkl" else torch.load(path, weights_only=False)
        problems = []
        if type(t) is not Task or type(t.description) is not TaskDescription:
            problems.append(f"types {type(t)}, {type(t.description)}")
        if not isinstance(t.description.classes, dict):
            problems.append(f"classes is a {type(t.description.classes).__name__}, not a dict")
        if t.description.task_target is not TaskTarget[e["target"]]:
            problems.append(f"task_target {t.description.task_target}")
        if {str(k): v for k, v in t.description.classes.items()} != e["classes"]:
            problems.append(f"classes {t.description.classes}")
        tensors = [t.support[0].tolist(), t.support[1].tolist(), t.query[0].tolist(), t.query[1].tolist()]
        if tensors != e["tensors"]:
            problems.append("tensors differ")
        if problems:
            sys.exit(f"torchcross 0.0.6 reading {path}: " + "; ".join(problems))
old = {"MULTICLASS_CLASSIFICATION": {0: "a", 1: "b"}, "MULTILABEL_CLASSIFICATION": {0: "p", 1: "q"}}
for kind, classes in old.items():
    d = TaskDescription(TaskTarget[kind], classes, f"old/{kind.lower()}", "old domain")
    support = (torch.arange(4.0)[:, None], torch.tensor([0, 1, 0, 1]))
    task = Task(support, (torch.ones(2, 1), torch.tensor([1, 0])), d)
    pickle.dump(task, open(f"{folder}/old-{kind}.pkl", "wb"))
print("torchcross 0.0.6 read", len(expected), "task kinds, pickled and torch.save'd, and wrote 2 tasks")
"""


def write_episodes(folder: Path) -> None:
    import numpy as np
    import torch

    from torchcross.data import TensorTaskSource
    from torchcross.data.metadataset import FewShotMetaDataset
    from torchcross.tasks import TaskDescription

    expected = {}
    for kind, (values, classes) in KINDS.items():
        if values is None:
            labels = (np.random.default_rng(0).random((60, 3)) < 0.5).astype(np.int64)
        else:
            labels = np.array(values)[np.arange(60) % len(values)]
        d = TaskDescription(kind, classes, f"ds/{kind.lower()}", "domain")
        source = TensorTaskSource(torch.arange(60.0)[:, None].repeat(1, 2), labels, d)
        task = FewShotMetaDataset(source, None, 2, 2, 0, length=1, seed=0)[0]
        with open(folder / f"{kind}.pkl", "wb") as f:
            pickle.dump(task, f)
        torch.save(task, folder / f"{kind}.pt")
        tensors = [
            task.support[0].tolist(),
            task.support[1].tolist(),
            task.query[0].tolist(),
            task.query[1].tolist(),
        ]
        expected[kind] = {
            "target": task.description.task_target.name,
            "classes": {str(k): v for k, v in task.description.classes.items()},
            "tensors": tensors,
        }
    (folder / "expected.json").write_text(json.dumps(expected))


def read_old_tasks(folder: Path) -> int:
    from torchcross.tasks.task import Task, TaskTarget

    read = 0
    for path in sorted(folder.glob("old-*.pkl")):
        with open(path, "rb") as f:
            task = pickle.load(f)
        if not isinstance(task, Task) or task.description.task_target is not TaskTarget[path.stem[4:]]:
            raise SystemExit(f"reading {path.name} (written by 0.0.6) gave {task!r}")
        if task.support[0].shape != (4, 1) or task.description.domain_identifier != "old domain":
            raise SystemExit(f"reading {path.name} (written by 0.0.6): wrong contents {task!r}")
        read += 1
    return read


def main(old: str) -> None:
    old = str(Path(old).resolve())
    if not (Path(old) / "torchcross" / "__init__.py").is_file():
        raise SystemExit(f"no torchcross package under {old}; install it with pip --target {old}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_episodes(folder)
        env = {**os.environ, "PYTHONPATH": old}
        done = subprocess.run(
            [sys.executable, "-c", READ_IN_OLD, str(folder), old],
            env=env,
            cwd=folder,  # not this repository: its torchcross would come first on the path
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise SystemExit(f"torchcross 0.0.6 failed:\n{done.stdout}{done.stderr}")
        print(done.stdout.strip())
        print(f"this torchcross read {read_old_tasks(folder)} tasks pickled by torchcross 0.0.6")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python tests/compat/real_0_0_6_round_trip.py FOLDER_WITH_TORCHCROSS_0_0_6")
    main(sys.argv[1])
