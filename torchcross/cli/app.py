"""The ``torchcross`` command.

Sub-commands:

* ``torchcross demo``: the whole protocol on a real meta-dataset built from scikit-learn's
  bundled digits (no download);
* ``torchcross run CONFIG``: the protocol from a TOML or YAML config, on data on disk;
* ``torchcross medimeta list|info|verify|convert``: the catalogue, one dataset, the
  validator, the converter;
* ``torchcross episodes sample``: write a fixed evaluation episode set.

Only `argparse` is imported at start-up; each sub-command imports what it needs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from torchcross.cli.stop import stopped_message

__all__ = ["build_parser", "main"]

_EPILOG = """examples:
  torchcross demo                              # the protocol on bundled digits, about a minute
  torchcross medimeta list                     # the 19 MedIMeta datasets and their tasks
  torchcross medimeta info glaucoma            # one dataset, its overlaps and sources
  torchcross medimeta verify /data/medimeta    # check downloaded folders
  torchcross episodes sample --data-path /data/medimeta --task "glaucoma/Glaucoma suspect" --out eps.json
  torchcross run experiment.toml               # the protocol on real data (see docs/protocol.md)
  torchcross run experiment.toml --show-config # every setting it would run with, as TOML
"""


def _version() -> str:
    from torchcross import __version__

    return __version__


def _add_medimeta(sub: argparse._SubParsersAction) -> None:
    mm = sub.add_parser(
        "medimeta",
        help="MedIMeta catalogue, dataset details, validator and converter",
        description="Work with MedIMeta-format data: list the catalogue, show a dataset, validate "
        "folders, convert other data into the format.",
    )
    mms = mm.add_subparsers(dest="medimeta_command", metavar="COMMAND", required=True)
    p = mms.add_parser("list", help="list datasets and their tasks", description="List datasets and tasks.")
    p.add_argument("--data-path", help="list the datasets in this folder instead of the v1.0 catalogue")
    p.add_argument("--kind", help="only tasks of this kind (e.g. BINARY_CLASSIFICATION)")
    p = mms.add_parser("info", help="one dataset's details", description="Show one dataset's details.")
    p.add_argument("dataset", help="dataset id, e.g. glaucoma")
    p.add_argument("--data-path", help="read the dataset from this folder instead of the catalogue")
    p = mms.add_parser(
        "verify",
        help="validate dataset folders",
        description="Validate a dataset folder or every dataset in a folder.",
    )
    p.add_argument("path", help="a dataset folder (with info.yaml) or a folder of datasets")
    p = mms.add_parser(
        "convert",
        help="convert MedMNIST .npz or an image folder to MedIMeta format",
        description="Write a MedIMeta-format dataset folder from a MedMNIST .npz file (its own "
        "train/val/test splits) or a class-per-sub-folder image tree (a 70/10/20 train/val/test split "
        "drawn with --seed).",
    )
    p.add_argument("format", choices=["medmnist", "folder"], help="the input format")
    p.add_argument("source", help="the .npz file or the image folder")
    p.add_argument("--out", required=True, help="the MedIMeta data path to write into")
    p.add_argument("--id", help="dataset id (default: from the file or folder name)")
    p.add_argument("--task", help="task name (default: from the source)")
    p.add_argument("--domain", help="imaging domain (default: from the source)")
    p.add_argument("--image-size", type=int, default=None, help="folder: resize images to this size")
    p.add_argument("--channels", type=int, choices=[1, 3], default=3, help="folder: 1 (grey) or 3 (RGB)")
    p.add_argument("--seed", type=int, default=0, help="folder: seed of the 70/10/20 split")
    p.add_argument("--tiffs", action="store_true", help="also write images/NNNNNN.tiff")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder")
    p.add_argument(
        "--kind",
        help="medmnist: the task kind of a file that is not one of the twelve 2D MedMNIST datasets: "
        "binary, multiclass, multilabel or ordinal (or a full name such as ORDINAL_REGRESSION); "
        "with --classes",
    )
    p.add_argument(
        "--classes",
        nargs="+",
        metavar="NAME",
        help="medmnist: the class (or label) names, in label order 0, 1, ...; with --kind",
    )
    p.add_argument(
        "--description",
        metavar="FILE",
        help="medmnist: instead of --kind/--classes, a .json or .yaml file "
        '{"kind": ..., "classes": [names] or {key: name}, "task": ..., "domain": ...} '
        "(task and domain optional)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``torchcross`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="torchcross",
        description="Cross-domain few-shot learning: run the MedIMeta protocol (IM-PT, mm-PT, mm-MAML; "
        "5-shot AUROC with confidence intervals) on bundled demo data or on MedIMeta-format data on disk.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"torchcross {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser(
        "demo",
        help="run the protocol on bundled handwritten digits (no download)",
        add_help=False,
    )
    p = sub.add_parser(
        "run",
        help="run the protocol from a TOML/YAML config",
        description="Run the cross-domain few-shot protocol from a config file (sections [data], "
        "[evaluation], [backbone], [pretrain], [maml], [finetune], [run]; see docs/protocol.md). "
        "Names, paths and the output folder are checked before any training.",
    )
    p.add_argument("config", help="a .toml, .yaml or .yml file")
    p.add_argument("--out", help="override [run] out_dir")
    p.add_argument(
        "--allow-existing-out",
        action="store_true",
        help="write into an out_dir that torchcross did not create (set [run] allow_existing_out_dir)",
    )
    p.add_argument("--no-resume", action="store_true", help="ignore checkpoints and finished evaluations")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--check", action="store_true", help="validate the config and data, print the plan, stop"
    )
    mode.add_argument(
        "--show-config",
        action="store_true",
        help="print the fully resolved config as TOML (every section and key, defaults included; reloadable) "
        "and stop, without checking the data or the output folder",
    )
    p.add_argument("--progress", action="store_true", help="show progress bars even when not on a terminal")
    _add_medimeta(sub)
    ep = sub.add_parser("episodes", help="fixed evaluation episode sets", description="Fixed episode sets.")
    eps = ep.add_subparsers(dest="episodes_command", metavar="COMMAND", required=True)
    p = eps.add_parser(
        "sample",
        help="draw and save a fixed episode set",
        description="Draw N fixed few-shot episodes of one task and save them as JSON (with a checksum of "
        "the labels, so a changed dataset is detected when they are loaded).",
    )
    p.add_argument("--data-path", required=True, help="folder of MedIMeta-format datasets")
    p.add_argument("--task", required=True, help="'dataset/task name', e.g. 'glaucoma/Glaucoma suspect'")
    p.add_argument("--out", required=True, help="the JSON file to write")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="(default: %(default)s)")
    p.add_argument("--n-episodes", type=int, default=100, help="(default: %(default)s)")
    p.add_argument("--n-shot", type=int, default=5, help="support examples per class (default: %(default)s)")
    p.add_argument("--n-query", type=int, default=10, help="query examples per class (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``torchcross`` command; returns the exit status (2 for usage and input errors)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "demo":
        from torchcross.cli.demo import main as demo_main

        return demo_main(argv[1:], prog="torchcross demo")
    args = build_parser().parse_args(argv)
    from torchcross.cli import commands

    handlers = {
        ("run", None): commands.run_command,
        ("medimeta", "list"): commands.list_command,
        ("medimeta", "info"): commands.info_command,
        ("medimeta", "verify"): commands.verify_command,
        ("medimeta", "convert"): commands.convert_command,
        ("episodes", "sample"): commands.episodes_sample_command,
    }
    sub = getattr(args, f"{args.command}_command", None)
    try:
        return handlers[(args.command, sub)](args)
    except KeyboardInterrupt as exc:
        rerun = None
        if args.command == "run":
            rerun = "without --no-resume" if args.no_resume else "the same command"
        print(stopped_message(f"torchcross {args.command}", exc, rerun), file=sys.stderr)
        return 130
    except (ValueError, TypeError, KeyError, OSError, ImportError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"torchcross {args.command}: error: {message}", file=sys.stderr)
        return 2
