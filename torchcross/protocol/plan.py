"""The plan of a protocol run: [`check_protocol()`][check_protocol] resolves and
checks a config before training.

[`ProtocolPlan`][ProtocolPlan] is what
[`run_protocol()`][torchcross.protocol.run.run_protocol] and the
methods (`torchcross.protocol.methods`) work from: targets, sources, input shape
and device.
"""

from __future__ import annotations

import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from torchcross._io import LOCK_NAME
from torchcross.protocol.backbone import backbone_preprocessing
from torchcross.protocol.config import ProtocolConfig, config_from_dict, config_to_dict
from torchcross.protocol.data import TargetPlan, plan_targets
from torchcross.protocol.data_collections import data_collections, load_data, open_data_task
from torchcross.protocol.methods import resolve_methods
from torchcross.protocol.registry import get_method

__all__ = [
    "OUT_DIR_MARKER",
    "RESULT_FILES",
    "RUN_FOLDERS",
    "ProtocolPlan",
    "check_out_dir",
    "check_protocol",
    "open_split",
]

OUT_DIR_MARKER = ".torchcross-run"
"""The file that marks a folder as a run's ``out_dir``: written when a run creates (or is
allowed to adopt) the folder; torchcross replaces its own files only in a folder that has it."""

RESULT_FILES: tuple[str, ...] = (
    "results.csv",
    "results.md",
    "results.json",
    "episodes.csv",
    "paired.csv",
    "supervised.csv",
    "auroc.png",
    "accuracy.png",
    "shots.png",
)
"""The files a run writes at the top of ``out_dir``."""

RUN_FOLDERS: dict[str, str] = {
    "episodes": "*.json",
    "evaluations": "*.json",
    "checkpoints": "*.pt",
    "curves": "*.csv",
    "backbones": "*.json",  # [[backbones]]: a sub-run's folders per backbone (each cleaned as a run)
    "embeddings": "*.safetensors",
}
"""The folders a run makes in ``out_dir``, with the names of the files it writes in them."""

_MARKER_TEXT = (
    "This folder is the out_dir of a torchcross protocol run: torchcross writes and replaces "
    f"{', '.join(RESULT_FILES)} and the folders {', '.join(f'{n}/' for n in RUN_FOLDERS)} here.\n"
)


@dataclass(frozen=True)
class ProtocolPlan:
    """What a run will do, resolved and checked: targets, sources, input shape, device, methods."""

    config: ProtocolConfig
    targets: tuple[TargetPlan, ...]
    in_channels: int
    image_size: int
    device: torch.device
    problems: dict[str, str] = field(default_factory=dict)
    methods: tuple[str, ...] = ()
    overlaps: tuple[str, ...] = ()
    """The overlaps added across datasets: shared upstream datasets and ``[data] overlaps``."""

    def describe(self) -> str:
        """A human-readable summary of the plan."""
        data = self.config.data
        if data.collections:
            where = [
                f"data collection #{i + 1}: {c.format} at {Path(c.root).resolve()}"
                + (f" (dataset ids prefixed {c.prefix!r})" if c.prefix else "")
                + "".join(f", {k} = {v!r}" for k, v in c.options)
                for i, c in enumerate(data_collections(data))
            ]
        else:
            fmt = "" if data.format == "medimeta" else f" ({data.format})"
            where = [f"data root: {Path(str(data.root)).resolve()}{fmt}"]
        lines = [
            *where,
            *self.overlaps,
            f"methods: {', '.join(self.methods or self.config.evaluation.methods)}; backbone: "
            f"{self.config.backbone.name} ({self.config.backbone.weights} weights) "
            f"(input {self.in_channels}x{self.image_size}x{self.image_size}, device {self.device})",
        ]
        if ":" in self.config.backbone.name:
            lines.append(
                "preprocessing: the backbone's own (its input size, mean and std; [data] image_size and "
                "normalize are not used)"
            )
        if self.config.backbones:
            names = ", ".join(f"{b.name} ({b.weights})" for b in self.config.backbones)
            lines.append(f"model comparison: every method with each backbone of [[backbones]]: {names}")
        if self.config.evaluation.shots is not None:
            ev = self.config.evaluation
            lines.append(
                f"shot curve: {ev.n_episodes} episodes at each of {list(self.config.shot_counts)} shots "
                "per class (source training once per method)"
            )
        if self.config.run.plugins:
            lines.append(
                f"plugins (imported when the config was read: their code ran): "
                f"{', '.join(self.config.run.plugins)}"
            )
        for t in self.targets:
            why = (
                " (" + "; ".join(f"{d}: {r}" for d, r in zip(t.excluded, t.reasons)) + ")"
                if t.excluded and len(t.reasons) == len(t.excluded)
                else ""
            )
            lines.append(
                f"target {t.dataset_id}: tasks {list(t.tasks)}; {len(t.sources)} source tasks from "
                f"{sorted({s[0] for s in t.sources})}; left out: {list(t.excluded)}{why}"
            )
        return "\n".join(lines)


def _is_ours(name: str) -> bool:
    """Files torchcross puts in a folder before anything else: the lock, the marker, a write test."""
    return name in (LOCK_NAME, OUT_DIR_MARKER) or name.startswith(".torchcross-write-test-")


def _shown(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _claim(out_dir: Path, allow_existing: bool) -> None:
    """Mark ``out_dir`` as a run's folder, unless it holds files that torchcross did not write."""
    marker = out_dir / OUT_DIR_MARKER
    if os.path.lexists(marker):
        if stat.S_ISREG(os.lstat(marker).st_mode):
            return
        raise FileExistsError(
            f"{str(marker)!r} is not a regular file (torchcross writes one there to mark its "
            "output folder); remove it, or choose another [run] out_dir",
        )
    theirs = sorted(p.name + ("/" if p.is_dir() else "") for p in out_dir.iterdir() if not _is_ours(p.name))
    earlier = (
        f" (if an earlier torchcross version wrote them, mark the folder as torchcross's by "
        f"creating the empty file {str(marker)!r})"
        if os.path.lexists(out_dir / LOCK_NAME)
        else ""
    )
    if theirs and not allow_existing:
        raise FileExistsError(
            f"[run] out_dir {str(out_dir)!r} is a folder that torchcross did not create: it holds "
            f"{_shown(theirs)} and no {OUT_DIR_MARKER} file{earlier}; a run writes "
            f"{', '.join(RESULT_FILES)} and {', '.join(f'{n}/' for n in RUN_FOLDERS)} there. "
            "Choose a new or empty folder, or set [run] allow_existing_out_dir = true "
            "(torchcross run --allow-existing-out) to write beside its files",
        )
    clash = [n for n in theirs if n.rstrip("/") in RESULT_FILES or n.rstrip("/") in RUN_FOLDERS]
    if clash:
        raise FileExistsError(
            f"[run] out_dir {str(out_dir)!r} holds {_shown(clash)}, which torchcross did not write "
            f"and a run would replace{earlier}; move them away or choose another folder",
        )
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(marker, flags, 0o644)
    except FileExistsError:  # written meanwhile (another rank of the same run)
        return _claim(out_dir, allow_existing)
    try:
        os.write(fd, _MARKER_TEXT.encode("utf-8"))
    finally:
        os.close(fd)


def check_out_dir(out_dir: Path, *, allow_existing: bool = False) -> None:
    """Create ``out_dir`` if needed, mark it as a run's folder and check that files can be written in it.

    A folder that torchcross did not create (it exists, holds files and lacks the
    `OUT_DIR_MARKER` file) is refused, so that no file of the user's is replaced; with
    ``allow_existing`` it is used (and marked) when it holds nothing named like what a
    run writes (`RESULT_FILES`, `RUN_FOLDERS`). An empty folder is used and marked.

    Raises:
        NotADirectoryError: ``out_dir`` exists and is not a folder.
        FileExistsError: a folder that torchcross did not create (naming it, what it holds
            and what to do).
        PermissionError: the folder cannot be created or written to.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     check_out_dir(Path(tmp) / "run")
        ...     sorted(p.name for p in (Path(tmp) / "run").iterdir())
        ['.torchcross-run']
    """
    out_dir = Path(out_dir)
    if os.path.lexists(out_dir) and not out_dir.is_dir():
        raise NotADirectoryError(
            f"output folder {str(out_dir)!r} exists and is not a folder; choose another [run] out_dir"
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        _claim(out_dir, allow_existing)
        fd, probe = tempfile.mkstemp(prefix=".torchcross-write-test-", dir=out_dir)
        os.close(fd)
        os.unlink(probe)
    except FileExistsError:
        raise
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
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(
            f"[run] device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
            f"cuda:0 to cuda:{torch.cuda.device_count() - 1}; choose one of them or 'cuda'"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            f"[run] device {name!r} asked for MPS (Apple GPUs), which is not available here; use 'cpu'"
        )
    return device


def _check_precision(precision: str, device: torch.device) -> None:
    """Refuse ``[run] precision = "bf16"`` on a device without bfloat16 support (naming it and the fix)."""
    from torchcross.learners.precision import check_precision

    try:
        check_precision(precision, device)
    except ValueError as exc:
        raise ValueError(f"[run] {exc}") from None


def check_protocol(config: ProtocolConfig) -> ProtocolPlan:
    """Validate a config against the data and the machine before anything is trained.

    Checks every bound of the config, the data root, target and source names, that every
    needed task opens on its splits, the backbone (and its weights), the augmentation,
    the plot and logger dependencies, the device and that the output folder is writable.

    Raises:
        FileNotFoundError: a missing data root or weights file.
        ValueError: unknown names (listing what exists), a missing split, mixed image
            sizes without ``[data] image_size``, a method's ``reads`` naming a setting that
            does not exist, an unusable device, a method declaring ``needs_text_tower``
            (``zero-shot``) with a backbone without a text tower, or a target task of a type a
            method's ``task_types`` leave out (``zero-shot`` on an ordinal task).
        FileExistsError: an output folder that torchcross did not create (see
            `check_out_dir()`).
        PermissionError: an unwritable output folder.
        ImportError: a missing optional dependency (naming the extra).
    """
    if not isinstance(config, ProtocolConfig):
        raise TypeError(f"config must be a ProtocolConfig (see load_config), got {type(config).__name__}")
    raw = config_to_dict(config)
    raw.get("run", {}).pop("plugins", None)  # imported when the config was made, relative to its file
    config_from_dict(raw)  # every bound again, for configs built in code
    collected = load_data(config.data)
    catalogue, problems = collected.catalogue, dict(collected.problems)
    data = config.data
    targets = plan_targets(catalogue, data.targets, data.sources, data.source_tasks, data.target_tasks)
    methods = resolve_methods(config)
    for m in methods:  # what each method declares it reads names settings that exist
        try:
            get_method(m).reads.resolve(config)
        except ValueError as exc:
            raise ValueError(f"method {m!r}: {exc}; fix reads= of its register_method") from None
    involved = {t.dataset_id for t in targets} | {s[0] for t in targets for s in t.sources}
    known = {d: catalogue.dataset(d).info.get("input_size", (0, 0, 0)) for d in sorted(involved)}
    varying = [d for d, size in known.items() if size is None]  # images of several sizes
    sizes = {tuple(size) for size in known.values() if size is not None}
    channels = {s[0] for s in sizes} | {int(catalogue.dataset(d).info.get("channels", 3)) for d in varying}
    image_size = config.data.image_size
    backbone = config.backbone
    from torchcross.protocol.backbone import build_backbone

    # "<family>:<model>": the name and weights are checked here (loaded from local files), before training
    preprocessing = backbone_preprocessing(backbone.name, backbone.weights)
    if preprocessing is not None:
        image_size = preprocessing.input_size[0]
    elif image_size is None and varying:
        raise ValueError(
            f"the images of {', '.join(repr(d) for d in varying)} vary in size; set [data] image_size to "
            "resize every image to one size (e.g. image_size = 84)"
        )
    elif image_size is None:
        hw = {(s[1], s[2]) for s in sizes}
        if len(hw) != 1 or len({*next(iter(hw))}) != 1:
            raise ValueError(
                f"the datasets involved have image sizes {sorted(hw)}; "
                "set [data] image_size to resize them all"
            )
        image_size = int(next(iter(hw))[0])
    in_channels = 3 if backbone.name.startswith("resnet") or 3 in channels else 1
    if preprocessing is not None:
        in_channels = preprocessing.channels
    # torchvision, and the weights (read, or fetched into torch's cache, now rather than after training)
    specs = [get_method(m) for m in methods]
    fixed = {
        spec.fixed_weights for spec in specs
    }  # the configured weights, unless no method starts from them
    weights = fixed.pop() if len(fixed) == 1 and None not in fixed else backbone.weights
    build_backbone(backbone.name, in_channels, image_size, weights=weights, hidden=backbone.hidden)
    for spec in specs:  # a method that embeds prompts needs the backbone's text tower
        if spec.needs_text_tower:
            _check_text_tower(spec.name, backbone, in_channels, image_size)
    trains = [spec for spec in specs if spec.trains]
    if trains and config.augmentation.enabled:
        from torchcross.protocol.augment import build_augmentation

        build_augmentation(config.augmentation, image_size)
    if config.run.plot:
        from torchcross.evaluation.plotting import require_matplotlib

        try:
            require_matplotlib()
        except ImportError as exc:
            raise ImportError(f"{exc}; or set [run] plot = false (torchcross demo --no-plot)") from exc
    if config.run.logger == "tensorboard":
        try:
            import tensorboard  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                '[run] logger = "tensorboard" needs tensorboard: pip install "torchcross[tensorboard]"; '
                'or set [run] logger = "csv"'
            ) from exc
    device = _check_device(config.run.device)
    _check_precision(config.run.precision, device)
    # the splits the methods declare they read, and what reads each
    source_splits: dict[str, list[str]] = {}
    target_splits: dict[str, list[str]] = {config.data.target_split: ["[data] target_split"]}
    for s in specs:
        if s.source_split is not None:
            split = config.data.source_split or s.source_split
            who = (
                "[data] source_split" if config.data.source_split else f"method {s.name!r} (its source split)"
            )
            source_splits.setdefault(split, []).append(who)
        for split in s.target_splits:
            target_splits.setdefault(split, []).append(f"method {s.name!r}")
    if config.selection.mode != "none":  # where the selection episodes come from
        chosen = target_splits if config.selection.mode == "target" else source_splits
        chosen.setdefault(config.selection.split, []).append(
            f"[selection] split (mode {config.selection.mode!r})"
        )
    _check_splits(catalogue, [(t.dataset_id, target_splits) for t in targets], "target")
    _check_splits(catalogue, [(ds, source_splits) for t in targets for ds, _ in t.sources], "source")
    for t in targets:  # open every task once: missing splits or files fail now, not after training
        for task in t.tasks:
            for split in sorted(target_splits):
                opened = open_split(config, t.dataset_id, task, split, in_channels, image_size)
            _check_task_type(specs, f"{t.dataset_id}/{task}", opened)
        for ds, task in t.sources:
            for split in sorted(source_splits):
                open_split(config, ds, task, split, in_channels, image_size)
    check_out_dir(Path(config.run.out_dir), allow_existing=config.run.allow_existing_out_dir)
    return ProtocolPlan(
        config, tuple(targets), in_channels, image_size, device, problems, methods, collected.notes
    )


def _check_splits(catalogue: Any, uses: list[tuple[str, dict[str, list[str]]]], role: str) -> None:
    """Refuse a split that a dataset does not have (its ``info["splits"]``), naming what reads it."""
    for ds, splits in uses:
        has = catalogue.dataset(ds).info.get("splits")
        if has is None:  # not declared: the reader checks when the task is opened
            continue
        for split, readers in splits.items():
            if split != "all" and split not in has:
                raise ValueError(
                    f"{role} dataset {ds!r} has no {split!r} split (its splits: {list(has) or 'none'}), "
                    f'which {" and ".join(readers)} reads; set that key to a split it has ("all": the '
                    "whole dataset), or leave the dataset or the method out"
                )


def _check_text_tower(method: str, backbone: Any, in_channels: int, image_size: int) -> None:
    """Refuse ``[backbone]`` for ``method`` (declaring ``needs_text_tower``) if it has no text tower."""
    from torchcross.learners.zero_shot import find_text_tower
    from torchcross.protocol.backbone import build_backbone

    fix = (
        "set [backbone] name to a CLIP-style backbone ('open_clip:<model>', "
        f"'open_clip:local-dir:<folder>' or 'hf:<CLIP folder>'), or leave {method!r} out of [evaluation] "
        "methods"
    )
    try:
        net, _ = build_backbone(
            backbone.name,
            in_channels,
            image_size,
            weights=backbone.weights,
            hidden=backbone.hidden,
            text_tower=True,
        )
        find_text_tower(net)
    except ValueError as exc:
        raise ValueError(
            f"method {method!r} needs a backbone with a text tower, but [backbone] name = {backbone.name!r} "
            f"has none ({exc}); {fix}"
        ) from None


def _check_task_type(specs: list[Any], task: str, source: Any) -> None:
    """Refuse a target task of a type that a method (declaring ``task_types``) does not evaluate."""
    description = getattr(source, "task_description", None)
    if description is None:
        return
    kind = description.task_target.name
    for spec in specs:
        if spec.task_types is not None and kind not in spec.task_types:
            raise ValueError(
                f"method {spec.name!r} cannot evaluate target task {task!r}: it is a {kind} task, and "
                f"{spec.name!r} evaluates {', '.join(spec.task_types)} tasks only; leave the task out "
                f"([data] target_tasks) or leave {spec.name!r} out of [evaluation] methods"
            )


def open_split(config: ProtocolConfig, ds: str, task: str, split: str, channels: int, size: int) -> Any:
    """Open task ``ds/task`` on ``split`` as the run reads it (``channels`` x ``size`` x ``size`` images).

    With a ``"<family>:<model>"`` backbone, the images go through its own preprocessing.

    Raises:
        ValueError: the task cannot be opened (naming it, its split and the cause).
    """
    try:
        return open_data_task(
            config.data,
            ds,
            task,
            split,
            channels=channels,
            image_size=size,
            normalize=config.data.normalize,
            preprocessing=backbone_preprocessing(config.backbone.name, config.backbone.weights),
        )
    except (ValueError, OSError) as exc:
        raise ValueError(f"cannot open task {ds}/{task} (split {split!r}): {exc}") from exc
