"""``torchcross demo``: the whole cross-domain few-shot protocol on real bundled data, no download.

The demo writes the handwritten-digits meta-dataset of `torchcross.cli.demo_data` (four MedIMeta-format
datasets, three imaging domains, tasks of all four kinds) and runs
[`torchcross.protocol.run.run_protocol()`][torchcross.protocol.run.run_protocol] on it with target dataset
``digits_scan_a``: leave-one-out selection drops ``digits_scan_b`` (same domain) and trains on the
negative-film and defocused datasets; scratch (the IM-PT baseline without ImageNet weights, which the demo
cannot download), mm-PT and mm-MAML are evaluated on 100 fixed 5-shot episodes of each of the target's four
tasks.

The demo keeps the paper's protocol (episodes from the whole dataset, proportional task
sampling, zero-initialised training heads, validation early stopping, random-shot MAML episodes,
mm-MAML evaluated by fine-tuning its backbone) and departs from the paper's defaults
only where its small data or the time limit (well under three minutes on two CPU cores)
demand; ``docs/demo.md`` lists each departure: a Conv4 backbone with 32 filters on 16x16
images from a seeded random initialisation; classes kept from 20 examples (the digit
datasets have about 45 per digit); no augmentation (a flipped digit is another shape);
a linear probe with batch statistics for adaptation; short first-order MAML, validated
on a few episodes per source task with its training's inner steps (the paper's 100 episodes
per task adapted with 32 steps would make the quick run's mm-MAML about three times slower).

Run ``python -m torchcross.cli.demo --docs docs`` (and again with ``--quick``) to
regenerate the documented output (`publish_docs()`); a test compares the quick
block with a fresh quick run.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torchcross.cli.stop import stopped_message
from torchcross.protocol.config import ProtocolConfig, config_from_dict

__all__ = ["DEMO_METHODS", "DEMO_TARGET", "demo_config", "main", "publish_docs", "run_demo"]

DEMO_TARGET = "digits_scan_a"
"""The demo's target dataset (all four of its tasks are evaluated)."""

DEMO_METHODS: tuple[str, ...] = ("scratch", "mm-PT", "mm-MAML")
"""The demo's methods: the paper's three, IM-PT as ``"scratch"`` (no ImageNet weights here)."""

_FULL: dict[str, dict[str, Any]] = {
    "data": {"min_class_size": 20, "target_tasks": "all"},  # every task kind of the target
    "evaluation": {"n_shot": 5, "n_query": 10, "n_episodes": 100},
    "backbone": {"name": "conv4", "hidden": 32, "weights": "random"},
    "augmentation": {"enabled": False},
    "pretrain": {
        "steps": 500,
        "batch_size": 32,
        "lr": 1e-3,
        "val_every": 100,
        "val_batches": 20,
        "patience": 2,
    },
    "maml": {
        "steps": 150,
        "meta_batch_size": 4,
        "inner_lr": 0.1,
        "inner_steps": 3,
        "first_order": True,
        "max_shot": 5,
        "n_query": 5,
        "val_every": 50,
        "val_episodes": 3,  # per source task (8 here)
        "val_inner_steps": 3,  # as its training
        "patience": 2,
    },
    "finetune": {"steps": 50, "lr": 0.05, "freeze_backbone": True, "batch_norm": "batch"},
}
_QUICK: dict[str, dict[str, Any]] = {
    "evaluation": {"n_episodes": 10},
    "pretrain": {"steps": 60, "val_every": 20, "val_batches": 5},
    "maml": {"steps": 15, "val_every": 5, "val_episodes": 1},
}


def demo_config(
    out_dir: str | Path,
    data_dir: str | Path | None = None,
    *,
    quick: bool = False,
    n_episodes: int | None = None,
    methods: Sequence[str] | None = None,
    targets: Sequence[str] | None = None,
    seed: int = 0,
    plot: bool = True,
    num_threads: int | str | None = "auto",
    device: str = "cpu",
    allow_existing_out_dir: bool = False,
) -> ProtocolConfig:
    """The demo's protocol configuration.

    Args:
        out_dir: where results go.
        data_dir: where the demo datasets are (default ``<out_dir>/data``).
        quick: a reduced run (10 episodes, short training) for tests and a first look.
        n_episodes: episodes per target task (overrides the default 100, or 10 with ``quick``).
        methods: method names (default `DEMO_METHODS`; any of
            [`method_names()`][torchcross.protocol.registry.method_names]).
        targets: dataset or ``"dataset/task"`` ids (default: every task of ``digits_scan_a``).
        seed: seeds data, weights, episodes and samplers.
        plot: write ``auroc.png``.
        num_threads: torch threads for the run: a count, or ``None`` to leave torch's
            setting. ``"auto"`` (the default) means one thread here: the trained models' last
            bits depend on the thread count, and with one thread the documented tables
            (docs/demo.md) are reproduced digit for digit on any machine.
        device: where training and evaluation run (``"cpu"``, ``"cuda"``).
        allow_existing_out_dir: write into an ``out_dir`` that torchcross did not create
            (``[run] allow_existing_out_dir``).

    Examples:
        >>> cfg = demo_config("out", quick=True)
        >>> cfg.evaluation.n_episodes, cfg.data.targets, str(cfg.data.root)
        (10, ('digits_scan_a',), 'out/data')
    """
    raw: dict[str, dict[str, Any]] = {k: dict(v) for k, v in _FULL.items()}
    if quick:
        for section, values in _QUICK.items():
            raw[section].update(values)
    if num_threads == "auto":
        num_threads = 1
    if n_episodes is not None:
        raw["evaluation"]["n_episodes"] = n_episodes
    raw["evaluation"]["methods"] = list(methods) if methods is not None else list(DEMO_METHODS)
    raw["data"].update(
        root=str(data_dir) if data_dir is not None else str(Path(out_dir) / "data"),
        targets=list(targets) if targets is not None else [DEMO_TARGET],
    )
    raw["run"] = {
        "out_dir": str(out_dir),
        "seed": seed,
        "plot": plot,
        "num_threads": num_threads,
        "device": device,
        "allow_existing_out_dir": allow_existing_out_dir,
    }
    return config_from_dict(raw)


def run_demo(
    out_dir: str | Path | None = None,
    data_dir: str | Path | None = None,
    *,
    quick: bool = False,
    n_episodes: int | None = None,
    methods: Sequence[str] | None = None,
    targets: Sequence[str] | None = None,
    seed: int = 0,
    plot: bool = True,
    num_threads: int | str | None = "auto",
    device: str = "cpu",
    allow_existing_out_dir: bool = False,
    progress: bool | None = None,
    log: Any = print,
) -> Any:
    """Write the demo data (unless present) and run the protocol on it; see `demo_config()`.

    ``out_dir`` defaults to ``torchcross-demo`` (``torchcross-demo-quick`` with ``quick``: the two
    runs train with other settings, so each keeps its own checkpoints and resumes on its own).
    A folder that torchcross did not create is refused before any data is written, unless
    ``allow_existing_out_dir`` (see [`check_out_dir()`][torchcross.protocol.plan.check_out_dir]).

    Returns:
        the [`ProtocolResult`][torchcross.protocol.run.ProtocolResult].
    """
    from torchcross.cli.demo_data import write_demo_medimeta
    from torchcross.protocol.plan import check_out_dir, check_protocol
    from torchcross.protocol.run import run_protocol

    if out_dir is None:
        out_dir = "torchcross-demo-quick" if quick else "torchcross-demo"
    config = demo_config(
        out_dir,
        data_dir,
        quick=quick,
        n_episodes=n_episodes,
        methods=methods,
        targets=targets,
        seed=seed,
        plot=plot,
        num_threads=num_threads,
        device=device,
        allow_existing_out_dir=allow_existing_out_dir,
    )
    check_out_dir(Path(out_dir), allow_existing=allow_existing_out_dir)
    write_demo_medimeta(Path(str(config.data.root)), size=16, seed=seed)
    check_protocol(config)  # names and paths are checked before any training
    return run_protocol(config, progress=progress, log=log)


_MARKERS = {
    False: ("<!-- demo-output:start -->", "<!-- demo-output:end -->"),
    True: ("<!-- demo-quick-output:start -->", "<!-- demo-quick-output:end -->"),
}


def output_table(result: Any) -> str:
    """The Markdown table a demo run prints (and the docs show), then the line that says what its
    numbers are ("±" is the half-width of the Student-t interval over the episodes, ...)."""
    from torchcross.protocol.report import format_results

    return format_results(result.summary, ("auroc", "accuracy"), result.plan.config.evaluation.confidence)


_PATH_OPTIONS = ("--out", "--data", "--docs")


def publish_docs(
    result: Any,
    docs_dir: str | Path,
    seconds: float,
    command: str,
    *,
    quick: bool = False,
    cpu_seconds: float | None = None,
) -> Path:
    """Write a demo run's table (and, for the full run, plot) into ``docs_dir/demo.md``.

    The full run replaces the block between ``<!-- demo-output:start -->`` and
    ``<!-- demo-output:end -->`` (table, command, wall time, plot) and copies
    ``results.csv``, ``results.md`` and ``auroc.png`` to ``assets/demo/``; the quick run
    replaces the block between ``<!-- demo-quick-output:start -->`` and
    ``<!-- demo-quick-output:end -->`` with its table only (what the tests compare).
    ``cpu_seconds`` (the process's CPU time) is shown beside the wall time: on a busy
    machine it is the better measure of the demo's cost.

    Raises:
        FileNotFoundError: if ``docs_dir/demo.md`` does not exist.
        ValueError: if it lacks the two markers.
    """
    import os
    import platform
    import shutil

    import torch

    from torchcross import __version__
    from torchcross.cli.docs_blocks import read_marked_page, replace_block

    start, end = _MARKERS[quick]
    docs = Path(docs_dir)
    page = docs / "demo.md"
    text = read_marked_page(page, start, end)
    if quick:
        lines = [start, "", f"Output of `{command}`:", "", output_table(result), "", end]
    else:
        assets = docs / "assets" / "demo"
        assets.mkdir(parents=True, exist_ok=True)
        for key, name in (
            ("results_csv", "results.csv"),
            ("results_md", "results.md"),
            ("plot", "auroc.png"),
        ):
            if key in result.files:
                shutil.copyfile(result.files[key], assets / name)
        threads = result.plan.config.run.num_threads
        threads = f"{threads} torch thread(s)" if isinstance(threads, int) else f"torch threads {threads!r}"
        lines = [
            start,
            "",
            f"Output of `{command}` (torchcross {__version__}, torch {torch.__version__}, Python "
            f"{platform.python_version()}, {threads}, "
            f"{os.cpu_count()} CPU cores visible):",
            "",
            output_table(result),
            "",
            f"Wall time: **{seconds:.1f} s**"
            + (f", CPU time {cpu_seconds:.1f} s" if cpu_seconds is not None else "")
            + f" (data, training of mm-PT and mm-MAML with validation, and {len(result.episodes)} evaluated "
            "episodes).",
            "",
            "![5-shot AUROC per method and target task, 95% confidence intervals](assets/demo/auroc.png)",
            "",
            end,
        ]
    return replace_block(page, text, start, end, lines)


def _threads_arg(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number of threads, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"the number of threads must be >= 1, got {value}")
    return value


def _parser(prog: str = "torchcross demo") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Run the MedIMeta cross-domain few-shot protocol (scratch, mm-PT, mm-MAML; 5-shot AUROC over "
            "fixed episodes with 95% confidence intervals) on a real image meta-dataset built from "
            "scikit-learn's bundled handwritten digits: four datasets, three imaging domains, tasks of all "
            "four kinds. Nothing is downloaded. Writes results.csv, results.json, results.md, episodes.csv "
            "and auroc.png into --out."
        ),
    )
    p.add_argument(
        "--out",
        default=None,
        help="output folder (default: torchcross-demo, or torchcross-demo-quick with --quick)",
    )
    p.add_argument("--data", default=None, help="folder for the demo datasets (default: OUT/data)")
    p.add_argument(
        "--allow-existing-out",
        action="store_true",
        help="write into an --out folder that torchcross did not create (its files are never replaced)",
    )
    p.add_argument("--quick", action="store_true", help="a reduced run: 10 episodes per task, short training")
    p.add_argument("--episodes", type=int, default=None, help="episodes per target task (default: 100)")
    p.add_argument(
        "--methods",
        nargs="+",
        default=None,
        metavar="METHOD",
        help=f"methods to run (default: {', '.join(DEMO_METHODS)}; any protocol method name)",
    )
    p.add_argument(
        "--targets",
        nargs="+",
        default=None,
        metavar="TARGET",
        help=f"target dataset or 'dataset/task' ids (default: {DEMO_TARGET})",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of data, weights and episodes (default: 0)")
    p.add_argument(
        "--threads",
        type=_threads_arg,
        default="auto",
        help="torch threads; 'auto' means 1, which reproduces the documented tables (default: %(default)s)",
    )
    p.add_argument("--device", default="cpu", help="torch device to train and evaluate on (default: cpu)")
    p.add_argument("--no-plot", action="store_true", help="do not draw auroc.png (no matplotlib needed)")
    p.add_argument("--progress", action="store_true", help="show progress bars even when not on a terminal")
    p.add_argument("--docs", default=None, help=argparse.SUPPRESS)  # maintainers: regenerate docs/demo.md
    return p


def main(argv: Sequence[str] | None = None, prog: str = "torchcross demo") -> int:
    """Command-line entry point (``torchcross demo`` and ``python -m torchcross.cli.demo``)."""
    args = _parser(prog).parse_args(argv)
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        result = run_demo(
            args.out,
            args.data,
            quick=args.quick,
            n_episodes=args.episodes,
            methods=args.methods,
            targets=args.targets,
            seed=args.seed,
            plot=not args.no_plot,
            num_threads=args.threads,
            device=args.device,
            allow_existing_out_dir=args.allow_existing_out,
            progress=True if args.progress else None,
        )
    except KeyboardInterrupt as exc:
        print(stopped_message(prog, exc), file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, ImportError) as exc:
        print(f"torchcross demo: error: {exc}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    print()
    print(output_table(result))
    print()
    for name, path in result.files.items():
        print(f"{name}: {Path(path).resolve()}")
    print(f"wall time: {seconds:.1f} s")
    if args.docs is not None:
        shown, skip = ["torchcross demo"], False
        for arg in argv if argv is not None else sys.argv[1:]:
            # folders are machine-specific: the page shows what changes the results
            if skip or arg.split("=")[0] in _PATH_OPTIONS:
                skip = arg in _PATH_OPTIONS
                continue
            shown.append(arg)
        cpu = time.process_time() - cpu_start
        page = publish_docs(result, args.docs, seconds, " ".join(shown), quick=args.quick, cpu_seconds=cpu)
        print(f"updated {page}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(prog="python -m torchcross.cli.demo"))
