"""The cross-domain few-shot protocol of the MedIMeta paper, end to end, on any meta-dataset.

For each target dataset: pick the source tasks (leave-one-out: every task of every
dataset with no domain or subject overlap), train each method on them, and evaluate it
on fixed episodes of each target task:

* ``IM-PT``: no source training; fine-tune the ImageNet backbone with a new zero head per
  episode (``"scratch"``: the same from a seeded random initialisation);
* ``mm-PT``: multi-domain multi-task pre-training (each update: a batch of one source
  task drawn in proportion to size, through that task's own head; early stopping on
  validation AUROC), then fine-tune as IM-PT;
* ``mm-MAML``: MAML over source episodes of all kinds, random shots and class subsets,
  with a zero-initialised head per task (early stopping); then fine-tune as IM-PT;
* any other method of :mod:`torchcross.protocol.registry` (ProtoNet, ANIL, FOMAML,
  Meta-SGD, linear probe, your own), and ``"supervised"``: the fully supervised baseline
  per target task (train split, validation early stopping, test AUROC with a bootstrap
  interval).

Methods are scored on the same episodes, so ``paired.csv`` compares them pairwise
(:func:`~torchcross.evaluation.paired.paired_comparisons`); with ``[run] seeds`` every
method is trained once per seed and the between-seed spread is reported beside the
episode interval.

:func:`check_protocol` validates everything (paths, names, output folder, weights)
before any training; :func:`run_protocol` runs it, writes episodes, checkpoints and
results into ``run.out_dir`` and resumes from them when started again.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from torchcross.evaluation.episodic import evaluate, format_summary, summarize
from torchcross.evaluation.paired import paired_comparisons, seed_spread
from torchcross.evaluation.results import ResultsTable
from torchcross.protocol.config import ProtocolConfig, config_to_dict
from torchcross.protocol.data import TargetPlan, load_catalogue, open_task, plan_targets
from torchcross.protocol.methods import (
    evaluation_learner,
    method_context,
    method_fingerprint,
    resolve_methods,
    train_method,
)
from torchcross.protocol.registry import get_method
from torchcross.protocol.training import atomic_write

__all__ = ["ProtocolPlan", "ProtocolResult", "check_protocol", "run_protocol"]

Log = Callable[[str], None]


@dataclass(frozen=True)
class ProtocolPlan:
    """What a run will do, resolved and checked: targets, sources, input shape, device."""

    config: ProtocolConfig
    targets: tuple[TargetPlan, ...]
    in_channels: int
    image_size: int
    device: torch.device
    problems: dict[str, str] = field(default_factory=dict)
    methods: tuple[str, ...] = ()

    def describe(self) -> str:
        """A human-readable summary of the plan."""
        lines = [
            f"data root: {self.config.data.root}",
            f"methods: {', '.join(self.methods or self.config.evaluation.methods)}; backbone: "
            f"{self.config.backbone.name} ({self.config.backbone.weights} weights) "
            f"(input {self.in_channels}x{self.image_size}x{self.image_size}, device {self.device})",
        ]
        for t in self.targets:
            lines.append(
                f"target {t.dataset_id}: tasks {list(t.tasks)}; {len(t.sources)} source tasks from "
                f"{sorted({s[0] for s in t.sources})}; left out: {list(t.excluded)}"
            )
        return "\n".join(lines)


@dataclass
class ProtocolResult:
    """The outcome of a run: per-episode records, the summary, written files, wall time."""

    episodes: ResultsTable
    summary: ResultsTable
    files: dict[str, Path]
    seconds: float
    plan: ProtocolPlan
    paired: ResultsTable | None = None
    supervised: ResultsTable | None = None


def _check_out_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".torchcross-write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise PermissionError(
            f"output folder {str(out_dir)!r} is not writable ({exc.strerror or exc}); "
            "choose another [run] out_dir"
        ) from None


def _check_device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"[run] device {name!r} is not a torch device: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"[run] device {name!r} asked for CUDA, which is not available here; use 'cpu'")
    return device


def check_protocol(config: ProtocolConfig) -> ProtocolPlan:
    """Validate a config against the data and the machine before anything is trained.

    Checks the data root, target and source names, that every needed task opens on its
    split, the backbone (and its weights file), the plot dependency, the device and
    that the output folder is writable.

    Raises:
        FileNotFoundError: a missing data root or weights file.
        ValueError: unknown names (listing what exists), a missing split, mixed image
            sizes without ``[data] image_size``, or an unusable device.
        PermissionError: an unwritable output folder.
        ImportError: a missing optional dependency (naming the extra).
    """
    if not isinstance(config, ProtocolConfig):
        raise TypeError(f"config must be a ProtocolConfig (see load_config), got {type(config).__name__}")
    catalogue, problems = load_catalogue(config.data.root)
    targets = plan_targets(catalogue, config.data.targets, config.data.sources, config.data.source_tasks)
    methods = resolve_methods(config)
    involved = {t.dataset_id for t in targets} | {s[0] for t in targets for s in t.sources}
    sizes = {tuple(catalogue.dataset(d).info.get("input_size", (0, 0, 0))) for d in involved}
    channels = {s[0] for s in sizes}
    image_size = config.data.image_size
    if image_size is None:
        hw = {(s[1], s[2]) for s in sizes}
        if len(hw) != 1 or len({*next(iter(hw))}) != 1:
            raise ValueError(
                f"the datasets involved have image sizes {sorted(hw)}; "
                "set [data] image_size to resize them all"
            )
        image_size = int(next(iter(hw))[0])
    backbone = config.backbone
    in_channels = 3 if backbone.name.startswith("resnet") or 3 in channels else 1
    from torchcross.protocol.backbone import build_backbone

    # torchvision, and the weights (read, or fetched into torch's cache, now rather than after training)
    weights = "random" if methods == ("scratch",) else backbone.weights
    build_backbone(backbone.name, in_channels, image_size, weights=weights, hidden=backbone.hidden)
    trains = [m for m in methods if get_method(m).train is not None or get_method(m).per_task]
    if trains and config.augmentation.enabled:
        from torchcross.protocol.augment import build_augmentation

        build_augmentation(config.augmentation, image_size)
    if config.run.plot:
        from torchcross.evaluation.plotting import _require_matplotlib

        try:
            _require_matplotlib()
        except ImportError as exc:
            raise ImportError(f"{exc}; or set [run] plot = false (torchcross demo --no-plot)") from exc
    device = _check_device(config.run.device)
    source_splits = set()
    if "mm-PT" in methods:
        source_splits.add(config.data.source_split or "train")
    if any(m in methods for m in ("mm-MAML", "FOMAML", "ANIL", "Meta-SGD", "ProtoNet")):
        source_splits.add(config.data.source_split or "all")
    target_splits = {config.data.target_split} | (
        {"train", "val", "test"} if "supervised" in methods else set()
    )
    for t in targets:  # open every task once: missing splits or files fail now, not after training
        for task in t.tasks:
            for split in sorted(target_splits):
                _open(config, t.dataset_id, task, split, in_channels, image_size)
        for ds, task in t.sources:
            for split in sorted(source_splits):
                _open(config, ds, task, split, in_channels, image_size)
    _check_out_dir(Path(config.run.out_dir))
    return ProtocolPlan(config, tuple(targets), in_channels, image_size, device, problems, methods)


def _open(config: ProtocolConfig, ds: str, task: str, split: str, channels: int, size: int) -> Any:
    try:
        return open_task(
            config.data.root,
            ds,
            task,
            split,
            channels=channels,
            image_size=size,
            normalize=config.data.normalize,
        )
    except (ValueError, OSError) as exc:
        raise ValueError(f"cannot open task {ds}/{task} (split {split!r}): {exc}") from exc


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _episode_set(plan: ProtocolPlan, source: Any, ds: str, task: str, log: Log) -> Any:
    from torchcross.data.metadataset import EpisodeSet, sample_episode_set

    ev, run = plan.config.evaluation, plan.config.run
    path = Path(run.out_dir) / "episodes" / _safe(ds) / f"{_safe(task)}.json"
    if path.is_file() and run.resume:
        episodes = EpisodeSet.load(path, task_source=source)
        wanted = {
            "seed": run.seed,
            "length": ev.n_episodes,
            "filter_classes_min_samples": plan.config.data.min_class_size,
        }
        got = {k: episodes.sampling.get(k) for k in wanted}
        shots = (
            episodes.sampling.get("n_support_samples_per_class"),
            episodes.sampling.get("n_query_samples_per_class"),
        )
        if got == wanted and shots == (ev.n_shot, ev.n_query):
            return episodes
        log(f"episodes in {path} were drawn with other settings; drawing them again")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        episodes = sample_episode_set(
            source,
            ev.n_episodes,
            ev.n_shot,
            ev.n_query,
            seed=run.seed,
            filter_classes_min_samples=plan.config.data.min_class_size,
        )
    for w in caught:
        log(f"target {ds}/{task}: {w.message}")
    path.parent.mkdir(parents=True, exist_ok=True)
    episodes.save(path)
    return episodes


def _context(
    plan: ProtocolPlan, target: TargetPlan, method: str, seed: int, log: Log, progress: bool | None
) -> Any:
    return method_context(
        plan.config,
        target,
        method,
        seed,
        in_channels=plan.in_channels,
        image_size=plan.image_size,
        device=plan.device,
        log=log,
        progress=progress,
    )


def _done_file(plan: ProtocolPlan, target: TargetPlan, method: str, seed: int) -> Path:
    folder = Path(plan.config.run.out_dir) / "evaluations"
    if plan.config.run.seeds is not None:
        folder = folder / f"seed-{seed}"
    return folder / _safe(target.dataset_id) / f"{_safe(method)}.json"


def _evaluate_method(
    plan: ProtocolPlan,
    target: TargetPlan,
    method: str,
    seed: int,
    sources: dict[str, Any],
    episode_sets: dict[str, Any],
    log: Log,
    progress: bool | None,
) -> list[dict[str, Any]]:
    config = plan.config
    ctx = _context(plan, target, method, seed, log, progress)
    fingerprint = method_fingerprint(ctx)
    done_file = _done_file(plan, target, method, seed)
    if config.run.resume and done_file.is_file():
        saved = json.loads(done_file.read_text(encoding="utf-8"))
        if saved.get("fingerprint") == fingerprint:
            log(f"[{target.dataset_id}] {method}: reusing finished evaluation from {done_file}")
            return saved["records"]
    # tasks evaluated by an earlier run that stopped part-way (same fingerprint)
    partial_file = done_file.with_name(f"{_safe(method)}.partial.json")
    finished: dict[str, list[dict[str, Any]]] = {}
    if config.run.resume and partial_file.is_file():
        saved = json.loads(partial_file.read_text(encoding="utf-8"))
        if saved.get("fingerprint") == fingerprint:
            finished = saved["tasks"]
    start = time.perf_counter()
    per_task = get_method(method).per_task
    learner = None
    if not per_task:
        learner = evaluation_learner(ctx, train_method(ctx))
    train_seconds = time.perf_counter() - start
    records: list[dict[str, Any]] = []
    for task in target.tasks:
        if task in finished:
            log(f"[{target.dataset_id}] {method} on {task!r}: reusing its evaluation from {partial_file}")
            records += finished[task]
            continue
        if per_task:
            from torchcross.protocol.supervised import train_and_test

            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                task_records = [train_and_test(ctx, task)]
        else:
            episodes = episode_sets[task].as_dataset(sources[task])
            result = evaluate(
                learner,
                episodes,
                method=method,
                target=f"{target.dataset_id}/{task}",
                device=plan.device,
                progress=progress,
                confidence=config.evaluation.confidence,
                batch_size=config.evaluation.batch_size,
            )
            s = result.summary()["auroc"]
            log(
                f"[{target.dataset_id}] {method} on {task!r}: AUROC {s.mean:.4f} ± {s.half_width:.4f} "
                f"({result.seconds:.1f} s)"
            )
            task_records = result.records
            for r in task_records:
                r["dataset"] = target.dataset_id
                r["seed"] = seed
                r["train_seconds"] = round(train_seconds, 3)
        records += task_records
        finished[task] = task_records
        _write_json(partial_file, {"fingerprint": fingerprint, "tasks": finished})
    _write_json(done_file, {"fingerprint": fingerprint, "records": records})
    partial_file.unlink(missing_ok=True)
    return records


def _write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON in one rename (see :func:`atomic_write`)."""
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, default=str), encoding="utf-8"))


def run_protocol(
    config: ProtocolConfig, *, progress: bool | None = None, log: Log | None = print
) -> ProtocolResult:
    """Run the protocol and write its results into ``config.run.out_dir``.

    Writes ``episodes.csv`` (one row per method, target task and episode),
    ``results.csv`` (mean, std and confidence interval of every metric per method and
    target), ``results.md`` (the same, compact: ``mean ± half-width``), ``results.json``
    (both tables, the resolved config, the plan and the wall time) and ``auroc.png``
    (with ``[run] plot``), plus ``episodes/`` (the fixed episode sets), ``checkpoints/``
    and ``evaluations/`` used to resume (per method, and per target task while a
    method's evaluation is under way).

    Args:
        config: see :mod:`torchcross.protocol.config`.
        progress: tqdm progress bars; ``None`` shows them only on a terminal.
        log: receives one line per step (``None``: silent).

    Raises:
        as :func:`check_protocol`, before any training.
    """
    say: Log = log if log is not None else (lambda _msg: None)
    start = time.perf_counter()
    plan = check_protocol(config)
    say(plan.describe())
    for folder, problem in plan.problems.items():
        say(f"skipped unreadable dataset folder {folder}: {problem}")
    out = Path(config.run.out_dir)
    threads = torch.get_num_threads()
    if config.run.num_threads is not None:
        torch.set_num_threads(config.run.num_threads)
    records: list[dict[str, Any]] = []
    supervised: list[dict[str, Any]] = []
    try:
        for target in plan.targets:
            sources = {
                task: _open(
                    config,
                    target.dataset_id,
                    task,
                    config.data.target_split,
                    plan.in_channels,
                    plan.image_size,
                )
                for task in target.tasks
            }
            episode_sets = {
                task: _episode_set(plan, sources[task], target.dataset_id, task, say) for task in target.tasks
            }
            for seed in config.training_seeds:
                for method in plan.methods:
                    out_records = _evaluate_method(
                        plan, target, method, seed, sources, episode_sets, say, progress
                    )
                    (supervised if get_method(method).per_task else records).extend(out_records)
    finally:
        torch.set_num_threads(threads)
    episodes = ResultsTable(records)
    summary, paired = _summaries(plan, episodes, ResultsTable(supervised))
    seconds = time.perf_counter() - start
    sup_table = ResultsTable(supervised) if supervised else None
    files = _write_results(plan, episodes, summary, seconds, paired, sup_table)
    say(f"results written to {out} ({seconds:.1f} s)")
    return ProtocolResult(episodes, summary, files, seconds, plan, paired, sup_table)


def _seed_mean(episodes: ResultsTable, metrics: tuple[str, ...]) -> ResultsTable:
    """One row per method, target and episode: each metric averaged over the training seeds."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in episodes:
        groups.setdefault((row["method"], row["target"], row["task_target"], row["episode"]), []).append(row)
    out = []
    for (method, target, kind, episode), rows in groups.items():
        row = {"method": method, "target": target, "task_target": kind, "episode": episode}
        for m in metrics:
            values = [float("nan") if r[m] is None else r[m] for r in rows]
            row[m] = sum(values) / len(values)
        out.append(row)
    return ResultsTable(out)


def _summaries(
    plan: ProtocolPlan, episodes: ResultsTable, supervised: ResultsTable
) -> tuple[ResultsTable, ResultsTable | None]:
    """The summary (episodic methods, then supervised rows) and the paired comparisons."""
    from torchcross.evaluation.episodic import METRICS

    confidence = plan.config.evaluation.confidence
    by = ("method", "target", "task_target")
    several = len(plan.config.training_seeds) > 1
    pooled = _seed_mean(episodes, METRICS) if several and len(episodes) else episodes
    summary = summarize(pooled, by=by, confidence=confidence)
    rows = summary.to_records()
    if several and len(episodes):
        spread = {tuple(r[b] for b in by): r for r in seed_spread(episodes, "auroc", by, confidence)}
        for r in rows:
            s = spread[tuple(r[b] for b in by)]
            r["n_seeds"], r["auroc_seed_std"] = s["n_seeds"], s["auroc_seed_std"]
    for r in supervised:
        row = {**{b: r[b] for b in by}, "n_episodes": 0}
        for m in METRICS:
            row[f"{m}_mean"] = r.get(m, float("nan"))
            row[f"{m}_std"] = float("nan")
            row[f"{m}_ci_low"] = r.get(f"{m}_ci_low", float("nan"))
            row[f"{m}_ci_high"] = r.get(f"{m}_ci_high", float("nan"))
        if several:
            row["n_seeds"], row["auroc_seed_std"] = 1, float("nan")
        row["seed"] = r["seed"]
        rows.append(row)
    methods = {r["method"] for r in pooled} if len(pooled) else set()
    paired = None
    if len(methods) > 1:
        paired = paired_comparisons(pooled, "auroc", by=("target",), confidence=confidence)
    columns = (
        summary.columns
        + [c for c in ("n_seeds", "auroc_seed_std") if several]
        + (["seed"] if len(supervised) else [])
    )
    return ResultsTable(rows, columns=columns), paired


def _write_results(
    plan: ProtocolPlan,
    episodes: ResultsTable,
    summary: ResultsTable,
    seconds: float,
    paired: ResultsTable | None = None,
    supervised: ResultsTable | None = None,
) -> dict[str, Path]:
    from torchcross import __version__

    out = Path(plan.config.run.out_dir)
    files = {
        "episodes_csv": out / "episodes.csv",
        "results_csv": out / "results.csv",
        "results_md": out / "results.md",
        "results_json": out / "results.json",
    }
    episodes.to_csv(files["episodes_csv"])
    summary.to_csv(files["results_csv"])
    format_summary(summary).to_markdown(files["results_md"])
    if paired is not None:
        files["paired_csv"] = out / "paired.csv"
        paired.to_csv(files["paired_csv"])
    if supervised is not None:
        files["supervised_csv"] = out / "supervised.csv"
        supervised.to_csv(files["supervised_csv"])
    doc = {
        "format": "torchcross-protocol-results",
        "torchcross_version": __version__,
        "wall_time_s": round(seconds, 3),
        "config": config_to_dict(plan.config),
        "plan": [
            {
                "target": t.dataset_id,
                "tasks": list(t.tasks),
                "sources": [f"{d}/{n}" for d, n in t.sources],
                "excluded": list(t.excluded),
            }
            for t in plan.targets
        ],
        "methods": list(plan.methods),
        "summary": summary.to_records(),
        "paired": paired.to_records() if paired is not None else [],
        "supervised": supervised.to_records() if supervised is not None else [],
        "episodes": episodes.to_records(),
    }
    files["results_json"].write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    if plan.config.run.plot:
        from torchcross.evaluation.plotting import plot_metric

        ev = plan.config.evaluation
        files["plot"] = out / "auroc.png"
        plot_metric(
            summary,
            files["plot"],
            "auroc",
            title=f"{ev.n_shot}-shot AUROC (mean, {ev.confidence:.0%} CI)",
        )
    return files
