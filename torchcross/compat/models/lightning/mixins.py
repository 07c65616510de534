"""Per-split mean metrics under 0.0.6's key patterns (``"AUROC/meta{}/query"`` -> ``"AUROC/metaval/query"``).

Examples:
    >>> import torch
    >>> class M(MeanMetricsMixin):
    ...     pass
    >>> m = M()
    >>> m.configure_metrics(["accuracy/meta{}/query"])
    >>> m.update_metrics("val", [(torch.tensor(0.5),), (torch.tensor(1.0),)])
    >>> float(m.validation_metrics["accuracy/metaval/query"].compute())
    0.75
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torchmetrics import MeanMetric

__all__ = ["MODES", "EpochLRSchedule", "MeanMetricsMixin"]

MODES = ("train", "val", "test")
"""The splits, as they appear in the keys."""


class MeanMetricsMixin(LightningModule):
    """Keeps a `torchmetrics.MeanMetric` per key and split (NaN values are left out)."""

    def __init__(self) -> None:
        super().__init__()
        self.metric_keys: list[str] = []
        self.training_metrics = nn.ModuleDict()
        self.validation_metrics = nn.ModuleDict()
        self.test_metrics = nn.ModuleDict()

    def configure_metrics(self, metric_keys: Sequence[str]) -> None:
        """Make the metrics of ``metric_keys`` (patterns with one ``{}`` for the split)."""
        self.metric_keys = list(metric_keys)
        for mode, name in zip(MODES, ("training_metrics", "validation_metrics", "test_metrics")):
            setattr(
                self,
                name,
                nn.ModuleDict({k.format(mode): MeanMetric(nan_strategy="ignore") for k in self.metric_keys}),
            )

    def metrics_of(self, mode: str) -> nn.ModuleDict:
        """The metrics of a split.

        Raises:
            ValueError: an unknown split.
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        return {"train": self.training_metrics, "val": self.validation_metrics, "test": self.test_metrics}[
            mode
        ]

    def update_metrics(
        self, mode: str, batch_metrics: Sequence[Sequence[Tensor]] | tuple[Tensor, ...]
    ) -> None:
        """Add one batch: a tuple of values (one per key) or a list of such tuples (one per task).

        The batch's mean of each key enters the running mean with the batch's size as weight.
        """
        metrics = self.metrics_of(mode)
        rows: list[Sequence[Tensor]]
        if isinstance(batch_metrics, tuple):
            rows, size = [batch_metrics], 1
        else:
            rows, size = list(batch_metrics), len(batch_metrics)
        if not rows:
            return
        for key, values in zip(self.metric_keys, zip(*rows)):
            stacked = torch.stack([torch.as_tensor(v, dtype=torch.float32) for v in values])
            finite = stacked[~stacked.isnan()]
            value = finite.mean() if finite.numel() else torch.tensor(float("nan"))
            metrics[key.format(mode)](value.to(self.device), size)


class EpochLRSchedule:
    """0.0.6's optimiser set-up: a factory's optimiser, its scheduler stepped after every training epoch.

    Subclasses (LightningModules) return ``(parameters -> optimiser, optimiser -> scheduler or
    None)`` from `optimizer_factories()`.
    """

    def optimizer_factories(self) -> tuple[Callable[..., Any], Callable[..., Any] | None]:
        raise NotImplementedError  # pragma: no cover - provided by the subclass

    def configure_optimizers(self) -> Any:
        make_optimizer, make_scheduler = self.optimizer_factories()
        optimizer = make_optimizer(self.parameters())  # type: ignore[attr-defined]
        if make_scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": make_scheduler(optimizer)}

    def on_train_epoch_end(self) -> None:
        scheduler = self.lr_schedulers()  # type: ignore[attr-defined]
        if scheduler is not None:
            scheduler.step()
