"""Choosing the fine-tuning learning rate and step count on episodes disjoint from the test episodes.

The authors of the MedIMeta paper chose the fine-tuning learning rate and step count on the
same 100 target episodes they report (``deploy_all_ft_test.py`` and ``collect_all_5shot.py``
at 83c2aad fine-tune with lr 1e-3, 1e-2 x 50, 100 steps on the test episodes and compare).
``[selection] mode`` (default ``"none"``: the fixed ``[finetune]`` values, the authors'
lr 1e-3 and 50 steps) chooses them honestly instead: every grid point ``lrs x steps`` is
scored on ``n_episodes`` *selection episodes* and the test episodes are evaluated once,
with the grid point of the best mean selection AUROC
([`select_finetuning()`][select_finetuning]).

What "disjoint from the test episodes" means here (checked by the run):

* ``mode = "target"``: the selection episodes of a target task are drawn from its
  ``[selection] split`` with a seed of their own
  ([`selection_seed()`][selection_seed] of ``[run] seed`` and the task), never the test
  episodes' seed, and none of them is a test episode (the same images as support and as
  query; checked, an error otherwise). They share no image with the test episodes only when
  these come from another split (``[data] target_split = "test"`` with ``[selection] split =
  "val"`` or ``"train"``). With the paper's ``target_split = "all"`` the 100 test episodes
  cover nearly every image of MedIMeta's small targets (10 queries per class and episode), so
  excluding their images would leave no selection episodes for most targets: the selection
  episodes then reuse images of the test episodes, and the run reports how many of their
  query images are also test query images (``selection_shared_images``). The choice is then
  made on other episodes of the same task, not on the reported ones, but not on unseen images.
* ``mode = "sources"``: the selection episodes are drawn from the target's source tasks
  (leave-one-out: no shared domain or subject), on their ``[selection] split``, spread over
  up to ``n_episodes`` source tasks taken in a seeded order; they share no image with the
  target. The methods trained on the sources have seen these tasks (mm-MAML reads every split),
  so the choice favours what suits the sources.

Selection applies to the methods that fine-tune with ``[finetune]`` (their evaluation learner
is a [`FineTuner`][torchcross.learners.finetuner.FineTuner]: IM-PT, scratch, linear-probe,
mm-PT, mm-MAML with ``[maml] evaluation = "finetune"``); it is redone per training seed (a
trained backbone may prefer another grid point) and, in ``"target"`` mode, per target task.
Its settings are part of the fingerprint of those evaluations (a change redoes them), and the
choice is stored in every episode record (`SELECTION_COLUMNS`), so a resumed run reuses it
with the evaluation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from torchcross.evaluation.episodic import evaluate
from torchcross.protocol.config import ProtocolConfig
from torchcross.protocol.data import draw_episodes

__all__ = [
    "SELECTION_COLUMNS",
    "Selection",
    "SelectionEpisodes",
    "draw_selection_episodes",
    "select_finetuning",
    "selection_applies",
    "selection_note",
    "selection_seed",
    "selection_settings",
    "summary_selection",
    "tuned_learner",
]

Log = Callable[[str], None]

SELECTION_COLUMNS: tuple[str, ...] = (
    "selected_lr",
    "selected_steps",
    "selection_auroc",
    "selection_shared_images",
)
"""The fields a selection adds to every episode record (and the summary columns): the chosen ``lr`` and
``steps``, their mean selection AUROC, and the selection query images that are also test query images."""


@dataclass(frozen=True)
class Selection:
    """The outcome of [`select_finetuning()`][select_finetuning].

    Attributes:
        lr, steps: the chosen grid point.
        scores: ``(lr, steps, mean selection AUROC)`` of every grid point, in grid order.
        n_episodes: the selection episodes each grid point was scored on.
    """

    lr: float
    steps: int
    scores: tuple[tuple[float, int, float], ...]
    n_episodes: int

    @property
    def auroc(self) -> float:
        """The mean selection AUROC of the chosen grid point."""
        return next(s for lr, steps, s in self.scores if (lr, steps) == (self.lr, self.steps))


def _episode_score(record: Mapping[str, Any]) -> float:
    """An episode's AUROC; a diverged or unscorable episode counts as chance (0.5)."""
    value = record.get("auroc")
    if record.get("left_out") or not isinstance(value, (int, float)) or not math.isfinite(value):
        return 0.5
    return float(value)


def select_finetuning(
    learner_for: Callable[[float, int], Any],
    episodes: Iterable[Any],
    lrs: Sequence[float],
    steps: Sequence[int],
    *,
    device: Any = None,
    progress: bool | None = False,
    batch_size: int = 1,
) -> Selection:
    """Score every grid point ``lrs x steps`` on ``episodes`` and choose the best.

    Each grid point's learner (``learner_for(lr, steps)``, e.g. a
    [`FineTuner`][torchcross.learners.finetuner.FineTuner]) is scored by
    [`evaluate()`][evaluate] on every episode; its score is the
    mean AUROC over the episodes, an episode with non-finite logits or an undefined AUROC
    counting as chance (0.5). The best score wins; a tie goes to the earlier grid point (``lrs``
    outer, ``steps`` inner, as listed), so listing the default values first prefers them.

    Args:
        learner_for: ``(lr, steps) -> learner`` with ``predict(task)``.
        episodes: the selection episodes (iterated once per grid point: a list or a dataset).
        lrs, steps: the grid.
        device, progress, batch_size: as for ``evaluate()``.

    Raises:
        ValueError: an empty grid, or no episode.

    Examples:
        >>> import torch
        >>> from torchcross.tasks.task import Task, TaskDescription
        >>> d = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"}, "toy")
        >>> y = torch.tensor([[0], [1], [0], [1]])
        >>> tasks = [Task((torch.zeros(2, 1), y[:2]), (y.float(), y), d) for _ in range(3)]
        >>> def learner_for(lr, steps):  # only the larger lr gets the sign right
        ...     return lambda task: task.query[0] * (1.0 if lr > 5e-3 else -1.0)
        >>> chosen = select_finetuning(learner_for, tasks, [1e-3, 1e-2], [50, 100])
        >>> chosen.lr, chosen.steps, chosen.auroc
        (0.01, 50, 1.0)
    """
    grid = [(float(lr), int(n)) for lr in lrs for n in steps]
    if not grid:
        raise ValueError(f"the selection grid is empty: lrs={list(lrs)}, steps={list(steps)}")
    scores: list[tuple[float, int, float]] = []
    count = 0
    for lr, n in grid:
        result = evaluate(
            learner_for(lr, n),
            episodes,
            method=f"selection lr={lr:g} steps={n}",
            device=device,
            progress=progress,
            batch_size=batch_size,
        )
        values = [_episode_score(r) for r in result.records]
        if not values:
            raise ValueError("no selection episode to score the grid on")
        count = len(values)
        scores.append((lr, n, sum(values) / len(values)))
    best = max(range(len(scores)), key=lambda i: (scores[i][2], -i))
    return Selection(scores[best][0], scores[best][1], tuple(scores), count)


def selection_seed(seed: int, name: str) -> int:
    """The seed of the selection episodes of ``name`` (a task id) in a run of ``[run] seed``.

    The first 63 bits of SHA-256 of ``"torchcross.selection/<seed>/<name>"`` (ours): a
    stream of its own, apart from the test episodes (drawn with ``seed`` itself) and the same
    on every machine.

    Examples:
        >>> selection_seed(0, "glaucoma/task") == selection_seed(0, "glaucoma/task")
        True
        >>> selection_seed(0, "glaucoma/task") in (0, selection_seed(1, "glaucoma/task"))
        False
    """
    digest = hashlib.sha256(f"torchcross.selection/{seed}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclass(frozen=True)
class SelectionEpisodes:
    """Selection episodes: ``(task id, task source, episode set)`` parts, iterated in order.

    Attributes:
        parts: the episode sets and the sources they read from.
        where: what they were drawn from, in words.
        shared_images: their query images that are also query images of a test episode (0 in
            ``"sources"`` mode).
    """

    parts: tuple[tuple[str, Any, Any], ...]
    where: str
    shared_images: int = 0

    def __iter__(self) -> Iterator[Any]:
        for _, source, episodes in self.parts:
            yield from episodes.as_dataset(source)

    def __len__(self) -> int:
        return sum(len(episodes) for _, _, episodes in self.parts)


def _rows(source: Any) -> np.ndarray:
    """The dataset rows of a task source's examples (its split's rows of a MedIMeta dataset)."""
    inner = getattr(source, "source", source)
    rows = getattr(inner, "split_indices", None)
    return np.asarray(rows) if rows is not None else np.arange(len(source))


def _draw(config: ProtocolConfig, source: Any, n: int, seed: int, name: str, log: Log) -> Any:
    """``n`` episodes of ``source`` shaped as the test episodes (warnings as log lines)."""
    return draw_episodes(config, source, n, seed, log, f"selection episodes of {name}")


def draw_selection_episodes(
    config: ProtocolConfig,
    target: Any,
    task: str,
    test_episodes: Any,
    test_source: Any,
    open_task: Callable[[str, str, str], Any],
    log: Log = print,
) -> SelectionEpisodes:
    """The selection episodes of ``[selection] mode`` for target task ``task`` (see the module doc).

    Args:
        config: the run's config.
        target: the target (a ``TargetPlan``: its dataset, tasks and source tasks).
        task: the target task.
        test_episodes, test_source: its test episodes and the source they read from.
        open_task: ``(dataset, task, split) -> task source``.
        log: receives the skipped sources and the sampler's warnings.

    Raises:
        ValueError: a selection episode that is a test episode, or no source task with
            episodes (``"sources"``), naming what to change.
    """
    sel, seed = config.selection, config.run.seed
    if sel.mode == "target":
        name = f"{target.dataset_id}/{task}"
        source = open_task(target.dataset_id, task, sel.split)
        episodes = _draw(config, source, sel.n_episodes, selection_seed(seed, name), name, log)
        mine, theirs = _rows(source), _rows(test_source)
        tests = {(frozenset(theirs[e.support]), frozenset(theirs[e.query])) for e in test_episodes.episodes}
        for i, e in enumerate(episodes.episodes):
            if (frozenset(mine[e.support]), frozenset(mine[e.query])) in tests:
                raise ValueError(
                    f"selection episode {i} of {name} is one of its test episodes; change [selection] "
                    "split or [run] seed"
                )
        scored = np.unique(np.concatenate([theirs[e.query] for e in test_episodes.episodes]))
        asked = np.unique(np.concatenate([mine[e.query] for e in episodes.episodes]))
        shared = int(np.isin(asked, scored).sum())
        where = f"{len(episodes)} episodes of {name} ({sel.split} split)"
        return SelectionEpisodes(((name, source, episodes),), where, shared)
    order = np.random.default_rng(selection_seed(seed, f"{target.dataset_id}:sources")).permutation(
        len(target.sources)
    )
    usable: list[tuple[str, Any]] = []
    for i in order:
        if len(usable) == sel.n_episodes:
            break
        ds, source_task = target.sources[int(i)]
        name = f"{ds}/{source_task}"
        source = open_task(ds, source_task, sel.split)
        try:
            _draw(config, source, 1, selection_seed(seed, name), name, lambda _msg: None)
        except ValueError as exc:
            log(f"selection: source {name} skipped for selection episodes ({sel.split} split): {exc}")
            continue
        usable.append((name, source))
    if not usable:
        raise ValueError(
            f"no source task of {target.dataset_id} gives selection episodes on its {sel.split!r} split; "
            "set [selection] split or mode"
        )
    k = len(usable)
    parts = tuple(
        (name, source, _draw(config, source, sel.n_episodes // k + (j < sel.n_episodes % k), s, name, log))
        for j, (name, source) in enumerate(usable)
        for s in [selection_seed(seed, name)]
    )
    where = f"{sel.n_episodes} episodes of {k} source tasks of {target.dataset_id} ({sel.split} split)"
    return SelectionEpisodes(parts, where, 0)


def selection_settings(config: ProtocolConfig, reads: Any, per_task: bool = False) -> dict[str, Any]:
    """``{"selection": {key: value}}`` for the fingerprint of an evaluation that selection applies to.

    Empty with ``[selection] mode = "none"``, for a method scored per task, or one whose
    ``reads`` leave out ``[finetune] lr``: their fingerprints stay as without selection.
    """
    if config.selection.mode == "none" or per_task or "finetune.lr" not in reads.resolve(config):
        return {}
    return {"selection": dataclasses.asdict(config.selection)}


def selection_applies(config: ProtocolConfig, reads: Any, learner: Any) -> bool:
    """Whether ``[selection]`` chooses the fine-tuning of a method with ``reads`` and ``learner``."""
    from torchcross.learners.finetuner import FineTuner

    return bool(selection_settings(config, reads)) and isinstance(learner, FineTuner)


def _with_finetune(ctx: Any, lr: float, steps: int) -> Any:
    ft = dataclasses.replace(ctx.config.finetune, lr=lr, steps=steps)
    return dataclasses.replace(ctx, config=dataclasses.replace(ctx.config, finetune=ft))


def tuned_learner(
    ctx: Any,
    trained: Any,
    build: Callable[[Any, Any], Any],
    episodes: SelectionEpisodes,
) -> tuple[Any, dict[str, Any]]:
    """The learner of the grid point chosen on ``episodes``, and the record fields reporting it.

    Args:
        ctx: the method's [`MethodContext`][torchcross.protocol.registry.MethodContext].
        trained: what its training returned.
        build: ``(ctx, trained) -> learner`` (the method's evaluation learner, reading
            ``ctx.config.finetune``).
        episodes: from [`draw_selection_episodes()`][draw_selection_episodes].
    """
    sel = ctx.config.selection
    chosen = select_finetuning(
        lambda lr, steps: build(_with_finetune(ctx, lr, steps), trained),
        episodes,
        sel.lrs,
        sel.steps,
        device=ctx.device,
        progress=False if ctx.progress is None else ctx.progress,
        batch_size=ctx.config.evaluation.batch_size,
    )
    grid = ", ".join(f"lr {lr:g} x {n} steps: {s:.4f}" for lr, n, s in chosen.scores)
    ctx.log(
        f"[{ctx.target.dataset_id}] {ctx.method}: fine-tuning lr {chosen.lr:g}, {chosen.steps} steps "
        f"selected on {episodes.where} ({episodes.shared_images} query images shared with the test "
        f"episodes); selection AUROC {grid}"
    )
    fields = dict(zip(SELECTION_COLUMNS, (chosen.lr, chosen.steps, chosen.auroc, episodes.shared_images)))
    return build(_with_finetune(ctx, chosen.lr, chosen.steps), trained), fields


def _joined(values: list[Any]) -> Any:
    """One value, or the distinct ones per seed joined with ``/`` (a string)."""
    distinct = list(dict.fromkeys(values))
    return distinct[0] if len(distinct) == 1 else "/".join(f"{v:g}" for v in values)


def summary_selection(
    rows: list[dict[str, Any]], episodes: Iterable[Mapping[str, Any]], by: Sequence[str]
) -> list[str]:
    """Add the selection fields of ``episodes`` to the summary ``rows`` of the same ``by`` values.

    A row gets `SELECTION_COLUMNS` (the selection AUROC and shared images averaged over
    seeds; the chosen ``lr`` and ``steps`` as one value, or ``"a/b"`` in seed order when the
    seeds chose differently). Returns the columns added (none without selection).
    """
    found: dict[tuple[Any, ...], dict[Any, Mapping[str, Any]]] = {}
    for r in episodes:
        if r.get("selected_lr") is not None:
            found.setdefault(tuple(r[b] for b in by), {}).setdefault(r.get("seed"), r)
    if not found:
        return []
    for row in rows:
        per_seed = found.get(tuple(row.get(b) for b in by))
        if not per_seed:
            continue
        chosen = [per_seed[s] for s in sorted(per_seed, key=lambda s: (s is None, s))]
        row["selected_lr"] = _joined([r["selected_lr"] for r in chosen])
        row["selected_steps"] = _joined([r["selected_steps"] for r in chosen])
        for key in SELECTION_COLUMNS[2:]:
            row[key] = sum(float(r[key]) for r in chosen) / len(chosen)
    return list(SELECTION_COLUMNS)


def selection_note(config: ProtocolConfig, summary: Iterable[Mapping[str, Any]]) -> str:
    """The line of ``results.md`` that says how the fine-tuning lr and steps were chosen (empty: fixed).

    Examples:
        >>> from torchcross.protocol.config import config_from_dict
        >>> raw = {"data": {"root": "d", "targets": "t"}, "run": {"out_dir": "o"}}
        >>> config = config_from_dict({**raw, "selection": {"mode": "target"}})
        >>> row = {"method": "IM-PT", "target": "t/a", "selected_lr": 0.01, "selected_steps": 100}
        >>> selection_note(config, [{**row, "selection_auroc": 0.7, "selection_shared_images": 0}])[:60]
        'Fine-tuning lr/steps selected on 20 episodes of each target '
    """
    sel = config.selection
    if sel.mode == "none":
        return ""
    if sel.mode == "target":
        where = f"each target task's `{sel.split}` split"
        how = "a seed of their own, none of them a test episode"
    else:
        where = f"the target's source tasks (`{sel.split}` split)"
        how = "other datasets: no shared domain or subject"
    chosen = [
        f"{r['method']} on {r['target']}: lr {r['selected_lr']}, {r['selected_steps']} steps "
        f"(selection AUROC {float(r['selection_auroc']):.3f}, "
        f"{float(r['selection_shared_images']):g} query images shared with the test episodes)"
        for r in summary
        if r.get("selected_lr") is not None
    ]
    return (
        f"Fine-tuning lr/steps selected on {sel.n_episodes} episodes of {where}, disjoint from the test "
        f"episodes ({how}), from lr {list(sel.lrs)} x steps "
        f"{list(sel.steps)}, best mean selection AUROC, instead of the fixed `[finetune]` lr "
        f"{config.finetune.lr:g}, {config.finetune.steps} steps (the paper's: lr 0.001, 50 steps, chosen by "
        f"the authors on the test episodes): {'; '.join(chosen) if chosen else 'no fine-tuning method'}."
    )
