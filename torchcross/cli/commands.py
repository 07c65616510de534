"""The work behind ``torchcross medimeta ...``, ``torchcross episodes sample`` and ``torchcross run``.

`torchcross.cli.app` parses arguments (importing nothing heavy); the functions here do
the work and return an exit status. User errors raise ``ValueError`` (or ``OSError``),
which the CLI prints as one line.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, cast

__all__ = [
    "convert_command",
    "episodes_sample_command",
    "info_command",
    "list_command",
    "run_command",
    "verify_command",
]


def _kinds(tasks: Any) -> str:
    short = {
        "MULTICLASS_CLASSIFICATION": "MC",
        "BINARY_CLASSIFICATION": "BIN",
        "MULTILABEL_CLASSIFICATION": "ML",
        "ORDINAL_REGRESSION": "ORD",
        "REGRESSION": "REG",
    }
    return "; ".join(f"{t.task_name} ({short[t.task_target.name]} {len(t.classes)})" for t in tasks)


def _catalogue(data_path: str | None) -> Any:
    if data_path is None:
        from torchcross.datasets.medimeta import medimeta_catalogue

        return medimeta_catalogue()
    from torchcross.protocol.data import load_catalogue

    catalogue, problems = load_catalogue(data_path)
    for folder, problem in problems.items():
        print(f"skipped broken dataset folder {folder}: {problem}", file=sys.stderr)
    return catalogue


def list_command(args: argparse.Namespace) -> int:
    """Print the catalogue (or the datasets under ``--data-path``) as a Markdown table."""
    from torchcross.evaluation.results import ResultsTable

    cat = _catalogue(args.data_path)
    rows = []
    for d in cat:
        tasks = [t for t in d.tasks if args.kind is None or t.task_target.name == args.kind.upper()]
        if args.kind is not None and not tasks:
            continue
        rows.append({"id": d.id, "name": d.name, "domain": d.domain, "tasks": _kinds(tasks)})
    print(ResultsTable(rows, columns=["id", "name", "domain", "tasks"]).to_markdown())
    where = "MedIMeta v1.0 catalogue" if args.data_path is None else f"datasets under {args.data_path}"
    print(f"\n{len(rows)} datasets, {sum(len(r['tasks'].split('; ')) for r in rows)} tasks ({where})")
    return 0


def info_command(args: argparse.Namespace) -> int:
    """Print one dataset's metadata, tasks, overlaps and leave-one-out sources."""
    from torchcross.tasks.catalogue import leave_one_out_sources

    cat = _catalogue(args.data_path)
    if args.dataset not in cat:
        msg = f"unknown dataset {args.dataset!r}; known datasets: {', '.join(cat.ids)}"
        if args.data_path is None:
            msg += (
                " (the MedIMeta v1.0 catalogue). For a dataset on disk, e.g. one written by "
                "'torchcross medimeta convert', give the folder that holds it: "
                f"torchcross medimeta info {args.dataset} --data-path DIR"
            )
        else:
            msg += f" (the datasets under {args.data_path})"
        raise ValueError(msg)
    d = cat.dataset(args.dataset)
    print(f"{d.id}: {d.name}")
    print(f"  domain: {d.domain}")
    for key in ("input_size", "splits_num_samples", "original_splits_num_samples", "license", "DOI"):
        if key in d.info:
            print(f"  {key}: {d.info[key]}")
    print("  tasks:")
    for t in d.tasks:
        classes = ", ".join(f"{k}: {v}" for k, v in t.classes.items())
        print(f"    {t.task_name} [{t.task_target.name}, {len(t.classes)}]: {classes}")
    print(f"  domain overlaps: {sorted(cat.overlapping(d.id, ['domain'])) or 'none'}")
    print(f"  subject overlaps: {sorted(cat.overlapping(d.id, ['subject'])) or 'none'}")
    sources = leave_one_out_sources(cat, d.id)
    print(f"  leave-one-out sources: {len(sources)} tasks from {sorted({s.dataset_id for s in sources})}")
    return 0


def verify_command(args: argparse.Namespace) -> int:
    """Validate one dataset folder, or every dataset under a data path; 1 if any has errors."""
    from torchcross.datasets.medimeta.validate import validate_all, validate_medimeta

    path = Path(args.path)
    if not path.is_dir():
        raise FileNotFoundError(f"{str(path)!r} is not a directory (give a dataset folder or a data path)")
    if os.path.lexists(path / "info.yaml"):
        reports = {path.name: validate_medimeta(path)}
    else:
        reports = validate_all(path)
        if not reports:
            raise ValueError(f"no dataset folder (with an info.yaml) under {str(path)!r}")
    for report in reports.values():
        print(report)
    bad = [k for k, r in reports.items() if not r.ok]
    print(
        f"\n{len(reports) - len(bad)} of {len(reports)} datasets valid" + (f"; invalid: {bad}" if bad else "")
    )
    return 1 if bad else 0


def convert_command(args: argparse.Namespace) -> int:
    """Convert a MedMNIST ``.npz`` file or a class-per-folder image tree into a MedIMeta folder."""
    import numpy as np

    from torchcross.cli.convert_description import given_description
    from torchcross.datasets.medimeta import write_medimeta

    source = Path(args.source)
    given = given_description(args)
    if args.format == "medmnist":
        from torchcross.datasets.medmnist import MEDMNIST_INFO, MedMNIST, medmnist_flag

        if not source.is_file():
            raise FileNotFoundError(f"MedMNIST file {str(source)!r} does not exist")
        flag = medmnist_flag(source)
        if given is None and flag not in MEDMNIST_INFO:
            raise ValueError(
                f"{source.name!r} is not one of the twelve 2D MedMNIST files (its name gives {flag!r}; "
                f"known: {', '.join(sorted(MEDMNIST_INFO))}); describe its task with --kind KIND "
                "--classes NAME [NAME ...] or --description FILE.json"
            )
        task_desc = None
        if given is not None:
            task_desc = given.description(f"{args.id or flag}/{args.task or given.task or flag}")
        parts = {s: MedMNIST(source, s, task_description=task_desc) for s in ("train", "val", "test")}
        desc = parts["train"].task_description
        images = np.concatenate([p.images for p in parts.values()])
        labels = np.concatenate([p.labels for p in parts.values()])
        sizes = [len(p) for p in parts.values()]
        splits = {
            s: np.arange(sum(sizes[:i]), sum(sizes[: i + 1])) for i, s in enumerate(("train", "val", "test"))
        }
        dataset_id = args.id or parts["train"].flag
        task_name = args.task or cast(str, desc.task_identifier).split("/")[-1]  # MedMNIST names its task
        domain = args.domain or cast(str, desc.domain_identifier)
    elif given is not None:
        raise ValueError(
            "--kind, --classes and --description apply to medmnist files; "
            "a folder's classes are its sub-folders"
        )
    else:
        from torchcross.datasets.generic import ImageFolderTaskSource

        if not source.is_dir():
            raise FileNotFoundError(f"image folder {str(source)!r} is not a directory")
        folder = ImageFolderTaskSource(source, image_size=args.image_size, channels=args.channels)
        desc, labels = folder.task_description, folder.labels
        images = np.stack(list(folder.images))
        rng = np.random.default_rng(args.seed)
        order = rng.permutation(len(labels))
        n_val, n_test = round(0.1 * len(order)), round(0.2 * len(order))
        splits = {
            "val": order[:n_val],
            "test": order[n_val : n_val + n_test],
            "train": order[n_val + n_test :],
        }
        dataset_id = args.id or source.name
        task_name = args.task or "class"
        domain = args.domain or ""
    path = write_medimeta(
        args.out,
        dataset_id,
        images,
        {task_name: (desc, labels)},
        splits,
        domain=domain,
        write_tiffs=args.tiffs,
        overwrite=args.overwrite,
    )
    print(f"wrote {Path(path).resolve()} ({len(labels)} images, task {task_name!r}, {desc.task_target.name})")
    return 0


def episodes_sample_command(args: argparse.Namespace) -> int:
    """Draw a fixed evaluation episode set of one task and save it as JSON."""
    from torchcross.data.metadataset import sample_episode_set
    from torchcross.protocol.data import load_catalogue, open_task

    ds, sep, task = args.task.partition("/")
    if not sep or not task:
        raise ValueError(f"--task must be 'dataset/task name', got {args.task!r}")
    cat, _ = load_catalogue(args.data_path)
    if ds not in cat:
        raise ValueError(f"unknown dataset {ds!r}; datasets under {args.data_path}: {', '.join(cat.ids)}")
    names = [t.task_name for t in cat.tasks(ds)]
    if task not in names:
        raise ValueError(f"dataset {ds!r} has no task {task!r}; its tasks are {names}")
    out = Path(args.out)
    if os.path.lexists(out) and not getattr(args, "force", False):
        raise FileExistsError(f"{str(out)!r} exists; pass --force to replace it, or choose another --out")
    if os.path.lexists(out) and not out.is_file():
        raise FileExistsError(f"{str(out)!r} exists and is not a file; choose another --out")
    if out.parent and not out.parent.exists():
        raise FileNotFoundError(f"folder {str(out.parent)!r} of --out does not exist")
    if not os.access(out.parent if str(out.parent) else ".", os.W_OK):
        raise PermissionError(f"cannot write {str(out)!r}: the folder is not writable")
    source = open_task(args.data_path, ds, task, args.split, channels=1, image_size=None)
    episodes = sample_episode_set(source, args.n_episodes, args.n_shot, args.n_query, seed=args.seed)
    episodes.save(out)
    print(
        f"wrote {len(episodes)} episodes of {args.task} ({args.split} split, seed {args.seed}) "
        f"to {out.resolve()}"
    )
    return 0


def run_command(args: argparse.Namespace) -> int:
    """Run the protocol of a config file (``--check``: only validate; ``--show-config``: only print it)."""
    import dataclasses

    from torchcross.evaluation.episodic import format_summary
    from torchcross.protocol.config import config_to_toml, load_config
    from torchcross.protocol.plan import check_protocol
    from torchcross.protocol.run import run_protocol

    config = load_config(args.config)
    run = config.run
    if args.out is not None:
        run = dataclasses.replace(run, out_dir=Path(args.out))
    if args.no_resume:
        run = dataclasses.replace(run, resume=False)
    if args.allow_existing_out:
        run = dataclasses.replace(run, allow_existing_out_dir=True)
    config = dataclasses.replace(config, run=run)
    if args.show_config:  # the config as it would run (overrides applied); no data or out_dir is looked at
        print(config_to_toml(config), end="")
        return 0
    if args.check:
        plan = check_protocol(config)
        print(plan.describe())
        print("config ok")
        return 0
    result = run_protocol(config, progress=True if args.progress else None)
    if result.rank > 0:  # under torchrun, rank 0 reports
        return 0
    print()
    print(format_summary(result.summary).to_markdown())
    for name, path in result.files.items():
        print(f"{name}: {Path(path).resolve()}")
    return 0
