"""The cross-domain few-shot protocol of the MedIMeta paper, end to end, on any meta-dataset.

For each target dataset: pick the source tasks (leave-one-out: every task of every
dataset with no domain or subject overlap), train each method on them, and evaluate it
on fixed episodes of each target task:

* ``IM-PT``: no source training; fine-tune the ImageNet backbone with a new head per
  episode (``[finetune] head_init``; ``"scratch"``: the same from a seeded random initialisation);
* ``mm-PT``: multi-domain multi-task pre-training (each update: a batch of one source
  task drawn in proportion to size, through that task's own head, its loss scaled so that
  every task weighs the same; early stopping on the validation AUROC of each epoch), then
  fine-tune as IM-PT;
* ``mm-MAML``: MAML over source episodes of all kinds, random shots and class subsets,
  with a zero-initialised head per task (early stopping); then fine-tune as IM-PT;
* any other method of [`torchcross.protocol.registry`][torchcross.protocol.registry] (ProtoNet, ANIL, FOMAML,
  Meta-SGD, linear probe, your own), and ``"supervised"``: the fully supervised baseline
  per target task (train split, validation early stopping, test AUROC with a bootstrap
  interval).

Methods are scored on the same episodes, so ``paired.csv`` compares them pairwise
([`paired_comparisons()`][torchcross.evaluation.paired.paired_comparisons]); with ``[run] seeds`` every
method is trained once per seed and the between-seed spread is reported beside the
episode interval.

[`check_protocol()`][check_protocol] validates everything (paths, names, output
folder, weights) before any training; [`run_protocol()`][run_protocol] runs it, writes
episodes, checkpoints and results into ``run.out_dir`` and resumes from them when started again.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from torchcross._io import atomic_write, lock_folder, remove_stale_temp_files, safe_file_name
from torchcross._threads import OversubscriptionWarning, available_cpus, configure_threads
from torchcross.evaluation.episodic import EvaluationResult, evaluate
from torchcross.evaluation.loggers import MetricsLogger
from torchcross.evaluation.results import ResultsTable
from torchcross.learners.precision import mixed_precision
from torchcross.protocol.config import ProtocolConfig
from torchcross.protocol.data import TargetPlan, draw_episodes
from torchcross.protocol.fingerprint import EPISODE_READS, fingerprint
from torchcross.protocol.methods import (
    evaluation_learner,
    method_context,
    method_fingerprint,
    train_method,
)
from torchcross.protocol.plan import RESULT_FILES, RUN_FOLDERS, ProtocolPlan, check_protocol, open_split
from torchcross.protocol.ranks import EpisodeShare, Team, joined
from torchcross.protocol.registry import get_method
from torchcross.protocol.report import summarize_results, write_results
from torchcross.protocol.selection import draw_selection_episodes, selection_applies, tuned_learner

__all__ = ["ProtocolPlan", "ProtocolResult", "check_protocol", "run_protocol"]

Log = Callable[[str], None]


@dataclass
class ProtocolResult:
    """The outcome of a run: per-episode records, the summary, written files, wall time.

    Under ``torchrun`` every rank returns the same tables; ``rank`` says which rank this is
    (only rank 0 wrote ``files``).
    """

    episodes: ResultsTable
    summary: ResultsTable
    files: dict[str, Path]
    seconds: float
    plan: ProtocolPlan
    paired: ResultsTable | None = None
    supervised: ResultsTable | None = None
    rank: int = 0


def _shot_folder(config: ProtocolConfig, n_shot: int) -> str | None:
    """``"shot-<k>"``, the folder of one shot count's files with ``[evaluation] shots`` (else ``None``)."""
    return f"shot-{n_shot}" if config.evaluation.shots is not None else None


def _episode_path(plan: ProtocolPlan, ds: str, task: str, n_shot: int | None = None) -> Path:
    folder = Path(plan.config.run.out_dir) / "episodes"
    shot = _shot_folder(plan.config, n_shot if n_shot is not None else plan.config.evaluation.n_shot)
    if shot is not None:
        folder = folder / shot
    return folder / safe_file_name(ds) / f"{safe_file_name(task)}.json"


def _shared_episode_set(
    team: Team, plan: ProtocolPlan, source: Any, ds: str, task: str, log: Log, n_shot: int | None = None
) -> Any:
    """Rank 0 loads or draws (and writes) the episode set; the other ranks then load its file."""
    from torchcross.data.metadataset import EpisodeSet

    kept: dict[str, Any] = {}

    def draw() -> None:
        kept["set"] = _episode_set(plan, source, ds, task, log, n_shot)

    team.leader(draw)
    return kept["set"] if team.is_leader else EpisodeSet.load(_episode_path(plan, ds, task, n_shot), source)


def _episode_set(
    plan: ProtocolPlan, source: Any, ds: str, task: str, log: Log, n_shot: int | None = None
) -> Any:
    """The target task's episodes, drawn from the run's seed; the file is checked against them.

    Episodes are a pure function of the seed and the labels, so they are always drawn
    (indices only: cheap) and a stored file is only compared with them: one that differs
    (edited, damaged, drawn with other settings) is reported and rewritten, never used.
    The set records the fingerprint of the settings it is drawn with
    ([`EPISODE_READS`][EPISODE_READS]) in its ``sampling``. ``n_shot``: one shot count of
    ``[evaluation] shots`` (``None``: ``[evaluation] n_shot``), drawn and fingerprinted as a run with
    ``n_shot`` alone (``ProtocolConfig.at_shot()``).
    """
    from torchcross.data.metadataset import EpisodeSet

    path = _episode_path(plan, ds, task, n_shot)
    config = plan.config.at_shot(n_shot) if n_shot is not None else plan.config
    ev, run = config.evaluation, config.run
    stamp = fingerprint(config, EPISODE_READS, target=f"{ds}/{task}")
    episodes = draw_episodes(config, source, ev.n_episodes, run.seed, log, f"target {ds}/{task}")
    episodes = dataclasses.replace(episodes, sampling={**episodes.sampling, "fingerprint": stamp})
    if path.is_file() and run.resume:
        try:
            difference = EpisodeSet.load(path, task_source=source).first_difference(episodes)
        except (ValueError, OSError) as exc:
            log(f"warning: {exc}; drawing the episodes again (same seed, same episodes)")
        else:
            if difference is None:
                return episodes
            log(
                f"warning: episodes in {path}: {difference} differs from what seed {run.seed} draws "
                "(edited, damaged or drawn with other settings); drawing the episodes again and "
                "rewriting the file"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    episodes.save(path)
    return episodes


def _context(
    plan: ProtocolPlan,
    target: TargetPlan,
    method: str,
    seed: int,
    log: Log,
    progress: bool | None,
    logger: MetricsLogger | None = None,
) -> Any:
    ctx = method_context(
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
    return dataclasses.replace(ctx, logger=logger) if logger is not None else ctx


def _curve_logger(plan: ProtocolPlan, dataset_id: str, method: str, seed: int) -> MetricsLogger | None:
    """The training-curve logger of ``[run] logger`` for a method that trains on sources (else ``None``)."""
    config = plan.config
    spec = get_method(method)
    if spec.train is None or spec.per_task or config.run.logger == "none":
        return None
    from torchcross.evaluation.loggers import CSVLogger, TensorBoardLogger

    folder = Path(config.run.out_dir) / "curves"
    if config.run.seeds is not None:
        folder = folder / f"seed-{seed}"
    folder = folder / safe_file_name(dataset_id)
    if config.run.logger == "tensorboard":
        return TensorBoardLogger(folder / safe_file_name(method))
    return CSVLogger(folder / f"{safe_file_name(method)}.csv", resume=config.run.resume)


def _done_file(
    plan: ProtocolPlan, target: TargetPlan, method: str, seed: int, shot: str | None = None
) -> Path:
    folder = Path(plan.config.run.out_dir) / "evaluations"
    if plan.config.run.seeds is not None:
        folder = folder / f"seed-{seed}"
    if shot is not None:  # one shot count of [evaluation] shots
        folder = folder / shot
    return folder / safe_file_name(target.dataset_id) / f"{safe_file_name(method)}.json"


def _records_problem(
    records: Any, plan: ProtocolPlan, target: TargetPlan, method: str, seed: int, tasks: Sequence[str]
) -> str | None:
    """What is wrong with saved records of ``method`` on ``tasks`` of ``target`` (``None``: all there)."""
    per_task = get_method(method).per_task
    n = 1 if per_task else plan.config.evaluation.n_episodes
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        return "the records are not a list of objects"
    for task in tasks:
        name = f"{target.dataset_id}/{task}"
        mine = [r for r in records if r.get("target") == name]
        if any(r.get("method") != method for r in mine):
            return f"records of {name} name another method than {method!r}"
        if not all(isinstance(r.get("auroc"), (int, float, type(None))) for r in mine):
            return f"a record of {name} has no AUROC"
        if not per_task and any(r.get("seed") != seed or r.get("dataset") != target.dataset_id for r in mine):
            return f"records of {name} are of another seed or dataset"
        episodes = [r.get("episode") for r in mine]
        complete = per_task or (all(type(e) is int for e in episodes) and sorted(episodes) == list(range(n)))
        if len(mine) != n or not complete:
            return f"{name} has {len(mine)} records, {n} expected (one per episode)"
    if len(records) != n * len(tasks):
        return f"{len(records)} records, {n * len(tasks)} expected"
    return None


def _saved_evaluation(
    plan: ProtocolPlan,
    target: TargetPlan,
    method: str,
    seed: int,
    fingerprint: str,
    log: Log,
    shot: str | None = None,
) -> tuple[list[dict[str, Any]] | None, dict[str, list[dict[str, Any]]]]:
    """A finished evaluation's records (else ``None``), and the tasks a stopped one finished.

    A file of this fingerprint is reused only if its digest matches its content and it
    holds the expected records (every target task, every episode, this method and seed);
    otherwise the evaluation is redone, with a warning naming the file.
    """
    config = plan.config
    done_file = _done_file(plan, target, method, seed, shot)
    if config.run.resume and done_file.is_file():
        saved = _read_json(done_file, log)
        if saved.get("fingerprint") == fingerprint and isinstance(saved.get("records"), list):
            problem = _content_problem(saved) or _records_problem(
                saved["records"], plan, target, method, seed, target.tasks
            )
            if problem is None:
                log(f"[{target.dataset_id}] {method}: reusing finished evaluation from {done_file}")
                return saved["records"], {}
            log(f"warning: {done_file}: {problem}; evaluating again")
    # tasks evaluated by an earlier run that stopped part-way (same fingerprint)
    partial_file = done_file.with_name(f"{safe_file_name(method)}.partial.json")
    if config.run.resume and partial_file.is_file():
        saved = _read_json(partial_file, log)
        if saved.get("fingerprint") == fingerprint and isinstance(saved.get("tasks"), dict):
            tasks = saved["tasks"]
            problem = _content_problem(saved)
            if problem is None and not set(tasks) <= set(target.tasks):
                problem = (
                    f"target tasks {sorted(set(tasks) - set(target.tasks))} are not evaluated in this run"
                )
            for task in tasks:
                problem = problem or _records_problem(tasks[task], plan, target, method, seed, [task])
            if problem is None:
                return None, tasks
            log(f"warning: {partial_file}: {problem}; evaluating its tasks again")
    return None, {}


def _evaluate_method(
    team: Team,
    plan: ProtocolPlan,
    target: TargetPlan,
    method: str,
    seed: int,
    sources: dict[str, Any],
    episode_sets: dict[int, dict[str, Any]],
    log: Log,
    progress: bool | None,
) -> list[dict[str, Any]]:
    """The records of ``method`` on ``target`` at every shot count (``episode_sets``: by shot count, then
    task); source training happens once, evaluation once per shot count (a per-task method: once)."""
    config = plan.config
    per_task = get_method(method).per_task
    curve = config.evaluation.shots is not None and not per_task
    stages = []
    for n_shot in config.shot_counts if curve else (config.evaluation.n_shot,):
        at_shot = dataclasses.replace(plan, config=config.at_shot(n_shot)) if curve else plan
        shot = _shot_folder(config, n_shot) if curve else None
        ctx = _context(at_shot, target, method, seed, log, progress)
        stamp = method_fingerprint(ctx)
        done, finished = team.leader(
            functools.partial(_saved_evaluation, at_shot, target, method, seed, stamp, log, shot)
        )
        stages.append((n_shot, at_shot, shot, ctx, stamp, done, finished))
    saved = [done for *_, done, _ in stages]
    if all(done is not None for done in saved):
        return [r for done in saved for r in done or ()]
    start = time.perf_counter()
    trained = first = None
    if not per_task:  # training reads no [evaluation] key: the same at every shot count
        ctx = next(stage[3] for stage in stages if stage[5] is None)  # of the first shot count to evaluate
        logger = _curve_logger(plan, target.dataset_id, method, seed) if team.is_leader else None
        try:
            trained = train_method(dataclasses.replace(ctx, logger=logger) if logger is not None else ctx)
        finally:
            if logger is not None:
                logger.close()
        first = evaluation_learner(ctx, trained)  # timed with the training, as before shot curves
    train_seconds = team.share(time.perf_counter() - start)  # rank 0's
    records: list[dict[str, Any]] = []
    for n_shot, at_shot, shot, ctx, stamp, done, finished in stages:
        if done is not None:
            records += done
            continue
        learner = first if first is not None or per_task else evaluation_learner(ctx, trained)
        first = None
        records += _evaluate_shot(
            team,
            at_shot,
            ctx,
            (trained, learner),
            train_seconds,
            (shot, stamp, finished),
            sources,
            episode_sets[n_shot],
            progress,
            n_shot if curve else None,
        )
    return records


def _evaluate_shot(
    team: Team,
    plan: ProtocolPlan,
    ctx: Any,
    learned: tuple[Any, Any],
    train_seconds: float,
    saved: tuple[str | None, str, dict[str, list[dict[str, Any]]]],
    sources: dict[str, Any],
    episode_sets: dict[str, Any],
    progress: bool | None,
    n_shot: int | None,
) -> list[dict[str, Any]]:
    """The records of the trained method on every target task at one shot count (``plan.config``'s
    ``n_shot``).

    ``learned``: what ``train_method()`` returned and its evaluation learner; ``saved``: the shot count's
    folder (``None``: no shot curve), its fingerprint and the tasks a stopped run finished; ``n_shot``:
    written into every record (``None``: not, as a run without a shot curve).
    """
    method, target, seed, log = ctx.method, ctx.target, ctx.seed, ctx.log
    shot, stamp, finished = saved
    done_file = _done_file(plan, target, method, seed, shot)
    partial_file = done_file.with_name(f"{safe_file_name(method)}.partial.json")
    per_task = get_method(method).per_task
    trained, learner = learned  # the trained method and its evaluation learner at this shot count
    # a method on frozen features reads each image's cached features: computed once, for every shot count
    prepare = _frozen_features(ctx) if get_method(method).frozen_features and not per_task else None
    picked: dict[str, Any] = {}  # [selection] "sources": one choice for every target task
    chosen: dict[str, Any]
    records: list[dict[str, Any]] = []
    where = f" at {n_shot} shots" if n_shot is not None else ""
    for task in target.tasks:
        if task in finished:
            log(
                f"[{target.dataset_id}] {method} on {task!r}{where}: reusing its evaluation "
                f"from {partial_file}"
            )
            records += finished[task]
            continue
        if per_task:  # every rank trains it together; rank 0's record is the result
            from torchcross.protocol.supervised import train_and_test

            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                task_records = team.share([train_and_test(ctx, task)])
        else:
            source = sources[task] if prepare is None else prepare(sources[task])
            tuned, chosen = learner, {}  # [selection]: the learner with the chosen lr and steps
            if selection_applies(plan.config, get_method(method).reads, learner):
                tuned, chosen = _selected(
                    plan, ctx, trained, task, episode_sets, {**sources, task: source}, picked, prepare
                )
            task_records = _evaluate_task(
                team, plan, tuned, method, target, task, episode_sets[task], source, log, progress
            )
            for r in task_records:
                r["dataset"] = target.dataset_id
                r["seed"] = seed
                if n_shot is not None:
                    r["n_shot"] = n_shot
                r["train_seconds"] = round(train_seconds, 3)
                r.update(chosen)
        records += task_records
        finished[task] = task_records
        if team.is_leader:
            _write_json(partial_file, _with_digest({"fingerprint": stamp, "tasks": finished}))
    if team.is_leader:
        _write_json(done_file, _with_digest({"fingerprint": stamp, "records": records}))
        partial_file.unlink(missing_ok=True)
    return records


def _frozen_features(ctx: Any) -> Callable[[Any], Any]:
    """``source -> its cached features`` for a method on frozen features (`torchcross.protocol.frozen`)."""
    from torchcross.protocol.frozen import embedded_source

    return lambda source: embedded_source(ctx, source)


def _selected(
    plan: ProtocolPlan,
    ctx: Any,
    trained: Any,
    task: str,
    episode_sets: dict[str, Any],
    sources: dict[str, Any],
    picked: dict[str, Any],
    prepare: Callable[[Any], Any] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """The learner with the fine-tuning lr and steps ``[selection]`` chooses for ``task``, and its fields.

    ``prepare`` maps a task source opened for selection episodes to what the learner reads (its
    cached features); ``sources[task]`` is already prepared.
    """
    if "sources" in picked:
        return picked["sources"]

    def open_task(ds: str, name: str, split: str) -> Any:
        source = open_split(plan.config, ds, name, split, plan.in_channels, plan.image_size, cache=True)
        return source if prepare is None else prepare(source)

    episodes = draw_selection_episodes(
        plan.config, ctx.target, task, episode_sets[task], sources[task], open_task, ctx.log
    )
    out = tuned_learner(ctx, trained, evaluation_learner, episodes)
    if plan.config.selection.mode == "sources":
        picked["sources"] = out
    return out


def _evaluate_task(
    team: Team,
    plan: ProtocolPlan,
    learner: Any,
    method: str,
    target: TargetPlan,
    task: str,
    episode_set: Any,
    source: Any,
    log: Log,
    progress: bool | None,
) -> list[dict[str, Any]]:
    """The records of every episode of ``task``, in episode order; each rank predicts its share."""
    ev = plan.config.evaluation
    episodes = episode_set.as_dataset(source)
    mine = team.mine(len(episodes), ev.batch_size)
    result = evaluate(
        learner,
        EpisodeShare(episodes, mine) if team.world_size > 1 else episodes,
        method=method,
        target=f"{target.dataset_id}/{task}",
        device=plan.device,
        progress=progress,
        confidence=ev.confidence,
        batch_size=ev.batch_size,
    )
    for r in result.records:
        r["episode"] = mine[r["episode"]]
    records = sorted((r for share in team.gather(result.records) for r in share), key=lambda r: r["episode"])
    s = EvaluationResult(records, result.seconds, ev.confidence).summary()["auroc"]
    log(
        f"[{target.dataset_id}] {method} on {task!r}: AUROC {s.mean:.4f} ± {s.half_width:.4f} "
        f"({result.seconds:.1f} s)"
    )
    return records


def _strict(obj: Any) -> Any:
    """``obj`` with NaN and infinite floats as ``None`` (strict JSON, as ``ResultsTable.to_records``)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    return obj


def _write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as strict JSON (NaN as null) in one rename (see ``atomic_write``)."""
    atomic_write(path, json.dumps(_strict(obj), default=str, allow_nan=False))


def _digest(obj: Any) -> str:
    """``"sha256:<hex>"`` of ``obj`` as strict JSON with sorted keys (the same after a JSON round trip)."""
    text = json.dumps(_strict(obj), sort_keys=True, default=str, allow_nan=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _with_digest(content: dict[str, Any]) -> dict[str, Any]:
    """``content`` with the digest of its other fields (checked by `_content_problem()`)."""
    return {**content, "digest": _digest(content)}


def _content_problem(saved: dict[str, Any]) -> str | None:
    """Whether a saved evaluation's fields still match the digest written with them."""
    content = {k: v for k, v in saved.items() if k != "digest"}
    if "digest" not in saved:
        return "it has no digest of its content (written by an older torchcross or edited)"
    if saved["digest"] != _digest(content):
        return "its content does not match the digest written with it (edited or damaged)"
    return None


def _read_json(path: Path, log: Log) -> dict[str, Any]:
    """A saved evaluation, or ``{}`` (logged) if the file is damaged: that evaluation is redone."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        log(f"{path} is damaged ({exc}); evaluating again")
        return {}
    if not isinstance(saved, dict) or not isinstance(saved.get("records", saved.get("tasks")), (list, dict)):
        log(f"{path} is not a torchcross evaluation file; evaluating again")
        return {}
    return saved


def _remove_stale_temp_files(out: Path) -> list[Path]:
    """The temporaries that killed runs left of the files a run writes, where it writes them.

    Only ``out_dir`` itself (the result files) and the folders a run makes in it
    (``episodes/``, ``checkpoints/``, ...) are searched, never the rest of a tree.
    """
    removed = remove_stale_temp_files(out, RESULT_FILES)
    for name, pattern in RUN_FOLDERS.items():
        if not (out / name).is_symlink():
            removed += remove_stale_temp_files(out / name, [pattern], recursive=True)
    return removed


def _set_threads(config: ProtocolConfig, say: Log) -> int:
    """Apply ``[run] num_threads`` and say what was chosen (an oversubscription warning as a line)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", OversubscriptionWarning)
        chosen = configure_threads(config.run.num_threads)
    for w in caught:
        say(f"warning: {w.message}")
    setting = config.run.num_threads
    say(f"torch threads: {chosen} ([run] num_threads = {setting!r}; {available_cpus()} CPUs available)")
    return chosen


def run_protocol(
    config: ProtocolConfig, *, progress: bool | None = None, log: Log | None = print
) -> ProtocolResult:
    """Run the protocol and write its results into ``config.run.out_dir``.

    Writes ``episodes.csv`` (one row per method, target task and episode),
    ``results.csv`` (mean, std and confidence interval of every metric per method and
    target), ``results.md`` (one row per method and target, compact: ``mean ± half-width``, and
    a paragraph saying what the numbers are), ``results.json``
    (both tables, the resolved config, the plan and the wall time) and ``auroc.png``
    (with ``[run] plot``), plus ``episodes/`` (the fixed episode sets), ``checkpoints/``
    and ``evaluations/`` used to resume (per method, and per target task while a
    method's evaluation is under way).

    Args:
        config: see [`torchcross.protocol.config`][torchcross.protocol.config].
        progress: tqdm progress bars; ``None`` shows them only on a terminal.
        log: receives one line per step (``None``: silent).

    Also ``curves/`` (the training loss of every step, see ``[run] logger``). Torch's
    thread count is set by ``[run] num_threads`` for the run and restored afterwards.
    Every file is written atomically (see ``torchcross._io.atomic_write``), and
    ``out_dir`` is locked while the run works in it. Before any training it raises what
    [`check_protocol()`][check_protocol] raises: a folder that
    torchcross did not create is refused unless ``[run] allow_existing_out_dir`` (see
    [`check_out_dir()`][torchcross.protocol.plan.check_out_dir]).

    Launched by ``torchrun`` with more than one process, every rank runs it: training is
    shared (synchronised gradients), each rank scores its share of the target episodes,
    and rank 0 alone writes ``out_dir``; every rank returns the same tables (see
    [`torchcross.protocol.ranks`][torchcross.protocol.ranks]).

    Raises:
        FolderInUseError: another run works in ``out_dir``;
        NonFiniteLossError: source training diverged (the step and task are named);
        CheckpointError: a damaged or foreign checkpoint (named, with what to do).
    """
    start = time.perf_counter()
    runs = config.backbone_runs()  # [[backbones]]: one sub-run per backbone, in out_dir/backbones/<label>
    if config.backbones:  # the run's folder and plan, checked with the first backbone
        first = dataclasses.replace(runs[0][1], run=config.run)
        plan = dataclasses.replace(check_protocol(first), config=config)
    else:
        plan = check_protocol(config)  # on every rank, before any collective call
    subplans = [(label, check_protocol(c) if config.backbones else plan) for label, c in runs]
    with joined(plan.device) as (team, device), ExitStack() as stack:
        plan = dataclasses.replace(plan, device=device)
        subplans = [(label, dataclasses.replace(p, device=device)) for label, p in subplans]
        say: Log = log if log is not None and team.is_leader else (lambda _msg: None)
        progress = progress if team.is_leader else False
        say(plan.describe())
        for folder, problem in plan.problems.items():
            say(f"skipped unreadable dataset folder {folder}: {problem}")
        out = Path(config.run.out_dir)

        def lock() -> None:
            stack.enter_context(lock_folder(out, "[run] out_dir"))
            folders = [out, *(Path(p.config.run.out_dir) for _, p in subplans if config.backbones)]
            for stale in (f for folder in folders for f in _remove_stale_temp_files(folder)):
                say(f"removed {stale}, a temporary file left by an interrupted run")

        team.leader(lock)
        if team.world_size > 1:
            say(f"{team.world_size} ranks: training shared, target episodes split, rank 0 writes {out}")
        records, supervised, torch_threads = [], [], 0
        for label, subplan in subplans:
            if label is not None:
                say(
                    f"backbone {label}: {subplan.config.backbone.name}, "
                    f"{subplan.config.backbone.weights} weights (files in {subplan.config.run.out_dir})"
                )
            mine, mine_supervised, torch_threads = _run_targets(team, subplan, say, progress)
            records += _labelled(mine, label)
            supervised += _labelled(mine_supervised, label)
        records = _score_diverged(records, config, say if team.is_leader else None)
        episodes = ResultsTable(records)
        summary, paired = summarize_results(plan, episodes, ResultsTable(supervised))
        seconds = time.perf_counter() - start
        sup_table = ResultsTable(supervised) if supervised else None
        files = team.leader(
            lambda: write_results(plan, episodes, summary, seconds, paired, sup_table, torch_threads)
        )
    say(f"results written to {out.resolve()} ({seconds:.1f} s)")
    return ProtocolResult(episodes, summary, files, seconds, plan, paired, sup_table, team.rank)


def _labelled(records: list[dict[str, Any]], backbone: str | None) -> list[dict[str, Any]]:
    """``records`` with a ``backbone`` field after ``method`` (``None``: as they are, no field)."""
    if backbone is None:
        return records
    return [{"method": r["method"], "backbone": backbone, **r} for r in records]


def _score_diverged(
    records: list[dict[str, Any]], config: ProtocolConfig, say: Log | None
) -> list[dict[str, Any]]:
    """``records`` with ``[evaluation] diverged`` applied (see
    [`score_diverged()`][torchcross.evaluation.diverged.score_diverged]); a ``warning:`` line and a
    ``DivergenceWarning`` per method, target task and seed (and backbone, shot count) with diverged episodes
    (``say=None``: silent)."""
    from torchcross.evaluation.diverged import score_diverged
    from torchcross.learners.divergence import DivergenceWarning

    rule = config.evaluation.diverged
    scored = score_diverged(records, rule)
    counts: dict[tuple[Any, ...], list[int]] = {}
    for r in scored:  # per method (and backbone), target, seed (and shot count)
        key = (r["method"], r.get("backbone"), r["target"], r.get("seed"), r.get("n_shot"))
        count = counts.setdefault(key, [0, 0])
        count[0] += r["diverged"]
        count[1] += 1
    how = (
        "scored as failures at chance level (AUROC 0.5) and kept in the mean and paired.csv"
        if rule == "chance"
        else "left out of the mean and paired.csv"
    )
    for (method, backbone, target, seed, n_shot), (n, total) in counts.items():
        if n and say is not None:
            where = f" (seed {seed})" if config.run.seeds is not None else ""
            where += f" at {n_shot} shots" if n_shot is not None else ""
            method = f"{method} ({backbone})" if backbone is not None else method
            message = (
                f"{method} on {target}{where}: {n} of {total} episodes diverged (non-finite logits); "
                f"{how} ([evaluation] diverged = {rule!r}); results.csv counts them in n_diverged"
            )
            say(f"warning: {message}")
            warnings.warn(message, DivergenceWarning, stacklevel=3)
    return scored


def _run_targets(
    team: Team, plan: ProtocolPlan, say: Log, progress: bool | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    config = plan.config
    threads = torch.get_num_threads()
    records: list[dict[str, Any]] = []
    supervised: list[dict[str, Any]] = []
    try:
        torch_threads = _set_threads(config, say)
        for target in plan.targets:
            sources = {
                task: open_split(
                    config,
                    target.dataset_id,
                    task,
                    config.data.target_split,
                    plan.in_channels,
                    plan.image_size,
                    cache=True,
                )
                for task in target.tasks
            }
            curve = config.evaluation.shots is not None
            episode_sets = {
                n_shot: {
                    task: _shared_episode_set(
                        team, plan, sources[task], target.dataset_id, task, say, n_shot if curve else None
                    )
                    for task in target.tasks
                }
                for n_shot in config.shot_counts
            }
            for seed in config.training_seeds:
                for method in plan.methods:
                    with mixed_precision(config.run.precision, plan.device):  # [run] precision: bf16 autocast
                        out_records = _evaluate_method(
                            team, plan, target, method, seed, sources, episode_sets, say, progress
                        )
                    (supervised if get_method(method).per_task else records).extend(out_records)
    finally:
        torch.set_num_threads(threads)
    return records, supervised, torch_threads
