"""The plan of a protocol run: :func:`check_protocol` resolves and checks a config before training.

:class:`ProtocolPlan` is what :func:`~torchcross.protocol.run.run_protocol` and the
methods (:mod:`torchcross.protocol.methods`) work from: targets, sources, input shape
and device.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from torchcross.protocol.config import ProtocolConfig, config_from_dict, config_to_dict
from torchcross.protocol.data import TargetPlan, load_catalogue, open_task, plan_targets

__all__ = ["ProtocolPlan", "check_out_dir", "check_protocol", "open_split"]


@dataclass(frozen=True)
class ProtocolPlan:
    """What a run will do, resolved and checked: targets, sources, input shape, device."""

    config: ProtocolConfig
    targets: tuple[TargetPlan, ...]
    in_channels: int
    image_size: int
    device: torch.device
    problems: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """A human-readable summary of the plan."""
        lines = [
            f"data root: {Path(self.config.data.root).resolve()}",
            f"methods: {', '.join(self.config.evaluation.methods)}; backbone: {self.config.backbone.name} "
            f"(input {self.in_channels}x{self.image_size}x{self.image_size}, device {self.device})",
        ]
        for t in self.targets:
            lines.append(
                f"target {t.dataset_id}: tasks {list(t.tasks)}; {len(t.sources)} source tasks from "
                f"{sorted({s[0] for s in t.sources})}; left out: {list(t.excluded)}"
            )
        return "\n".join(lines)


def check_out_dir(out_dir: Path) -> None:
    """Create ``out_dir`` if needed and check that files can be written in it.

    Raises:
        PermissionError: the folder cannot be created or written to.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     check_out_dir(Path(tmp) / "run")
        ...     (Path(tmp) / "run").is_dir()
        True
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".torchcross-write-test-", dir=out_dir)
        os.close(fd)
        os.unlink(probe)
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
    config_from_dict(config_to_dict(config))  # every bound again, for configs built in code
    catalogue, problems = load_catalogue(config.data.root)
    targets = plan_targets(catalogue, config.data.targets, config.data.sources)
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
    if backbone.name.startswith("resnet"):
        from torchcross.protocol.backbone import build_backbone

        build_backbone(backbone.name, 3, image_size, weights=backbone.weights)  # torchvision and weights
        in_channels = 3
    else:
        in_channels = 3 if 3 in channels else 1
        if backbone.weights is not None and not Path(backbone.weights).is_file():
            raise FileNotFoundError(f"[backbone] weights file {str(backbone.weights)!r} does not exist")
    if config.run.plot:
        from torchcross.evaluation.plotting import require_matplotlib

        try:
            require_matplotlib()
        except ImportError as exc:
            raise ImportError(f"{exc}; or set [run] plot = false (torchcross demo --no-plot)") from exc
    device = _check_device(config.run.device)
    if config.run.logger == "tensorboard":
        try:
            import tensorboard  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                '[run] logger = "tensorboard" needs tensorboard: pip install "torchcross[tensorboard]"; '
                'or set [run] logger = "csv"'
            ) from exc
    for t in targets:  # open every task once: missing splits or files fail now, not after training
        for task in t.tasks:
            open_split(config, t.dataset_id, task, config.data.target_split, in_channels, image_size)
        for ds, task in t.sources:
            open_split(config, ds, task, config.data.source_split, in_channels, image_size)
    check_out_dir(Path(config.run.out_dir))
    return ProtocolPlan(config, tuple(targets), in_channels, image_size, device, problems)


def open_split(config: ProtocolConfig, ds: str, task: str, split: str, channels: int, size: int) -> Any:
    """Open task ``ds/task`` on ``split`` as the run reads it (``channels`` x ``size`` x ``size`` images).

    Raises:
        ValueError: the task cannot be opened (naming it, its split and the cause).
    """
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
